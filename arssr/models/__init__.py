"""SR networks and their weights files."""

from arssr.models.arssr import ArSSR
from arssr.models.checkpoint import default_model_path, file_sha256, load_model, save_model
from arssr.models.decoder import MLPDecoder
from arssr.models.encoders import ENCODERS, RDN, ResCNN, SRResNet, build_encoder

__all__ = [
    "ArSSR", "ENCODERS", "MLPDecoder", "RDN", "ResCNN", "SRResNet",
    "build_encoder", "default_model_path", "file_sha256", "load_model", "save_model",
]
