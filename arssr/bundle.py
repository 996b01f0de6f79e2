"""An arssr model as a MONAI bundle, run by ``python -m monai.bundle run``.

``export_bundle(folder)`` writes::

    folder/configs/metadata.json    bundle metadata (MONAI's meta schema 20240725)
    folder/configs/inference.json   instantiates ``BundleUpsampler`` and runs it: the input, output and scale
                                    come from ``--input_file``, ``--output_file`` and ``--scale``
    folder/models/model.safetensors the weights file, byte for byte
    folder/docs/README.md           how to run it, and the weights' model card when there is one

The bundle does not re-implement inference with MONAI transforms: ``BundleUpsampler`` calls
``arssr.inference.upsample`` with the defaults of ``arssr upsample``, so the two give the same
volume and geometry (arssr's NIfTI reading, which follows nibabel on qform/sform, its aligned
output grid and its exact tiled encoding are what the model was trained and tested with). MONAI's
``SlidingWindowInferer`` would blend the outputs of overlapping patches; arssr's tiles carry a halo
of the encoder's receptive radius, so tiled features equal whole-volume features.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

from arssr import __version__
from arssr.errors import OutputError
from arssr.files import atomic_folder, refuse_existing
from arssr.protocol import DEFAULT_CONSISTENCY

#: Metadata schema that ``python -m monai.bundle verify_metadata`` downloads unless ``--filepath`` names a copy.
META_SCHEMA_URL = ("https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/"
                   "meta_schema_20240725.json")
#: Bundle files, relative to its folder.
FILES = ("configs/metadata.json", "configs/inference.json", "models/model.safetensors", "docs/README.md")
#: Metadata fields that record the environment the bundle was exported in.
ENVIRONMENT_FIELDS = ("monai_version", "pytorch_version", "numpy_version")

INFERENCE_CONFIG = {
    "imports": ["$import arssr.bundle"],
    "bundle_root": ".",
    "input_file": None,
    "output_file": None,
    "scale": None,
    "voxel_size": None,
    "device": "auto",
    "threads": None,
    "overwrite": False,
    "weights": "$@bundle_root + '/models/model.safetensors'",
    "upsampler": {
        "_target_": "arssr.bundle.BundleUpsampler",
        "weights": "@weights",
        "device": "@device",
        "threads": "@threads",
    },
    "run": "$@upsampler(@input_file, @output_file, scale=@scale, voxel_size=@voxel_size, overwrite=@overwrite)",
}


@contextmanager
def _torch_threads(threads: int | None):
    """``threads`` CPU threads for torch inside the block, the caller's setting again after it."""
    import torch

    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class BundleUpsampler:
    """``arssr upsample INPUT --scale K -o OUTPUT`` as a callable that a bundle config instantiates."""

    def __init__(self, weights: str | os.PathLike, device: str = "auto", threads: int | None = None,
                 precision: str = "fp32", consistency: str = DEFAULT_CONSISTENCY) -> None:
        from arssr.device import resolve_device
        from arssr.models import load_model

        self.model = load_model(weights)
        self.device = resolve_device(device)
        self.threads = threads
        self.precision = precision
        self.consistency = consistency

    def __call__(self, input_file: str | os.PathLike, output_file: str | os.PathLike, scale=None, voxel_size=None,
                 overwrite: bool = False) -> Path:
        from arssr.files import check_output, refuse_inputs
        from arssr.inference import upsample
        from arssr.volume import load_volume, save_volume

        if input_file is None or output_file is None:
            raise ValueError("give --input_file and --output_file")
        refuse_inputs([output_file], [input_file])
        check_output(output_file, overwrite)
        with _torch_threads(self.threads):
            result = upsample(load_volume(input_file), self.model, scale=scale, voxel_size=voxel_size,
                              device=self.device, precision=self.precision, consistency=self.consistency)
        return save_volume(result, output_file, overwrite=overwrite)


