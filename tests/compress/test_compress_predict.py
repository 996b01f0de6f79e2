"""The default LR codec and scale for a target rate (``arssr.compress.predict``), the ``compress`` default that
uses it, and ``--auto``'s progress lines; on the shipped MNI152 T1 (3 mm) and a crop of the 1 mm one."""

import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from arssr.cli import main
from arssr.cli.compress import _predicted_default
from arssr.compress import make_config
from arssr.compress.auto import compress_auto
from arssr.compress.container import read_container
from arssr.compress.predict import LR_BITS, predicted_choice, predicted_scale
from arssr.errors import InputError
from arssr.inference import example_volume_path
from arssr.protocol import AUTO_SCALES

pytestmark = pytest.mark.usefixtures("one_thread")

#: The rule's candidates at some rates, worked out by hand from LR_BITS = 0.24: the factors of --auto's on either
#: side, on a log scale, of (0.24 / bpp)^(1/3): at 0.05 bpp 1.687, between 1.5 and 2; at 0.15 bpp 1.170, between
#: 1 and 1.5; at 0.001 bpp 6.21, beyond 4; at 1 bpp 0.62, below 1.
RULE_EXAMPLES = [(0.001, (3.0, 4.0)), (0.005, (3.0, 4.0)), (0.01, (2.5, 3.0)), (0.02, (2.0, 2.5)),
                 (0.05, (1.5, 2.0)), (0.1, (1.0, 1.5)), (0.12, (1.0, 1.5)), (0.15, (1.0, 1.5)), (1.0, (1.0, 1.5))]
#: The default's candidates at 0.05 bpp and the LR grids they give the 48 x 56 x 48 crop (56 / 1.5 = 37.3).
DEFAULT_AT_005 = {1.5: [32, 37, 32], 2.0: [24, 28, 24]}


@pytest.mark.parametrize(("bpp", "scales"), RULE_EXAMPLES)
def test_rule_gives_these_factors(bpp, scales):
    assert predicted_choice(bpp) == {"codecs": ("sperr",), "scales": scales}


@pytest.mark.parametrize("bpp", [0.001, 0.003, 0.013, 0.02, 0.037, 0.05, 0.08, 0.1, 0.31, 2.0])
def test_rule_brackets_lr_bits_per_lr_voxel(bpp):
    """Against the rule's statement: two neighbouring factors of --auto's, one leaving SPERR at most LR_BITS bits
    per LR voxel and the other more, unless every factor lies on one side; the nearer of the two is the
    earlier rule's factor."""
    first, second = predicted_choice(bpp)["scales"]
    assert (first, second) in zip(AUTO_SCALES, AUTO_SCALES[1:])
    bits = [bpp * scale**3 for scale in (first, second)]
    assert (bits[0] <= LR_BITS < bits[1]) or (LR_BITS < bits[0] and first == AUTO_SCALES[0]) or (
        bits[1] <= LR_BITS and second == AUTO_SCALES[-1])
    nearest = min(AUTO_SCALES, key=lambda scale: abs(math.log(bpp * scale**3 / LR_BITS)))
    assert predicted_scale(bpp, LR_BITS) == nearest and nearest in (first, second)


@pytest.mark.parametrize("bpp", [0.0, -0.05, float("nan"), float("inf")])
def test_rule_refuses_a_rate_that_is_not_positive(bpp):
    with pytest.raises(InputError, match="target bpp must be positive"):
        predicted_choice(bpp)


def _args(*options):
    from arssr.cli import build_parser

    return build_parser().parse_args(["compress", "in.nii.gz", "-o", "out.arssr", *options])


