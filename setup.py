from pathlib import Path

from setuptools import setup

version = {}
for line in Path("arssr/__init__.py").read_text().splitlines():
    if line.startswith("__version__"):
        exec(line, version)

setup(
    name="arssr",
    version=version["__version__"],
    description="Arbitrary-scale super-resolution of 3D medical volumes with implicit neural representations",
    long_description=Path("README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    license_files=["LICENSE", "NOTICE"],
    python_requires=">=3.10",
    packages=["arssr", "arssr.cli", "arssr.compress", "arssr.evaluation", "arssr.models", "arssr.training", "arssr.data", "arssr.pretrained"],
    package_dir={"arssr.pretrained": "pretrained"},
    package_data={"arssr.data": ["*.nii.gz", "NOTICE"], "arssr.pretrained": ["*.safetensors", "*.md"]},
    install_requires=[
        "torch>=2.1",
        "numpy>=1.24",
        "nibabel>=5.0",
        "safetensors>=0.4",
        "tqdm>=4.60",
        "scipy>=1.10",
        "scikit-image>=0.19",
        "pyyaml>=5.4",
        "tensorboard>=2.10",
        "zstandard>=0.20",
        # SPERR, the LR codec of `--lr-codec sperr` files: needed to decode them, so not an extra
        "imagecodecs>=2024.1",
        # fire: `python -m monai.bundle run`; jsonschema: `python -m monai.bundle verify_metadata`
        "monai[fire,jsonschema]>=1.4",
    ],
    extras_require={
        # lpips pulls torchvision, which must match the installed torch build: install it with `[eval]`.
        "eval": ["antspyx>=0.4", "matplotlib>=3.5", "lpips>=0.1.4"],
        # No antspyx here: it caps numpy and scipy below their latest releases, which `pip install .` installs.
        # Its tests (Atropos, B-spline) skip without it; `.ci/run` installs it.
        "test": ["pytest>=7", "nilearn>=0.10", "matplotlib>=3.5", "scikit-learn>=1.0", "hypothesis>=6"],
        "train": ["nilearn>=0.10"],
        "bench": ["matplotlib>=3.5"],
        # `arssr upsample --report`: colour maps, and Pillow (a matplotlib requirement) for the PNGs.
        "report": ["matplotlib>=3.5"],
    },
    entry_points={"console_scripts": ["arssr=arssr.cli:main"]},
)
