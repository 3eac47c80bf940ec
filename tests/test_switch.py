"""loss.switch_iou: the spectral phase ends once the render overlaps the target (spectral_tracking/switch.py)."""

import json
import math

import pytest
import torch

from spectral_tracking.objective import LossSettings, Objective
from spectral_tracking.switch import OverlapSwitch
from spectral_tracking.train import run

from test_train import make_cfg


def _masks(iou: float, size: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha, mask) [1, size, size] whose IoU at 0.5 is ``iou`` (rows of the square)."""
    mask = torch.zeros(1, size, size)
    mask[0, : size // 2] = 1.0
    alpha = torch.zeros(1, size, size)
    alpha[0, : round(size // 2 * iou)] = 0.9
    return alpha, mask


def test_switch_after_the_warm_up_once_the_running_iou_reaches_the_threshold():
    s = OverlapSwitch(0.8, warmup_end=5, latest=50, beta=0.8)
    alpha, mask = _masks(1.0)
    steps = 0
    while s.end == 50:
        s.update(steps, alpha, mask)
        steps += 1
    # running mean after n steps of IoU 1: 1 - 0.8^n >= 0.8 first at n = 8 (steps 0..7), after the warm-up
    assert s.end == 8 == steps and s.running_iou == pytest.approx(1 - 0.8**8)
    assert math.ceil(math.log(0.2) / math.log(0.8)) == 8
    s.update(8, *_masks(0.0))  # switched for good
    assert s.end == 8
    # not before the warm-up ends, however high the overlap
    early = OverlapSwitch(0.5, warmup_end=20, latest=50)
    for step in range(30):
        early.update(step, alpha, mask)
    assert early.end == 20


def test_no_switch_without_overlap_or_when_off():
    low = OverlapSwitch(0.8, warmup_end=0, latest=30)
    off = OverlapSwitch(None, warmup_end=0, latest=30)
    for step in range(40):
        low.update(step, *_masks(0.6))  # IoU 0.6 < 0.8 for ever
        off.update(step, *_masks(1.0))
    assert low.end == 30 and off.end == 30 and off.running_iou == 0.0
    with pytest.raises(ValueError, match="loss.switch_iou must be in"):
        OverlapSwitch(1.5, warmup_end=0, latest=30)


def test_the_switch_state_is_saved_with_the_module():
    s = OverlapSwitch(0.8, warmup_end=0, latest=50)
    for step in range(12):
        s.update(step, *_masks(1.0))
    restored = OverlapSwitch(0.8, warmup_end=0, latest=50)
    restored.load_state_dict(s.state_dict())
    assert restored.end == s.end < 50 and restored.running_iou == s.running_iou


def test_objective_follows_the_switch():
    obj = Objective(LossSettings(add_pixel_loss=80, warmup=0.2, num_bands=4), max_steps=100)
    assert obj.at(50).phase == "spectral" and obj.at(50, 80).phase == "spectral"
    assert obj.at(50, 40).phase == "spatial" and obj.at(39, 40).phase == "spectral"
    assert obj.at(85, 40).phase == "spatial"


def test_an_aligned_start_switches_early_and_a_far_one_does_not(tmp_path):
    """End to end: from the aligned start the render overlaps at once, so the spatial phase begins
    at the end of the warm-up; from a far-off start without alignment (no overlap) it waits."""
    common = ["shift=0.8", "seed=7", "resolution=32", "max_steps=40", "loss.switch_iou=0.8",
              "eval.lpips=none", "eval.progression_frames=0"]
    near = run(make_cfg(tmp_path / "near", tmp_path / "data", [*common, "align=moments"]))["metrics"]
    far = run(make_cfg(tmp_path / "far", tmp_path / "data", [*common, "align=none"]))["metrics"]
    cfg = make_cfg(tmp_path / "x", tmp_path / "data", common)
    warm, latest = math.ceil(cfg.loss.warmup * 40), int(cfg.loss.add_pixel_loss)
    assert warm <= near["spatial_from"] < latest
    assert far["spatial_from"] > near["spatial_from"]
    meta = json.loads((tmp_path / "far" / "run" / "run_meta.json").read_text())  # make_cfg: out_dir=<tmp>/run
    assert meta["initial_iou"][0] < 0.05  # next to no overlap at the start
