"""The trajectory's rigid poses refined on the frames' pixels (tracking/refine.py, search.refine_steps)."""

import pytest
import torch
from omegaconf import OmegaConf

from spectral_tracking.data import load_dataset
from spectral_tracking.gaussians import axis_angle_matrix, rotation_degrees
from spectral_tracking.render import render
from spectral_tracking.tracking.refine import refine_trajectory

UP = torch.tensor([0.0, 1.0, 0.0])


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """The quadruped at 48 px, one view, three frames: turned 0, 25 and 50 degrees about the vertical
    (about its centre) and moved 0.1 a frame along x. (scene, true Rs [3, 3, 3], bs [3, 3], images
    [1, 3, H, W, 3], masks [1, 3, H, W])."""
    ds = OmegaConf.create({"type": "synthetic", "preset": "quadruped_walk", "setting": "clean", "frames": 2,
                           "seed": 0, "root": str(tmp_path_factory.mktemp("data"))})
    scene = load_dataset(ds, 48)
    g = scene.canonical
    c = g.means.detach().double().mean(0)
    Rs, bs, rgb, alpha = [], [], [], []
    for t in range(3):
        R = axis_angle_matrix(UP, 25.0 * t).double()
        b = c + torch.tensor([0.1 * t, 0.0, 0.0]).double() - R @ c
        out = render(g.transform(R.float(), translation=b.float()), scene.cameras[[0]], background=torch.ones(3))
        Rs.append(R), bs.append(b), rgb.append(out.rgb[0].detach()), alpha.append(out.alpha[0].detach().reshape(48, 48))
    return scene, torch.stack(Rs), torch.stack(bs), torch.stack(rgb)[None], torch.stack(alpha)[None]


def _off(Rs, bs, degrees: float, shift: float):
    """The poses of frames 1 on turned a further ``degrees`` about the vertical (about the world origin)
    and moved by ``shift`` along z (the view's depth and sideways both change)."""
    turn = axis_angle_matrix(UP, degrees).double()
    Rs2, bs2 = Rs.clone(), bs.clone()
    Rs2[1:] = turn @ Rs[1:]
    bs2[1:] = (turn @ bs[1:, :, None])[..., 0] + torch.tensor([0.0, 0.0, shift]).double()
    return Rs2, bs2


def _errors(scene, Rs, bs, true_Rs, true_bs):
    c = scene.canonical.means.detach().double().mean(0)
    return ([rotation_degrees(R @ T.T) for R, T in zip(Rs, true_Rs)],
            [float((R @ c + b - (T @ c + u)).norm()) for R, b, T, u in zip(Rs, bs, true_Rs, true_bs)])


def test_the_refine_brings_each_frame_back_to_the_pose_its_pixels_show(frames):
    """Frames 1 and 2 started 8 degrees and 0.08 off their true poses: 40 steps on their pixels
    bring each within 1.5 degrees and under 0.6 of its centre error (one view: depth, as apparent size,
    converges slowest); frame 0 is kept as it is."""
    scene, Rs, bs, images, masks = frames
    start_Rs, start_bs = _off(Rs, bs, 8.0, 0.08)
    rot0, cen0 = _errors(scene, start_Rs, start_bs, Rs, bs)
    new_Rs, new_bs = refine_trajectory(scene.canonical, scene.cameras, images, masks, [0], start_Rs, start_bs,
                                       background=torch.ones(3), steps=40, lr=0.02)
    rot, cen = _errors(scene, new_Rs, new_bs, Rs, bs)
    assert rot[0] == 0 and cen[0] == 0 and torch.equal(new_bs[0], start_bs[0])
    for t in (1, 2):
        assert rot0[t] == pytest.approx(8.0, abs=0.01) and rot[t] < 1.5, (rot0, rot)
        assert cen[t] < 0.6 * cen0[t], (cen0, cen)


