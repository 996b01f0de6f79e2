"""The LR codec (``--lr-codec siren|sperr``) and ``--auto``, on a crop of real anatomy (MNI152 T1)."""

import json
import math

import nibabel as nib
import numpy as np
import pytest
import torch

from arssr.cli import build_parser, main
from arssr.compress import compress, compress_volume, decompress, make_config, sperr
from arssr.compress.auto import candidates, compress_auto, record_bytes
from arssr.compress.codec import decode, prepare, restore
from arssr.compress.container import MAGIC, pack, read_container, unpack
from arssr.compress.lr_codec import CODECS, LRCodec, decode_lr, lr_codec_names
from arssr.compress.metadata import check_metadata
from arssr.errors import InputError
from arssr.metrics import psnr

pytestmark = pytest.mark.usefixtures("one_thread")

SIREN = {"preset": "fast", "steps": 30, "width": 12}


@pytest.fixture(scope="module")
def sperr_file(mni_crop, tiny_weights_module):
    """``(blob, report)``: the MNI152 crop at 1 bpp, its LR (DS 1/2) coded by SPERR."""
    return compress_volume(mni_crop, make_config("fast", lr_codec="sperr"), tiny_weights_module, target_bpp=1.0,
                           device="cpu")


@pytest.fixture(scope="module")
def tiny_weights_module(tmp_path_factory):
    from arssr.models import save_model

    from conftest import make_tiny_model

    return save_model(make_tiny_model(), tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.mark.parametrize("lr_codec", ["siren", "sperr"])
def test_round_trip_restores_geometry_dtype_and_range(tmp_path, mni_crop, tiny_weights, lr_codec):
    path = tmp_path / "v.arssr"
    report = compress(mni_crop, path, sr_model=tiny_weights, lr_codec=lr_codec, target_bpp=1.0, device="cpu", **SIREN)
    size = path.stat().st_size
    assert report["bytes"] == size <= math.floor(mni_crop.data.size / 8)
    meta, _ = read_container(path)
    assert meta.get("lr_codec", "siren") == lr_codec and meta["consistency"] == "kspace"
    assert path.read_bytes()[len(MAGIC)] == 5  # decoded with consistency band weights, by region
    decompress(path, tmp_path / "back.nii.gz", sr_model=tiny_weights, device="cpu")
    back = nib.load(tmp_path / "back.nii.gz")
    assert back.shape == mni_crop.shape and np.array_equal(back.affine, mni_crop.affine)
    assert back.get_data_dtype() == mni_crop.header.get_data_dtype()
    for code in ("qform_code", "sform_code"):
        assert int(back.header[code]) == int(mni_crop.header[code])
    data = np.asarray(back.dataobj)
    assert mni_crop.data.min() <= data.min() and data.max() <= mni_crop.data.max()
    assert report["psnr"] == pytest.approx(psnr(data.astype(np.float32), mni_crop.data), abs=0.05)


def test_siren_is_the_default_and_its_files_do_not_name_it(mni_crop, tiny_weights):
    plain, _ = compress_volume(mni_crop, make_config("fast", steps=5), tiny_weights, device="cpu")
    named, _ = compress_volume(mni_crop, make_config("fast", steps=5, lr_codec="siren"), tiny_weights, device="cpu")
    assert plain == named and "lr_codec" not in unpack(plain)[0]


def test_sperr_at_scale_1_needs_no_sr_model(mni_crop):
    blob, report = compress_volume(mni_crop, make_config(scale=1.0, lr_codec="sperr"), target_bpp=2.0, device="cpu")
    meta, payload = unpack(blob)
    assert meta["decoder"] is None and meta["lr_shape"] == list(mni_crop.shape) and "consistency" not in meta
    assert decode(meta, payload, "/nonexistent", "cpu").shape == mni_crop.shape
    assert report["psnr"] > 30 and report["siren_params"] == 0 and report["paper_cr"] is None


@pytest.mark.parametrize("bpp", [0.3, 0.6, 1.0, 3.0])
def test_budget_is_met_in_real_bytes_by_the_largest_sperr_rate(mni_crop, tiny_weights_module, bpp):
    config = make_config(lr_codec="sperr")
    blob, report = compress_volume(mni_crop, config, tiny_weights_module, target_bpp=bpp, device="cpu")
    budget = math.floor(bpp * mni_crop.data.size / 8)
    assert budget - 24 <= report["bytes"] == len(blob) <= budget  # the bpp search and the placeholders leave a few bytes


def test_the_placeholders_size_files_for_any_fitted_decoding(sperr_file):
    """Files are sized with placeholders for the detail gain and the consistency band weights: the metadata with
    any values that fitting can give (3 decimals; gain 0-1.5, weights of magnitude at most 9.999) is never larger."""
    from arssr.compress.decoding import (BACKGROUND_KEY, BACKGROUND_PLACEHOLDER, GAIN_KEY, GAIN_PLACEHOLDER,
                                         WEIGHTS_KEY, WEIGHTS_PLACEHOLDER)

    meta, payload = unpack(sperr_file[0])
    sized = len(pack({**meta, GAIN_KEY: GAIN_PLACEHOLDER, WEIGHTS_KEY: list(WEIGHTS_PLACEHOLDER),
                      BACKGROUND_KEY: list(BACKGROUND_PLACEHOLDER)}, payload))
    rng = np.random.default_rng(0)
    trials = np.concatenate([rng.uniform(-9.999, 9.999, (1500, 4)), rng.uniform(0, 1.2, (1500, 4))]).round(3)
    gains = rng.choice(np.arange(16) / 10, (len(trials), 2))
    assert max(len(pack({**meta, GAIN_KEY: float(g), WEIGHTS_KEY: [float(a), float(b)],
                         BACKGROUND_KEY: [float(h), float(c), float(d)]}, payload))
               for (g, h), (a, b, c, d) in zip(gains, trials)) <= sized


def test_budgets_below_the_smallest_file_are_refused(mni_crop, tiny_weights_module):
    with pytest.raises(InputError, match="below the smallest"):
        compress_volume(mni_crop, make_config(lr_codec="sperr"), tiny_weights_module, target_bpp=0.02, device="cpu")
    assert sperr.fit_stream(np.ones((4, 4, 4), np.float32), 4) is None  # no SPERR stream is 4 bytes long


def test_every_single_byte_change_of_a_sperr_file_is_refused(sperr_file, tiny_weights_module):
    blob, _ = sperr_file
    for position in range(len(blob)):
        broken = bytearray(blob)
        broken[position] ^= 0xFF if position % 2 else 0x01
        with pytest.raises(InputError) as caught:
            decode(*unpack(bytes(broken)), tiny_weights_module, "cpu")
        assert "\n" not in str(caught.value)


def test_every_truncation_of_a_sperr_file_is_refused(sperr_file, tiny_weights_module):
    blob, _ = sperr_file
    for length in range(len(blob)):
        with pytest.raises(InputError, match="truncated|not an .arssr file") as caught:
            decode(*unpack(blob[:length]), tiny_weights_module, "cpu")
        assert "\n" not in str(caught.value)


def test_sperr_streams_are_checked_against_the_metadata(sperr_file, tiny_weights_module):
    """A file written wrongly (its checksum right): a cut stream, another LR shape, an unknown LR codec."""
    meta, payload = unpack(sperr_file[0])
    cases = [(meta, payload[: len(payload) // 2], "unreadable SPERR stream"),
             ({**meta, "lr_shape": [12, 14, 11]}, payload, r"decodes to shape \(12, 14, 10\)"),
             ({**meta, "lr_codec": "jpeg"}, payload, "unknown LR codec 'jpeg'")]
    for record, stream, message in cases:
        with pytest.raises(InputError, match=message) as caught:
            decode(*unpack(pack(record, stream)), tiny_weights_module, "cpu")
        assert "\n" not in str(caught.value)


def test_lr_codec_options_are_checked():
    with pytest.raises(InputError, match="unknown LR codec 'jpeg'"):
        make_config(lr_codec="jpeg")
    with pytest.raises(InputError, match="needs the SIREN LR codec"):
        make_config(lr_codec="sperr", finetune="bias")


def test_auto_keeps_the_candidate_that_decodes_closest(mni_crop):
    """Against an independent loop: each LR codec at each factor, within the same budget, decoded by the
    shipped SR model."""
    config = make_config("fast", steps=30)
    blob, report = compress_auto(mni_crop, config, None, 1.0, None, None, "cpu")
    summary = report["auto"]
    budget = math.floor(mni_crop.data.size / 8)
    assert summary["budget_bytes"] == budget >= report["bytes"] == len(blob)
    assert summary["candidate_budget_bytes"] == budget - record_bytes(candidates(config))
    scores = {}
    for trial in candidates(config):
        try:
            made, _ = compress_volume(mni_crop, trial, None, target_bpp=8 * summary["candidate_budget_bytes"]
                                      / mni_crop.data.size, device="cpu")
        except InputError:
            continue
        scores[trial.lr_codec, trial.scale] = psnr(decode(*unpack(made), None, "cpu").data, mni_crop.data)
    assert len(scores) == len(summary["candidates"]) == 12
    for entry in summary["candidates"]:
        assert entry["psnr"] == pytest.approx(scores[entry["lr_codec"], entry["scale"]], abs=1e-6)
    best = max(scores, key=scores.get)
    assert (summary["choice"]["lr_codec"], summary["choice"]["scale"]) == best
    meta, payload = unpack(blob)
    assert (meta.get("lr_codec", "siren"), meta["scale"]) == best
    assert meta["auto"] == [[codec, scale, round(scores[codec, scale], 2)] for codec, scale in scores]
    assert psnr(decode(meta, payload, None, "cpu").data, mni_crop.data) == pytest.approx(scores[best], abs=1e-6)


def test_cli_lr_codec_auto_and_info(tmp_path, int16_nifti, tiny_weights, capsys):
    args = ["--decoder-weights", str(tiny_weights), "--device", "cpu", "-q"]
    out = tmp_path / "s.arssr"
    assert main(["compress", str(int16_nifti), "-o", str(out), "--lr-codec", "sperr", "--target-bpp", "4", *args]) == 0
    assert main(["info", str(out)]) == 0
    lines = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    stream = len(read_container(out)[1])
    assert lines["lr_codec"] == f"sperr, {stream} bytes, {8 * stream / (6 * 6 * 6):.4f} bits per LR voxel"
    assert "siren" not in lines and "paper_cr" not in lines and int(lines["bytes"]) <= 4 * 12 * 11 * 11 / 8
    meta = read_container(out)[0]
    low, high = meta["consistency_weights"]
    gain, out_low, out_high = meta["background_decoding"]
    assert lines["consistency"] == (f"kspace; inside the decoded foreground, detail gain {meta['detail_gain']:g}, "
                                    f"band weights {low:g} (below half "
                                    f"the LR's Nyquist frequency) and {high:g} (above); outside the decoded "
                                    f"foreground detail gain {gain:g}, band weights {out_low:g} and {out_high:g}")
    assert main(["decompress", str(out), "-o", str(tmp_path / "s.nii.gz"), *args]) == 0
    auto, report = tmp_path / "a.arssr", tmp_path / "a.json"
    assert main(["compress", str(int16_nifti), "-o", str(auto), "--auto", "--target-bpp", "8", "--steps", "10",
                 "--json", str(report), *args]) == 0
    summary = json.loads(report.read_text())["auto"]
    assert len(summary["candidates"]) == 12 and all("psnr" in entry for entry in summary["candidates"])
    assert main(["info", str(auto)]) == 0
    line = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())["auto"]
    choice = summary["choice"]
    assert line.count(" dB") == 12 and f"{choice['lr_codec']} DS 1/{choice['scale']:g} " in line
    assert line.count("(chosen)") == 1


@pytest.mark.parametrize("options", [["--lr-codec", "sperr"], ["--auto"],
                                     ["--lr-codec", "sperr", "--target-psnr", "30"],
                                     ["--auto", "--target-bpp", "1", "--scale", "2"],
                                     ["--auto", "--target-bpp", "1", "--finetune-decoder"]])
def test_cli_refuses_lr_codec_options_that_cannot_work(tmp_path, int16_nifti, capsys, options):
    with pytest.raises(SystemExit) as exit_info:
        main(["compress", str(int16_nifti), "-o", str(tmp_path / "x.arssr"), "--device", "cpu", *options])
    assert exit_info.value.code == 2 and not (tmp_path / "x.arssr").exists()
    assert capsys.readouterr().err.count("\n") == 1


def _cli_lr_codecs() -> tuple:
    sub = next(action for action in build_parser()._actions if action.dest == "command").choices["compress"]
    return tuple(next(action for action in sub._actions if "--lr-codec" in action.option_strings).choices)


@pytest.mark.parametrize("name", list(CODECS))
def test_every_list_of_lr_codecs_is_the_registry(sperr_file, mni_crop, tiny_weights_module, name):
    """The CLI's choices, the config's and the metadata's names, --auto's candidates and the decode dispatch all
    come from CODECS: each codec's file passes the metadata checks and decodes through its own entry."""
    names = ("siren", *CODECS)
    assert lr_codec_names() == names == _cli_lr_codecs()
    assert [trial.lr_codec for trial in candidates(make_config(), scales=(2.0,))] == list(names)
    blob = sperr_file[0] if name == "sperr" else compress_volume(
        mni_crop, make_config("fast", lr_codec=name), tiny_weights_module, target_bpp=1.0, device="cpu")[0]
    meta, payload = unpack(blob)
    assert meta["lr_codec"] == name and make_config(lr_codec=name).lr_codec == name
    check_metadata(meta)
    assert np.array_equal(decode_lr(meta, payload), CODECS[name].decode(meta, payload))
    known = f"known: {', '.join(names)}$"
    for refuse in (lambda: make_config(lr_codec="jpeg"), lambda: decode_lr({**meta, "lr_codec": "jpeg"}, payload)):
        with pytest.raises(InputError, match=f"^unknown LR codec 'jpeg'; {known}"):
            refuse()
    with pytest.raises(InputError, match=f"^malformed .arssr metadata: unknown LR codec 'jpeg'; {known}"):
        check_metadata({**meta, "lr_codec": "jpeg"})


def _raw_fit(lr: np.ndarray, room: int) -> bytes | None:
    stream = np.ascontiguousarray(lr, "<f4").tobytes()
    return stream if len(stream) <= room else None


def _raw_decode(meta: dict, payload: bytes) -> np.ndarray:
    shape = tuple(meta["lr_shape"])
    if len(payload) != 4 * math.prod(shape):
        raise InputError(f"the raw stream has {len(payload)} bytes, the LR shape {shape} needs {4 * math.prod(shape)}")
    return np.frombuffer(payload, "<f4").reshape(shape).copy()


def _raw_check(meta: dict) -> None:
    if meta["method"] != "kspace":
        raise InputError("a raw LR needs k-space downsampling")


#: A lossless LR codec that the tests register: the LR's float32 bytes.
RAW = LRCodec(fit=_raw_fit, decode=_raw_decode, check=_raw_check)


def test_a_registered_lr_codec_needs_no_other_change(tmp_path, monkeypatch, mni_crop, tiny_weights, int16_nifti,
                                                      capsys):
    """One entry in CODECS: compress, decompress, the metadata checks, --auto, the CLI and info take it."""
    monkeypatch.setitem(CODECS, "raw", RAW)
    path = tmp_path / "raw.arssr"
    report = compress(mni_crop, path, sr_model=tiny_weights, lr_codec="raw", target_bpp=8.0, device="cpu")
    meta, payload = read_container(path)
    _, lr, model = prepare(mni_crop, make_config(lr_codec="raw"), tiny_weights)
    assert meta["lr_codec"] == "raw" and meta["consistency"] == "kspace" and payload == lr.astype("<f4").tobytes()
    assert report["bytes"] == path.stat().st_size <= math.floor(mni_crop.data.size) and report["lr_bpp"] == 32
    back = decompress(path, sr_model=tiny_weights, device="cpu")
    assert np.array_equal(back.data, restore(meta, lr, model, torch.device("cpu")).data)
    assert report["psnr"] == pytest.approx(psnr(back.data, mni_crop.data), abs=1e-6)
    with pytest.raises(InputError, match="^malformed .arssr metadata: a raw LR needs k-space downsampling$"):
        check_metadata({**meta, "method": "lanczos"})
    with pytest.raises(InputError, match=r"^the raw stream has 8 bytes, the LR shape \(12, 14, 10\) needs 6720$"):
        decode(meta, payload[:8], tiny_weights, "cpu")
    assert [trial.lr_codec for trial in candidates(make_config(), scales=(2.0,))] == ["siren", "sperr", "raw"]
    out = tmp_path / "cli.arssr"
    args = ["--decoder-weights", str(tiny_weights), "--device", "cpu", "-q"]
    assert main(["compress", str(int16_nifti), "-o", str(out), "--lr-codec", "raw", "--target-bpp", "16", *args]) == 0
    assert main(["info", str(out)]) == 0
    lines = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert lines["lr_codec"] == f"raw, {4 * 6 ** 3} bytes, 32.0000 bits per LR voxel"
    assert main(["decompress", str(out), "-o", str(tmp_path / "cli.nii.gz"), *args]) == 0
    monkeypatch.delitem(CODECS, "raw")
    assert "raw" not in _cli_lr_codecs()
    with pytest.raises(InputError, match="^.*unknown LR codec 'raw'; known: siren, sperr$"):
        read_container(out)
