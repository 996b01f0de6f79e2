"""``arssr train``: a YAML config, key=value overrides and flags, then :func:`arssr.training.train`."""

from __future__ import annotations

import argparse

from arssr.cli.options import output_path, positive_int, seed_option, usage_errors


def run(args: argparse.Namespace) -> int:
    """Train, and print the run folder."""
    from arssr.shard import distributed_rank
    from arssr.training import cli_config, train

    flags = {"data": args.data, "out": args.out, "device": args.device, "amp": args.amp, "seed": args.seed,
             "threads": args.threads, "deterministic": args.deterministic or None}
    overrides = [*args.overrides, {key: value for key, value in flags.items() if value is not None}]
    with usage_errors():
        distributed_rank()  # torchrun's environment, checked as upsample checks it
        config = cli_config(args.config, overrides, args.resume, args.out)
    print(train(config, resume=args.resume))
    return 0


def add_parser(sub) -> None:
    """The ``train`` command's options."""
    tr = sub.add_parser("train", help="train an ArSSR model", description=(
        "Train an ArSSR model (paper recipe by default). Options come from --config (YAML), then key=value overrides "
        "(nested keys with dots: model.encoder=rdn sampling.crop=40), then the flags below. Under torchrun the same "
        "command trains with DistributedDataParallel."))
    tr.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, values read as YAML")
    tr.add_argument("--config", help="YAML config file (e.g. train/paper.yaml)")
    tr.add_argument("--data", help="folder (searched recursively), glob pattern, CSV with a 'path' column, "
                                   "or mni-synthetic")
    tr.add_argument("--out", type=output_path, help="run folder (config.yaml, split.json, TensorBoard logs, checkpoints, weights)")
    tr.add_argument("--resume", help="'auto' (the run folder's checkpoint, if any) or a checkpoint file")
    tr.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    tr.add_argument("--amp", choices=["fp32", "bf16", "fp16", "none"],
                    help="mixed precision, as upsample's --precision (none: fp32)")
    tr.add_argument("--seed", type=seed_option, help="random seed")
    tr.add_argument("--deterministic", action="store_true", help="deterministic algorithms (slower on GPUs)")
    tr.add_argument("--threads", type=positive_int, help="CPU threads for torch")
    tr.set_defaults(func=run)
