import numpy as np
import pytest

from arssr.degrade import kspace
from arssr.intensity import denormalize, intensity_window, normalize


def test_percentile_window_ignores_hot_voxels():
    data = np.concatenate([np.zeros(5000), np.linspace(10, 100, 5000), [1e6] * 10])
    low, high = intensity_window(data, "percentile")
    assert low == 0.0 and high == pytest.approx(np.percentile(data, 99.5))
    assert intensity_window(data, "minmax") == (0.0, 1e6)


def test_zero_background_stays_zero_through_kspace_ringing(mni_t1):
    """k-space truncation rings below zero around the brain; the window still starts at zero, as for the HR volume."""
    import torch

    hr = mni_t1.data[::2, ::2, ::2]
    lr = kspace(torch.from_numpy(hr).double(), (33, 39, 32)).numpy()
    assert lr.min() < 0 and np.percentile(lr, 0.5) < 0
    assert intensity_window(lr, "percentile")[0] == intensity_window(hr, "percentile")[0] == 0.0


def test_negative_data_keeps_its_low_percentile():
    ct = np.concatenate([np.full(5000, -1000.0), np.linspace(-100, 1500, 5000)])
    low, high = intensity_window(ct, "percentile")
    assert low == -1000.0 and high == pytest.approx(np.percentile(ct, 99.5))


def test_round_trip_and_clip():
    data = np.array([0.0, 50.0, 100.0])
    window = (0.0, 100.0)
    np.testing.assert_allclose(normalize(data, window), [0, 0.5, 1])
    np.testing.assert_allclose(denormalize(np.array([-0.5, 0.5, 2.0]), window, (0.0, 100.0)), [0, 50, 100])
