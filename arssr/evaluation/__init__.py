"""Simulated-LR evaluation: degrade a ground truth, upsample it back with each method, score it.

Modules: ``methods`` (the baselines and models compared), ``scoring`` (subjects,
cases and records), ``runner`` (``arssr evaluate`` as a Python API:
:func:`run_evaluation`), and the scores beyond PSNR/SSIM of ``arssr.metrics``:
``sharpness`` (PSI), ``segmentation`` (Dice), and ``figures``.
The LR inputs come from :mod:`arssr.simulate`.
"""

from arssr.evaluation.runner import run_evaluation

__all__ = ["run_evaluation"]
