"""Model space: how a volume's array is brought to a model's input and back.

RAS axis order first (so every orientation of one file gives the same result
in world space), then the model's own axis order (``zyx`` for weights trained
in SimpleITK's order), and the model's intensity window (``arssr.intensity``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from arssr import geometry
from arssr.intensity import intensity_window, normalize
from arssr.models.arssr import ArSSR, axis_permutation


@dataclass(frozen=True)
class ModelSpace:
    orientation: np.ndarray  # nibabel orientation of the file's axes relative to RAS
    order: tuple[int, int, int]  # RAS order -> the model's axis order (its own inverse)
    window: tuple[float, float]  # intensities that map to 0 and 1

    @classmethod
    def of(cls, data: np.ndarray, affine: np.ndarray, model: ArSSR) -> "ModelSpace":
        return cls(geometry.ras_orientation(affine), axis_permutation(model.axis_order),
                   intensity_window(data, model.normalization))

    def axes(self, values: Sequence) -> tuple:
        """Per-axis values (a shape, scales) of the file's axes, in model-space axis order."""
        ras = geometry.to_ras_axes(values, self.orientation)
        return tuple(ras[i] for i in self.order)

    def intensity(self, value: float) -> float:
        """An intensity in the model's normalised units."""
        low, high = self.window
        return (value - low) / (high - low)

    def to_model(self, data: np.ndarray) -> np.ndarray:
        """File array -> normalised float32 array in model-space axis order."""
        return np.ascontiguousarray(normalize(geometry.to_ras_order(data, self.orientation), self.window)
                                    .transpose(self.order))

    def from_model(self, data: np.ndarray, clip: tuple[float, float] | None = None) -> np.ndarray:
        """Normalised model-space array -> float32 intensities in the file's axis order, optionally clipped."""
        low, high = self.window
        out = data.transpose(self.order).astype(np.float64) * (high - low) + low
        if clip is not None:
            out = np.clip(out, *clip)
        return np.ascontiguousarray(geometry.from_ras_order(out.astype(np.float32), self.orientation))
