import nibabel as nib
import numpy as np
import pytest
import torch

from arssr.cli import main
from arssr.compress import compress, compress_volume, decompress, make_config
from arssr.compress import quantize
from arssr.compress.codec import decode
from arssr.compress.container import read_container, unpack
from arssr.compress.finetune import _draw_block, finetune_sr_model
from arssr.compress.fitting import evaluate_siren, fit_siren
from arssr.compress.rate import rate
from arssr.compress.sweep import score, sweep, write_report
from arssr.degrade import degrade
from arssr import geometry
from arssr.errors import InputError, ModelFileError, OutputExistsError
from arssr.inference import super_resolve
from arssr.intensity import denormalize, intensity_window, normalize
from arssr.metrics import psnr
from arssr.models import load_model, save_model
from arssr.volume import Volume

from conftest import make_tiny_model, oblique_affine, smooth_volume

FAST = {"steps": 40, "width": 16}


#: Small fits run fastest on one thread (and do not fight other jobs for cores).
pytestmark = pytest.mark.usefixtures("one_thread")


def test_round_trip_keeps_geometry_dtype_and_range(tmp_path, int16_nifti):
    report = compress(int16_nifti, tmp_path / "v.arssr", preset="fast", scale=1.0, device="cpu", **FAST)
    out = tmp_path / "back.nii.gz"
    decompress(tmp_path / "v.arssr", out, device="cpu")
    original, back = nib.load(int16_nifti), nib.load(out)
    assert back.shape == original.shape
    assert back.get_data_dtype() == np.int16
    np.testing.assert_array_equal(back.affine, original.affine)
    assert (int(back.header["qform_code"]), int(back.header["sform_code"])) == (1, 4)
    data, reference = np.asarray(back.dataobj), np.asarray(original.dataobj)
    assert data.min() >= reference.min() and data.max() <= reference.max()
    meta, _ = read_container(tmp_path / "v.arssr")
    assert meta["range"] == [float(reference.min()), float(reference.max())]
    assert report["bpp"] == 8 * (tmp_path / "v.arssr").stat().st_size / reference.size
    assert report["psnr"] == pytest.approx(psnr(data, reference), abs=0.05)  # int16 rounding of the output


def test_rate_definitions():
    meta = {"shape": [10, 20, 30], "dtype": "int16", "siren": {"width": 10, "depth": 2}}
    facts = rate(meta, 750)
    assert facts["bpp"] == 8 * 750 / 6000
    assert facts["compression_ratio"] == 12000 / 750
    assert facts["paper_cr"] == 1 - (4 * 10 + 11 * 10 + 11) / 6000


def test_target_bpp_bounds_the_real_file():
    volume = Volume(smooth_volume((16, 16, 12)), oblique_affine())
    blob, report = compress_volume(volume, make_config("fast", scale=1.0, steps=5), target_bpp=1.0, device="cpu")
    assert len(blob) <= volume.data.size / 8
    # the next width up would not be guaranteed to fit: its int8 weights alone take most of the budget
    width = report["config"]["width"]
    assert 3 * (width + 1) ** 2 + 5 * (width + 1) + 1 > volume.data.size / 8 - 400
    with pytest.raises(InputError, match="below the smallest possible file"):
        compress_volume(volume, make_config("fast", scale=1.0), target_bpp=0.01, device="cpu")
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(InputError, match="target bpp must be positive"):
            compress_volume(volume, make_config("fast", scale=1.0), target_bpp=bad, device="cpu")


def test_sr_model_is_checked_by_hash(tmp_path, tiny_weights):
    volume = Volume(smooth_volume((16, 14, 12)), oblique_affine())
    blob, _ = compress_volume(volume, make_config("fast", scale=2.0, **FAST), tiny_weights, device="cpu")
    meta, payload = unpack(blob)
    assert meta["decoder"]["name"] == "tiny.safetensors" and meta["lr_shape"] == [8, 7, 6]
    decoded = decode(meta, payload, tiny_weights, "cpu")
    assert decoded.shape == volume.shape
    np.testing.assert_array_equal(decoded.affine, volume.affine)
    other = save_model(make_tiny_model(seed=1), tmp_path / "other.safetensors")
    with pytest.raises(ModelFileError, match="is not the one this file was compressed with; it needs tiny.safetensors"):
        decode(meta, payload, other, "cpu")
    with pytest.raises(ModelFileError, match="not found; this file needs tiny.safetensors"):
        decode(meta, payload, tmp_path / "gone.safetensors", "cpu")


