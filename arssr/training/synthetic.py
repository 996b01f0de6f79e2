"""Synthetic high-resolution training volumes made from the MNI ICBM152 2009a templates.

The templates ship in the nilearn wheel (``nilearn/datasets/data/``): a T1
and grey/white-matter probability maps, 197 x 233 x 189 voxels of 1 mm, uint8.
The T1 there is skull-stripped: its background is exactly 0.

Template-space maps (computed once, cached for the process):

- ``region``: the brain-ish region, tissue (smoothed GM + WM > 0.5) with holes
  filled, dilated by 3 mm, inside the T1's non-zero head;
- CSF probability ``clip(region - GM - WM, 0, 1)``; ``other``: head voxels outside
  ``region`` (non-brain tissue, which keeps the T1's intensities);
- texture: the T1 minus its least-squares fit ``a GM + b WM + c CSF`` inside
  ``region``, i.e. the detail that the tissue classes do not explain.

Since interpolation is linear, the contrast is made on the template grid and
the composite image is warped once: the same as warping every map with the
same field and mixing them afterwards, at the cost of one map. Maps are kept
cropped to the head (plus a margin) and only output voxels that the warp maps
into it are interpolated; the rest of the grid is background (0).

MONAI's ``Rand3DElastic``/``RandAffine``, ``RandBiasField`` and ``RandGaussianNoise`` are not used
here: they draw from numpy's legacy ``RandomState`` (a second random stream beside the ``Generator``
that ``sample`` takes and that training checkpoints), their elastic field is a Gaussian-smoothed
offset grid where this one is a cubic-spline control grid composed with the affine in one resampling
that interpolates only the voxels that land in the head, and their bias field is a Legendre
polynomial. Swapping them in would change the training data of the shipped models' recipes and the
seeded stream that makes a run and its resume bit for bit equal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from arssr.errors import InputError

TEMPLATE_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}
#: Voxels of margin kept around the head so that cubic interpolation near its edge is exact.
SUPPORT_MARGIN = 3


def mni_template_path(name: str) -> Path:
    """Path of the nilearn copy of the MNI152 2009a ``"t1"``, ``"gm"`` or ``"wm"`` template."""
    if name not in TEMPLATE_FILES:
        raise InputError(f"unknown MNI template {name!r}; known: {', '.join(TEMPLATE_FILES)}")
    try:
        import nilearn
    except ImportError:
        raise InputError("the MNI152 templates come with nilearn: pip install nilearn") from None
    path = Path(nilearn.__file__).parent / "datasets" / "data" / TEMPLATE_FILES[name]
    if not path.is_file():
        raise InputError(f"MNI152 template missing from the nilearn installation: {path}")
    return path


@dataclass(frozen=True)
class _Templates:
    """Template-space maps cropped to ``bounds`` (the head plus a margin); ``shape`` is the full grid."""

    t1: np.ndarray  # [0, 1]
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    other: np.ndarray  # T1 on non-brain head voxels, 0 elsewhere
    texture: np.ndarray
    support: np.ndarray  # head dilated by SUPPORT_MARGIN, uint8
    bounds: tuple[slice, ...]
    shape: tuple[int, ...]
    affine: np.ndarray


@lru_cache(maxsize=1)
def _templates() -> _Templates:
    images = {name: nib.load(mni_template_path(name)) for name in TEMPLATE_FILES}
    t1, gm, wm = (np.asarray(images[name].dataobj, dtype=np.float32) / 255.0 for name in TEMPLATE_FILES)
    head = t1 > 0
    support = ndimage.binary_dilation(head, iterations=SUPPORT_MARGIN)
    bounds = ndimage.find_objects(support.astype(np.uint8))[0]
    t1, gm, wm, head, support = (a[bounds] for a in (t1, gm, wm, head, support))
    tissue = ndimage.binary_fill_holes(ndimage.gaussian_filter(gm + wm, 1.0) > 0.5)
    region = ndimage.binary_dilation(tissue, iterations=3) & head
    csf = np.clip(region - gm - wm, 0.0, 1.0)
    classes = np.stack([gm[region], wm[region], csf[region]], axis=1)
    coefficients = np.linalg.lstsq(classes, t1[region], rcond=None)[0]
    texture = np.zeros_like(t1)
    texture[region] = t1[region] - classes @ coefficients
    other = np.where(region, 0.0, t1).astype(np.float32)
    return _Templates(t1, gm, wm, csf, other, texture, support.astype(np.uint8), bounds, tuple(images["t1"].shape),
                      images["t1"].affine)


@lru_cache(maxsize=16)
def _upsampling_matrix(coarse: int, fine: int) -> np.ndarray:
    """``(fine, coarse)`` cubic-spline interpolation matrix (corner points aligned), from ``zoom`` of unit impulses."""
    matrix = ndimage.zoom(np.eye(coarse), (fine / coarse, 1.0), order=3, mode="nearest")
    return matrix.astype(np.float32)


def smooth_field(rng: np.random.Generator, coarse_shape: tuple[int, ...], shape: tuple[int, ...],
                 std: float) -> np.ndarray:
    """A field of ``N(0, std^2)`` control values on ``coarse_shape`` upsampled (separable cubic spline) to ``shape``."""
    values = rng.normal(0.0, std, coarse_shape).astype(np.float32)
    for axis in reversed(range(len(shape))):  # axis 0 last: the full-size product comes out contiguous
        matrix = _upsampling_matrix(values.shape[axis], shape[axis])
        values = np.moveaxis(np.tensordot(matrix, values, (1, axis)), 0, axis)
    return values


def sharpened(maps: tuple[np.ndarray, ...], power: float) -> tuple[np.ndarray, ...]:
    """Probability maps raised to ``power`` and rescaled so that their voxelwise sum is unchanged."""
    if power == 1.0:
        return maps
    total = sum(maps)
    powered = [m ** np.float32(power) for m in maps]
    scale = total / np.maximum(sum(powered), np.float32(1e-12))
    return tuple(p * scale for p in powered)


def rotation_matrix(angles: np.ndarray) -> np.ndarray:
    """Rotation by ``angles`` (radians) about the three array axes in turn."""
    matrix = np.eye(3)
    for axis, angle in enumerate(angles):
        i, j = [k for k in range(3) if k != axis]
        step = np.eye(3)
        step[[i, i, j, j], [i, j, i, j]] = math.cos(angle), -math.sin(angle), math.sin(angle), math.cos(angle)
        matrix = step @ matrix
    return matrix


@dataclass
class SyntheticMNI:
    """Random variants of the MNI152 head: deformation, contrast, bias field and noise.

    Each :meth:`sample` draws (``U(a, b)``: uniform; template voxels are 1 mm):

    - a warp ``template coordinate = R S (x - c) + c + d(x)`` about the volume
      centre ``c``: ``R`` rotates about each axis by ``U(-max_rotation_deg, +)``,
      ``S = diag(U(1 - max_scale, 1 + max_scale))`` per axis, and ``d`` is an
      elastic displacement whose control vectors, on a grid spanning the volume
      with at most ``control_spacing_mm`` between points, are ``N(0, a^2)`` per
      component with ``a ~ U(0, max_displacement_mm)``, upsampled by cubic
      splines; resampled with ``map_coordinates(order=order)`` (order 1 is
      about twice as fast, order 3 keeps the texture sharper);
    - a contrast: with probability ``p_template`` the T1 to a power
      ``gamma = exp(U(-max_log_gamma, +))``; otherwise class means ``CSF < GM < WM``
      with ``CSF ~ U(0.05, 0.3)`` and steps ``U(0.1, 0.35)`` (T1-like), reversed
      with probability ``p_t2`` (T2-like) or shuffled with probability
      ``p_unordered``; plus ``U(0.5, 1)`` times the template's texture (negated
      for T2-like, random sign when shuffled) and non-brain tissue at ``U(0.5, 1.2)``
      times its T1 intensity; the class maps are first sharpened by a power
      ``U(*tissue_power)`` and renormalised to their sum, which makes tissue
      boundaries crisper than the 152-brain average's (1.7x steeper at power 4);
    - a bias field ``exp(b)``, ``b`` a smooth field on a 4^3 control grid with
      ``N(0, s^2)`` values, ``s ~ U(0, max_bias)``;
    - scaling to a maximum of 255, Gaussian noise with standard deviation
      ``U(0, max_noise) * 255``, and clipping at 0.

    ``sample()`` without a generator uses the instance's own, seeded by ``seed``.
    """

    seed: int = 0
    p_template: float = 0.3
    p_t2: float = 0.2
    p_unordered: float = 0.1
    max_log_gamma: float = 0.4
    tissue_power: tuple[float, float] = (1.0, 1.0)
    max_displacement_mm: float = 2.0
    control_spacing_mm: float = 40.0
    max_rotation_deg: float = 3.0
    max_scale: float = 0.05
    max_bias: float = 0.05
    max_noise: float = 0.02
    order: int = 3
    rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        probabilities = (self.p_template, self.p_t2, self.p_unordered)
        if not all(0.0 <= p <= 1.0 for p in probabilities) or self.p_t2 + self.p_unordered > 1.0:
            raise InputError(f"contrast probabilities must lie in [0, 1] with p_t2 + p_unordered <= 1, got "
                             f"{probabilities}")
        if not (len(self.tissue_power) == 2 and 1.0 <= self.tissue_power[0] <= self.tissue_power[1]):
            raise InputError(f"tissue_power must be a range [low, high] with 1 <= low <= high, got {self.tissue_power}")
        if self.order not in (1, 3):
            raise InputError(f"interpolation order must be 1 or 3, got {self.order}")
        self.rng = np.random.default_rng(self.seed)

    @property
    def affine(self) -> np.ndarray:
        """Voxel-to-world affine of the template grid (MNI space, 1 mm)."""
        return _templates().affine

    def sample(self, rng: np.random.Generator | None = None) -> np.ndarray:
        """One random variant, float32, on the template grid (197 x 233 x 189), about ``[0, 255]``."""
        rng = self.rng if rng is None else rng
        maps = _templates()
        image = self._warp(self._contrast(maps, rng), maps, rng)
        image *= np.exp(smooth_field(rng, (4, 4, 4), image.shape, rng.uniform(0.0, self.max_bias)))
        image *= 255.0 / max(float(image.max()), 1e-6)
        image += rng.standard_normal(image.shape, dtype=np.float32) * np.float32(rng.uniform(0.0, self.max_noise) * 255)
        return np.maximum(image, 0.0, out=image)

    def _contrast(self, maps: _Templates, rng: np.random.Generator) -> np.ndarray:
        if rng.random() < self.p_template:
            return maps.t1 ** np.float32(math.exp(rng.uniform(-self.max_log_gamma, self.max_log_gamma)))
        means = np.cumsum([rng.uniform(0.05, 0.3), rng.uniform(0.1, 0.35), rng.uniform(0.1, 0.35)])
        draw, sign = rng.random(), 1.0
        if draw < self.p_t2:
            means, sign = means[::-1], -1.0
        elif draw < self.p_t2 + self.p_unordered:
            means, sign = rng.permutation(means), rng.choice([-1.0, 1.0])
        weights = [*means, rng.uniform(0.5, 1.2), sign * rng.uniform(0.5, 1.0)]
        classes = sharpened((maps.csf, maps.gm, maps.wm), self._tissue_power(rng))
        image = np.zeros_like(maps.t1)
        for weight, part in zip(weights, (*classes, maps.other, maps.texture)):
            image += np.float32(weight) * part
        return image

    def _tissue_power(self, rng: np.random.Generator) -> float:
        """``U(*tissue_power)``; no draw for ``(1, 1)``, so the default keeps the random stream of earlier releases."""
        low, high = self.tissue_power
        return 1.0 if high == 1.0 else float(rng.uniform(low, high))

    def _warp(self, image: np.ndarray, maps: _Templates, rng: np.random.Generator) -> np.ndarray:
        """Resample the cropped template-space ``image`` onto the full grid; zero where the warp leaves the head."""
        shape = maps.shape
        matrix = rotation_matrix(np.deg2rad(rng.uniform(-self.max_rotation_deg, self.max_rotation_deg, 3)))
        matrix = matrix @ np.diag(rng.uniform(1.0 - self.max_scale, 1.0 + self.max_scale, 3))
        coarse = tuple(math.ceil((n - 1) / self.control_spacing_mm) + 1 for n in shape)
        amplitude = rng.uniform(0.0, self.max_displacement_mm)
        centre = [(n - 1) / 2.0 for n in shape]
        offsets = [(np.arange(n, dtype=np.float32) - np.float32(c)).reshape([-1 if k == axis else 1 for k in range(3)])
                   for axis, (n, c) in enumerate(zip(shape, centre))]
        coords = np.empty((3, *shape), dtype=np.float32)
        for i in range(3):
            coords[i] = smooth_field(rng, coarse, shape, amplitude)
            coords[i] += np.float32(centre[i] - maps.bounds[i].start)
            for j in range(3):
                coords[i] += np.float32(matrix[i, j]) * offsets[j]
        inside = ndimage.map_coordinates(maps.support, coords, order=0, mode="nearest").astype(bool)
        out = np.zeros(shape, dtype=np.float32)
        out[inside] = ndimage.map_coordinates(image, coords[:, inside], order=self.order, mode="nearest",
                                              output=np.float32)
        return out
