"""Hostile files: crafted ``.arssr`` metadata, crafted model files, multi-file outputs, non-checkpoints.

Each case runs ``arssr.cli.main`` in-process (as ``test_bad_inputs``) in a folder of real files and checks the
exit code, exactly one ``error:`` line with the expected text, no traceback, and that no file in the folder is
new or changed. Crafted ``.arssr`` files are real files whose metadata was rewritten and packed again the way
the writer packs them (``arssr.compress.container.pack``: version byte and CRC-32 recomputed), so the checksum
is valid and only the metadata checks can refuse them.
"""

from __future__ import annotations

import copy
import errno
import json
import lzma
import math
import os
import pathlib
import pickle
import zlib

import nibabel as nib
import numpy as np
import pytest
import torch
import zstandard
from safetensors.torch import load_file, save_file

from arssr.compress import compress, quantize
from arssr.compress.container import pack, unpack
from arssr.models import default_model_path, save_model
from arssr.models.checkpoint import read_metadata
from conftest import make_tiny_model, smooth_volume
from .test_bad_inputs import Payload, run_cli, snapshot, with_

DROP = object()


def _nifti(path, data, affine=None) -> None:
    nib.save(nib.Nifti1Image(np.asarray(data), np.eye(4) if affine is None else affine), path)


@pytest.fixture(scope="module")
def originals(tmp_path_factory, mni_crop) -> dict[str, bytes]:
    """Real files, by name: ``.arssr`` files with a SIREN LR (12^3, SR model the tiny model), with a SPERR LR,
    at scale 1 (no SR model) and of the MNI152 T1 crop (real anatomy), and the tiny model."""
    folder = tmp_path_factory.mktemp("originals")
    save_model(make_tiny_model(), folder / "tiny.safetensors")
    _nifti(folder / "good.nii.gz", smooth_volume((12, 12, 12)))
    _nifti(folder / "mni.nii.gz", mni_crop.data, mni_crop.affine)
    common = {"sr_model": folder / "tiny.safetensors", "preset": "fast", "device": "cpu"}
    compress(folder / "good.nii.gz", folder / "siren.arssr", steps=10, scale=2.0, **common)
    compress(folder / "good.nii.gz", folder / "sperr.arssr", scale=2.0, lr_codec="sperr", target_bpp=4.0, **common)
    compress(folder / "good.nii.gz", folder / "one.arssr", steps=10, scale=1.0, **common)
    compress(folder / "mni.nii.gz", folder / "mni.arssr", steps=10, scale=2.0, **common)
    return {path.name: path.read_bytes() for path in folder.iterdir()}


@pytest.fixture
def folder(tmp_path, monkeypatch, originals) -> pathlib.Path:
    monkeypatch.chdir(tmp_path)
    for name, blob in originals.items():
        (tmp_path / name).write_bytes(blob)
    return tmp_path


def check_refused(folder, capsys, argv, code, message) -> str:
    """Run ``argv``; it must exit with ``code``, one ``error:`` line holding ``message``, and change nothing."""
    before = snapshot(folder)
    got, err = run_cli(capsys, argv)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert got == code, err
    assert len(errors) == 1 and message in errors[0], err
    assert "Traceback" not in err
    assert snapshot(folder) == before
    assert not (folder / "pwned").exists()
    return errors[0]


def crafted(blob: bytes, changes: dict, payload: bytes | None = None) -> bytes:
    """``blob`` with its metadata changed (``DROP`` removes a key; ``"a.b"`` sets a nested key), packed again."""
    meta, stored = unpack(blob)
    meta = copy.deepcopy(meta)
    for key, value in changes.items():
        *parents, last = key.split(".")
        owner = meta
        for parent in parents:
            owner = owner[parent]
        if value is DROP:
            del owner[last]
        else:
            owner[last] = value
    return pack(meta, stored if payload is None else payload)


# ---------------------------------------------------------------------------
# A. Crafted .arssr metadata, refused by decompress and info alike

REQUIRED = ("shape", "affine", "codes", "dtype", "range", "window", "scale", "method", "lr_shape", "decoder")
SHA = "ab" * 32

