"""train/plane_prior.py on the CPU for two steps: a new prior's width, synthetic volumes, the export's card."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from arssr.models.planes import PlanePrior, load_prior, save_prior
from arssr.training.planes import seeded_prior

REPO = Path(__file__).resolve().parents[1]
MNI_3MM = REPO / "arssr/data/mni152_t1_3mm.nii.gz"


def run_script(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(REPO / "train/plane_prior.py"), *args], capture_output=True,
                          text=True, env=env, timeout=300)


@pytest.mark.slow
def test_plane_prior_script_trains_a_narrow_prior_on_real_and_synthetic_volumes(tmp_path):
    exported = tmp_path / "prior.safetensors"
    done = run_script("--data", str(MNI_3MM), "--out", str(tmp_path / "run"), "--steps", "2", "--synthetic", "1",
                      "--channels", "8,16", "--export", str(exported))
    assert done.returncode == 0, done.stderr[-2000:]
    prior = load_prior(exported)
    assert prior.config["channels"] == [8, 16] and not prior.phase
    card = prior.card
    assert (card["synthetic"], card["step"], card["data"]) == ("1", "2", MNI_3MM.name)
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in prior.parameters())
    checkpoint = torch.load(tmp_path / "run/checkpoint.pt", weights_only=False)
    assert (checkpoint["step"], checkpoint["volumes"]) == (2, 2)  # the MNI152 file and one synthetic variant


def test_plane_prior_script_starts_a_phase_prior_of_the_default_width_from_the_seeded_one(tmp_path):
    done = run_script("--data", str(MNI_3MM), "--out", str(tmp_path / "run"), "--steps", "1", "--phase")
    assert done.returncode == 0, done.stderr[-2000:]
    checkpoint = torch.load(tmp_path / "run/checkpoint.pt", weights_only=False)
    assert checkpoint["config"] == seeded_prior(0, phase=True).config == {**PlanePrior().config, "phase": True}
    assert checkpoint["volumes"] == 1


def test_plane_prior_script_refuses_a_width_for_an_initial_prior(tmp_path):
    init = save_prior(seeded_prior(0, channels=[8, 16]), tmp_path / "init.safetensors")
    done = run_script("--data", str(MNI_3MM), "--out", str(tmp_path / "run"), "--init", str(init),
                      "--channels", "8,16,32")
    assert done.returncode == 2
    assert "--channels makes a new prior; an --init prior keeps its own" in done.stderr
    assert not (tmp_path / "run").exists()


def test_plane_prior_script_refuses_a_negative_synthetic_count_and_channels_that_make_no_u_net(tmp_path):
    done = run_script("--data", str(MNI_3MM), "--out", str(tmp_path / "run"), "--synthetic", "-1")
    assert done.returncode == 2 and "--synthetic counts volumes: 0 or more, not -1" in done.stderr
    for text in ("16", "8,x", "8,0"):
        done = run_script("--data", str(MNI_3MM), "--out", str(tmp_path / "run"), "--channels", text)
        assert done.returncode == 2
        assert f"give at least two positive feature counts, comma-separated, not {text!r}" in done.stderr
    assert not (tmp_path / "run").exists()
