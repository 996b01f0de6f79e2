"""train/gpu_run.sh on the CPU for a few steps of a tiny model: checkpoint, exported model and scores."""

import json
import math
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from arssr.models import load_model
from arssr.volume import Volume, save_volume

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "train/gpu_run.sh"
MNI_3MM = REPO / "arssr/data/mni152_t1_3mm.nii.gz"
TINY = ["batch_size=2", "samples=300", "checkpoint_every=1", "sampling.num_workers=0", "sampling.pool_volumes=1",
        "sampling.crops_per_volume=4", "sampling.crop=20", "sampling.lr_size=5", "sampling.synthetic_share=0",
        "model.encoder_args={num_features: 8, growth: 8, num_blocks: 2, num_layers: 2}", "model.feature_dim=16",
        "model.decoder_width=32"]


def run_script(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.slow
def test_gpu_run_trains_exports_and_scores_on_the_cpu(tmp_path, mni_t1):
    heldout = tmp_path / "mni_block.nii.gz"  # a 40^3 block of the 1 mm MNI152 T1 through the ventricles
    save_volume(Volume(mni_t1.data[70:110, 80:120, 70:110].copy(),
                       mni_t1.affine @ np.array([[1, 0, 0, 70], [0, 1, 0, 80], [0, 0, 1, 70], [0, 0, 0, 1.0]])),
                heldout)
    out = tmp_path / "gpu"
    done = run_script(str(out), "--device", "cpu", "--steps", "2", "--data", str(MNI_3MM), "--heldout", str(heldout),
                      *TINY)
    assert done.returncode == 0, done.stderr[-2000:]
    state = torch.load(out / "run/checkpoint.pt", weights_only=True)
    assert state["step"] == 2 and state["config"]["amp"] == "bf16" and state["config"]["optim"]["schedule"] == "cosine"
    assert state["config"]["max_seconds"] == 600
    model = load_model(out / "model.safetensors")
    assert model.args["encoder_args"]["num_features"] == 8 and model.args["residual"] is True
    exported, last = load_file(out / "model.safetensors"), load_file(out / "run/last.safetensors")
    assert exported.keys() == state["model"].keys()
    assert all(v.dtype == torch.float16 and torch.equal(v, last[k].half()) for k, v in exported.items())
    scores = json.loads((out / "scores.json").read_text())
    assert set(scores["psnr_mask"]) == {"mni_block x2", "mni_block x3.2"}
    assert all(math.isfinite(v) and v > 10 for v in scores["psnr_mask"].values()) and scores["step"] == 2


def test_gpu_run_usage_errors(tmp_path):
    done = run_script(str(tmp_path / "gpu"), "--data", str(MNI_3MM))
    assert done.returncode == 2 and "error: --data needs --heldout (the volumes to score on)" in done.stderr
    done = run_script("--steps", "2")
    assert done.returncode == 2 and "train/gpu_run.sh OUT" in done.stderr
    assert not (tmp_path / "gpu/run").exists()
