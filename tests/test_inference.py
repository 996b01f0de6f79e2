import nibabel as nib
import numpy as np
import pytest
import torch

from arssr import geometry, inference
from arssr.models import tiling
from arssr.degrade import SliceModel
from arssr.errors import InputError
from arssr.gain import SelfView, self_views
from arssr.inference import super_resolve, upsample
from arssr.intensity import intensity_window, normalize
from arssr.volume import Volume
from conftest import make_tiny_model


def reference_upsample(volume: Volume, model, out_shape) -> np.ndarray:
    """Independent path: nibabel's closest-canonical (RAS) array, encoded whole, then ``model.query``
    (grid_sample) at every output centre, and back to the file's axis order."""
    image = nib.as_closest_canonical(nib.Nifti1Image(volume.data, volume.affine))
    # Axis a of the canonical array is file axis ``source[a]``, reversed where ``flipped[a]``.
    ornt = nib.orientations.io_orientation(volume.affine)
    source = np.argsort(ornt[:, 0].astype(int))
    flipped = ornt[source, 1] < 0
    window = intensity_window(volume.data, model.normalization)
    order = (2, 1, 0) if model.axis_order == "zyx" else (0, 1, 2)
    canonical = np.asarray(image.dataobj, dtype=np.float32)
    lr = torch.from_numpy(normalize(canonical, window).transpose(order).copy())
    shape = tuple(tuple(out_shape[a] for a in source)[i] for i in order)
    with torch.no_grad():
        features = model.encode(lr[None, None])
        values = model.query(features, geometry.grid_coordinates(shape).view(1, -1, 3)).view(shape).numpy()
    values = values.transpose(order) * (window[1] - window[0]) + window[0]
    values = np.flip(values, tuple(int(a) for a in np.flatnonzero(flipped))).transpose(np.argsort(source))
    return np.clip(values, volume.data.min(), volume.data.max())


def assert_within_range_fraction(a, b, data, fraction):
    span = float(data.max() - data.min())
    assert np.abs(a - b).max() <= fraction * span, np.abs(a - b).max() / span


@pytest.mark.parametrize("tile", [None, 3, 5, 64])
def test_tiled_equals_whole_volume_reference(oblique_volume, tiny_model, tile):
    result = upsample(oblique_volume, tiny_model, scale="2.5,3.2,1.7", tile=tile, device="cpu", consistency="none")
    expected_shape = geometry.output_shape(oblique_volume.shape, (2.5, 3.2, 1.7))
    assert result.shape == expected_shape == (35, 38, 17)
    expected = reference_upsample(oblique_volume, tiny_model, expected_shape)
    assert_within_range_fraction(result.data, expected, oblique_volume.data, 1e-5)
    assert result.data.std() > 0.01 * oblique_volume.data.std()  # the model's output is not flat
    np.testing.assert_allclose(
        result.affine, geometry.resampled_affine(oblique_volume.affine, oblique_volume.shape, expected_shape)
    )


def test_receptive_radius_halo_is_needed(oblique_volume, tiny_model, monkeypatch):
    """With a halo smaller than the receptive radius, tiles no longer match: the halo test has teeth."""
    normalized = normalize(oblique_volume.data, intensity_window(oblique_volume.data, "percentile"))
    whole = super_resolve(normalized, tiny_model, (28, 24, 20))
    monkeypatch.setattr(tiny_model.encoder, "receptive_radius", 2)
    tiled = super_resolve(normalized, tiny_model, (28, 24, 20), tile=3)
    assert np.abs(whole - tiled).max() > 1e-3


def test_voxel_size_and_per_axis_scale(oblique_volume, tiny_model):
    by_size = upsample(oblique_volume, tiny_model, voxel_size="0.6,0.45,2.5")
    by_scale = upsample(oblique_volume, tiny_model, scale=(2, 2, 1))
    assert by_size.shape == by_scale.shape == (28, 24, 10)
    np.testing.assert_allclose(by_size.spacing, (0.6, 0.45, 2.5), rtol=1e-9)
    np.testing.assert_array_equal(by_size.data, by_scale.data)
    with pytest.raises(InputError, match="exactly one of scale and voxel_size"):
        upsample(oblique_volume, tiny_model)
    with pytest.raises(InputError, match=r"scale must be >= 1"):
        upsample(oblique_volume, tiny_model, voxel_size=2.0)


