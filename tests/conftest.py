"""Shared fixtures: a small seeded model, volumes with awkward geometry, and real anatomy (MNI152 T1)."""

from importlib.util import find_spec
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from arssr.models import ArSSR, save_model
from arssr.volume import Volume

#: ANTs (antspyx) is in the `eval` extra, not `test`: it caps numpy and scipy below their latest releases.
needs_ants = pytest.mark.skipif(find_spec("ants") is None, reason="needs antspyx: pip install -e '.[eval]'")

TINY_ARGS = {
    "encoder": "rdn",
    "encoder_args": {"num_features": 8, "growth": 8, "num_blocks": 2, "num_layers": 2},
    "feature_dim": 16,
    "decoder_width": 32,
}


def make_tiny_model(seed: int = 0, **overrides) -> ArSSR:
    """A small RDN model with random weights whose output is not clipped to zero by the final ReLU."""
    torch.manual_seed(seed)
    model = ArSSR(**{**TINY_ARGS, **overrides}).eval()
    with torch.no_grad():
        [layer for layer in model.decoder.stage_two if isinstance(layer, torch.nn.Linear)][-1].bias.fill_(0.5)
    return model


@pytest.fixture
def tiny_model() -> ArSSR:
    return make_tiny_model()


@pytest.fixture
def tiny_weights(tmp_path, tiny_model) -> Path:
    return save_model(tiny_model, tmp_path / "tiny.safetensors")


def oblique_affine(spacing=(1.2, 0.9, 2.5), angle=0.3, origin=(-40.0, 25.0, 12.0)) -> np.ndarray:
    """A rotated (about two axes), anisotropic, LPS-like flipped affine."""
    c, s = np.cos(angle), np.sin(angle)
    rot_z = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    rot_x = np.array([[1, 0, 0], [0, c, s], [0, -s, c]])
    flip = np.diag([-1.0, -1.0, 1.0])
    affine = np.eye(4)
    affine[:3, :3] = flip @ rot_z @ rot_x @ np.diag(spacing)
    affine[:3, 3] = origin
    return affine


def smooth_volume(shape=(14, 12, 10), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(0, 1, n) for n in shape], indexing="ij")
    data = 100 + 40 * np.sin(3 * grids[0] + 1) * np.cos(2 * grids[1]) + 20 * grids[2] + rng.normal(0, 1, shape)
    return data.astype(np.float32)


@pytest.fixture
def oblique_volume() -> Volume:
    return Volume(smooth_volume(), oblique_affine())


@pytest.fixture
def oblique_nifti(tmp_path, oblique_volume) -> Path:
    """An int16 NIfTI with a scale slope, qform code 1 and sform code 4."""
    image = nib.Nifti1Image(np.rint(oblique_volume.data * 10).astype(np.int16), oblique_volume.affine)
    image.header.set_qform(oblique_volume.affine, code=1)
    image.header.set_sform(oblique_volume.affine, code=4)
    image.header.set_slope_inter(0.1, 0.0)
    image.header.set_xyzt_units("mm", "sec")
    path = tmp_path / "oblique.nii.gz"
    nib.save(image, path)
    return path


def mni_t1_path() -> Path:
    import nilearn

    return Path(nilearn.__file__).parent / "datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"


@pytest.fixture(scope="session")
def mni_t1() -> Volume:
    """The MNI ICBM152 2009a T1 as nilearn ships it (1 mm, 197 x 233 x 189, brain-extracted: background 0)."""
    image = nib.load(mni_t1_path())
    return Volume(np.asarray(image.dataobj, dtype=np.float32), image.affine, image.header)


@pytest.fixture(scope="session")
def mni_crop(mni_t1) -> Volume:
    """A 24 x 28 x 20 block through the ventricles and cortex, at 2 mm (every other voxel)."""
    start = np.array([50, 70, 70])
    data = mni_t1.data[start[0]:start[0] + 48:2, start[1]:start[1] + 56:2, start[2]:start[2] + 40:2]
    affine = mni_t1.affine @ np.array([[2, 0, 0, start[0]], [0, 2, 0, start[1]], [0, 0, 2, start[2]], [0, 0, 0, 1.0]])
    return Volume(np.ascontiguousarray(data), affine, mni_t1.header)


def band_limited(shape, seed=0) -> Volume:
    """A smooth volume of a few low spatial frequencies, on an oblique affine."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[2 * np.pi * (np.arange(n) + 0.5) / n for n in shape], indexing="ij")
    out = np.full(shape, 50.0)
    for _ in range(4):
        f = rng.integers(0, 3, size=3)
        out += rng.uniform(5, 10) * np.cos(f[0] * grids[0] + f[1] * grids[1] + f[2] * grids[2] + rng.uniform(0, 6))
    return Volume(out.astype(np.float32), oblique_affine())


@pytest.fixture
def one_thread():
    """Small fits run fastest on one thread (and do not fight other jobs for cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def int16_nifti(tmp_path) -> Path:
    """A small int16 NIfTI on an oblique affine, with distinct qform and sform codes."""
    data = np.rint(smooth_volume((12, 11, 11)) * 3).astype(np.int16)
    image = nib.Nifti1Image(data, oblique_affine())
    image.header.set_qform(oblique_affine(), code=1)
    image.header.set_sform(oblique_affine(), code=4)
    path = tmp_path / "vol.nii.gz"
    nib.save(image, path)
    return path
