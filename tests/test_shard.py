"""Cohorts split over processes: --shard I/N and torchrun ranks give the files and values of one process."""

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from arssr.cli import main
from arssr.errors import InputError
from arssr.shard import Shard, current_shard, distributed_rank, parse_shard, shard_device
from arssr.volume import Volume, save_volume

from conftest import oblique_affine, smooth_volume

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def cohort(tmp_path) -> Path:
    folder = tmp_path / "cohort"
    for i, shape in enumerate([(8, 9, 7), (7, 7, 9), (9, 8, 8), (6, 8, 7), (8, 6, 6)]):
        save_volume(Volume(smooth_volume(shape, seed=i), oblique_affine()), folder / f"s{i}.nii.gz")
    return folder


def volumes(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(nib.load(p).dataobj) for p in sorted(folder.glob("*.nii.gz"))}


def test_shards_partition_the_batch_in_order():
    files = [f"s{i}" for i in range(7)]
    parts = [Shard(i, 3).take(files) for i in range(3)]
    assert parts == [["s0", "s3", "s6"], ["s1", "s4"], ["s2", "s5"]]
    assert parse_shard("2/3") == (2, 3)
    for bad in ["3/3", "-1/2", "1", "a/b", "1/0"]:
        with pytest.raises(InputError):
            parse_shard(bad)


def test_shard_from_torchrun_and_job_array():
    assert current_shard(None, {}) is None
    assert current_shard((0, 1), {"WORLD_SIZE": "1", "RANK": "0"}) is None
    assert current_shard((1, 4), {}) == Shard(1, 4)
    torchrun = {"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}
    assert current_shard(None, torchrun) == Shard(3, 4, local_rank=1)
    assert current_shard((2, 5), torchrun) == Shard(2 * 4 + 3, 20, local_rank=1)
    assert shard_device("cpu", Shard(3, 4, local_rank=1)) == "cpu"
    assert shard_device("auto", Shard(1, 4)) == "auto"  # a job array task picks its device as one process does


@pytest.mark.parametrize("env, message", [
    ({"WORLD_SIZE": "2"}, "sets WORLD_SIZE but not RANK"),
    ({"WORLD_SIZE": "2", "RANK": "abc"}, "RANK must be a whole number"),
    ({"WORLD_SIZE": "2", "RANK": "-1"}, "RANK must be a whole number"),
    ({"WORLD_SIZE": "2", "RANK": "3"}, r"RANK/WORLD_SIZE needs 0 <= I < N, got '3/2'"),
    ({"WORLD_SIZE": "2", "RANK": "2"}, r"needs 0 <= I < N, got '2/2'"),
    ({"WORLD_SIZE": "0", "RANK": "0"}, r"needs 0 <= I < N, got '0/0'"),
    ({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "x"}, "LOCAL_RANK must be a whole number"),
    ({"WORLD_SIZE": "9" * 300, "RANK": "0"}, "at most 9 digits"),
    ({"WORLD_SIZE": "2", "RANK": "\u00b2"}, "RANK must be a whole number"),
])
def test_distributed_environment_is_checked_as_the_shard_option_is(env, message):
    with pytest.raises(InputError, match=message) as caught:
        current_shard(None, env)
    assert len(str(caught.value)) < 120
    with pytest.raises(InputError, match="at most 9 digits"):
        parse_shard("1/" + "9" * 300)


def test_distributed_environment_gives_rank_world_and_local_rank():
    assert distributed_rank({}) is None
    assert distributed_rank({"RANK": "3"}) is None  # not torchrun's without WORLD_SIZE
    assert distributed_rank({"WORLD_SIZE": "1"}) == (0, 1, 0)
    assert distributed_rank({"WORLD_SIZE": "2", "RANK": "1"}) == (1, 2, 1)
    assert distributed_rank({"WORLD_SIZE": "8", "RANK": "5", "LOCAL_RANK": "1"}) == (5, 8, 1)


def test_shard_option_runs_a_part_and_resumes(tmp_path, capsys, cohort, tiny_weights):
    common = ["--scale", "2", "--weights", str(tiny_weights), "--threads", "1", "-q"]
    assert main(["upsample", str(cohort), "--output-dir", str(tmp_path / "one"), *common]) == 0
    for i in range(3):
        assert main(["upsample", str(cohort), "--output-dir", str(tmp_path / "sharded"), "--shard", f"{i}/3",
                     *common]) == 0
    assert "shard 2/3: 1 written, 0 skipped, 0 failed" in capsys.readouterr().err
    one, sharded = volumes(tmp_path / "one"), volumes(tmp_path / "sharded")
    assert list(one) == list(sharded) == [f"s{i}_sr.nii.gz" for i in range(5)]
    assert all(np.array_equal(one[name], sharded[name]) for name in one)
    (tmp_path / "sharded" / "s3_sr.nii.gz").unlink()
    assert main(["upsample", str(cohort), "--output-dir", str(tmp_path / "sharded"), "--shard", "0/3",
                 "--skip-existing", *common]) == 0
    assert "shard 0/3: 1 written, 1 skipped, 0 failed" in capsys.readouterr().err
    assert np.array_equal(volumes(tmp_path / "sharded")["s3_sr.nii.gz"], one["s3_sr.nii.gz"])


@pytest.mark.parametrize("value", ["4/4", "x"])
def test_bad_shard_is_a_usage_error(tmp_path, capsys, cohort, value):
    with pytest.raises(SystemExit) as exit_info:
        main(["upsample", str(cohort), "--scale", "2", "--output-dir", str(tmp_path / "out"), "--shard", value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: argument --shard") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_torchrun_two_cpu_ranks_equal_one_process(tmp_path, cohort, tiny_weights):
    common = ["upsample", cohort, "--scale", "1.5,2,2", "--weights", tiny_weights, "--threads", "1", "-q"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}

    def torchrun(*argv):
        return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                               "2", "-m", "arssr", *map(str, argv)], capture_output=True, text=True, env=env)

    ran = torchrun(*common, "--output-dir", tmp_path / "ranks")
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "shard 0/2: 3 written, 0 skipped, 0 failed" in ran.stderr
    assert "shard 1/2: 2 written, 0 skipped, 0 failed" in ran.stderr
    assert main([str(a) for a in common] + ["--output-dir", str(tmp_path / "one")]) == 0
    one, ranks = volumes(tmp_path / "one"), volumes(tmp_path / "ranks")
    assert list(one) == list(ranks) and len(one) == 5
    assert all(np.array_equal(one[name], ranks[name]) for name in one)
    assert sorted(p.name for p in (tmp_path / "ranks").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
    (tmp_path / "ranks" / "s1_sr.nii.gz").unlink()  # rank 1's first file: a run stopped part way
    ran = torchrun(*common, "--output-dir", tmp_path / "ranks", "--skip-existing")
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "shard 0/2: 0 written, 3 skipped, 0 failed" in ran.stderr
    assert "shard 1/2: 1 written, 1 skipped, 0 failed" in ran.stderr
    assert np.array_equal(volumes(tmp_path / "ranks")["s1_sr.nii.gz"], one["s1_sr.nii.gz"])