# (case id, original, metadata changes, text of the error line)
METADATA_CASES = [
    *[(f"missing-{key}", "siren.arssr", {key: DROP}, f"missing key '{key}'") for key in REQUIRED],
    *[(f"missing-{key}", "siren.arssr", {key: DROP}, f"missing key '{key}'") for key in ("siren", "quant", "codec")],
    *[(f"sperr-missing-{key}", "sperr.arssr", {key: DROP}, f"missing key '{key}'") for key in ("shape", "lr_shape")],
    ("shape-text", "siren.arssr", {"shape": "12x12x12"}, "shape must be a list of 3 sizes"),
    ("shape-two-axes", "siren.arssr", {"shape": [12, 12]}, "shape must be a list of 3 sizes"),
    ("shape-fraction", "siren.arssr", {"shape": [12, 12, 12.5]}, "shape must be a whole number"),
    ("shape-bool", "siren.arssr", {"shape": [True, 12, 12]}, "shape must be a whole number"),
    ("shape-zero", "siren.arssr", {"shape": [0, 12, 12]}, "shape must be a whole number in [1, 32767], got 0"),
    ("shape-negative", "siren.arssr", {"shape": [12, -12, 12]}, "got -12"),
    ("shape-over-nifti", "siren.arssr", {"shape": [40000, 12, 12]}, "got 40000"),
    ("shape-300-digits", "siren.arssr", {"shape": [10 ** 300, 12, 12]}, f"got {str(10 ** 300)[:37]}..."),
    ("lr-shape-above-shape", "siren.arssr", {"lr_shape": [13, 6, 6]}, "lr_shape must be a whole number in [1, 12]"),
    ("lr-shape-zero", "siren.arssr", {"lr_shape": [6, 0, 6]}, "lr_shape must be a whole number"),
    ("lr-shape-null", "siren.arssr", {"lr_shape": None}, "lr_shape must be a list of 3 sizes"),
    ("scale-text", "siren.arssr", {"scale": "2"}, "scale must be a finite number"),
    ("scale-below-1", "siren.arssr", {"scale": 0.5}, "scale must be >= 1"),
    ("scale-nan", "siren.arssr", {"scale": math.nan}, "scale must be a finite number, got nan"),
    ("scale-inf", "siren.arssr", {"scale": math.inf}, "scale must be a finite number, got inf"),
    ("method", "siren.arssr", {"method": "bogus"}, "unknown downsampling 'bogus'"),
    ("method-list", "siren.arssr", {"method": ["kspace"]}, "unknown downsampling"),
    ("affine-short", "siren.arssr", {"affine": [1.0] * 11}, "affine must be a list of 12 numbers"),
    ("affine-nan", "siren.arssr", {"affine": [math.nan] + [0.0] * 11}, "affine must be a finite number, got nan"),
    ("affine-inf", "siren.arssr", {"affine": [1.0, 0, 0, math.inf, 0, 1, 0, 0, 0, 0, 1, 0]}, "got inf"),
    ("affine-text", "siren.arssr", {"affine": ["1"] * 12}, "affine must be a finite number"),
    ("affine-singular", "siren.arssr", {"affine": [1.0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]}, "affine is singular"),
    ("affine-zero", "siren.arssr", {"affine": [0.0] * 12}, "affine is singular"),
    ("codes-one", "siren.arssr", {"codes": [1]}, "codes must be a list of 2 NIfTI xform codes"),
    ("codes-out-of-range", "siren.arssr", {"codes": [9, 1]}, "codes must be a whole number in [0, 5], got 9"),
    ("codes-text", "siren.arssr", {"codes": ["a", 1]}, "codes must be a whole number"),
    ("dtype-complex", "siren.arssr", {"dtype": "complex64"}, "dtype 'complex64' is not a NIfTI integer or float"),
    ("dtype-bogus", "siren.arssr", {"dtype": "bogus"}, "dtype 'bogus' is not"),
    ("dtype-number", "siren.arssr", {"dtype": 16}, "dtype 16 is not"),
    ("dtype-bool", "siren.arssr", {"dtype": "bool"}, "dtype 'bool' is not"),
    ("dtype-datetime", "siren.arssr", {"dtype": "datetime64"}, "dtype 'datetime64' is not"),
    ("range-one-value", "siren.arssr", {"range": [1.0]}, "range must be a list of 2 numbers"),
    ("range-nan", "siren.arssr", {"range": [math.nan, 1.0]}, "range must be a finite number"),
    ("range-reversed", "siren.arssr", {"range": [9.0, 1.0]}, "range [9, 1] is reversed"),
    ("window-empty", "siren.arssr", {"window": [1.0, 1.0]}, "window [1, 1] is empty or reversed"),
    ("window-reversed", "siren.arssr", {"window": [2.0, 1.0]}, "window [2, 1] is empty or reversed"),
    ("window-inf", "siren.arssr", {"window": [0.0, math.inf]}, "window must be a finite number"),
    ("decoder-text", "siren.arssr", {"decoder": "tiny.safetensors"}, "decoder must be null or a name and a sha256"),
    ("decoder-name-number", "siren.arssr", {"decoder": {"name": 1, "sha256": SHA}}, "decoder must be null"),
    ("decoder-short-sha", "siren.arssr", {"decoder.sha256": "abc"}, "decoder must be null"),
    ("no-decoder-lr-shape", "siren.arssr", {"decoder": None}, "lr_shape [6, 6, 6] differs from shape [12, 12, 12]"),
    ("lr-codec", "siren.arssr", {"lr_codec": "jpeg"}, "unknown LR codec 'jpeg'"),
    ("siren-empty", "siren.arssr", {"siren": {}}, "siren must hold width, depth and w0"),
    ("siren-extra-key", "siren.arssr", {"siren.bias": True}, "siren must hold width, depth and w0"),
    ("siren-width-zero", "siren.arssr", {"siren.width": 0}, "siren width must be a whole number in [1, 4096]"),
    ("siren-width-huge", "siren.arssr", {"siren.width": 100000}, "siren width must be a whole number in [1, 4096]"),
    ("siren-width-fraction", "siren.arssr", {"siren.width": 64.5}, "siren width must be a whole number"),
    ("siren-depth-zero", "siren.arssr", {"siren.depth": 0}, "siren depth must be a whole number in [1, 32]"),
    ("siren-depth-huge", "siren.arssr", {"siren.depth": 1000}, "siren depth must be a whole number in [1, 32]"),
    ("siren-w0-zero", "siren.arssr", {"siren.w0": 0}, "siren w0 must be positive"),
    ("siren-w0-nan", "siren.arssr", {"siren.w0": math.nan}, "siren w0 must be a finite number"),
    ("quant", "siren.arssr", {"quant": "int9"}, "unknown quantisation 'int9'"),
    ("quant-number", "siren.arssr", {"quant": 8}, "quant must be a string"),
    ("codec", "siren.arssr", {"codec": "gzip"}, "unknown payload codec 'gzip'"),
    ("finetune-mode", "siren.arssr", {"finetune": {"mode": "all", "params": 3}}, "finetune must be a mode"),
    ("finetune-negative", "siren.arssr", {"finetune": {"mode": "bias", "params": -1}}, "finetune params must be"),
    ("finetune-huge", "siren.arssr", {"finetune": {"mode": "bias", "params": 2 ** 40}}, "finetune params must be"),
    ("finetune-sperr", "sperr.arssr", {"finetune": {"mode": "bias", "params": 3}}, "finetune needs a SIREN LR"),
    ("finetune-no-decoder", "one.arssr", {"finetune": {"mode": "bias", "params": 3}}, "finetune needs a SIREN LR"),
    ("consistency", "siren.arssr", {"consistency": "fft"}, "unknown consistency operator 'fft'"),
    ("consistency-list", "siren.arssr", {"consistency": ["kspace"] * 3}, "unknown consistency operator"),
    ("weights-one", "siren.arssr", {"consistency_weights": [1.0]}, "consistency weights [1.0]"),
    ("weights-nan", "siren.arssr", {"consistency_weights": [math.nan, 1.0]}, "consistency weights [nan, 1.0]"),
    ("weights-huge", "siren.arssr", {"consistency_weights": [100.0, 1.0]}, "consistency weights [100.0, 1.0]"),
    ("weights-no-operator", "siren.arssr", {"consistency": DROP}, "with consistency 'none'"),
    ("gain-negative", "siren.arssr", {"detail_gain": -0.5}, "detail gain -0.5"),
    ("gain-text", "siren.arssr", {"detail_gain": "0.5"}, "detail gain '0.5'"),
    ("gain-no-weights", "siren.arssr", {"consistency_weights": DROP},
     "(it needs consistency weights and lies in [0, 9.999])"),
    ("background-two", "siren.arssr", {"background_decoding": [0.5, 1.0]}, "background decoding [0.5, 1.0]"),
    ("background-no-gain", "sperr.arssr", {"detail_gain": DROP}, "background decoding"),
    ("auto-text", "siren.arssr", {"auto": "best"}, "auto must list [lr_codec, scale, psnr or null] entries"),
    ("auto-short", "siren.arssr", {"auto": [["siren", 2.0]]}, "auto must list"),
    ("auto-codec", "siren.arssr", {"auto": [["jpeg", 2.0, 30.0]]}, "auto must list"),
    ("mni-missing-window", "mni.arssr", {"window": DROP}, "missing key 'window'"),
    ("mni-width", "mni.arssr", {"siren.width": 10 ** 6},
     "siren width must be a whole number in [1, 4096], got 1000000"),
    ("mni-affine-nan", "mni.arssr", {"affine": [math.nan] * 12}, "affine must be a finite number, got nan"),
]


