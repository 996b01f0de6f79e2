import inspect
import json
import os
import socket
from dataclasses import asdict, fields
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import yaml
from safetensors.torch import load_file

from arssr import training
from arssr.training.config import ModelConfig
from arssr.cli import main
from arssr.errors import InputError
from arssr.models import ArSSR, load_model
from arssr.models.checkpoint import read_metadata
from arssr.training.trainer import lr_factor
from .test_datasets import write_subjects

RECIPES = Path(__file__).resolve().parents[2] / "train"
TINY = {
    "batch_size": 4, "samples": 500, "log_every": 5, "val_every": 1000, "checkpoint_every": 1000, "steps": 10,
    "model": {"encoder_args": {"num_features": 16, "growth": 16, "num_blocks": 2, "num_layers": 2},
              "feature_dim": 16, "decoder_width": 32},
    "sampling": {"crop": 20, "lr_size": 5, "crops_per_volume": 4, "pool_volumes": 2},
    "val": {"volumes": 1, "scales": [2.0]},
}


def tiny_config(data, out, *overrides: str) -> dict:
    """A tiny model on the tiny subjects: RDN 2 blocks x 2 layers x 16 features, decoder width 32, N=4, K=500."""
    return training.load_config(None, [{**TINY, "data": str(data), "out": str(out)}, *overrides])


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("subjects")
    write_subjects(folder, 5)
    return folder


@pytest.fixture(scope="module")
def run(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "tiny"
    return training.train(tiny_config(data, out, "steps=50", "val_every=25", "checkpoint_every=25", "optim.lr=1e-3"))


def scalars(run_dir: Path) -> dict[str, list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir))
    events.Reload()
    return {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]} | {
        "images": events.Tags()["images"]}


def test_paper_recipe_and_defaults():
    config = training.load_config(RECIPES / "paper.yaml", ["data=/hcp/*/T1w/T1w_acpc_dc_restore.nii.gz", "out=runs/x"])
    assert config.data == "/hcp/*/T1w/T1w_acpc_dc_restore.nii.gz"
    assert (config.batch_size, config.samples, config.epochs) == (15, 8000, 2500)
    assert config.sampling.crop == 40 and config.sampling.lr_size == 10
    assert (config.sampling.scale_min, config.sampling.scale_max) == (2.0, 4.0)
    assert config.degradation.methods == {"cubic": 1.0} and config.model.encoder == "rdn"
    assert asdict(config.optim) == {"lr": 1e-4, "betas": [0.9, 0.999], "eps": 1e-8, "schedule": "step",
                                    "warmup_steps": 0, "decay_every": 200, "decay": 0.5}
    assert {f.name for f in fields(ModelConfig)} == set(inspect.signature(ArSSR).parameters)
    synthetic = training.load_config(RECIPES / "mni_synthetic.yaml", ["out=runs/y", "model.decoder_width=64"])
    assert synthetic.data == "mni-synthetic" and len(synthetic.degradation.methods) == 4
    assert synthetic.model.decoder_width == 64 and synthetic.degradation.noise in ("gaussian", "rician")


def test_overrides_merge_into_the_defaults():
    config = training.load_config(None, ["data=d", "out=o", "optim.lr=2e-4", "model.encoder=rescnn",
                                         "model.encoder_args.num_blocks=2", "degradation.methods={kspace: 1}",
                                         "val.scales=[2, 4]", "sampling.anisotropic=true", "data=/hcp/*/T1w/*.nii.gz"])
    assert config.optim.lr == 2e-4 and config.model.encoder_args == {"num_blocks": 2}
    assert config.degradation.methods == {"kspace": 1} and config.val.scales == [2, 4]
    assert config.sampling.anisotropic is True and config.data == "/hcp/*/T1w/*.nii.gz"
    assert training.parse_override("data=*.nii") == {"data": "*.nii"}  # not a YAML alias


