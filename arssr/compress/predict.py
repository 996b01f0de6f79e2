"""The default LR codec and downsampling factor for a target rate: one encode instead of ``--auto``'s search.

The rule: SPERR codes the LR, at the factor of ``--auto``'s (:data:`arssr.protocol.AUTO_SCALES`) nearest, on a
log scale, to ``(LR_BITS / target bpp)^(1/3)``, the factor that leaves SPERR about :data:`LR_BITS` bits per LR
voxel (at factor 1 SPERR alone, no SR model).

:data:`LR_BITS` was chosen on two volumes that no model was trained or selected on, besides Colin27, before any
score of the rule on Colin27: the ROBEX reference head (116 x 150 x 155, 1.5 mm) and the INIA19 macaque brain
(168 x 206 x 128, 0.5 mm), with a SPERR LR at several factors and 0.02, 0.05 and 0.1 bpp. Of the values
0.10, 0.11, ..., 1.00, those whose choices lose least against the best measured factor (mean whole-volume
PSNR over the volumes and rates) form an interval; its middle (geometric mean of its ends, 2 decimals) is
taken (``eval/results/compress_speed/``, docs/results/compress-speed.md).
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


def predicted_choice(target_bpp: float) -> dict:
    """``{"lr_codec", "scale"}`` for a file of ``target_bpp`` bits per voxel (the module's rule)."""
    if not (math.isfinite(target_bpp) and target_bpp > 0):
        raise InputError(f"target bpp must be positive, got {target_bpp}")
    return {"lr_codec": "sperr", "scale": predicted_scale(target_bpp, LR_BITS)}
