"""Synthetic MNI152 variants: determinism, valid output, small smooth warps and controllable contrast."""

import time

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from arssr.errors import InputError
from arssr.metrics import brain_mask
from arssr.training.synthetic import SyntheticMNI, mni_template_path, sharpened, smooth_field

MNI_SHAPE = (197, 233, 189)
NO_WARP = {"max_displacement_mm": 0.0, "max_rotation_deg": 0.0, "max_scale": 0.0}


def load(name: str) -> np.ndarray:
    return np.asarray(nib.load(mni_template_path(name)).dataobj, dtype=np.float32)


@pytest.fixture(scope="module")
def template() -> np.ndarray:
    return load("t1")


@pytest.fixture(scope="module")
def draws():
    """Two successive draws of a seeded generator, and a draw from an explicit generator with the same seed."""
    generator = SyntheticMNI(seed=7)
    first = generator.sample()  # also loads the templates
    start = time.perf_counter()
    second = generator.sample()
    print(f"\nsynthetic MNI152 sample {MNI_SHAPE}: {time.perf_counter() - start:.2f} s")
    return first, second, SyntheticMNI(seed=99).sample(np.random.default_rng(7))


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.sum(a & b) / (a.sum() + b.sum())


def test_same_seed_gives_the_same_volume_and_new_draws_differ(draws):
    first, second, from_generator = draws
    np.testing.assert_array_equal(first, from_generator)
    assert np.abs(first - second).mean() > 1.0


def test_output_is_a_finite_non_negative_float32_volume_on_the_template_grid(draws):
    for volume in draws:
        assert volume.shape == MNI_SHAPE and volume.dtype == np.float32
        assert np.isfinite(volume).all() and volume.min() >= 0.0
        assert 200.0 < volume.max() < 300.0


def test_without_warp_bias_noise_or_gamma_the_template_comes_back(template):
    plain = SyntheticMNI(p_template=1.0, max_log_gamma=0.0, max_bias=0.0, max_noise=0.0, **NO_WARP).sample()
    np.testing.assert_allclose(plain, template * (255.0 / template.max()), atol=1e-3)


def test_elastic_deformation_is_small(template):
    brain = template > 0
    variant = SyntheticMNI(seed=1, p_template=1.0, max_rotation_deg=0.0, max_scale=0.0).sample()
    assert np.corrcoef(variant[brain], template[brain])[0, 1] > 0.7


def test_full_warp_keeps_the_head_in_place(template):
    brain = template > 0
    variant = SyntheticMNI(seed=2, p_template=1.0).sample()
    smooth = [ndimage.gaussian_filter(v, 2.0)[brain] for v in (variant, template)]
    assert np.corrcoef(*smooth)[0, 1] > 0.75
    assert dice(brain_mask(variant), brain_mask(template)) > 0.9


def test_smooth_field_interpolates_its_control_values_and_is_smooth():
    field = smooth_field(np.random.default_rng(3), (5, 5, 5), (41, 41, 41), 2.0)
    control = np.random.default_rng(3).normal(0.0, 2.0, (5, 5, 5)).astype(np.float32)
    np.testing.assert_allclose(field[::10, ::10, ::10], control, atol=1e-5)
    # No steeper than 1.5 times the steepest straight line between neighbouring control points (10 voxels apart).
    steepest = max(np.abs(np.diff(control, axis=axis)).max() for axis in range(3)) / 10
    assert max(np.abs(g).max() for g in np.gradient(field)) < 1.5 * steepest


@pytest.mark.parametrize(
    ("options", "ordering"),
    [({"p_t2": 0.0, "p_unordered": 0.0}, "t1"), ({"p_t2": 1.0, "p_unordered": 0.0}, "t2")],
)
def test_forced_contrast_orders_the_tissues(template, options, ordering):
    gm, wm = load("gm") / 255.0, load("wm") / 255.0
    head = ndimage.binary_erosion(template > 0, iterations=3)
    masks = {"gm": head & (gm > 0.9), "wm": head & (wm > 0.9), "csf": head & (gm + wm < 0.02)}
    volume = SyntheticMNI(seed=4, p_template=0.0, **options, **NO_WARP).sample()
    means = {name: volume[mask].mean() for name, mask in masks.items()}
    if ordering == "t1":
        assert means["csf"] < means["gm"] < means["wm"], means
    else:
        assert means["wm"] < means["gm"] < means["csf"], means


def test_sharpened_maps_keep_their_sum_and_steepen():
    p = np.array([0.6, 0.3, 0.0], dtype=np.float32)
    q = np.array([0.4, 0.2, 0.5], dtype=np.float32)
    sharp_p, sharp_q = sharpened((p, q), 2.0)
    np.testing.assert_allclose(sharp_p + sharp_q, p + q, rtol=1e-6)
    # 0.6 of 1.0 -> 0.36 / (0.36 + 0.16); 0.3 of 0.5 -> 0.09 / (0.09 + 0.04) * 0.5; an empty class stays empty.
    np.testing.assert_allclose(sharp_p, [0.36 / 0.52, 0.09 / 0.13 * 0.5, 0.0], rtol=1e-6)
    assert sharpened((p, q), 1.0) == (p, q)


def test_tissue_power_gives_crisper_boundaries_on_the_same_contrast(template):
    gm, wm = load("gm") / 255.0, load("wm") / 255.0
    head = ndimage.binary_erosion(template > 0, iterations=3)
    options = dict(seed=5, p_template=0.0, p_t2=0.0, p_unordered=0.0, max_bias=0.0, max_noise=0.0, **NO_WARP)
    soft, crisp = (SyntheticMNI(tissue_power=(power, power), **options).sample() for power in (1.0, 4.0))
    pure_wm = head & (wm > 0.95)
    np.testing.assert_allclose(crisp[pure_wm].mean(), soft[pure_wm].mean(), rtol=0.02)
    boundary = head & (np.abs(gm - wm) < 0.5) & (gm + wm > 0.8)  # GM/WM partial volume
    steepness = [np.linalg.norm(np.gradient(v), axis=0)[boundary].mean() for v in (soft, crisp)]
    assert steepness[1] > 1.4 * steepness[0], steepness


def test_template_paths_and_bad_options():
    assert {mni_template_path(name).name.split("_")[2] for name in ("t1", "gm", "wm")} == {"t1", "gm", "wm"}
    with pytest.raises(InputError, match="unknown MNI template"):
        mni_template_path("csf")
    with pytest.raises(InputError, match="p_t2"):
        SyntheticMNI(p_t2=0.7, p_unordered=0.5)
    with pytest.raises(InputError, match="order"):
        SyntheticMNI(order=2)
    with pytest.raises(InputError, match="tissue_power"):
        SyntheticMNI(tissue_power=(0.5, 2.0))
