"""The trajectory's depths from its silhouettes at its final poses (tracking/depth.py, search.depth_cue)."""

import pytest
import torch
from omegaconf import OmegaConf

from spectral_tracking.data import load_dataset
from spectral_tracking.gaussians import axis_angle_matrix
from spectral_tracking.render import render
from spectral_tracking.tracking.depth import cue_depths, roughness, silhouette_depths, silhouette_sizes, smoothest

UP = torch.tensor([0.0, 1.0, 0.0])


@pytest.fixture(scope="module")
def walk(tmp_path_factory):
    """The quadruped at 64 px, one view, five rigid frames: turned 15 degrees a frame about the vertical
    and moved 0.1 a frame away from the camera and sideways. (scene, camera, true Rs [5, 3, 3], bs [5, 3],
    masks [5, H, W], centre [3])."""
    ds = OmegaConf.create({"type": "synthetic", "preset": "quadruped_walk", "setting": "clean", "frames": 2,
                           "seed": 0, "root": str(tmp_path_factory.mktemp("data"))})
    scene = load_dataset(ds, 64)
    g, camera = scene.canonical, scene.cameras[[0]]
    c = g.means.detach().double().mean(0)
    vm = camera.viewmats[0].double()
    axis = vm[2, :3]  # the camera's viewing axis in world coordinates: moving along it is moving away
    Rs, bs, masks = [], [], []
    for t in range(5):
        R = axis_angle_matrix(UP, 15.0 * t).double()
        b = c + 0.1 * t * (torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64) + axis) - R @ c
        out = render(g.transform(R.float(), translation=b.float()), camera, background=torch.ones(3))
        Rs.append(R), bs.append(b), masks.append(out.alpha[0].detach().reshape(64, 64))
    return scene, camera, torch.stack(Rs), torch.stack(bs), torch.stack(masks), c


def _depths(camera, Rs, bs, c):
    vm = camera.viewmats[0].double()
    return ((Rs @ c + bs) @ vm[:3, :3].T + vm[:3, 3])[:, 2]


def test_silhouette_sizes_of_a_rectangle_are_its_area_and_its_sides_spreads():
    """A 10 x 4 block: area 40, the rows' spread sqrt((10^2 - 1) / 12), the columns' sqrt((4^2 - 1) / 12);
    an empty mask: zeros."""
    m = torch.zeros(32, 32)
    m[5:15, 20:24] = 1.0
    area, height, width = silhouette_sizes(m)
    assert area == 40 and height == pytest.approx(((100 - 1) / 12) ** 0.5) and width == pytest.approx(((16 - 1) / 12) ** 0.5)
    assert silhouette_sizes(torch.zeros(8, 8)) == (0.0, 0.0, 0.0)


def test_the_smoothest_cue_is_the_track_with_the_least_second_difference():
    """A track that swings (a limb in the measure) loses to one that moves steadily; a tie goes to area."""
    steady = torch.tensor([4.0, 4.1, 4.2, 4.3, 4.4])
    swinging = torch.tensor([4.0, 4.4, 4.0, 4.4, 4.0])
    assert roughness(steady) == pytest.approx(0.0, abs=1e-6) and roughness(swinging) == pytest.approx(2.4)
    assert roughness(torch.tensor([1.0, 5.0])) == 0.0
    assert smoothest({"area": swinging, "height": steady, "width": swinging}) == "height"
    assert smoothest({"area": steady, "height": steady, "width": steady}) == "area"


def test_each_cue_brings_a_rigid_bodys_wrong_depths_back(walk):
    """The true turns with the inner frames slid 12% nearer or farther along their rays: for a rigid body
    every cue reads the same size, so one pass brings every frame within 3% of its true depth (a size is
    not exactly 1 / depth), three within 0.2%; each frame keeps its place in the image (the centre stays
    on its ray)."""
    from spectral_tracking.tracking.search import slide_to_depths

    scene, camera, Rs, bs, masks, c = walk
    true = _depths(camera, Rs, bs, c)
    wrong = slide_to_depths(Rs, bs, c, camera, true * torch.tensor([1.0, 1.12, 0.88, 1.12, 0.88], dtype=torch.float64))
    for cue, passes, within in (("area", 1, 0.03), ("height", 1, 0.03), ("width", 1, 0.03), ("smoothest", 1, 0.03),
                                ("area", 3, 0.002), ("smoothest", 3, 0.002)):
        new_bs, used = silhouette_depths(scene.canonical, camera, masks, Rs, wrong, c, cue=cue, passes=passes)
        assert used == cue or (cue == "smoothest" and used in ("area", "height", "width"))
        z = _depths(camera, Rs, new_bs, c)
        assert ((z - true).abs() / true).max() < within, (cue, passes, z, true)
        vm = camera.viewmats[0].double()
        p_new, p_true = (Rs @ c + new_bs) @ vm[:3, :3].T + vm[:3, 3], (Rs @ c + bs) @ vm[:3, :3].T + vm[:3, 3]
        torch.testing.assert_close(p_new[:, :2] / p_new[:, 2:], p_true[:, :2] / p_true[:, 2:], atol=1e-9, rtol=0)