def test_the_refine_without_rotate_moves_only_the_translations_and_zero_steps_nothing(frames):
    """rotate=False (a trajectory whose turn the gate dropped): the rotations stay to the bit, the centres
    still come closer; steps=0 returns the poses unchanged."""
    scene, Rs, bs, images, masks = frames
    start_bs = bs.clone()
    start_bs[1:, 0] += 0.08
    new_Rs, new_bs = refine_trajectory(scene.canonical, scene.cameras, images, masks, [0], Rs, start_bs,
                                       background=torch.ones(3), steps=40, lr=0.04, rotate=False)
    assert torch.equal(new_Rs, Rs)
    _, cen0 = _errors(scene, Rs, start_bs, Rs, bs)
    _, cen = _errors(scene, new_Rs, new_bs, Rs, bs)
    assert all(cen[t] < 0.6 * cen0[t] for t in (1, 2)), (cen0, cen)
    same_Rs, same_bs = refine_trajectory(scene.canonical, scene.cameras, images, masks, [0], Rs, start_bs,
                                         background=torch.ones(3), steps=0, lr=0.02)
    assert torch.equal(same_Rs, Rs) and torch.equal(same_bs, start_bs)


def test_the_frames_refined_at_once_are_refined_as_each_alone(frames, monkeypatch):
    """All frames share one render a step (their moves are cameras): chunks of one frame give the
    same poses, so no frame's fit depends on another's."""
    import spectral_tracking.tracking.refine as refine_module

    scene, Rs, bs, images, masks = frames
    start_Rs, start_bs = _off(Rs, bs, 6.0, 0.05)
    kwargs = dict(background=torch.ones(3), steps=10, lr=0.02)
    together = refine_trajectory(scene.canonical, scene.cameras, images, masks, [0], start_Rs, start_bs, **kwargs)
    monkeypatch.setattr(refine_module, "PIXELS_PER_CHUNK", 1)
    alone = refine_trajectory(scene.canonical, scene.cameras, images, masks, [0], start_Rs, start_bs, **kwargs)
    for a, b in zip(together, alone):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_place_refines_the_trajectory_it_found_where_refine_steps_is_set(tmp_path, monkeypatch):
    """search.refine_steps reaches the refine where the turn gate kept the rotations (the depth with one
    view only where refine_depth says) and its seconds are recorded; at 0, or under the gate, it is not
    called. search.bridge_margin reaches the bridge where the rotations were kept."""
    import spectral_tracking.tracking.refine as refine_module
    from test_start import _known_trajectory, _place_with

    scene = _known_trajectory(tmp_path, monkeypatch)
    calls = []

    def fake(placed, cameras, images, masks, views, Rs, bs, *, steps, lr, depth, rotate=True, **kwargs):
        calls.append((steps, lr, rotate, depth))
        return Rs, bs

    monkeypatch.setattr(refine_module, "refine_trajectory", fake)
    base = {"frames": "all", "count": 4, "keep": 1, "steps": 3, "bridge_margin": None}
    kept = {**base, "turn_gate": 0.0}  # the known trajectory's 30 degrees kept
    _, record, _ = _place_with(scene, {**kept, "refine_steps": 0})
    assert calls == [] and "search_refine_seconds" not in record
    _, record, _ = _place_with(scene, base)  # 30 degrees, one view: under the gate, only the centre track, not refined
    assert calls == [] and "search_refine_seconds" not in record
    _, record, _ = _place_with(scene, kept)  # the defaults: 40 steps at 0.02, one view's depth kept
    assert calls == [(40, 0.02, True, False)] and record["search_refine_seconds"] >= 0
    _place_with(scene, {**kept, "refine_steps": 7, "refine_lr": 0.01, "refine_depth": True})
    assert calls[-1] == (7, 0.01, True, True)
    _place_with(scene, base, views=2)  # two views: no gate; they see depth, refined whatever refine_depth says
    assert calls[-1] == (40, 0.02, True, True)
    # search.bridge_margin (0.3 by default): the bridge follows the refine where the turn was kept
    bridges = []

    def fake_bridge(placed, cameras, images, masks, views, Rs, bs, *, margin, degrees, steps, depth, **kwargs):
        bridges.append((margin, degrees, steps, depth))
        return Rs, bs, [1]

    monkeypatch.setattr(refine_module, "bridge_trajectory", fake_bridge)
    _, record, _ = _place_with(scene, {**base, "bridge_margin": 0.3})  # under the gate: no bridge
    assert bridges == [] and "search_bridged_frames" not in record
    _, record, _ = _place_with(scene, {**kept, "bridge_margin": 0.3, "bridge_degrees": 20.0})
    assert bridges == [(0.3, 20.0, 40, False)] and record["search_bridged_frames"] == [1]
    del base["bridge_margin"]
    _place_with(scene, {**base, "turn_gate": 0.0})
    assert bridges[-1] == (0.3, 15.0, 40, False)


