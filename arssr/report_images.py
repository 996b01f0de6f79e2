"""The pictures of a report page (``arssr.report``): orthogonal planes of an ``arssr upsample`` run's input,
cubic interpolation, output, difference and consistency residual, as embedded PNG images.

They need matplotlib (its colour maps) and Pillow (which matplotlib requires): ``pip install 'arssr[report]'``.
"""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING, Sequence

import numpy as np

from arssr.errors import InputError

if TYPE_CHECKING:
    from arssr.volume import Volume

#: Longest physical side of the volume on the page, in CSS pixels; thumbnails' longest side in pixels.
DISPLAY_PX = 200
THUMBNAIL_PX = 96
#: Longest side of an embedded image in pixels: larger planes are averaged down, so a page stays small at any scale.
MAX_IMAGE_PX = 512
#: Percentiles of the input's intensities that span the grey scale, and of the magnitudes that span a colour scale.
GREY_PERCENTILES = (0.5, 99.5)
COLOUR_PERCENTILE = 99.5
#: Smallest end of a colour scale, as a share of the grey scale's width: differences far below it (rounding
#: errors) stay white instead of being stretched into noise.
COLOUR_FLOOR = 0.005
#: Edge (input voxels) of the box average whose maximum is the brightest region.
BRIGHT_BOX = 5
#: Symmetric colour map of differences and residuals.
COLOUR_MAP = "RdBu_r"
#: RAS axis fixed by each plane, and its name.
PLANES = {0: "sagittal", 1: "coronal", 2: "axial"}
#: The start of an embedded PNG image: the only image source a page or the index writes.
THUMBNAIL_PREFIX = "data:image/png;base64,"


def require_imaging() -> None:
    """``InputError`` with the install command unless matplotlib and Pillow can be imported."""
    try:
        import matplotlib  # noqa: F401
        import PIL  # noqa: F401
    except ImportError as err:
        raise InputError(f"a report needs matplotlib ({err}); install it with: pip install 'arssr[report]'") from None


def _png(pixels: np.ndarray, palette: np.ndarray | None = None) -> str:
    """A data URI of ``pixels`` (2D uint8) as a greyscale PNG, or as a palette PNG with ``palette`` (256 x 3)."""
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(pixels), mode="L")
    if palette is not None:
        image = image.convert("P")
        image.putpalette(palette.astype(np.uint8).ravel().tolist())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return THUMBNAIL_PREFIX + base64.b64encode(buffer.getvalue()).decode("ascii")


def _palette() -> np.ndarray:
    from matplotlib import colormaps

    return np.rint(colormaps[COLOUR_MAP](np.linspace(0, 1, 256))[:, :3] * 255)


def _grey(plane: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    low, high = window
    return np.rint(np.clip((plane - low) / max(high - low, 1e-12), 0, 1) * 255).astype(np.uint8)


def _signed(plane: np.ndarray, limit: float) -> np.ndarray:
    """``[-limit, limit]`` -> palette indices 0-255 (0 at the middle)."""
    return np.rint(np.clip(plane / limit, -1, 1) * 127.5 + 127.5).astype(np.uint8)


def nearest_indices(n: int, m: int) -> np.ndarray:
    """The input voxel nearest to each of ``m`` output voxels on an axis of ``n`` (``arssr.geometry``'s grid)."""
    return np.minimum(((np.arange(m) + 0.5) * n / m).astype(np.intp), n - 1)


def cubic_plane(data: np.ndarray, out_shape: Sequence[int], axis: int, index: int) -> np.ndarray:
    """Plane ``index`` along ``axis`` of the cubic B-spline interpolation of ``data`` to ``out_shape``
    (``arssr.degrade.resample(..., "cubic")``), computed for that plane only."""
    from arssr.degrade import resampling_matrix

    matrices = [resampling_matrix("cubic", n, m).numpy() for n, m in zip(data.shape, out_shape)]
    plane = np.tensordot(data, matrices[axis][index].astype(data.dtype), axes=([axis], [0]))
    rows, columns = (matrices[a] for a in range(3) if a != axis)
    return (rows @ plane @ columns.T).astype(np.float32)


def _brightest(data: np.ndarray) -> tuple[int, int, int]:
    """The voxel at the centre of the brightest ``BRIGHT_BOX``-voxel box of ``data``."""
    from scipy import ndimage

    smooth = ndimage.uniform_filter(np.asarray(data, dtype=np.float32), BRIGHT_BOX, mode="nearest")
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(smooth)), smooth.shape))


def slice_axis_of(facts: dict, spacing: Sequence[float]) -> int | None:
    """The RAS axis of the input's thick slices (its coarsest), when the run declared a slice thickness."""
    return int(np.argmax(spacing)) if facts.get("slice_thickness") is not None else None


