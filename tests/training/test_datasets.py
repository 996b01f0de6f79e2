import warnings

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy import ndimage

from arssr.training import datasets
from arssr.training.datasets import CropJobs, CropOptions, CropPool
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
