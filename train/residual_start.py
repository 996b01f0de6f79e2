"""Write a residual warm start from a weights file: every weight kept, the last decoder layer zeroed.

Usage: python train/residual_start.py pretrained/arssr_rdn_v2.safetensors runs/residual_start.safetensors
"""

import sys

from arssr.models import load_model, save_model
from arssr.models.arssr import residual_start

if __name__ == "__main__":
    source, target = sys.argv[1:3]
    save_model(residual_start(load_model(source)), target)
    print(f"{target}: residual start from {source}")
