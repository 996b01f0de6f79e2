"""Training throughput: arssr's Trainer loop against the official ArSSR training procedure.

One process, one device, one model architecture from the same initial weights, the paper's N = 15
examples of K = 8000 voxels per step (``--batch-size``, ``--samples``):
  (a) ours       ``arssr.training.Trainer.train_step()`` on a folder of NIfTI volumes: background-avoiding
                 40^3 crops cut on the fly from a bounded pool, scale k ~ U(2, 4), the (10k)^3 centre of
                 the crop, ``cubic`` degradation on the training device, L1, Adam; fp32 (and bf16 autocast
                 on CUDA);
  (b) reference  the official procedure: a Dataset over pre-cut 40^3 HR patches (6 foreground patches per
                 training volume, normalised as arssr does) whose ``__getitem__`` draws the official scale
                 ``round(U(2, 4.04), 1)``, takes the int(10k)^3 patch at the crop's *corner* (as the
                 official code), makes the LR patch with ``scipy.ndimage.zoom(patch, 1 / k, order=3)`` on the
                 CPU (no grid_mode: the official, misaligned grid; only its cost matters here), builds the
                 HR patch's voxel-centre coordinates in [-1, 1] (align_corners=False, array-axis order) and
                 samples K of them without replacement; a DataLoader (``--workers``, shuffled) collates N of
                 them; then ``model(lr, coords)``, L1 loss, Adam (1e-4, 0.9/0.999, 1e-8), fp32.
For k in [2, 4], zoom gives round(int(10k) / k) = 10 voxels per axis (int(10k) / k lies in (9.5, 10]), so
LR patches are 10^3 and collate as in the official code; any other size would be zoomed to exactly 10^3
(factor 10 / size per axis). The patch list is repeated so that one shuffled epoch covers every timed step:
no worker restart at an epoch end falls inside the timing (the official epoch has 4680 / 15 = 312 steps).

Every volume of the data is a training subject of both loops (no validation during (a)). A step is timed
whole (input making included) by the wall clock, CUDA synchronised, after ``--warmup`` untimed steps per
loop (degradation matrices, oneDNN primitives, the crop pool, DataLoader workers); the input share is the
part of a step before the model's forward starts (a forward pre-hook). The defaults (2 + 4 steps per
loop) take 2 to 3 minutes on 2 CPU cores with the paper-size model (about 9 s per step).

Usage: python eval/bench_train.py [--model paper|small] [--batch-size 15] [--samples 8000] [--steps 4]
       [--warmup 2] [--data FOLDER] [--device auto] [--workers 2] [--our-workers 0] [--threads N]
       [--json PATH]
Without --data, the MNI152 T1 shipped with nilearn and two flipped copies are written to a temp folder.
"""

from __future__ import annotations

import argparse
import copy
import csv
import gc
import json
import platform
import random
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import scipy.ndimage as ndi
import torch
from torch.utils.data import DataLoader, Dataset

from arssr.training.datasets import CropOptions, find_subjects, foreground_crop
from arssr.device import resolve_device
from arssr.intensity import intensity_window, normalize
from arssr.models import ArSSR
from arssr.training import Trainer, load_config
from arssr.volume import load_volume

MODELS = {
    "paper": {},
    "small": {"encoder_args": {"num_features": 32, "growth": 32, "num_blocks": 4, "num_layers": 3},
              "feature_dim": 64, "decoder_width": 128},
}
LR_SIZE = 10


def write_volumes(folder: Path) -> Path:
    """The MNI152 T1 shipped with nilearn and two flipped copies, as NIfTI files in ``folder``."""
    import nilearn

    image = nib.load(Path(nilearn.__file__).parent / "datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")
    data = np.asarray(image.dataobj, dtype=np.float32)
    for name, volume in (("mni", data), ("mni_flip0", data[::-1]), ("mni_flip1", data[:, ::-1])):
        nib.save(nib.Nifti1Image(np.ascontiguousarray(volume), image.affine), folder / f"{name}.nii.gz")
    return folder


def all_train(data: str, folder: Path) -> str:
    """A CSV in ``folder`` naming every volume of ``data`` (folder, glob or CSV) a training subject."""
    paths, _ = find_subjects(data)
    table = folder / "train.csv"
    with open(table, "w", newline="") as handle:
        csv.writer(handle).writerows([("path", "split")] + [(str(Path(p).resolve()), "train") for p in paths])
    return str(table)


def make_coord(shape) -> torch.Tensor:
    """Voxel-centre coordinates of ``shape`` in [-1, 1] (align_corners=False), array-axis order, ``(prod, 3)``."""
    axes = [(2 * torch.arange(n, dtype=torch.float32) + 1) / n - 1 for n in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).view(-1, 3)


class OfficialPatches(Dataset):
    """(b)'s data: pre-cut HR patches -> ``(lr (10, 10, 10), coords (K, 3), targets (K, 1))`` per item."""

    def __init__(self, patches: list[np.ndarray], samples: int) -> None:
        self.patches, self.samples = patches, samples

    def __len__(self) -> int:
        return len(self.patches)

    def __getitem__(self, item: int):
        scale = np.round(random.uniform(2, 4 + 0.04), 1)
        size = int(LR_SIZE * scale)
        hr = self.patches[item][:size, :size, :size]
        lr = ndi.zoom(hr, 1 / scale, order=3)
        if lr.shape != (LR_SIZE,) * 3:
            lr = ndi.zoom(hr, [LR_SIZE / n for n in hr.shape], order=3)
        coords = make_coord(hr.shape)
        index = np.random.default_rng(random.getrandbits(64)).choice(len(coords), self.samples, replace=False)
        return lr, coords[index], hr.reshape(-1, 1)[index]


