"""Train the through-plane prior (``arssr.models.planes``) on 2D planes of real (and synthetic) volumes, resumable.

    OMP_NUM_THREADS=1 python train/plane_prior.py --data train/real_t1.csv --out RUN [--hours 2] [--steps 12000]
                                                  [--init PRIOR] [--lr 1e-3] [--phase] [--difference-weight 0]
                                                  [--norm l1] [--synthetic 0] [--channels 32,64,128,256]
                                                  [--export pretrained/arssr_planes_v1.safetensors]

RUN (outside the repository) holds ``checkpoint.pt``, TensorBoard logs, ``step*.safetensors`` and
``last.safetensors``; running the same command again resumes (a finished run only exports). ``--export``
writes the last weights in float16, as the shipped prior is stored; ``--init`` starts from a prior's weights
(a new run only: a run folder with a checkpoint resumes from it). The selection rule of the shipped prior is
in eval/results/plane_prior/README.md.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from arssr.models.planes import load_prior, save_prior
from arssr.training.datasets import find_subjects, load_normalized, prepare
from arssr.training.planes import LOSS_NORMS, PriorRun, seeded_prior, train_prior, with_phase
from arssr.training.synthetic import SyntheticMNI


def channel_list(text: str) -> list[int]:
    """``"32,64,128"`` as ``[32, 64, 128]``: at least two positive counts."""
    try:
        channels = [int(count) for count in text.split(",")]
    except ValueError:
        channels = []
    if len(channels) < 2 or min(channels) < 1:
        raise argparse.ArgumentTypeError(f"give at least two positive feature counts, comma-separated, not {text!r}")
    return channels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a folder of NIfTI volumes or a CSV list (as arssr train)")
    parser.add_argument("--out", required=True, help="run folder (resumed when it holds a checkpoint)")
    parser.add_argument("--steps", type=int, default=PriorRun.steps)
    parser.add_argument("--hours", type=float, default=math.inf, help="stop (with a checkpoint) after this long")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--export", help="also write the last weights here, in float16")
    parser.add_argument("--init", help="start from this prior's weights")
    parser.add_argument("--lr", type=float, default=PriorRun.lr, help="peak learning rate (cosine schedule)")
    parser.add_argument("--difference-weight", type=float, default=PriorRun.difference_weight,
                        help="weight of the loss on row-to-row differences across the slices (plane_loss)")
    parser.add_argument("--phase", action="store_true",
                        help="give the prior the rows' phase within their slices (PlanePrior(phase=True)); "
                             "an --init prior without it gains it, unchanged until trained")
    parser.add_argument("--norm", choices=LOSS_NORMS, default=PriorRun.norm, help="the loss's error (plane_loss)")
    parser.add_argument("--synthetic", type=int, default=0,
                        help="also train on this many variants of the MNI152 T1 (SyntheticMNI with the shipped 3D "
                             "recipe's tissue_power, seeded, made once at the start): brain-extracted 1 mm "
                             "volumes in other contrasts")
    parser.add_argument("--channels", type=channel_list,
                        help="features at each level of a new prior's U-Net (PlanePrior(channels=)), "
                             "comma-separated; the default is PlanePrior's")
    args = parser.parse_args()
    if args.synthetic < 0:
        parser.error(f"--synthetic counts volumes: 0 or more, not {args.synthetic}")
    if args.channels and args.init:
        parser.error("--channels makes a new prior; an --init prior keeps its own")
    shape = {"channels": args.channels} if args.channels else {}
    torch.set_num_threads(args.threads)
    paths, _ = find_subjects(args.data)
    volumes = [load_normalized(path, "percentile") for path in paths]
    variants = SyntheticMNI(seed=PriorRun.seed, tissue_power=(1.0, 4.0))
    volumes += [prepare(variants.sample(), "percentile") for _ in range(args.synthetic)]
    exports = tuple(range(2000, args.steps + 1, 2000))
    if args.init:
        prior = load_prior(args.init).train()
        prior = with_phase(prior) if args.phase else prior
    else:
        prior = seeded_prior(PriorRun.seed, phase=args.phase, **shape)
    last = train_prior(volumes, args.out, PriorRun(steps=args.steps, lr=args.lr, export_steps=exports,
                                                    difference_weight=args.difference_weight, norm=args.norm),
                       prior=prior, max_seconds=args.hours * 3600)
    print(last)
    if args.export:
        prior = load_prior(last)
        print(save_prior(prior, args.export, half=True, **prior.card, training="train/plane_prior.py",
                         data=Path(args.data).name, difference_weight=str(args.difference_weight),
                         norm=args.norm, synthetic=str(args.synthetic)))


if __name__ == "__main__":
    main()
