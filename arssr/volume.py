"""NIfTI volumes in and out: the array travels with its affine and header."""

from __future__ import annotations

import gzip
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from arssr.errors import InputError
from arssr.files import atomic_file, check_input_file, check_output
from arssr.protocol import OUTPUT_DTYPES

NIFTI_SUFFIXES = (".nii", ".nii.gz")
#: Largest distance (mm) between where qform and sform put a corner of the volume before they count as disagreeing.
QFORM_TOLERANCE_MM = 1e-3


def is_nifti_path(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def nifti_stem(path: str | os.PathLike) -> str:
    """The file name of ``path`` without ``.nii`` or ``.nii.gz`` (any case), or without its last suffix."""
    path = Path(path)
    suffix = next((s for s in (".nii.gz", ".nii") if path.name.lower().endswith(s)), None)
    return path.name[: -len(suffix)] if suffix else path.stem


@dataclass(frozen=True)
class Volume:
    """A 3D intensity array with its voxel-to-world affine (RAS mm, float64).

    ``header`` is the NIfTI header it came from (``None`` for arrays made in
    code); its codes, units and intent are carried to outputs.
    """

    data: np.ndarray
    affine: np.ndarray
    header: nib.Nifti1Header | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "affine", np.asarray(self.affine, dtype=np.float64))
        check_array(self.data, "volume")
        if self.affine.shape != (4, 4) or not np.isfinite(self.affine).all():
            raise InputError(f"affine must be a finite 4x4 matrix, got shape {self.affine.shape}")
        if abs(np.linalg.det(self.affine[:3, :3])) < 1e-12:
            raise InputError("affine is singular (a zero voxel size or collinear axes)")

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.data.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        from arssr.geometry import spacing_of

        return spacing_of(self.affine)

    @property
    def input_dtype(self) -> np.dtype:
        """The on-disk dtype of the file this came from (the array's dtype otherwise)."""
        return self.header.get_data_dtype() if self.header is not None else self.data.dtype


def check_array(data: np.ndarray, what: str) -> None:
    """A 3D, non-empty, finite array, or an ``InputError`` saying which of those it is not."""
    if data.size == 0:
        raise InputError(f"{what} is empty (shape {data.shape})")
    if data.ndim == 2:
        raise InputError(f"{what} is a 2D image (shape {data.shape}); arssr needs a 3D volume")
    if data.ndim != 3:
        raise InputError(f"{what} has {data.ndim} dimensions (shape {data.shape}); arssr needs a 3D volume")
    if min(data.shape) < 2:
        raise InputError(f"{what} has a single voxel along an axis (shape {data.shape}); it is a 2D image")
    if not np.issubdtype(data.dtype, np.number) or np.issubdtype(data.dtype, np.complexfloating):
        raise InputError(f"{what} has non-real dtype {data.dtype}")
    bad = data.size - int(np.count_nonzero(np.isfinite(data)))
    if bad:
        raise InputError(f"{what} has {bad} NaN or infinite voxels")


def load_volume(path: str | os.PathLike) -> Volume:
    """Read a 3D NIfTI file (a 4D one with a single frame is taken as 3D)."""
    path = check_input_file(path)
    if not is_nifti_path(path):
        raise InputError(f"{path}: not a NIfTI file (expected .nii or .nii.gz)")
    try:
        image = nib.load(str(path))
        if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
            raise InputError(f"{path}: not a NIfTI image")
        _check_header(path, image)
        shape = image.shape
        if len(shape) == 4 and shape[3] == 1:
            image = image.slicer[..., 0]
        elif len(shape) == 4:
            raise InputError(f"{path}: 4D volume with {shape[3]} frames; arssr takes one 3D volume per file")
        data = np.asarray(image.dataobj, dtype=np.float32)
    except InputError:
        raise
    except Exception as err:  # nibabel raises many types for broken files
        raise InputError(f"{path}: cannot read as NIfTI ({type(err).__name__}: {err})") from None
    header = image.header.copy()
    affine = _in_mm(path, image.affine, header)
    try:
        volume = Volume(data, affine, header)
    except InputError as err:
        raise InputError(f"{path}: {err}") from None
    _warn_if_forms_disagree(path, image.header, volume.shape)
    return volume