def cut_patches(paths, per_volume: int, seed: int) -> list[np.ndarray]:
    """``per_volume`` random 40^3 foreground patches of each volume, normalised as arssr normalises."""
    rng, patches = np.random.default_rng(seed), []
    for path in paths:
        data = load_volume(path).data
        volume = normalize(data, intensity_window(data, "percentile"))
        patches += [foreground_crop(volume, CropOptions(), rng) for _ in range(per_volume)]
    return patches


class Meter:
    """Wall time of whole steps and the time before the model's forward (a forward pre-hook)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.forward_at = device, None

    def run(self, step, model: torch.nn.Module, warmup: int, steps: int, batch: int) -> dict:
        hook = model.register_forward_pre_hook(self._mark)
        try:
            for _ in range(warmup):
                step()
            walls, inputs = [], []
            for _ in range(steps):
                self._sync()
                start = time.perf_counter()
                step()
                self._sync()
                walls.append(time.perf_counter() - start)
                inputs.append(self.forward_at - start)
        finally:
            hook.remove()
        total = sum(walls)
        return {"steps_per_s": steps / total, "patches_per_s": batch * steps / total, "s_per_step": total / steps,
                "input_share": sum(inputs) / total, "step_s": walls}

    def _mark(self, module, args) -> None:
        self._sync()
        self.forward_at = time.perf_counter()

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def our_trainer(args, data: str, out: str, amp: str) -> Trainer:
    config = load_config(overrides=[{
        "data": data, "out": out, "device": args.device, "amp": amp, "threads": args.threads,
        "batch_size": args.batch_size, "samples": args.samples, "model": MODELS[args.model],
        "sampling": {"num_workers": args.our_workers}, "val": {"volumes": 0},
    }])
    return Trainer(config)


def reference_step(model: ArSSR, loader: DataLoader, device: torch.device):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8)
    batches = iter(loader)

    def step() -> None:
        lr, coords, target = next(batches)
        lr, coords, target = lr[:, None].to(device), coords.to(device), target.to(device)
        loss = torch.nn.functional.l1_loss(model(lr, coords), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="paper")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, help="torch CPU threads of this process")
    parser.add_argument("--batch-size", type=int, default=15, help="N examples per step")
    parser.add_argument("--samples", type=int, default=8000, help="K voxels per example")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per loop")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before them (caches, oneDNN)")
    parser.add_argument("--data", help="HR NIfTI volumes: folder, glob or CSV (default: MNI152 T1 and two flips)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the reference")
    parser.add_argument("--our-workers", type=int, default=0, help="arssr's sampling.num_workers")
    parser.add_argument("--json", help="write the results and settings here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    meter, rows = Meter(device), {}
    with tempfile.TemporaryDirectory() as tmp:
        data = all_train(args.data or str(write_volumes(Path(tmp))), Path(tmp))
        trainer = our_trainer(args, data, str(Path(tmp) / "run_fp32"), "none")
        initial, arch = copy.deepcopy(trainer.module.state_dict()), trainer.module.args
        train_paths = trainer.split["train"]
        rows["ours fp32"] = meter.run(trainer.train_step, trainer.module, args.warmup, args.steps, args.batch_size)
        if device.type == "cuda":
            del trainer
            trainer = our_trainer(args, data, str(Path(tmp) / "run_bf16"), "bf16")
            trainer.module.load_state_dict(initial)
            rows["ours bf16"] = meter.run(trainer.train_step, trainer.module, args.warmup, args.steps,
                                          args.batch_size)
        del trainer
        gc.collect()
        patches = cut_patches(train_paths, CropOptions().per_volume, seed=0)
    items = (args.warmup + args.steps) * args.batch_size
    patches = patches * -(-items // len(patches))
    model = ArSSR(**arch).to(device).train()
    model.load_state_dict(initial)
    loader = DataLoader(OfficialPatches(patches, args.samples), batch_size=args.batch_size, shuffle=True,
                        num_workers=args.workers, generator=torch.Generator().manual_seed(0))
    rows["reference fp32"] = meter.run(reference_step(model, loader, device), model, args.warmup, args.steps,
                                       args.batch_size)

    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    ref = rows["reference fp32"]["steps_per_s"]
    print(f"model {args.model} ({sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters); "
          f"N = {args.batch_size}, K = {args.samples}; {args.steps} timed steps after {args.warmup} warm-up; "
          f"{len(train_paths)} training volumes from {args.data or 'MNI152 T1 + 2 flips'}")
    print(f"device: {device_name}; reference DataLoader workers: {args.workers}; ours: {args.our_workers}")
    print(f"{'method':16s} {'steps/s':>9s} {'patches/s':>9s} {'s/step':>9s} {'input %':>9s} {'ours/ref':>9s}")
    for name, row in rows.items():
        print(f"{name:16s} {row['steps_per_s']:9.4f} {row['patches_per_s']:9.3f} {row['s_per_step']:9.3f} "
              f"{100 * row['input_share']:9.1f} {row['steps_per_s'] / ref:9.2f}")
    if args.json:
        record = {
            "device": device_name, "ours_steps_per_s": rows["ours fp32"]["steps_per_s"],
            "reference_steps_per_s": ref, "ours_over_reference": rows["ours fp32"]["steps_per_s"] / ref,
            "model": args.model, "model_args": model.args, "batch_size": args.batch_size,
            "samples": args.samples, "steps": args.steps, "warmup": args.warmup, "workers": args.workers,
            "our_workers": args.our_workers, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "volumes": [Path(p).name for p in train_paths], "runs": rows,
        }
        if "ours bf16" in rows:
            record["ours_bf16_steps_per_s"] = rows["ours bf16"]["steps_per_s"]
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