def test_the_refine_in_the_image_plane_keeps_each_centres_depth(frames):
    """depth=False (one view): the translation moves only along the view's right and up axes, so each
    frame's centre keeps its depth along the view's axis, while the turn comes most of the way back."""
    scene, Rs, bs, images, masks = frames
    start_Rs, start_bs = _off(Rs, bs, 8.0, 0.08)
    new_Rs, new_bs = refine_trajectory(scene.canonical, scene.cameras, images, masks, [0], start_Rs, start_bs,
                                       background=torch.ones(3), steps=40, lr=0.02, depth=False)
    vm = scene.cameras.viewmats[0].double()
    c = scene.canonical.means.detach().double().mean(0)

    def depths(Rs_, bs_):
        return ((Rs_ @ c + bs_) @ vm[:3, :3].T + vm[:3, 3])[:, 2]

    torch.testing.assert_close(depths(new_Rs, new_bs), depths(start_Rs, start_bs), atol=1e-6, rtol=0)
    rot, _ = _errors(scene, new_Rs, new_bs, Rs, bs)
    assert max(rot) < 3.5, rot  # from 8 (its depth kept 0.08 off)


def _rendered(scene, degrees: list[float]):
    """(Rs, bs, images [1, T, H, W, 3], masks [1, T, H, W]) of the scene's canonical turned by ``degrees`` about
    the vertical through its centre, one frame each, in view 0."""
    g = scene.canonical
    c = g.means.detach().double().mean(0)
    Rs, bs, rgb, alpha = [], [], [], []
    for d in degrees:
        R = axis_angle_matrix(UP, d).double()
        out = render(g.transform(R.float(), translation=(c - R @ c).float()), scene.cameras[[0]], background=torch.ones(3))
        Rs.append(R), bs.append(c - R @ c), rgb.append(out.rgb[0].detach())
        alpha.append(out.alpha[0].detach().reshape(out.rgb.shape[1:3]))
    return torch.stack(Rs), torch.stack(bs), torch.stack(rgb)[None], torch.stack(alpha)[None]


def test_the_bridge_gives_a_frame_the_pose_between_its_neighbours_only_where_its_pixels_allow(frames):
    """bridge_trajectory: frame 1 of a steady turn (0, 25, 50 degrees) left at 65 takes the pose between
    its neighbours (its images show 25: the candidate's loss is lower); a twist that turns back (0, 40,
    0) keeps its middle frame, whose candidate (0) its images refuse; a frame nearer its candidate
    than ``degrees`` is not looked at."""
    from spectral_tracking.tracking.refine import bridge_trajectory

    scene = frames[0]
    kwargs = dict(background=torch.ones(3), margin=0.3, degrees=15.0, steps=20, lr=0.02, depth=False)
    Rs, bs, images, masks = _rendered(scene, [0.0, 25.0, 50.0])
    wrong_R, wrong_b, _, _ = _rendered(scene, [0.0, 65.0, 50.0])
    new_Rs, new_bs, bridged = bridge_trajectory(scene.canonical, scene.cameras, images, masks, [0], wrong_R, wrong_b,
                                                **kwargs)
    assert bridged == [1]
    rot, cen = _errors(scene, new_Rs, new_bs, Rs, bs)
    assert rot[1] < 0.5 and cen[1] < 0.02, (rot, cen)
    assert torch.equal(new_Rs[[0, 2]], wrong_R[[0, 2]]) and torch.equal(new_bs[[0, 2]], wrong_b[[0, 2]])

    Rs, bs, images, masks = _rendered(scene, [0.0, 40.0, 0.0])
    same_Rs, same_bs, bridged = bridge_trajectory(scene.canonical, scene.cameras, images, masks, [0], Rs, bs, **kwargs)
    assert bridged == [] and torch.equal(same_Rs, Rs) and torch.equal(same_bs, bs)

    Rs, bs, images, masks = _rendered(scene, [0.0, 25.0, 50.0])
    near_R, near_b, _, _ = _rendered(scene, [0.0, 35.0, 50.0])  # 10 degrees from its candidate
    _, _, bridged = bridge_trajectory(scene.canonical, scene.cameras, images, masks, [0], near_R, near_b, **kwargs)
    assert bridged == []


