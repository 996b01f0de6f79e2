"""The detail gain (``arssr.gain``) against a least-squares fit computed with numpy, its views of the input and
its rule, on a synthetic volume and on real anatomy (MNI152 T1)."""

import numpy as np
import pytest
import torch

from arssr.consistency import project
from arssr.degrade import SliceModel, degrade, resample
from arssr.errors import InputError
from arssr.gain import (MAX_GAIN, SelfView, auto_gain, detail_gain, fits_gain, interpolation, self_example,
                        self_views)
from arssr.models import load_model
from arssr.models.tiling import super_resolve
from arssr.protocol import CUBIC_GAIN, DEGRADATION_INTERPOLATIONS
from conftest import make_tiny_model, smooth_volume

CPU = torch.device("cpu")


def unit_range(data: np.ndarray) -> np.ndarray:
    """``data`` scaled to [0, 1] (float32), as the model sees it."""
    data = np.asarray(data, dtype=np.float32)
    return (data - data.min()) / (data.max() - data.min())


def lstsq_gain(pairs) -> float:
    """The unclipped ``g`` minimising ``sum |reference - base - g detail|^2`` over ``(detail, reference - base)``
    pairs, by ``numpy.linalg.lstsq`` on their voxels stacked."""
    detail = np.concatenate([d.ravel() for d, _ in pairs]).astype(np.float64)[:, None]
    target = np.concatenate([r.ravel() for _, r in pairs]).astype(np.float64)
    return float(np.linalg.lstsq(detail, target, rcond=None)[0][0])


def detail_and_residual(model, image, small, operator, interpolations):
    """The input ``image`` degraded to ``small`` by ``operator``, super-resolved back, and projected: what the
    projection keeps of the network's detail over the projected interpolation ``b``, and ``image - b``."""
    low = degrade(torch.from_numpy(image.astype(np.float64)), small, operator).numpy().astype(np.float32)
    estimate = super_resolve(low, model, image.shape, device=CPU)
    base = project(resample(torch.from_numpy(low), image.shape, interpolations).numpy(), low, operator)
    return project(estimate, low, operator) - base, image - base


@pytest.fixture(scope="module")
def synthetic() -> np.ndarray:
    return unit_range(smooth_volume((14, 12, 10)))


@pytest.fixture(scope="module")
def anatomy(mni_crop) -> np.ndarray:
    return unit_range(mni_crop.data)


@pytest.mark.parametrize("name, seed, regime", [("synthetic", 0, "below"), ("synthetic", 1, "above"),
                                                ("anatomy", 0, "inside"), ("anatomy", 1, "above")])
def test_detail_gain_is_the_least_squares_gain_clipped(request, name, seed, regime, one_thread):
    """Isotropic x2 with k-space consistency: the self-example is the input degraded by 1.5 (GAIN_SELF_SCALE)
    per axis; the gain equals numpy's least-squares gain of the projected detail against the input, clipped to
    [0, MAX_GAIN] (two random models give a gain below 0 and above 2; one fits inside on real anatomy)."""
    lr = request.getfixturevalue(name)
    before = lr.copy()
    model = make_tiny_model(seed)
    small = tuple(int(np.floor(n / 1.5 + 0.5)) for n in lr.shape)
    raw = lstsq_gain([detail_and_residual(model, lr, small, "kspace", "kspace")])
    assert {"below": raw < 0, "inside": 0.1 < raw < MAX_GAIN - 0.1, "above": raw > MAX_GAIN}[regime]

    gain = detail_gain(model, lr, (2.0, 2.0, 2.0), "kspace", CPU)
    assert gain == pytest.approx(float(np.clip(raw, 0.0, MAX_GAIN)), rel=1e-6, abs=1e-9)
    np.testing.assert_array_equal(lr, before)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_thick_slice_gain_pools_both_in_plane_views_on_real_anatomy(anatomy, axis, one_thread):
    """3-voxel slices along ``axis`` of the MNI152 crop, the shipped model: one fit pooled over the two views that
    swap the slice axis with an in-plane axis and thin that in-plane axis with the slice model (cubic across the
    slices)."""
    model = load_model(None)
    scale = [1.0, 1.0, 1.0]
    scale[axis] = 3.0
    operator = ["kspace", "kspace", "kspace"]
    operator[axis] = SliceModel(3.0)
    interpolations = tuple("cubic" if a == axis else "kspace" for a in range(3))
    pairs = []
    for plane in (a for a in range(3) if a != axis):
        image = np.ascontiguousarray(np.swapaxes(anatomy, axis, plane))
        small = tuple(int(np.floor(n / 3 + 0.5)) if a == axis else n for a, n in enumerate(image.shape))
        pairs.append(detail_and_residual(model, image, small, tuple(operator), interpolations))
    raw = lstsq_gain(pairs)
    assert 0 < raw < MAX_GAIN
    assert detail_gain(model, anatomy, scale, tuple(operator), CPU) == pytest.approx(raw, rel=1e-6)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_self_views_of_thick_slices_swap_the_slice_axis_with_each_in_plane_axis(axis):
    data = np.arange(2 * 3 * 5).reshape(2, 3, 5)
    scale = [1.0, 1.0, 1.0]
    scale[axis] = 4.0
    operator = ["cubic", "cubic", "cubic"]
    operator[axis] = SliceModel(4.0)
    views = self_views(scale, operator)
    planes = [a for a in range(3) if a != axis]
    assert len(views) == 2
    for view, plane in zip(views, planes):
        np.testing.assert_array_equal(data.transpose(view.order), np.swapaxes(data, axis, plane))
        assert tuple(np.argsort(view.order)) == view.order  # its own inverse
        assert view.scale == tuple(4.0 if a == axis else 1.0 for a in range(3))
        assert view.operator == operator


