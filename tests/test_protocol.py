"""The hand-kept names of degradation operators agree wherever they are used."""

import pytest

from arssr.cli import build_parser
from arssr.degrade import DEGRADATIONS, MATRICES, degrade, resample
from arssr.protocol import CONSISTENCY_OPERATORS, DEFAULT_CONSISTENCY, DEFAULT_DEGRADATIONS, DEGRADATION_INTERPOLATIONS


def _choices(command: str, option: str) -> tuple:
    sub = next(action for action in build_parser()._actions if action.dest == "command").choices[command]
    return tuple(next(action for action in sub._actions if option in action.option_strings).choices)


def test_every_degradation_has_its_matrix_interpolation_and_consistency():
    assert set(DEGRADATIONS) == set(DEGRADATION_INTERPOLATIONS)
    assert set(DEGRADATION_INTERPOLATIONS.values()) <= set(MATRICES)
    assert CONSISTENCY_OPERATORS == (*DEGRADATION_INTERPOLATIONS, "none")
    assert DEFAULT_CONSISTENCY in DEGRADATIONS and set(DEFAULT_DEGRADATIONS) <= set(DEGRADATIONS)
    assert _choices("upsample", "--consistency") == CONSISTENCY_OPERATORS


@pytest.mark.parametrize("name", list(DEGRADATIONS))
def test_each_degradation_and_its_interpolation_run(name):
    import torch

    volume = torch.rand(12, 10, 8, dtype=torch.float64)
    small = degrade(volume, (6, 5, 4), name)
    assert small.shape == (6, 5, 4)
    assert resample(small, (12, 10, 8), DEGRADATION_INTERPOLATIONS[name]).shape == (12, 10, 8)
