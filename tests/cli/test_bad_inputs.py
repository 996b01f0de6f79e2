"""Bad inputs to every command: one ``error:`` line, the right exit code, nothing written, the inputs untouched.

Each case runs ``arssr.cli.main`` in-process in a folder of small files (see
:func:`workspace`), then checks the exit code (1: a file or a value that does
not fit this input, 2: an option that is wrong whatever the input), exactly
one stderr line starting with ``error:`` and no traceback, and that no file in
the folder is new or changed (by sha256) except the intended output. A few
tests at the end run the real command in a subprocess and stop it with
SIGTERM (or SIGKILL) at chosen moments.

Unwritable outputs use places that stay unwritable for root (the tests run as
root in CI, where permission bits do not stop a write): a path below a regular
file, and ``/proc``.
"""

import hashlib
import json
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from safetensors.torch import save_file

from arssr.cli import main
from arssr.models import save_model
from conftest import make_tiny_model, smooth_volume

ROOT = Path(__file__).resolve().parents[2]


class Payload:
    """A pickle that would create a file when unpickled (it never may be)."""

    def __reduce__(self):
        return (open, ("pwned", "w"))


def _nifti(path: Path, data, affine=None) -> None:
    nib.save(nib.Nifti1Image(np.asarray(data), np.eye(4) if affine is None else affine), path)


@pytest.fixture(scope="module")
def arssr_bytes(tmp_path_factory) -> bytes:
    """A small valid ``.arssr`` file (12^3 volume, SR model: the tiny model)."""
    from arssr.compress import compress

    folder = tmp_path_factory.mktemp("arssr")
    save_model(make_tiny_model(), folder / "tiny.safetensors")
    _nifti(folder / "v.nii.gz", smooth_volume((12, 12, 12)))
    compress(folder / "v.nii.gz", folder / "v.arssr", sr_model=folder / "tiny.safetensors", preset="fast",
             steps=10, scale=2.0, device="cpu")
    return (folder / "v.arssr").read_bytes()


@pytest.fixture
def workspace(tmp_path, monkeypatch, arssr_bytes) -> Path:
    """The current folder, holding every file the cases name."""
    monkeypatch.chdir(tmp_path)
    good = smooth_volume((12, 12, 12))
    _nifti(tmp_path / "good.nii.gz", good)
    raw = (tmp_path / "good.nii.gz").read_bytes()
    (tmp_path / "truncated.nii.gz").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    (tmp_path / "text.nii").write_text("not a volume\n" * 40)
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    _nifti(tmp_path / "flat.nii.gz", good[:, :, 0])
    _nifti(tmp_path / "movie.nii.gz", np.stack([good, good], axis=-1))
    for name, value in (("nan", np.nan), ("inf", np.inf)):
        bad = good.copy()
        bad[3, 3, 3] = value
        _nifti(tmp_path / f"{name}.nii.gz", bad)
    _nifti(tmp_path / "zeros.nii.gz", np.zeros((8, 8, 8), np.float32))
    _nifti(tmp_path / "constant.nii.gz", np.full((8, 8, 8), 7, np.int16))
    _nifti(tmp_path / "voxel.nii.gz", np.ones((1, 1, 1), np.float32))
    (tmp_path / "empty_folder").mkdir()
    (tmp_path / "blocker").write_text("a regular file, used as if it were a folder")
    (tmp_path / "taken.nii.gz").write_bytes(b"someone's file")
    (tmp_path / "link.nii.gz").symlink_to(tmp_path / "good.nii.gz")
    os.link(tmp_path / "good.nii.gz", tmp_path / "hard.nii.gz")
    save_model(make_tiny_model(), tmp_path / "tiny.safetensors")
    save_model(make_tiny_model(feature_dim=8), tmp_path / "other.safetensors")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    (tmp_path / "random.safetensors").write_bytes(np.random.default_rng(0).bytes(4096))
    tensors = {k: v.contiguous() for k, v in make_tiny_model(feature_dim=8).state_dict().items()}
    save_file(tensors, tmp_path / "mismatched.safetensors",
              metadata=dict(tiny_metadata(tmp_path / "tiny.safetensors")))
    with open(tmp_path / "evil.pkl", "wb") as handle:
        pickle.dump({"model": Payload()}, handle)
    (tmp_path / "wrong_keys.pt").write_bytes((ROOT / "pytest.ini").read_bytes())
    (tmp_path / "v.arssr").write_bytes(arssr_bytes)
    (tmp_path / "empty.arssr").write_bytes(b"")
    (tmp_path / "truncated.arssr").write_bytes(arssr_bytes[:-7])
    flipped = bytearray(arssr_bytes)
    flipped[len(flipped) // 2] ^= 0xFF
    (tmp_path / "flipped.arssr").write_bytes(bytes(flipped))
    (tmp_path / "foreign.arssr").write_bytes(raw)
    (tmp_path / "arssr_link.nii").symlink_to(tmp_path / "v.arssr")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "results.csv").symlink_to(tmp_path / "good.nii.gz")
    (tmp_path / "recipe.yaml").write_text("steps: 1\nbatch_size: 1\nsamples: 16\n")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("steps: 1\n")
    return tmp_path


