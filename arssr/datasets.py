"""Training data: subjects, their train/val/test split, background-avoiding HR crops and the examples made of them.

A data source is a folder (every ``*.nii``/``*.nii.gz`` below it), a glob
pattern (``/hcp/*/T1w/T1w_acpc_dc_restore.nii.gz``), a CSV file (column
``path``, relative to the CSV's folder, optional column ``split``), one
NIfTI file, or ``mni-synthetic`` (endless random variants of the MNI152 T1
from :class:`arssr.synthetic.SyntheticMNI`).

Volumes are read lazily. A *job* ``k`` loads one subject (chosen by a
per-round permutation seeded by ``(seed, round)``), normalises it with the
model's intensity rule and cuts ``per_volume`` random crops from it; every
random choice of job ``k`` comes from ``(seed, k)``, so jobs can run in any
DataLoader worker and a run resumes from a job counter. :class:`CropPool`
keeps a bounded pool of crops (a few volumes' worth, never the dataset) and
hands out random batches of them. :func:`draw_examples` and
:func:`make_pairs` turn a batch into the paper's examples on the training
device: HR patch, degraded LR patch, sampled coordinates and their targets.
"""

from __future__ import annotations

import csv
import glob
import itertools
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from arssr import geometry
from arssr.degrade import Operator, SliceModel, degrade
from arssr.errors import InputError
from arssr.intensity import intensity_window, normalize
from arssr.models.arssr import axis_permutation
from arssr.volume import is_nifti_path, load_volume

SYNTHETIC = "mni-synthetic"
SPLITS = ("train", "val", "test")
#: HCP-1200 subjects in the paper's train/val/test split.
PAPER_SPLIT = (780, 111, 222)


def find_subjects(data: str) -> tuple[list[Path], list[str] | None]:
    """Paths named by ``data`` and, from a CSV with a ``split`` column, each one's split."""
    path = Path(data)
    if any(c in data for c in "*?["):
        found = [Path(p) for p in sorted(glob.glob(data, recursive=True)) if is_nifti_path(p)]
    elif path.suffix.lower() == ".csv":
        return _read_csv(path)
    elif path.is_dir():
        found = sorted(p for p in path.rglob("*") if is_nifti_path(p) and not p.name.startswith("."))
    elif path.is_file() and is_nifti_path(path):
        found = [path]
    else:
        raise InputError(f"{data}: no such folder, NIfTI file, CSV file or glob pattern (or use {SYNTHETIC!r})")
    if not found:
        raise InputError(f"{data}: no .nii or .nii.gz files found")
    return found, None


def _read_csv(path: Path) -> tuple[list[Path], list[str] | None]:
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InputError(f"{path}: cannot read the CSV file ({err})") from None
    if not rows or "path" not in rows[0]:
        raise InputError(f"{path}: the CSV needs a header with a 'path' column and at least one row")
    paths = [p if p.is_absolute() else path.parent / p for p in (Path(row["path"].strip()) for row in rows)]
    if "split" not in rows[0]:
        return paths, None
    labels = [(row["split"] or "").strip().lower() for row in rows]
    unknown = sorted(set(labels) - set(SPLITS))
    if unknown:
        raise InputError(f"{path}: unknown split value(s) {unknown}; use {', '.join(SPLITS)}")
    return paths, labels


def usable(paths: Sequence[Path], labels: Sequence[str] | None, min_size: int) -> tuple[list[Path], list[str] | None]:
    """Drop (with a warning naming each) files whose NIfTI header is unreadable, not 3D or smaller than ``min_size``."""
    import nibabel as nib

    keep = []
    for i, path in enumerate(paths):
        try:
            shape = nib.load(str(path)).shape
        except Exception as err:  # nibabel raises many types for broken files
            warnings.warn(f"{path}: skipped, not a readable NIfTI file ({type(err).__name__})", stacklevel=2)
            continue
        shape = shape[:3] if len(shape) == 4 and shape[3] == 1 else shape
        if len(shape) != 3 or min(shape) < min_size:
            warnings.warn(f"{path}: skipped, shape {shape} is not 3D or smaller than the {min_size}^3 crop",
                          stacklevel=2)
            continue
        keep.append(i)
    if not keep:
        raise InputError(f"{paths[0].parent if len(paths) > 1 else paths[0]}: none of the {len(paths)} files is usable")
    return [paths[i] for i in keep], [labels[i] for i in keep] if labels is not None else None


def split_counts(n: int, ratios: Sequence[float] = PAPER_SPLIT) -> tuple[int, int, int]:
    """``(train, val, test)`` sizes in proportion to ``ratios``; at least one val subject when ``n >= 3``."""
    total = float(sum(ratios))
    val = round(n * ratios[1] / total)
    test = round(n * ratios[2] / total)
    if n >= 3:
        val = max(val, 1)
    test = min(test, max(0, n - val - 1))
    return n - val - test, val, test


