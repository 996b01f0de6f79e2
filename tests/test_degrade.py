"""Degradation models against independent scipy/numpy references, on the grid of docs/explanation/geometry.md."""

from pathlib import Path

import nibabel as nib
import nilearn
import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

from arssr import degrade as D
from arssr.errors import InputError
from arssr.geometry import output_shape, source_coordinates


METHODS = tuple(D.DEGRADATIONS)


def blobs(shape, sigma=6.0, seed=0):
    """Smooth volume: Gaussian blobs well inside the field of view (near zero at the faces)."""
    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    volume = np.zeros(shape)
    for _ in range(6):
        centre = [rng.uniform(0.3 * n, 0.7 * n) for n in shape]
        squared = sum((g - c) ** 2 for g, c in zip(grid, centre))
        volume += rng.uniform(0.5, 1.0) * np.exp(-squared / (2 * sigma**2))
    return volume


def lr_grid(in_shape, out_shape):
    """Coordinates, in the ``in_shape`` grid, of the ``out_shape`` voxels (docs/explanation/geometry.md)."""
    return np.meshgrid(*[source_coordinates(n, m) for n, m in zip(in_shape, out_shape)], indexing="ij")


def run(method, volume, shape):
    return D.DEGRADATIONS[method](torch.from_numpy(volume), shape).numpy()


def psnr(estimate, reference):
    return 10 * np.log10(np.ptp(reference) ** 2 / np.mean((estimate - reference) ** 2))