def test_the_bridge_bounds_every_sweep_by_the_loss_each_frame_came_with(frames, monkeypatch):
    """Two wrong frames side by side (yaw 0, 80, -80, 0) swing towards each other over the sweeps, each sweep's
    candidate fitting 1.25 x worse than the pose before it (stubbed losses): a frame takes a candidate only while
    it fits within (1 + margin) x the loss at the pose it came with, not x the loss of the candidate it took
    the sweep before (which let the two frames end at 1.25^3 = 1.95 x their own)."""
    import spectral_tracking.tracking.refine as refine

    scene = frames[0]
    Rs, bs, images, masks = _rendered(scene, [0.0, 80.0, -80.0, 0.0])
    calls = {"n": 0}

    def losses(placed, cameras, images_, masks_, views, Rs_, bs_, **kwargs):
        calls["n"] += 1  # the first call: the poses given; each later call: one sweep's candidates, 1.25 x worse
        return torch.full((len(Rs_),), 1.25 ** (calls["n"] - 1), dtype=torch.float64)

    monkeypatch.setattr(refine, "pixel_losses", losses)
    monkeypatch.setattr(refine, "refine_trajectory", lambda placed, cameras, images, masks, views, Rs_, bs_, **k: (Rs_, bs_))
    final = {}
    for margin in (0.3, 1.0):
        calls["n"] = 0
        new_Rs, _, bridged = refine.bridge_trajectory(scene.canonical, scene.cameras, images, masks, [0], Rs, bs,
                                                      background=torch.ones(3), margin=margin, degrees=15.0, steps=1,
                                                      lr=0.02, depth=False)
        final[margin] = (bridged, calls["n"] - 1)  # the sweeps that rendered candidates
    # margin 0.3: the first sweep's candidates (1.25 x) pass, the second's (1.5625 x their own) do not
    assert final[0.3] == ([1, 2], 2), final
    # margin 1.0: the third sweep's candidates would be 1.95 x: still within 2 x, so all three sweeps take them
    assert final[1.0] == ([1, 2], 3), final