@pytest.mark.parametrize(("options", "predicted"), [
    (["--target-bpp", "0.05"], True),
    (["--target-bpp", "0.05", "--method", "lanczos"], True),
    (["--target-bpp", "0.05", "--scale", "2"], False),
    (["--target-bpp", "0.05", "--lr-codec", "siren"], False),
    (["--target-bpp", "0.05", "--lr-codec", "sperr"], False),
    (["--target-bpp", "0.05", "--auto"], False),
    (["--target-bpp", "0.05", "--width", "20"], False),
    (["--target-bpp", "0.05", "--steps", "20"], False),
    (["--target-bpp", "0.05", "--time-budget", "20"], False),
    (["--target-bpp", "0.05", "--finetune-decoder"], False),
    (["--target-bpp", "0.05", "--preset", "paper-2023"], False),
    (["--target-psnr", "30"], False),
    ([], False),
])
def test_which_options_take_the_predicted_default(options, predicted):
    assert _predicted_default(_args(*options)) is predicted


@pytest.fixture
def example_crop(tmp_path) -> Path:
    """A 48 x 56 x 48 block of the shipped MNI152 T1 (3 mm, uint8), its affine shifted to the block."""
    image = nib.load(example_volume_path())
    start = (9, 11, 8)
    data = np.asarray(image.dataobj)[9:57, 11:67, 8:56]
    affine = image.affine.copy()
    affine[:3, 3] = image.affine[:3, :3] @ start + image.affine[:3, 3]
    path = tmp_path / "crop.nii.gz"
    nib.save(nib.Nifti1Image(data, affine, image.header), path)
    return path


def test_default_for_a_target_rate_is_auto_over_the_two_predicted_candidates(tmp_path, example_crop, tiny_weights,
                                                                              capsys):
    """The default's file is --auto's over SPERR at the two predicted factors, byte for byte, and keeps the one
    that decodes closer."""
    from arssr.volume import load_volume

    common = ["--decoder-weights", str(tiny_weights), "--device", "cpu"]
    default, report = tmp_path / "default.arssr", tmp_path / "r.json"
    assert main(["compress", str(example_crop), "-o", str(default), "--target-bpp", "0.05", "--json", str(report),
                 *common]) == 0
    meta, _ = read_container(default)
    scores = {scale: psnr for codec, scale, psnr in meta["auto"]}
    assert [codec for codec, _, _ in meta["auto"]] == ["sperr", "sperr"] and set(scores) == set(DEFAULT_AT_005)
    chosen = max(scores, key=scores.get)
    assert (meta["lr_codec"], meta["scale"], meta["lr_shape"]) == ("sperr", chosen, DEFAULT_AT_005[chosen])
    assert f", scale {chosen:g} (the better of DS 1/1.5 and 1/2, predicted for the rate), " in capsys.readouterr().err
    written = json.loads(report.read_text())
    assert written["bytes"] == default.stat().st_size <= 0.05 * 48 * 56 * 48 / 8
    assert written["auto"]["choice"] == {"lr_codec": "sperr", "scale": chosen}
    blob, _ = compress_auto(load_volume(example_crop), make_config("paper-2025", lr_codec="sperr"), tiny_weights,
                            0.05, None, None, "cpu", codecs=("sperr",), scales=(1.5, 2.0))
    assert default.read_bytes() == blob


def test_auto_progress_lines(mni_crop, tiny_weights, capsys):
    blob, report = compress_auto(mni_crop, make_config("fast"), tiny_weights, 1.0, None, None, "cpu", progress=True,
                                 codecs=("sperr",), scales=(1.0, 2.0, 100.0))
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("candidate")]
    scores = {entry["scale"]: entry.get("psnr") for entry in report["auto"]["candidates"]}
    best = max((s for s in scores if scores[s] is not None), key=scores.get)
    assert [line.split(";")[0] for line in lines] == [
        f"candidate 1/3: sperr DS 1/1 {scores[1.0]:.2f} dB", f"candidate 2/3: sperr DS 1/2 {scores[2.0]:.2f} dB",
        "candidate 3/3: sperr DS 1/100 does not fit"]
    assert lines[-1].split(";")[1] == f" best sperr DS 1/{best:g} {scores[best]:.2f} dB"
    quiet, _ = compress_auto(mni_crop, make_config("fast"), tiny_weights, 1.0, None, None, "cpu",
                             codecs=("sperr",), scales=(1.0, 2.0, 100.0))
    assert quiet == blob and not capsys.readouterr().err
