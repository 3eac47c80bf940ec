"""Image metrics (PSNR, SSIM, LPIPS) and the 3D Gaussian tracking error (spectral_tracking.metrics)."""

from __future__ import annotations

import logging
import math
import os

import pytest
import torch

from spectral_tracking import metrics
from spectral_tracking.gaussians import quat_to_rotmat
from spectral_tracking.losses.lpips import LPIPS
from spectral_tracking.metrics import gaussian_3d_error, image_metrics, lpips, psnr, ssim
from spectral_tracking.weights import BUILD_COMMAND, CACHE_ENV_VAR, lpips_weights_path


def _images(b=2, h=32, w=40, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return 0.2 + 0.6 * torch.rand(b, h, w, 3, generator=gen)  # [B, H, W, 3] in [0.2, 0.8]


def test_psnr_identical_and_known_offsets():
    gt = _images()
    assert torch.isinf(psnr(gt, gt)).all()
    pred = gt.clone()
    pred[0] += 0.1  # MSE 1e-2 -> 20 dB
    pred[1] -= 0.01  # MSE 1e-4 -> 40 dB
    torch.testing.assert_close(psnr(pred, gt), torch.tensor([20.0, 40.0]), atol=1e-3, rtol=0)


def test_ssim_identical_and_constant_images():
    gt = _images()
    torch.testing.assert_close(ssim(gt, gt), torch.ones(2), atol=1e-6, rtol=0)
    # Constant images a, b: contrast/structure terms are C2/C2 = 1, luminance (2ab + C1) / (a^2 + b^2 + C1).
    a, b, c1 = 0.5, 0.25, 0.01**2
    pred = torch.full((1, 24, 24, 3), a)
    target = torch.full((1, 24, 24, 3), b)
    assert abs(ssim(pred, target).item() - (2 * a * b + c1) / (a * a + b * b + c1)) < 1e-5
    # Noise lowers SSIM, more noise lowers it more.
    gen = torch.Generator().manual_seed(1)
    noise = torch.randn(gt.shape, generator=gen)
    s_small, s_big = ssim(gt + 0.02 * noise, gt), ssim(gt + 0.1 * noise, gt)
    assert (s_small < 1).all() and (s_big < s_small).all()


def test_shape_checks():
    gt = _images()
    with pytest.raises(ValueError, match=r"\[B, H, W, 3\]"):
        psnr(gt.permute(0, 3, 1, 2), gt.permute(0, 3, 1, 2))
    with pytest.raises(ValueError, match="differ in shape"):
        ssim(gt[:1], gt)
    with pytest.raises(TypeError, match="float"):
        psnr((gt * 255).to(torch.uint8), (gt * 255).to(torch.uint8))


def test_image_metrics_without_lpips_weights(tmp_path, monkeypatch, caplog):
    """Missing LPIPS weights: lpips() is None with one clear warning; PSNR and SSIM still run."""
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path))
    monkeypatch.setattr(metrics, "_warned_missing_lpips", set())
    gt = _images()
    pred = (gt + 0.05).clamp(0, 1)
    with caplog.at_level(logging.WARNING, logger="spectral_tracking.metrics"):
        assert lpips(pred, gt) is None
        out = image_metrics(pred, gt)
        out_again = image_metrics(pred, gt)
    assert set(out) == {"psnr", "ssim"} and out == out_again
    assert abs(out["psnr"] - 20 * math.log10(1 / 0.05)) < 1e-3
    assert out["ssim"] == pytest.approx(float(ssim(pred, gt).mean()))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert str(tmp_path / "lpips" / "alex.pt") in warnings[0] and BUILD_COMMAND in warnings[0]


def test_image_metrics_clamps_pred_and_checks_gt():
    gt = _images()
    gt[:, :4] = 1.0
    pred = gt.clone()
    pred[:, :4] = 1.3  # overshoot where the target is white: identical after clamping
    out = image_metrics(pred, gt, lpips_net="alex")
    assert math.isinf(out["psnr"]) and out["ssim"] == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        image_metrics(gt, gt * 255)


def test_image_metrics_lpips_matches_module():
    path = lpips_weights_path("alex")
    if not path.is_file():
        msg = f"LPIPS weights not built at {path} (run `{BUILD_COMMAND}`)"
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail(msg)
        pytest.skip(msg)
    i = torch.arange(64).view(64, 1)
    j = torch.arange(64).view(1, 64)
    x = torch.stack([((3 * i + 5 * j + 17 * c) % 64).float() / 63.0 for c in range(3)], dim=-1)[None]  # [1, 64, 64, 3]
    y = torch.roll(x, shifts=3, dims=2)
    out = image_metrics(y, x)
    assert abs(out["lpips"] - 0.058685) < 1e-5  # the official alex value for this pair
    with torch.no_grad():
        assert out["lpips"] == pytest.approx(LPIPS("alex")(y.permute(0, 3, 1, 2), x.permute(0, 3, 1, 2)).item())
    assert lpips(x, x).item() == 0.0


