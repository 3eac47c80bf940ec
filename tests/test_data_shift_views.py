"""Shift of the canonical, initial overlap and view selection."""

import pytest
import torch

from spectral_tracking.cameras import orbit_camera
from spectral_tracking.data import generate, load_sequence, select_views
from spectral_tracking.data.sequence import Sequence
from spectral_tracking.tracking.start import initial_overlap, mask_iou, random_direction, shift_canonical
from spectral_tracking.gaussians import random_gaussians


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return generate("humanoid_wave", frames=3, resolution=32, num_gaussians=400, root=tmp_path_factory.mktemp("syn"))


def test_random_direction_is_seeded_and_uniform():
    d = random_direction(7)
    assert torch.equal(d, random_direction(7)) and not torch.equal(d, random_direction(8))
    assert abs(float(d.norm()) - 1) < 1e-6
    dirs = torch.stack([random_direction(s) for s in range(3000)])
    assert dirs.mean(0).abs().max() < 0.05  # no preferred direction
    assert torch.allclose((dirs ** 2).mean(0), torch.full((3,), 1 / 3), atol=0.03)  # isotropic
    assert abs(float((dirs[:, 1] > 0.5).float().mean()) - 0.25) < 0.03  # uniform in height (Archimedes)


def test_shift_canonical_moves_by_radius():
    g = random_gaussians(30, seed=0)
    for r in (0.0, 0.25, 0.5, 1.0):
        s, d = shift_canonical(g, r, seed=3)
        off = s.means - g.means
        assert torch.allclose(off, (r * d).expand_as(off), atol=1e-6)
        assert torch.equal(d, random_direction(3))
        assert torch.equal(s.quats, g.quats) and torch.equal(s.sh, g.sh)
    with pytest.raises(ValueError, match="radius"):
        shift_canonical(g, -0.1, 0)


def test_mask_iou_hand_cases():
    a = torch.zeros(4, 4)
    b = torch.zeros(4, 4)
    a[:2, :2] = 1  # 4 pixels
    b[1:3, 1:3] = 1  # 4 pixels, 1 shared
    assert mask_iou(a, b) == pytest.approx(1 / 7)
    assert mask_iou(a, a) == 1.0
    assert mask_iou(torch.zeros(3, 3), torch.zeros(3, 3)) == 1.0  # nothing to miss (metrics.mask_iou)
    with pytest.raises(ValueError):
        mask_iou(a, torch.zeros(3, 3))


def test_initial_overlap_falls_with_shift(folder):
    seq = select_views(load_sequence(folder), 4)
    base = initial_overlap(seq.canonical, seq)
    assert min(base) > 0.97
    sideways = seq.canonical.translate(torch.tensor([1.2, 0.0, 0.0]))  # out of the 0 and 180 degree footprints
    ious = initial_overlap(sideways, seq)
    assert ious[0] == 0.0 and ious[2] == 0.0
    assert ious[1] > 0.3 and ious[3] > 0.3  # along the viewing axis of the 90 / 270 cameras: still overlapping
    shifted, direction = shift_canonical(seq.canonical, 0.5, seed=0)
    assert all(0.0 <= v < min(base) for v in initial_overlap(shifted, seq))


def test_select_views_errors_and_camera_azimuths(folder):
    seq = load_sequence(folder)
    with pytest.raises(ValueError, match="1, 2 or 4"):
        select_views(seq, 3)
    mono = Sequence(canonical=None, cameras=seq.cameras[[0]], view_names=["front"], azimuths=[None],
                    images=seq.images[:1], masks=seq.masks[:1], supervision_views=[0], novel_views=[])
    assert select_views(mono, 1).train_views == [0]  # azimuth recovered from the camera centre
    with pytest.raises(ValueError, match=r"180\.0.*front"):
        select_views(mono, 2)
    rotated = orbit_camera([0.0, 90.0, 180.0, 270.0, 45.0, 135.0], width=32, height=32)
    noaz = Sequence(canonical=None, cameras=rotated, view_names=list("abcdef"), azimuths=[None] * 6,
                    images=seq.images, masks=seq.masks, supervision_views=[0, 1, 2, 3], novel_views=[4, 5])
    assert select_views(noaz, 2).train_views == [0, 2]

