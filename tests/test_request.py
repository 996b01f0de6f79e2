"""One request, resolved once (``arssr.request``): its fields against an independent computation, the same
output as ``upsample``'s own arguments, and the input windowed once per file by the CLI, ``--adapt`` and the
fitted gain included; on the MNI152 T1 and on a small oblique volume."""

import numpy as np
import pytest

from arssr import geometry
from arssr.adapt import AdaptOptions, adapt_to
from arssr.consistency import slice_consistency
from arssr.degrade import SliceModel
from arssr.errors import InputError
from arssr.inference import upsample, upsample_request
from arssr.models.space import ModelSpace
from arssr.request import prepare
from arssr.volume import Volume


def thick(mni_t1) -> Volume:
    """A 2 x 2 x 6 mm block of the MNI152 T1: slices along the third axis."""
    return Volume(mni_t1.data[60:108:2, 60:116:2, 40:124:6], mni_t1.affine @ np.diag([2.0, 2, 6, 1]))


def test_fields_against_their_definitions(oblique_volume, tiny_model):
    request = prepare(oblique_volume, tiny_model, scale=(1.5, 2, 2.5))
    space = ModelSpace.of(oblique_volume.data, oblique_volume.affine, tiny_model)
    assert request.factors == (1.5, 2.0, 2.5)
    assert request.out_shape == geometry.output_shape(oblique_volume.shape, (1.5, 2, 2.5))
    np.testing.assert_array_equal(request.space.orientation, space.orientation)
    assert (request.space.order, request.space.window) == (space.order, space.window)
    np.testing.assert_array_equal(request.lr, space.to_model(oblique_volume.data))
    assert request.range == (float(oblique_volume.data.min()), float(oblique_volume.data.max()))
    assert request.operator == request.model_operator == "kspace" and request.slice_axis() is None
    assert not request.constant


def test_thick_slices_operator_and_axis(mni_t1, tiny_model):
    volume = thick(mni_t1)
    request = prepare(volume, tiny_model, scale=(1, 1, 3), slice_thickness="spacing", slice_profile="gaussian")
    expected = slice_consistency("kspace", volume.spacing, volume.shape, request.out_shape, "spacing", "gaussian")
    assert request.operator == expected
    assert request.operator[2] == SliceModel(3.0, "gaussian", "smooth")
    assert request.model_operator == request.space.axes(expected)
    ras_axis = request.space.axes(range(3)).index(2)  # the file's slice axis in the model's axis order
    assert request.slice_axis() == ras_axis
    assert prepare(volume, tiny_model, scale=(2, 1, 3), slice_thickness=6.0).slice_axis() is None  # two axes


def test_errors_by_message(mni_crop, tiny_model):
    with pytest.raises(InputError, match="give exactly one of scale and voxel_size"):
        prepare(mni_crop, tiny_model)
    with pytest.raises(InputError, match="cannot go with consistency none"):
        prepare(mni_crop, tiny_model, scale=(1, 1, 3), consistency="none", slice_thickness=6.0)


@pytest.mark.parametrize("options", [{"scale": 2}, {"scale": (1, 1, 3), "slice_thickness": "spacing"},
                                     {"scale": (1, 1, 3), "slice_thickness": "spacing", "plane_prior": None},
                                     {"scale": 2, "consistency": "cubic", "gain": 0.6}])
def test_a_prepared_request_upsamples_as_the_arguments_do(mni_t1, tiny_model, one_thread, options):
    volume = thick(mni_t1) if "slice_thickness" in options else Volume(mni_t1.data[60:100:2, 60:108:2, 60:96:2],
                                                                       mni_t1.affine @ np.diag([2.0, 2, 2, 1]))
    setup = {k: options[k] for k in ("scale", "consistency", "slice_thickness") if k in options}
    run = {k: options[k] for k in ("gain", "plane_prior") if k in options}
    direct = upsample(volume, tiny_model, device="cpu", details=True, **setup, **run)
    prepared = upsample_request(prepare(volume, tiny_model, **setup), device="cpu", details=True, **run)
    np.testing.assert_array_equal(prepared.volume.data, direct.volume.data)
    np.testing.assert_array_equal(prepared.volume.affine, direct.volume.affine)
    assert (prepared.gain, prepared.estimator, prepared.operator) == (direct.gain, direct.estimator, direct.operator)


def test_adaptation_inside_upsample_is_adapt_to_then_upsample(mni_t1, tiny_model, one_thread):
    volume = Volume(mni_t1.data[60:100:2, 60:108:2, 60:96:2], mni_t1.affine @ np.diag([2.0, 2, 2, 1]))
    options = AdaptOptions(seconds=None, steps=2, seed=3)
    done = upsample(volume, tiny_model, scale=2, device="cpu", adapt=options, details=True)
    adapted, report = adapt_to(volume, tiny_model, scale=2, options=options, device="cpu")
    assert (done.adaptation.before, done.adaptation.after, done.adaptation.kept, done.adaptation.steps) == (
        report.before, report.after, report.kept, report.steps)
    separate = upsample(volume, adapted, scale=2, device="cpu", details=True)
    np.testing.assert_array_equal(done.volume.data, separate.volume.data)
    assert done.gain == separate.gain and (done.adapted is tiny_model) == (not report.kept)
    assert upsample(volume, tiny_model, scale=2, device="cpu", details=True).adaptation is None


@pytest.mark.parametrize("options", [["--scale", "2"], ["--scale", "2", "--adapt-steps", "1"],
                                     ["--scale", "1,1,3"], ["--scale", "1,1,3", "--adapt-steps", "1"],
                                     ["--scale", "1,1,3", "--plane-prior", "none", "--adapt-steps", "1"]])
def test_the_cli_windows_each_input_once(tmp_path, monkeypatch, mni_t1, tiny_weights, one_thread, options):
    """Whatever the path (fitted gain, thick slices with or without the plane prior, adaptation of either),
    the input's intensity window is computed once per file."""
    from arssr.cli import main
    from arssr.models import space as space_module
    from arssr.volume import save_volume

    save_volume(thick(mni_t1), tmp_path / "in.nii.gz")
    calls = []
    window = space_module.intensity_window
    monkeypatch.setattr(space_module, "intensity_window", lambda *a: calls.append(1) or window(*a))
    assert main(["upsample", str(tmp_path / "in.nii.gz"), *options, "--weights", str(tiny_weights),
                 "--device", "cpu", "-q", "-o", str(tmp_path / "out.nii.gz")]) == 0
    assert len(calls) == 1
