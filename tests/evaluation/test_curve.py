"""The learning-curve fit (arssr.evaluation.curve) against numpy.polyfit and scipy.stats.linregress."""

import math

import numpy as np
import pytest
from scipy import stats

from arssr.errors import InputError
from arssr.evaluation.curve import hours_for, log_linear_fit

HOURS = np.array([0.01, 0.02, 0.05, 0.1, 0.2, 0.4])
NOISE = np.array([0.02, -0.03, 0.01, 0.025, -0.015, -0.01])


def test_fit_matches_polyfit_and_linregress():
    gains = -0.1 + 0.12 * np.log(HOURS) + NOISE
    fit = log_linear_fit(HOURS, gains)
    slope, intercept = np.polyfit(np.log(HOURS), gains, 1)
    reference = stats.linregress(np.log(HOURS), gains)
    assert fit.n == 6
    assert fit.a == pytest.approx(intercept, abs=1e-12) and fit.b == pytest.approx(slope, abs=1e-12)
    assert fit.se_b == pytest.approx(reference.stderr, rel=1e-9)
    assert fit.se_a == pytest.approx(reference.intercept_stderr, rel=1e-9)
    # OLS: cov(a, b) = -mean(x) var(b)
    assert fit.cov_ab == pytest.approx(-np.log(HOURS).mean() * reference.stderr ** 2, rel=1e-9)
    # linregress's p-value is two-sided; the fit's is one-sided for b > 0
    assert fit.p_slope == pytest.approx(reference.pvalue / 2, rel=1e-6)
    assert fit.predict(0.1) == pytest.approx(intercept + slope * math.log(0.1), abs=1e-12)


def test_hours_for_inverts_the_fit_with_a_delta_method_interval():
    gains = 0.3 + 0.1 * np.log(HOURS) + NOISE
    fit = log_linear_fit(HOURS, gains)
    slope, intercept = np.polyfit(np.log(HOURS), gains, 1)
    crossing = hours_for(fit, 0.5)
    assert crossing.hours == pytest.approx(math.exp((0.5 - intercept) / slope), rel=1e-9)
    # the interval: one standard error of ln(hours), from the Jacobian of ln h = (t - a) / b by finite differences
    reference = stats.linregress(np.log(HOURS), gains)
    cov = np.array([[reference.intercept_stderr ** 2, -np.log(HOURS).mean() * reference.stderr ** 2],
                    [-np.log(HOURS).mean() * reference.stderr ** 2, reference.stderr ** 2]])
    step = 1e-7
    log_h = lambda a, b: (0.5 - a) / b  # noqa: E731
    jacobian = np.array([(log_h(intercept + step, slope) - log_h(intercept - step, slope)) / (2 * step),
                         (log_h(intercept, slope + step) - log_h(intercept, slope - step)) / (2 * step)])
    spread = math.sqrt(jacobian @ cov @ jacobian)
    assert math.log(crossing.low) == pytest.approx(math.log(crossing.hours) - spread, rel=1e-6)
    assert math.log(crossing.high) == pytest.approx(math.log(crossing.hours) + spread, rel=1e-6)
    assert crossing.low < crossing.hours < crossing.high
    # a noise-free line is met exactly, with no spread
    exact = hours_for(log_linear_fit(HOURS, 0.3 + 0.1 * np.log(HOURS)), 0.25)
    assert exact.hours == pytest.approx(math.exp(-0.5), rel=1e-9) and exact.low == pytest.approx(exact.high)


def test_hours_for_is_never_without_a_significant_positive_slope():
    falling = log_linear_fit(HOURS, 0.2 - 0.05 * np.log(HOURS) + NOISE)
    assert falling.b < 0 and hours_for(falling, 0.5) is None
    flat = log_linear_fit(HOURS, 0.008 * np.log(HOURS) + NOISE)
    assert flat.b > 0 and flat.p_slope > 0.05 and hours_for(flat, 0.5) is None
    assert hours_for(flat, 0.5, alpha=0.99) is not None


def test_fit_on_real_step_counts_and_errors():
    # points as a run gives them: CPU seconds of its kept steps
    seconds = np.array([40.0, 75.0, 150.0, 290.0, 520.0, 810.0])
    gains = np.array([-0.21, -0.12, -0.05, 0.01, 0.04, 0.07])
    fit = log_linear_fit(seconds / 3600, gains)
    slope, intercept = np.polyfit(np.log(seconds / 3600), gains, 1)
    assert (fit.a, fit.b) == (pytest.approx(intercept), pytest.approx(slope)) and fit.p_slope < 1e-3
    with pytest.raises(InputError, match="hours must be positive"):
        log_linear_fit([0.0, 0.1, 0.2], [0.1, 0.2, 0.3])
    with pytest.raises(InputError, match="as many as the scores"):
        log_linear_fit([0.1, 0.2, 0.3], [0.1, 0.2])
    with pytest.raises(InputError, match="need 3 or more finite scores at 2 or more distinct hours, got 2"):
        log_linear_fit([0.1, 0.2], [0.1, 0.2])
    with pytest.raises(InputError, match="2 or more distinct hours"):
        log_linear_fit([0.1, 0.1, 0.1], [0.1, 0.2, 0.3])


def test_targets_beyond_any_float_of_hours_are_infinite_not_an_error():
    hours = np.geomspace(0.01, 1.0, 12)
    fit = log_linear_fit(hours, 0.001 * np.log(hours) + 1e-6 * np.sin(np.arange(12)))  # tiny, certain slope
    crossing = hours_for(fit, 0.9)
    assert crossing is not None and crossing.hours == math.inf and crossing.high == math.inf
    with pytest.raises(InputError, match="hours must be positive"):
        log_linear_fit([0.1, 1.0, math.inf], [0.0, 0.1, 0.2])