def test_precision_is_spelt_as_upsample_spells_it():
    assert training.load_config(None, ["data=d", "out=o"]).amp == "fp32"
    assert training.load_config(None, ["data=d", "out=o", "amp=none"]).amp == "fp32"  # the earlier spelling
    assert training.load_config(None, ["data=d", "out=o", "amp=bf16"]).amp == "bf16"
    with pytest.raises(InputError, match="amp must be one of fp32, bf16, fp16"):
        training.load_config(None, ["data=d", "out=o", "amp=fp64"])


@pytest.mark.parametrize("override, message", [
    ("modle.encoder=rdn", r"unknown config key 'modle.encoder'; valid keys: data, out, .*model\.encoder, "),
    ("sampling.crops=3", "unknown config key 'sampling.crops'"),
    ("batch_size=many", "'batch_size' must be of type int, got 'many'"),
    ("sampling.scale_max=5", r"lr_size \* scale_max exceeds crop"),
    ("degradation.methods={bicubic: 1}", "degradation.methods: weights >= 0"),
    ("degradation.noise_std=0.1", "noise_std needs degradation.noise"),
    ("degradation.bias=[0.3, 0.1]", r"degradation.bias must be a number >= 0 or a range \[low, high\]"),
    ("val.scales=[2, x]", "a value has the wrong type"),
    ("out=null", "out: give the run folder"),
    ("steps", "not of the form key=value"),
    ("sampling.thick_share=2", r"thick_share in \[0, 1\]"),
    ("sampling.thick_profiles=[box]", "thick_profiles a non-empty list of boxcar, gaussian"),
    ("sampling.thick_share=0.5", "lr_size times their largest within crop"),
    ("sampling.thick_scale=[2, 1]", r"sampling.thick_scale must be a number >= 0 or a range"),
    ("optim.schedule=linear", "optim.schedule must be one of step, cosine"),
    ("optim.warmup_steps=-5", "warmup_steps >= 0"),
    ("export_steps=[100, 0]", "export_steps must be a list of positive step numbers"),
    ("export_steps=100", "'export_steps' must be of type list, got 100"),
    ("max_seconds=-1", "max_seconds must be positive or null"),
])
def test_config_errors_name_the_key(override, message):
    with pytest.raises(InputError, match=message):
        training.load_config(None, ["data=d", "out=o", override])


def test_config_file_must_be_a_mapping(tmp_path):
    (tmp_path / "bad.yaml").write_text("- a list\n")
    with pytest.raises(InputError, match="bad.yaml: the config must be a mapping"):
        training.load_config(tmp_path / "bad.yaml")


