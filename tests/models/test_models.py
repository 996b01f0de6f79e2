import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from arssr.errors import ModelFileError
from arssr.models import ArSSR, MLPDecoder, RDN, ResCNN, SRResNet, build_encoder, load_model, save_model
from conftest import make_tiny_model


def official_rdn_state_dict_shapes() -> dict[str, tuple[int, ...]]:
    """Key names and shapes of the official ArSSR_RDN checkpoint (the official ArSSR release), written out by hand."""
    shapes = {"encoder.sfe1.weight": (64, 1, 3, 3, 3), "encoder.sfe2.weight": (64, 64, 3, 3, 3)}
    for i in range(8):
        for j in range(3):
            shapes[f"encoder.rdbs.{i}.layers.{j}.conv.weight"] = (64, 64 + 64 * j, 3, 3, 3)
            shapes[f"encoder.rdbs.{i}.layers.{j}.conv.bias"] = (64,)
        shapes[f"encoder.rdbs.{i}.lff.weight"] = (64, 256, 1, 1, 1)
        shapes[f"encoder.rdbs.{i}.lff.bias"] = (64,)
    shapes.update({
        "encoder.sfe1.bias": (64,), "encoder.sfe2.bias": (64,),
        "encoder.gff.0.weight": (64, 512, 1, 1, 1), "encoder.gff.0.bias": (64,),
        "encoder.gff.1.weight": (64, 64, 3, 3, 3), "encoder.gff.1.bias": (64,),
        "encoder.output.weight": (128, 64, 3, 3, 3), "encoder.output.bias": (128,),
    })
    dims = {"stage_one": [(256, 131), (256, 256), (256, 256), (131, 256)],
            "stage_two": [(256, 131), (256, 256), (256, 256), (1, 256)]}
    for stage, layers in dims.items():
        for index, (fan_out, fan_in) in zip((0, 2, 4, 6), layers):
            shapes[f"decoder.{stage}.{index}.weight"] = (fan_out, fan_in)
            shapes[f"decoder.{stage}.{index}.bias"] = (fan_out,)
    return shapes


def test_default_model_has_official_keys_and_shapes():
    model = ArSSR()
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == official_rdn_state_dict_shapes()


@pytest.mark.parametrize("suffix", [".pkl", ".pt"])
def test_official_checkpoint_loads_strictly_with_its_conventions(tmp_path, suffix):
    generator = torch.Generator().manual_seed(1)
    state = {k: torch.randn(s, generator=generator) * 0.01 for k, s in official_rdn_state_dict_shapes().items()}
    path = tmp_path / f"ArSSR_RDN{suffix}"
    torch.save(state, path)
    model = load_model(path)
    assert model.axis_order == "zyx" and model.normalization == "minmax"
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)
    # A DDP-wrapped copy ("module." prefix, nested under "model") loads the same way.
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}}, path)
    assert load_model(path).state_dict()["decoder.stage_two.6.bias"].item() == state["decoder.stage_two.6.bias"].item()


def test_official_checkpoint_with_wrong_shapes_is_refused(tmp_path):
    state = {k: torch.zeros(s) for k, s in official_rdn_state_dict_shapes().items()}
    state["decoder.stage_one.2.weight"] = torch.zeros(256, 128)
    torch.save(state, tmp_path / "bad.pkl")
    with pytest.raises(ModelFileError, match="weights do not match the model"):
        load_model(tmp_path / "bad.pkl")
    del state["encoder.sfe1.weight"]
    torch.save(state, tmp_path / "bad.pkl")
    with pytest.raises(ModelFileError, match="not an ArSSR RDN state dict"):
        load_model(tmp_path / "bad.pkl")


def test_full_pickle_is_not_executed(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("executed",))

    torch.save({"x": Payload()}, tmp_path / "evil.pkl", _use_new_zipfile_serialization=True)
    with pytest.raises(ModelFileError, match="not a readable PyTorch weights file"):
        load_model(tmp_path / "evil.pkl")


