"""arssr: arbitrary-scale super-resolution of 3D medical volumes with implicit neural representations.

The public names load lazily, so ``import arssr`` (and ``arssr --help``) does not import torch.
"""

from importlib import import_module

__version__ = "0.1.0"

_PUBLIC = {
    "ArSSR": "arssr.models",
    "load_model": "arssr.models",
    "save_model": "arssr.models",
    "default_model_path": "arssr.models",
    "Volume": "arssr.volume",
    "load_volume": "arssr.volume",
    "save_volume": "arssr.volume",
    "upsample": "arssr.inference",
    "upsample_request": "arssr.inference",
    "prepare": "arssr.request",
    "fitted_gain": "arssr.inference",
    "adapt_to": "arssr.adapt",
    "AdaptOptions": "arssr.adapt",
    "project": "arssr.consistency",
    "run_evaluation": "arssr.evaluation",
    "ArssrError": "arssr.errors",
    "InputError": "arssr.errors",
    "ModelFileError": "arssr.errors",
    "OutputExistsError": "arssr.errors",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'arssr' has no attribute {name!r}")