def test_a_frame_whose_mask_or_render_is_cut_or_empty_keeps_its_depth_in_every_cue(walk):
    """Frame 2's target touching the border, frame 3's empty, frame 4 posed out of the view (its render
    empty): their depths stay what the trajectory gave them; a depth cue that is no cue is refused by
    name, and the setting's choices are this module's."""
    from spectral_tracking.tracking.search import slide_to_depths

    scene, camera, Rs, bs, masks, c = walk
    cut = masks.clone()
    cut[2, :, 0] = 1.0
    cut[3] = 0.0
    wrong = slide_to_depths(Rs, bs, c, camera, _depths(camera, Rs, bs, c) * 1.1)
    wrong[4] += 10.0 * camera.viewmats[0, 0, :3].double()  # frame 4 moved far to the side: out of the view
    depths = cue_depths(scene.canonical, camera, cut, Rs, wrong, c)
    z = _depths(camera, Rs, wrong, c)
    for cue, track in depths.items():
        assert track[2] == z[2] and track[3] == z[3] and track[4] == z[4], cue
        assert track[1] < z[1] / 1.05, cue  # measured: the render at 1.1 x its depth is too small
    with pytest.raises(ValueError, match="search.depth_cue must be one of"):
        silhouette_depths(scene.canonical, camera, masks, Rs, bs, c, cue="volume")
    from dataclasses import fields

    from spectral_tracking.tracking.depth import CHOICES
    from spectral_tracking.tracking.settings import SearchSettings

    field = next(f for f in fields(SearchSettings) if f.name == "depth_cue")
    assert field.metadata["choices"] == (None, *CHOICES)


def test_place_measures_the_depths_again_with_one_view_where_depth_cue_is_set(tmp_path, monkeypatch):
    """search.depth_cue (smoothest by default) reaches silhouette_depths with one training view, gated or
    not: its translations are the trajectory's, then the window's median runs once, after it (not also
    after the refine), and the cue used is recorded; null, or two views (which see depth), leave it out,
    and with null the median runs after the refine as before."""
    import spectral_tracking.tracking.depth as depth_module
    import spectral_tracking.tracking.refine as refine_module
    import spectral_tracking.tracking.search as search_module
    from test_start import _known_trajectory, _place_with

    scene = _known_trajectory(tmp_path, monkeypatch)
    calls, medians = [], []

    def fake(gaussians, camera, masks, Rs, bs, center, *, cue, backend):
        calls.append((cue, len(camera), tuple(masks.shape)))
        return bs + 0.01, "height"

    def median(Rs, bs, center, camera, window):
        medians.append(bs.clone())
        return bs

    monkeypatch.setattr(depth_module, "silhouette_depths", fake)
    monkeypatch.setattr(search_module, "median_depths", median)
    monkeypatch.setattr(refine_module, "refine_trajectory", lambda placed, cameras, images, masks, views, Rs, bs, **k: (Rs, bs))
    base = {"frames": "all", "count": 4, "keep": 1, "steps": 3, "refine_steps": 0, "bridge_margin": None}
    placed, record, (_, bs) = _place_with(scene, base)  # under the gate (30 degrees, one view)
    assert calls == [("smoothest", 1, (2, 48, 48))] and record["search_depth_cue"] == "height"
    centre_track = placed.means.detach().double().cpu().mean(0) @ (_known_rotation(30.0).T - torch.eye(3, dtype=torch.float64))
    torch.testing.assert_close(bs, centre_track[None] * torch.tensor([[0.0], [1.0]], dtype=torch.float64) + 0.01)
    assert len(medians) == 1 and torch.equal(medians[0], bs)  # the median, after the cue
    medians.clear()
    _place_with(scene, {**base, "turn_gate": 0.0, "depth_cue": "width", "refine_steps": 5})  # the turn kept, refined
    assert calls[-1][0] == "width" and len(medians) == 1
    medians.clear()
    _, record, _ = _place_with(scene, {**base, "turn_gate": 0.0, "depth_cue": None, "refine_steps": 5})
    assert len(calls) == 2 and "search_depth_cue" not in record and len(medians) == 1  # after the refine, as before
    _, record, _ = _place_with(scene, base, views=2)
    assert len(calls) == 2 and "search_depth_cue" not in record


def _known_rotation(degrees: float):
    return axis_angle_matrix(UP, degrees).double()


def test_the_start_log_names_the_trajectory_its_bridged_frames_and_its_depth_cue():
    """The log line after the start stage (run/track.py) says what the trajectory kept, which frames it
    bridged and which size its depths came from; a start without a trajectory says none of it."""
    from spectral_tracking.run.track import _describe_start

    line = _describe_start({"search_rotation_deg": 12.0, "search_turn_deg": 151.2, "search_turn_kept": True,
                            "search_bridged_frames": [5, 6], "search_depth_cue": "height"})
    assert line == ("turned 12.0 deg, trajectory turning up to 151 deg (kept), frames 5, 6 bridged, "
                    "depths from the silhouettes' height")
    gated = _describe_start({"search_turn_deg": 20.0, "search_turn_kept": False, "search_depth_cue": "width"})
    assert "(under the gate: the centre track only)" in gated and "bridged" not in gated
    assert "trajectory" not in _describe_start({"search_rotation_deg": 12.0})
    fitted = _describe_start({"search_turn_deg": 99.2, "search_turn_kept": False, "search_turn_fit": 0.558})
    assert "trajectory turning up to 99 deg (under the gate: the centre track only; fit 0.56)" in fitted