#: Millimetres per unit of the NIfTI spatial units that are not mm (``xyzt_units``), as ITK reads them.
MM_PER_UNIT = {"meter": 1000.0, "micron": 0.001}


def _check_header(path: Path, image: nib.Nifti1Image) -> None:
    """What nibabel reads without complaint but cannot be a real-valued volume placed in space."""
    header = image.header
    dtype = header.get_data_dtype()
    if dtype.fields is not None or np.issubdtype(dtype, np.complexfloating):
        kind = "complex" if np.issubdtype(dtype, np.complexfloating) else "RGB or structured"
        raise InputError(f"{path}: {kind} voxels ({dtype}); arssr takes real intensities (save the magnitude, e.g. "
                         "numpy.abs, as a real volume)")
    single_file = header["magic"].item() in (b"n+1", b"n+2")
    offset = int(getattr(image.dataobj, "offset", header.sizeof_hdr + 4))
    if single_file and offset < header.sizeof_hdr + 4:
        raise InputError(f"{path}: vox_offset {offset} lies inside the header (a single-file NIfTI "
                         f"stores voxels from byte {header.sizeof_hdr + 4}); the header would be read as voxels")


def _in_mm(path: Path, affine: np.ndarray, header: nib.Nifti1Header) -> np.ndarray:
    """``affine`` in mm: one warning and a rescale when the header's spatial unit is metres or microns.

    nibabel ignores the unit; ITK (hence ANTs) scales to mm as done here. The
    header (``header``, changed in place: the caller's own copy) is then in mm too, its forms and pixdim
    included, so it says what the affine means.
    """
    unit, time_unit = header.get_xyzt_units()
    if unit not in MM_PER_UNIT:
        return affine
    scaled = affine.copy()
    scaled[:3] *= MM_PER_UNIT[unit]
    header.set_xyzt_units("mm", time_unit)
    header.set_qform(scaled, code=int(header["qform_code"]))
    header.set_sform(scaled, code=int(header["sform_code"]))
    warnings.warn(f"{path}: spatial unit is {unit}; the voxel size is converted to mm "
                  f"({', '.join(f'{s:g}' for s in np.linalg.norm(scaled[:3, :3], axis=0))} mm)", stacklevel=3)
    return scaled


def bids_sidecar(path: str | os.PathLike) -> dict:
    """The BIDS JSON sidecar beside the NIfTI file ``path`` (``sub-01_T1w.json`` for ``sub-01_T1w.nii.gz``),
    as a dict: empty when there is none, and with a warning when it is not a readable JSON object."""
    path = Path(path)
    sidecar = path.with_name(nifti_stem(path) + ".json") if is_nifti_path(path) else None
    if sidecar is None or not sidecar.is_file():
        return {}
    try:
        fields = json.loads(sidecar.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        fields = type(err).__name__
    if not isinstance(fields, dict):
        warnings.warn(f"{sidecar}: not a readable JSON sidecar ({fields if isinstance(fields, str) else 'no object'}); "
                      "its fields are not used", stacklevel=2)
        return {}
    return fields


def bids_slice_thickness(fields: dict) -> float | None:
    """``SliceThickness`` (mm) of a BIDS sidecar's ``fields`` when it is a positive number."""
    value = fields.get("SliceThickness")
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return float(value) if is_number and 0 < value < float("inf") else None


def _warn_if_forms_disagree(path: Path, header: nib.Nifti1Header, shape: tuple[int, int, int]) -> None:
    """One warning when qform and sform (both with a code above 0) place the volume differently.

    The sform wins then, as in nibabel (``image.affine``).
    """
    if int(header["qform_code"]) <= 0 or int(header["sform_code"]) <= 0:
        return
    corners = np.array([[i, j, k, 1.0] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1) for k in (0, shape[2] - 1)])
    offset = np.linalg.norm((corners @ (header.get_qform() - header.get_sform()).T)[:, :3], axis=1).max()
    if offset > QFORM_TOLERANCE_MM:
        warnings.warn(f"{path}: qform and sform disagree (by up to {offset:.3g} mm at a corner); "
                      "using the sform, as nibabel does", stacklevel=3)


