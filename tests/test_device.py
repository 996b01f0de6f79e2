import pytest
import torch

from arssr.device import resolve_device
from arssr.errors import InputError


def test_device_names():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(InputError, match="unknown device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            resolve_device("cuda:0")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")  # a device is taken as it is
