"""Rebuild the shipped sample LR volume ``arssr/data/mni152_t1_3mm.nii.gz`` from nilearn's MNI152 T1.

The 1 mm MNI ICBM152 2009a T1 is low-passed by k-space truncation to a third of its
resolution on the grid of ``arssr.geometry`` (field of view kept), stored as uint8.
Usage: python eval/make_example_volume.py [OUT]
"""

import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from arssr import geometry
from arssr.degrade import kspace
from arssr.volume import Volume, save_volume


def main() -> None:
    import nilearn

    source = Path(nilearn.__file__).parent / "datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parents[1] / "arssr/data/mni152_t1_3mm.nii.gz"
    image = nib.load(source)
    hr = np.asarray(image.dataobj, dtype=np.float64)
    shape = geometry.output_shape(hr.shape, (1 / 3, 1 / 3, 1 / 3))
    lr = np.clip(kspace(torch.from_numpy(hr), shape).numpy(), 0, 255)
    volume = Volume(lr.astype(np.float32), geometry.resampled_affine(image.affine, hr.shape, shape), image.header)
    save_volume(volume, out, overwrite=True, dtype="uint8")
    print(out, shape)


if __name__ == "__main__":
    main()