def render_images(source: Volume, result: Volume, residual: np.ndarray | None, facts: dict) -> dict:
    """The page's pictures: per place (centre, brightest) and plane, the input, cubic, output, difference and
    residual images as data URIs, with the display size, the colour scales and a thumbnail."""
    from arssr import geometry

    orientation = geometry.ras_orientation(result.affine)
    lr = np.asarray(geometry.to_ras_order(source.data, geometry.ras_orientation(source.affine)), dtype=np.float32)
    out = geometry.to_ras_order(result.data, orientation)
    res = None if residual is None else geometry.to_ras_order(residual, geometry.ras_orientation(source.affine))
    spacing = geometry.to_ras_axes(result.spacing, orientation)
    lr_spacing = geometry.to_ras_axes(source.spacing, geometry.ras_orientation(source.affine))
    nearest = [nearest_indices(n, m) for n, m in zip(lr.shape, out.shape)]
    extent = [m * s for m, s in zip(out.shape, spacing)]
    per_mm = DISPLAY_PX / max(extent)
    thick = slice_axis_of(facts, lr_spacing)
    planes = [a for a in PLANES if thick is None or a != thick]
    bright = _brightest(lr)
    places = {
        "centre": tuple(m // 2 for m in out.shape),
        "brightest": tuple(min(m - 1, int((i + 0.5) * m / n)) for i, n, m in zip(bright, lr.shape, out.shape)),
    }
    window = tuple(float(v) for v in np.percentile(lr, GREY_PERCENTILES))
    cut = {}
    for place, point in places.items():
        for axis in planes:
            cubic = cubic_plane(lr, out.shape, axis, point[axis])
            output = np.take(out, point[axis], axis=axis)
            cut[place, axis] = {
                "input": np.take(lr, nearest[axis][point[axis]], axis=axis),
                "cubic": cubic, "output": output, "difference": output - cubic,
                "residual": None if res is None else np.take(res, nearest[axis][point[axis]], axis=axis),
            }
    limits = {
        kind: float(np.percentile(np.abs(np.concatenate([c[kind].ravel() for c in cut.values()])), COLOUR_PERCENTILE))
        for kind in ("difference", "residual") if res is not None or kind == "difference"
    }
    floor = COLOUR_FLOOR * (window[1] - window[0]) or 1.0
    limits = {kind: max(limit, floor) for kind, limit in limits.items()}
    palette = _palette()
    images = {}
    for (place, axis), c in cut.items():
        columns, rows = (a for a in range(3) if a != axis)
        size = (max(1, round(extent[columns] * per_mm)), max(1, round(extent[rows] * per_mm)))
        entry = {"size": size, "input_index": int(nearest[axis][places[place][axis]])}
        for kind in ("input", "cubic", "output"):
            entry[kind] = _png(_grey(_picture_2d(c[kind]), window))
        entry["difference"] = _png(_signed(_picture_2d(c["difference"]), limits["difference"]), palette)
        entry["residual"] = None if c["residual"] is None else _png(
            _signed(_picture_2d(c["residual"]), limits["residual"]), palette)
        images[place, axis] = entry
    first = cut["centre", planes[-1]]["output"]
    return {"planes": planes, "slice_axis": thick, "places": places, "images": images, "limits": limits,
            "window": window, "colour_bar": _png(np.tile(np.arange(256, dtype=np.uint8), (8, 1)), palette),
            "thumbnail": _thumbnail(_grey(_picture_2d(first), window), extent, planes[-1])}


def _picture_2d(plane: np.ndarray) -> np.ndarray:
    """A plane (first remaining axis across, second up) as an image: rows from the top, superior or anterior up;
    averaged down (box filter) to at most :data:`MAX_IMAGE_PX` pixels a side."""
    from PIL import Image

    picture = np.ascontiguousarray(np.asarray(plane, dtype=np.float32).T[::-1])
    if max(picture.shape) <= MAX_IMAGE_PX:
        return picture
    factor = MAX_IMAGE_PX / max(picture.shape)
    size = (max(1, round(picture.shape[1] * factor)), max(1, round(picture.shape[0] * factor)))  # width, height
    return np.asarray(Image.fromarray(picture, mode="F").resize(size, Image.BOX))


def _thumbnail(pixels: np.ndarray, extent: Sequence[float], axis: int) -> str:
    from PIL import Image

    columns, rows = (extent[a] for a in range(3) if a != axis)
    scale = THUMBNAIL_PX / max(columns, rows)
    size = (max(1, round(columns * scale)), max(1, round(rows * scale)))
    small = np.asarray(Image.fromarray(pixels, mode="L").resize(size, Image.LANCZOS))
    return _png(small)
