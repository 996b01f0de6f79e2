"""How decoding makes the SR result consistent with the decoded LR, and how the encoder fits the parameters.

A file records its consistency operator. Files with band weights (format version 4) take the SR result's
detail over the LR's matching interpolation ``b`` times a detail gain, ``b + g (sr - b)``, and add the
correction that would project it onto the decoded LR, weighted below and above half the LR's Nyquist
frequency (``arssr.consistency.weighted_projection``); files of version 5 have one gain and pair of weights
inside the foreground found in the decoded LR (:func:`decoded_foreground`) and another outside it. The
encoder, which has the original, fits them (:func:`fit`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Metadata key of the consistency band weights, and what it holds while a file is sized, before they are fitted.
#: The zlib size of the metadata varies by a few bytes with the digits; with these it measured at least 3 bytes
#: more than with any fitted weights (tests/compress/test_lr_codec.py checks that margin; it is measured, not proven).
#: Their magnitudes exceed ``arssr.consistency.MAX_WEIGHT``, so a file that held them would be refused.
WEIGHTS_KEY = "consistency_weights"
WEIGHTS_PLACEHOLDER = (-12.345678901, -98.765432109)
#: Metadata key of the detail gain that decoding applies before the band-weighted consistency (the SR result
#: taken as ``b + g (sr - b)``, ``b`` the LR's interpolation that matches the operator), its placeholder (out of
#: range, as above), and the gains tried when it is fitted (every one with its least-squares band weights).
GAIN_KEY = "detail_gain"
GAIN_PLACEHOLDER = -12.345678901
FITTED_GAINS = tuple(round(0.1 * k, 1) for k in range(16))
#: Metadata key of the detail gain and band weights outside the decoded foreground (:func:`decoded_foreground`),
#: ``[gain, low, high]``, and its placeholder; with it, the two keys above apply inside the foreground only. With
#: all three placeholders the metadata measured at least 5 bytes more than with any of 8000 random fitted values
#: (the MNI152 example volume, a SPERR LR at 0.3 and 1 bpp). Its last number is new to the metadata: reusing all
#: three of the others' left 1 byte; three new ones 11, but up to 25 bytes of a small file's budget unused.
BACKGROUND_KEY = "background_decoding"
BACKGROUND_PLACEHOLDER = (-12.345678901, -98.765432109, -87.654321098)
#: Voxels per row of a region's arrays while fitting (``arssr.consistency.sum_of_products`` runs row by row).
REGION_ROW = 1 << 20


def placeholders() -> dict:
    """The metadata a file is sized with before its gains and weights are fitted."""
    return {WEIGHTS_KEY: list(WEIGHTS_PLACEHOLDER), GAIN_KEY: GAIN_PLACEHOLDER,
            BACKGROUND_KEY: list(BACKGROUND_PLACEHOLDER)}


def decoded_foreground(base: np.ndarray) -> np.ndarray:
    """The foreground that decoding finds in ``base``, the decoded LR's interpolation that matches the file's
    operator (``arssr.gain.interpolation``): ``arssr.metrics.brain_mask`` (Otsu's threshold, largest
    component, holes filled), or everything when ``base`` is constant. Encoder and reader agree on it when
    they decode the LR alike (a SIREN LR evaluated on another device may move voxels at the threshold)."""
    from arssr.metrics import brain_mask

    if float(base.min()) == float(base.max()):
        return np.ones(base.shape, dtype=bool)
    return brain_mask(base)


@dataclass(frozen=True)
class Terms:
    """What decoding by region needs of a decoded LR and its SR result: the LR's interpolation ``base`` that
    matches the operator, the projection bands of ``base`` and of the SR result
    (``arssr.consistency.projection_bands``), and the decoded foreground."""

    base: np.ndarray
    base_bands: tuple[np.ndarray, np.ndarray]
    sr_bands: tuple[np.ndarray, np.ndarray]
    inside: np.ndarray

    @classmethod
    def of(cls, lr: np.ndarray, sr: np.ndarray, operator: str) -> Terms:
        from arssr.consistency import projection_bands
        from arssr.gain import interpolation

        base = interpolation(lr, sr.shape, operator)
        return cls(base, projection_bands(base, lr, operator), projection_bands(sr, lr, operator),
                   decoded_foreground(base))


def fit(terms: Terms, sr: np.ndarray, reference: np.ndarray) -> tuple[tuple, tuple]:
    """``((detail gain, band weights) inside, (detail gain, band weights) outside)`` the decoded foreground
    that bring the decoded volume closest to ``reference`` there (squared error before the floor): each gain
    of :data:`FITTED_GAINS` with its least-squares band weights (``arssr.consistency.fit_band_weights``), the
    best kept. Anatomy and background differ in how much of the network's detail and the coded LR's finest
    detail they can use, so each gets its own.

    The projection's correction is affine in the volume and the band split linear, so the bands of
    ``b + g (sr - b)`` are ``(1 - g)`` times those of ``b`` plus ``g`` times those of ``sr``: two projections
    serve every gain, and a voxel's result depends only on its own region's gain and weights."""
    arrays = (terms.base, sr, reference, *terms.base_bands, *terms.sr_bands)
    return tuple(_fit_region(*(_region_rows(a, where) for a in arrays)) for where in (terms.inside, ~terms.inside))


def _region_rows(array: np.ndarray, where: np.ndarray) -> np.ndarray:
    """The voxels of ``array`` where ``where`` holds, float32, as rows of :data:`REGION_ROW` (zero-padded:
    zeros add nothing to the fit's sums)."""
    values = np.asarray(array, dtype=np.float32)[where]
    rows = np.zeros(max(1, -(-values.size // REGION_ROW)) * REGION_ROW, dtype=np.float32)
    rows[:values.size] = values
    return rows.reshape(-1, REGION_ROW)


def _fit_region(base, sr, reference, base_low, base_high, sr_low, sr_high) -> tuple[float, tuple]:
    """:func:`fit` on one region's voxels (:func:`_region_rows`)."""
    from arssr.consistency import fit_band_weights, sum_of_products

    best = None
    for gain in FITTED_GAINS:
        guess, bands = _scaled_detail(gain, base, sr, (base_low, base_high), (sr_low, sr_high))
        weights = fit_band_weights(guess, bands, reference)
        error = guess + np.float32(weights[0]) * bands[0] + np.float32(weights[1]) * bands[1] - reference
        error = sum_of_products(error, error)
        if best is None or error < best[0]:
            best = (error, gain, weights)
    return best[1], best[2]


def _scaled_detail(gain: float, base, sr, base_bands, sr_bands) -> tuple[np.ndarray, list[np.ndarray]]:
    """``b + g (sr - b)`` and the projection bands it has (those of ``b`` and ``sr`` mixed alike)."""
    g = np.float32(gain)
    return base + g * (sr - base), [(1 - g) * b + g * s for b, s in zip(base_bands, sr_bands)]


def consistent(rule: tuple, lr: np.ndarray, sr: np.ndarray, terms: Terms | None = None) -> np.ndarray:
    """``sr`` projected onto the decoded ``lr`` through a file's operator (``rule``: operator, floor, band
    weights, detail gain and background ``[gain, low, high]``, checked, each but the operator possibly
    ``None``), or, with band weights, its detail scaled by the file's gain and then given the projection's
    correction weighted per band (``arssr.consistency.weighted_projection``): a lossy LR is not trusted to its
    finest detail. With a background gain and weights, those apply outside the decoded foreground. ``terms``:
    :class:`Terms` of ``lr`` and ``sr`` if the caller has them already."""
    from arssr.consistency import check_operator, project, weighted_projection
    from arssr.gain import interpolation

    operator, floor, weights, gain, background = rule
    check_operator(operator)  # before the gain's interpolation, which knows only the degradations
    if weights is None:
        return project(sr, lr, operator, floor)
    if gain is None:
        return weighted_projection(sr, lr, operator, weights, floor)
    if background is None:
        base = interpolation(lr, sr.shape, operator) if terms is None else terms.base
        return weighted_projection(base + np.float32(gain) * (sr - base), lr, operator, weights, floor)
    terms = Terms.of(lr, sr, operator) if terms is None else terms
    out = np.empty(sr.shape, dtype=np.float32)
    for where, (g, low, high) in ((terms.inside, (gain, *weights)), (~terms.inside, background)):
        guess, bands = _scaled_detail(g, terms.base[where], sr[where], [b[where] for b in terms.base_bands],
                                      [b[where] for b in terms.sr_bands])
        out[where] = guess + np.float32(low) * bands[0] + np.float32(high) * bands[1]
    return out if floor is None else np.maximum(out, floor, out=out)
