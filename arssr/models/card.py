"""The model card's ranges (metadata of a weights file): warnings for inputs outside what the model was trained on."""

from __future__ import annotations

import warnings
from typing import Sequence

from arssr.models.arssr import ArSSR

#: Relative slack of the model card's ranges: a 181-voxel axis at x2 has 1.99 mm voxels.
CARD_TOLERANCE = 1.05


def _card_range(model: ArSSR, key: str) -> tuple[float, float] | None:
    text = model.card.get(key)
    if not text:
        return None
    low, high = (float(v) for v in text.split(","))
    return low, high


def warn_outside_card(model: ArSSR, spacing: Sequence[float], scale: Sequence[float]) -> None:
    """Warn when the input's voxel size or the scale lies more than ``CARD_TOLERANCE`` outside the trained range.

    A card with ``thick_scale_range`` and ``inplane_scale_range`` also covers thick-slice scales: one axis up to
    the first's upper end, the other two up to the second's.
    """
    spacing_range = _card_range(model, "input_spacing_mm")
    if spacing_range and not all(
        spacing_range[0] / CARD_TOLERANCE <= s <= spacing_range[1] * CARD_TOLERANCE for s in spacing
    ):
        warnings.warn(
            f"input voxel size {'x'.join(f'{s:.3g}' for s in spacing)} mm is outside the "
            f"{spacing_range[0]:g}-{spacing_range[1]:g} mm the model was trained on; results may be poor",
            stacklevel=3,
        )
    scale_range = _card_range(model, "scale_range")
    if scale_range is None or max(scale) <= scale_range[1] * CARD_TOLERANCE:
        return
    thick_range = _card_range(model, "thick_scale_range")
    inplane_range = _card_range(model, "inplane_scale_range")
    if thick_range is None or inplane_range is None:
        warnings.warn(f"scale {max(scale):.3g} is above the largest the model was trained on ({scale_range[1]:g})",
                      stacklevel=3)
        return
    coarsest, second, _ = sorted(scale, reverse=True)
    if coarsest > thick_range[1] * CARD_TOLERANCE or second > inplane_range[1] * CARD_TOLERANCE:
        warnings.warn(
            f"scale {'x'.join(f'{s:.3g}' for s in scale)} is outside what the model was trained on (up to "
            f"{scale_range[1]:g} on every axis, or up to {thick_range[1]:g} on one axis and {inplane_range[1]:g} on "
            "the others)",
            stacklevel=3,
        )