def test_decoding_without_weights_uses_the_shipped_model_the_file_names(mni_crop, tiny_weights, monkeypatch):
    """A file made with an earlier default (v7 here) decodes by itself once the default is another model; a file
    naming a model that is not shipped needs --decoder-weights."""
    from arssr.models import checkpoint

    v7 = checkpoint.pretrained_path("arssr_rdn_v7.safetensors")
    blob, _ = compress_volume(mni_crop, make_config("fast", scale=2.0, **FAST), v7, device="cpu")
    meta, payload = unpack(blob)
    assert meta["decoder"]["name"] == "arssr_rdn_v7.safetensors"
    monkeypatch.setattr(checkpoint, "DEFAULT_MODEL", "arssr_rdn_v9.safetensors")  # whatever the default is
    np.testing.assert_array_equal(decode(meta, payload, None, "cpu").data, decode(meta, payload, v7, "cpu").data)
    blob, _ = compress_volume(mni_crop, make_config("fast", scale=2.0, **FAST), tiny_weights, device="cpu")
    meta, payload = unpack(blob)
    with pytest.raises(ModelFileError, match="arssr_rdn_v9.safetensors .*is not the one this file was compressed "
                                             "with; it needs tiny.safetensors"):
        decode(meta, payload, None, "cpu")


def test_decoding_looks_up_bare_shipped_names_only(monkeypatch):
    """A recorded name with a folder in it is not looked up (the default is tried, and refused); a shipped file
    of the recorded name with another sha256 is refused, naming the file the record asks for."""
    from arssr.compress.codec import load_sr_model
    from arssr.models import checkpoint, file_sha256
    from arssr.models.checkpoint import pretrained_path

    monkeypatch.setattr(checkpoint, "DEFAULT_MODEL", "arssr_rdn_v9.safetensors")
    v7 = pretrained_path("arssr_rdn_v7.safetensors")
    for name in (str(v7), "../pretrained/arssr_rdn_v7.safetensors"):
        with pytest.raises(ModelFileError, match=r"arssr_rdn_v9\.safetensors \(sha256 9668310d.*is not the one"):
            load_sr_model({"name": name, "sha256": file_sha256(v7)}, None)
    other = {"name": "arssr_rdn_v7.safetensors", "sha256": file_sha256(pretrained_path("arssr_rdn_v5.safetensors"))}
    with pytest.raises(ModelFileError, match=r"arssr_rdn_v7\.safetensors \(sha256 .* it needs arssr_rdn_v7"
                                             r"\.safetensors \(sha256 " + other["sha256"][:16]):
        load_sr_model(other, None)


