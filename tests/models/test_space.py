"""Model space (``arssr.models.space``): every orientation of one volume reaches the same model-space array, and
back to its own; per-axis values follow the array's axes. Checked against nibabel's closest canonical image."""

import itertools

import nibabel as nib
import numpy as np
import pytest

from arssr.geometry import spacing_of
from arssr.intensity import PERCENTILES, ZERO_SNAP
from arssr.models.space import ModelSpace
from arssr.volume import Volume
from conftest import make_tiny_model

#: The 48 orientations of a 3D array: every axis permutation with every combination of flips.
ORIENTATIONS = [np.array([[axis, flip] for axis, flip in zip(perm, flips)], dtype=float)
                for perm in itertools.permutations(range(3)) for flips in itertools.product((1, -1), repeat=3)]


def reoriented(volume: Volume, orientation: np.ndarray) -> Volume:
    """The same image stored with its axes transposed and flipped by ``orientation``: each voxel keeps its world
    position."""
    data = nib.orientations.apply_orientation(volume.data, orientation)
    affine = volume.affine @ nib.orientations.inv_ornt_aff(orientation, volume.data.shape)
    return Volume(np.ascontiguousarray(data), affine)


def canonical(volume: Volume) -> tuple[np.ndarray, np.ndarray]:
    """nibabel's closest canonical (RAS) array and affine of ``volume``."""
    image = nib.as_closest_canonical(nib.Nifti1Image(volume.data, volume.affine))
    return np.asarray(image.dataobj), image.affine


@pytest.fixture(scope="module", params=["xyz", "zyx"])
def model(request):
    return make_tiny_model(axis_order=request.param)


@pytest.mark.parametrize("name", ["oblique_volume", "mni_crop"])
def test_every_orientation_reaches_the_canonical_array_and_returns(request, name, model):
    """The oblique synthetic volume and the MNI152 crop, each of 48 orientations: to_model gives nibabel's
    canonical array in the model's axis order, normalised by the model's window; from_model gives back the
    orientation's own array; axes() of its shape and spacing agree with that transposition."""
    volume = request.getfixturevalue(name)
    order = (2, 1, 0) if model.axis_order == "zyx" else (0, 1, 2)
    ras_data, ras_affine = canonical(volume)
    for orientation in ORIENTATIONS:
        stored = reoriented(volume, orientation)
        before = stored.data.copy()
        space = ModelSpace.of(stored.data, stored.affine, model)
        low, high = space.window
        assert space.window == ModelSpace.of(volume.data, volume.affine, model).window

        in_model = space.to_model(stored.data)
        expected = ((ras_data.astype(np.float64) - low) / (high - low)).transpose(order)
        np.testing.assert_allclose(in_model, expected, rtol=1e-6, atol=1e-6)
        assert in_model.dtype == np.float32 and in_model.flags.c_contiguous

        back = space.from_model(in_model)
        np.testing.assert_allclose(back, stored.data, rtol=1e-6, atol=1e-5 * (high - low))
        assert back.dtype == np.float32 and back.flags.c_contiguous and back.shape == stored.data.shape
        np.testing.assert_array_equal(space.from_model_axes(space.to_model_axes(stored.data)), stored.data)
        np.testing.assert_array_equal(stored.data, before)

        assert space.axes(stored.data.shape) == in_model.shape
        np.testing.assert_allclose(space.axes(spacing_of(stored.affine)),
                                   np.array(spacing_of(ras_affine))[list(order)], rtol=1e-12)


def test_trailing_axes_are_kept(oblique_volume, model):
    """A volume of 2 channels (X, Y, Z, 2) in model axis order: the spatial axes move as a 3D array's do, the
    channels stay last."""
    stored = reoriented(oblique_volume, ORIENTATIONS[17])
    space = ModelSpace.of(stored.data, stored.affine, model)
    channels = np.stack([stored.data, -stored.data], axis=-1)
    out = space.to_model_axes(channels)
    np.testing.assert_array_equal(out[..., 0], space.to_model_axes(stored.data))
    np.testing.assert_array_equal(out[..., 1], -space.to_model_axes(stored.data))


