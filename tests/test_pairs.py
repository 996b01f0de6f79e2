"""Training examples made of HR crops (``arssr.pairs``)."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from arssr import geometry
from arssr.degrade import SliceModel, degrade
from arssr.pairs import PairOptions, draw_examples, make_pairs


@pytest.mark.parametrize("anisotropic", [False, True])
def test_pairs_sizes_coordinates_and_targets(anisotropic):
    options = PairOptions(lr_size=5, scale=(2.0, 4.0), anisotropic=anisotropic, samples=300,
                          methods={"kspace": 1.0, "cubic": 1.0})
    examples = draw_examples(6, options, torch.Generator().manual_seed(0))
    crops = torch.rand(6, 20, 20, 20)
    lr, coords, targets = make_pairs(crops, examples, options, torch.device("cpu"))
    assert lr.shape == (6, 1, 5, 5, 5) and coords.shape == (6, 300, 3) and targets.shape == (6, 300, 1)
    assert {e.method for e in examples} == {"kspace", "cubic"}
    for i, example in enumerate(examples):
        shape = example.hr_shape
        assert all(10 <= s <= 20 for s in shape) and (len(set(shape)) > 1) == anisotropic
        start = [(20 - s) // 2 for s in shape]
        hr = crops[i, start[0]:start[0] + shape[0], start[1]:start[1] + shape[1], start[2]:start[2] + shape[2]]
        index = (coords[i].double() + 1) * torch.tensor(shape) / 2 - 0.5  # voxel index of each coordinate
        assert torch.allclose(index, index.round(), atol=1e-5) and coords[i].abs().max() < 1
        assert len({tuple(v) for v in index.round().long().tolist()}) == 300  # distinct voxels
        a, b, c = index.round().long().unbind(-1)
        assert torch.equal(targets[i, :, 0], hr[a, b, c])
        expected_lr = degrade(hr[None, None], (5, 5, 5), example.method)
        assert torch.allclose(lr[i], expected_lr[0], atol=1e-6)
        for axis, size in enumerate(shape):  # each coordinate is one of the axis's voxel centres
            gaps = np.abs(coords[i, :, axis].numpy()[:, None] - geometry.normalized_centres(size)[None])
            assert gaps.min(axis=1).max() < 1e-6


def test_thick_slice_examples_have_one_axis_of_slices(mni_t1):
    options = PairOptions(lr_size=6, samples=200, methods={"kspace": 1.0}, thick_share=0.5, thick_scale=(1.5, 8.0),
                          inplane_scale=(1.0, 2.0))
    examples = draw_examples(40, options, torch.Generator().manual_seed(0))
    thick = [e for e in examples if not isinstance(e.method, str)]
    assert 10 <= len(thick) <= 30 and {e.method for e in examples if isinstance(e.method, str)} == {"kspace"}
    for example in thick:
        axes = [a for a, m in enumerate(example.method) if isinstance(m, SliceModel)]
        assert len(axes) == 1 and all(m == "kspace" for m in example.method if not isinstance(m, SliceModel))
        scales = [n / 6 for n in example.hr_shape]
        assert 1.5 - 1 / 12 <= scales[axes[0]] <= 8 + 1 / 12
        assert all(1 - 1 / 12 <= k <= 2 + 1 / 12 for a, k in enumerate(scales) if a != axes[0])
        assert example.method[axes[0]].thickness == pytest.approx(scales[axes[0]])  # contiguous slices
    assert {a for e in thick for a, m in enumerate(e.method) if isinstance(m, SliceModel)} == {0, 1, 2}
    assert {m.profile for e in thick for m in e.method if isinstance(m, SliceModel)} == {"boxcar", "gaussian"}

    # Real anatomy, 3-voxel boxcar slices along one axis and nothing in-plane: the LR is the mean of each slab.
    options = replace(options, thick_share=1.0, thick_scale=(3.0, 3.0), inplane_scale=(1.0, 1.0),
                      thick_profiles=("boxcar",))
    examples = draw_examples(3, options, torch.Generator().manual_seed(1))
    crop = torch.from_numpy(np.ascontiguousarray(mni_t1.data[60:78, 80:98, 60:78], dtype=np.float32))
    lr, _, _ = make_pairs(torch.stack([crop] * 3), examples, options, torch.device("cpu"))
    for i, example in enumerate(examples):
        axis = [a for a, m in enumerate(example.method) if isinstance(m, SliceModel)][0]
        start = [(18 - s) // 2 for s in example.hr_shape]
        hr = crop[tuple(slice(a, a + s) for a, s in zip(start, example.hr_shape))].numpy().astype(np.float64)
        slabs = np.moveaxis(hr, axis, 0).reshape(6, 3, 6, 6).mean(axis=1)
        assert np.allclose(lr[i, 0].numpy(), np.moveaxis(slabs, 0, axis), atol=1e-4 * hr.max())


def test_pairs_of_a_slice_equal_the_slice_of_pairs_with_noise_and_bias():
    options = PairOptions(lr_size=5, samples=100, methods={"lanczos": 1.0}, noise="rician",
                          noise_std=(0.0, 0.05), bias=(0.1, 0.3))
    examples = draw_examples(4, options, torch.Generator().manual_seed(1))
    crops = torch.rand(4, 20, 20, 20)
    whole = make_pairs(crops, examples, options, torch.device("cpu"))
    part = make_pairs(crops[2:], examples[2:], options, torch.device("cpu"))
    assert all(torch.equal(w[2:], p) for w, p in zip(whole, part))
    plain = [replace(e, noise_std=0.0, bias=0.0) for e in examples]
    clean = make_pairs(crops, plain, replace(options, noise=None), torch.device("cpu"))
    assert not torch.allclose(whole[0], clean[0]) and torch.equal(whole[2], clean[2])
