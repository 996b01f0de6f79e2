"""The CLI's default time budget of a SIREN fit: only without --steps and --time-budget, its own for --auto's
candidates, none for another LR codec; the help and one stderr line state it."""

import pytest

from arssr.cli import build_parser, main
from arssr.cli.compress import siren_time_budget
from arssr.compress import make_config
from arssr.inference import example_volume_path
from arssr.protocol import AUTO_SIREN_TIME_BUDGET, SIREN_TIME_BUDGET

DEFAULT_LINE = f"SIREN fit: at most {SIREN_TIME_BUDGET:g} s (the default; --steps or --time-budget to change)"


def _budget(codec: str, *options) -> float | None:
    args = build_parser().parse_args(["compress", "in.nii.gz", "-o", "out.arssr", *options])
    return siren_time_budget(args, make_config(args.preset, lr_codec=codec))


@pytest.mark.parametrize(("codec", "options", "budget"), [
    ("siren", ["--target-bpp", "0.775", "--lr-codec", "siren"], SIREN_TIME_BUDGET),
    ("siren", ["--target-psnr", "35"], SIREN_TIME_BUDGET),
    ("siren", ["--target-bpp", "0.775", "--width", "40", "--preset", "fast"], SIREN_TIME_BUDGET),
    ("siren", ["--target-bpp", "0.775", "--lr-codec", "siren", "--steps", "300"], None),
    ("siren", ["--target-bpp", "0.775", "--lr-codec", "siren", "--time-budget", "7"], 7.0),
    ("siren", ["--target-psnr", "35", "--steps", "300", "--time-budget", "7.5"], 7.5),
    ("siren", ["--target-bpp", "0.05", "--auto"], AUTO_SIREN_TIME_BUDGET),
    ("siren", ["--target-bpp", "0.05", "--auto", "--time-budget", "45"], 45.0),
    ("siren", ["--target-bpp", "0.05", "--auto", "--steps", "300"], None),
    ("siren", ["--sweep", "report"], SIREN_TIME_BUDGET),
    ("siren", ["--sweep", "report", "--auto"], SIREN_TIME_BUDGET),
    ("siren", ["--sweep", "report", "--steps", "300"], None),
    ("sperr", ["--target-bpp", "0.05", "--lr-codec", "sperr"], None),
    ("sperr", ["--target-bpp", "0.05"], None),  # the predicted default: SPERR
])
def test_default_budget_only_without_steps_or_time_budget(codec, options, budget):
    assert SIREN_TIME_BUDGET > AUTO_SIREN_TIME_BUDGET > 0
    assert _budget(codec, *options) == budget


def test_help_states_the_default_budget(capsys):
    with pytest.raises(SystemExit):
        main(["compress", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"stops at {SIREN_TIME_BUDGET:g} s, a SIREN candidate of --auto at {AUTO_SIREN_TIME_BUDGET:g} s" in help_text


def test_default_budget_line_on_real_anatomy(tmp_path, tiny_weights, capsys):
    """The MNI152 T1 with a small SIREN: the line when the default applies, not with --steps, nothing with -q."""
    common = [str(example_volume_path()), "--lr-codec", "siren", "--scale", "4", "--width", "4", "--preset",
              "fast", "--decoder-weights", str(tiny_weights), "--device", "cpu", "--threads", "1"]
    assert main(["compress", *common, "-o", str(tmp_path / "default.arssr")]) == 0
    assert DEFAULT_LINE in capsys.readouterr().err.splitlines()
    assert main(["compress", *common, "--steps", "20", "-o", str(tmp_path / "steps.arssr")]) == 0
    assert "SIREN fit:" not in capsys.readouterr().err
    assert main(["compress", *common, "-q", "-o", str(tmp_path / "quiet.arssr")]) == 0
    assert capsys.readouterr().err == ""
