"""align=moments: the closed-form start from the targets' mask moments (spectral_tracking/tracking/align.py)."""

import json

import pytest
import torch
from omegaconf import OmegaConf

from spectral_tracking.tracking.align import align_to_targets, mask_moments
from spectral_tracking.data import load_dataset, select_views
from spectral_tracking.tracking.start import shift_canonical
from spectral_tracking.run.track import run

from test_train import make_cfg


def test_mask_moments_of_a_rectangle():
    mask = torch.zeros(10, 20)
    mask[2:6, 4:12] = 1.0  # rows 2..5, columns 4..11
    mass, centroid = mask_moments(mask)
    assert mass == pytest.approx(32.0)
    assert centroid.tolist() == pytest.approx([8.0, 4.0])  # pixel centres at +0.5: x (4+12)/2, y (2+6)/2
    assert mask_moments(torch.zeros(4, 4))[0] == 0.0


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    ds = OmegaConf.create({"type": "synthetic", "preset": "quadruped_walk", "setting": "clean", "frames": 2,
                           "seed": 0, "root": str(tmp_path_factory.mktemp("data"))})
    return load_dataset(ds, 48)


@pytest.mark.parametrize("views", [1, 2])
@pytest.mark.parametrize("shift", [0.0, 0.8, 1.2])
def test_align_recovers_the_start_in_depth_and_across(scene, views, shift):
    seq = select_views(scene, views)
    _, truth = seq.ground_truth()
    true_centre = truth[0].double().mean(0)
    masks = torch.stack([seq.mask(v, 0) for v in range(len(seq.view_names))])
    R = seq.cameras.viewmats[0, :3, :3].double()
    for seed in range(3):
        shifted, direction = shift_canonical(seq.canonical, shift, seed)
        aligned, offset = align_to_targets(shifted, seq.cameras, masks, list(seq.train_views), backend="torch")
        error = aligned.means.double().mean(0) - true_centre
        assert float(error.norm()) < 0.02, (seed, error)  # world units; the asset's radius is 0.5
        assert float((R @ error)[2].abs()) < 0.02  # depth (camera z) is recovered too, not only the image position
        assert torch.allclose(aligned.means - shifted.means, offset.expand_as(shifted.means), atol=1e-5)  # rigid
        assert torch.equal(aligned.quats, shifted.quats) and torch.equal(aligned.log_scales, shifted.log_scales)


def test_align_rejects_an_empty_target_mask(scene):
    masks = torch.stack([scene.mask(v, 0) for v in range(len(scene.view_names))])
    masks[0] = 0
    with pytest.raises(ValueError, match="target mask of view 0 is empty"):
        align_to_targets(scene.canonical, scene.cameras, masks, [0], backend="torch")


def test_align_leaves_out_a_view_whose_mask_is_empty_where_another_sees_the_body(scene, caplog):
    """A body out of one training view (its mask empty in the aligned frame) is aligned by the views that
    see it, with a warning naming the view; with every view empty it is an error, as with one view."""
    seq = select_views(scene, 2)
    masks = torch.stack([seq.mask(v, 0) for v in range(len(seq.view_names))])
    a, b = seq.train_views
    expected, _ = align_to_targets(seq.canonical, seq.cameras, masks, [a], backend="torch")
    out = masks.clone()
    out[b] = 0
    with caplog.at_level("WARNING", logger="spectral_tracking.tracking.align"):
        got, _ = align_to_targets(seq.canonical, seq.cameras, out, [a, b], backend="torch")
    assert torch.equal(got.means, expected.means)
    assert f"views [{b}] left out, their target masks are empty" in caplog.text
    out[a] = 0
    with pytest.raises(ValueError, match=f"target mask of view {a} is empty in the aligned frame .every training view"):
        align_to_targets(seq.canonical, seq.cameras, out, [a, b], backend="torch")


def test_align_leaves_out_views_whose_mask_is_cut_by_the_border(scene):
    seq = select_views(scene, 2)
    masks = torch.stack([seq.mask(v, 0) for v in range(len(seq.view_names))])
    a, b = seq.train_views
    cut = masks.clone()
    cut[b, :, :3] = 1.0  # view b's mask now touches the left border
    expected, _ = align_to_targets(seq.canonical, seq.cameras, masks, [a], backend="torch")
    got, _ = align_to_targets(seq.canonical, seq.cameras, cut, [a, b], backend="torch")
    assert torch.equal(got.means, expected.means)
    cut[a, :, :3] = 1.0  # every view cut: the depth is kept, the centre goes onto the visible centroid's ray
    got, offset = align_to_targets(seq.canonical, seq.cameras, cut, [a, b], backend="torch")
    R, t = seq.cameras.viewmats[a, :3, :3].double(), seq.cameras.viewmats[a, :3, 3].double()
    depth = lambda g: float((R @ g.means.double().mean(0) + t)[2])  # noqa: E731
    assert abs(depth(got) - depth(seq.canonical)) < 0.05 and float(offset.norm()) > 0


def test_zero_overlap_start_at_0p8_ends_whole(tmp_path):
    """The issue's end-to-end check: a start at shift 0.8 with no overlap ends overlapping the target
    (IoU > 0.8) at the right size (size ratio within 0.9-1.1)."""
    data_root = tmp_path / "data"
    cfg = make_cfg(tmp_path, data_root, ["shift=0.8", "seed=7", "align=moments", "resolution=48", "max_steps=60"])
    result = run(cfg)
    meta = json.loads((tmp_path / "run" / "run_meta.json").read_text())
    assert meta["initial_iou"] == [0.0]  # seed 7 moves the asset out of the target's silhouette
    assert meta["aligned_iou"][0] > 0.9
    m = result["metrics"]
    assert m["train_mask_iou"] > 0.8
    assert 0.9 <= m["3d_size_ratio"] <= 1.1