def _metadata(weights: Path, meta: dict[str, str]) -> dict:
    import monai
    import numpy
    import torch

    model = json.loads(meta["model"])
    return {
        "schema": META_SCHEMA_URL,
        "version": __version__,
        "changelog": {__version__: f"{weights.name}, exported by arssr {__version__}"},
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": numpy.__version__,
        "required_packages_version": {"arssr": __version__},
        "name": f"arssr {weights.stem}",
        "task": "Arbitrary-scale super-resolution of 3D MRI volumes",
        "description": (
            "ArSSR (Wu et al., IEEE JBHI 2023): an encoder, a trilinear feature query at continuous coordinates "
            "and an MLP decoder upsample a 3D volume by any factor per axis, keeping its field of view. Run by "
            "arssr.inference.upsample, as `arssr upsample` does."),
        "authors": "arssr contributors",
        "copyright": "arssr contributors",
        "data_type": "nibabel",
        "image_classes": f"one channel, {meta.get('contrast', 'MRI')} intensities (any range)",
        "pred_classes": "one channel, the same intensities on the finer grid",
        "eval_metrics": {},
        "intended_use": "Research; not for clinical use.",
        "references": ["Wu Q. et al. An Arbitrary Scale Super-Resolution Approach for 3D MR Images via Implicit "
                       "Neural Representation. IEEE JBHI 27(2), 2023."],
        "network_data_format": {
            "inputs": {"image": {
                "type": "image", "format": "magnitude", "modality": "MR", "num_channels": 1,
                "spatial_shape": ["*", "*", "*"], "dtype": "float32", "value_range": [],
                "is_patch_data": False, "channel_def": {"0": "image"}}},
            "outputs": {"pred": {
                "type": "image", "format": "magnitude", "num_channels": 1,
                "spatial_shape": ["round(n*k)", "round(n*k)", "round(n*k)"], "dtype": "float32",
                "value_range": [], "is_patch_data": False, "channel_def": {"0": "image"}}},
        },
        "arssr_model": model,
        "arssr_weights_card": {k: v for k, v in meta.items() if k not in ("format", "format_version", "model")},
    }


def _readme(weights: Path) -> str:
    card = weights.with_suffix(".md")  # the model card beside the weights, if any
    text = f"""# arssr {weights.stem} as a MONAI bundle

Made by `arssr export-bundle` (arssr {__version__}) from `{weights.name}`; `models/model.safetensors` is
that file, byte for byte. Running the bundle needs `arssr` installed (`pip install arssr`), as its
config calls `arssr.bundle.BundleUpsampler`, which runs `arssr.inference.upsample` exactly as
`arssr upsample` does: the same output volume and geometry.

```bash
python -m monai.bundle run --bundle_root BUNDLE --config_file BUNDLE/configs/inference.json \\
    --input_file lr.nii.gz --output_file sr.nii.gz --scale 2
```

`--scale 1,1,4` upsamples only the third axis; `--voxel_size 0.7` (in mm) instead of `--scale`;
`--device cpu|cuda|cuda:N`, `--threads N` and `--overwrite True` as for `arssr upsample`.

Metadata check: `python -m monai.bundle verify_metadata --meta_file BUNDLE/configs/metadata.json`
downloads MONAI's schema; offline, add `--filepath meta_schema_20240725.json` naming a copy of it
(MONAI then skips the download).
"""
    if card.is_file():
        text += "\n---\n\n" + card.read_text()
    return text


def export_bundle(folder: str | os.PathLike, weights: str | os.PathLike | None = None,
                  overwrite: bool = False) -> Path:
    """Write the MONAI bundle of ``weights`` (default: the shipped model) to ``folder``; returns ``folder``.

    An existing bundle file in ``folder`` is replaced only with ``overwrite``. The files are written into a
    temporary folder beside ``folder`` and moved into place once all are complete (``arssr.files.atomic_folder``):
    an error or a full disk leaves nothing behind.
    """
    from arssr.models import default_model_path
    from arssr.models.checkpoint import load_model, read_metadata

    folder = Path(folder)
    weights = Path(weights) if weights is not None else default_model_path()
    load_model(weights)  # a bundle only of weights that load
    meta = read_metadata(weights)
    if os.path.lexists(folder) and not folder.is_dir():
        raise OutputError(f"{folder}: is a file; the bundle needs a folder")
    refuse_existing([folder / name for name in FILES], overwrite, "use --overwrite to replace the bundle")
    contents = {
        "configs/metadata.json": json.dumps(_metadata(weights, meta), indent=4) + "\n",
        "configs/inference.json": json.dumps(INFERENCE_CONFIG, indent=4) + "\n",
        "models/model.safetensors": weights.read_bytes(),
        "docs/README.md": _readme(weights),
    }
    with atomic_folder(folder) as staging:
        for name, content in contents.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    return folder