def _points(t=3, n=50, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(t, n, 3, generator=gen, dtype=torch.float64)  # [T, N, 3]


def test_3d_error_known_offset():
    gt = _points()
    offset = torch.tensor([0.3, 0.0, -0.4], dtype=torch.float64)  # length 0.5
    out = gaussian_3d_error(gt + offset, gt, radius=2.0)
    assert out["mean_error"] == pytest.approx(0.25, abs=1e-12)
    assert out["size_ratio"] == pytest.approx(1.0, abs=1e-12)
    assert gaussian_3d_error(gt, gt, radius=2.0) == {"mean_error": 0.0, "size_ratio": 1.0}


def test_3d_error_known_scaling_and_rotation():
    gt = _points()
    centroid = gt.mean(dim=1, keepdim=True)
    scaled = centroid + 1.5 * (gt - centroid)
    out = gaussian_3d_error(scaled, gt, radius=0.5)
    assert out["size_ratio"] == pytest.approx(1.5, abs=1e-12)
    # each point moves by 0.5 * its distance to the centroid
    expected = (0.5 * (gt - centroid).norm(dim=-1)).mean().item() / 0.5
    assert out["mean_error"] == pytest.approx(expected, rel=1e-12)
    # a rotation about the centroid misplaces points but keeps the size
    R = quat_to_rotmat(torch.tensor([math.cos(0.4), 0.0, math.sin(0.4), 0.0], dtype=torch.float64))  # [3, 3]
    rotated = centroid + (gt - centroid) @ R.T
    out = gaussian_3d_error(rotated, gt, radius=1.0)
    assert out["size_ratio"] == pytest.approx(1.0, abs=1e-12) and out["mean_error"] > 0.1
    # the ratio is averaged over frames: x1 in frame 0, x2 in frame 1
    two = gt[:2]
    c2 = two.mean(dim=1, keepdim=True)
    grown = c2 + torch.tensor([1.0, 2.0], dtype=torch.float64).view(2, 1, 1) * (two - c2)
    assert gaussian_3d_error(grown, two, radius=1.0)["size_ratio"] == pytest.approx(1.5, abs=1e-12)


def test_3d_error_checks():
    gt = _points()
    with pytest.raises(ValueError, match=r"\[T, N, 3\]"):
        gaussian_3d_error(gt[0], gt[0], radius=1.0)
    with pytest.raises(ValueError, match="differ in shape"):
        gaussian_3d_error(gt[:, :10], gt, radius=1.0)
    with pytest.raises(ValueError, match="radius"):
        gaussian_3d_error(gt, gt, radius=0.0)
    with pytest.raises(ValueError, match="single point"):
        gaussian_3d_error(gt, torch.zeros_like(gt), radius=1.0)


def test_gsgd_protocol_pools_psnr_over_the_view_with_the_targets_range():
    import math

    from spectral_tracking.metrics import gsgd_view_metrics, psnr

    g = torch.Generator().manual_seed(0)
    gt = 0.2 + 0.6 * torch.rand(20, 32, 32, 3, generator=g)  # range about 0.6, not 1
    pred = (gt + 0.05 * torch.randn(20, 32, 32, 3, generator=g)).clamp(0, 1)
    pred[3] = 1.0 - gt[3]  # one bad frame weighs more in a pooled MSE than in a mean of per-image PSNRs
    m = gsgd_view_metrics(pred, gt, size=None)
    first = slice(0, 14)  # GSGD keeps the first 14 frames
    mse = float((pred[first] - gt[first]).square().mean())
    rng = float(gt[first].max() - gt[first].min())
    assert m["psnr"] == pytest.approx(10 * math.log10(rng ** 2 / mse), rel=1e-6)
    assert m["psnr"] < float(psnr(pred[first], gt[first]).mean())
    assert gsgd_view_metrics(gt, gt, size=None)["psnr"] == float("inf")


def test_pose_errors_split_a_turn_from_a_depth_offset():
    from spectral_tracking.metrics import pose_errors

    gt = _points()
    centroid = gt.mean(dim=1, keepdim=True)
    R = quat_to_rotmat(torch.tensor([math.cos(0.3), 0.0, math.sin(0.3), 0.0], dtype=torch.float64))  # 34.4 degrees
    axis = torch.tensor([0.0, 0.0, 2.0], dtype=torch.float64)  # normalised inside
    moved = centroid + (gt - centroid) @ R.T + torch.tensor([0.4, 0.0, -0.25], dtype=torch.float64)
    out = pose_errors(moved, gt, axis, radius=0.5)
    assert out["rotation"] == pytest.approx([math.degrees(0.6)] * 3, abs=1e-9)
    assert out["depth"] == pytest.approx([-0.5] * 3, abs=1e-12)  # nearer by 0.25, in radii; the sideways 0.4 unseen
    still = pose_errors(gt, gt, axis, radius=0.5)
    assert still["rotation"] == pytest.approx([0.0] * 3, abs=1e-5) and still["depth"] == pytest.approx([0.0] * 3, abs=1e-12)
    # a mirror is not a rotation: the best proper rotation of a reflected body is not 0
    mirrored = centroid + (gt - centroid) * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    assert min(pose_errors(mirrored, gt, axis, radius=0.5)["rotation"]) > 1.0
    with pytest.raises(ValueError, match="expected two"):
        pose_errors(gt[:, :5], gt, axis, radius=0.5)