def test_bad_data_or_model_raise_input_errors(tmp_path, data):
    with pytest.raises(InputError, match="config: model: unknown encoder 'unet'; known: rdn, rescnn, srresnet"):
        training.train(tiny_config(data, tmp_path / "run0", "model.encoder=unet"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty: no .nii or .nii.gz files"):
        training.train(tiny_config(tmp_path / "empty", tmp_path / "run1"))
    (tmp_path / "junk").mkdir()
    for name in ("a.nii.gz", "b.nii"):
        (tmp_path / "junk" / name).write_bytes(b"\x00" * 100)
    with pytest.warns(UserWarning, match="nii(.gz)?: skipped"), pytest.raises(InputError, match="none of the 2 files"):
        training.train(tiny_config(tmp_path / "junk", tmp_path / "run2"))


def test_init_starts_from_the_given_weights_and_takes_their_architecture(run, data, tmp_path):
    # A paper-size model in the config; the init weights (the tiny run's) decide the architecture.
    config = training.load_config(None, [{"data": str(data), "out": str(tmp_path / "fine"), "steps": 1,
                                          "init": str(run / "last.safetensors"), "optim": {"lr": 1e-20},
                                          "val": {"volumes": 0}}])
    fine = training.train(config)
    start, after = load_file(run / "last.safetensors"), load_file(fine / "last.safetensors")
    assert start.keys() == after.keys()
    assert all(torch.allclose(start[k], after[k], rtol=0, atol=1e-12) for k in start)
    assert yaml.safe_load((fine / "config.yaml").read_text())["model"] == load_model(run / "last.safetensors").args
    from arssr.errors import ModelFileError

    with pytest.raises(ModelFileError, match="nothing.safetensors: weights file not found"):
        training.train(tiny_config(data, tmp_path / "missing", f"init={tmp_path / 'nothing.safetensors'}"))


def test_a_resumed_run_keeps_the_architecture_of_its_checkpoint(run, data, tmp_path):
    """Started from init weights (a residual copy of the tiny run), resumed by a config that names neither."""
    from arssr.models import save_model
    from arssr.models.arssr import residual_start

    start = save_model(residual_start(load_model(run / "last.safetensors")), tmp_path / "start.safetensors")
    training.train(tiny_config(data, tmp_path / "res", "steps=2", "checkpoint_every=2", "val_every=2",
                               f"init={start}"))
    resumed = training.train(tiny_config(data, tmp_path / "res", "steps=4", "val_every=2"), resume="auto")
    model = load_model(resumed / "last.safetensors")
    assert model.residual and model.card["step"] == "4"
    assert yaml.safe_load((resumed / "config.yaml").read_text())["model"]["residual"] is True


def test_synthetic_options_reach_the_synthetic_source():
    from arssr.training.datasets import validation_volumes
    from arssr.training.synthetic import mni_template_path

    plain, crisp = (validation_volumes(None, 1, 0, "percentile", synthetic=options)[0][1]
                    for options in ({}, {"tissue_power": [3.0, 3.0]}))
    np.testing.assert_allclose(plain.affine, nib.load(mni_template_path("t1")).affine)
    plain, crisp = plain.data, crisp.data
    assert plain.shape == crisp.shape and not np.allclose(plain, crisp)
    with pytest.raises(InputError, match="config: synthetic: .*unexpected keyword argument 'tisue_power'"):
        training.load_config(None, ["data=mni-synthetic", "out=o", "synthetic.tisue_power=[1, 2]"])
    with pytest.raises(InputError, match="tissue_power must be a range"):
        training.load_config(None, ["data=mni-synthetic", "out=o", "synthetic={tissue_power: [0.5, 2]}"])


def test_a_short_run_on_thick_slice_examples(data, tmp_path):
    """Half the examples thick-slice (one random axis of slices at 1.5-4x, the others 1-2x): the run trains and
    its examples are what the config asks for."""
    from arssr import pairs
    from arssr.training.config import pair_options

    config = tiny_config(data, tmp_path / "thick", "steps=4", "sampling.thick_share=0.5",
                         "sampling.thick_scale=[1.5, 4.0]")
    options = pair_options(config)
    assert (options.thick_share, options.thick_scale, options.inplane_scale) == (0.5, (1.5, 4.0), (1.0, 2.0))
    drawn = pairs.draw_examples(40, options, torch.Generator().manual_seed(0))
    assert 0 < sum(not isinstance(e.method, str) for e in drawn) < 40
    run_dir = training.train(config)
    assert load_model(run_dir / "last.safetensors").card["step"] == "4"
    assert np.isfinite(scalars(run_dir)["loss/train"]).all()


def test_loss_falls(run):
    losses = scalars(run)["loss/train"]
    assert len(losses) == 10
    assert sum(losses[-2:]) / 2 < 0.75 * losses[0], losses


def test_run_folder_holds_logs_checkpoint_and_weights(run):
    logged = scalars(run)
    for tag in ("loss/train", "loss/val", "psnr/val", "ssim/val", "lr"):
        assert tag in logged, tag
    assert len(logged["psnr/val"]) == 2 and set(logged["images"]) == {"images/lr_x2", "images/sr_x2", "images/hr"}
    assert list(run.glob("events.out.tfevents.*"))
    split = json.loads((run / "split.json").read_text())
    assert [len(split[k]) for k in ("train", "val", "test")] == [3, 1, 1]
    assert yaml.safe_load((run / "config.yaml").read_text())["steps"] == 50
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["step"] == 50 and state["epoch"] == 50 // 3  # 3 train subjects x 4 crops / 4 per step
    assert state["best_psnr"] == pytest.approx(max(logged["psnr/val"]), rel=1e-6)
    assert {"model", "optimizer", "scheduler", "scaler", "rng", "generator", "pool", "config", "arssr_version"} <= set(
        state)
    best = load_model(run / "best.safetensors")
    assert best.args["decoder_width"] == 32 and best.args["encoder_args"]["num_blocks"] == 2
    last = load_file(run / "last.safetensors")
    assert all(torch.equal(last[k], v) for k, v in state["model"].items())


def test_resume_continues_bit_for_bit(data, tmp_path):
    straight = training.train(tiny_config(data, tmp_path / "straight", "steps=6", "val_every=2"))
    interrupted = tiny_config(data, tmp_path / "resumed", "steps=3", "val_every=2")
    training.train(interrupted)
    with pytest.raises(InputError, match="holds a run already"):
        training.train(interrupted)
    resumed = training.train(tiny_config(data, tmp_path / "resumed", "steps=6", "val_every=2"), resume="auto")
    a, b = load_file(straight / "last.safetensors"), load_file(resumed / "last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert torch.load(resumed / "checkpoint.pt", weights_only=True)["step"] == 6


@pytest.mark.parametrize("schedule, warmup", [("step", 0), ("step", 3), ("cosine", 0), ("cosine", 4)])
def test_learning_rate_schedules(schedule, warmup):
    total, decay_steps = 20, 6
    factor = lr_factor(schedule, warmup, total, decay_steps, 0.5)
    # StepLR and a cosine formula written out, times the warm-up ramp
    reference = torch.optim.lr_scheduler.StepLR(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0),
                                                decay_steps, gamma=0.5)
    for step in range(total + 1):
        ramp = min(1.0, (step + 1) / warmup) if warmup else 1.0
        expected = ramp * (reference.get_last_lr()[0] if schedule == "step"
                           else (1 + np.cos(np.pi * step / total)) / 2)
        assert factor(step) == pytest.approx(expected, abs=1e-12), step
        reference.optimizer.step()
        reference.step()
    assert lr_factor("cosine", 0, total, decay_steps, 0.5)(total) == pytest.approx(0.0, abs=1e-12)


def test_cosine_run_keeps_weights_at_export_steps_with_their_training_time(data, tmp_path):
    out = training.train(tiny_config(data, tmp_path / "cosine", "steps=6", "export_steps=[2, 5]",
                                     "optim.schedule=cosine", "optim.warmup_steps=2", "optim.lr=1e-3"))
    cards = {step: read_metadata(out / f"step_{step:06d}.safetensors") for step in (2, 5)}
    assert sorted(p.name for p in out.glob("step_*")) == ["step_000002.safetensors", "step_000005.safetensors"]
    assert [cards[k]["step"] for k in (2, 5)] == ["2", "5"]
    assert 0 < float(cards[2]["cpu_seconds"]) < float(cards[5]["cpu_seconds"])
    assert 0 < float(cards[2]["train_seconds"]) < float(cards[5]["train_seconds"])
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert float(read_metadata(out / "last.safetensors")["cpu_seconds"]) == pytest.approx(state["seconds"]["cpu"],
                                                                                           abs=0.05)
    # the learning rate of the next step, logged at steps 5 and 6: 1e-3 (1 + cos(pi s / 6)) / 2, 0 at the end
    assert scalars(out)["lr"] == pytest.approx([1e-3 * (1 + np.cos(np.pi * 5 / 6)) / 2, 0.0], rel=1e-5, abs=1e-12)
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.0, abs=1e-12)
    kept = load_file(out / "step_000005.safetensors")
    assert kept.keys() == load_file(out / "last.safetensors").keys()


def test_max_seconds_stops_and_saves_and_a_resume_keeps_the_time(data, tmp_path):
    out = training.train(tiny_config(data, tmp_path / "capped", "steps=8", "max_seconds=1.0e-9"))
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] == 1 and state["seconds"]["wall"] > 0
    resumed = training.train(tiny_config(data, out, "steps=3"), resume="auto")
    after = torch.load(resumed / "checkpoint.pt", weights_only=True)
    assert after["step"] == 3 and after["seconds"]["wall"] > state["seconds"]["wall"]
    assert after["seconds"]["cpu"] > state["seconds"]["cpu"]


