"""The default for a target rate: two SPERR encodes at predicted downsampling factors instead of ``--auto``'s twelve.

The rule: SPERR codes the LR at the two factors of ``--auto``'s (:data:`arssr.protocol.AUTO_SCALES`) on either
side, on a log scale, of ``(LR_BITS / target bpp)^(1/3)``, the factor that would leave SPERR about
:data:`LR_BITS` bits per LR voxel (at factor 1 SPERR alone, no SR model); both are encoded and decoded, and
the file of the one that decodes closer (PSNR) is kept, as ``--auto`` keeps its best.

:data:`LR_BITS` was chosen on two volumes that no model was trained or selected on, besides Colin27, before any
score of the rule on Colin27: the ROBEX reference head (116 x 150 x 155, 1.5 mm) and the INIA19 macaque brain
(168 x 206 x 128, 0.5 mm), with a SPERR LR at several factors and 0.02, 0.05 and 0.1 bpp. Of the values
0.10, 0.11, ..., 1.00, those whose choices lose least against the best measured factor (mean whole-volume
PSNR over the volumes and rates) form an interval; its middle (geometric mean of its ends, 2 decimals) is
taken (``eval/results/compress_speed/``, docs/results/compress-speed.md). That rule encoded the nearest factor
only (:func:`predicted_scale`); it fell 0.13-0.18 dB short of ``--auto`` on Colin27 at 0.05 bpp, near its
switch from one factor to the next, and the two factors around the prediction replaced it.
"""

from __future__ import annotations

import math

from arssr.errors import InputError
from arssr.protocol import AUTO_SCALES

#: Bits per LR voxel that the predicted factor leaves SPERR (chosen as the module docstring says).
LR_BITS = 0.24


def predicted_scale(target_bpp: float, lr_bits: float) -> float:
    """The factor of :data:`AUTO_SCALES` nearest (log scale) to ``(lr_bits / target_bpp)^(1/3)``."""
    wanted = math.log(lr_bits / target_bpp) / 3
    return min(AUTO_SCALES, key=lambda scale: abs(math.log(scale) - wanted))


def predicted_scales(target_bpp: float, lr_bits: float = LR_BITS) -> tuple[float, float]:
    """The two neighbouring factors of :data:`AUTO_SCALES` around ``(lr_bits / target_bpp)^(1/3)`` on a log scale
    (the two at the nearer end when it lies beyond them all)."""
    if not (math.isfinite(target_bpp) and target_bpp > 0):
        raise InputError(f"target bpp must be positive, got {target_bpp}")
    wanted = math.log(lr_bits / target_bpp) / 3
    above = next((i for i, scale in enumerate(AUTO_SCALES) if math.log(scale) > wanted), len(AUTO_SCALES))
    first = min(max(above - 1, 0), len(AUTO_SCALES) - 2)
    return AUTO_SCALES[first], AUTO_SCALES[first + 1]


def predicted_choice(target_bpp: float) -> dict:
    """``{"codecs", "scales"}``: the candidates (:func:`arssr.compress.auto.compress_auto`) of the default for a
    file of ``target_bpp`` bits per voxel (the module's rule)."""
    return {"codecs": ("sperr",), "scales": predicted_scales(target_bpp)}
