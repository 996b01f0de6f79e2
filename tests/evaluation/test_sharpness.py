"""PSI against closed forms on ramp edges, and its ordering on real anatomy."""

import numpy as np
import pytest
from scipy import ndimage

from arssr.evaluation.sharpness import psi, sobel_edges, volume_psi


def ramp_edge(width: int, size: int = 160) -> np.ndarray:
    """A horizontal edge: 1 above row 70, a linear ramp over ``width`` rows, 0 below."""
    rows = np.arange(size)[:, None] * np.ones((1, size))
    return np.clip((70 + width - rows) / width, 0, 1)


@pytest.mark.parametrize("width", [1, 2, 3, 5, 8])
def test_psi_of_a_ramp_is_its_inverse_perceived_width(width):
    # Every edge pixel measures the whole ramp; from 3 pixels on the slope (1 / width) is taken off.
    expected = 1 / (width - 1 / width) if width >= 3 else 1 / width
    assert psi(ramp_edge(width)) == pytest.approx(expected, rel=1e-12)
    assert psi(ramp_edge(width)[::-1]) == pytest.approx(expected, rel=1e-12)  # gradient the other way


def test_psi_measures_only_near_vertical_gradients_in_interior_blocks():
    assert psi(ramp_edge(3).T) == 0.0  # a vertical edge has a horizontal gradient
    assert psi(ramp_edge(3, size=90)) == 0.0  # under three blocks per side: no interior block
    edges = sobel_edges(ramp_edge(3))
    assert edges.any(axis=0).all() and edges.sum(axis=0).max() == 1  # one thinned edge pixel per column


def test_psi_ranks_real_anatomy_by_blur(mni_t1):
    axial = mni_t1.data[:, :, 90] / mni_t1.data.max()
    scores = [psi(ndimage.gaussian_filter(axial, sigma)) if sigma else psi(axial) for sigma in (0, 1, 2)]
    assert scores[0] > scores[1] > scores[2] > 0


def test_volume_psi_averages_every_slice_of_the_three_orientations(mni_t1):
    volume = mni_t1.data[40:140, 50:150, 40:140].astype(np.float64)
    scaled = (volume - volume.min()) / np.ptp(volume)
    slices = [psi(np.take(scaled, i, axis=axis)) for axis in range(3) for i in range(100)
              if np.ptp(np.take(scaled, i, axis=axis)) > 0]
    assert volume_psi(volume) == pytest.approx(np.mean(slices), rel=1e-12)
    assert volume_psi(volume) > volume_psi(ndimage.gaussian_filter(volume, 1.0))
