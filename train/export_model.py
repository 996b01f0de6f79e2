"""Export a run's weights as a shippable model: float16 safetensors with model-card facts in the metadata.

Usage: python train/export_model.py runs/NAME/best.safetensors pretrained/arssr_rdn_v1.safetensors \\
           input_spacing_mm=2,4 scale_range=2,4 contrast=T1w skull_stripped=yes
The ``input_spacing_mm`` and ``scale_range`` entries make ``arssr upsample`` warn outside them.
"""

import sys

from arssr.models import file_sha256, load_model, save_model


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    source, target, *facts = sys.argv[1:]
    card = dict(fact.split("=", 1) for fact in facts)
    model = load_model(source)
    card = {**{k: v for k, v in model.card.items() if k in ("step", "val_psnr")}, **card}
    path = save_model(model, target, half=True, **card)
    print(f"{path}  sha256 {file_sha256(path)}")


if __name__ == "__main__":
    main()
