"""MONAI's 3D SSIM against arssr's (scikit-image's) on known inputs: the same scores, to 5e-4.

They differ only in details (MONAI uses the sample covariance in each window and its own discrete
Gaussian), not in what they measure; arssr keeps scikit-image's (see ``arssr.metrics.ssim``).
"""

import numpy as np
import pytest
import torch
from monai.metrics import SSIMMetric
from scipy import ndimage

from arssr.metrics import SSIM_SIGMA, SSIM_WINDOW, data_range, ssim


def monai_ssim(estimate: np.ndarray, reference: np.ndarray) -> float:
    metric = SSIMMetric(spatial_dims=3, data_range=float(data_range(reference)), kernel_type="gaussian",
                        win_size=SSIM_WINDOW, kernel_sigma=SSIM_SIGMA)
    return float(metric(torch.from_numpy(estimate)[None, None], torch.from_numpy(reference)[None, None]).item())


@pytest.mark.parametrize("corrupt", [
    lambda ref, rng: ref.copy(),
    lambda ref, rng: ref + rng.normal(0, 0.05 * ref.max(), ref.shape),
    lambda ref, rng: ndimage.gaussian_filter(ref, 1.0),
    lambda ref, rng: 0.8 * ref + 10,
], ids=["identical", "noise", "blur", "contrast"])
def test_monai_ssim_agrees_with_arssr_ssim_on_real_anatomy(mni_t1, corrupt):
    reference = mni_t1.data[60:108, 80:128, 60:108].astype(np.float64)
    estimate = corrupt(reference, np.random.default_rng(0))
    ours, theirs = ssim(estimate, reference), monai_ssim(estimate, reference)
    assert theirs == pytest.approx(ours, abs=5e-4)
