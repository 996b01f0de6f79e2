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


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` with ``0 <= I < N`` -> ``(I, N)``; anything else is an ``InputError``."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise InputError(f"--shard takes I/N (e.g. 0/4: the first of 4 shards), got {text!r}") from None
    if not 0 <= index < count:
        raise InputError(f"--shard I/N needs 0 <= I < N, got {text!r}")
    return index, count


def current_shard(option: tuple[int, int] | None, env: Mapping[str, str] = os.environ) -> Shard | None:
    """This process's shard from ``--shard`` and torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; None: all files."""
    index, count = option or (0, 1)
    world = int(env.get("WORLD_SIZE", "1"))
    if world > 1:
        rank = int(env["RANK"])
        return Shard(index * world + rank, count * world, int(env.get("LOCAL_RANK", rank)))
    return Shard(index, count) if count > 1 else None


def shard_device(name: str, shard: Shard | None) -> str:
    """Under torchrun, ``auto`` and ``cuda`` mean the rank's own GPU, ``cuda:LOCAL_RANK``, when CUDA is there."""
    import torch

    if shard is not None and shard.local_rank is not None and name in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{shard.local_rank}"
    return name