@pytest.fixture(scope="module")
def mni_crop():
    path = Path(nilearn.__file__).parent / "datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
    data = np.asarray(nib.load(path).dataobj, dtype=np.float32)
    start = [(n - 48) // 2 for n in data.shape]
    return np.ascontiguousarray(data[tuple(slice(s, s + 48) for s in start)])


# --- each model against its reference --------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 5, 16, 47])
def test_prefilter_inverts_the_bspline_sampling(n):
    rng = np.random.default_rng(n)
    x = rng.standard_normal((n, 4))
    coefficients = D.bspline_prefilter(torch.from_numpy(x), dim=0).numpy()
    # Sampling the cubic B-spline at the knots, half-sample symmetric boundary: [1 4 1] / 6.
    padded = np.pad(coefficients, ((1, 1), (0, 0)), mode="symmetric")
    np.testing.assert_allclose((padded[:-2] + 4 * padded[1:-1] + padded[2:]) / 6, x, atol=1e-12)
    if n >= 16:
        np.testing.assert_allclose(coefficients, ndi.spline_filter1d(x, order=3, mode="reflect", axis=0), atol=1e-12)


@pytest.mark.parametrize("shape", [(15, 15, 15), (15, 20, 31), (48, 24, 17)])
def test_cubic_matches_scipy(shape):
    x = np.random.default_rng(1).standard_normal((48, 48, 48))
    x = ndi.gaussian_filter(x, 1.5)
    ours = run("cubic", x, shape)
    reference = ndi.map_coordinates(x, lr_grid(x.shape, shape), order=3, mode="reflect")
    np.testing.assert_allclose(ours, reference, atol=1e-10 * np.ptp(x))
    zoomed = ndi.zoom(x, [m / n for n, m in zip(x.shape, shape)], order=3, mode="reflect", grid_mode=True)
    np.testing.assert_allclose(ours, zoomed, atol=1e-10 * np.ptp(x))


@pytest.mark.parametrize("shape", [(15, 15, 15), (15, 20, 31)])
def test_cubic_matches_scipy_on_mni(mni_crop, shape):
    ours = run("cubic", mni_crop, shape)
    reference = ndi.map_coordinates(mni_crop.astype(np.float64), lr_grid(mni_crop.shape, shape), order=3, mode="reflect")
    np.testing.assert_allclose(ours, reference, atol=1e-4 * np.ptp(mni_crop))


def kspace_reference(x, shape):
    """The trigonometric interpolant of ``x`` cut to ``|k| <= m/2`` (half weight at ``|k| = m/2``), at the LR grid."""
    spectrum = np.fft.fftn(x)
    for axis, (n, m) in enumerate(zip(x.shape, shape)):
        if m == n:  # axis kept as it is
            spectrum = np.fft.ifft(spectrum, axis=axis)
            continue
        k = np.fft.fftfreq(n, 1 / n)
        weight = np.where(np.abs(k) < m / 2, 1.0, np.where(np.abs(k) == m / 2, 0.5, 0.0))
        t = source_coordinates(n, m)
        basis = weight * np.exp(2j * np.pi * np.outer(t, k) / n) / n  # (m, n)
        spectrum = np.moveaxis(np.tensordot(basis, spectrum, axes=(1, axis)), 0, axis)
    return spectrum


@pytest.mark.parametrize(
    "in_shape, shape",
    [((24, 25, 20), (8, 8, 8)), ((24, 25, 20), (9, 10, 7)), ((31, 30, 17), (12, 11, 16)), ((16, 16, 16), (16, 5, 16))],
)
def test_kspace_matches_numpy_fft(in_shape, shape):
    x = np.random.default_rng(2).standard_normal(in_shape)
    reference = kspace_reference(x, shape)
    assert np.abs(reference.imag).max() < 1e-12
    np.testing.assert_allclose(run("kspace", x, shape), reference.real, atol=1e-12)


def test_kspace_reproduces_band_limited_volume():
    n, m = (40, 36, 30), (14, 12, 11)
    grid = np.meshgrid(*[np.arange(s, dtype=np.float64) for s in n], indexing="ij")
    lr = np.meshgrid(*[source_coordinates(a, b) for a, b in zip(n, m)], indexing="ij")

    def cosines(coords):  # integer cycles per field of view, below m / 2 on every axis
        waves = [((1, 0, 0), 0.3), ((2, 3, 1), 1.1), ((0, 5, 4), 2.0), ((6, 0, 5), 0.7)]
        return 1.0 + sum(
            0.5 * np.cos(2 * np.pi * sum(k * c / s for k, c, s in zip(freq, coords, n)) + phase) for freq, phase in waves
        )

    ours = D.kspace(torch.from_numpy(cosines(grid)).float(), m).numpy()
    np.testing.assert_allclose(ours, cosines(lr), atol=1e-5)


@pytest.mark.parametrize("shape", [(16, 16, 16), (15, 20, 31)])
def test_lanczos_matches_direct_sum(mni_crop, shape):
    ours = run("lanczos", mni_crop, shape)
    factors = [n / m for n, m in zip(mni_crop.shape, shape)]
    pad = 12
    padded = np.pad(mni_crop.astype(np.float64), pad, mode="symmetric")  # half-sample symmetric
    rng = np.random.default_rng(3)
    voxels = [tuple(rng.integers(0, m) for m in shape) for _ in range(6)] + [(0, 0, 0), tuple(m - 1 for m in shape)]
    for voxel in voxels:
        weights = []
        for j, n, m, f in zip(voxel, mni_crop.shape, shape, factors):
            t = (j + 0.5) * n / m - 0.5
            taps = np.arange(-pad, n + pad)
            u = (taps - t) / f
            weights.append(np.where(np.abs(u) < 3, np.sinc(u) * np.sinc(u / 3), 0.0))
        kernel = np.einsum("i,j,k->ijk", *weights)
        expected = (kernel * padded).sum() / kernel.sum()
        assert abs(ours[voxel] - expected) < 1e-4 * np.ptp(mni_crop), voxel


@pytest.mark.parametrize("shape", [(16, 16, 16), (15, 20, 31)])
def test_gaussian_matches_scipy(mni_crop, shape):
    x = mni_crop.astype(np.float64)
    sigmas = [D.gaussian_sigma(n, m) for n, m in zip(x.shape, shape)]
    blurred = ndi.gaussian_filter(x, sigmas, mode="reflect", truncate=4.0)
    reference = ndi.map_coordinates(blurred, lr_grid(x.shape, shape), order=1, mode="reflect")
    np.testing.assert_allclose(run("gaussian", x, shape), reference, atol=1e-9 * np.ptp(x))
    assert D.gaussian_sigma(48, 16) == pytest.approx(3 / 2.3548, rel=1e-4)  # FWHM = 3 HR voxels


# --- grid alignment and invariants -----------------------------------------------------------


def upsample_aligned(lr, shape):
    return ndi.map_coordinates(lr, lr_grid(lr.shape, shape), order=3, mode="reflect")


@pytest.mark.parametrize("method, threshold", [("cubic", 60), ("kspace", 60), ("lanczos", 60), ("gaussian", 43)])
@pytest.mark.parametrize("shape", [(16, 16, 16), (15, 20, 24)])
def test_grid_alignment_round_trip(method, threshold, shape):
    x = blobs((48, 48, 48))
    aligned = psnr(upsample_aligned(run(method, x, shape), x.shape), x)
    assert aligned > threshold
    # The same LR volume read on the corner-aligned grid (zoom without grid_mode) is off by up to a voxel.
    corner = ndi.zoom(run(method, x, shape), [n / m for n, m in zip(x.shape, shape)], order=3, mode="reflect")
    assert corner.shape == x.shape
    assert psnr(corner, x) < 40 < aligned - 3


def test_misaligned_downsampling_scores_lower():
    x, shape = blobs((48, 48, 48)), (16, 16, 16)
    aligned = psnr(upsample_aligned(run("kspace", x, shape), x.shape), x)
    corner = ndi.zoom(x, 1 / 3, order=3, mode="reflect")  # plain zoom: corner voxel centres aligned
    plain_truncation = np.fft.ifftn(np.fft.ifftshift(np.fft.fftshift(np.fft.fftn(x))[16:32, 16:32, 16:32])).real / 27
    for misaligned in (corner, plain_truncation):
        assert misaligned.shape == shape
        assert psnr(upsample_aligned(misaligned, x.shape), x) < aligned - 20


@pytest.mark.parametrize("method", METHODS)
def test_constant_stays_constant(method):
    x = torch.full((30, 21, 17), 7.25)
    y = D.DEGRADATIONS[method](x, (11, 20, 5))
    assert y.shape == (11, 20, 5) and y.dtype == torch.float32
    torch.testing.assert_close(y, torch.full_like(y, 7.25), atol=1e-5, rtol=0)


@pytest.mark.parametrize("method", METHODS)
def test_batched_equals_single_and_equal_axes_untouched(method):
    x = torch.from_numpy(blobs((20, 18, 16), sigma=3)).float()
    batch = torch.stack([x, 2 * x]).unsqueeze(1)
    y = D.degrade(batch, (7, 18, 9), method)
    assert y.shape == (2, 1, 7, 18, 9)
    torch.testing.assert_close(y[1, 0], D.degrade(2 * x, (7, 18, 9), method), atol=1e-5, rtol=1e-5)
    assert torch.equal(D.degrade(x, x.shape, method), x)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("method", METHODS)
def test_cuda_matches_cpu(method):
    x = torch.from_numpy(blobs((40, 36, 32), sigma=4)).float()
    kwargs = dict(noise="rician", noise_std=0.02, bias=0.2)
    cpu = D.degrade(x, (13, 12, 11), method, generator=torch.Generator().manual_seed(0), **kwargs)
    gpu = D.degrade(x.cuda(), (13, 12, 11), method, generator=torch.Generator().manual_seed(0), **kwargs)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)


