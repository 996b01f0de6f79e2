import warnings
from dataclasses import replace

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy import ndimage

from arssr import datasets, geometry
from arssr.datasets import CropJobs, CropOptions, CropPool, PairOptions
from arssr.degrade import SliceModel, degrade
from arssr.errors import InputError
from conftest import mni_t1_path


def write_subjects(folder, count: int = 5, seed: int = 0) -> list:
    """``count`` small subjects: the MNI152 T1 at 3 mm (40 x 48 x 40 around the brain), shifted and rescaled copies."""
    image = nib.load(mni_t1_path())
    data = np.asarray(image.dataobj, dtype=np.float32)[::3, ::3, ::3][13:53, 14:62, 10:50]
    affine = image.affine @ np.diag([3.0, 3.0, 3.0, 1.0])
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        volume = data if i == 0 else ndimage.shift(data, rng.uniform(-2, 2, 3), order=1) * rng.uniform(0.8, 1.2)
        paths.append(folder / f"sub-{i}.nii.gz")
        nib.save(nib.Nifti1Image(volume.astype(np.float32), affine), paths[-1])
    return paths


@pytest.fixture(scope="module")
def subjects(tmp_path_factory):
    return write_subjects(tmp_path_factory.mktemp("subjects"))


def test_folder_glob_csv_and_file_sources(tmp_path, subjects):
    tree = tmp_path / "hcp"
    for i, path in enumerate(subjects[:3]):
        (tree / f"{100 + i}" / "T1w").mkdir(parents=True)
        (tree / f"{100 + i}" / "T1w" / "T1w_acpc_dc_restore.nii.gz").write_bytes(path.read_bytes())
    (tree / "notes.txt").write_text("not a volume")
    found, labels = datasets.find_subjects(str(tree))
    assert len(found) == 3 and labels is None
    found, _ = datasets.find_subjects(str(tree / "*" / "T1w" / "T1w_acpc_dc_restore.nii.gz"))
    assert [p.parts[-3] for p in found] == ["100", "101", "102"]
    csv = tmp_path / "list.csv"
    labels = ["train", "train", "val", "test", "train"]
    csv.write_text("path,split\n" + "".join(f"{p},{s}\n" for p, s in zip(subjects, labels)))
    found, labels = datasets.find_subjects(str(csv))
    assert found == subjects and labels[2] == "val"
    split = datasets.split_subjects(found, labels)
    assert split["val"] == [str(subjects[2])] and len(split["train"]) == 3
    assert datasets.find_subjects(str(subjects[0])) == ([subjects[0]], None)


