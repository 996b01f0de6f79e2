"""Tissue and region labels for segmentation-based evaluation (Dice), by ANTs Atropos.

Atropos runs k-means initialised, three classes, inside a brain mask; its
classes are renumbered by mean intensity (1 darkest), which on a T1 volume
is CSF, GM, WM. With an atlas drawn on the same brain (AAL on Colin27,
the AAL atlas, ``aal.nii.gz``), two more of the paper's six regions are split
off: deep grey matter (Atropos GM inside AAL caudate, putamen, pallidum and
thalamus) and cerebellum (Atropos GM or WM inside the AAL cerebellum and
vermis). AAL has no brain stem, so that sixth region is not available.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from arssr.errors import InputError

TISSUES = {"CSF": 1, "GM": 2, "WM": 3}
#: Amplitude of the deterministic uniform dither added to the [0, 1]-normalised copy that Atropos segments:
#: its variance (3.3e-5) keeps every class above the 1e-6 at which Atropos calls a covariance singular.
DITHER = 1e-2
REGIONS = {**TISSUES, "deep GM": 4, "cerebellum": 5}
#: AAL labels of the caudate, putamen, pallidum and thalamus (left and right).
AAL_DEEP_GREY = tuple(range(71, 79))
#: AAL labels of the cerebellar hemispheres (91-108) and the vermis (109-116).
AAL_CEREBELLUM = tuple(range(91, 117))


def atropos_tissues(
    data: np.ndarray,
    mask: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    classes: int = 3,
    iterations: int = 5,
    smoothing: float = 0.2,
) -> np.ndarray:
    """Atropos labels ``0`` (outside ``mask``) and ``1..classes`` ordered by mean intensity.

    ``smoothing`` is the MRF weight and ``iterations`` the EM iterations of
    ``ants.atropos``; k-means initialisation makes the result deterministic.
    Atropos segments a copy normalised to [0, 1] inside the mask with a tiny
    seeded dither (:data:`DITHER`), so integer data, where a class can hold a
    single intensity, do not stop it with a singular covariance.
    """
    import ants

    data = np.asarray(data, dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    if data.shape != mask.shape:
        raise InputError(f"mask shape {mask.shape} does not match the volume's shape {data.shape}")
    if mask.sum() < classes:
        raise InputError(f"the brain mask has {int(mask.sum())} voxels: too few for {classes} tissue classes")
    spacing = tuple(float(s) for s in spacing)
    image = ants.from_numpy(_dithered(data, mask), spacing=spacing)
    mask_image = ants.from_numpy(mask.astype(np.float32), spacing=spacing)
    result = ants.atropos(a=image, x=mask_image, i=f"kmeans[{classes}]", m=f"[{smoothing},1x1x1]",
                          c=f"[{iterations},0]", v=0)
    labels = result["segmentation"].numpy().astype(np.uint8)
    means = [data[labels == k].mean() if (labels == k).any() else np.inf for k in range(1, classes + 1)]
    renumber = np.zeros(classes + 1, dtype=np.uint8)
    renumber[1 + np.argsort(means)] = np.arange(1, classes + 1)
    return renumber[labels]


def _dithered(data: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``data`` mapped to [0, 1] over ``mask``, plus a uniform dither of :data:`DITHER` (seed 0)."""
    low, high = float(data[mask].min()), float(data[mask].max())
    scaled = (data.astype(np.float64) - low) / (high - low if high > low else 1.0)
    noise = np.random.default_rng(0).uniform(-DITHER, DITHER, data.shape)
    return (scaled + noise).astype(np.float32)


def atlas_regions(tissues: np.ndarray, atlas: np.ndarray) -> np.ndarray:
    """Tissue labels (:data:`TISSUES`) with deep GM and cerebellum split off by an AAL atlas (:data:`REGIONS`)."""
    if tissues.shape != atlas.shape:
        raise InputError(f"atlas shape {atlas.shape} does not match the volume's shape {tissues.shape}")
    regions = tissues.copy()
    regions[np.isin(atlas, AAL_DEEP_GREY) & (tissues == TISSUES["GM"])] = REGIONS["deep GM"]
    regions[np.isin(atlas, AAL_CEREBELLUM) & (tissues >= TISSUES["GM"])] = REGIONS["cerebellum"]
    return regions


def segment(data: np.ndarray, mask: np.ndarray, spacing: Sequence[float], atlas: np.ndarray | None = None) -> np.ndarray:
    """:func:`atropos_tissues`, then :func:`atlas_regions` when an atlas is given."""
    tissues = atropos_tissues(data, mask, spacing)
    return tissues if atlas is None else atlas_regions(tissues, atlas)