def test_scale_gives_output_shape():
    x = torch.rand(40, 33, 25)
    assert D.degrade(x, scale=1 / 3).shape == output_shape(x.shape, (1 / 3,) * 3) == (13, 11, 8)
    assert D.cubic(x, scale=(0.5, 1, 0.25)).shape == (20, 33, 6)


# --- corruptions -----------------------------------------------------------------------------


def test_noise_and_bias_are_deterministic():
    x = torch.from_numpy(blobs((32, 32, 32), sigma=4)).float()

    def make(seed):
        return D.degrade(x, (12, 12, 12), "kspace", noise="rician", noise_std=0.05, bias=0.3, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(make(0), make(0))
    assert not torch.allclose(make(0), make(1))


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, out_shape, message",
    [
        ((8, 8, 8), (9, 8, 8), "only downsamples"),
        ((8, 8, 8), (0, 4, 4), "fewer than 1 voxel"),
        ((8, 8), (4, 4), "must be (D0, D1, D2) or (B, C, D0, D1, D2)"),
        ((1, 8, 8, 8), (4, 4, 4), "must be (D0, D1, D2) or (B, C, D0, D1, D2)"),
        ((8, 8, 8), (4, 4), "needs 3 sizes"),
    ],
)
def test_invalid_sizes(shape, out_shape, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        D.degrade(torch.zeros(shape), out_shape)


def test_invalid_options():
    x = torch.zeros(8, 8, 8)
    with pytest.raises(ValueError, match="unknown degradation 'bicubic'; known: cubic, kspace, lanczos, gaussian"):
        D.degrade(x, (4, 4, 4), "bicubic")
    with pytest.raises(ValueError, match="unknown noise 'poisson'; known: gaussian, rician"):
        D.degrade(x, (4, 4, 4), noise="poisson", noise_std=0.1)
    with pytest.raises(InputError, match="needs a noise type"):
        D.degrade(x, (4, 4, 4), noise_std=0.1)
    with pytest.raises(InputError, match="exactly one of out_shape and scale"):
        D.degrade(x, (4, 4, 4), scale=0.5)
    with pytest.raises(InputError, match="noise_std must be >= 0"):
        D.degrade(x, (4, 4, 4), noise="gaussian", noise_std=-1)


# --- upsampling interpolators (the evaluation baselines) -------------------------------------


def hr_grid(lr_shape, hr_shape):
    """LR voxel coordinates of every HR voxel (the inverse direction of docs/explanation/geometry.md)."""
    return np.meshgrid(*[source_coordinates(m, n) for m, n in zip(lr_shape, hr_shape)], indexing="ij")


@pytest.mark.parametrize("method,order,mode", [("cubic", 3, "reflect"), ("linear", 1, "nearest"), ("nearest", 0, "nearest")])
def test_spline_upsamplers_match_scipy(method, order, mode):
    lr = np.random.default_rng(3).standard_normal((12, 11, 10))  # >= 10 voxels: scipy's prefilter is exact there
    hr_shape = (36, 33, 32)  # x3, x3, x3.2: no sample falls exactly halfway between two voxels
    expected = ndi.map_coordinates(lr, hr_grid(lr.shape, hr_shape), order=order, mode=mode)
    got = D.resample(torch.from_numpy(lr), hr_shape, method).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-10)


