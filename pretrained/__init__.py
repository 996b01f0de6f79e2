"""Shipped weights (installed as ``arssr.pretrained``); each ``.safetensors`` file has a model card ``.md``."""
