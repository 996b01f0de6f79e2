"""Learning curves: a score against training time, fitted as ``score = a + b ln(hours)``.

:func:`log_linear_fit` is ordinary least squares on ``ln(hours)`` with the
usual standard errors (residual variance on ``n - 2`` degrees of freedom) and
the one-sided p-value of a positive slope. :func:`hours_for` inverts the fit:
the hours at which it reaches a target score, ``exp((target - a) / b)``, with
an interval of one standard error of ``ln(hours)`` (delta method), or ``None``
when the slope is not positive at the given significance.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

from arssr.errors import InputError


#: Natural log of the largest float: hours beyond it are infinite.
LARGEST_LOG = math.log(sys.float_info.max)

@dataclass(frozen=True)
class LogLinearFit:
    """``score = a + b ln(hours)``: the coefficients, their standard errors and covariance, the slope's
    one-sided p-value (``b > 0``) and the number of points."""

    a: float
    b: float
    se_a: float
    se_b: float
    cov_ab: float
    p_slope: float
    n: int

    def predict(self, hours: np.ndarray | float) -> np.ndarray:
        """The fitted score at ``hours``."""
        return self.a + self.b * np.log(hours)


@dataclass(frozen=True)
class Crossing:
    """The hours at which a fit reaches a target, and the interval of one standard error of their logarithm."""

    hours: float
    low: float
    high: float


def log_linear_fit(hours: Sequence[float], scores: Sequence[float]) -> LogLinearFit:
    """Least-squares fit of ``scores`` against ``ln(hours)``; needs 3 or more points at 2 or more distinct hours > 0."""
    hours, y = np.asarray(hours, dtype=np.float64), np.asarray(scores, dtype=np.float64)
    if hours.ndim != 1 or hours.shape != y.shape or not np.all((hours > 0) & np.isfinite(hours)):
        raise InputError("learning curve: hours must be positive and as many as the scores")
    x = np.log(hours)
    if x.size < 3 or np.ptp(x) == 0 or not np.all(np.isfinite(y)):
        raise InputError(f"learning curve: need 3 or more finite scores at 2 or more distinct hours, got {x.size}")
    design = np.column_stack([np.ones_like(x), x])
    (a, b), *_ = np.linalg.lstsq(design, y, rcond=None)
    dof = x.size - 2
    residual = y - design @ np.array([a, b])
    variance = float(residual @ residual) / dof
    cov = variance * np.linalg.inv(design.T @ design)
    se_b = math.sqrt(cov[1, 1])
    p_slope = float(stats.t.sf(b / se_b, dof)) if se_b > 0 else (0.0 if b > 0 else 1.0)
    return LogLinearFit(float(a), float(b), math.sqrt(cov[0, 0]), se_b, float(cov[0, 1]), p_slope, int(x.size))


def hours_for(fit: LogLinearFit, target: float, alpha: float = 0.05) -> Crossing | None:
    """Hours at which ``fit`` reaches ``target``; ``None`` ("never") unless its slope is positive with
    one-sided p-value below ``alpha``."""
    if fit.b <= 0 or fit.p_slope >= alpha:
        return None
    log_hours = (target - fit.a) / fit.b
    # d ln(h) / d a = -1 / b, d ln(h) / d b = -ln(h) / b
    variance = (fit.se_a ** 2 + log_hours ** 2 * fit.se_b ** 2 + 2 * log_hours * fit.cov_ab) / fit.b ** 2
    spread = math.sqrt(max(variance, 0.0))
    return Crossing(*(_exp(value) for value in (log_hours, log_hours - spread, log_hours + spread)))


def _exp(value: float) -> float:
    """``exp(value)``, or infinity where that is beyond a float (hours no run will reach)."""
    return math.exp(value) if value < LARGEST_LOG else math.inf
