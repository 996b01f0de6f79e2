"""Run the README's example commands, and thick-slice and self-adaptation ones, at fixed seeds and print the
sha256 of every file they write.

Run before and after a change that should not change behaviour: the two JSON outputs must be equal.
The example volume is copied into the temporary folder first, and a sidecar's weights files are hashed by
name, so its paths are the same wherever the package lives; its ``seconds``, ``peak_memory_mib`` and
adaptation seconds (measurements) are left out of its hash, and a ``.gz`` file is hashed uncompressed (its
gzip header holds the time it was written).

    python eval/check_unchanged.py --json /tmp/before.json
"""

import argparse
import gzip
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "arssr" / "data" / "mni152_t1_3mm.nii.gz"

#: The README's upsample, compress and decompress commands, on the shipped example volume, one thread.
COMMANDS = [
    ["upsample", EXAMPLE.name, "--scale", "2", "--threads", "1", "--device", "cpu", "-q", "-o", "sr.nii.gz"],
    ["compress", EXAMPLE.name, "-o", "mni.arssr", "--preset", "fast", "--steps", "200", "--threads", "1",
     "--device", "cpu", "-q"],
    ["decompress", "mni.arssr", "-o", "mni_back.nii.gz", "--threads", "1", "--device", "cpu", "-q"],
]
#: Every third axial plane of the example volume as 9 mm slices (:func:`write_thick_slices`).
THICK_INPUT = "mni152_t1_9mm_slices.nii.gz"
THICK = [THICK_INPUT, "--scale", "1,1,3", "--threads", "1", "--device", "cpu", "-q"]
#: Thick slices (the plane prior, and the 3D model with its fitted gain) and self-adaptation of each, a few
#: fixed steps.
COMMANDS += [
    ["upsample", *THICK, "-o", "thick.nii.gz"],
    ["upsample", *THICK, "--plane-prior", "none", "-o", "thick_3d.nii.gz"],
    ["upsample", *THICK, "--adapt-steps", "2", "-o", "thick_adapted.nii.gz"],
    ["upsample", EXAMPLE.name, "--scale", "2", "--adapt-steps", "2", "--threads", "1", "--device", "cpu", "-q",
     "-o", "sr_adapted.nii.gz"],
]


def sha256(path: Path) -> str:
    """The file's sha256; for a JSON sidecar, that of its text without the run time; for ``.gz``, of its content."""
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    if path.suffix == ".json":
        record = json.loads(data)
        for measured in ("seconds", "peak_memory_mib"):  # a timing and a memory reading, not behaviour
            record.pop(measured)
        if record.get("adapt"):
            record["adapt"].pop("seconds")
        for weights in ("weights", "plane_prior"):
            record[weights] = record[weights] and Path(record[weights]).name
        data = json.dumps(record, indent=2).encode()
    return hashlib.sha256(data).hexdigest()


def write_thick_slices(path: Path) -> None:
    """Every third axial plane of the example volume, its affine stretched to match (3 x 3 x 9 mm)."""
    import nibabel as nib
    import numpy as np

    image = nib.load(EXAMPLE)
    data = np.asarray(image.dataobj)[:, :, ::3]
    nib.save(nib.Nifti1Image(data, image.affine @ np.diag([1.0, 1.0, 3.0, 1.0])), path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the hashes to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        shutil.copyfile(EXAMPLE, Path(folder) / EXAMPLE.name)
        write_thick_slices(Path(folder) / THICK_INPUT)
        for command in COMMANDS:
            subprocess.run([sys.executable, "-m", "arssr", *command], cwd=folder, check=True)
        hashes = {path.name: sha256(path) for path in sorted(Path(folder).iterdir())
                  if path.name not in (EXAMPLE.name, THICK_INPUT)}
    text = json.dumps(hashes, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
