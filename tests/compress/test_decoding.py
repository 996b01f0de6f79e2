"""How decoding makes the SR result consistent with the decoded LR (``arssr.compress.decoding``): the fit against
an exhaustive search computed with numpy, each rule of ``consistent``, the placeholders, on real anatomy (MNI152
T1) and synthetic volumes."""

import numpy as np
import pytest
import torch

from arssr.compress.decoding import (BACKGROUND_KEY, FITTED_GAINS, GAIN_KEY, WEIGHTS_KEY, Terms, consistent,
                                     decoded_foreground, fit, placeholders)
from arssr.consistency import (MAX_WEIGHT, WEIGHT_DECIMALS, fit_band_weights, project, projection_bands,
                               weighted_projection)
from arssr.degrade import degrade, resample
from arssr.errors import InputError
from arssr.gain import interpolation
from arssr.intensity import normalize
from arssr.metrics import brain_mask
from arssr.models import load_model
from arssr.models.tiling import super_resolve
from arssr.protocol import CONSISTENCY_OPERATORS
from conftest import smooth_volume

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def coded(mni_crop):
    """The MNI152 crop in [0, 1], its k-space LR at half the size with coding noise, and the shipped model's SR."""
    truth = normalize(mni_crop.data, (float(mni_crop.data.min()), float(mni_crop.data.max())))
    lr = degrade(torch.from_numpy(truth.astype(np.float64)), tuple(n // 2 for n in truth.shape), "kspace").numpy()
    lr = (lr + np.random.default_rng(2).normal(0, 0.03, lr.shape)).astype(np.float32)
    return truth, lr, super_resolve(lr, load_model(None), truth.shape)


def test_placeholders_are_out_of_every_fitted_range():
    """Files are sized with values that fitting never gives: weights beyond MAX_WEIGHT, gains below 0; the fitted
    gains are 0, 0.1, ..., 1.5; each call gives new lists."""
    assert FITTED_GAINS == tuple(np.round(np.arange(16) / 10, 1))
    meta = placeholders()
    assert set(meta) == {WEIGHTS_KEY, GAIN_KEY, BACKGROUND_KEY}
    assert len(meta[WEIGHTS_KEY]) == 2 and min(abs(w) for w in meta[WEIGHTS_KEY]) > MAX_WEIGHT
    assert meta[GAIN_KEY] < min(FITTED_GAINS)
    gain, *weights = meta[BACKGROUND_KEY]
    assert gain < min(FITTED_GAINS) and min(abs(w) for w in weights) > MAX_WEIGHT
    meta[WEIGHTS_KEY].append(0.0)
    meta[BACKGROUND_KEY].clear()
    assert len(placeholders()[WEIGHTS_KEY]) == 2 and len(placeholders()[BACKGROUND_KEY]) == 3


@pytest.mark.parametrize("operator, method", [("kspace", "kspace"), ("gaussian", "cubic")])
def test_terms_are_the_matching_interpolation_its_bands_and_foreground(coded, operator, method):
    """``Terms.of``: the LR's interpolation by the method matching the operator, the projection's correction of it
    and of the SR result split into two bands that add up to it, and the foreground of the interpolation."""
    _, lr, sr = coded
    terms = Terms.of(lr, sr, operator)
    np.testing.assert_allclose(terms.base, resample(torch.from_numpy(lr), sr.shape, method).numpy(), atol=1e-6)
    for volume, bands in ((terms.base, terms.base_bands), (sr, terms.sr_bands)):
        np.testing.assert_allclose(bands[0] + bands[1], project(volume, lr, operator) - volume, atol=1e-5)
        assert np.abs(bands[0]).max() > 0 and np.abs(bands[1]).max() > 0
    assert terms.inside.dtype == bool and np.array_equal(terms.inside, brain_mask(terms.base))
    assert 0.2 < terms.inside.mean() < 0.9


@pytest.mark.parametrize("gain", [0.0, 0.7, 1.5])
def test_bands_of_the_scaled_detail_are_the_mixed_bands(coded, gain):
    """What ``fit`` relies on: the bands of ``b + g (sr - b)`` are ``(1 - g)`` times those of ``b`` plus ``g`` times
    those of ``sr``, checked against projecting ``b + g (sr - b)`` itself."""
    _, lr, sr = coded
    terms = Terms.of(lr, sr, "kspace")
    direct = projection_bands(terms.base + np.float32(gain) * (sr - terms.base), lr, "kspace")
    for band, base_band, sr_band in zip(direct, terms.base_bands, terms.sr_bands):
        np.testing.assert_allclose(band, (1 - gain) * base_band + gain * sr_band, atol=1e-5)


def test_fit_is_the_exhaustive_search_in_each_region(coded):
    """Every fitted gain with numpy's least-squares band weights (rounded to WEIGHT_DECIMALS) on the region's
    voxels of the bands of ``b + g (sr - b)`` projected directly: ``fit`` reaches the least squared error of that
    search inside and outside the decoded foreground, with its gain and weights."""
    truth, lr, sr = coded
    before = [a.copy() for a in coded]
    terms = Terms.of(lr, sr, "kspace")
    fitted = fit(terms, sr, truth)
    for where, (gain, weights) in zip((terms.inside, ~terms.inside), fitted):
        searched = []
        for g in FITTED_GAINS:
            guess = (terms.base + np.float32(g) * (sr - terms.base)).astype(np.float64)
            bands = [b.astype(np.float64) for b in projection_bands(guess.astype(np.float32), lr, "kspace")]
            columns = np.stack([b[where] for b in bands], axis=1)
            w = np.linalg.lstsq(columns, truth[where] - guess[where], rcond=None)[0]
            w = np.round(np.clip(w, -MAX_WEIGHT, MAX_WEIGHT), WEIGHT_DECIMALS)
            error = np.sum((guess[where] + columns @ w - truth[where]) ** 2)
            searched.append((error, g, tuple(w)))
        best_error, best_gain, best_weights = min(searched)
        assert gain == best_gain
        np.testing.assert_allclose(weights, best_weights, atol=10.0**-WEIGHT_DECIMALS)
        assert searched[FITTED_GAINS.index(gain)][0] <= best_error * (1 + 1e-6)
        assert best_error < min(e for e, g, _ in searched if g != best_gain)
    for array, copy in zip(coded, before):
        np.testing.assert_array_equal(array, copy)


def test_consistent_without_weights_is_the_projection(coded):
    _, lr, sr = coded
    np.testing.assert_array_equal(consistent(("kspace", 0.0, None, None, None), lr, sr),
                                  project(sr, lr, "kspace", 0.0))
    np.testing.assert_array_equal(consistent(("none", None, None, None, None), lr, sr), sr)


def test_consistent_with_weights_is_the_weighted_projection(coded):
    """Weights (1, 1): the projection; (0, 0): the SR result itself; a floor clips once."""
    _, lr, sr = coded
    np.testing.assert_allclose(consistent(("kspace", None, (1.0, 1.0), None, None), lr, sr), project(sr, lr, "kspace"),
                               atol=1e-5)
    np.testing.assert_allclose(consistent(("kspace", None, (0.0, 0.0), None, None), lr, sr), sr, atol=0)
    darker = sr - np.float32(sr.max() / 2)  # an SR result that dips below 0 in the background, whatever the model
    unfloored = consistent(("kspace", None, (0.8, 0.3), None, None), lr, darker)
    assert unfloored.min() < 0
    np.testing.assert_array_equal(consistent(("kspace", 0.0, (0.8, 0.3), None, None), lr, darker),
                                  np.maximum(unfloored, 0.0))


def test_gain_zero_with_the_projection_drops_the_sr_result(coded):
    """With gain 0 and weights (1, 1) decoding is the projection of the LR's k-space interpolation: the same for any
    SR result (the network's, zeros, the network's flipped), and degrading back to the LR."""
    _, lr, sr = coded
    expected = project(resample(torch.from_numpy(lr), sr.shape, "kspace").numpy(), lr, "kspace")
    for estimate in (sr, np.zeros_like(sr), sr[::-1].copy()):
        decoded = consistent(("kspace", None, (1.0, 1.0), 0.0, None), lr, estimate)
        np.testing.assert_allclose(decoded, expected, atol=1e-5)
    again = degrade(torch.from_numpy(decoded.astype(np.float64)), lr.shape, "kspace").numpy()
    np.testing.assert_allclose(again, lr, atol=1e-4)


def test_given_terms_decode_as_computed_ones(coded):
    _, lr, sr = coded
    rule = ("kspace", 0.0, (0.9, 0.2), 0.7, (1.3, 0.4, -0.5))
    np.testing.assert_array_equal(consistent(rule, lr, sr, Terms.of(lr, sr, "kspace")), consistent(rule, lr, sr))


def test_synthetic_constant_interpolation_is_all_foreground():
    volume = smooth_volume((8, 9, 10))
    assert decoded_foreground(np.full(volume.shape, 7.5, np.float32)).all()
    assert decoded_foreground(np.full(volume.shape, 7.5, np.float32)).shape == volume.shape
    assert not decoded_foreground(volume).all()


@pytest.mark.parametrize("rule, sr_shape, message", [
    (("none", None, (1.0, 1.0), None, None), (24, 28, 20), "weighted consistency needs an operator, not 'none'"),
    (("fft", None, None, None, None), (24, 28, 20), "unknown consistency operator 'fft'"),
    (("kspace", None, None, None, None), (10, 28, 20),
     r"consistency needs a 3D output at least as large as its 3D input, got \(10, 28, 20\) and \(12, 14, 10\)"),
])
def test_bad_rules_are_input_errors(coded, rule, sr_shape, message):
    _, lr, _ = coded
    with pytest.raises(InputError, match=message):
        consistent(rule, lr, np.ones(sr_shape, np.float32))


@pytest.mark.parametrize("operator", ["fft", "linear"])
@pytest.mark.parametrize("gain, background", [(1.0, None), (0.5, (1.0, 1.0, 1.0))])
def test_unknown_operators_with_a_gain_are_named_against_the_consistency_operators(coded, operator, gain,
                                                                                     background):
    """With a gain, decoding interpolates the LR first; its error still names the consistency operators."""
    _, lr, sr = coded
    known = ", ".join(CONSISTENCY_OPERATORS)
    assert known == "kspace, cubic, lanczos, gaussian, none"
    with pytest.raises(InputError, match=f"^unknown consistency operator '{operator}'; known: {known}$"):
        consistent((operator, None, (1.0, 1.0), gain, background), lr, sr)


def test_fitted_decoding_is_the_best_gain_and_weights_on_real_anatomy(mni_crop):
    """MNI152 crop, its LR coded lossily (noise), the shipped model: in each region (inside and outside the
    foreground found in the decoded LR), the fitted detail gain and band weights decode closer to the original
    than the projection (gain 1, weights 1, 1) and than the neighbouring gains with their own least-squares
    weights."""
    model = load_model(None)
    truth = normalize(mni_crop.data, (float(mni_crop.data.min()), float(mni_crop.data.max())))
    lr = degrade(torch.from_numpy(truth.astype(np.float64)), tuple(n // 2 for n in truth.shape), "kspace").numpy()
    lr = (lr + np.random.default_rng(0).normal(0, 0.03, lr.shape)).astype(np.float32)
    sr = super_resolve(lr, model, truth.shape)
    regions = fit(Terms.of(lr, sr, "kspace"), sr, truth)
    base = interpolation(lr, truth.shape, "kspace")
    inside = decoded_foreground(base)
    assert 0.2 < inside.mean() < 0.9 and (inside == brain_mask(truth)).mean() > 0.9  # the crop's real foreground

    for where, (gain, weights) in zip((inside, ~inside), regions):
        assert gain in FITTED_GAINS

        def error(g, w):
            decoded = weighted_projection(base + np.float32(g) * (sr - base), lr, "kspace", w)
            return float(np.sum((decoded - truth)[where] ** 2))

        best = error(gain, weights)
        assert best < error(1.0, (1.0, 1.0))
        for other in (gain - 0.1, gain + 0.1):
            guess = base + np.float32(other) * (sr - base)
            bands = [band[where] for band in projection_bands(guess, lr, "kspace")]
            assert best <= error(other, fit_band_weights(guess[where], bands, truth[where])) * (1 + 1e-6)


def test_decoding_by_region_puts_each_regions_parameters_in_its_place(mni_crop):
    """MNI152 crop, a lossy LR, the shipped model: a file's gain and weights apply inside the foreground found
    in the LR's interpolation, the background's outside it, each as the one-pair decoding would everywhere;
    a constant interpolation is all foreground."""
    model = load_model(None)
    truth = normalize(mni_crop.data, (float(mni_crop.data.min()), float(mni_crop.data.max())))
    lr = degrade(torch.from_numpy(truth.astype(np.float64)), tuple(n // 2 for n in truth.shape), "kspace").numpy()
    lr = (lr + np.random.default_rng(1).normal(0, 0.03, lr.shape)).astype(np.float32)
    sr = super_resolve(lr, model, truth.shape)
    base = interpolation(lr, truth.shape, "kspace")
    inside = brain_mask(base)
    assert 0.2 < inside.mean() < 0.9 and np.array_equal(decoded_foreground(base), inside)
    decoded = consistent(("kspace", None, [0.9, 0.2], 0.7, [1.3, 0.4, -0.5]), lr, sr)

    def one_pair(gain, weights):
        return weighted_projection(base + np.float32(gain) * (sr - base), lr, "kspace", weights)

    expected = np.where(inside, one_pair(0.7, (0.9, 0.2)), one_pair(1.3, (0.4, -0.5)))
    np.testing.assert_allclose(decoded, expected, atol=1e-5)
    assert decoded_foreground(np.full((4, 5, 6), 0.3, np.float32)).all()
