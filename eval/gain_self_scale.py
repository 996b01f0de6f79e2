"""At which scale should the detail gain's self-example degrade the input? In-mask PSNR of the default
pipeline's output with fixed gains and with the gain fitted on self-examples at several scales.

The LR is the whole ground truth degraded by ``--degradation``; the network runs once per case, and every
row is ``b + g (P(net) - b)`` with ``P`` the projection onto consistency with ``--operator`` and ``b`` the
projected matching interpolation (``arssr.gain.interpolation``), as ``arssr upsample`` computes it but
clipped at zero once instead of its alternating floor projections. ``fit@S`` is the least-squares gain of
:func:`arssr.gain.detail_gain` with its self-example at scale at most ``S`` on every axis, ``input`` at
the input's own scale.

Usage: python eval/gain_self_scale.py --gt inia19-t1-brain.nii.gz [--degradation kspace] [--operator kspace]
                                      [--scales 2,3.2] [--self-scales input,2,1.5] [--gains 0,0.25,0.5,0.75,1]
                                      [--threads 1] [--json eval/results/gain_self_scale.json]
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from arssr import inference
from arssr.consistency import project
from arssr.gain import detail_gain, interpolation
from arssr.metrics import brain_mask, psnr
from arssr.models import default_model_path, load_model
from arssr.models.space import ModelSpace
from arssr.simulate import simulate_lr
from arssr.volume import load_volume


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gt", required=True)
    parser.add_argument("--weights", default=str(default_model_path()))
    parser.add_argument("--degradation", default="kspace")
    parser.add_argument("--operator", default="kspace")
    parser.add_argument("--scales", default="2,3.2")
    parser.add_argument("--self-scales", default="input,2,1.5")
    parser.add_argument("--gains", default="0,0.25,0.5,0.75,1")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gt, model = load_volume(args.gt), load_model(args.weights)
    mask = brain_mask(gt.data)
    rows = []
    for scale in [float(s) for s in args.scales.split(",")]:
        lr_volume = simulate_lr(gt, scale, args.degradation)
        space = ModelSpace.of(lr_volume.data, lr_volume.affine, model)
        lr, shape = space.to_model(lr_volume.data), space.axes(gt.shape)
        net = inference.super_resolve(lr, model, shape)
        net[inference.empty_background(lr, net.shape)] = 0.0
        projected = project(net, lr, args.operator)
        base = project(interpolation(lr, shape, args.operator), lr, args.operator)

        def score(gain: float) -> float:
            out = space.from_model(np.maximum(base + gain * (projected - base), 0.0))
            return psnr(out, gt.data, mask)

        row = {"scale": scale, "fixed": {g: score(float(g)) for g in args.gains.split(",")}, "fitted": {}}
        for self_scale in args.self_scales.split(","):
            limit = scale if self_scale == "input" else float(self_scale)
            gain = detail_gain(model, lr, (scale,) * 3, args.operator, torch.device("cpu"), limit)
            row["fitted"][self_scale] = {"gain": gain, "psnr_mask": score(gain)}
        rows.append(row)
        fixed = "  ".join(f"g={g}: {v:.2f}" for g, v in row["fixed"].items())
        fitted = "  ".join(f"fit@{k}: g={v['gain']:.2f} {v['psnr_mask']:.2f}" for k, v in row["fitted"].items())
        print(f"x{scale:g}  {fixed}  |  {fitted}", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {"gt": Path(args.gt).name, "weights": Path(args.weights).name, "degradation": args.degradation,
                  "operator": args.operator, "psnr": "dB inside the brain mask", "rows": rows}
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
