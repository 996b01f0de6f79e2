"""A batch of files split over processes: ``--shard I/N`` (job arrays), torchrun's ranks, or both.

Shard ``I`` of ``N`` takes files ``I, I + N, I + 2N, ...`` of the batch in its order (a folder's files
sorted by name, a ``.txt`` list as listed), so every process computes the same split without talking to
the others. That is why no process group is made: a cohort's files are independent, a rendezvous at the
end would only make fast ranks wait for slow ones (and time out behind a rank that is far behind), and
each rank's exit status already tells torchrun or the scheduler whether its files failed. Under
torchrun each rank prints the summary of its own shard. Under a job array that runs torchrun, both
apply: array task ``I`` of ``N`` with ``W`` ranks is split again, rank ``R`` taking shard
``I * W + R`` of ``N * W``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from arssr.errors import InputError


@dataclass(frozen=True)
class Shard:
    index: int
    count: int
    local_rank: int | None = None  # set under torchrun: the rank's GPU

    def take(self, items: Sequence) -> list:
        return list(items[self.index::self.count])

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def _whole(text: str, what: str) -> int:
    """``text`` as a whole number in decimal digits, else an ``InputError`` naming ``what``."""
    if not (text.strip().isascii() and text.strip().isdigit()) or len(text.strip()) > 9:
        raise InputError(f"{what} must be a whole number >= 0 of at most 9 digits, got {text[:20]!r}")
    return int(text)


def _checked(index: int, count: int, what: str, text: str) -> tuple[int, int]:
    if count < 1 or not index < count:
        raise InputError(f"{what} needs 0 <= I < N, got {text!r}")
    return index, count


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` with ``0 <= I < N`` -> ``(I, N)``; anything else is an ``InputError``."""
    parts = text.split("/")
    if len(parts) != 2:
        raise InputError(f"--shard takes I/N (e.g. 0/4: the first of 4 shards), got {text[:20]!r}")
    index, count = (_whole(part, "--shard I/N: each of I and N") for part in parts)
    return _checked(index, count, "--shard I/N", text)


def distributed_rank(env: Mapping[str, str] = os.environ) -> tuple[int, int, int] | None:
    """torchrun's ``(RANK, WORLD_SIZE, LOCAL_RANK)`` from ``env``, checked as ``--shard`` is; ``None`` without
    ``WORLD_SIZE`` (a ``RANK`` left alone in a job's environment is not torchrun's).

    A ``WORLD_SIZE`` above 1 without ``RANK``, or a ``RANK`` outside ``0 .. WORLD_SIZE - 1``, is an
    ``InputError``.
    """
    if "WORLD_SIZE" not in env:
        return None
    world = _whole(env["WORLD_SIZE"], "WORLD_SIZE")
    if "RANK" not in env and world != 1:
        raise InputError("the environment sets WORLD_SIZE but not RANK; torchrun sets both")
    rank = _whole(env.get("RANK", "0"), "RANK")
    _checked(rank, world, "RANK/WORLD_SIZE", f"{env.get('RANK', '0')}/{env['WORLD_SIZE']}")
    local_rank = _whole(env["LOCAL_RANK"], "LOCAL_RANK") if "LOCAL_RANK" in env else rank
    return rank, world, local_rank


def current_shard(option: tuple[int, int] | None, env: Mapping[str, str] = os.environ) -> Shard | None:
    """This process's shard from ``--shard`` and torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; None: all files."""
    index, count = option or (0, 1)
    ranks = distributed_rank(env)
    if ranks is not None and ranks[1] > 1:
        rank, world, local_rank = ranks
        return Shard(index * world + rank, count * world, local_rank)
    return Shard(index, count) if count > 1 else None


def shard_device(name: str, shard: Shard | None) -> str:
    """Under torchrun, ``auto`` and ``cuda`` mean the rank's own GPU, ``cuda:LOCAL_RANK``, when CUDA is there."""
    import torch

    if shard is not None and shard.local_rank is not None and name in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{shard.local_rank}"
    return name
