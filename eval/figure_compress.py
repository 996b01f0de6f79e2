"""Figure: one volume at a low rate, SPERR alone against arssr with a SPERR-coded LR (DS 1/2), decoded with the
file's detail gains and consistency band weights (inside and outside the foreground found in the decoded LR)
and, for comparison, with gain 1 and weights (1, 1) everywhere: the projection, clipped once at zero.

An axial slice through the middle of the volume and a zoom on its centre; the PSNR of each whole volume (and
inside the foreground mask) is in the panel titles.

Usage: python eval/figure_compress.py [--gt ch2bet.nii.gz] [--bpp 0.05] [--threads 1]
                                      [--out eval/results/figures/compress_colin27.png]
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from arssr.compress import compress_volume, make_config  # noqa: E402
from arssr.compress.codec import decode  # noqa: E402
from arssr.compress.decoding import BACKGROUND_KEY, GAIN_KEY, WEIGHTS_KEY  # noqa: E402
from arssr.compress.container import unpack  # noqa: E402
from arssr.metrics import brain_mask, psnr  # noqa: E402
from arssr.volume import load_volume  # noqa: E402

TEMPLATES = Path.home() / ".cache/arssr/mricron/usr/share/mricron/templates"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gt", default=str(TEMPLATES / "ch2bet.nii.gz"))
    parser.add_argument("--bpp", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("eval/results/figures/compress_colin27.png"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import imagecodecs

    volume = load_volume(args.gt)
    mask = brain_mask(volume.data)
    sperr = imagecodecs.sperr_decode(imagecodecs.sperr_encode(
        np.ascontiguousarray(volume.data, dtype=np.float64), args.bpp, mode="bpp"))
    blob, _ = compress_volume(volume, make_config("paper-2025", scale=2.0, lr_codec="sperr"), None,
                              target_bpp=args.bpp, device="cpu")
    meta, payload = unpack(blob)
    panels = [
        ("original", volume.data),
        (f"SPERR alone, {args.bpp:g} bpp", sperr),
        ("arssr, SPERR LR, gain 1, weights 1 / 1 (projection)",
         decode({**meta, GAIN_KEY: 1.0, WEIGHTS_KEY: [1.0, 1.0], BACKGROUND_KEY: [1.0, 1.0, 1.0]}, payload, None,
                "cpu").data),
        ("arssr, SPERR LR, gain {:g}, weights {:g} / {:g}\n(outside the foreground {:g}, {:g} / {:g})".format(
            meta[GAIN_KEY], *meta[WEIGHTS_KEY], *meta[BACKGROUND_KEY]), decode(meta, payload, None, "cpu").data),
    ]
    z = volume.shape[2] // 2
    x0, y0 = (n // 2 - n // 4 for n in volume.shape[:2])
    x1, y1 = (n // 2 + n // 4 for n in volume.shape[:2])
    fig, axes = plt.subplots(2, len(panels), figsize=(4 * len(panels), 8))
    for column, (title, data) in zip(axes.T, panels):
        if data is not volume.data:
            title += f"\n{psnr(data, volume.data):.2f} dB (mask {psnr(data, volume.data, mask):.2f})"
        for ax, view in zip(column, (data[:, :, z], data[x0:x1, y0:y1, z])):
            ax.imshow(np.rot90(view), cmap="gray", vmin=0, vmax=float(volume.data.max()))
            ax.axis("off")
        column[0].set_title(title, fontsize=10)
        print(title.replace("\n", ": "))
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)


if __name__ == "__main__":
    main()
