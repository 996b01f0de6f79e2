"""How a volume is compressed: :class:`CompressionConfig` and the published settings as presets."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from arssr import geometry
from arssr.compress import quantize
from arssr.compress.lr_codec import lr_codec_names
from arssr.degrade import DEGRADATIONS
from arssr.errors import InputError
from arssr.models.siren import Siren

LOSSES = ("l1", "mse")
#: What the end-to-end phase may change in the SR model: nothing, or its biases.
FINETUNE = ("none", "bias")
#: Largest SIREN: neurons per layer and sine layers (a compressed volume's network is far smaller; a reader
#: refuses files beyond these, ``arssr.compress.metadata``).
MAX_WIDTH = 4096
MAX_DEPTH = 32
#: float32 values per coordinate, neuron and layer that a fitting step holds (pre-activation, sine, gradients).
FIT_ACTIVATIONS = 4


@dataclass(frozen=True)
class CompressionConfig:
    """How a volume is compressed (the defaults of the ``paper-2025`` preset).

    ``scale``: HR/LR size ratio per axis (1 = no downsampling, no SR model);
    ``method``: degradation (``kspace`` or ``lanczos``, see ``arssr.degrade``);
    ``width``/``depth``/``w0``: the SIREN; ``loss``: ``l1`` or ``mse``;
    ``lr``: Adam learning rate; ``steps``: most optimisation steps;
    ``quant``: ``fp32``, ``fp16`` or ``int2`` .. ``int8``; ``qat``: share of
    the steps (and of a time budget) spent on quantisation-aware fine-tuning
    at lr / 10; ``batch``: most coordinates per step (random subsets beyond);
    ``seed``: initialisation and sampling seed; ``finetune``: ``none`` or
    ``bias`` (the SR model's biases trained with the SIREN on the HR volume,
    their changes stored in the file) for the last ``finetune_share`` of the
    steps or time budget, each step on a random block of ``finetune_block``
    LR voxels per axis (the whole axis when it is not much longer);
    ``lr_codec``: what codes the LR volume, ``siren`` or a codec of ``arssr.compress.lr_codec`` (``sperr``;
    only ``scale`` and ``method`` apply to those).
    """

    scale: float = 2.0
    method: str = "kspace"
    width: int = 30
    depth: int = 3
    w0: float = 30.0
    loss: str = "l1"
    lr: float = 1.5e-3
    steps: int = 5000
    quant: str = "int8"
    qat: float = 0.1
    batch: int = 1 << 18
    seed: int = 0
    finetune: str = "none"
    finetune_share: float = 0.3
    finetune_block: int = 24
    lr_codec: str = "siren"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.scale) and self.scale >= 1):
            raise InputError(f"scale must be >= 1, got {self.scale}")
        if self.method not in DEGRADATIONS:
            raise InputError(f"unknown downsampling {self.method!r}; known: {', '.join(DEGRADATIONS)}")
        if self.loss not in LOSSES:
            raise InputError(f"unknown loss {self.loss!r}; known: {', '.join(LOSSES)}")
        if self.steps < 1 or self.batch < 1 or not 0 <= self.qat < 1 or not self.lr > 0:
            raise InputError("steps and batch must be >= 1, qat in [0, 1), lr > 0")
        if self.finetune not in FINETUNE:
            raise InputError(f"unknown SR model fine-tuning {self.finetune!r}; known: {', '.join(FINETUNE)}")
        if self.finetune != "none" and (self.scale == 1 or not 0 < self.finetune_share < 1):
            raise InputError("SR model fine-tuning needs a scale above 1 (an SR model) and finetune_share in (0, 1)")
        if self.lr_codec not in lr_codec_names():
            raise InputError(f"unknown LR codec {self.lr_codec!r}; known: {', '.join(lr_codec_names())}")
        if self.finetune != "none" and self.lr_codec != "siren":
            raise InputError("SR model fine-tuning needs the SIREN LR codec")
        if self.finetune_block < 2:
            raise InputError(f"finetune_block must be at least 2 LR voxels, got {self.finetune_block}")
        quantize.check_mode(self.quant)
        for name, value, high in (("width", self.width, MAX_WIDTH), ("depth", self.depth, MAX_DEPTH)):
            if isinstance(value, int) and not isinstance(value, bool) and value > high:
                raise InputError(f"SIREN {name} {value} is above the largest, {high}")
        try:
            with torch.device("meta"):  # validates the network's arguments without allocating its weights
                Siren(self.width, self.depth, self.w0)
        except ValueError as err:
            raise InputError(f"SIREN: {err}") from None

    def fit_bytes(self, lr_voxels: int) -> int:
        """Memory that fitting this SIREN to ``lr_voxels`` coordinates needs, about: its parameters with their
        gradients and Adam's two moments, and :data:`FIT_ACTIVATIONS` float32 values per coordinate of a step,
        neuron and layer."""
        params = Siren.parameter_count(self.width, self.depth)
        return 4 * (4 * params + FIT_ACTIVATIONS * min(self.batch, lr_voxels) * self.width * self.depth)


#: The settings of the two compression papers the README's Compression section names by year.
#: ``paper-2025``: k-space DS 1/2, 3 x 30 SIREN (its trade-off point), L1. ``paper-2023``: Lanczos DS 1/4,
#: 3 x 128 SIREN, MSE.
PRESETS = {
    "paper-2025": CompressionConfig(),
    "paper-2023": CompressionConfig(scale=4.0, method="lanczos", width=128, loss="mse", steps=15000),
    "fast": CompressionConfig(width=64, steps=500),
}


def make_config(preset: str = "paper-2025", **overrides) -> CompressionConfig:
    """A preset with some fields replaced (``None`` values are ignored)."""
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    try:
        return replace(PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None})
    except (TypeError, ValueError) as err:
        raise InputError(str(err)) from None


def lr_grid_shape(shape, scale: float) -> tuple[int, int, int]:
    """The LR grid that ``scale`` gives a volume of ``shape`` (the SIREN's grid)."""
    lr_shape = geometry.output_shape(shape, (1 / scale,) * 3)
    if min(lr_shape) < 2:
        raise InputError(f"scale {scale:g} leaves fewer than 2 voxels on an axis of {tuple(shape)}")
    return lr_shape