def test_decoding_projects_onto_the_decoded_lr(tiny_weights):
    """A plain file records its downsampling as the consistency operator and the band weights fitted at encoding;
    with weights (1, 1) decoding is the projection; older files (none) decode unprojected."""
    from arssr.models.siren import Siren

    volume = Volume(smooth_volume((16, 14, 12)), oblique_affine())
    blob, _ = compress_volume(volume, make_config("fast", scale=2.0, **FAST), tiny_weights, device="cpu")
    meta, payload = unpack(blob)
    assert meta["consistency"] == "kspace"
    weights = meta["consistency_weights"]
    assert len(weights) == 2 and all(abs(w) <= 9.999 for w in weights)  # fitted: not the placeholder (-12.3, -98.8)
    assert meta["detail_gain"] in [k / 10 for k in range(16)]
    background = meta["background_decoding"]
    assert len(background) == 3 and background[0] in [k / 10 for k in range(16)]
    assert all(abs(w) <= 9.999 for w in background[1:])
    assert blob[6] == 5  # format version 5: older readers refuse the decoding by region
    # the same gain and weights in both regions: the format-4 decoding of one gain and one pair of weights
    same = {**meta, "background_decoding": [meta["detail_gain"], *weights]}
    one = {key: value for key, value in meta.items() if key != "background_decoding"}
    np.testing.assert_allclose(decode(same, payload, tiny_weights, "cpu").data, decode(one, payload, tiny_weights, "cpu").data,
                               atol=1e-5 * np.ptp(volume.data))
    projected = {**meta, "consistency_weights": [1.0, 1.0], "background_decoding": [meta["detail_gain"], 1.0, 1.0]}
    decoded = decode(projected, payload, tiny_weights, "cpu").data
    siren = Siren(**meta["siren"])
    tensors = quantize.unpack_tensors(quantize.entropy_decode(meta["codec"], payload),
                                      [t.shape for t in siren.state_dict().values()], meta["quant"])
    siren.load_state_dict(dict(zip(siren.state_dict(), tensors)))
    low, high = meta["window"]
    lr = evaluate_siren(siren, tuple(meta["lr_shape"]), torch.device("cpu")) * (high - low) + low
    again = degrade(torch.from_numpy(decoded.astype(np.float64)), lr.shape, "kspace").numpy()
    inside = (decoded > meta["range"][0]) & (decoded < meta["range"][1])
    assert inside.mean() > 0.9  # the clipping to the volume's range touches few voxels
    assert np.abs(again - lr).max() < 2e-2 * (high - low)
    unweighted = {key: value for key, value in meta.items()
                  if key not in ("consistency_weights", "detail_gain", "background_decoding")}
    unprojected = decode({**unweighted, "consistency": "none"}, payload, tiny_weights, "cpu").data
    assert np.abs(degrade(torch.from_numpy(unprojected.astype(np.float64)), lr.shape, "kspace").numpy() - lr).max() \
        > 10 * np.abs(again - lr).max()
    with pytest.raises(InputError, match="malformed .arssr metadata.*consistency weights"):
        decode({**meta, "consistency": "none"}, payload, tiny_weights, "cpu")
    for bad in ([1.0], [-12.345678901, -98.765432109], [float("nan"), 1.0]):  # the placeholder is refused too
        with pytest.raises(InputError, match="malformed .arssr metadata.*consistency weights"):
            decode({**meta, "consistency_weights": bad}, payload, tiny_weights, "cpu")
    for bad in (-12.345678901, -0.5, float("nan")):
        with pytest.raises(InputError, match="malformed .arssr metadata.*detail gain"):
            decode({**meta, "detail_gain": bad}, payload, tiny_weights, "cpu")
    with pytest.raises(InputError, match="malformed .arssr metadata.*detail gain"):
        decode({**unweighted, "detail_gain": 1.0}, payload, tiny_weights, "cpu")
    for bad in ([1.0, 1.0], [-23.456789012, -87.654321098, -76.543210987], [-0.5, 1.0, 1.0], [0.5, float("nan"), 1.0]):
        with pytest.raises(InputError, match="malformed .arssr metadata.*background decoding"):
            decode({**meta, "background_decoding": bad}, payload, tiny_weights, "cpu")
    with pytest.raises(InputError, match="malformed .arssr metadata.*background decoding"):
        decode({**one, "detail_gain": None, "background_decoding": background}, payload, tiny_weights, "cpu")
    with pytest.raises(InputError, match="unknown consistency operator 'fft'"):
        decode({**meta, "consistency": "fft"}, payload, tiny_weights, "cpu")


def test_real_anatomy_with_the_shipped_model(mni_crop):
    """MNI152 at 2 mm, DS 1/2: the SIREN stage costs under 0.5 dB against SR from the exact LR volume."""
    blob, report = compress_volume(mni_crop, make_config(scale=2.0, width=48, steps=200), device="cpu")
    model = load_model()
    lr = degrade(torch.from_numpy(mni_crop.data), tuple(unpack(blob)[0]["lr_shape"]),
                 "kspace").numpy()
    window = intensity_window(lr, model.normalization)
    exact = denormalize(super_resolve(normalize(lr, window), model, mni_crop.shape), window,
                        (float(mni_crop.data.min()), float(mni_crop.data.max())))
    assert report["psnr"] >= psnr(exact, mni_crop.data) - 0.5
    assert report["psnr"] >= 22.0  # measured 22.9 dB; bench_compress.py: SR caps DS 1/2 near SR-from-exact-LR
    assert report["bpp"] == 8 * len(blob) / mni_crop.data.size < 3.0