def tiny_metadata(path: Path) -> dict:
    from arssr.models.checkpoint import read_metadata

    return read_metadata(path)


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file below ``folder`` (hidden ones too); link targets for symlinks."""
    state = {}
    for root, dirs, names in os.walk(folder):
        for name in dirs + names:
            path = Path(root) / name
            key = str(path.relative_to(folder))
            if path.is_symlink():
                state[key] = "-> " + os.readlink(path)
            elif path.is_file():
                state[key] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                state[key] = "folder"
    return state


def run_cli(capsys, argv: list[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exit_info:
        code = exit_info.code
    return code, capsys.readouterr().err


UP = ["upsample", "good.nii.gz", "--weights", "tiny.safetensors", "-o", "out.nii.gz", "-q"]
COMPRESS = ["compress", "good.nii.gz", "-o", "out.arssr", "--decoder-weights", "tiny.safetensors", "-q"]
DECOMPRESS = ["decompress", "v.arssr", "-o", "out.nii.gz", "--decoder-weights", "tiny.safetensors", "-q"]
EVAL = ["evaluate", "--gt", "good.nii.gz", "-o", "evaluation", "--methods", "nearest", "--scales", "2",
        "--degradations", "cubic", "--no-lpips", "--no-psi", "--no-dice", "--no-figures", "-q"]
TRAIN = ["train", "--data", "mni-synthetic", "--out", "newrun"]


def with_(base: list[str], *changes: str, drop: tuple[str, ...] = ()) -> list[str]:
    """``base`` with options replaced (``--opt value`` pairs or flags) and the named options dropped."""
    argv, i = list(base), 0
    for name in drop:
        at = argv.index(name)
        del argv[at:at + 2]
    changes = list(changes)
    while i < len(changes):
        name = changes[i]
        value = changes[i + 1] if i + 1 < len(changes) and not changes[i + 1].startswith("--") else None
        if name in argv and value is not None and name.startswith("-"):
            argv[argv.index(name) + 1] = value
        elif name.startswith("-"):
            argv += [name] + ([value] if value is not None else [])
        else:  # a positional: the input
            argv[1] = name
        i += 2 if value is not None else 1
    return argv


# (case id, argv, exit code, text of the error line)
CASES = [
    # upsample: inputs
    ("up-missing", with_(UP, "missing.nii.gz"), 1, "missing.nii.gz: file not found"),
    ("up-empty", with_(UP, "empty.nii.gz"), 1, "cannot read as NIfTI"),
    ("up-truncated", with_(UP, "truncated.nii.gz"), 1, "cannot read as NIfTI"),
    ("up-text-as-nifti", with_(UP, "text.nii"), 1, "cannot read as NIfTI"),
    ("up-not-nifti", with_(UP, "image.png"), 1, "not a NIfTI file"),
    ("up-empty-folder", with_(UP, "empty_folder", drop=("-o",)), 2, "no .nii or .nii.gz files"),
    ("up-2d", with_(UP, "flat.nii.gz"), 1, "2D image"),
    ("up-4d", with_(UP, "movie.nii.gz"), 1, "4D volume with 2 frames"),
    ("up-nan", with_(UP, "nan.nii.gz"), 1, "1 NaN or infinite voxels"),
    ("up-inf", with_(UP, "inf.nii.gz"), 1, "1 NaN or infinite voxels"),
    ("up-1x1x1", with_(UP, "voxel.nii.gz"), 1, "single voxel"),
    ("up-no-input", UP[:1] + UP[2:] + ["--scale", "2"], 2, "at least one INPUT"),
    # upsample: scales and voxel sizes
    ("up-scale-text", with_(UP, "--scale", "abc"), 2, "scale must be a number"),
    ("up-scale-below-1", with_(UP, "--scale", "0.5,1,1"), 2, "scale must be >= 1"),
    ("up-scale-zero", with_(UP, "--scale", "0"), 2, "scale must be >= 1"),
    ("up-scale-negative", with_(UP, "--scale=-2"), 2, "scale must be >= 1"),
    ("up-scale-nan", with_(UP, "--scale", "nan"), 2, "scale must be finite"),
    ("up-scale-inf", with_(UP, "--scale", "inf"), 2, "scale must be finite"),
    ("up-scale-two-values", with_(UP, "--scale", "2,2"), 2, "needs 1 or 3 values"),
    ("up-scale-absurd", with_(UP, "--scale", "6000"), 1, "NIfTI limit"),
    ("up-scale-over-memory", with_(UP, "--scale", "2000"), 1, "of memory is free"),
    ("up-voxel-size-zero", with_(UP, "--voxel-size", "0"), 2, "voxel size must be positive"),
    ("up-voxel-size-negative", with_(UP, "--voxel-size=-1,1,1"), 2, "voxel size must be positive"),
    ("up-voxel-size-absurd", with_(UP, "--voxel-size", "1e-9"), 1, "NIfTI limit"),
    ("up-scale-and-voxel-size", with_(UP, "--scale", "2", "--voxel-size", "1"), 2, "not allowed with"),
    # upsample: other options
    ("up-threads-negative", with_(UP, "--scale", "2", "--threads=-1"), 2, "positive whole number"),
    ("up-threads-zero", with_(UP, "--scale", "2", "--threads", "0"), 2, "positive whole number"),
    ("up-tile-zero", with_(UP, "--scale", "2", "--tile", "0"), 2, "positive whole number"),
    ("up-dtype", with_(UP, "--scale", "2", "--dtype", "bogus"), 2, "invalid choice: 'bogus'"),
    ("up-device", with_(UP, "--scale", "2", "--device", "quantum"), 1, "unknown device"),
    # upsample: outputs
    ("up-output-is-input", with_(UP, "--scale", "2", "-o", "good.nii.gz", "--overwrite"), 1, "is the input"),
    ("up-output-symlink-to-input", with_(UP, "--scale", "2", "-o", "link.nii.gz", "--overwrite"), 1, "is the input"),
    ("up-output-hard-link-to-input", with_(UP, "--scale", "2", "-o", "hard.nii.gz", "--overwrite"), 1,
     "is the input"),
    ("up-output-is-input-no-overwrite", with_(UP, "--scale", "2", "-o", "good.nii.gz"), 1, "is the input"),
    ("up-output-exists", with_(UP, "--scale", "2", "-o", "taken.nii.gz"), 1, "exists (use --overwrite"),
    ("up-output-below-a-file", with_(UP, "--scale", "2", "-o", "blocker/out.nii.gz"), 1, "cannot write"),
    ("up-output-in-proc", with_(UP, "--scale", "2", "-o", "/proc/arssr-out.nii.gz"), 1, "cannot write"),
    ("up-output-suffix", with_(UP, "--scale", "2", "-o", "out.png"), 2, "must end in .nii or .nii.gz"),
    ("up-output-and-dir", with_(UP, "--scale", "2", "--output-dir", "x"), 2, "not both"),
    # upsample: weights files
    ("up-weights-missing", with_(UP, "--scale", "2", "--weights", "none.safetensors"), 1, "weights file not found"),
    ("up-weights-empty", with_(UP, "--scale", "2", "--weights", "empty.safetensors"), 1,
     "not a readable safetensors file"),
    ("up-weights-random", with_(UP, "--scale", "2", "--weights", "random.safetensors"), 1,
     "not a readable safetensors file"),
    ("up-weights-mismatched", with_(UP, "--scale", "2", "--weights", "mismatched.safetensors"), 1,
     "weights do not match the model"),
    ("up-weights-pickle", with_(UP, "--scale", "2", "--weights", "evil.pkl"), 1, "not a readable PyTorch weights"),
    ("up-weights-not-torch", with_(UP, "--scale", "2", "--weights", "wrong_keys.pt"), 1,
     "not a readable PyTorch weights"),
    # info
    ("info-missing", ["info", "missing.nii.gz"], 1, "file not found"),
    ("info-empty", ["info", "empty.nii.gz"], 1, "cannot read as NIfTI"),
    ("info-truncated", ["info", "truncated.nii.gz"], 1, "cannot read as NIfTI"),
    ("info-4d", ["info", "movie.nii.gz"], 1, "4D volume"),
    ("info-nan", ["info", "nan.nii.gz"], 1, "NaN or infinite"),
    ("info-unknown-kind", ["info", "image.png"], 1, "not a NIfTI volume, a weights file or an .arssr file"),
    ("info-folder", ["info", "empty_folder"], 1, "empty_folder: is a folder, not a file"),
    ("info-weights-random", ["info", "random.safetensors"], 1, "not a readable safetensors file"),
    ("info-weights-pickle", ["info", "evil.pkl"], 1, "not a readable PyTorch weights"),
    ("info-arssr-flipped", ["info", "flipped.arssr"], 1, "checksum mismatch"),
    ("info-arssr-foreign", ["info", "foreign.arssr"], 1, "wrong magic number"),
    # compress (every case fails before any fitting)
    ("co-missing", with_(COMPRESS, "missing.nii.gz"), 1, "file not found"),
    ("co-nan", with_(COMPRESS, "nan.nii.gz"), 1, "NaN or infinite"),
    ("co-4d", with_(COMPRESS, "movie.nii.gz"), 1, "4D volume"),
    ("co-zeros", with_(COMPRESS, "zeros.nii.gz"), 1, "constant (0 everywhere)"),
    ("co-constant", with_(COMPRESS, "constant.nii.gz"), 1, "constant (7 everywhere)"),
    ("co-output-is-input", with_(COMPRESS, "-o", "good.nii.gz", "--overwrite"), 1, "is the input"),
    ("co-output-symlink-to-input", with_(COMPRESS, "-o", "link.nii.gz", "--overwrite"), 1, "is the input"),
    ("co-json-is-input", with_(COMPRESS, "--json", "hard.nii.gz", "--overwrite"), 1, "is the input"),
    ("co-output-is-decoder", with_(COMPRESS, "-o", "tiny.safetensors", "--overwrite"), 1, "is the input"),
    ("co-output-exists", with_(COMPRESS, "-o", "taken.nii.gz"), 1, "exists (use --overwrite"),
    ("co-output-below-a-file", with_(COMPRESS, "-o", "blocker/out.arssr"), 1, "cannot write"),
    ("co-output-in-proc", with_(COMPRESS, "-o", "/proc/arssr-out.arssr"), 1, "cannot write"),
    ("co-no-output", with_(COMPRESS, drop=("-o",)), 2, "give -o/--output"),
    ("co-preset", with_(COMPRESS, "--preset", "bogus"), 2, "unknown preset 'bogus'"),
    ("co-scale-below-1", with_(COMPRESS, "--scale", "0.5"), 2, "scale must be >= 1"),
    ("co-scale-text", with_(COMPRESS, "--scale", "abc"), 2, "invalid float value"),
    ("co-target-bpp-negative", with_(COMPRESS, "--target-bpp=-1"), 2, "expected a positive number"),
    ("co-target-bpp-nan", with_(COMPRESS, "--target-bpp", "nan"), 2, "expected a positive number"),
    ("co-two-targets", with_(COMPRESS, "--target-bpp", "1", "--target-psnr", "30"), 2, "not allowed with"),
    ("co-threads-negative", with_(COMPRESS, "--threads=-1"), 2, "positive whole number"),
    ("co-decoder-empty", with_(COMPRESS, "--decoder-weights", "empty.safetensors"), 1,
     "not a readable safetensors file"),
    ("co-decoder-pickle", with_(COMPRESS, "--decoder-weights", "evil.pkl"), 1, "not a readable PyTorch weights"),
    # decompress
    ("de-missing", with_(DECOMPRESS, "missing.arssr"), 1, "file not found"),
    ("de-empty", with_(DECOMPRESS, "empty.arssr"), 1, "truncated .arssr file (0 bytes)"),
    ("de-truncated", with_(DECOMPRESS, "truncated.arssr"), 1, ".arssr file truncated"),
    ("de-flipped-byte", with_(DECOMPRESS, "flipped.arssr"), 1, "checksum mismatch"),
    ("de-foreign", with_(DECOMPRESS, "foreign.arssr"), 1, "wrong magic number"),
    ("de-dtype", with_(DECOMPRESS, "--dtype", "bogus"), 2, "invalid choice: 'bogus'"),
    ("de-output-suffix", with_(DECOMPRESS, "-o", "out.arssr"), 2, "must end in .nii or .nii.gz"),
    ("de-output-is-input", with_(DECOMPRESS, "-o", "arssr_link.nii", "--overwrite"), 1, "is the input"),
    ("de-output-exists", with_(DECOMPRESS, "-o", "taken.nii.gz"), 1, "exists (use --overwrite"),
    ("de-output-below-a-file", with_(DECOMPRESS, "-o", "blocker/out.nii.gz"), 1, "cannot write"),
    ("de-decoder-mismatched", with_(DECOMPRESS, "--decoder-weights", "other.safetensors"), 1, "sha256"),
    ("de-decoder-random", with_(DECOMPRESS, "--decoder-weights", "random.safetensors"), 1, "sha256"),
    ("de-threads-zero", with_(DECOMPRESS, "--threads", "0"), 2, "positive whole number"),
    # evaluate
    ("ev-missing", with_(EVAL, "--gt", "missing.nii.gz"), 1, "file not found"),
    ("ev-4d", with_(EVAL, "--gt", "movie.nii.gz"), 1, "4D volume"),
    ("ev-output-is-a-file", with_(EVAL, "-o", "taken.nii.gz"), 1, "is a file; -o/--output-dir takes a folder"),
    ("ev-result-is-input", with_(EVAL, "-o", "results", "--overwrite"), 1, "is the input"),
    ("ev-folder-with-other-files", with_(EVAL, "-o", "run"), 0, ""),
    ("ev-output-below-a-file", with_(EVAL, "-o", "blocker/results"), 1, "cannot write"),
    ("ev-scales-text", with_(EVAL, "--scales", "abc"), 2, "--scales takes comma-separated numbers"),
    ("ev-scales-below-1", with_(EVAL, "--scales", "0.5"), 2, "scale must be >= 1"),
    ("ev-degradation", with_(EVAL, "--degradations", "blur"), 2, "unknown degradation 'blur'"),
    ("ev-method", with_(EVAL, "--methods", "bicubic"), 1, "unknown method 'bicubic'"),
    ("ev-method-pickle", with_(EVAL, "--methods", "evil.pkl"), 1, "not a readable PyTorch weights"),
    ("ev-threads-negative", with_(EVAL, "--threads=-1"), 2, "positive whole number"),
    # train (nothing may appear in the run folder)
    ("tr-unknown-key", TRAIN + ["model.widht=3"], 2, "unknown config key 'model.widht'"),
    ("tr-bad-value", TRAIN + ["steps=-1"], 2, "must be positive integers"),
    ("tr-bad-encoder", TRAIN + ["model.encoder=bogus"], 1, "config: model:"),
    ("tr-config-missing", TRAIN + ["--config", "none.yaml"], 2, "cannot read the config"),
    ("tr-init-empty", TRAIN + ["init=empty.safetensors"], 1, "not a readable safetensors file"),
    ("tr-init-pickle", TRAIN + ["init=evil.pkl"], 1, "not a readable PyTorch weights"),
    ("tr-out-below-a-file", with_(TRAIN, "--out", "blocker/run"), 1, "cannot write"),
    ("tr-config-in-run-folder", with_(TRAIN, "--out", "run", "--config", "run/config.yaml"), 1, "is the input"),
    ("tr-threads-negative", TRAIN + ["--threads=-1"], 2, "positive whole number"),
]


@pytest.mark.parametrize("argv, code, message", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input(workspace, capsys, argv, code, message):
    before = snapshot(workspace)
    if code == 0:
        return _succeeds(workspace, capsys, argv, before)
    got, err = run_cli(capsys, _scaled(argv))
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert got == code, err
    assert len(errors) == 1 and message in errors[0], err
    assert "Traceback" not in err
    assert snapshot(workspace) == before
    assert not (workspace / "pwned").exists()


def _scaled(argv: list[str]) -> list[str]:
    """Upsampling cases without a size option get ``--scale 2``."""
    if argv[0] == "upsample" and not any(a.startswith(("--scale", "--voxel-size")) for a in argv):
        return [*argv, "--scale", "2"]
    return argv


def _succeeds(workspace: Path, capsys, argv: list[str], before: dict) -> None:
    """Cases that look suspicious but are fine: they write their output and touch nothing else."""
    got, err = run_cli(capsys, _scaled(argv))
    assert got == 0 and "Traceback" not in err, err
    after = snapshot(workspace)
    assert {k: v for k, v in after.items() if k in before} == before
    assert set(after) - set(before)


@pytest.mark.parametrize("name", ["zeros", "constant"])
def test_zero_and_constant_volumes_upsample_to_themselves(workspace, capsys, name):
    before = snapshot(workspace)
    code, err = run_cli(capsys, with_(UP, f"{name}.nii.gz", "--scale", "2", "--dtype", "input"))
    assert code == 0, err
    source, result = nib.load(f"{name}.nii.gz"), nib.load("out.nii.gz")
    assert result.shape == (16, 16, 16) and np.all(result.get_fdata() == source.get_fdata()[0, 0, 0])
    assert set(snapshot(workspace)) - set(before) == {"out.nii.gz", "out.json"}


def test_a_constant_volume_is_not_adapted_and_save_adapted_says_so(workspace, capsys):
    """--adapt on a constant volume upsamples it to itself with no adaptation in the sidecar; with
    --save-adapted the file fails by one line and nothing is written."""
    before = snapshot(workspace)
    code, err = run_cli(capsys, with_(UP, "constant.nii.gz", "--scale", "2", "--adapt-steps", "1"))
    assert code == 0, err
    assert json.loads(Path("out.json").read_text())["adapt"] is None
    Path("out.nii.gz").unlink()
    Path("out.json").unlink()
    code, err = run_cli(capsys, with_(UP, "constant.nii.gz", "--scale", "2", "--adapt-steps", "1",
                                      "--save-adapted", "adapted.safetensors"))
    assert code == 1
    assert err.strip().splitlines()[-1] == ("error: constant.nii.gz: the volume is constant, there is nothing to "
                                            "adapt to: adapted.safetensors is not written")
    assert snapshot(workspace) == before


def test_disagreeing_qform_and_sform_is_one_warning(workspace, capsys):
    image = nib.Nifti1Image(smooth_volume((10, 10, 10)), np.eye(4))
    shifted = np.eye(4)
    shifted[:3, 3] = [5.0, 0.0, 0.0]
    image.header.set_qform(shifted, code=1)
    image.header.set_sform(np.eye(4), code=2)
    nib.save(image, "forms.nii.gz")
    code, err = run_cli(capsys, with_(UP, "forms.nii.gz", "--scale", "2"))
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert code == 0 and len(warnings) == 1 and "qform and sform disagree (by up to 5 mm" in warnings[0], err
    assert "using the sform" in warnings[0]
    np.testing.assert_allclose(nib.load("out.nii.gz").header.get_qform(), nib.load("out.nii.gz").header.get_sform())


def test_failed_segmentation_is_a_warning_and_the_report_is_written(workspace, capsys, monkeypatch):
    pytest.importorskip("ants")

    def stops(*args, **kwargs):
        raise Exception("Atropos exited with non-zero status 1.\nmore detail")

    monkeypatch.setattr("arssr.evaluation.segmentation.atropos_tissues", stops)
    _nifti(workspace / "gt.nii.gz", smooth_volume((16, 16, 16)))
    code, err = run_cli(capsys, with_(EVAL, "--gt", "gt.nii.gz", "-o", "report", drop=("--no-dice",)))
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert code == 0 and len(warnings) == 1 and "Dice: unavailable (segmentation of gt failed" in warnings[0], err
    assert "Dice: unavailable" in (workspace / "report" / "results.md").read_text()


# ---------------------------------------------------------------------------
# The real command, stopped by a signal


def _command(folder: Path, argv: list[str], kill_in: str, sig: str = "SIGTERM", after: int = 1):
    """``arssr ARGV`` in a subprocess that sends itself ``sig`` on the ``after``-th call of ``kill_in``
    (``module:attribute``, dotted for a method), so the moment is exact."""
    module, name = kill_in.split(":")
    script = (
        "import importlib, os, signal, sys\n"
        f"owner, (*path, last) = importlib.import_module({module!r}), {name!r}.split('.')\n"
        "for part in path:\n"
        "    owner = getattr(owner, part)\n"
        "original, calls = getattr(owner, last), [0]\n"
        "def hooked(*args, **kwargs):\n"
        "    calls[0] += 1\n"
        f"    if calls[0] == {after}:\n"
        f"        os.kill(os.getpid(), signal.{sig})\n"
        "    return original(*args, **kwargs)\n"
        "setattr(owner, last, hooked)\n"
        "from arssr.cli import main\n"
        f"sys.exit(main({argv!r}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", script], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def signal_workspace(tmp_path) -> Path:
    _nifti(tmp_path / "in.nii.gz", smooth_volume((12, 12, 12)))
    save_model(make_tiny_model(), tmp_path / "tiny.safetensors")
    return tmp_path


UPSAMPLE = ["upsample", "in.nii.gz", "--scale", "3", "-o", "out.nii.gz", "--weights", "tiny.safetensors", "-q"]


@pytest.mark.slow
@pytest.mark.parametrize("argv, moment, after", [
    (UPSAMPLE, "arssr.volume:load_volume", 1),  # loading
    (UPSAMPLE, "arssr.models.tiling:_encode_tile", 1),  # encoding
    (UPSAMPLE, "arssr.models.separable:lerp_axis", 2),  # decoding
    (UPSAMPLE, "gzip:GzipFile.write", 2),  # writing, part of the output written
    (["compress", "in.nii.gz", "-o", "out.arssr", "--decoder-weights", "tiny.safetensors", "--preset", "fast",
      "--scale", "2", "-q"], "arssr.compress.codec:fit_siren", 1),  # fitting the SIREN
], ids=["upsample-loading", "upsample-encoding", "upsample-decoding", "upsample-writing", "compress-fitting"])
def test_sigterm_leaves_nothing_and_says_so_in_one_line(signal_workspace, argv, moment, after):
    before = snapshot(signal_workspace)
    result = _command(signal_workspace, argv, moment, after=after)
    assert result.returncode == 128 + signal.SIGTERM, result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
        "error: terminated (SIGTERM); no partial output was left"], result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot(signal_workspace) == before


@pytest.mark.slow
def test_sigkill_while_writing_leaves_nothing(signal_workspace):
    before = snapshot(signal_workspace)
    result = _command(signal_workspace, UPSAMPLE, "gzip:GzipFile.write", "SIGKILL", after=2)
    assert result.returncode == -signal.SIGKILL
    assert snapshot(signal_workspace) == before


@pytest.mark.slow
def test_sigterm_from_outside_at_start_leaves_nothing(signal_workspace):
    """The real ``python -m arssr``, stopped by another process while it starts up and loads."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    before = snapshot(signal_workspace)
    process = subprocess.Popen([sys.executable, "-m", "arssr", *UPSAMPLE], cwd=signal_workspace, env=env,
                               stderr=subprocess.PIPE, text=True)
    try:
        process.wait(timeout=1.0)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
    err = process.communicate(timeout=120)[1]
    # Before arssr's handler is installed Python's default action ends the process silently.
    assert process.returncode in (128 + signal.SIGTERM, -signal.SIGTERM), err
    assert "Traceback" not in err
    assert snapshot(signal_workspace) == before
