import numpy as np
import pytest
import torch

from arssr.evaluation import baseline, evaluate, markdown_table, model_method, simulate_lr
from arssr.degrade import kspace


def band_limited(shape, seed=0):
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[2 * np.pi * (np.arange(n) + 0.5) / n for n in shape], indexing="ij")
    out = np.full(shape, 50.0)
    for _ in range(4):
        f = rng.integers(0, 3, size=3)
        out += rng.uniform(5, 10) * np.cos(f[0] * grids[0] + f[1] * grids[1] + f[2] * grids[2] + rng.uniform(0, 6))
    return out.astype(np.float32)


def test_simulated_lr_has_rounded_shape_and_matches_the_degradation():
    hr = band_limited((33, 30, 24))
    lr = simulate_lr(hr, 3.2, "kspace")
    assert lr.shape == (10, 9, 8)  # round(33 / 3.2), round(30 / 3.2), round(24 / 3.2)
    np.testing.assert_allclose(lr, kspace(torch.from_numpy(hr).double(), (10, 9, 8)).numpy(), atol=1e-4)
    assert simulate_lr(hr, (1, 1, 4), "cubic").shape == (33, 30, 6)


def test_zero_filled_kspace_inverts_kspace_truncation_of_a_band_limited_volume():
    hr = band_limited((32, 30, 28))
    lr = simulate_lr(hr, 2, "kspace")
    # Exact up to the clip to the LR's intensity range that every method gets.
    np.testing.assert_allclose(baseline("kspace")(lr, hr.shape), np.clip(hr, lr.min(), lr.max()), atol=1e-3)
    assert np.abs(baseline("cubic")(lr, hr.shape) - hr).max() > 0.01


def test_evaluate_records_scores_on_real_anatomy(mni_t1):
    gt = mni_t1.data[60:108, 70:118, 60:100]
    calls = []

    def perfect(lr, shape):
        calls.append((lr.shape, shape))
        return gt.copy()

    methods = {"cubic": baseline("cubic"), "kspace": baseline("kspace"), "perfect": perfect}
    records = evaluate(gt, methods, [2, 3.2], ["kspace", "cubic"], subject="mni", mask=gt > 40)
    assert len(records) == 2 * 2 * 3
    assert calls[0] == ((24, 24, 20), gt.shape) and calls[1] == ((15, 15, 13), gt.shape)
    for record in records:
        if record.method == "perfect":
            assert record.psnr == float("inf")
            continue
        lr = simulate_lr(gt, record.scale, record.degradation)
        estimate = methods[record.method](lr, gt.shape)
        mse = np.mean((estimate.astype(np.float64) - gt) ** 2)
        assert record.psnr == pytest.approx(10 * np.log10(np.ptp(gt) ** 2 / mse), abs=1e-6)
        assert 15 < record.psnr < 45 and 0.3 < record.ssim < 1
    by_scale = {(r.method, r.scale): r.psnr for r in records if r.degradation == "kspace"}
    assert by_scale[("cubic", 2)] > by_scale[("cubic", 3.2)]
    table = markdown_table(records)
    assert "| psnr (kspace) | x2 | x3.2 |" in table and "| perfect | inf | inf |" in table


def test_model_method_returns_the_ground_truth_grid(tiny_model):
    hr = band_limited((20, 18, 16))
    lr = simulate_lr(hr, 2.5, "lanczos")
    out = model_method(tiny_model, device="cpu")(lr, hr.shape)
    assert out.shape == hr.shape and out.dtype == np.float32
    assert lr.min() <= out.min() and out.max() <= lr.max()
