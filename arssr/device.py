"""The torch device a command runs on, and the memory it has free."""

from __future__ import annotations

import os

import torch

from arssr.errors import InputError


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then the CPU; an unavailable device is an ``InputError``.

    A ``torch.device`` is returned as it is.
    """
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise InputError(f"unknown device {name!r} (use auto, cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {name!r} requested but CUDA is not available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    elif device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError("device 'mps' requested but MPS is not available")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"unsupported device {name!r} (use auto, cpu, cuda, cuda:N or mps)")
    return device


def free_memory_bytes(device: torch.device) -> int:
    """Memory that a tile may use: free GPU memory, or available RAM on the CPU."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 << 30
