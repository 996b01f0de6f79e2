import numpy as np
import pytest
import torch

from arssr.errors import InputError
from arssr.compress.quantize import entropy_decode, entropy_encode, fake_quantize, pack_tensors, unpack_tensors


def _tensors(seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(20, 3, generator=generator), torch.randn(20, generator=generator) * 0.01,
            torch.zeros(4), torch.randn(1, 20, generator=generator)]


@pytest.mark.parametrize("bits", [2, 4, 6, 8])
def test_int_quantisation_error_is_at_most_half_a_step(bits):
    tensors = _tensors()
    decoded = unpack_tensors(pack_tensors(tensors, f"int{bits}"), [t.shape for t in tensors], f"int{bits}")
    for original, back in zip(tensors, decoded):
        levels = 2 ** (bits - 1) - 1
        step = float(original.abs().max()) / levels if original.abs().max() > 0 else 1.0
        assert float((original - back).abs().max()) <= step / 2 * (1 + 1e-5)
        assert len(np.unique(back.numpy())) <= 2 * levels + 1


def test_fp16_and_fp32_modes():
    tensors = _tensors(1)
    shapes = [t.shape for t in tensors]
    for original, back in zip(tensors, unpack_tensors(pack_tensors(tensors, "fp32"), shapes, "fp32")):
        assert torch.equal(original, back)
    for original, back in zip(tensors, unpack_tensors(pack_tensors(tensors, "fp16"), shapes, "fp16")):
        assert float((original - back).abs().max()) <= float(original.abs().max()) * 2**-11


def test_payload_of_the_wrong_length_is_refused():
    tensors = _tensors()
    raw = pack_tensors(tensors, "int8")
    with pytest.raises(InputError, match="payload has .* bytes, the network needs"):
        unpack_tensors(raw[:-1], [t.shape for t in tensors], "int8")
    with pytest.raises(InputError, match="unknown quantisation"):
        pack_tensors(tensors, "int9")


def test_entropy_coding_round_trips_and_never_grows():
    for raw in (pack_tensors(_tensors(), "int4"), np.random.default_rng(0).bytes(300), b""):
        codec, coded = entropy_encode(raw)
        assert len(coded) <= len(raw)
        assert entropy_decode(codec, coded) == raw
    codec, coded = entropy_encode(pack_tensors([torch.randn(4000)], "int4"))
    assert codec != "none" and len(coded) < 0.75 * 4004  # 15 levels: well under 8 bits per value
    with pytest.raises(InputError, match="cannot be decoded"):
        entropy_decode("zstd", b"\x28\xb5\x2f\xfd" + b"\x00" * 10)


def test_fake_quantize_passes_gradients_straight_through():
    w = torch.randn(50, requires_grad=True)
    out = fake_quantize(w, "int4")
    assert torch.equal(out.detach(), unpack_tensors(pack_tensors([w], "int4"), [w.shape], "int4")[0])
    out.sum().backward()
    assert torch.equal(w.grad, torch.ones(50))
