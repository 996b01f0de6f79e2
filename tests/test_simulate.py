import numpy as np
import torch

from arssr.degrade import kspace
from arssr.geometry import resampled_affine
from arssr.simulate import simulate_lr
from conftest import band_limited


def test_simulated_lr_has_rounded_shape_geometry_and_the_degradation():
    hr = band_limited((33, 30, 24))
    lr = simulate_lr(hr, 3.2, "kspace")
    assert lr.shape == (10, 9, 8)  # round(33 / 3.2), round(30 / 3.2), round(24 / 3.2)
    np.testing.assert_allclose(lr.data, kspace(torch.from_numpy(hr.data).double(), (10, 9, 8)).numpy(), atol=1e-4)
    np.testing.assert_allclose(lr.affine, resampled_affine(hr.affine, hr.shape, lr.shape))
    assert simulate_lr(hr, (1, 1, 4), "cubic").shape == (33, 30, 6)