def _current_umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_safetensors_round_trip_rebuilds_the_model(tmp_path):
    model = make_tiny_model(encoder="srresnet", encoder_args={"num_features": 8, "num_blocks": 2})
    for half in (False, True):
        path = save_model(model, tmp_path / f"m{half}.safetensors", half=half)
        loaded = load_model(path)
        assert loaded.config == model.config
        for key, value in model.state_dict().items():
            tol = 1e-3 * max(1.0, value.abs().max().item()) if half else 0.0
            torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=tol)
    assert not list(tmp_path.glob(".*tmp*"))
    assert path.stat().st_mode & 0o777 == 0o666 & ~_current_umask()


def test_bad_weights_files_give_clear_errors(tmp_path):
    with pytest.raises(ModelFileError, match="weights file not found"):
        load_model(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(ModelFileError, match="not a readable safetensors file"):
        load_model(tmp_path / "junk.safetensors")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ModelFileError, match="without arssr model metadata"):
        load_model(tmp_path / "plain.safetensors")
    model = make_tiny_model()
    meta = {"format": "arssr", "format_version": "1", "model": json.dumps(make_tiny_model(decoder_width=16).config)}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "mismatch.safetensors"), meta)
    with pytest.raises(ModelFileError, match="weights do not match the model"):
        load_model(tmp_path / "mismatch.safetensors")
    (tmp_path / "junk.pkl").write_bytes(b"\x00" * 64)
    with pytest.raises(ModelFileError, match="not a readable PyTorch weights file"):
        load_model(tmp_path / "junk.pkl")


@pytest.mark.parametrize(
    "encoder,args,radius",
    [(RDN, {"num_features": 8, "growth": 4, "num_blocks": 2, "num_layers": 2}, 8),
     (ResCNN, {"num_features": 8, "num_blocks": 2, "convs_per_block": 2}, 6),
     (SRResNet, {"num_features": 8, "num_blocks": 2}, 7)],
)
def test_encoder_shapes_and_receptive_radius(encoder, args, radius):
    """A voxel's feature changes only within ``receptive_radius`` voxels of an input change."""
    torch.manual_seed(0)
    net = encoder(feature_dim=5, **args).eval()
    assert net.receptive_radius == radius
    size, centre = 2 * radius + 9, radius + 4
    x = torch.rand(1, 1, size, size, size)
    y = x.clone()
    y[0, 0, centre, centre, centre] += 1.0
    with torch.no_grad():
        changed = (net(x) - net(y)).abs().amax(dim=(0, 1)) > 0
    assert net(x).shape == (1, 5, size, size, size)
    reach = changed.nonzero()
    assert (reach - centre).abs().max().item() == radius


def test_paper_encoders_sizes():
    assert ResCNN().receptive_radius == 20 and SRResNet().receptive_radius == 39
    assert RDN().receptive_radius == 28
    with pytest.raises(ValueError, match="unknown encoder 'unet'; known: rdn, rescnn, srresnet"):
        build_encoder("unet", 128)
    with pytest.raises(ValueError, match="num_blocks must be a positive integer"):
        RDN(num_blocks=0)
    with pytest.raises(ValueError, match="axis_order must be one of"):
        ArSSR(axis_order="yxz")


def test_decoder_is_two_stage_residual_mlp():
    torch.manual_seed(0)
    decoder = MLPDecoder(in_features=7, width=16, depth=3)
    x = torch.randn(10, 7)
    h = x
    for layer in decoder.stage_one:
        h = layer(h)
    expected = x + h
    for layer in decoder.stage_two:
        expected = layer(expected)
    torch.testing.assert_close(decoder(x), expected)
    assert isinstance(decoder.stage_two[-1], torch.nn.ReLU) and (decoder(x * 100) >= 0).all()
    with pytest.raises(ValueError, match="depth must be an integer >= 2"):
        MLPDecoder(depth=1)