@pytest.mark.parametrize("command", ["decompress", "info"])
@pytest.mark.parametrize("original, changes, message", [case[1:] for case in METADATA_CASES],
                         ids=[case[0] for case in METADATA_CASES])
def test_crafted_arssr_metadata(folder, capsys, command, original, changes, message):
    (folder / "bad.arssr").write_bytes(crafted((folder / original).read_bytes(), changes))
    argv = (["decompress", "bad.arssr", "-o", "out.nii.gz", "--decoder-weights", "tiny.safetensors", "-q"]
            if command == "decompress" else ["info", "bad.arssr"])
    line = check_refused(folder, capsys, argv, 1, message)
    assert line.startswith("error: bad.arssr: malformed .arssr metadata: ") and len(line) < 200


def test_metadata_that_is_not_an_object(folder, capsys):
    meta, payload = unpack((folder / "siren.arssr").read_bytes())
    blob = bytearray(pack(meta, payload))
    block = zlib.compress(json.dumps([1, 2, 3]).encode(), 9)
    body = bytes(blob[:8]) + len(block).to_bytes(4, "little") + len(payload).to_bytes(4, "little") + block + payload
    (folder / "bad.arssr").write_bytes(body + zlib.crc32(body).to_bytes(4, "little"))
    check_refused(folder, capsys, ["info", "bad.arssr"], 1, "bad.arssr: .arssr metadata is not a JSON object")