def test_intensities_follow_the_input_affinely(oblique_volume, tiny_model):
    """The percentile window makes the result equivariant to a*x + b (a > 0), and it stays in the input range."""
    base = upsample(oblique_volume, tiny_model, scale=2, consistency="none")
    shifted = upsample(Volume(oblique_volume.data * 3.0 + 500.0, oblique_volume.affine), tiny_model, scale=2,
                       consistency="none")
    assert_within_range_fraction(shifted.data, base.data * 3.0 + 500.0, shifted.data, 1e-5)
    assert base.data.min() >= oblique_volume.data.min() and base.data.max() <= oblique_volume.data.max()
    assert base.data.dtype == np.float32


def test_zyx_model_runs_on_reversed_axes(oblique_volume):
    """Weights trained in SimpleITK order see the array transposed: the same as an xyz model on the transposed volume."""
    zyx = make_tiny_model(axis_order="zyx", normalization="minmax")
    xyz = make_tiny_model(axis_order="xyz", normalization="minmax")
    ras = Volume(oblique_volume.data, np.diag([1.2, 0.9, 2.5, 1.0]))  # already in RAS order: no reorientation
    transposed = Volume(oblique_volume.data.transpose(2, 1, 0).copy(), np.eye(4))
    a = upsample(ras, zyx, scale=(2, 1.5, 3), consistency="none").data
    b = upsample(transposed, xyz, scale=(3, 1.5, 2), consistency="none").data.transpose(2, 1, 0)
    np.testing.assert_allclose(a, b, atol=1e-5 * np.ptp(oblique_volume.data))
    oblique = upsample(oblique_volume, zyx, scale=(2, 1.5, 3), consistency="none").data
    assert_within_range_fraction(oblique, reference_upsample(oblique_volume, zyx, a.shape), oblique_volume.data, 1e-5)


def test_reduced_precision_is_close(oblique_volume, tiny_model):
    exact = upsample(oblique_volume, tiny_model, scale=2).data
    bf16 = upsample(oblique_volume, tiny_model, scale=2, precision="bf16").data
    assert_within_range_fraction(bf16, exact, oblique_volume.data, 0.05)
    with pytest.raises(InputError, match="unknown precision"):
        upsample(oblique_volume, tiny_model, scale=2, precision="int4")


def test_memory_limits_are_clear_errors(oblique_volume, tiny_model, monkeypatch):
    with pytest.raises(InputError, match="NIfTI limit"):
        upsample(oblique_volume, tiny_model, scale=4000)
    monkeypatch.setattr(inference, "free_memory_bytes", lambda device: 1 << 20)
    monkeypatch.setattr(tiling, "free_memory_bytes", lambda device: 1 << 20)
    with pytest.raises(InputError, match=r"needs .* GiB but only .* GiB of memory is free"):
        upsample(oblique_volume, tiny_model, scale=20)
    with pytest.raises(InputError, match="not enough memory"):
        tiling.auto_tile(make_tiny_model(), (200, 200, 200), torch.device("cpu"))


def test_auto_tile_uses_whole_volume_when_it_fits_and_splits_otherwise(monkeypatch):
    model = make_tiny_model()
    monkeypatch.setattr(tiling, "free_memory_bytes", lambda device: 64 << 30)
    assert tiling.auto_tile(model, (30, 40, 20), torch.device("cpu")) == 40
    monkeypatch.setattr(tiling, "free_memory_bytes", lambda device: 256 << 20)
    edge = tiling.auto_tile(model, (400, 400, 400), torch.device("cpu"))
    assert tiling.MIN_TILE <= edge < 400
    padded = edge + 2 * model.receptive_radius + 1
    assert tiling.encoder_bytes(model, padded**3) <= tiling.MEMORY_SHARE * (256 << 20)