@pytest.mark.parametrize("index", [0, 17, 47])
def test_from_model_axes_inverts_trailing_axes_too(oblique_volume, model, index):
    """Channels (X, Y, Z, 2, 3) into model axis order and back: the stored array exactly, each channel as a 3D
    array comes back."""
    stored = reoriented(oblique_volume, ORIENTATIONS[index])
    space = ModelSpace.of(stored.data, stored.affine, model)
    channels = np.stack([stored.data * k for k in range(6)], axis=-1).reshape(*stored.shape, 2, 3)
    in_model = space.to_model_axes(channels)
    back = space.from_model_axes(in_model)
    assert back.flags.c_contiguous
    np.testing.assert_array_equal(back, channels)
    np.testing.assert_array_equal(back[..., 1, 2], space.from_model_axes(in_model[..., 1, 2]))


@pytest.mark.parametrize("name, offset, snapped", [("mni_crop", 0.0, False), ("mni_t1", 20.0, True)])
def test_windows_of_both_normalizations(request, name, offset, snapped):
    """minmax: the array's range; percentile: numpy's 0.5 and 99.5 percentiles, the low end snapped to 0 when it
    is within ZERO_SNAP of the high end (the whole MNI152 T1 plus 20, its background 20; not the crop inside the
    brain, whose low end is 67). ``intensity`` maps a value as ``to_model`` maps it."""
    volume = request.getfixturevalue(name)
    data = volume.data + np.float32(offset)
    minmax = ModelSpace.of(data, volume.affine, make_tiny_model(normalization="minmax"))
    assert minmax.window == (float(data.min()), float(data.max()))
    percentile = ModelSpace.of(data, volume.affine, make_tiny_model(normalization="percentile"))
    low, high = np.percentile(data, PERCENTILES)
    assert bool(abs(low) <= ZERO_SNAP * high) is snapped
    assert percentile.window == (pytest.approx(0.0 if snapped else float(low)), pytest.approx(float(high)))
    for space in (minmax, percentile):
        in_model = space.to_model(data)
        assert space.intensity(float(data.max())) == pytest.approx(float(in_model.max()), rel=1e-6)
        assert space.intensity(space.window[0]) == 0 and space.intensity(space.window[1]) == 1


def test_denormalize_clips_where_asked(mni_crop, model):
    space = ModelSpace.of(mni_crop.data, mni_crop.affine, model)
    in_model = space.to_model(mni_crop.data) * 2.5 - 1.0
    clipped = space.from_model(in_model, clip=(0.0, float(mni_crop.data.max())))
    unclipped = space.from_model(in_model)
    np.testing.assert_array_equal(clipped, np.clip(unclipped, 0.0, float(mni_crop.data.max())))
    assert unclipped.min() < 0 == clipped.min() and unclipped.max() > mni_crop.data.max() == clipped.max()


@pytest.mark.parametrize("axis_order, order", [("xyz", (0, 1, 2)), ("zyx", (2, 1, 0))])
def test_file_order_keeps_the_files_axes(oblique_volume, axis_order, order):
    """Training and compression keep the file's axes: only windowed and put in the model's axis order, whatever
    the affine."""
    data = reoriented(oblique_volume, ORIENTATIONS[30]).data
    space = ModelSpace.file_order((10.0, 110.0), axis_order)
    np.testing.assert_allclose(space.to_model(data), ((data - 10.0) / 100.0).transpose(order), rtol=1e-6, atol=1e-6)
    assert space.axes((5, 6, 7)) == tuple(np.array((5, 6, 7))[list(order)])
    np.testing.assert_array_equal(space.from_model_axes(space.to_model_axes(data)), data)