def test_bad_sources_raise_naming_the_path(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty: no .nii or .nii.gz files"):
        datasets.find_subjects(str(tmp_path / "empty"))
    with pytest.raises(InputError, match="missing: no such folder"):
        datasets.find_subjects(str(tmp_path / "missing"))
    (tmp_path / "bad.csv").write_text("file\nx.nii\n")
    with pytest.raises(InputError, match="bad.csv: the CSV needs a header with a 'path' column"):
        datasets.find_subjects(str(tmp_path / "bad.csv"))


def test_unreadable_files_are_skipped_with_a_warning(tmp_path, subjects):
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not a nifti file at all")
    with pytest.warns(UserWarning, match="broken.nii.gz: skipped"):
        kept, _ = datasets.usable([subjects[0], broken, subjects[1]], None, 20)
    assert kept == [subjects[0], subjects[1]]
    with pytest.warns(UserWarning, match="smaller than the 64"):
        with pytest.raises(InputError, match="none of the 1 files is usable"):
            datasets.usable([subjects[0]], None, 64)
    with pytest.warns(UserWarning), pytest.raises(InputError, match="none of the 2 files is usable"):
        datasets.usable([broken, broken], None, 20)


def test_split_ratios():
    assert datasets.split_counts(1113) == (780, 111, 222)
    assert datasets.split_counts(20) == (14, 2, 4)
    assert datasets.split_counts(3) == (1, 1, 1)
    assert datasets.split_counts(2) == (2, 0, 0)
    paths = [f"s{i}.nii" for i in range(50)]
    split = datasets.split_subjects(paths, seed=3)
    assert [len(split[k]) for k in datasets.SPLITS] == list(datasets.split_counts(50))
    assert sorted(sum(split.values(), [])) == sorted(paths)
    assert split == datasets.split_subjects(paths, seed=3) != datasets.split_subjects(paths, seed=4)


def test_crops_avoid_background_on_the_mni_t1():
    volume = datasets.load_normalized(mni_t1_path(), "percentile")
    options = CropOptions(size=40, min_foreground=0.6)
    rng = np.random.default_rng(0)
    chosen = [datasets.foreground_crop(volume, options, rng) for _ in range(20)]
    fractions = [float((c > options.threshold).mean()) for c in chosen]
    assert all(c.shape == (40, 40, 40) for c in chosen) and min(fractions) >= 0.6
    blind = CropOptions(size=40, min_foreground=0.0, tries=1)
    random_fractions = [float((datasets.foreground_crop(volume, blind, rng) > 0.1).mean()) for _ in range(40)]
    assert min(random_fractions) < 0.3  # uniform crops often miss the head: the check matters


def test_jobs_visit_every_subject_once_per_round_and_are_reproducible(subjects):
    jobs = CropJobs([str(p) for p in subjects], CropOptions(size=20, per_volume=3), seed=1)
    assert sorted(jobs.subject(k) for k in range(5)) == sorted(str(p) for p in subjects)
    assert sorted(jobs.subject(k) for k in range(5, 10)) == sorted(str(p) for p in subjects)
    first = jobs[7]
    assert first.shape == (3, 20, 20, 20) and torch.equal(first, jobs[7])


def test_truncated_volume_is_skipped_at_load_time(tmp_path, subjects):
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(subjects[0].read_bytes()[:2000])
    jobs = CropJobs([str(truncated)], CropOptions(size=20), seed=0)
    with pytest.warns(UserWarning, match="truncated.nii.gz"):
        assert jobs[0].shape == (0, 20, 20, 20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(InputError, match="no training volume could be read"):
            CropPool(jobs, 4, seed=0).batch(2)


def test_pool_is_bounded_and_resumes_exactly(subjects):
    jobs = CropJobs([str(p) for p in subjects], CropOptions(size=20, per_volume=2), seed=0)
    pool = CropPool(jobs, pool_size=6, seed=0)
    first = pool.batch(4)
    assert first.shape == (4, 20, 20, 20) and len(pool.crops) <= 6 + 2
    state = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in pool.state_dict().items()}
    ahead = [pool.batch(4) for _ in range(3)]
    for workers in (0, 2):  # DataLoader workers run the same jobs in the same order
        resumed = CropPool(jobs, pool_size=6, seed=0, num_workers=workers)
        resumed.load_state_dict(state)
        assert all(torch.equal(a, b) for a, b in zip(ahead, [resumed.batch(4) for _ in range(3)]))


@pytest.mark.parametrize("anisotropic", [False, True])
def test_pairs_sizes_coordinates_and_targets(anisotropic):
    options = PairOptions(lr_size=5, scale=(2.0, 4.0), anisotropic=anisotropic, samples=300,
                          methods={"kspace": 1.0, "cubic": 1.0})
    examples = datasets.draw_examples(6, options, torch.Generator().manual_seed(0))
    crops = torch.rand(6, 20, 20, 20)
    lr, coords, targets = datasets.make_pairs(crops, examples, options, torch.device("cpu"))
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
    examples = datasets.draw_examples(40, options, torch.Generator().manual_seed(0))
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
    examples = datasets.draw_examples(3, options, torch.Generator().manual_seed(1))
    crop = torch.from_numpy(np.ascontiguousarray(mni_t1.data[60:78, 80:98, 60:78], dtype=np.float32))
    lr, _, _ = datasets.make_pairs(torch.stack([crop] * 3), examples, options, torch.device("cpu"))
    for i, example in enumerate(examples):
        axis = [a for a, m in enumerate(example.method) if isinstance(m, SliceModel)][0]
        start = [(18 - s) // 2 for s in example.hr_shape]
        hr = crop[tuple(slice(a, a + s) for a, s in zip(start, example.hr_shape))].numpy().astype(np.float64)
        slabs = np.moveaxis(hr, axis, 0).reshape(6, 3, 6, 6).mean(axis=1)
        assert np.allclose(lr[i, 0].numpy(), np.moveaxis(slabs, 0, axis), atol=1e-4 * hr.max())


def test_pairs_of_a_slice_equal_the_slice_of_pairs_with_noise_and_bias():
    options = PairOptions(lr_size=5, samples=100, methods={"lanczos": 1.0}, noise="rician",
                          noise_std=(0.0, 0.05), bias=(0.1, 0.3))
    examples = datasets.draw_examples(4, options, torch.Generator().manual_seed(1))
    crops = torch.rand(4, 20, 20, 20)
    whole = datasets.make_pairs(crops, examples, options, torch.device("cpu"))
    part = datasets.make_pairs(crops[2:], examples[2:], options, torch.device("cpu"))
    assert all(torch.equal(w[2:], p) for w, p in zip(whole, part))
    plain = [replace(e, noise_std=0.0, bias=0.0) for e in examples]
    clean = datasets.make_pairs(crops, plain, replace(options, noise=None), torch.device("cpu"))
    assert not torch.allclose(whole[0], clean[0]) and torch.equal(whole[2], clean[2])


def test_synthetic_source_gives_head_crops():
    jobs = CropJobs(None, CropOptions(size=40, per_volume=2), seed=0)
    crops = jobs[0]
    assert crops.shape == (2, 40, 40, 40) and float((crops > 0.1).float().mean()) >= 0.5
    assert not torch.equal(crops, jobs[1])


def test_a_synthetic_share_mixes_synthetic_jobs_into_real_subjects(tmp_path, mni_t1):
    from arssr.volume import save_volume

    path = tmp_path / "real.nii.gz"
    save_volume(mni_t1, path)
    jobs = CropJobs([str(path)], CropOptions(size=40, per_volume=1), seed=0, synthetic_share=0.4)
    kinds = [jobs.subject(k) is None for k in range(200)]
    assert 0.3 < np.mean(kinds) < 0.5
    assert [jobs.subject(k) for k in range(50)] == [jobs.subject(k) for k in range(50)]  # seeded per job
    assert all(s is None for s in (CropJobs(None, CropOptions(), 0).subject(k) for k in range(5)))
    assert all(s == str(path) for s in (CropJobs([str(path)], CropOptions(), 0).subject(k) for k in range(5)))
