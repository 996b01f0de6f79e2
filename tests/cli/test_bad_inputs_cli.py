"""Bad inputs, second round: outputs that collide or escape, the distributed environment, kinds of files,
headers nibabel reads without complaint, values out of range, and messages.

The cases run as :mod:`test_bad_inputs` runs its own (in-process, in the same folder of small files) and
are checked the same way: the exit code, exactly one ``error:`` line, no traceback, no file new or changed.
"""

import os
import signal
import struct
import warnings

import nibabel as nib
import numpy as np
import pytest

from arssr.cli import _sigterm_as_interrupt
from arssr.errors import InputError
from arssr.volume import Volume, load_volume, save_volume
from conftest import smooth_volume
from .test_bad_inputs import (  # noqa: F401  (arssr_bytes and workspace are fixtures used here)
    COMPRESS, DECOMPRESS, EVAL, TRAIN, UP, _nifti, _scaled, arssr_bytes, run_cli, snapshot, with_, workspace,
)

HUGE = "9" * 300


def _patched(source: bytes, offset: int, fmt: str, value) -> bytes:
    """``source`` (an uncompressed NIfTI-1 file) with one header field rewritten."""
    patched = bytearray(source)
    patched[offset:offset + struct.calcsize(fmt)] = struct.pack(fmt, value)
    return bytes(patched)


@pytest.fixture
def more(workspace):
    """The workspace of :mod:`test_bad_inputs` with the files of this round."""
    good = smooth_volume((12, 12, 12))
    _nifti(workspace / "plain.nii", good)
    plain = (workspace / "plain.nii").read_bytes()
    (workspace / "offset0.nii").write_bytes(_patched(plain, 108, "<f", 0.0))  # vox_offset
    (workspace / "odd_sform.nii").write_bytes(_patched(plain, 254, "<h", 99))  # sform_code
    _nifti(workspace / "complex.nii.gz", (1j * good).astype(np.complex64))
    header = nib.Nifti1Header()
    header.set_xyzt_units("micron")
    nib.save(nib.Nifti1Image(good, np.diag([500.0, 500.0, 500.0, 1.0]), header), workspace / "microns.nii.gz")
    (workspace / "binary.txt").write_bytes(bytes(range(256)) * 4)
    (workspace / "nul.txt").write_bytes(b"good.nii.gz\x00\n")
    os.mkfifo(workspace / "fifo.nii.gz")
    os.mkfifo(workspace / "fifo.txt")
    os.mkfifo(workspace / "fifo.arssr")
    (workspace / "dangling.nii.gz").symlink_to(workspace / "gone.nii.gz")
    return workspace