def test_query_interpolates_features_trilinearly(tiny_model):
    """Querying between two voxel centres decodes the average of their features (eq. 4)."""
    features = torch.randn(1, 16, 4, 4, 4)
    # Halfway between centres 1 and 2 on axis 0 (normalised -0.25 and 0.25) at centre (1, 2) of the others.
    coords = torch.tensor([[[0.0, -0.25, 0.25]]])
    expected_feature = (features[0, :, 1, 1, 2] + features[0, :, 2, 1, 2]) / 2
    expected = tiny_model.decoder(torch.cat([expected_feature, coords[0, 0]])[None])
    torch.testing.assert_close(tiny_model.query(features, coords)[0], expected)


def test_residual_start_is_trilinear_interpolation_of_the_input(mni_crop):
    """A residual model whose last layer is zero gives the LR input interpolated trilinearly, edges replicated:
    scipy's ``map_coordinates(order=1, mode="nearest")`` at the queried voxel coordinates (real anatomy)."""
    from scipy.ndimage import map_coordinates

    from arssr.models.arssr import residual_start

    plain = make_tiny_model()
    model = residual_start(plain)
    assert model.residual and model.config["args"]["residual"] and not plain.residual
    lr = torch.from_numpy(mni_crop.data / mni_crop.data.max())[None, None].float()
    coords = torch.rand(1, 500, 3, generator=torch.Generator().manual_seed(0)) * 2.2 - 1.1  # beyond the edges too
    with torch.no_grad():
        out = model(lr, coords)[0, :, 0].numpy()
    voxel = ((coords[0].double().numpy() + 1) * np.array(mni_crop.shape) - 1) / 2
    expected = map_coordinates(lr[0, 0].double().numpy(), voxel.T, order=1, mode="nearest")
    np.testing.assert_allclose(out, expected, atol=1e-5)
    with pytest.raises(ValueError, match="needs the LR input"):
        model.query(model.encode(lr), coords)


def test_residual_flag_travels_in_the_weights_file(tmp_path):
    from arssr.models.arssr import residual_start

    path = save_model(residual_start(make_tiny_model()), tmp_path / "residual.safetensors")
    loaded = load_model(path)
    assert loaded.residual and not isinstance(loaded.decoder.stage_two[-1], torch.nn.ReLU)
    from arssr.models import default_model_path

    v2 = load_model(default_model_path().parent / "arssr_rdn_v2.safetensors")  # a shipped non-residual model
    assert not v2.residual and isinstance(v2.decoder.stage_two[-1], torch.nn.ReLU)
    assert load_model(None).residual  # the default, arssr_rdn_v10


def test_every_public_name_resolves():
    import arssr

    namespace: dict = {}
    exec("from arssr import *", namespace)
    assert set(arssr.__all__) <= set(namespace) and all(namespace[name] is not None for name in arssr.__all__)


def test_model_files_whose_encoder_would_take_hours_to_build_are_refused(tmp_path):
    from safetensors.torch import save_file

    from arssr.errors import ModelFileError
    from arssr.models import load_model

    from arssr.models.checkpoint import FORMAT, FORMAT_VERSION

    meta = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "model": json.dumps({"name": "arssr", "args": {
        "encoder": "rdn", "feature_dim": 8, "encoder_args": {"num_blocks": 4096, "num_layers": 4096}}})}
    save_file({"x": torch.zeros(1)}, tmp_path / "huge.safetensors", metadata=meta)
    with pytest.raises(ModelFileError, match="4096 x 4096 layers; more than 4096 in all"):
        load_model(tmp_path / "huge.safetensors")
    torch.save({0: torch.zeros(1)}, tmp_path / "int_keys.pt")
    with pytest.raises(ModelFileError, match="state dict of tensors named by strings"):
        load_model(tmp_path / "int_keys.pt")