def test_finetuned_sr_model_travels_in_the_file_and_lowers_the_error(mni_crop):
    """Real anatomy, a shipped model (arssr_rdn_v2): the end-to-end phase (docs/usage/compress.md) on top of the very same SIREN fit."""
    from arssr.models import default_model_path

    v2 = default_model_path().parent / "arssr_rdn_v2.safetensors"
    tuned_config = make_config(scale=2.0, width=32, steps=200, finetune="bias")  # 140 SIREN steps, then 60
    plain_blob, plain = compress_volume(mni_crop, make_config(scale=2.0, width=32, steps=140), v2, device="cpu")
    tuned_blob, tuned = compress_volume(mni_crop, tuned_config, v2, device="cpu")
    model = load_model(v2)
    biases = sum(p.numel() for name, p in model.named_parameters() if name.endswith("bias"))
    meta, payload = unpack(tuned_blob)
    assert meta["finetune"] == {"mode": "bias", "params": biases} and tuned_blob[6] == 5 and plain_blob[6] == 5
    assert len(tuned_blob) > len(plain_blob) + biases // 2  # the changes are in the file (int8, entropy-coded)
    assert tuned["paper_cr"] == 1 - (plain["siren_params"] + biases) / mni_crop.data.size
    assert tuned["psnr"] > plain["psnr"] + 0.3, (plain["psnr"], tuned["psnr"])  # measured +0.48 dB (+0.52 before band weights)
    assert psnr(decode(meta, payload, v2, device="cpu").data, mni_crop.data) == tuned["psnr"] and tuned["finetune_kept"]
    meta["finetune"]["params"] = 5
    with pytest.raises(InputError, match=f"the file fine-tunes 5 SR model parameters, the SR model has {biases}"):
        decode(meta, payload, v2, device="cpu")


@pytest.mark.parametrize("lr_shape, hr_shape", [((30, 11, 9), (60, 35, 9)), ((5, 40, 7), (16, 100, 22))])
def test_end_to_end_blocks_decode_as_the_whole_volume(tiny_model, lr_shape, hr_shape):
    """With the full receptive radius as halo, a block's queries equal whole-volume SR at the same voxels;
    the blocks' targets are the HR voxels whose trilinear neighbourhoods start in the core."""
    torch.manual_seed(0)
    lr = torch.rand(1, 1, *lr_shape)
    hr_grid = geometry.grid_coordinates(hr_shape)
    halo = tiny_model.receptive_radius
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        whole = tiny_model(lr, hr_grid.reshape(1, -1, 3)).reshape(hr_shape)
        for _ in range(4):
            lr_block, hr_block, feature_coords = _draw_block(lr_shape, hr_shape, 3, halo, generator)
            for n, m, lr_axis, hr_axis in zip(lr_shape, hr_shape, lr_block, hr_block):
                owner = np.maximum(np.floor((np.arange(m) + 0.5) * n / m - 0.5), 0)  # LR voxel below each HR one
                if n <= 3 + 2 * halo:
                    assert (lr_axis, hr_axis) == (slice(0, n), slice(0, m))
                    continue
                core = owner[hr_axis]
                assert core.max() - core.min() < 3  # targets: every HR voxel owned by the core, no other
                assert np.array_equal(np.flatnonzero((owner >= core.min()) & (owner <= core.max())),
                                      np.arange(hr_axis.start, hr_axis.stop))
                assert lr_axis.start == max(0, core.min() - halo) and lr_axis.stop >= min(n, core.max() + 1 + halo)
            block = tiny_model(lr[(..., *lr_block)], hr_grid[hr_block].reshape(1, -1, 3),
                               feature_coords.reshape(1, -1, 3))
            torch.testing.assert_close(block.reshape(whole[hr_block].shape), whole[hr_block], atol=1e-5, rtol=1e-5)


