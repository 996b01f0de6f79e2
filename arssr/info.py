"""``arssr info``: the key facts of a volume or a weights file, as ``key: value`` lines."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from arssr.errors import InputError
from arssr.files import check_input_file
from arssr.volume import is_nifti_path


def describe(path: Path) -> list[str]:
    check_input_file(path)
    if is_nifti_path(path):
        return describe_volume(path)
    if path.suffix.lower() in (".safetensors", ".pt", ".pth", ".pkl"):
        return describe_model(path)
    if path.suffix.lower() == ".arssr":
        return describe_compressed(path)
    raise InputError(f"{path}: not a NIfTI volume, a weights file or an .arssr file")


def describe_volume(path: Path) -> list[str]:
    import nibabel as nib

    from arssr.volume import load_volume

    volume = load_volume(path)
    header = volume.header
    data = volume.data
    return [
        f"file: {path}",
        "kind: volume",
        f"shape: {' x '.join(map(str, volume.shape))}",
        f"spacing_mm: {' x '.join(f'{s:.4g}' for s in volume.spacing)}",
        f"orientation: {''.join(nib.aff2axcodes(volume.affine))}",
        f"dtype: {volume.input_dtype}",
        f"intensity: min {data.min():.6g}, max {data.max():.6g}, mean {data.mean():.6g}",
        f"nonzero_fraction: {np.count_nonzero(data) / data.size:.4f}",
        f"qform_code: {int(header['qform_code'])}, sform_code: {int(header['sform_code'])}",
        "affine: " + "; ".join(" ".join(f"{v:.6g}" for v in row) for row in volume.affine[:3]),
        *_slice_lines(volume),
    ]


def _slice_lines(volume) -> list[str]:
    """For a volume with one coarse axis: that axis (arssr takes it as 2D multi-slice when upsampled along it
    alone) and the even/odd brightness of its slices."""
    from arssr.consistency import coarse_axis
    from arssr.slice_intensity import slice_alternation

    axis = coarse_axis(volume.spacing)
    if axis is None:
        return []
    lines = [f"slices: along axis {axis}, {volume.spacing[axis]:.4g} mm apart (2D multi-slice when upsampled "
             "along that axis alone)"]
    try:
        lines.append(f"slice_intensity: {slice_alternation(volume, axis)}")
    except InputError as err:
        lines.append(f"slice_intensity: not measured ({err})")
    return lines


def describe_model(path: Path) -> list[str]:
    import json

    from arssr.models import file_sha256, load_model

    model = load_model(path)
    args = model.config["args"]
    return [
        f"file: {path}",
        "kind: model",
        f"model: arssr ({args['encoder']} encoder)",
        f"arguments: {json.dumps(args, sort_keys=True)}",
        f"parameters: {sum(p.numel() for p in model.parameters()):,}",
        f"receptive_radius_voxels: {model.receptive_radius}",
        f"sha256: {file_sha256(path)}",
        *(f"card.{key}: {value}" for key, value in sorted(model.card.items())),
    ]


def describe_compressed(path: Path) -> list[str]:
    """Rate of an ``.arssr`` file (bpp and ratio from its real size) and what decoding it needs."""
    from arssr.compress import auto, lr_codec
    from arssr.compress.container import read_container
    from arssr.compress.rate import rate

    meta, payload = read_container(path)
    facts = rate(meta, path.stat().st_size)
    siren, decoder = meta.get("siren"), meta["decoder"]  # no SIREN: another LR codec (arssr.compress.lr_codec)
    affine = np.asarray(meta["affine"]).reshape(3, 4)
    return [
        f"file: {path}",
        "kind: compressed volume (.arssr)",
        f"bytes: {facts['bytes']}",
        f"hr_voxels: {facts['voxels']}",
        f"bpp: {facts['bpp']:.4f}",
        f"compression_ratio: {facts['compression_ratio']:.2f} (raw {facts['raw_bytes']} bytes as {meta['dtype']})",
        *([f"paper_cr: {100 * facts['paper_cr']:.3f} % (1 - stored parameters / voxels, as the paper-2025 preset's "
           "paper defines it)"] if siren else []),
        f"shape: {' x '.join(map(str, meta['shape']))}",
        f"dtype: {meta['dtype']}",
        f"intensity: min {meta['range'][0]:.6g}, max {meta['range'][1]:.6g}",
        f"qform_code: {meta['codes'][0]}, sform_code: {meta['codes'][1]}",
        "affine: " + "; ".join(" ".join(f"{v:.6g}" for v in row) for row in affine),
        f"downsampling: 1/{meta['scale']:g} by {meta['method']} -> {' x '.join(map(str, meta['lr_shape']))}",
        *lr_codec.describe(meta, len(payload)),
        *auto.describe(meta),
        *([f"siren: {siren['depth']} x {siren['width']} (w0 {siren['w0']:g}), {facts['siren_params']} parameters, "
           f"{meta['quant']} weights, {meta['codec']} coded"] if siren else []),
        "decoder: " + (f"{decoder['name']} sha256 {decoder['sha256']}" if decoder else "none (scale 1: no SR model)"),
        f"decoder_finetune: {meta['finetune']['mode']}, {facts['decoder_params']} parameters changed (in the payload)"
        if meta.get("finetune") else "decoder_finetune: none",
        f"consistency: {meta.get('consistency', 'none')}"
        + ("; inside the decoded foreground" if "background_decoding" in meta else "")
        + (f", detail gain {meta['detail_gain']:g}" if "detail_gain" in meta else "")
        + (", band weights {:g} (below half the LR's Nyquist frequency) and {:g} (above)".format(
            *meta["consistency_weights"]) if "consistency_weights" in meta else "")
        + ("; outside the decoded foreground detail gain {:g}, band weights {:g} and {:g}".format(
            *meta["background_decoding"]) if "background_decoding" in meta else ""),
    ]
