import numpy as np
import pytest
import torch
import torch.nn.functional as F

from arssr import geometry
from arssr.errors import InputError
from conftest import oblique_affine


def world(affine, ijk):
    return (affine @ np.append(np.asarray(ijk, dtype=float), 1.0))[:3]


@pytest.mark.parametrize("n,k,m", [(10, 3.2, 32), (99, 3.2, 317), (5, 2.5, 13), (7, 1.5, 11), (64, 1.0, 64), (3, 2.5, 8)])
def test_output_shape_rounds_half_up(n, k, m):
    assert geometry.output_shape((n, n, n), (k, k, k)) == (m, m, m)


def test_output_grid_keeps_world_edges_on_oblique_affine():
    affine = oblique_affine()
    in_shape, out_shape = (14, 12, 10), geometry.output_shape((14, 12, 10), (3.2, 2.0, 1.7))
    out_affine = geometry.resampled_affine(affine, in_shape, out_shape)
    # The outer faces of the grid: voxel coordinate -0.5 and n - 0.5 on every axis, at all 8 corners.
    for corner in np.ndindex(2, 2, 2):
        in_face = [-0.5 + c * n for c, n in zip(corner, in_shape)]
        out_face = [-0.5 + c * m for c, m in zip(corner, out_shape)]
        np.testing.assert_allclose(world(out_affine, out_face), world(affine, in_face), atol=1e-9)


def test_output_voxel_sits_at_its_source_coordinate():
    affine = oblique_affine()
    n, m = (14, 12, 10), (45, 24, 17)
    out_affine = geometry.resampled_affine(affine, n, m)
    for i in [(0, 0, 0), (44, 23, 16), (7, 11, 3)]:
        source = [(ii + 0.5) * nn / mm - 0.5 for ii, nn, mm in zip(i, n, m)]
        np.testing.assert_allclose(world(out_affine, i), world(affine, source), atol=1e-9)
    np.testing.assert_allclose(geometry.source_coordinates(10, 32)[[0, 31]], [0.15625 - 0.5, 31.5 * 10 / 32 - 0.5])


def test_known_world_point_maps_to_expected_output_voxel():
    # 2 mm grid with origin at world (-10, -20, -30); the point (0, 0, 0) is input voxel (5, 10, 15).
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = (-10, -20, -30)
    out_affine = geometry.resampled_affine(affine, (20, 20, 20), (40, 40, 40))
    voxel = np.linalg.solve(out_affine, [0, 0, 0, 1])[:3]
    # Input voxel 5 is the boundary between output voxels 10 and 11 at scale 2: coordinate 10.5.
    np.testing.assert_allclose(voxel, [10.5, 20.5, 30.5])
    np.testing.assert_allclose(geometry.spacing_of(out_affine), [1.0, 1.0, 1.0])


def test_normalized_centres_agree_with_grid_sample():
    """Sampling an array at its own normalised centres returns the array (align_corners=False, axis order)."""
    data = torch.arange(4 * 5 * 6, dtype=torch.float32).view(1, 1, 4, 5, 6)
    coords = geometry.grid_coordinates((4, 5, 6))
    grid = geometry.to_grid_sample_order(coords)[None]
    sampled = F.grid_sample(data, grid, mode="bilinear", align_corners=False)
    torch.testing.assert_close(sampled, data)
    np.testing.assert_allclose(geometry.voxel_to_normalized(np.arange(4.0), 4), geometry.normalized_centres(4))


def test_parse_triple_and_voxel_size():
    assert geometry.parse_triple("3.2", "scale") == (3.2, 3.2, 3.2)
    assert geometry.parse_triple("2,2,4", "scale") == (2.0, 2.0, 4.0)
    assert geometry.scale_for_voxel_size((1.4, 1.4, 3.0), (0.7, 0.7, 1.0)) == pytest.approx((2.0, 2.0, 3.0))
    with pytest.raises(InputError, match="needs 1 or 3 values"):
        geometry.parse_triple("2,2", "scale")
    with pytest.raises(InputError, match="must be a number"):
        geometry.parse_triple("x", "scale")
    with pytest.raises(InputError, match="must be positive"):
        geometry.scale_for_voxel_size((1, 1, 1), (0.5, 0, 1))
    with pytest.raises(InputError, match=r"scale must be >= 1 on every axis"):
        geometry.check_scale((1.0, 0.9, 2.0))
    geometry.check_scale((1.0, 1.0, 4.0))
    with pytest.raises(InputError, match="NIfTI limit"):
        geometry.check_output_shape((40000, 10, 10))
