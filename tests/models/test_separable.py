"""The separable query that inference runs equals ``ArSSR.query`` (grid_sample) on the regular output grid."""

import pytest
import torch
import torch.nn.functional as F

from arssr import geometry
from arssr.inference import example_volume_path
from arssr.intensity import intensity_window, normalize
from arssr.models.separable import AxisPlan, SeparableQuery
from arssr.volume import load_volume

from conftest import make_tiny_model


@pytest.mark.parametrize("residual", [False, True], ids=["plain", "residual"])
def test_separable_query_equals_model_query_on_real_anatomy(residual):
    """The shipped MNI152 T1 (3 mm), upsampled by a different factor on each axis."""
    data = load_volume(example_volume_path()).data
    lr = torch.from_numpy(normalize(data, intensity_window(data, "percentile")))[None, None]
    model = make_tiny_model(residual=residual)
    out_shape = geometry.output_shape(data.shape, (2.0, 1.5, 1.3))
    with torch.no_grad():
        features = model.encode(lr)
        coords = geometry.grid_coordinates(out_shape).reshape(1, -1, 3)
        reference = torch.cat([model.query(features, part, lr=lr) for part in coords.split(1 << 16, dim=1)], dim=1)
        # SeparableQuery reads a channels-last block padded by one voxel: zeros for features, edges for the LR.
        padded = F.pad(features, (1, 1, 1, 1, 1, 1))[0].permute(1, 2, 3, 0)
        base = F.pad(lr, (1, 1, 1, 1, 1, 1), mode="replicate")[0].permute(1, 2, 3, 0) if residual else None
        query = SeparableQuery(model, [AxisPlan.build(n, m) for n, m in zip(data.shape, out_shape)], chunk=4096)
        separable = torch.empty(out_shape)
        for (r0, r1), values in query.block(padded, (0, 0, 0), [(0, m) for m in out_shape], base):
            separable[r0:r1] = values
    reference = reference.reshape(out_shape)
    assert reference.std() > 1e-3  # the random model's output follows the anatomy
    assert (separable - reference).abs().max() < 1e-5  # normalised units: 1e-5 of the intensity window