def split_subjects(
    paths: Sequence[Path], labels: Sequence[str] | None = None, ratios: Sequence[float] = PAPER_SPLIT, seed: int = 0
) -> dict[str, list[str]]:
    """``{"train", "val", "test"}`` lists of paths: from ``labels`` when given, else a seeded shuffle by ``ratios``."""
    if labels is not None:
        return {name: [str(p) for p, label in zip(paths, labels) if label == name] for name in SPLITS}
    order = np.random.default_rng(seed).permutation(len(paths))
    n_train, n_val, _ = split_counts(len(paths), ratios)
    shuffled = [str(paths[i]) for i in order]
    return {"train": shuffled[:n_train], "val": shuffled[n_train:n_train + n_val], "test": shuffled[n_train + n_val:]}


def load_normalized(path: str | Path, normalization: str, axis_order: str = "xyz") -> np.ndarray:
    """A subject as float32 in the model's axis order and intensity window (see ``arssr.intensity``)."""
    return prepare(load_volume(path).data, normalization, axis_order)


def prepare(data: np.ndarray, normalization: str, axis_order: str = "xyz") -> np.ndarray:
    """Normalise an array with ``normalization`` and bring it to ``axis_order``."""
    normalized = normalize(data, intensity_window(data, normalization))
    return np.ascontiguousarray(normalized.transpose(axis_permutation(axis_order)))


@dataclass(frozen=True)
class CropOptions:
    """How HR crops are cut: ``size``^3 voxels, ``per_volume`` per loaded subject.

    A crop is redrawn (up to ``tries`` times, then the best one is kept) while
    less than ``min_foreground`` of its voxels exceed ``threshold`` (normalised intensity).
    """

    size: int = 40
    per_volume: int = 6
    threshold: float = 0.1
    min_foreground: float = 0.5
    tries: int = 20


def foreground_crop(volume: np.ndarray, options: CropOptions, rng: np.random.Generator) -> np.ndarray:
    """One ``size``^3 crop of ``volume`` whose foreground fraction reaches ``min_foreground`` if one is found."""
    size = options.size
    best, best_fraction = None, -1.0
    for _ in range(options.tries):
        origin = [int(rng.integers(0, n - size + 1)) for n in volume.shape]
        crop = volume[origin[0]:origin[0] + size, origin[1]:origin[1] + size, origin[2]:origin[2] + size]
        fraction = float(np.count_nonzero(crop > options.threshold)) / crop.size
        if fraction > best_fraction:
            best, best_fraction = crop, fraction
        if fraction >= options.min_foreground:
            break
    return np.array(best, dtype=np.float32)


class CropJobs(Dataset):
    """Job ``k`` -> ``(per_volume, size, size, size)`` float32 crops of one subject (empty if it cannot be read).

    ``subjects`` is a list of paths, or ``None`` for the synthetic MNI source
    (:class:`arssr.synthetic.SyntheticMNI` with the options ``synthetic``);
    with paths, a share ``synthetic_share`` of the jobs (drawn per job from
    the seed) still takes a synthetic volume.
    """

    def __init__(
        self, subjects: Sequence[str] | None, options: CropOptions, seed: int,
        normalization: str = "percentile", axis_order: str = "xyz", synthetic: dict | None = None,
        synthetic_share: float = 0.0,
    ) -> None:
        self.subjects = list(subjects) if subjects is not None else None
        self.synthetic_share = synthetic_share
        self.options, self.seed = options, seed
        self.normalization, self.axis_order = normalization, axis_order
        self.synthetic_options = dict(synthetic or {})
        self._synthetic = None

    def subject(self, k: int) -> str | None:
        """The path job ``k`` loads (``None``: a synthetic volume); each round of ``len(subjects)`` jobs visits
        every subject once, less the synthetic jobs."""
        if self.subjects is None or (
            self.synthetic_share and np.random.default_rng([self.seed, 2, k]).random() < self.synthetic_share
        ):
            return None
        n = len(self.subjects)
        order = np.random.default_rng([self.seed, 0, k // n]).permutation(n)
        return self.subjects[order[k % n]]

    def volume(self, k: int, rng: np.random.Generator) -> np.ndarray:
        """The normalised volume of job ``k`` (a synthetic one is drawn from ``rng``)."""
        path = self.subject(k)
        if path is not None:
            return load_normalized(path, self.normalization, self.axis_order)
        if self._synthetic is None:
            from arssr.synthetic import SyntheticMNI

            self._synthetic = SyntheticMNI(self.seed, **self.synthetic_options)
        return prepare(self._synthetic.sample(rng), self.normalization, self.axis_order)

    def __getitem__(self, k: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, 1, k])
        size = self.options.size
        try:
            volume = self.volume(k, rng)
        except InputError as err:
            warnings.warn(f"skipped: {err}", stacklevel=2)
            return torch.empty((0, size, size, size))
        if min(volume.shape) < size:
            warnings.warn(f"{self.subject(k)}: skipped, shape {volume.shape} is smaller than the {size}^3 crop",
                          stacklevel=2)
            return torch.empty((0, size, size, size))
        crops = [foreground_crop(volume, self.options, rng) for _ in range(self.options.per_volume)]
        return torch.from_numpy(np.stack(crops))


class _Count:
    """Job numbers ``start, start + 1, ...`` for a DataLoader."""

    def __init__(self, start: int) -> None:
        self.start = start

    def __iter__(self) -> Iterator[int]:
        return itertools.count(self.start)


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)