def _zstd_bomb(meta: dict, payload: bytes) -> bytes:
    """64 MiB of zeros in a few kilobytes."""
    return zstandard.ZstdCompressor(level=3).compress(bytes(64 << 20))


def _other_sperr_shape(meta: dict, payload: bytes) -> bytes:
    """The SPERR stream with its header's first (fastest) dimension 7 instead of 6."""
    return payload[:2] + (7).to_bytes(4, "little") + payload[6:]


def _cut_lzma(meta: dict, payload: bytes) -> bytes:
    """The raw weight stream coded by lzma as the writer codes it, its second half cut off."""
    coded = lzma.compress(quantize.entropy_decode(meta["codec"], payload), **quantize._LZMA)
    return coded[: len(coded) // 2]


# (case id, original, metadata changes, payload, text of the error line); decompress only (info reads no payload)
DECODE_CASES = [
    ("shape-beyond-memory", "siren.arssr", {"shape": [32767, 32767, 32767]}, None,
     "bad.arssr: decoding its 32767 x 32767 x 32767 voxels needs about"),
    ("mni-shape-beyond-memory", "mni.arssr", {"shape": [30000, 30000, 20000]}, None, "of memory, only"),
    ("zstd-bomb", "siren.arssr", {"codec": "zstd"}, _zstd_bomb, "weights payload has"),
    ("payload-short", "siren.arssr", {"codec": "none"}, lambda meta, payload: b"\0" * 10,
     "weights payload has 10 bytes, the network needs"),
    ("lzma-end-marker", "siren.arssr", {"codec": "lzma"}, lambda meta, payload: bytes(range(256)) * 4,
     "weights payload has 0 bytes, the network needs 8673"),  # LZMA2's byte 0 ends the stream: 64 x 3 SIREN, int8
    ("lzma-cut", "siren.arssr", {"codec": "lzma"}, _cut_lzma, "weights payload cannot be decoded (lzma: the stream "
     "ends early)"),
    ("lzma-garbage", "siren.arssr", {"codec": "lzma"}, lambda meta, payload: bytes(range(7, 256)) * 4,
     "weights payload cannot be decoded (lzma: "),
    ("sperr-header-shape", "sperr.arssr", {}, _other_sperr_shape,
     "the SPERR stream decodes to shape (6, 6, 7), the file's LR shape is (6, 6, 6)"),
    ("finetune-count", "siren.arssr", {"finetune": {"mode": "bias", "params": 5}}, None,
     "the file fine-tunes 5 SR model parameters"),
]


@pytest.mark.parametrize("original, changes, payload, message", [case[1:] for case in DECODE_CASES],
                         ids=[case[0] for case in DECODE_CASES])
def test_crafted_arssr_decoding(folder, capsys, original, changes, payload, message):
    blob = (folder / original).read_bytes()
    (folder / "bad.arssr").write_bytes(crafted(blob, changes, payload(*unpack(blob)) if payload else None))
    argv = ["decompress", "bad.arssr", "-o", "out.nii.gz", "--decoder-weights", "tiny.safetensors", "-q"]
    check_refused(folder, capsys, argv, 1, message)


def test_real_files_still_decode(folder, capsys):
    """The checks refuse nothing that arssr writes: every original decodes and is described."""
    for name in ("siren.arssr", "sperr.arssr", "one.arssr", "mni.arssr"):
        code, err = run_cli(capsys, ["decompress", name, "-o", f"{name}.nii.gz", "--decoder-weights",
                                     "tiny.safetensors", "-q"])
        assert code == 0 and not err, err
        assert list(nib.load(f"{name}.nii.gz").shape) == unpack((folder / name).read_bytes())[0]["shape"] == (
            [24, 28, 20] if name == "mni.arssr" else [12, 12, 12])
        assert run_cli(capsys, ["info", name])[0] == 0


# ---------------------------------------------------------------------------
# B. Crafted model files: refused by upsample, info, export-bundle and compress, naming the file


def _model_file(path: pathlib.Path, model_record=None, tensors=None, **metadata) -> None:
    model = make_tiny_model()
    meta = {"format": "arssr", "format_version": "1", "model": json.dumps(model.config), **metadata}
    if model_record is not None:
        meta["model"] = model_record if isinstance(model_record, str) else json.dumps(model_record)
    state = {k: v.clone().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors(state) if tensors else state, path, metadata=meta)


def _args(**changes) -> dict:
    config = make_tiny_model().config
    return {**config, "args": {**config["args"], **changes}}


def _poisoned(value: float):
    def change(state):
        state["decoder.stage_one.0.weight"][0, 0] = value
        return state
    return change


def _without(key: str):
    def change(state):
        del state[key]
        return state
    return change


# (case id, keyword arguments of _model_file, text of the error line)
MODEL_CASES = [
    ("json-broken", {"model_record": "{not json"}, "bad.safetensors: model metadata is not valid JSON"),
    ("json-empty", {"model_record": ""}, "model metadata is not valid JSON"),
    ("json-list", {"model_record": [1, 2]}, "model metadata must be an object with a name and args"),
    ("json-no-args", {"model_record": {"name": "arssr"}}, "model metadata must be an object with a name and args"),
    ("json-args-text", {"model_record": {"name": "arssr", "args": "rdn"}}, "must be an object with a name and args"),
    ("json-other-model", {"model_record": {**_args(), "name": "unet"}}, "unknown model 'unet'"),
    ("encoder-args-list", {"model_record": _args(encoder_args=[8, 8])}, "model encoder_args must be an object"),
    ("decoder-width-huge", {"model_record": _args(decoder_width=100000)},
     "model argument decoder_width = 100000 is above the largest, 4096"),
    ("feature-dim-300-digits", {"model_record": _args(feature_dim=10 ** 300)},
     "model argument feature_dim = 10000000000000000000 is above"),
    ("blocks-huge", {"model_record": _args(encoder_args={**make_tiny_model().args["encoder_args"],
                                                         "num_blocks": 10 ** 9})}, "num_blocks = 1000000000"),
    ("decoder-width-other", {"model_record": _args(decoder_width=64)},
     "weights do not match the model (decoder.stage_one.0.bias is (32,) in the file, (64,) in the model)"),
    ("unknown-argument", {"model_record": _args(heads=4)}, "model arguments do not build a model"),
    ("encoder-unknown", {"model_record": _args(encoder="vit")}, "model arguments do not build a model"),
    ("axis-order", {"model_record": _args(axis_order="yxz")}, "model arguments do not build a model"),
    ("format-version-text", {"format_version": "one"}, "weights format version 'one' is not a whole number"),
    ("format-version-newer", {"format_version": "7"}, "weights format version 7 is newer"),
    ("tensor-missing", {"tensors": _without("decoder.stage_one.0.bias")},
     "weights do not match the model (missing decoder.stage_one.0.bias)"),
    ("weights-nan", {"tensors": _poisoned(math.nan)},
     "bad.safetensors: weights hold NaN or infinite values (in decoder.stage_one.0.weight)"),
    ("weights-inf", {"tensors": _poisoned(-math.inf)}, "weights hold NaN or infinite values"),
]
MODEL_COMMANDS = {
    "upsample": ["upsample", "good.nii.gz", "--weights", "bad.safetensors", "-o", "out.nii.gz", "--scale", "2", "-q"],
    "info": ["info", "bad.safetensors"],
    "export-bundle": ["export-bundle", "bundle", "--weights", "bad.safetensors", "-q"],
    "compress": ["compress", "good.nii.gz", "-o", "out.arssr", "--decoder-weights", "bad.safetensors", "-q"],
}


@pytest.mark.parametrize("command", list(MODEL_COMMANDS))
@pytest.mark.parametrize("options, message", [case[1:] for case in MODEL_CASES], ids=[case[0] for case in MODEL_CASES])
def test_crafted_model_file(folder, capsys, command, options, message):
    _model_file(folder / "bad.safetensors", **options)
    line = check_refused(folder, capsys, MODEL_COMMANDS[command], 1, message)
    assert "bad.safetensors" in line and len(line) < 240


@pytest.mark.parametrize("command", ["upsample", "info"])
@pytest.mark.parametrize("change, message", [
    ("json", "model metadata is not valid JSON"),
    ("width", "weights do not match the model (decoder.stage_one.0.bias is (128,) in the file, (256,) in the model)"),
    ("nan", "weights hold NaN or infinite values (in encoder.output.bias)"),
])
def test_the_shipped_model_crafted(folder, capsys, command, change, message):
    """The real default model with its record broken, its decoder width doubled, or one NaN bias."""
    meta = read_metadata(default_model_path())
    state = load_file(default_model_path())
    record = json.loads(meta["model"])
    if change == "json":
        meta["model"] = meta["model"][:-1]
    elif change == "width":
        record["args"]["decoder_width"] *= 2
        meta["model"] = json.dumps(record)
    else:
        state["encoder.output.bias"][3] = math.nan
    save_file(state, folder / "bad.safetensors", metadata=meta)
    check_refused(folder, capsys, MODEL_COMMANDS[command], 1, f"bad.safetensors: {message}")


def test_nan_weights_of_the_official_format_are_named(folder, capsys):
    state = {k: v.clone() for k, v in make_tiny_model().state_dict().items()}
    state["encoder.sfe1.weight"][0] = math.inf
    torch.save({"model": state}, folder / "bad.pt")
    check_refused(folder, capsys, ["info", "bad.pt"], 1,
                  "bad.pt: weights hold NaN or infinite values (in encoder.sfe1.weight)")


# ---------------------------------------------------------------------------
# compress: SIREN sizes and sweep values refused before any work

COMPRESS = ["compress", "good.nii.gz", "-o", "out.arssr", "--decoder-weights", "tiny.safetensors", "-q"]
SWEEP = ["compress", "good.nii.gz", "--sweep", "sweep", "--decoder-weights", "tiny.safetensors", "-q"]

SIZE_CASES = [
    ("width-huge", with_(COMPRESS, "--width", "100000"), 2, "SIREN width 100000 is above the largest, 4096"),
    ("depth-huge", with_(COMPRESS, "--depth", "1000"), 2, "SIREN depth 1000 is above the largest, 32"),
    ("width-zero", with_(COMPRESS, "--width", "0"), 2, "width must be a positive integer"),
    ("depth-negative", with_(COMPRESS, "--depth=-3"), 2, "depth must be a positive integer"),
    ("sweep-width-zero", with_(SWEEP, "--sweep-widths", "0"), 2, "width must be a positive integer, got 0"),
    ("sweep-width-negative", with_(SWEEP, "--sweep-widths=30,-1"), 2, "width must be a positive integer, got -1"),
    ("sweep-width-huge", with_(SWEEP, "--sweep-widths", "30,100000"), 2, "SIREN width 100000 is above the largest"),
    ("sweep-width-fraction", with_(SWEEP, "--sweep-widths", "1.5"), 2, "--sweep-widths takes comma-separated numbers"),
    ("sweep-width-text", with_(SWEEP, "--sweep-widths", "wide"), 2, "--sweep-widths takes comma-separated"),
    ("sweep-width-empty", with_(SWEEP, "--sweep-widths", ","), 2, "--sweep-widths takes comma-separated numbers"),
    ("sweep-scale-below-1", with_(SWEEP, "--sweep-scales", "2,0.5"), 2, "scale must be >= 1, got 0.5"),
    ("sweep-scale-nan", with_(SWEEP, "--sweep-scales", "nan"), 2, "scale must be >= 1, got nan"),
    ("sweep-scale-inf", with_(SWEEP, "--sweep-scales", "inf"), 2, "scale must be >= 1, got inf"),
    ("sweep-scale-text", with_(SWEEP, "--sweep-scales", "x2"), 2, "--sweep-scales takes comma-separated numbers"),
    ("sweep-depth-huge", with_(SWEEP, "--depth", "99"), 2, "SIREN depth 99 is above the largest, 32"),
    ("sweep-onto-file", with_(SWEEP, "--sweep", "good.nii.gz"), 1, "good.nii.gz: is a file; --sweep takes a folder"),
    ("sweep-onto-report", with_(SWEEP, "--sweep", "done"), 1, "sweep.csv: exists (use --overwrite"),
]


@pytest.mark.parametrize("argv, code, message", [case[1:] for case in SIZE_CASES], ids=[case[0] for case in SIZE_CASES])
def test_compress_sizes_and_sweep_values(folder, capsys, monkeypatch, argv, code, message):
    (folder / "done").mkdir()
    (folder / "done" / "sweep.csv").write_text("scale,width\n")

    def no_work(*args, **kwargs):
        raise AssertionError("a volume was loaded before the options were checked")

    monkeypatch.setattr("arssr.volume.load_volume", no_work)
    check_refused(folder, capsys, argv, code, message)


def test_a_fit_beyond_the_free_memory_is_refused_before_fitting(folder, capsys, monkeypatch):
    monkeypatch.setattr("arssr.compress.api.free_memory_bytes", lambda device: 1 << 28)
    monkeypatch.setattr("arssr.compress.codec.fit_siren", None)  # never reached
    check_refused(folder, capsys, with_(COMPRESS, "--width", "2048", "--depth", "4", "--scale", "1"), 1,
                  "fitting a SIREN of width 2048 and depth 4 needs about 0.399 GiB of memory, only 0.25 GiB is free")


# ---------------------------------------------------------------------------
# C. Multi-file outputs: a full disk leaves nothing, and the rerun works


def _full_disk_after(monkeypatch, writes: int) -> None:
    """Every ``Path.write_bytes``/``write_text`` after the first ``writes`` fails as on a full disk."""
    calls = [0]
    for name in ("write_bytes", "write_text"):
        original = getattr(pathlib.Path, name)

        def failing(self, data, *args, _original=original, **kwargs):
            calls[0] += 1
            if calls[0] > writes:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return _original(self, data, *args, **kwargs)

        monkeypatch.setattr(pathlib.Path, name, failing)


@pytest.mark.parametrize("writes", [0, 1, 2, 3])
@pytest.mark.parametrize("target", ["bundle", "existing_empty", "nested/new/bundle"])
def test_bundle_on_a_full_disk_leaves_nothing_and_the_rerun_works(folder, capsys, monkeypatch, writes, target):
    (folder / "existing_empty").mkdir()
    argv = ["export-bundle", target, "--weights", "tiny.safetensors", "-q"]
    with monkeypatch.context() as patch:
        _full_disk_after(patch, writes)
        check_refused(folder, capsys, argv, 1, f"{target}: cannot write (No space left on device)")
    code, err = run_cli(capsys, argv)
    assert code == 0 and not err, err
    assert sorted(str(p.relative_to(folder / target)) for p in (folder / target).rglob("*") if p.is_file()) == [
        "configs/inference.json", "configs/metadata.json", "docs/README.md", "models/model.safetensors"]
    assert (folder / target / "models" / "model.safetensors").read_bytes() == (folder / "tiny.safetensors").read_bytes()
    assert not [p for p in folder.rglob(".*")]  # no temporary folder left


def test_bundle_into_a_folder_with_other_files_keeps_them(folder, capsys):
    (folder / "shared").mkdir()
    (folder / "shared" / "notes.txt").write_text("mine")
    code, err = run_cli(capsys, ["export-bundle", "shared", "--weights", "tiny.safetensors", "-q"])
    assert code == 0 and not err, err
    assert (folder / "shared" / "notes.txt").read_text() == "mine"
    assert (folder / "shared" / "configs" / "inference.json").is_file() and not list(folder.rglob(".*"))


def test_bundle_onto_a_file_is_refused(folder, capsys):
    check_refused(folder, capsys, ["export-bundle", "good.nii.gz", "--weights", "tiny.safetensors", "-q"], 1,
                  "good.nii.gz: is a file; the bundle needs a folder")


SMALL_SWEEP = ["compress", "good.nii.gz", "--sweep", "sweep", "--sweep-scales", "1", "--sweep-widths", "4",
               "--steps", "3", "--preset", "fast", "--device", "cpu", "-q"]


def test_sweep_report_on_a_full_disk_leaves_nothing_and_the_rerun_works(folder, capsys, monkeypatch):
    with monkeypatch.context() as patch:
        _full_disk_after(patch, 1)  # the CSV is written, the table is not
        check_refused(folder, capsys, SMALL_SWEEP, 1, "sweep: cannot write (No space left on device)")
    code, err = run_cli(capsys, SMALL_SWEEP)
    assert code == 0, err
    assert sorted(p.name for p in (folder / "sweep").iterdir()) == ["sweep.csv", "sweep.md", "sweep.png"]
    rows = (folder / "sweep" / "sweep.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith("1.0,4,3,")  # scale, width, depth
    assert not list(folder.rglob(".*"))


# ---------------------------------------------------------------------------
# D. train --resume with what is not a checkpoint, and --config with what is not YAML text


@pytest.fixture
def not_checkpoints(folder) -> pathlib.Path:
    (folder / "notes.txt").write_text("steps: 1\n" * 20)
    (folder / "empty.pt").write_bytes(b"")
    (folder / "random.bin").write_bytes(np.random.default_rng(0).bytes(4096))
    with open(folder / "evil.pkl", "wb") as handle:
        pickle.dump({"model": Payload()}, handle)
    torch.save([1, 2, 3], folder / "list.pt")
    torch.save({"model": {}, "step": 3}, folder / "partial.pt")
    full = {"model": {}, "optimizer": {}, "scheduler": {}, "scaler": {}, "step": 1, "best_psnr": 0.0,
            "rng": {}, "generator": torch.zeros(2, dtype=torch.uint8), "pool": {}}
    torch.save({**full, "config": {"model": {"encoder": "rdn", "width": 3}}}, folder / "foreign_model.pt")
    torch.save({**full, "step": "3", "config": {"model": {}}}, folder / "step_text.pt")
    torch.save({**full, "config": {}}, folder / "no_model.pt")
    (folder / "recipe.yaml").write_text("steps: 1\nbatch_size: 1\nsamples: 16\n")
    return folder


UNREADABLE = "not a checkpoint of arssr train (torch.load with weights_only cannot read it"
RESUME_CASES = [
    ("nifti", "good.nii.gz", f"good.nii.gz: {UNREADABLE}: UnpicklingError)"),
    ("text", "notes.txt", f"notes.txt: {UNREADABLE}"),
    ("safetensors-model", "tiny.safetensors",
     "tiny.safetensors: not a checkpoint of arssr train ('model' missing or not dict)"),
    ("arssr", "siren.arssr", f"siren.arssr: {UNREADABLE}: UnpicklingError)"),
    ("empty", "empty.pt", f"empty.pt: {UNREADABLE}: EOFError)"),
    ("random-bytes", "random.bin", f"random.bin: {UNREADABLE}: UnpicklingError)"),
    ("pickle-payload", "evil.pkl", f"evil.pkl: {UNREADABLE}: UnpicklingError)"),
    ("list", "list.pt", "list.pt: not a checkpoint of arssr train (it holds a list)"),
    ("partial", "partial.pt", "partial.pt: not a checkpoint of arssr train ('optimizer' missing or not dict)"),
    ("step-text", "step_text.pt", "step_text.pt: not a checkpoint of arssr train ('step' missing or not int)"),
    ("foreign-model", "foreign_model.pt",
     "foreign_model.pt: not a checkpoint of arssr train (its config records no arssr model)"),
    ("no-model", "no_model.pt", "no_model.pt: not a checkpoint of arssr train (its config records no arssr model)"),
]
TRAIN = ["train", "--data", "mni-synthetic", "--out", "newrun", "--resume"]


@pytest.mark.parametrize("config", [False, True], ids=["checkpoint-config", "yaml-config"])
@pytest.mark.parametrize("name, message", [case[1:] for case in RESUME_CASES], ids=[case[0] for case in RESUME_CASES])
def test_resume_from_what_is_not_a_checkpoint(not_checkpoints, capsys, config, name, message):
    """Read by the command's config step (no --config) or by the trainer (with --config): one error either way."""
    argv = [*TRAIN, name] + (["--config", "recipe.yaml"] if config else [])
    check_refused(not_checkpoints, capsys, argv, 1, message)


@pytest.mark.parametrize("name, content", [
    ("binary.yaml", bytes(range(256)) * 8),
    ("image.yaml", b"\x89PNG\r\n\x1a\n\xff\xfe" + bytes(64)),
    ("latin1.yaml", "steps: 1  # d\xe9j\xe0 vu\n".encode("latin-1")),
])
def test_config_that_is_not_yaml_text(folder, capsys, name, content):
    (folder / name).write_bytes(content)
    check_refused(folder, capsys, ["train", "--data", "mni-synthetic", "--out", "newrun", "--config", name], 2,
                  f"{name}: cannot read the config (not a YAML text file")


def test_a_gzip_nifti_as_config(folder, capsys):
    check_refused(folder, capsys, ["train", "--data", "mni-synthetic", "--out", "newrun", "--config", "good.nii.gz"],
                  2, "good.nii.gz: cannot read the config")


def test_the_real_model_metadata_is_read_whole(folder):
    """The checks accept what arssr writes: the tiny model's metadata round-trips."""
    meta = read_metadata(folder / "tiny.safetensors")
    assert json.loads(meta["model"]) == make_tiny_model().config and meta["format_version"] == "1"
