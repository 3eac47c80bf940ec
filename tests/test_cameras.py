import math

import pytest
import torch

from spectral_tracking.cameras import Cameras, intrinsics_from_fovy, orbit_camera, scene_scale, view_volume


def _project(cams, points):
    R, t = cams.viewmats[:, :3, :3], cams.viewmats[:, :3, 3]
    pc = points @ R.transpose(-1, -2) + t[:, None]
    uv = pc @ cams.Ks.transpose(-1, -2)
    return uv[..., :2] / uv[..., 2:], pc[..., 2]


def test_orbit_rig_positions_and_azimuth_direction():
    cams = orbit_camera([0, 90, 180, 270], width=64, height=64)
    expected = torch.tensor([[0, 0, 2.0], [2.0, 0, 0], [0, 0, -2.0], [-2.0, 0, 0]])
    assert torch.allclose(cams.centers, expected, atol=1e-6)


def test_origin_projects_to_image_centre_and_axes_follow_opencv():
    cams = orbit_camera(0.0, width=64, height=48)
    uv, z = _project(cams, torch.tensor([[0.0, 0, 0], [0.1, 0, 0], [0, 0.1, 0]]))
    assert torch.allclose(uv[0, 0], torch.tensor([32.0, 24.0]))
    assert z[0, 0] == pytest.approx(2.0)
    assert uv[0, 1, 0] > 32  # world +x is to the right from azimuth 0
    assert uv[0, 2, 1] < 24  # world +y (up) is towards the top of the image (v decreases)


def test_fovy_matches_intrinsics():
    K = intrinsics_from_fovy(49.1, 256, 256)
    assert 2 * math.degrees(math.atan(128 / K[1, 1])) == pytest.approx(49.1)


def test_elevation_above_equator():
    cams = orbit_camera(0.0, elevation_deg=30, width=32, height=32)
    assert cams.centers[0, 1] == pytest.approx(1.0, abs=1e-6)


def test_bad_cameras():
    with pytest.raises(ValueError, match="Ks"):
        Cameras(torch.zeros(1, 2, 3), torch.eye(4)[None], 8, 8)
    with pytest.raises(ValueError, match="size"):
        Cameras(torch.eye(3)[None], torch.eye(4)[None], 0, 8)
    with pytest.raises(ValueError, match="non-finite"):
        Cameras(torch.full((1, 3, 3), math.nan), torch.eye(4)[None], 8, 8)


def test_indexing_and_resize():
    cams = orbit_camera([0, 90, 180], width=64, height=64)
    assert len(cams[1]) == 1 and torch.equal(cams[1].viewmats[0], cams.viewmats[1])
    half = cams.resized(32, 32)
    assert torch.allclose(half.Ks[:, :2], cams.Ks[:, :2] / 2)


def test_view_volume_of_orbit_rig_and_single_view():
    cams = orbit_camera([0, 90, 180, 270], 10, 2.0, width=64, height=48)
    c, r = view_volume(cams)
    assert c.norm() < 1e-4 and 0.5 < r < 1.0
    one = orbit_camera([30], 0, 3.0, width=64, height=64)
    c1, r1 = view_volume(one)
    assert c1.norm() < 1e-4  # the axis point closest to the origin is the origin (camera looks at it)
    assert r1 == pytest.approx(3.0 * math.sin(math.radians(49.1 / 2)), rel=1e-4)
    assert scene_scale(cams) == pytest.approx(1.1 * 2.0, rel=1e-5)  # gsplat: 1.1 x the farthest camera