class CropPool:
    """A pool of at least ``pool_size`` crops, refilled by jobs; each batch takes crops at random, each once.

    Args:
        jobs: the crop jobs.
        pool_size: crops kept in the pool before a batch is drawn.
        seed: seeds the choice of crops.
        num_workers: DataLoader processes running jobs (0: in this process).
    """

    def __init__(self, jobs: CropJobs, pool_size: int, seed: int, num_workers: int = 0) -> None:
        self.jobs, self.pool_size, self.num_workers = jobs, pool_size, num_workers
        self.rng = np.random.default_rng([seed, 2])
        self.next_job = 0
        self.crops: list[torch.Tensor] = []
        self._stream: Iterator[torch.Tensor] | None = None

    def _job_stream(self) -> Iterator[torch.Tensor]:
        if self.num_workers == 0:
            return map(self.jobs.__getitem__, itertools.count(self.next_job))
        loader = DataLoader(
            self.jobs, batch_size=None, sampler=_Count(self.next_job), num_workers=self.num_workers,
            worker_init_fn=_one_thread, generator=torch.Generator().manual_seed(0),
        )
        return iter(loader)

    def batch(self, n: int) -> torch.Tensor:
        """``(n, size, size, size)`` crops drawn from the pool without replacement."""
        if self._stream is None:
            self._stream = self._job_stream()
        # Two rounds of jobs visit every subject: that many failures in a row means none is readable.
        failures, limit = 0, 2 * len(self.jobs.subjects) if self.jobs.subjects is not None else 1
        while len(self.crops) < max(n, self.pool_size):
            crops = next(self._stream)
            self.next_job += 1
            failures = failures + 1 if len(crops) == 0 else 0
            if failures >= limit:
                raise InputError(f"no training volume could be read ({limit} failures in a row; see the warnings)")
            self.crops.extend(crops.unbind(0))
        picked = sorted(self.rng.choice(len(self.crops), n, replace=False).tolist(), reverse=True)
        return torch.stack([self.crops.pop(i) for i in picked])

    def state_dict(self) -> dict:
        size = self.jobs.options.size
        crops = torch.stack(self.crops) if self.crops else torch.empty((0, size, size, size))
        return {"next_job": self.next_job, "crops": crops, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.next_job = int(state["next_job"])
        self.crops = list(state["crops"].unbind(0))
        self.rng.bit_generator.state = state["rng"]
        self._stream = None


def validation_volumes(
    subjects: Sequence[str] | None, count: int, seed: int, normalization: str, axis_order: str = "xyz",
    synthetic: dict | None = None,
) -> list[tuple[str, np.ndarray]]:
    """Up to ``count`` normalised ``(name, volume)`` pairs: the first val subjects, or fixed-seed synthetic variants
    (``SyntheticMNI`` options ``synthetic``)."""
    if subjects is not None:
        return [(Path(p).name, load_normalized(p, normalization, axis_order)) for p in list(subjects)[:count]]
    from arssr.synthetic import SyntheticMNI

    source = SyntheticMNI(seed, **(synthetic or {}))
    return [
        (f"synthetic-{i}", prepare(source.sample(np.random.default_rng([seed, 3, i])), normalization, axis_order))
        for i in range(count)
    ]



@dataclass(frozen=True)
class PairOptions:
    """How a training example is made from an HR crop (paper values by default).

    ``scale`` bounds ``k ~ U(low, high)`` (one per axis when ``anisotropic``);
    the HR patch has ``round(lr_size * k)`` voxels per axis, the LR patch
    ``lr_size``; ``samples`` HR voxels are the targets. ``methods`` weighs the
    degradation models; ``noise_std`` and ``bias`` are ``(low, high)`` ranges
    drawn per example (see :func:`arssr.degrade.degrade`).

    A share ``thick_share`` of the examples imitates 2D multi-slice
    acquisitions: one axis, drawn at random, is made of contiguous slices
    (``arssr.degrade.SliceModel``, profile drawn from ``thick_profiles``) at a
    scale from ``thick_scale``; the other two axes take scales from
    ``inplane_scale`` and a method from ``methods``.
    """

    lr_size: int = 10
    scale: tuple[float, float] = (2.0, 4.0)
    anisotropic: bool = False
    thick_share: float = 0.0
    thick_scale: tuple[float, float] = (1.5, 8.0)
    inplane_scale: tuple[float, float] = (1.0, 2.0)
    thick_profiles: tuple[str, ...] = ("boxcar", "gaussian")
    samples: int = 8000
    methods: dict[str, float] = field(default_factory=lambda: {"cubic": 1.0})
    noise: str | None = None
    noise_std: tuple[float, float] = (0.0, 0.0)
    bias: tuple[float, float] = (0.0, 0.0)


@dataclass(frozen=True)
class Example:
    """The random choices of one example; a batch is drawn whole, then sliced per process."""

    hr_shape: tuple[int, int, int]
    method: Operator  # one method name, or one axis operator per axis (thick slices)
    noise_std: float
    bias: float
    seed: int
    voxels: torch.Tensor  # (samples,) flat indices into the HR patch


def _uniform(bounds: tuple[float, float], generator: torch.Generator) -> float:
    low, high = bounds
    return low + (high - low) * float(torch.rand((), generator=generator, dtype=torch.float64))


def draw_examples(n: int, options: PairOptions, generator: torch.Generator) -> list[Example]:
    """Scales, degradations, corruption seeds and target voxels of ``n`` examples, in order, from ``generator``."""
    names = list(options.methods)
    weights = torch.tensor([float(options.methods[m]) for m in names], dtype=torch.float64)
    examples = []
    for _ in range(n):
        # Drawn only when asked for, so that configurations without thick slices keep their random stream.
        thick = options.thick_share > 0 and float(torch.rand((), generator=generator)) < options.thick_share
        if thick:
            axis = int(torch.randint(3, (), generator=generator))
            k = [_uniform(options.thick_scale if a == axis else options.inplane_scale, generator) for a in range(3)]
        else:
            k = [_uniform(options.scale, generator) for _ in range(3 if options.anisotropic else 1)] * (
                1 if options.anisotropic else 3)
        hr_shape = geometry.output_shape((options.lr_size,) * 3, k)
        method: Operator = names[int(torch.multinomial(weights, 1, generator=generator))]
        if thick:
            profile = options.thick_profiles[int(torch.randint(len(options.thick_profiles), (), generator=generator))]
            slices = SliceModel(hr_shape[axis] / options.lr_size, profile)  # contiguous: thickness = spacing
            method = tuple(slices if a == axis else method for a in range(3))
        noise_std, bias = _uniform(options.noise_std, generator), _uniform(options.bias, generator)
        seed = int(torch.randint(2**62, (), generator=generator))
        voxels = math.prod(hr_shape)
        if options.samples <= voxels:
            index = torch.randperm(voxels, generator=generator)[:options.samples]
        else:
            index = torch.randint(voxels, (options.samples,), generator=generator)
        examples.append(Example(hr_shape, method, noise_std, bias, seed, index))
    return examples


def make_pairs(
    crops: torch.Tensor, examples: Sequence[Example], options: PairOptions, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """HR crops ``(n, S, S, S)`` -> LR ``(n, 1, L, L, L)``, coordinates ``(n, K, 3)``, targets ``(n, K, 1)``.

    Everything after the crops is computed on ``device``. The HR patch is the
    centre of the crop; the LR patch is its degradation (field of view kept),
    so the HR patch's voxel centres in its own ``[-1, 1]`` grid are the LR
    patch's coordinates too.
    """
    crops = crops.to(device, non_blocking=True)
    lr_shape = (options.lr_size,) * 3
    lrs, coords, targets = [], [], []
    for crop, example in zip(crops, examples):
        start = [(c - s) // 2 for c, s in zip(crop.shape, example.hr_shape)]
        hr = crop[tuple(slice(a, a + s) for a, s in zip(start, example.hr_shape))]
        generator = torch.Generator().manual_seed(example.seed) if options.noise or example.bias else None
        lrs.append(degrade(
            hr[None, None], lr_shape, example.method, noise=options.noise, noise_std=example.noise_std,
            bias=example.bias, generator=generator,
        ))
        voxels = example.voxels.to(device)
        targets.append(hr.reshape(-1)[voxels])
        index = torch.stack(torch.unravel_index(voxels, example.hr_shape), dim=-1).double()
        sizes = torch.tensor(example.hr_shape, dtype=torch.float64, device=device)
        coords.append(geometry.voxel_to_normalized(index, sizes).float())
    return torch.cat(lrs), torch.stack(coords), torch.stack(targets)[..., None]