def band_limited_interpolant(lr: np.ndarray, hr_shape) -> np.ndarray:
    """Evaluate the trigonometric interpolant of ``lr`` at the HR voxel centres, one axis at a time, by direct sums."""
    out = lr.astype(np.complex128)
    for axis, n in enumerate(hr_shape):
        m = out.shape[axis]
        spectrum = np.fft.fft(out, axis=axis)
        t = source_coordinates(m, n)  # LR index of each HR voxel
        k = np.fft.fftfreq(m) * m
        basis = np.exp(2j * np.pi * np.outer(t, k) / m) / m
        if m % 2 == 0:  # the Nyquist term as a cosine, so real samples stay real
            basis[:, m // 2] = np.cos(np.pi * t) / m
        out = np.moveaxis(np.tensordot(basis, np.moveaxis(spectrum, axis, 0), axes=(1, 0)), 0, axis)
    return out.real


@pytest.mark.parametrize("lr_shape,hr_shape", [((8, 9, 6), (24, 20, 19)), ((7, 10, 5), (16, 31, 15))])
def test_kspace_zero_filling_is_the_band_limited_interpolant(lr_shape, hr_shape):
    lr = np.random.default_rng(4).standard_normal(lr_shape)
    got = D.resample(torch.from_numpy(lr), hr_shape, "kspace").numpy()
    np.testing.assert_allclose(got, band_limited_interpolant(lr, hr_shape), atol=1e-10)
    constant = D.resample(torch.full(lr_shape, 7.0, dtype=torch.float64), hr_shape, "kspace")
    torch.testing.assert_close(constant, torch.full(hr_shape, 7.0, dtype=torch.float64))


def test_kspace_round_trip_recovers_a_band_limited_volume():
    x = torch.from_numpy(blobs((48, 40, 36), sigma=7))
    up = D.resample(D.kspace(x, (24, 20, 18)), x.shape, "kspace")
    assert psnr(up.numpy(), x.numpy()) > 45


def test_lanczos_upsampling_is_not_stretched():
    lr = np.random.default_rng(5).standard_normal((9, 4, 4))
    up = D.resample(torch.from_numpy(lr), (27, 4, 4), "lanczos").numpy()
    t = source_coordinates(9, 27)[13]  # LR coordinate 4.0 + 1/3
    taps = np.arange(9)
    weights = np.sinc(t - taps) * np.sinc((t - taps) / 3) * (np.abs(t - taps) < 3)
    np.testing.assert_allclose(up[13, 1, 2], (weights * lr[:, 1, 2]).sum() / weights.sum(), atol=1e-12)


def test_resample_rejects_unknown_method_and_degrade_rejects_upsampling():
    with pytest.raises(ValueError, match="unknown resampling method 'sinc'; known: nearest, linear, cubic"):
        D.resample(torch.zeros(4, 4, 4), (8, 8, 8), "sinc")
    with pytest.raises(ValueError, match="unknown degradation 'linear'"):
        D.degrade(torch.zeros(8, 8, 8), (4, 4, 4), "linear")


# --- slice model (2D multi-slice acquisitions) ------------------------------------------------


def slice_centres(n, m):
    return (np.arange(m) + 0.5) * n / m - 0.5


def boxcar_slices_reference(signal, m, thickness):
    """Slices of a 1D piecewise-constant signal by explicit integration over each window (mirror-extended)."""
    n, pad = len(signal), int(thickness) + 2
    extended = np.pad(signal, pad, mode="symmetric")
    edges = np.arange(len(extended) + 1) - pad - 0.5  # voxel faces in HR coordinates
    integral = np.concatenate([[0.0], np.cumsum(extended)])  # exact at the faces, linear in between
    centres = slice_centres(n, m)
    upper = np.interp(centres + thickness / 2, edges, integral)
    return (upper - np.interp(centres - thickness / 2, edges, integral)) / thickness


def gaussian_slices_reference(signal, m, fwhm, fine=25):
    """scipy's Gaussian filter (sigma = FWHM / 2.355) on a fine piecewise-constant copy, read at the slice centres."""
    n, pad = len(signal), int(2 * fwhm) + 4
    extended = np.repeat(np.pad(signal, pad, mode="symmetric"), fine)
    coordinates = (np.arange(len(extended)) + 0.5) / fine - pad - 0.5
    sigma = fwhm / (2 * np.sqrt(2 * np.log(2))) * fine
    return np.interp(slice_centres(n, m), coordinates, ndi.gaussian_filter1d(extended, sigma, truncate=5))


# (n, m, thickness in HR voxels): contiguous (thickness = spacing), with gaps, overlapping, odd/even, fractional.
SLICE_CASES = [(30, 10, 3.0), (31, 7, 31 / 7), (35, 5, 5.0), (24, 6, 5.5), (25, 4, 2.3), (20, 20, 1.0), (17, 3, 7.9)]


@pytest.mark.parametrize("n,m,thickness", SLICE_CASES)
def test_boxcar_slices_integrate_the_hr_signal_over_each_window(n, m, thickness):
    signal = np.random.default_rng(n).normal(size=n)
    matrix = D.SliceModel(thickness).matrix(n, m).numpy()
    np.testing.assert_allclose(matrix @ signal, boxcar_slices_reference(signal, m, thickness), atol=1e-12)
    np.testing.assert_allclose(matrix.sum(1), 1.0)


@pytest.mark.parametrize("n,m,thickness", SLICE_CASES)
def test_gaussian_slices_match_scipy(n, m, thickness):
    signal = np.random.default_rng(n).normal(size=n)
    got = D.SliceModel(thickness, "gaussian").matrix(n, m).numpy() @ signal
    np.testing.assert_allclose(got, gaussian_slices_reference(signal, m, thickness), atol=2e-3)


def test_contiguous_integer_slices_are_block_averages_and_gaps_are_unseen():
    x = np.random.default_rng(0).normal(size=(4, 5, 36))
    out = D.resample(torch.from_numpy(x), (4, 5, 12), ("kspace", "kspace", D.SliceModel(3.0))).numpy()
    np.testing.assert_allclose(out, x.reshape(4, 5, 12, 3).mean(-1), atol=1e-12)
    # 7-voxel spacing, 5-voxel slices: HR voxels 7j + 1 .. 7j + 5 seen with weight 1/5, 7j and 7j + 6 in the gaps.
    expected = np.zeros((5, 35))
    for j in range(5):
        expected[j, 7 * j + 1:7 * j + 6] = 0.2
    np.testing.assert_allclose(D.SliceModel(5.0).matrix(35, 5).numpy(), expected, atol=1e-15)


def test_slice_model_on_real_anatomy_is_per_axis_and_in_mm(mni_crop):
    """5 mm slices of the 1 mm MNI152 T1 along axis 1 only: per column, the reference integration."""
    hr = mni_crop.astype(np.float64)
    model = D.SliceModel.from_mm(5.0, 1.0)
    lr = D.degrade(torch.from_numpy(hr), (48, 10, 48), ("cubic", model, "kspace")).numpy()
    expected = np.apply_along_axis(boxcar_slices_reference, 1, hr, 10, 5.0)
    np.testing.assert_allclose(lr, expected, atol=1e-9 * np.ptp(hr))
    assert model == D.SliceModel(5.0, "boxcar")


def test_bad_slice_models_and_operators_are_input_errors():
    with pytest.raises(InputError, match="slice thickness must be a positive number, got 0"):
        D.SliceModel(0.0)
    with pytest.raises(InputError, match="unknown slice profile 'box'"):
        D.SliceModel(3.0, "box")
    with pytest.raises(InputError, match="needs 3 entries, got 2"):
        D.resample(torch.zeros(4, 4, 4), (2, 2, 2), ("cubic", "cubic"))
    with pytest.raises(InputError, match="unknown resampling method 'bicubic'"):
        D.resample(torch.zeros(4, 4, 4), (2, 2, 2), ("cubic", "bicubic", D.SliceModel(2.0)))
