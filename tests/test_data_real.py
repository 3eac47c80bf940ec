"""Real data: the donut asset with procedural motion, and the Consistent4D videos (skip when ../shared is absent)."""

import math

import pytest
import torch

from spectral_tracking.data.consistent4d import load_consistent4d
from spectral_tracking.data.creatures import axis_angle
from spectral_tracking.data.donut import bend, deform_field, donut_motion, load_donut, squash, twist
from spectral_tracking.errors import DataNotFoundError
from spectral_tracking.data.folder import load_sequence
from spectral_tracking.data.synthetic import generate
from spectral_tracking.gaussians import random_gaussians


def test_deform_field_rotation_and_squash():
    g = random_gaussians(50, seed=0)
    R = torch.as_tensor(axis_angle((0.3, 1.0, -0.2), 0.7), dtype=torch.float64)
    rot = deform_field(g, lambda x: x @ R.T)
    assert torch.allclose(rot.means, (g.means.double() @ R.T).float(), atol=1e-5)
    assert torch.allclose(rot.covariances(), (R.float() @ g.covariances() @ R.T.float()), atol=1e-6, rtol=1e-3)
    sq = deform_field(g, lambda x: squash(x, 0.3))
    # volume preserving: det(Sigma) unchanged; y extent shrinks
    assert torch.allclose(torch.linalg.det(sq.covariances().double()), torch.linalg.det(g.covariances().double()), rtol=1e-3)
    assert torch.allclose(sq.means[:, 1], g.means[:, 1] * 0.7, atol=1e-6)


def test_bend_and_twist_fields():
    x = torch.randn(100, 3, dtype=torch.float64) * 0.3
    assert torch.allclose(bend(x, 0.0), x) and torch.allclose(twist(x, 0.0), x)
    # twist is a rotation about x per point: preserves the distance to the x axis
    t = twist(x, 2.0)
    assert torch.allclose(t[:, 1:].norm(dim=-1), x[:, 1:].norm(dim=-1)) and torch.allclose(t[:, 0], x[:, 0])
    # bend maps the x axis onto a circle of radius 1 / kappa about (0, 1 / kappa, 0)
    line = torch.stack([torch.linspace(-0.5, 0.5, 11), torch.zeros(11), torch.zeros(11)], -1).double()
    b = bend(line, 2.0)
    assert torch.allclose((b - torch.tensor([0.0, 0.5, 0.0], dtype=torch.float64)).norm(dim=-1), torch.full((11,), 0.5, dtype=torch.float64))


def test_donut_asset_and_motion(donut_ply):
    g, rec = load_donut(donut_ply)
    assert g.num_gaussians == 45624 and abs(g.bounding_sphere()[1] - 0.5) < 1e-4
    # the donut's top (+z of the file) now points mostly up (+y)
    lo, hi = g.means.min(0).values, g.means.max(0).values
    assert (hi - lo)[1] > (hi - lo)[2] * 0.5
    sub = g.subset(torch.arange(0, g.num_gaussians, 20))
    for motion in ("bend", "twist", "squash"):
        frames = donut_motion(sub, motion, 5)
        assert torch.allclose(frames[0].means, sub.means, atol=1e-5)
        assert float((frames[1].means - sub.means).norm(dim=-1).max()) > 0.05
        frames[1].check_finite(motion)
    with pytest.raises(ValueError, match="unknown donut motion"):
        donut_motion(sub, "spin", 3)


def test_donut_missing_asset_message(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"nope\.ply.*donut"):
        load_donut(tmp_path / "nope.ply")


@pytest.mark.slow
def test_donut_sequence_generation(donut_ply, tmp_path):
    folder = generate("donut_squash", frames=2, resolution=32, root=tmp_path, donut_ply=donut_ply)
    seq = load_sequence(folder)
    assert seq.canonical.num_gaussians == 45624 and seq.num_views == 6 and seq.num_frames == 2
    assert seq.meta["provenance"].startswith("real trained 3DGS donut")
    assert float(seq.masks[:, 0].float().mean()) > 10  # the donut is visible


def test_consistent4d_real_video(consistent4d_dir):
    seq = load_consistent4d(consistent4d_dir / "roaring_t-rex", resolution=64)
    assert seq.images.shape == (1, 32, 64, 64, 3) and seq.canonical is None
    assert seq.meta["source_size"] == [720, 720]
    cov = seq.masks.float().mean((0, 2, 3)) / 255
    assert torch.all(cov > 0.02) and torch.all(cov < 0.8)  # the animal is in every frame, not everywhere
    assert torch.allclose(seq.cameras.centers[0], torch.tensor([0.0, 0.0, 2.0]), atol=1e-5)
    assert math.isclose(float(seq.cameras.Ks[0, 1, 1]), 32 / math.tan(math.radians(49.1) / 2), rel_tol=1e-5)
    assert seq.masks[0, 0].float().std() > 50  # a real mask, not blank