def test_real_anatomy_tiled_matches_reference(mni_crop, tiny_model):
    """MNI152 T1 block at 2 mm, upsampled x2.5 in tiles smaller than the receptive field."""
    result = upsample(mni_crop, tiny_model, scale=2.5, tile=7, consistency="none")
    assert result.shape == (60, 70, 50)
    expected = reference_upsample(mni_crop, tiny_model, result.shape)
    assert_within_range_fraction(result.data, expected, mni_crop.data, 1e-5)
    # The world position of the grid's centre does not move, and the spacing is 2 mm / 2.5.
    centre_in = mni_crop.affine @ np.append((np.array(mni_crop.shape) - 1) / 2, 1)
    centre_out = result.affine @ np.append((np.array(result.shape) - 1) / 2, 1)
    np.testing.assert_allclose(centre_out, centre_in, atol=1e-9)
    np.testing.assert_allclose(result.spacing, (0.8, 0.8, 0.8), rtol=1e-9)


def test_model_card_ranges_warn_outside_training_data(tmp_path, oblique_volume, tiny_model):
    from arssr.models import load_model, save_model

    path = save_model(tiny_model, tmp_path / "carded.safetensors", input_spacing_mm="2,4", scale_range="2,4")
    model = load_model(path)
    assert model.card == {"input_spacing_mm": "2,4", "scale_range": "2,4"}
    with pytest.warns(UserWarning, match=r"input voxel size 1.2x0.9x2.5 mm is outside the 2-4 mm"):
        upsample(oblique_volume, model, scale=2)
    with pytest.warns(UserWarning, match="scale 4.3 is above the largest the model was trained on"):
        upsample(Volume(oblique_volume.data, np.diag([3.0, 3.0, 3.0, 1.0])), model, scale=4.3)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        upsample(Volume(oblique_volume.data, np.diag([3.0, 2.5, 1.95, 1.0])), model, scale=4.1)


def test_model_card_thick_slice_ranges(tmp_path, mni_crop, tiny_model):
    """A card with thick-slice ranges accepts 1x1x5-like scales and still warns beyond them (MNI152 block)."""
    import warnings

    from arssr.models import load_model, save_model

    path = save_model(tiny_model, tmp_path / "thick.safetensors", scale_range="2,4", thick_scale_range="1.5,8",
                      inplane_scale_range="1,2")
    model = load_model(path)
    volume = mni_crop
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        upsample(volume, model, scale=(1, 5, 1))
        upsample(volume, model, scale=(2, 2, 8.3))
        upsample(volume, model, scale=4)
    with pytest.warns(UserWarning, match=r"scale 1x1x9 is outside what the model was trained on \(up to 4 on every "
                                         r"axis, or up to 8 on one axis and 2 on the others\)"):
        upsample(volume, model, scale=(1, 1, 9))
    with pytest.warns(UserWarning, match=r"scale 2.5x1x5 is outside"):
        upsample(volume, model, scale=(2.5, 1, 5))


def test_default_model_beats_cubic_on_real_anatomy(mni_t1):
    """The shipped model on the whole MNI152 T1 (at 2 mm, the data it was made from) degraded by k-space truncation.

    A sanity check that the shipped weights load and work; held-out scores are in eval/results/colin27/results.md.
    """
    from arssr.evaluation.methods import baseline
    from arssr.simulate import simulate_lr
    from arssr.metrics import psnr, ssim
    from arssr.models import default_model_path, load_model

    model = load_model()
    assert default_model_path().name == "arssr_rdn_v10.safetensors" and model.residual
    assert model.card["input_spacing_mm"] == "1,6" and model.card["scale_range"] == "2,4"
    hr = Volume(mni_t1.data[::2, ::2, ::2], mni_t1.affine @ np.diag([2.0, 2.0, 2.0, 1.0]))
    lr = simulate_lr(hr, 2, "kspace")
    scale = tuple(n / m for n, m in zip(hr.shape, lr.shape))
    ours = upsample(lr, model, scale=scale, device="cpu").data  # the default settings: k-space consistency, fitted gain
    cubic, zero_filled = (baseline(name)(lr, hr.shape).data for name in ("cubic", "kspace"))
    gt = hr.data
    assert psnr(ours, gt) > max(psnr(cubic, gt), psnr(zero_filled, gt)) and ssim(ours, gt) > ssim(cubic, gt), (
        psnr(ours, gt), psnr(cubic, gt), psnr(zero_filled, gt), ssim(ours, gt), ssim(cubic, gt))


