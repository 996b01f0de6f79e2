"""PNG figures of one evaluation case: slice mosaics, error maps, and an intensity profile along a line.

Volumes are shown in the closest RAS orientation of the ground truth's affine
(neurological convention: the subject's left on the left), through the
centre of the foreground's bounding box.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np

from arssr.files import atomic_file

VIEWS = ("sagittal", "coronal", "axial")
#: Error maps show |estimate - GT| up to this fraction of the GT's data range.
ERROR_CEILING = 0.2


def to_ras(data: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """``data`` with its axes permuted and flipped to the closest RAS voxel order."""
    return nib.orientations.apply_orientation(data, nib.orientations.io_orientation(affine))


def view_slice(data: np.ndarray, view: str, centre: tuple[int, int, int]) -> np.ndarray:
    """The slice of a RAS-ordered volume for ``imshow(origin="lower")``: superior (or anterior) up."""
    axis = VIEWS.index(view)
    return np.take(data, centre[axis], axis=axis).T


def _figure(**options):
    """A ``matplotlib.figure.Figure``: drawn without pyplot, so no backend or global state is touched."""
    from matplotlib.figure import Figure

    return Figure(**options)


def _save(fig, path: Path) -> Path:
    with atomic_file(path) as handle:
        fig.savefig(handle, dpi=90, bbox_inches="tight", format="png")
    return path


def _view_grid(rows, image: Callable[[str, str], np.ndarray], **style):
    """One row per name in ``rows``, one column per view; ``image(name, view)`` gives each panel."""
    fig = _figure(figsize=(7.5, 2.4 * len(rows)), layout="constrained")
    axes = fig.subplots(len(rows), 3, squeeze=False)
    for row, name in enumerate(rows):
        for col, view in enumerate(VIEWS):
            ax = axes[row, col]
            ax.imshow(image(name, view), origin="lower", **style)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(view)
        axes[row, 0].set_ylabel(name)
    return fig, axes


def case_figures(folder: Path, stem: str, gt: np.ndarray, affine: np.ndarray, mask: np.ndarray,
                 lr_on_grid: np.ndarray, outputs: dict[str, np.ndarray], title: str) -> list[Path]:
    """Write ``<stem>_mosaic.png``, ``<stem>_error.png`` and ``<stem>_profile.png`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    images = {name: to_ras(x, affine) for name, x in {"LR": lr_on_grid, **outputs, "GT": gt}.items()}
    foreground = np.argwhere(to_ras(mask, affine))
    centre = tuple(int(v) for v in (foreground.min(0) + foreground.max(0)) // 2)
    low, high = float(gt.min()), float(gt.max())
    paths = []

    fig, _ = _view_grid(images, lambda name, view: view_slice(images[name], view, centre),
                        cmap="gray", vmin=low, vmax=high)
    fig.suptitle(title)
    paths.append(_save(fig, folder / f"{stem}_mosaic.png"))

    def error(name: str, view: str) -> np.ndarray:
        return np.abs(view_slice(images[name], view, centre) - view_slice(images["GT"], view, centre)) / (high - low)

    fig, axes = _view_grid(outputs, error, cmap="magma", vmin=0, vmax=ERROR_CEILING)
    fig.colorbar(axes[0, 0].images[0], ax=axes, shrink=0.6, label="|estimate - GT| / GT range")
    fig.suptitle(f"{title}: absolute error")
    paths.append(_save(fig, folder / f"{stem}_error.png"))

    fig = _figure(figsize=(11, 4))
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 2]})
    left.imshow(view_slice(images["GT"], "axial", centre), cmap="gray", vmin=low, vmax=high, origin="lower")
    left.axhline(centre[1], color="red", linewidth=1)
    left.set_title("GT, axial: profile line")
    left.set_xticks([])
    left.set_yticks([])
    for name, volume in images.items():
        style = {"color": "black", "linewidth": 2} if name == "GT" else {"linewidth": 1}
        right.plot(volume[:, centre[1], centre[2]], label=name, **style)
    right.set_xlabel("voxel (left to right)")
    right.set_ylabel("intensity")
    right.legend(fontsize=8, ncol=2)
    right.set_title(f"{title}: intensity profile")
    paths.append(_save(fig, folder / f"{stem}_profile.png"))
    return paths