def test_the_bridge_over_a_span_mends_two_wrong_frames_in_a_row(frames):
    """bridge_trajectory with span 2: frames 1 and 2 of a steady turn (0, 25, 50, 75 degrees) left at 55 and 20
    both take their poses on the way from frame 0's to frame 3's, within half a degree, where one frame at a
    time (span 1) leaves one of them off by more than a degree; a turn that comes back (0, 40, 40, 0) keeps its
    frames, whose candidates (0, 0) its images refuse; a span longer than the sequence bridges as span 1."""
    from spectral_tracking.tracking.refine import _spanned, bridge_trajectory

    scene = frames[0]
    kwargs = dict(background=torch.ones(3), margin=0.3, degrees=15.0, steps=20, lr=0.02, depth=False)
    Rs, bs, images, masks = _rendered(scene, [0.0, 25.0, 50.0, 75.0])
    wrong_R, wrong_b, _, _ = _rendered(scene, [0.0, 55.0, 20.0, 75.0])
    c = scene.canonical.means.detach().double().mean(0)
    on_way = _spanned(Rs, bs, c, 0, 3)  # the slerp at thirds: the true poses of a steady turn
    assert max(rotation_degrees(R @ T.T) for (R, _), T in zip(on_way, Rs[1:3])) < 1e-6

    new_Rs, new_bs, bridged = bridge_trajectory(scene.canonical, scene.cameras, images, masks, [0], wrong_R, wrong_b,
                                                span=2, **kwargs)
    assert bridged == [1, 2]
    rot, cen = _errors(scene, new_Rs, new_bs, Rs, bs)
    assert max(rot) < 0.5 and max(cen) < 0.02, (rot, cen)
    assert torch.equal(new_Rs[[0, 3]], wrong_R[[0, 3]])
    one_Rs, one_bs, _ = bridge_trajectory(scene.canonical, scene.cameras, images, masks, [0], wrong_R, wrong_b,
                                          span=1, **kwargs)
    assert max(_errors(scene, one_Rs, one_bs, Rs, bs)[0]) > 1.0

    Rs, bs, images, masks = _rendered(scene, [0.0, 40.0, 40.0, 0.0])
    same_Rs, same_bs, bridged = bridge_trajectory(scene.canonical, scene.cameras, images, masks, [0], Rs, bs, span=2,
                                                  **kwargs)
    assert bridged == [] and torch.equal(same_Rs, Rs) and torch.equal(same_bs, bs)

    # two wrong pairs in seven frames (1-2 and 4-5), mended in one sweep; the run between them (2-3, its anchors
    # both wrong) is refused by frame 3's pixels
    true = [12.0 * t for t in range(7)]
    Rs, bs, images, masks = _rendered(scene, true)
    wrong_R, wrong_b, _, _ = _rendered(scene, [0.0, 40.0, 0.0, 36.0, 20.0, 90.0, 72.0])
    new_Rs, new_bs, bridged = bridge_trajectory(scene.canonical, scene.cameras, images, masks, [0], wrong_R, wrong_b,
                                                span=2, **kwargs)
    assert bridged == [1, 2, 4, 5]
    rot, cen = _errors(scene, new_Rs, new_bs, Rs, bs)
    assert max(rot) < 0.5 and max(cen) < 0.02, (rot, cen)
    assert torch.equal(new_Rs[[0, 3, 6]], wrong_R[[0, 3, 6]])

    Rs, bs, images, masks = _rendered(scene, [0.0, 25.0, 50.0])
    wrong_R, wrong_b, _, _ = _rendered(scene, [0.0, 65.0, 50.0])
    long = bridge_trajectory(scene.canonical, scene.cameras, images, masks, [0], wrong_R, wrong_b, span=3, **kwargs)
    one = bridge_trajectory(scene.canonical, scene.cameras, images, masks, [0], wrong_R, wrong_b, **kwargs)
    assert long[2] == one[2] == [1] and torch.equal(long[0], one[0]) and torch.equal(long[1], one[1])


def test_the_refine_turns_a_frame_no_more_than_max_degrees(frames):
    """max_degrees: the refine trims a turn and does not choose another; a frame started 8 degrees off
    comes back 3 degrees at most, and its rotation moves exactly that far."""
    scene, Rs, bs, images, masks = frames
    start_Rs, start_bs = _off(Rs, bs, 8.0, 0.0)
    new_Rs, _ = refine_trajectory(scene.canonical, scene.cameras, images, masks, [0], start_Rs, start_bs,
                                  background=torch.ones(3), steps=40, lr=0.02, max_degrees=3.0)
    for t in (1, 2):
        moved = rotation_degrees(new_Rs[t] @ start_Rs[t].T)
        assert moved == pytest.approx(3.0, abs=0.05), moved
        assert rotation_degrees(new_Rs[t] @ Rs[t].T) > 4.9
