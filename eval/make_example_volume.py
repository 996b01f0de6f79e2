"""Rebuild the shipped sample LR volume ``arssr/data/mni152_t1_3mm.nii.gz`` from nilearn's MNI152 T1.

The 1 mm MNI ICBM152 2009a T1 is low-passed by k-space truncation to a third of its
resolution on the grid of ``arssr.geometry`` (field of view kept), stored as uint8.
Usage: python eval/make_example_volume.py [OUT]
"""

import sys
from pathlib import Path

import nibabel as nib
import numpy as np

from arssr import geometry
from arssr.volume import Volume, save_volume


def kspace_downsample(data: np.ndarray, out_shape) -> np.ndarray:
    """Keep the centred low frequencies; a phase ramp puts LR voxel j at HR (j + 0.5) n/m - 0.5."""
    spectrum = np.fft.fftn(data)
    for axis, (n, m) in enumerate(zip(data.shape, out_shape)):
        freqs = np.fft.fftfreq(n)
        shift = (n / m - 1) / 2  # HR coordinate of LR voxel 0
        ramp = np.exp(2j * np.pi * freqs * shift).reshape([-1 if a == axis else 1 for a in range(3)])
        spectrum = spectrum * ramp
    kept = spectrum
    for axis, m in enumerate(out_shape):
        kept = np.take(np.fft.fftshift(kept, axes=axis), np.arange(m) + (kept.shape[axis] - m + 1) // 2, axis=axis)
        kept = np.fft.ifftshift(kept, axes=axis)
    scale = np.prod(out_shape) / np.prod(data.shape)
    return np.real(np.fft.ifftn(kept)) * scale


def main() -> None:
    import nilearn

    source = Path(nilearn.__file__).parent / "datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parents[1] / "arssr/data/mni152_t1_3mm.nii.gz"
    image = nib.load(source)
    hr = np.asarray(image.dataobj, dtype=np.float64)
    shape = geometry.output_shape(hr.shape, (1 / 3, 1 / 3, 1 / 3))
    lr = np.clip(kspace_downsample(hr, shape), 0, 255)
    volume = Volume(lr.astype(np.float32), geometry.resampled_affine(image.affine, hr.shape, shape), image.header)
    save_volume(volume, out, overwrite=True, dtype="uint8")
    print(out, shape)


if __name__ == "__main__":
    main()