def test_end_to_end_steps_encode_bounded_blocks(tiny_weights):
    """On a volume larger than a block, each end-to-end step encodes at most core + 2 x halo LR voxels per
    axis, and the steps still train the SR model's biases through the blocks."""
    volume = Volume(smooth_volume((80, 72, 40)), oblique_affine())
    config = make_config("fast", scale=2.0, width=16, steps=40, finetune="bias", finetune_block=6,
                         finetune_share=0.5)
    encoded = []
    model = load_model(tiny_weights)
    hook = model.encoder.register_forward_pre_hook(lambda module, args: encoded.append(tuple(args[0].shape[2:])))
    siren = fit_siren(normalize(degrade(torch.from_numpy(volume.data), (40, 36, 20), "kspace").numpy(),
                                (0.0, 1.0)), config)
    deltas = finetune_sr_model(siren, model, normalize(volume.data, (0.0, 1.0)), config, steps=12)
    hook.remove()
    assert len(encoded) == 12 and all(shape[2] == 20 for shape in encoded)  # 20 <= 6 + 2 x 8: the whole axis
    assert all(a <= 22 and b <= 22 for a, b, _ in encoded) and len(set(encoded)) > 1
    assert all(delta.abs().max() > 0 for delta in deltas)


def test_end_to_end_changes_that_decode_worse_are_dropped(mni_crop, monkeypatch):
    """The file keeps the end-to-end phase only if it decodes closer: here that phase is replaced by one that
    shifts every bias of the real model by 0.5, and the SIREN from before it is written instead."""
    import arssr.compress.codec

    real = arssr.compress.codec.finetune_sr_model

    def harmful(siren, model, *args, **kwargs):
        return [delta + 0.5 for delta in real(siren, model, *args, **kwargs)]

    monkeypatch.setattr(arssr.compress.codec, "finetune_sr_model", harmful)
    config = make_config(scale=2.0, width=32, steps=200, finetune="bias")
    blob, report = compress_volume(mni_crop, config, device="cpu")
    plain_blob, plain = compress_volume(mni_crop, make_config(scale=2.0, width=32, steps=140), device="cpu")
    assert report["finetune_kept"] is False and "finetune" not in unpack(blob)[0] and blob[6] == 5
    assert blob == plain_blob and report["psnr"] == plain["psnr"] and report["decoder_params"] == 0


def test_finetune_options_and_budget(tiny_weights):
    with pytest.raises(InputError, match="unknown SR model fine-tuning 'all'"):
        make_config(finetune="all")
    with pytest.raises(InputError, match="needs a scale above 1"):
        make_config(scale=1.0, finetune="bias")
    volume = Volume(smooth_volume((16, 16, 16)), oblique_affine())
    blob, report = compress_volume(volume, make_config("fast", scale=2.0, steps=10, finetune="bias"), tiny_weights,
                                   target_bpp=4.0, device="cpu")
    assert len(blob) <= 4.0 * volume.data.size / 8 and report["config"]["width"] > 1


def test_sweep_finds_the_lowest_score(tmp_path, tiny_weights):
    volume = Volume(smooth_volume((12, 12, 12)), oblique_affine())
    records = sweep(volume, make_config("fast", steps=20), [1.0, 2.0], [8, 16], sr_model=tiny_weights)
    assert [(r["scale"], r["width"]) for r in records] == [(1.0, 8), (1.0, 16), (2.0, 8), (2.0, 16)]
    for r in records:
        assert r["score"] == pytest.approx(1 / r["psnr"] + 1 - abs(r["ssim"]) + r["bytes"] / (volume.data.size * 4))
        assert r["score"] == score(r)
    assert [r["best"] for r in records].count(True) == 1
    assert next(r for r in records if r["best"])["score"] == min(r["score"] for r in records)
    paths = write_report(records, tmp_path / "sweep")
    assert [p.name for p in paths] == ["sweep.csv", "sweep.md", "sweep.png"] and all(p.stat().st_size for p in paths)
    assert len(paths[0].read_text().splitlines()) == 5
    assert "trade-off point" in paths[1].read_text()
    with pytest.raises(OutputExistsError):
        write_report(records, tmp_path / "sweep")


