import math

import numpy as np
import pytest
import torch

from arssr.models.siren import Siren


def test_parameter_count_matches_seed_003_and_the_module():
    assert Siren.parameter_count(70, 3) == 10291  # the paper-2025 preset's paper, Table 3: 3 layers x 70 neurons
    model = Siren(70, 3)
    assert sum(p.numel() for p in model.parameters()) == 10291


def test_initialisation_bounds():
    torch.manual_seed(0)
    model = Siren(40, 3, w0=30.0)
    first, *rest = model.layers
    assert first.weight.abs().max() <= 1 / 3
    assert first.weight.abs().max() > 0.9 / 3  # spread over the whole range, not a narrower one
    for layer in rest:
        bound = math.sqrt(6 / layer.in_features) / 30
        assert layer.weight.abs().max() <= bound
        assert layer.weight.abs().max() > 0.9 * bound


def test_forward_is_sines_of_linear_layers():
    torch.manual_seed(1)
    model = Siren(5, 2, w0=10.0)
    x = torch.rand(7, 3) * 2 - 1
    h = x
    for layer in model.layers[:-1]:
        h = torch.sin(10.0 * (h @ layer.weight.T + layer.bias))
    expected = h @ model.layers[-1].weight.T + model.layers[-1].bias
    torch.testing.assert_close(model(x), expected)
    assert torch.equal(model(x, weight_map=torch.zeros_like), torch.zeros(7, 1))


@pytest.mark.parametrize("args, match", [((0,), "width"), ((8, 0), "depth"), ((8, 3, -1.0), "w0")])
def test_bad_arguments_are_named(args, match):
    with pytest.raises(ValueError, match=match):
        Siren(*args)


def test_fitting_leaves_the_global_random_state_alone():
    from arssr.compress import make_config
    from arssr.compress.fitting import fit_siren

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    fit_siren(np.random.default_rng(0).random((6, 6, 6)).astype(np.float32), make_config("fast", steps=2, width=8))
    assert torch.equal(torch.rand(3), expected)
