"""``--auto``: the LR codec and downsampling factor that decode closest to the volume within a byte budget.

Every candidate (each LR codec at each factor; factor 1 is the codec alone on the full grid, no SR model) is
encoded within the budget and decoded; the file of the one with the highest PSNR is kept. Its metadata
records every candidate's score (``"auto": [[lr_codec, scale, psnr or null], ...]``, null where it could not
be made: the budget too small for it, or the volume too small for the factor); the bytes of that record are
set aside from the budget before the candidates are encoded, so the kept file is within the budget.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import replace

import torch

from arssr.compress import container
from arssr.compress.config import CompressionConfig
from arssr.compress.lr_codec import lr_codec_names, lr_codec_of
from arssr.compress.rate import rate
from arssr.compress.search import budget_bytes, check_options, compress_with_codec
from arssr.device import resolve_device
from arssr.errors import InputError
from arssr.protocol import AUTO_SCALES
from arssr.volume import Volume

#: Decimals of the scores in the file.
SCORE_DECIMALS = 2


def candidates(config: CompressionConfig, codecs=None, scales=AUTO_SCALES) -> list[CompressionConfig]:
    """``config`` with each LR codec (default: every one, :func:`arssr.compress.lr_codec.lr_codec_names`) at each
    downsampling factor."""
    codecs = lr_codec_names() if codecs is None else codecs
    return [replace(config, lr_codec=codec, scale=float(scale)) for codec in codecs for scale in scales]


def record_bytes(trials: list[CompressionConfig]) -> int:
    """An upper bound on what the scores of ``trials`` add to a file: their record's uncompressed JSON, each score
    written as its longest form (``Infinity``)."""
    placeholder = [[trial.lr_codec, trial.scale, math.inf] for trial in trials]
    return len(json.dumps({"auto": placeholder}, separators=(",", ":")))


def compress_auto(volume: Volume, config: CompressionConfig, sr_model: str | os.PathLike | None,
                  target_bpp: float | None, target_psnr: float | None, time_budget: float | None,
                  device: str | torch.device, progress: bool = False, codecs=None,
                  scales=AUTO_SCALES) -> tuple[bytes, dict]:
    """``(file bytes, report)`` of the candidate (:func:`candidates`) that decodes closest to ``volume`` within
    ``target_bpp``; the report's ``auto`` entry has the budget, the choice and every candidate's scores.
    ``config`` gives everything but the LR codec and the factor (the SIREN's settings, ``time_budget`` per fit)."""
    check_options(config, target_bpp, target_psnr, auto=True)
    budget = budget_bytes(volume, target_bpp)
    trials = candidates(config, codecs, scales)
    room = budget - record_bytes(trials)
    if room <= 0:
        raise InputError(f"a target of {target_bpp:g} bpp is below the smallest possible file for this volume")
    device = resolve_device(device)
    start = time.perf_counter()
    scored = []
    for number, trial in enumerate(trials, 1):
        try:
            blob, report = compress_with_codec(volume, trial, sr_model, 8 * room / math.prod(volume.shape), None,
                                               time_budget, device, progress)
        except InputError as err:  # the budget too small for it, or the volume too small for the factor
            scored.append((trial, None, {"error": str(err)}))
        else:
            scored.append((trial, blob, report))
        if progress:
            _progress_line(number, len(trials), scored, time.perf_counter() - start)
    made = [entry for entry in scored if entry[1] is not None]
    if not made:
        raise InputError(f"no LR codec and factor fits a target of {target_bpp:g} bpp for this volume")
    choice, blob, report = max(made, key=lambda entry: entry[2]["psnr"])
    meta, payload = container.unpack(blob)
    meta["auto"] = [[trial.lr_codec, trial.scale, round(found["psnr"], SCORE_DECIMALS) if "psnr" in found else None]
                    for trial, _, found in scored]
    blob = container.pack(meta, payload)
    summary = {
        "budget_bytes": budget,
        "candidate_budget_bytes": room,
        "choice": {"lr_codec": choice.lr_codec, "scale": choice.scale},
        "candidates": [{"lr_codec": trial.lr_codec, "scale": trial.scale, **_scores(found)}
                       for trial, _, found in scored],
    }
    return blob, {**report, **rate(meta, len(blob)), "encode_s": time.perf_counter() - start, "auto": summary}


def _progress_line(number: int, total: int, scored: list, elapsed: float) -> None:
    """The terminal line after candidate ``number`` of ``total`` (the last of ``scored``): its score, the best so
    far, the seconds so far."""
    from tqdm.auto import tqdm

    trial, blob, report = scored[-1]
    made = [(entry[2]["psnr"], entry[0]) for entry in scored if entry[1] is not None]
    line = f"candidate {number}/{total}: {trial.lr_codec} DS 1/{trial.scale:g} "
    line += f"{report['psnr']:.2f} dB" if blob is not None else "does not fit"
    if made:
        psnr, best = max(made, key=lambda entry: entry[0])
        line += f"; best {best.lr_codec} DS 1/{best.scale:g} {psnr:.2f} dB"
    tqdm.write(line + f"; {elapsed:.0f} s", file=sys.stderr)


def _scores(report: dict) -> dict:
    """What the ``auto`` summary keeps of a candidate's report (or its error)."""
    keys = ("bytes", "bpp", "psnr", "ssim", "encode_s", "decode_s", "error")
    return {key: report[key] for key in keys if key in report}


def describe(meta: dict) -> list[str]:
    """The ``arssr info`` line of an ``--auto`` file's candidates, the chosen one marked (none for other files)."""
    if "auto" not in meta:
        return []
    chosen = [lr_codec_of(meta), float(meta["scale"])]
    parts = []
    for codec, scale, psnr in meta["auto"]:
        score = "does not fit" if psnr is None else f"{psnr:.2f} dB"
        parts.append(f"{codec} DS 1/{scale:g} {score}" + (" (chosen)" if [codec, scale] == chosen else ""))
    return ["auto: " + ", ".join(parts)]
