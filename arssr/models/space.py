"""Model space: how a volume's array is brought to a model's input and back.

RAS axis order first (so every orientation of one file gives the same result
in world space), then the model's own axis order (``zyx`` for weights trained
in SimpleITK's order), and the model's intensity window (``arssr.intensity``).
Training and compression keep the file's own axis order (:meth:`ModelSpace.file_order`):
their volumes are not reoriented, only windowed and put in the model's axis order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from arssr import geometry
from arssr.intensity import denormalize, intensity_window, normalize
from arssr.models.arssr import ArSSR, axis_permutation

#: The orientation of an array kept in its file's axis order.
_FILE_ORDER = np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]])


@dataclass(frozen=True)
class ModelSpace:
    orientation: np.ndarray  # nibabel orientation of the file's axes relative to RAS
    order: tuple[int, int, int]  # RAS order -> the model's axis order (its own inverse)
    window: tuple[float, float]  # intensities that map to 0 and 1

    @classmethod
    def of(cls, data: np.ndarray, affine: np.ndarray, model: ArSSR) -> "ModelSpace":
        """The space of ``model`` for a volume's array and affine: RAS, then the model's order and window."""
        return cls(geometry.ras_orientation(affine), axis_permutation(model.axis_order),
                   intensity_window(data, model.normalization))

    @classmethod
    def file_order(cls, window: tuple[float, float], axis_order: str = "xyz") -> "ModelSpace":
        """A space that keeps the file's axes (no RAS reorientation), in ``axis_order``, with ``window``."""
        return cls(_FILE_ORDER, axis_permutation(axis_order), window)

    def axes(self, values: Sequence) -> tuple:
        """Per-axis values (a shape, scales) of the file's axes, in model-space axis order."""
        ras = geometry.to_ras_axes(values, self.orientation)
        return tuple(ras[i] for i in self.order)

    def intensity(self, value: float) -> float:
        """An intensity in the model's normalised units."""
        low, high = self.window
        return (value - low) / (high - low)

    def to_model_axes(self, data: np.ndarray) -> np.ndarray:
        """File array ``(X, Y, Z, ...)`` -> the same values in model-space axis order (contiguous)."""
        trailing = tuple(range(3, data.ndim))
        return np.ascontiguousarray(geometry.to_ras_order(data, self.orientation).transpose(*self.order, *trailing))

    def from_model_axes(self, data: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_model_axes`: model-space array ``(a, b, c, ...)`` -> file axis order (contiguous)."""
        trailing = tuple(range(3, data.ndim))
        return np.ascontiguousarray(geometry.from_ras_order(data.transpose(*self.order, *trailing), self.orientation))

    def normalize(self, data: np.ndarray) -> np.ndarray:
        """Intensities -> the model's normalised float32 units."""
        return normalize(data, self.window)

    def denormalize(self, data: np.ndarray, clip: tuple[float, float] | None = None) -> np.ndarray:
        """The model's normalised units -> float32 intensities, optionally clipped."""
        return denormalize(data, self.window, clip)

    def to_model(self, data: np.ndarray) -> np.ndarray:
        """File array -> normalised float32 array in model-space axis order."""
        return self.to_model_axes(self.normalize(data))

    def from_model(self, data: np.ndarray, clip: tuple[float, float] | None = None) -> np.ndarray:
        """Normalised model-space array -> float32 intensities in the file's axis order, optionally clipped."""
        return self.from_model_axes(self.denormalize(data, clip))
