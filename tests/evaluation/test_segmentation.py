"""Atropos tissue labels on real anatomy, and atlas regions on synthetic label maps."""

import numpy as np
import pytest
from sklearn.cluster import KMeans

from arssr.errors import InputError
from arssr.metrics import brain_mask, dice
from arssr.evaluation.segmentation import REGIONS, TISSUES, atlas_regions, atropos_tissues

from conftest import needs_ants


@pytest.fixture(scope="module")
def mni_3mm(mni_t1):
    data = np.ascontiguousarray(mni_t1.data[::3, ::3, ::3])
    return data, brain_mask(data)


@needs_ants
def test_atropos_labels_tissues_by_intensity_on_mni(mni_3mm):
    data, mask = mni_3mm
    labels = atropos_tissues(data, mask, spacing=(3, 3, 3))
    assert labels.shape == data.shape and labels.dtype == np.uint8
    assert not labels[~mask].any() and labels[mask].min() == 1
    means = [data[labels == k].mean() for k in (1, 2, 3)]
    assert means[0] < means[1] < means[2]  # CSF < GM < WM on a T1
    fractions = np.bincount(labels[mask], minlength=4)[1:] / mask.sum()
    assert (fractions > 0.1).all(), fractions
    # An independent three-cluster k-means of the brain's intensities agrees on most voxels.
    kmeans = KMeans(3, n_init=4, random_state=0).fit(data[mask].reshape(-1, 1))
    order = np.argsort(kmeans.cluster_centers_.ravel())
    reference = np.zeros_like(labels)
    reference[mask] = np.argsort(order)[kmeans.labels_] + 1
    scores = dice(labels, reference, TISSUES)
    assert min(scores.values()) > 0.8, scores
    # The MRF visits voxels in a random order: repeat runs agree almost everywhere.
    again = atropos_tissues(data, mask, spacing=(3, 3, 3))
    assert min(dice(labels, again, TISSUES).values()) > 0.99


@needs_ants
def test_atropos_refuses_a_mismatched_or_empty_mask(mni_3mm):
    data, mask = mni_3mm
    with pytest.raises(InputError, match="does not match"):
        atropos_tissues(data, mask[1:])
    with pytest.raises(InputError, match="too few"):
        atropos_tissues(data, np.zeros_like(mask))


def test_atlas_regions_split_deep_grey_and_cerebellum():
    tissues = np.array([1, 2, 3, 2, 3, 1, 2, 3, 0], dtype=np.uint8).reshape(1, 1, 9)
    atlas = np.array([71, 71, 71, 91, 116, 91, 0, 0, 78], dtype=np.int32).reshape(1, 1, 9)
    regions = atlas_regions(tissues, atlas).ravel().tolist()
    d, c = REGIONS["deep GM"], REGIONS["cerebellum"]
    # CSF stays CSF, GM in the caudate is deep GM, WM there stays WM, GM or WM in the cerebellum is cerebellum.
    assert regions == [1, d, 3, c, c, 1, 2, 3, 0]
    with pytest.raises(InputError, match="atlas shape"):
        atlas_regions(tissues, atlas[..., :4])


@needs_ants
def test_atropos_segments_integer_data_with_few_levels(mni_t1):
    """A 0.5 mm uint8 crop quantised to 8 levels: a class of one intensity no longer stops Atropos."""
    from scipy.ndimage import zoom

    crop = zoom(mni_t1.data[86:110, 104:128, 82:106], 2, order=0)
    data = np.rint(8 * crop / crop.max()).astype(np.uint8)
    labels = atropos_tissues(data, brain_mask(data.astype(np.float32)), (0.5, 0.5, 0.5))
    assert labels.shape == (48, 48, 48) and set(np.unique(labels)) == {0, 1, 2, 3}
    means = [data[labels == k].mean() for k in (1, 2, 3)]
    assert means == sorted(means)