# (case id, argv, exit code, text of the error line)
CASES = [
    # two outputs naming one file (the compressed file had been replaced by the JSON report)
    ("co-json-is-output", with_(COMPRESS, "--json", "out.arssr"), 1, "out.arssr: given for two outputs"),
    ("co-json-is-output-by-another-name", with_(COMPRESS, "--json", "results/../out.arssr"), 1,
     "given for two outputs"),
    ("co-json-is-existing-output", with_(COMPRESS, "-o", "taken.nii.gz", "--json", "taken.nii.gz", "--overwrite"),
     1, "given for two outputs"),
    ("up-save-adapted-is-sidecar", with_(UP, "--adapt-steps", "1", "--save-adapted", "out.json"), 1,
     "given for two outputs"),
    # outputs outside the asked place, or in the current folder by accident
    ("up-suffix-escapes", with_(UP, "--output-dir", "od", "--suffix", "/../../escaped", drop=("-o",)), 2,
     "cannot hold '/'"),
    ("up-suffix-slash", with_(UP, "--output-dir", "od", "--suffix", "_x/y", drop=("-o",)), 2, "cannot hold '/'"),
    ("up-output-empty", with_(UP, "-o", ""), 2, "output path is empty"),
    ("up-output-blank", with_(UP, "-o", "  "), 2, "output path is empty"),
    ("up-output-dir-empty", with_(UP, "--output-dir", "", drop=("-o",)), 2, "output path is empty"),
    ("up-save-adapted-empty", with_(UP, "--adapt-steps", "1", "--save-adapted", ""), 2, "output path is empty"),
    ("up-two-inputs-one-file", ["upsample", "good.nii.gz", "constant.nii.gz", "--weights", "tiny.safetensors",
                                "-o", "one.nii.gz", "-q"], 2, "names one file, but there are 2 inputs"),
    ("up-two-inputs-one-nii", ["upsample", "good.nii.gz", "constant.nii.gz", "--weights", "tiny.safetensors",
                               "-o", "ONE.NII", "-q"], 2, "names one file, but there are 2 inputs"),
    ("co-output-empty", with_(COMPRESS, "-o", ""), 2, "output path is empty"),
    ("co-json-empty", with_(COMPRESS, "--json", ""), 2, "output path is empty"),
    ("co-sweep-empty", with_(COMPRESS, "--sweep", "", drop=("-o",)), 2, "output path is empty"),
    ("de-output-empty", with_(DECOMPRESS, "-o", ""), 2, "output path is empty"),
    ("ev-output-empty", with_(EVAL, "-o", ""), 2, "output path is empty"),
    ("bundle-folder-empty", ["export-bundle", "", "--weights", "tiny.safetensors"], 2, "output path is empty"),
    ("tr-out-empty", with_(TRAIN, "--out", ""), 2, "output path is empty"),
    # names the file system cannot hold
    ("up-output-name-too-long", with_(UP, "-o", "x" * 300 + ".nii.gz"), 1, "longer than the file system"),
    ("up-output-folder-name-too-long", with_(UP, "-o", "d" * 300 + "/out.nii.gz"), 1,
     "longer than the file system"),
    ("co-json-name-too-long", with_(COMPRESS, "--json", "j" * 300 + ".json"), 1, "longer than the file system"),
    ("de-output-name-too-long", with_(DECOMPRESS, "-o", "x" * 300 + ".nii.gz"), 1, "longer than the file system"),
    # kinds of files
    ("up-fifo", with_(UP, "fifo.nii.gz"), 1, "fifo.nii.gz: is a FIFO, not a file"),
    ("up-device", with_(UP, "/dev/null"), 1, "/dev/null: is a device, not a file"),
    ("up-dangling-input", with_(UP, "dangling.nii.gz"), 1, "dangling.nii.gz: is a link to a missing file"),
    ("up-list-binary", with_(UP, "binary.txt", drop=("-o",)), 2, "binary.txt: not a text list of paths"),
    ("up-list-nul", with_(UP, "nul.txt", drop=("-o",)), 2, "nul.txt: not a text list of paths"),
    ("up-list-fifo", with_(UP, "fifo.txt", drop=("-o",)), 2, "fifo.txt: is a FIFO, not a list of paths"),
    ("up-list-missing", with_(UP, "none.txt", drop=("-o",)), 2, "none.txt: list of paths not found"),
    ("co-fifo", with_(COMPRESS, "fifo.nii.gz"), 1, "is a FIFO"),
    ("ev-gt-fifo", with_(EVAL, "--gt", "fifo.nii.gz"), 1, "is a FIFO"),
    ("info-fifo", ["info", "fifo.nii.gz"], 1, "fifo.nii.gz: is a FIFO, not a file"),
    ("info-device", ["info", "/dev/null"], 1, "/dev/null: is a device, not a file"),
    ("de-fifo", with_(DECOMPRESS, "fifo.arssr"), 1, "fifo.arssr: is a FIFO, not a file"),
    ("up-weights-fifo", with_(UP, "--weights", "fifo.arssr"), 1, "fifo.arssr: is a FIFO, not a weights file"),
    ("up-weights-folder", with_(UP, "--weights", "results"), 1, "results: is a folder, not a weights file"),
    ("up-weights-dangling", with_(UP, "--weights", "dangling.nii.gz"), 1, "is a link to a missing weights file"),
    # headers nibabel reads without complaint
    ("up-vox-offset-0", with_(UP, "offset0.nii"), 1, "vox_offset 0 lies inside the header"),
    ("up-complex", with_(UP, "complex.nii.gz"), 1, "complex voxels (complex64)"),
    ("info-vox-offset-0", ["info", "offset0.nii"], 1, "vox_offset 0 lies inside the header"),
    ("info-complex", ["info", "complex.nii.gz"], 1, "complex voxels"),
    ("co-complex", with_(COMPRESS, "complex.nii.gz"), 1, "complex voxels"),
    ("ev-gt-complex", with_(EVAL, "--gt", "complex.nii.gz"), 1, "complex voxels"),
    # values out of range, and messages that stay short
    ("up-threads-huge", with_(UP, "--threads", HUGE), 2, "below 2^31"),
    ("up-threads-2^31", with_(UP, "--threads", str(2**31)), 2, "below 2^31"),
    ("up-slice-correction-without-slices", with_(UP, "--slice-thickness", "none", "--slice-correction", "smooth"), 2,
     "cannot go with --slice-thickness none"),
    ("up-slice-correction-without-consistency", with_(UP, "--consistency", "none", "--slice-correction", "smooth"),
     2, "cannot go with --consistency none"),
    ("up-slice-correction-unknown", with_(UP, "--slice-correction", "steps"), 2, "invalid choice: 'steps'"),
    ("up-tile-huge", with_(UP, "--tile", HUGE), 2, "below 2^31"),
    ("up-adapt-steps-huge", with_(UP, "--adapt-steps", HUGE), 2, "below 2^31"),
    ("up-seed-huge", with_(UP, "--seed", HUGE), 2, "a seed from 0 to 2^31 - 1"),
    ("up-seed-negative", with_(UP, "--seed=-1"), 2, "a seed from 0 to 2^31 - 1"),
    ("up-scale-1e300", with_(UP, "--scale", "1e300"), 1, "exceeds the NIfTI limit"),
    ("up-voxel-size-1e-300", with_(UP, "--voxel-size", "1e-300"), 1, "exceeds the NIfTI limit"),
    ("up-shard-huge", with_(UP, "--shard", f"1/{HUGE}"), 2, "at most 9 digits"),
    ("up-shard-beyond", with_(UP, "--shard", "3/2"), 2, "needs 0 <= I < N"),
    ("tr-seed-huge", TRAIN + ["--seed", HUGE], 2, "a seed from 0 to 2^31 - 1"),
    ("tr-threads-huge", TRAIN + ["--threads", HUGE], 2, "below 2^31"),
    ("ev-scales-empty", with_(EVAL, "--scales", ""), 2, "--scales takes comma-separated numbers, got none"),
    ("ev-scales-commas", with_(EVAL, "--scales", ",,"), 2, "--scales takes comma-separated numbers, got none"),
    ("ev-methods-empty", with_(EVAL, "--methods", ""), 2, "--methods takes comma-separated names, got none"),
    ("ev-degradations-empty", with_(EVAL, "--degradations", ""), 2,
     "--degradations takes comma-separated names, got none"),
    ("ev-tile-huge", with_(EVAL, "--tile", HUGE), 2, "below 2^31"),
]