def _output_header(volume: Volume, dtype: np.dtype) -> nib.Nifti1Header:
    header = volume.header.copy() if volume.header is not None else nib.Nifti1Header()
    if not isinstance(header, nib.Nifti1Header):
        header = nib.Nifti1Header.from_header(header)
    qform_code = int(header["qform_code"])
    sform_code = int(header["sform_code"])
    if qform_code == 0 and sform_code == 0:
        sform_code = 2  # no code in the input: record the new grid as aligned, or readers fall back to pixdim
    header.set_data_shape(volume.shape)
    header.set_data_dtype(dtype)
    header.set_qform(volume.affine, code=qform_code)
    header.set_sform(volume.affine, code=sform_code)
    header.set_slope_inter(None, None)
    space_unit, time_unit = header.get_xyzt_units()
    if space_unit == "unknown":
        header.set_xyzt_units("mm", time_unit if time_unit != "unknown" else "sec")
    return header


def _cast(data: np.ndarray, dtype: np.dtype, path: Path) -> np.ndarray:
    """``data`` as ``dtype``; one warning with the count of voxels clipped to an integer type's range."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        rounded = np.rint(data)
        outside = int(np.count_nonzero((rounded < info.min) | (rounded > info.max)))
        if outside:
            warnings.warn(f"{path}: {outside} voxels outside the {dtype} range [{info.min}, {info.max}] were clipped "
                          "(use --dtype float32 to keep them)", stacklevel=3)
        return np.clip(rounded, info.min, info.max).astype(dtype)
    if np.issubdtype(dtype, np.floating) and dtype.itemsize < data.dtype.itemsize:
        outside = int(np.count_nonzero(np.abs(data) > np.finfo(dtype).max))
        if outside:
            warnings.warn(f"{path}: {outside} voxels beyond the {dtype} range became infinite "
                          "(use --dtype float32 to keep them)", stacklevel=3)
    return data.astype(dtype)


def save_volume(volume: Volume, path: str | os.PathLike, overwrite: bool = False, dtype: str = "float32") -> Path:
    """Write ``volume`` as NIfTI atomically (temp file + rename).

    The affine goes into both sform and qform with the source header's codes;
    ``dtype`` is a numpy name or ``"input"`` for the source file's on-disk dtype.
    """
    path = Path(path)
    if not is_nifti_path(path):
        raise InputError(f"{path}: output must end in .nii or .nii.gz")
    if dtype not in OUTPUT_DTYPES:
        raise InputError(f"unknown output dtype {dtype!r}; known: {', '.join(OUTPUT_DTYPES)}")
    check_output(path, overwrite)
    out_dtype = np.dtype(volume.input_dtype if dtype == "input" else dtype)
    image = nib.Nifti1Image(_cast(volume.data, out_dtype, path), volume.affine, _output_header(volume, out_dtype))
    with atomic_file(path) as handle:
        if str(path).lower().endswith(".gz"):
            with gzip.GzipFile(fileobj=handle, mode="wb", compresslevel=1) as stream:
                _write_nifti(image, stream)
        else:
            _write_nifti(image, handle)
    return path


def _write_nifti(image: nib.Nifti1Image, stream) -> None:
    """``image`` as a single-file NIfTI into an open binary ``stream``."""
    image.to_file_map(image.make_file_map({"image": stream, "header": stream}))
