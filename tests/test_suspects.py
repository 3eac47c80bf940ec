"""The options added to test the tracking-quality suspects: SVD control-point rotations, the LR
schedule held after lr_decay, the scale-preserving term."""

import math

import pytest
import torch

from spectral_tracking.deform import build_deformation
from spectral_tracking.gaussians import quat_to_rotmat, random_gaussians
from spectral_tracking.losses.scale import ScalePrior, spread
from spectral_tracking.tracking.module import lr_factor


def _rotation(seed: int) -> torch.Tensor:
    return quat_to_rotmat(torch.randn(4, generator=torch.Generator().manual_seed(seed)))


def test_svd_rotations_of_a_rigidly_rotated_neighbourhood_equal_that_rotation():
    asset = random_gaussians(400, sh_degree=0, extent=0.5, seed=1)
    d = build_deformation("direct", asset, 2, num_control_points=30, rotation_source="svd")
    R, t = _rotation(5), torch.tensor([0.2, -0.1, 0.3])
    c = d.canonical_control_points
    with torch.no_grad():
        d.offsets[1] = c @ R.T + t - c  # every control point moved rigidly; the learned rotations stay identity
    q = d.svd_rotations(d.offsets[1])
    torch.testing.assert_close(quat_to_rotmat(q), R.expand(30, 3, 3), atol=1e-5, rtol=0)
    # the asset then moves rigidly too: means x -> R x + t, orientations turned by R
    out = d(1)
    torch.testing.assert_close(out.means, asset.means @ R.T + t, atol=1e-4, rtol=0)
    torch.testing.assert_close(quat_to_rotmat(out.quats), R @ quat_to_rotmat(asset.quats), atol=1e-4, rtol=0)
    learned = build_deformation("direct", asset, 2, num_control_points=30)
    with torch.no_grad():
        learned.offsets[1] = c @ R.T + t - c
    assert not torch.allclose(learned(1).means, asset.means @ R.T + t, atol=1e-2)  # learned rotations stayed identity


def test_rotation_source_is_checked():
    asset = random_gaussians(100, sh_degree=0, extent=0.5, seed=1)
    with pytest.raises(ValueError, match="rotation_source must be one of learned, svd, got 'pca'"):
        build_deformation("mlp", asset, 2, num_control_points=20, rotation_source="pca", depth=2, width=8, skip=-1)


def test_lr_schedule_decays_then_holds():
    # SC4D / GSGD: 10k steps, decay over 3,500, final ratio 0.5
    assert lr_factor(0, 0.5, 3500) == 1.0
    assert lr_factor(1750, 0.5, 3500) == pytest.approx(math.sqrt(0.5))
    assert lr_factor(3500, 0.5, 3500) == pytest.approx(0.5)
    assert lr_factor(9000, 0.5, 3500) == pytest.approx(0.5)  # held
    assert lr_factor(250, 0.1, 500) == pytest.approx(math.sqrt(0.1))  # lr_decay 1.0 on a 500-step run


def test_scale_prior_is_zero_for_rigid_motion_and_log_squared_for_scaling():
    pts = torch.randn(50, 3, generator=torch.Generator().manual_seed(0))
    prior = ScalePrior(pts)
    R, t = _rotation(2), torch.tensor([1.0, 2.0, -0.5])
    assert float(prior(pts @ R.T + t)) == pytest.approx(0.0, abs=1e-10)
    frames = torch.stack([pts * 1.2, pts * 0.9 + t])
    expected = (math.log(1.2) ** 2 + math.log(0.9) ** 2) / 2
    assert float(prior(frames)) == pytest.approx(expected, rel=1e-5)
    assert float(spread(pts * 2) / spread(pts)) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="zero spread"):
        ScalePrior(torch.ones(5, 3))