def _check_refused(folder, capsys, argv, code, message) -> None:
    before = snapshot(folder)
    got, err = run_cli(capsys, _scaled(argv))
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert got == code, err
    assert len(errors) == 1 and message in errors[0], err
    assert len(errors[0]) < 400, errors[0]
    assert "Traceback" not in err
    assert snapshot(folder) == before
    assert not (folder / "od").exists() and not (folder.parent / "escaped_sr.nii.gz").exists()


@pytest.mark.parametrize("argv, code, message", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input(more, capsys, argv, code, message):
    _check_refused(more, capsys, argv, code, message)


@pytest.mark.parametrize("env, message", [
    ({"WORLD_SIZE": "2"}, "sets WORLD_SIZE but not RANK"),
    ({"WORLD_SIZE": "2", "RANK": "abc"}, "RANK must be a whole number"),
    ({"WORLD_SIZE": "2", "RANK": "-1"}, "RANK must be a whole number"),
    ({"WORLD_SIZE": "2", "RANK": "3"}, "needs 0 <= I < N, got '3/2'"),
    ({"WORLD_SIZE": "0", "RANK": "0"}, "needs 0 <= I < N, got '0/0'"),
    ({"WORLD_SIZE": "two", "RANK": "0"}, "WORLD_SIZE must be a whole number"),
    ({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "-3"}, "LOCAL_RANK must be a whole number"),
    ({"WORLD_SIZE": "2", "RANK": "\u00b2"}, "RANK must be a whole number"),
], ids=["world-alone", "rank-text", "rank-negative", "rank-beyond", "world-zero", "world-text",
        "local-rank-negative", "rank-superscript"])
def test_bad_distributed_environment_is_a_usage_error(more, capsys, monkeypatch, env, message):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    _check_refused(more, capsys, with_(UP, "--output-dir", "od", drop=("-o",)), 2, message)
    _check_refused(more, capsys, TRAIN, 2, message)


def test_dangling_link_as_output_is_replaced_with_overwrite(more, capsys):
    code, err = run_cli(capsys, with_(UP, "-o", "dangling.nii.gz", "--overwrite", "--scale", "2"))
    assert code == 0, err
    assert not (more / "dangling.nii.gz").is_symlink() and not (more / "gone.nii.gz").exists()
    assert nib.load(more / "dangling.nii.gz").shape == (24, 24, 24)


def test_micron_units_are_converted_to_mm_with_a_warning(more, capsys):
    code, err = run_cli(capsys, with_(UP, "microns.nii.gz", "--scale", "2"))
    assert code == 0, err
    assert [line for line in err.splitlines() if line] == [
        "warning: microns.nii.gz: spatial unit is micron; the voxel size is converted to mm (0.5, 0.5, 0.5 mm)"]
    out = nib.load(more / "out.nii.gz")
    np.testing.assert_allclose(out.header.get_zooms(), (0.25, 0.25, 0.25))
    assert out.header.get_xyzt_units()[0] == "mm"
    # the world position of the first input voxel's corner is kept: 500 um voxels start at -250 um = -0.25 mm
    np.testing.assert_allclose(out.affine[:3, 3] - 0.125, -0.25)
    with pytest.warns(UserWarning, match="spatial unit is micron"):
        volume = load_volume(more / "microns.nii.gz")
    np.testing.assert_allclose(volume.header.get_zooms(), (0.5, 0.5, 0.5))
    np.testing.assert_allclose(volume.header.get_best_affine(), volume.affine)


def test_nibabel_header_fixes_are_warning_lines(more, capsys):
    code, err = run_cli(capsys, ["info", "odd_sform.nii"])
    assert code == 0, err
    assert [line for line in err.splitlines() if line] == ["warning: sform_code 99 not valid; setting to 0"]


def test_the_cli_leaves_logging_signals_and_threads_as_it_found_them(more, capsys):
    import logging

    import torch

    logger = logging.getLogger("nibabel.global")
    handlers, term, threads = list(logger.handlers), signal.getsignal(signal.SIGTERM), torch.get_num_threads()
    assert run_cli(capsys, ["info", "odd_sform.nii"])[0] == 0
    assert run_cli(capsys, with_(UP, "--threads", str(threads + 1), "--scale", "2"))[0] == 0
    assert logger.handlers == handlers and logger.propagate and signal.getsignal(signal.SIGTERM) == term
    assert torch.get_num_threads() == threads


def test_sigterm_after_the_work_is_not_raised_from_the_restoring_code():
    previous = signal.getsignal(signal.SIGTERM)
    with _sigterm_as_interrupt():
        handler = signal.getsignal(signal.SIGTERM)
        with pytest.raises(KeyboardInterrupt):
            handler(signal.SIGTERM, None)  # while the command runs: Ctrl-C's way out
    handler(signal.SIGTERM, None)  # as it ends, a late call of the same handler does nothing
    assert signal.getsignal(signal.SIGTERM) == previous


def test_clipping_to_an_integer_output_type_is_a_warning(tmp_path, mni_crop):
    data = mni_crop.data.copy()
    data[:2] = 3e38
    with pytest.warns(UserWarning, match=r"(\d+) voxels outside the int16 range \[-32768, 32767\] were clipped") as got:
        save_volume(Volume(data, mni_crop.affine), tmp_path / "out.nii.gz", dtype="int16")
    assert f" {2 * data.shape[1] * data.shape[2]} voxels" in str(got[0].message)
    saved = np.asarray(nib.load(tmp_path / "out.nii.gz").dataobj)
    assert saved[:2].max() == 32767 and np.array_equal(saved[2:], np.rint(mni_crop.data[2:]).astype(np.int16))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        save_volume(mni_crop, tmp_path / "in_range.nii.gz", dtype="int16")


def test_real_anatomy_with_a_broken_offset_is_refused_and_a_good_copy_loads(tmp_path, mni_crop):
    save_volume(mni_crop, tmp_path / "mni.nii")
    raw = (tmp_path / "mni.nii").read_bytes()
    (tmp_path / "mni_offset0.nii").write_bytes(_patched(raw, 108, "<f", 0.0))
    with pytest.raises(InputError, match="vox_offset 0 lies inside the header"):
        load_volume(tmp_path / "mni_offset0.nii")
    np.testing.assert_array_equal(load_volume(tmp_path / "mni.nii").data, mni_crop.data)
