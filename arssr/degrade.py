"""Degradation models (HR volume -> LR volume) and the interpolators that upsample back, in torch.

Shapes: a volume is ``(D0, D1, D2)`` or ``(B, C, D0, D1, D2)``; the last three
axes are resampled. Degradations only downsample: per axis ``1 <= m <= n``
(``m == n`` leaves that axis untouched); :func:`resample` goes either way and
also offers ``nearest`` and ``linear``. Give ``out_shape`` or ``scale``
(``m = round(n * scale)`` as :func:`arssr.geometry.output_shape`).

Grid (docs/explanation/geometry.md): LR voxel ``j`` sits at HR voxel coordinate
``(j + 0.5) * n / m - 0.5`` on every axis, for every model.

Every model is linear and separable: an ``(m, n)`` matrix per axis (built in
float64, cached) applied along each axis by :func:`apply_along_axis`.
Boundary: half-sample symmetric reflection (``d c b a | a b c d | d c b a``,
scipy's ``mode="reflect"``), so the volume's outer faces act as mirrors.

- ``cubic``: cubic B-spline interpolation, equal to
  ``scipy.ndimage.zoom(x, m / n, order=3, mode="reflect", grid_mode=True)``
  (and to ``map_coordinates(..., order=3, mode="reflect")`` at the LR
  coordinates); no antialiasing, as in the paper's protocol.
- ``kspace``: centred k-space truncation (an MR acquisition at lower
  resolution); periodic, so no boundary mode. Intensities are kept.
- ``lanczos``: Lanczos-3, kernel stretched by ``n / m`` (antialiased),
  weights normalised to sum 1.
- ``gaussian``: Gaussian blur with FWHM = ``n / m`` HR voxels
  (``sigma = FWHM / (2 sqrt(2 ln 2))``), then linear interpolation at the LR
  coordinates: ``gaussian_filter(x, sigma, mode="reflect", truncate=4)``
  followed by ``map_coordinates(..., order=1)`` in scipy terms.

Slice model (2D multi-slice acquisitions, :class:`SliceModel`): along a
thick axis, LR slice ``j`` (same grid) is the HR signal, taken as constant
over each HR voxel ``[i - 0.5, i + 0.5]``, averaged under a slice profile
centred on the slice: ``boxcar`` (the exact area-weighted mean over a window
of ``thickness`` HR voxels, partial voxels included) or ``gaussian`` (FWHM =
``thickness``). ``thickness`` may differ from the slice spacing ``n / m``:
smaller leaves gaps of HR voxels that no slice sees, larger makes slices
overlap. Per-axis operators (:data:`Operator`) mix it with the models above.

Optional corruptions of the LR volume (:func:`degrade`, ``arssr.corruptions``): a
smooth multiplicative bias field, then Gaussian or Rician noise.

Not MONAI's resamplers: no MONAI transform downsamples by k-space truncation to
``round(n / k)`` voxels on the aligned grid above (its GibbsNoise truncates
k-space but keeps the shape).
"""

from __future__ import annotations

import cmath
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Sequence, Union

import torch

from arssr import geometry
from arssr.corruptions import NOISE_TYPES, add_noise, bias_field
from arssr.errors import InputError
from arssr.protocol import SLICE_CORRECTIONS, SLICE_PROFILES

#: Pole of the cubic B-spline prefilter.
SPLINE_POLE = math.sqrt(3.0) - 2.0
LANCZOS_LOBES = 3
FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))
GAUSSIAN_TRUNCATE = 4.0


# ---------------------------------------------------------------------------
# 1D building blocks
# ---------------------------------------------------------------------------


def lr_coordinates(n: int, m: int) -> torch.Tensor:
    """HR voxel coordinate of each of ``m`` LR voxels, shape ``(m,)``, float64."""
    return torch.from_numpy(geometry.source_coordinates(n, m))


def reflect_index(index: torch.Tensor, n: int) -> torch.Tensor:
    """Fold integer indices into ``[0, n)`` by half-sample symmetric reflection."""
    index = torch.remainder(index, 2 * n)
    return torch.where(index >= n, 2 * n - 1 - index, index)