def test_cli_compress_info_decompress(tmp_path, int16_nifti, tiny_weights, capsys):
    out = tmp_path / "v.arssr"
    args = ["--decoder-weights", str(tiny_weights), "--device", "cpu", "-q"]
    assert main(["compress", str(int16_nifti), "-o", str(out), "--preset", "fast", "--scale", "2", "--steps", "20",
                 "--width", "12", *args]) == 0
    assert main(["info", str(out)]) == 0
    lines = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    size = out.stat().st_size
    assert lines["bytes"] == str(size) and lines["bpp"] == f"{8 * size / 1452:.4f}"
    assert lines["compression_ratio"].startswith(f"{2904 / size:.2f}")
    assert lines["decoder"].startswith("tiny.safetensors sha256 ") and lines["decoder_finetune"] == "none"
    assert main(["decompress", str(out), "-o", str(tmp_path / "back.nii.gz"), *args]) == 0
    assert nib.load(tmp_path / "back.nii.gz").shape == (12, 11, 11)
    tuned = tmp_path / "tuned.arssr"
    assert main(["compress", str(int16_nifti), "-o", str(tuned), "--preset", "fast", "--scale", "2", "--steps", "20",
                 "--width", "12", "--finetune-decoder", *args]) == 0
    assert main(["info", str(tuned)]) == 0
    biases = sum(p.numel() for name, p in load_model(tiny_weights).named_parameters() if name.endswith("bias"))
    lines = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert lines["decoder_finetune"] == f"bias, {biases} parameters changed (in the payload)"
    assert main(["decompress", str(tuned), "-o", str(tmp_path / "tuned.nii.gz"), *args]) == 0
    assert main(["compress", str(int16_nifti), "-o", str(out), *args]) == 1
    assert f"error: {out}: exists (use --overwrite to replace it)" in capsys.readouterr().err
    assert main(["compress", str(int16_nifti), "--sweep", str(tmp_path / "s"), "--sweep-scales", "1", "--sweep-widths", "4",
                 "--steps", "2", *args]) == 0
    assert (tmp_path / "s" / "sweep.png").is_file()


@pytest.mark.parametrize("damage", ["truncate", "flip", "foreign", "empty"])
def test_cli_refuses_bad_files_and_writes_nothing(tmp_path, int16_nifti, damage, capsys):
    good = tmp_path / "v.arssr"
    compress(int16_nifti, good, preset="fast", scale=1.0, device="cpu", steps=2, width=4)
    blob = bytearray(good.read_bytes())
    bad = tmp_path / "bad.arssr"
    if damage == "truncate":
        bad.write_bytes(blob[:-7])
    elif damage == "flip":
        blob[len(blob) // 2] ^= 0x10
        bad.write_bytes(bytes(blob))
    elif damage == "foreign":
        bad.write_bytes(int16_nifti.read_bytes())
    else:
        bad.write_bytes(b"")
    out = tmp_path / "out.nii.gz"
    assert main(["decompress", str(bad), "-o", str(out), "--device", "cpu", "-q"]) == 1
    assert capsys.readouterr().err.startswith("error: ")
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bad.arssr", "v.arssr", "vol.nii.gz"]


def test_bad_volumes_are_refused(tmp_path):
    nan = np.ones((8, 8, 8), np.float32)
    nan[1, 2, 3] = np.nan
    for data, match in ((nan, "NaN"), (np.ones((8, 8, 8, 2), np.float32), "4D volume")):
        path = tmp_path / "x.nii.gz"
        nib.save(nib.Nifti1Image(data, np.eye(4)), path)
        with pytest.raises(InputError, match=match):
            compress(path, tmp_path / "x.arssr", device="cpu")
    assert not (tmp_path / "x.arssr").exists()
    with pytest.raises(InputError, match="unknown preset"):
        make_config("paper-1999")
    with pytest.raises(InputError, match="fewer than 2 voxels"):
        compress_volume(Volume(smooth_volume((8, 8, 2)), np.eye(4)), make_config(scale=2.0, steps=2), device="cpu")
    # A preset's fields are replaced by the options given, and options left at None keep the preset's.
    paper = make_config("paper-2023", width=None, steps=None)
    assert (paper.scale, paper.method, paper.width, paper.loss, paper.steps) == (4.0, "lanczos", 128, "mse", 15000)
    assert make_config("paper-2023", width=16).width == 16