def test_cli_trains_resumes_and_reports_config_errors(data, tmp_path, capsys):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump({**TINY, "data": str(data)}))
    out = tmp_path / "cli"
    assert main(["train", "--config", str(recipe), "--out", str(out), "steps=2", "--seed", "3"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert main(["train", "--resume", str(out / "checkpoint.pt"), "steps=4"]) == 0
    assert main(["train", "--resume", "auto", "--out", str(out), "steps=5"]) == 0
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] == 5 and state["config"]["seed"] == 3
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--config", str(recipe), "--out", str(tmp_path / "x"), "model.widht=3"])
    assert exit_info.value.code == 2 and not (tmp_path / "x").exists()
    assert "unknown config key 'model.widht'; valid keys:" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, config: dict, folder: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    trainer = training.Trainer(config)
    trainer.fit()
    torch.save(trainer.module.state_dict(), Path(folder) / f"rank{rank}.pt")


def test_two_process_ddp_matches_one_process(data, tmp_path):
    overrides = ("steps=4", "val.volumes=0", "optim.lr=1e-3")
    config = tiny_config(data, tmp_path / "ddp", *overrides)
    mp.spawn(_ddp_worker, args=(2, _free_port(), config, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])
    single = training.Trainer(tiny_config(data, tmp_path / "single", *overrides))
    start = {k: v.clone() for k, v in single.module.state_dict().items()}
    single.fit()
    written = load_file(tmp_path / "ddp" / "last.safetensors")  # rank 0 alone writes
    for key, value in single.module.state_dict().items():
        assert torch.equal(written[key], ranks[0][key])
        gap, moved = float((ranks[0][key] - value).norm()), float((value - start[key]).norm())
        assert gap <= 1e-5 * float(value.norm()) and gap <= 1e-3 * moved, key


def _ddp_worker_out_of_time(rank: int, world: int, port: int, config: dict, folder: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    trainer = training.Trainer(config)
    if rank == 1:
        trainer.seconds["wall"] = 1e9  # its own clock says the time is up (it counts its waits); rank 0's does not
    trainer.fit()
    (Path(folder) / f"steps{rank}.txt").write_text(str(trainer.step))


def test_ranks_stop_together_at_the_time_limit(data, tmp_path):
    import time

    config = tiny_config(data, tmp_path / "ddp_time", "steps=3", "val.volumes=0", "max_seconds=3600")
    context = mp.spawn(_ddp_worker_out_of_time, args=(2, _free_port(), config, str(tmp_path)), nprocs=2, join=False)
    deadline = time.monotonic() + 300
    while not context.join(timeout=5):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the ranks did not stop together: one waits for the other")
    assert [(tmp_path / f"steps{rank}.txt").read_text() for rank in range(2)] == ["3", "3"]


def test_training_leaves_the_callers_global_state_as_it_was(data, tmp_path):
    import os
    import random

    torch.manual_seed(123)
    np.random.seed(7)
    random.seed(11)
    threads = torch.get_num_threads()
    before = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state().clone(),
              torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
              os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    training.train(tiny_config(data, tmp_path / "scoped", "steps=2", "val_every=2", "deterministic=true",
                               f"threads={threads + 1}", "seed=5"))
    assert torch.get_num_threads() == threads
    assert random.getstate() == before[0] and np.array_equal(np.random.get_state()[1], before[1])
    assert torch.equal(torch.get_rng_state(), before[2])
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
            os.environ.get("CUBLAS_WORKSPACE_CONFIG")) == before[3:]