def _weights_matrix(index: torch.Tensor, weights: torch.Tensor, n: int) -> torch.Tensor:
    """``(rows, n)`` matrix from per-row taps ``index``/``weights`` ``(rows, taps)``, reflected at the edges."""
    matrix = torch.zeros(index.shape[0], n, dtype=torch.float64)
    return matrix.scatter_add_(1, reflect_index(index, n), weights)


def _kernel_matrix(centres: torch.Tensor, n: int, radius: float, kernel: Callable[[torch.Tensor], torch.Tensor]):
    """Rows ``kernel(i - centre)`` over the taps strictly within ``radius``, normalised to sum 1."""
    first = torch.floor(centres - radius).long() + 1
    taps = int(math.ceil(2 * radius)) + 1
    index = first[:, None] + torch.arange(taps)
    offsets = index - centres[:, None]
    weights = torch.where(offsets.abs() < radius, kernel(offsets), torch.zeros_like(offsets))
    weights = weights / weights.sum(dim=1, keepdim=True)
    return _weights_matrix(index, weights, n)


def bspline_prefilter(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Cubic B-spline coefficients of the samples ``x`` along ``dim`` (same shape).

    Causal then anticausal recursive filter with pole ``sqrt(3) - 2`` and exact
    initial values for the half-sample symmetric extension: the inverse of
    the B-spline sampling matrix, as
    ``scipy.ndimage.spline_filter1d(x, order=3, mode="reflect", axis=dim)``
    (scipy's start value is slightly off on axes of a few voxels, gh-24550).
    """
    z = SPLINE_POLE
    c = x.movedim(dim, 0) * ((1 - z) * (1 - 1 / z))
    n = c.shape[0]
    if n == 1:
        return x.clone()
    # Causal start: sum over one period (2n) of the reflected signal, c[0] c[0] c[1] .. c[n-1] c[n-1] .. c[1].
    period = torch.cat([c[:1], c, c[1:].flip(0)])
    powers = z ** torch.arange(2 * n, dtype=torch.float64)
    powers = powers.to(c.dtype).reshape(-1, *[1] * (c.dim() - 1))
    causal = [(powers * period).sum(0) / (1 - z ** (2 * n))]
    for i in range(1, n):
        causal.append(c[i] + z * causal[-1])
    anticausal = [causal[-1] * (z / (z - 1))]
    for i in range(n - 2, -1, -1):
        anticausal.append(z * (anticausal[-1] - causal[i]))
    return torch.stack(anticausal[::-1]).movedim(0, dim)


def _cubic_bspline(t: torch.Tensor) -> torch.Tensor:
    t = t.abs()
    return torch.where(t < 1, 2 / 3 - t**2 + t**3 / 2, (2 - t) ** 3 / 6)


def _lanczos(t: torch.Tensor) -> torch.Tensor:
    return torch.sinc(t) * torch.sinc(t / LANCZOS_LOBES)


def cubic_matrix(n: int, m: int) -> torch.Tensor:
    """``(m, n)``: B-spline prefilter, then the cubic B-spline at the LR coordinates."""
    prefilter = bspline_prefilter(torch.eye(n, dtype=torch.float64), dim=0)
    sample = _kernel_matrix(lr_coordinates(n, m), n, 2.0, _cubic_bspline)
    return sample @ prefilter


def kspace_matrix(n: int, m: int) -> torch.Tensor:
    """``(m, n)``: band-limited resampling after a phase ramp that moves the grid.

    Downsampling (``m < n``) keeps the ``m`` lowest frequencies; for even ``m``
    the LR Nyquist bin takes the mean of the HR bins ``+m/2`` and ``-m/2``, so
    real input gives real output. Upsampling (``m > n``) is zero-filled k-space
    interpolation, the input's Nyquist bin split evenly between ``+n/2`` and
    ``-n/2``. Scaled by ``m / n`` so intensities are kept.
    """
    raw = torch.fft.fft(torch.eye(n, dtype=torch.complex128), dim=0)
    shift = (n / m - 1) / 2  # input coordinate of output voxel 0
    spectrum = raw * torch.exp(2j * math.pi * shift * torch.fft.fftfreq(n, dtype=torch.float64))[:, None]
    small = min(n, m)
    freqs = torch.remainder(torch.round(torch.fft.fftfreq(small, dtype=torch.float64) * small).long(), max(n, m))
    if m <= n:
        kept = spectrum[freqs]
        if m % 2 == 0:
            kept[m // 2] = (spectrum[m // 2] + spectrum[n - m // 2]) / 2
    else:
        kept = torch.zeros(m, n, dtype=torch.complex128)
        kept[freqs] = spectrum
        if n % 2 == 0:  # each half of the Nyquist bin moves with its own frequency, +1/2 and -1/2
            kept[n // 2] = raw[n // 2] / 2 * cmath.exp(1j * math.pi * shift)
            kept[m - n // 2] = raw[n // 2] / 2 * cmath.exp(-1j * math.pi * shift)
    return torch.fft.ifft(kept, dim=0).real * (m / n)


def lanczos_matrix(n: int, m: int) -> torch.Tensor:
    """``(m, n)``: Lanczos-3, stretched by ``n / m`` when downsampling, rows summing to 1."""
    factor = max(1.0, n / m)
    return _kernel_matrix(lr_coordinates(n, m), n, LANCZOS_LOBES * factor, lambda t: _lanczos(t / factor))


def gaussian_sigma(n: int, m: int) -> float:
    """Blur width in HR voxels: FWHM equal to the LR voxel (``n / m``)."""
    return n / m * FWHM_TO_SIGMA


def gaussian_matrix(n: int, m: int) -> torch.Tensor:
    """``(m, n)``: Gaussian blur (:func:`gaussian_sigma`), then linear interpolation at the LR coordinates."""
    sigma = gaussian_sigma(n, m)
    radius = int(GAUSSIAN_TRUNCATE * sigma + 0.5) + 0.5  # taps |t| <= round(4 sigma), as scipy's gaussian_filter
    blur = _kernel_matrix(torch.arange(n, dtype=torch.float64), n, radius, lambda t: torch.exp(-0.5 * (t / sigma) ** 2))
    return linear_matrix(n, m) @ blur


def nearest_matrix(n: int, m: int) -> torch.Tensor:
    """``(m, n)``: the nearest input voxel (ties shared)."""
    return _kernel_matrix(lr_coordinates(n, m), n, 0.5 + 1e-9, torch.ones_like)


def linear_matrix(n: int, m: int) -> torch.Tensor:
    """``(m, n)``: linear interpolation between the two nearest voxel centres (edges reflected)."""
    return _kernel_matrix(lr_coordinates(n, m), n, 1.0, lambda t: (1 - t.abs()).clamp(min=0))


MATRICES: dict[str, Callable[[int, int], torch.Tensor]] = {
    "nearest": nearest_matrix,
    "linear": linear_matrix,
    "cubic": cubic_matrix,
    "kspace": kspace_matrix,
    "lanczos": lanczos_matrix,
    "gaussian": gaussian_matrix,
}


@lru_cache(maxsize=512)
def resampling_matrix(method: str, n: int, m: int) -> torch.Tensor:
    """The ``(m, n)`` float64 matrix of ``method`` on one axis (identity when ``m == n``)."""
    if method not in MATRICES:
        raise ValueError(f"unknown resampling method {method!r}; known: {', '.join(MATRICES)}")
    if m == n:
        return torch.eye(n, dtype=torch.float64)
    return MATRICES[method](n, m)


# ---------------------------------------------------------------------------
# Slice model
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SliceModel:
    """The slices of one thick axis: ``thickness`` in HR voxels, ``profile`` one of :data:`SLICE_PROFILES`;
    ``correction`` (one of :data:`SLICE_CORRECTIONS`) is how a consistency projection spreads their residual,
    and does not change the matrix."""

    thickness: float
    profile: str = "boxcar"
    correction: str = "orthogonal"

    def __post_init__(self) -> None:
        if self.profile not in SLICE_PROFILES:
            raise InputError(f"unknown slice profile {self.profile!r}; known: {', '.join(SLICE_PROFILES)}")
        if self.correction not in SLICE_CORRECTIONS:
            raise InputError(f"unknown slice correction {self.correction!r}; known: {', '.join(SLICE_CORRECTIONS)}")
        if not 0 < self.thickness < math.inf:
            raise InputError(f"slice thickness must be a positive number, got {self.thickness}")

    @classmethod
    def from_mm(cls, thickness_mm: float, hr_spacing_mm: float, profile: str = "boxcar",
                correction: str = "orthogonal") -> "SliceModel":
        """Slices ``thickness_mm`` thick on an HR grid of ``hr_spacing_mm``."""
        return cls(float(thickness_mm) / float(hr_spacing_mm), profile, correction)

    def profile_integral(self, t: torch.Tensor) -> torch.Tensor:
        """Share of the profile below offset ``t`` (HR voxels from the slice centre): its CDF, 0 to 1."""
        if self.profile == "boxcar":
            return (t / self.thickness + 0.5).clamp(0.0, 1.0)
        return 0.5 * (1.0 + torch.erf(t / (self.thickness * FWHM_TO_SIGMA * math.sqrt(2.0))))

    def reach(self) -> float:
        """Farthest offset from the slice centre with weight: half the thickness, or 4 sigma."""
        return self.thickness / 2 if self.profile == "boxcar" else GAUSSIAN_TRUNCATE * self.thickness * FWHM_TO_SIGMA

    def matrix(self, n: int, m: int) -> torch.Tensor:
        """``(m, n)``: each slice's profile integrated over every HR voxel, reflected at the faces, rows summing to 1."""
        centres = lr_coordinates(n, m)
        reach = self.reach()
        first = torch.floor(centres - reach + 0.5).long()
        index = first[:, None] + torch.arange(int(math.ceil(2 * reach)) + 2)
        offsets = index - centres[:, None]
        weights = self.profile_integral(offsets + 0.5) - self.profile_integral(offsets - 0.5)
        return _weights_matrix(index, weights / weights.sum(dim=1, keepdim=True), n)


#: One axis of a per-axis operator: a name in :data:`MATRICES`, or the slices of a thick axis.
AxisOperator = Union[str, SliceModel]
#: A linear degradation: one name for every axis, or one :data:`AxisOperator` per axis.
Operator = Union[str, Sequence[AxisOperator]]


def axis_operators(operator: Operator) -> tuple[AxisOperator, AxisOperator, AxisOperator]:
    """``operator`` per axis, each name checked against :data:`MATRICES`."""
    per_axis = (operator,) * 3 if isinstance(operator, (str, SliceModel)) else tuple(operator)
    if len(per_axis) != 3:
        raise InputError(f"a per-axis operator needs 3 entries, got {len(per_axis)}")
    for entry in per_axis:
        if not isinstance(entry, (str, SliceModel)):
            raise InputError(f"an axis operator is a method name or a SliceModel, got {entry!r}")
        if isinstance(entry, str) and entry not in MATRICES:
            raise InputError(f"unknown resampling method {entry!r}; known: {', '.join(MATRICES)}")
    return per_axis  # type: ignore[return-value]


@lru_cache(maxsize=512)
def axis_matrix(operator: AxisOperator, n: int, m: int) -> torch.Tensor:
    """The ``(m, n)`` float64 matrix of one axis: :func:`resampling_matrix`, or the slice model's."""
    if isinstance(operator, SliceModel):
        return operator.matrix(n, m)
    return resampling_matrix(operator, n, m)


def apply_along_axis(x: torch.Tensor, matrix: torch.Tensor, dim: int) -> torch.Tensor:
    """Apply an ``(m, n)`` matrix along axis ``dim`` of ``x`` (size ``n`` there -> ``m``)."""
    matrix = matrix.to(device=x.device, dtype=x.dtype)
    return torch.movedim(torch.movedim(x, dim, -1).contiguous() @ matrix.T, -1, dim)


# ---------------------------------------------------------------------------
# Volumes
# ---------------------------------------------------------------------------


def _prepare(volume, out_shape, scale, downsample_only: bool) -> tuple[torch.Tensor, tuple[int, int, int]]:
    x = torch.as_tensor(volume)
    if x.dim() not in (3, 5):
        raise InputError(f"volume must be (D0, D1, D2) or (B, C, D0, D1, D2), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        x = x.float()
    in_shape = tuple(x.shape[-3:])
    if (out_shape is None) == (scale is None):
        raise InputError("give exactly one of out_shape and scale")
    if scale is not None:
        out_shape = geometry.output_shape(in_shape, geometry.parse_triple(scale, "scale"))
    out_shape = tuple(int(m) for m in out_shape)
    if len(out_shape) != 3:
        raise InputError(f"out_shape needs 3 sizes, got {out_shape}")
    if any(m < 1 for m in out_shape):
        raise InputError(f"output shape {out_shape} has an axis with fewer than 1 voxel")
    if downsample_only and any(m > n for n, m in zip(in_shape, out_shape)):
        raise InputError(f"degradation only downsamples: output shape {out_shape} exceeds input shape {in_shape} on an axis")
    return x, out_shape  # type: ignore[return-value]


def resample(
    volume, out_shape=None, method: Operator = "kspace", *, scale=None, downsample_only: bool = False
) -> torch.Tensor:
    """Resample the last three axes of ``volume`` with ``method`` (any of ``MATRICES``), up or down.

    Upsampled with ``cubic``, ``kspace`` (zero-filled k-space), ``lanczos``,
    ``linear`` or ``nearest``, this gives the interpolation baselines on the
    same grid as the models. ``method`` may also give one operator per axis
    (:data:`Operator`); a :class:`SliceModel` applies even where the size is kept.
    """
    operators = axis_operators(method)
    x, out_shape = _prepare(volume, out_shape, scale, downsample_only)
    for axis, (operator, m) in enumerate(zip(operators, out_shape)):
        n = x.shape[axis - 3]
        if m != n or isinstance(operator, SliceModel):
            x = apply_along_axis(x, axis_matrix(operator, n, m), axis - 3)
    return x


def cubic(volume, out_shape=None, *, scale=None) -> torch.Tensor:
    """Cubic B-spline downsampling (scipy ``zoom(order=3, mode="reflect", grid_mode=True)``)."""
    return resample(volume, out_shape, "cubic", scale=scale, downsample_only=True)


def kspace(volume, out_shape=None, *, scale=None) -> torch.Tensor:
    """Centred k-space truncation, LR grid aligned by a phase ramp, intensities kept."""
    return resample(volume, out_shape, "kspace", scale=scale, downsample_only=True)


def lanczos(volume, out_shape=None, *, scale=None) -> torch.Tensor:
    """Antialiased Lanczos-3 downsampling, reflect boundary."""
    return resample(volume, out_shape, "lanczos", scale=scale, downsample_only=True)


def gaussian(volume, out_shape=None, *, scale=None) -> torch.Tensor:
    """Gaussian blur (FWHM = ``n / m`` HR voxels) and linear interpolation, reflect boundary."""
    return resample(volume, out_shape, "gaussian", scale=scale, downsample_only=True)


DEGRADATIONS: dict[str, Callable[..., torch.Tensor]] = {
    "cubic": cubic,
    "kspace": kspace,
    "lanczos": lanczos,
    "gaussian": gaussian,
}


def degrade(
    volume,
    out_shape=None,
    method: Operator = "kspace",
    noise: str | None = None,
    noise_std: float = 0.0,
    bias: float = 0.0,
    generator: torch.Generator | None = None,
    *,
    scale=None,
) -> torch.Tensor:
    """HR -> LR: ``method`` downsampling, then bias field (if ``bias > 0``), then noise.

    ``method`` is one of :data:`DEGRADATIONS`, or one per axis (e.g.
    ``("kspace", "kspace", SliceModel(5.0))`` for 5-voxel slices along axis 2).
    ``noise`` is ``None``, ``"gaussian"`` or ``"rician"``; ``noise_std`` is a
    fraction of the LR volume's maximum. ``generator`` seeds bias and noise.
    """
    names = [method] if isinstance(method, str) else [m for m in method if isinstance(m, str)]
    unknown = [name for name in names if name not in DEGRADATIONS]
    if unknown:
        raise ValueError(f"unknown degradation {unknown[0]!r}; known: {', '.join(DEGRADATIONS)}")
    if noise is None and noise_std:
        raise InputError(f"noise_std={noise_std} needs a noise type: one of {', '.join(NOISE_TYPES)}")
    lr = resample(volume, out_shape, method, scale=scale, downsample_only=True)
    if bias:
        lr = lr * bias_field(lr, bias, generator)
    if noise is not None:
        lr = add_noise(lr, noise, noise_std, generator)
    return lr
