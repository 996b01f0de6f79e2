"""Training data: subjects, their train/val/test split, background-avoiding HR crops and the examples made of them.

A data source is a folder (every ``*.nii``/``*.nii.gz`` below it), a glob
pattern (``/hcp/*/T1w/T1w_acpc_dc_restore.nii.gz``), a CSV file (column
``path``, relative to the CSV's folder, optional column ``split``), one
NIfTI file, or ``mni-synthetic`` (endless random variants of the MNI152 T1
from :class:`arssr.training.synthetic.SyntheticMNI`).

Volumes are read lazily. A *job* ``k`` loads one subject (chosen by a
per-round permutation seeded by ``(seed, round)``), normalises it with the
model's intensity rule and cuts ``per_volume`` random crops from it; every
random choice of job ``k`` comes from ``(seed, k)``, so jobs can run in any
DataLoader worker and a run resumes from a job counter. :class:`CropPool`
keeps a bounded pool of crops (a few volumes' worth, never the dataset) and
hands out random batches of them; ``arssr.pairs`` turns a batch into the
paper's examples on the training device.
"""

from __future__ import annotations

import csv
import glob
import itertools
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from arssr.errors import InputError
from arssr.intensity import intensity_window
from arssr.models.arssr import axis_permutation
from arssr.models.space import ModelSpace
from arssr.volume import Volume, is_nifti_path, load_volume

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
    return ModelSpace.file_order(intensity_window(data, normalization), axis_order).to_model(data)


def prepare_volume(volume: Volume, normalization: str, axis_order: str = "xyz") -> Volume:
    """:func:`prepare` of the volume's array, with its affine's axes in the same order."""
    order = axis_permutation(axis_order)
    return Volume(prepare(volume.data, normalization, axis_order), volume.affine[:, [*order, 3]])


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
    (:class:`arssr.training.synthetic.SyntheticMNI` with the options ``synthetic``);
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
            from arssr.training.synthetic import SyntheticMNI

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
) -> list[tuple[str, Volume]]:
    """Up to ``count`` normalised ``(name, volume)`` pairs with their real affines: the first val subjects, or
    fixed-seed synthetic variants (``SyntheticMNI`` options ``synthetic``, on the MNI template's grid)."""
    if subjects is not None:
        return [(Path(p).name, prepare_volume(load_volume(p), normalization, axis_order))
                for p in list(subjects)[:count]]
    from arssr.training.synthetic import SyntheticMNI

    source = SyntheticMNI(seed, **(synthetic or {}))
    return [
        (f"synthetic-{i}", prepare_volume(Volume(source.sample(np.random.default_rng([seed, 3, i])), source.affine),
                                          normalization, axis_order))
        for i in range(count)
    ]
