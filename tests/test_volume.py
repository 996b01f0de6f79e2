import nibabel as nib
import numpy as np
import pytest

from arssr.errors import InputError, OutputError, OutputExistsError
from arssr.volume import Volume, bids_sidecar, bids_slice_thickness, load_volume, save_volume
from conftest import oblique_affine


def test_load_applies_scaling_and_keeps_header(oblique_nifti, oblique_volume):
    volume = load_volume(oblique_nifti)
    assert volume.data.dtype == np.float32 and volume.shape == (14, 12, 10)
    np.testing.assert_allclose(volume.data, np.rint(oblique_volume.data * 10) * 0.1, atol=1e-4)
    np.testing.assert_allclose(volume.affine, oblique_affine(), atol=1e-6)
    assert volume.input_dtype == np.int16


def test_save_writes_float_with_both_forms_and_codes_kept(tmp_path, oblique_nifti):
    volume = load_volume(oblique_nifti)
    out = save_volume(volume, tmp_path / "out.nii.gz")
    image = nib.load(out)
    assert image.get_data_dtype() == np.float32
    assert int(image.header["qform_code"]) == 1 and int(image.header["sform_code"]) == 4
    np.testing.assert_allclose(image.get_qform(), volume.affine, atol=1e-5)
    np.testing.assert_allclose(image.get_sform(), volume.affine, atol=1e-6)
    slope, inter = image.header.get_slope_inter()
    assert slope in (None, 1.0) and inter in (None, 0.0)
    np.testing.assert_array_equal(np.asarray(image.dataobj), volume.data)
    assert image.header.get_xyzt_units() == ("mm", "sec")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["oblique.nii.gz", "out.nii.gz"]


def test_save_integer_dtypes_round_and_clip(tmp_path):
    volume = Volume(np.array([[[-3.6, 0.4], [254.6, 300.0]]] * 2, dtype=np.float32), np.eye(4))
    with pytest.warns(UserWarning, match=r"u8.nii: 4 voxels outside the uint8 range \[0, 255\] were clipped"):
        image = nib.load(save_volume(volume, tmp_path / "u8.nii", dtype="uint8"))  # -3.6 and 300, twice
    assert image.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asarray(image.dataobj)[0], [[0, 0], [255, 255]])
    assert int(image.header["sform_code"]) == 2  # no codes on an array made in code: recorded as aligned


def test_existing_output_is_kept_without_overwrite(tmp_path, oblique_volume):
    path = tmp_path / "o.nii.gz"
    path.write_bytes(b"keep me")
    with pytest.raises(OutputExistsError, match="exists"):
        save_volume(oblique_volume, path)
    assert path.read_bytes() == b"keep me"
    save_volume(oblique_volume, path, overwrite=True)
    assert nib.load(path).shape == (14, 12, 10)


def test_failed_write_leaves_no_file(tmp_path, oblique_volume, monkeypatch):
    def broken_write(image, stream):
        stream.write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("arssr.volume._write_nifti", broken_write)
    with pytest.raises(OutputError, match="o.nii.gz: cannot write .No space left on device"):
        save_volume(oblique_volume, tmp_path / "o.nii.gz")
    assert list(tmp_path.iterdir()) == []


def test_single_frame_4d_is_accepted(tmp_path):
    nib.save(nib.Nifti1Image(np.ones((4, 5, 6, 1), np.float32), np.eye(4)), tmp_path / "f.nii")
    assert load_volume(tmp_path / "f.nii").shape == (4, 5, 6)


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda p: None, "file not found"),
        (lambda p: p.with_suffix(".txt").write_text("x") and p.with_suffix(".txt"), "not a NIfTI file"),
        (lambda p: p.write_bytes(b"\x1f\x8b garbage"), "cannot read as NIfTI"),
        (lambda p: nib.save(nib.Nifti1Image(np.ones((4, 5), np.float32), np.eye(4)), p), "2D image"),
        (lambda p: nib.save(nib.Nifti1Image(np.ones((4, 5, 1), np.float32), np.eye(4)), p), "2D image"),
        (lambda p: nib.save(nib.Nifti1Image(np.ones((4, 5, 6, 3), np.float32), np.eye(4)), p), "4D volume with 3 frames"),
        (lambda p: nib.save(nib.Nifti1Image(np.full((4, 5, 6), np.nan, np.float32), np.eye(4)), p), "120 NaN or infinite"),
        (lambda p: nib.save(nib.Nifti1Image(np.zeros((4, 0, 6), np.float32), np.eye(4)), p), "empty"),
    ],
)
def test_bad_inputs_raise_clear_errors(tmp_path, make, message):
    path = tmp_path / "bad.nii.gz"
    made = make(path)
    target = made if isinstance(made, type(path)) else path
    with pytest.raises(InputError, match=message):
        load_volume(target)


def test_volume_rejects_bad_affine():
    with pytest.raises(InputError, match="singular"):
        Volume(np.zeros((3, 3, 3), np.float32), np.diag([1.0, 0.0, 1.0, 1.0]))


def test_bids_slice_thickness_is_read_from_the_sidecar_beside_the_file(tmp_path):
    for name in ("sub-01_T1w.nii.gz", "sub-02_T1w.NII"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub-01_T1w.json").write_text('{"SliceThickness": 5, "SpacingBetweenSlices": 6}')
    (tmp_path / "sub-02_T1w.json").write_text('{"SliceThickness": 2.5, "MRAcquisitionType": "2D"}')
    assert bids_slice_thickness(bids_sidecar(tmp_path / "sub-01_T1w.nii.gz")) == 5.0
    assert bids_sidecar(tmp_path / "sub-02_T1w.NII") == {"SliceThickness": 2.5, "MRAcquisitionType": "2D"}
    assert bids_sidecar(tmp_path / "sub-03_T1w.nii.gz") == {}  # no sidecar
    for fields in ({"SliceThickness": -1}, {"SliceThickness": "5"}, {"SliceThickness": True}, {}):
        assert bids_slice_thickness(fields) is None, fields
    for raw in (b"\xff{not json", b"[5]"):
        (tmp_path / "sub-01_T1w.json").write_bytes(raw)
        with pytest.warns(UserWarning, match="sub-01_T1w.json: not a readable JSON sidecar"):
            assert bids_sidecar(tmp_path / "sub-01_T1w.nii.gz") == {}