@pytest.mark.parametrize("tile", [None, 4])
def test_residual_model_tiled_equals_whole_volume_query(mni_crop, tile):
    """The separable lerp of the LR tile adds exactly what ``ArSSR.query`` adds (real anatomy, oblique scales)."""
    model = make_tiny_model(residual=True)
    lr = normalize(mni_crop.data, intensity_window(mni_crop.data, "percentile"))
    shape = (53, 47, 31)
    out = super_resolve(lr, model, shape, tile=tile)
    with torch.no_grad():
        tensor = torch.from_numpy(lr)[None, None]
        expected = model.query(model.encode(tensor), geometry.grid_coordinates(shape).view(1, -1, 3), lr=tensor)
    np.testing.assert_allclose(out, expected.view(shape).numpy(), atol=1e-5)


def test_the_callers_model_is_left_as_it_was(mni_crop):
    """No moving, no mode switch, no memory-format change of the model a caller passes in."""
    model = make_tiny_model().train()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    conv = next(m for m in model.encoder.modules() if isinstance(m, torch.nn.Conv3d) and m.in_channels > 1)
    upsample(mni_crop, model, scale=2, device="cpu")
    assert model.training and conv.weight.is_contiguous()
    assert not conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())


def test_an_empty_background_stays_empty(tiny_model, monkeypatch):
    """The shipped 3 mm MNI152 T1 is zero outside the head: output voxels whose nearest input voxel and its 26
    neighbours are within 1 % of the intensity window of zero (its low end) are exactly zero, computed independently with scipy
    (a min filter and a zoom of order 0 on the FOV-preserving grid)."""
    from scipy import ndimage

    from arssr.volume import load_volume

    volume = load_volume(inference.example_volume_path())
    out = upsample(volume, tiny_model, scale=2.5, device="cpu", consistency="none").data
    low, high = intensity_window(volume.data, tiny_model.normalization)
    assert low == 0  # the window starts at the background, so "near its low end" is "near zero"
    near_zero = (np.abs(volume.data) <= 0.01 * (high - low)).astype(np.uint8)
    zero_around = ndimage.minimum_filter(near_zero, size=3, mode="constant", cval=1) == 1
    expected = ndimage.zoom(zero_around.astype(np.uint8), [n / m for n, m in zip(out.shape, volume.shape)], order=0,
                            grid_mode=True, mode="nearest").astype(bool)
    assert expected.shape == out.shape and 0.3 < expected.mean() < 0.7
    assert np.all(out[expected] == 0)
    assert np.any(out[~expected] != 0)
    monkeypatch.setattr(inference, "empty_background", lambda lr, shape: np.zeros(shape, dtype=bool))
    ungated = upsample(volume, tiny_model, scale=2.5, device="cpu", consistency="none").data
    assert np.any(ungated[expected] != 0)  # the network alone leaves values there


def test_thick_slices_make_in_plane_views():
    slices = SliceModel(5.0)
    assert self_views((2.0, 2.0, 2.0), "cubic") == [SelfView((0, 1, 2), (2.0, 2.0, 2.0), "cubic")]
    operator = ("kspace", "kspace", slices)
    assert self_views((1.0, 1.0, 5.0), operator) == [
        SelfView((2, 1, 0), (1.0, 1.0, 5.0), operator),
        SelfView((0, 2, 1), (1.0, 1.0, 5.0), operator),
    ]
    operator = ("cubic", slices, "lanczos")
    assert self_views((1.2, 4.0, 1.0), operator) == [
        SelfView((1, 0, 2), (1.0, 4.0, 1.0), operator),
        SelfView((0, 2, 1), (1.0, 4.0, 1.0), operator),
    ]
