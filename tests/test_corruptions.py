"""Noise and bias field of LR training volumes."""

import numpy as np
import pytest
import torch

from arssr import corruptions
from arssr import degrade as D


def test_rician_noise_statistics():
    x = torch.zeros(2, 1, 40, 40, 40)
    x[:, :, :, :, 20:] = 1.0  # zero background on one half, max intensity 1
    y = corruptions.add_noise(x, "rician", 0.1, torch.Generator().manual_seed(0))
    background = y[..., :20]
    assert (y >= 0).all()
    assert background.mean().item() == pytest.approx(0.1 * np.sqrt(np.pi / 2), rel=0.02)
    assert y[..., 20:].mean().item() == pytest.approx(1.0, abs=0.01)


def test_gaussian_noise_statistics():
    x = torch.full((40, 40, 40), 2.0)
    noise = corruptions.add_noise(x, "gaussian", 0.05, torch.Generator().manual_seed(0)) - x
    assert noise.mean().item() == pytest.approx(0.0, abs=0.005)
    assert noise.std().item() == pytest.approx(0.1, rel=0.02)


def test_bias_field_is_smooth_and_bounded():
    x = torch.ones(3, 1, 24, 20, 16)
    field = corruptions.bias_field(x, 0.4, torch.Generator().manual_seed(5))
    assert field.shape == x.shape
    assert field.min() >= np.exp(-0.4) - 1e-6 and field.max() <= np.exp(0.4) + 1e-6
    assert not torch.allclose(field[0], field[1])
    # At most one cycle per field of view: neighbouring voxels differ by far less than the range.
    steps = [field.diff(dim=d).abs().max().item() for d in (-3, -2, -1)]
    assert max(steps) < 0.4 * 2 * np.pi / 16 * 1.5
    lr = D.kspace(3 * x[0, 0], (12, 10, 8))
    y = D.degrade(3 * x[0, 0], (12, 10, 8), bias=0.4, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(y, lr * corruptions.bias_field(lr, 0.4, torch.Generator().manual_seed(5)))