def test_self_view_of_isotropic_input_is_the_input_degraded_once_more():
    assert self_views((2, 2.5, 3), "kspace") == [SelfView((0, 1, 2), (2.0, 2.5, 3.0), "kspace")]
    assert all(isinstance(k, float) for k in self_views((2, 2, 2), "cubic")[0].scale)


def test_self_example_thins_the_slice_axis_of_each_view(anatomy):
    """Each view's example of 4-voxel slices along axis 2 is the input's in-plane axis thinned by 4, on the
    slice axis' position, equal to degrading that axis with the slice model."""
    operator = ("kspace", "kspace", SliceModel(4.0))
    for view in self_views((1, 1, 4), operator):
        image = np.ascontiguousarray(anatomy.transpose(view.order))
        low = self_example(image, view.scale, view.operator)
        assert low.dtype == np.float32
        assert low.shape == (*image.shape[:2], int(np.floor(image.shape[2] / 4 + 0.5)))
        expected = torch.from_numpy(image.astype(np.float64))
        expected = resample(expected, low.shape, ("nearest", "nearest", SliceModel(4.0))).numpy()
        np.testing.assert_allclose(low, expected, atol=1e-6)


def test_input_too_small_to_degrade_once_more_has_gain_one(synthetic):
    """Two voxels along an axis degrade by 1.5 to one: no self-example, and the gain is 1."""
    thin = np.ascontiguousarray(synthetic[:2])
    assert self_example(thin, (1.5, 1.5, 1.5), "kspace") is None
    assert self_example(np.ascontiguousarray(synthetic[:3]), (1.5, 1.5, 1.5), "kspace").shape == (2, 8, 7)
    assert detail_gain(make_tiny_model(0), thin, (2, 2, 2), "kspace", CPU) == 1.0


@pytest.mark.parametrize("consistency, slice_thickness, fitted", [
    ("kspace", None, True), ("kspace", 3.0, True), ("lanczos", None, True), ("gaussian", None, True),
    ("cubic", None, False), ("cubic", 3.0, True), ("cubic", "auto", True), ("none", None, False),
    ("none", 3.0, False)])
def test_fits_gain_table_and_auto_gain(synthetic, consistency, slice_thickness, fitted):
    """The gain is fitted with any consistency operator but ``none``, with ``cubic`` only for thick slices;
    otherwise ``auto_gain`` is CUBIC_GAIN without running the model."""
    assert fits_gain(consistency, slice_thickness) is fitted
    model = make_tiny_model(0)
    operator = "kspace" if consistency == "none" else consistency
    gain = auto_gain(model, synthetic, (2, 2, 2), operator, CPU, consistency, slice_thickness)
    assert gain == (detail_gain(model, synthetic, (2, 2, 2), operator, CPU) if fitted else CUBIC_GAIN)


@pytest.mark.parametrize("operator, method", [("kspace", "kspace"), ("cubic", "cubic"), ("lanczos", "lanczos"),
                                              ("gaussian", "cubic")])
def test_interpolation_matches_the_consistency_operator(synthetic, operator, method):
    low = np.ascontiguousarray(synthetic[::2, ::2, ::2])
    expected = resample(torch.from_numpy(low), (14, 12, 10), method).numpy()
    out = interpolation(low, (14, 12, 10), operator)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, atol=1e-6)


@pytest.mark.parametrize("operator, entry", [("linear", "linear"), ("none", "none"), ("fft", "fft"),
                                             (("kspace", "linear", SliceModel(2.0)), "linear")])
def test_interpolation_of_an_operator_without_one_is_an_input_error(synthetic, operator, entry):
    """Only the degradations have a matching interpolation (``none`` and resampling methods such as ``linear``
    do not): a one-line error naming them."""
    low = np.ascontiguousarray(synthetic[::2, ::2, ::2])
    known = ", ".join(DEGRADATION_INTERPOLATIONS)
    assert known == "kspace, cubic, lanczos, gaussian"
    with pytest.raises(InputError, match=f"^no interpolation matches the consistency operator '{entry}'; "
                                         f"known: {known}$"):
        interpolation(low, (14, 12, 10), operator)


def test_interpolation_is_cubic_across_thick_slices(synthetic):
    low = np.ascontiguousarray(synthetic[:, :, ::2])
    out = interpolation(low, (14, 12, 10), ("gaussian", "lanczos", SliceModel(2.0)))
    axis_by_axis = torch.from_numpy(low)
    for axis, method in enumerate(("cubic", "lanczos", "cubic")):
        methods = ["nearest"] * 3
        methods[axis] = method
        axis_by_axis = resample(axis_by_axis, (14, 12, 10)[:axis + 1] + low.shape[axis + 1:], tuple(methods))
    np.testing.assert_allclose(out, axis_by_axis.numpy(), atol=1e-6)
