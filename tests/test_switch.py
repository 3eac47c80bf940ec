"""loss.switch_iou: the spectral phase ends once the render overlaps the target (`Objective.observe`, tracking/objective.py)."""

import json
import math

import pytest
import torch

from spectral_tracking.tracking.objective import LossSettings, Objective
from spectral_tracking.run.track import run

from test_train import make_cfg


def _masks(iou: float, size: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha, mask) [1, size, size] whose IoU at 0.5 is ``iou`` (rows of the square)."""
    mask = torch.zeros(1, size, size)
    mask[0, : size // 2] = 1.0
    alpha = torch.zeros(1, size, size)
    alpha[0, : round(size // 2 * iou)] = 0.9
    return alpha, mask


def switch(threshold, warmup_end: int, latest: int, max_steps: int = 100, switch_from: str = "warmup",
           switch_prior: str = "zero") -> Objective:
    """An objective whose spectral phase ends at ``latest`` at the latest, its warm-up at ``warmup_end``."""
    return Objective(LossSettings(switch_iou=threshold, warmup=warmup_end / max_steps, spectral_end=latest, num_bands=2,
                                  switch_from=switch_from, switch_prior=switch_prior), max_steps)


def test_switch_after_the_warm_up_once_the_running_iou_reaches_the_threshold():
    s = switch(0.8, warmup_end=5, latest=50)
    alpha, mask = _masks(1.0)
    steps = 0
    while s.spectral_end == 50:
        s.observe(steps, alpha, mask)
        steps += 1
    # running mean after n steps of IoU 1: 1 - 0.8^n >= 0.8 first at n = 8 (steps 0..7), after the warm-up
    assert s.spectral_end == 8 == steps and s.running_iou == pytest.approx(1 - 0.8**8)
    assert math.ceil(math.log(0.2) / math.log(0.8)) == 8
    s.observe(8, *_masks(0.0))  # switched for good
    assert s.spectral_end == 8
    # not before the warm-up ends, however high the overlap
    early = switch(0.5, warmup_end=20, latest=50)
    for step in range(30):
        early.observe(step, alpha, mask)
    assert early.spectral_end == 20
    # switch_from=start (the default): a start that overlaps skips the warm-up too
    anytime = switch(0.5, warmup_end=20, latest=50, switch_from="start")
    for step in range(30):
        anytime.observe(step, alpha, mask)
    assert anytime.spectral_end == 4  # 1 - 0.8^n >= 0.5 first at n = 4


def test_no_switch_without_overlap_or_when_off():
    low = switch(0.8, warmup_end=0, latest=30)
    off = switch(None, warmup_end=0, latest=30)
    for step in range(40):
        low.observe(step, *_masks(0.6))  # IoU 0.6 < 0.8 for ever
        off.observe(step, *_masks(1.0))
    assert low.spectral_end == 30 and off.spectral_end == 30 and off.running_iou == 0.0
    with pytest.raises(ValueError, match="loss.switch_iou must be in"):
        switch(1.5, warmup_end=0, latest=30)


def test_the_switch_state_is_saved_with_the_module():
    s = switch(0.8, warmup_end=0, latest=50)
    for step in range(12):
        s.observe(step, *_masks(1.0))
    restored = switch(0.8, warmup_end=0, latest=50)
    restored.load_state_dict(s.state_dict())
    assert restored.spectral_end == s.spectral_end < 50 and restored.running_iou == s.running_iou


def test_objective_follows_the_switch():
    obj = Objective(LossSettings(spectral_end=80, warmup=0.2, num_bands=4), max_steps=100)
    assert obj.at(50).phase == "spectral" and obj.at(79).phase == "spectral" and obj.at(80).phase == "spatial"
    obj.spectral_end = 40  # where the switch ended the spectral phase
    assert obj.at(50).phase == "spatial" and obj.at(39).phase == "spectral"
    assert obj.at(85).phase == "spatial"


def test_an_aligned_start_switches_early_and_a_far_one_does_not(tmp_path):
    """End to end: from the aligned start the render overlaps at once, so the spatial phase begins
    at the end of the warm-up; from a far-off start without alignment (no overlap) it waits."""
    common = ["shift=0.8", "seed=7", "resolution=32", "max_steps=40", "loss.switch_iou=0.8", "loss.switch_from=warmup",
              "eval.lpips=none", "eval.progression_frames=0"]
    near = run(make_cfg(tmp_path / "near", tmp_path / "data", [*common, "align=moments"]))["metrics"]
    far = run(make_cfg(tmp_path / "far", tmp_path / "data", [*common, "align=none"]))["metrics"]
    cfg = make_cfg(tmp_path / "x", tmp_path / "data", common)
    warm, latest = math.ceil(cfg.loss.warmup * 40), int(cfg.loss.spectral_end)
    assert warm <= near["spectral_end"] < latest
    assert far["spectral_end"] > near["spectral_end"]
    meta = json.loads((tmp_path / "far" / "run" / "run_meta.json").read_text())  # make_cfg: out_dir=<tmp>/run
    assert meta["initial_iou"][0] < 0.05  # next to no overlap at the start


def test_the_prior_starts_the_running_iou_at_the_start_s_own():
    """loss.switch_prior=start (`Objective.prime`): a start that reaches the threshold has no spectral
    step; one that does not seeds the running mean; after the warm-up only (switch_from=warmup) it
    seeds the mean and ends nothing; with the prior at zero, or without the switch, it is a no-op."""
    def primed(iou, **kw):
        s = switch(0.5, warmup_end=20, latest=50, switch_prior="start", **kw)
        s.prime(iou)
        return s

    assert primed(0.9, switch_from="start").spectral_end == 0
    low = primed(0.3, switch_from="start")
    assert low.spectral_end == 50 and low.running_iou == 0.3
    low.observe(0, *_masks(1.0))  # 0.8 * 0.3 + 0.2 * 1 = 0.44 < 0.5, then 0.552
    assert low.spectral_end == 50
    low.observe(1, *_masks(1.0))
    assert low.spectral_end == 2
    late = primed(0.9)
    assert late.spectral_end == 50 and late.running_iou == 0.9
    off = switch(None, warmup_end=0, latest=30, switch_prior="start")
    off.prime(1.0)
    assert off.spectral_end == 30 and off.running_iou == 0.0
    zero = switch(0.5, warmup_end=0, latest=30, switch_from="start")
    zero.prime(1.0)
    assert zero.spectral_end == 30 and zero.running_iou == 0.0


def test_with_the_prior_an_overlapping_start_is_the_pixel_run(tmp_path):
    """End to end: from the searched start, which overlaps frame 0, Ours with switch_prior=start has no
    spectral step and ends exactly where the Pixel baseline ends; with the prior at zero it has 4."""
    common = ["shift=0.3", "seed=3", "resolution=32", "max_steps=30", "eval.lpips=none", "eval.progression_frames=0",
              "align=moments"]  # bit for bit at any number of threads (the compositing backward sums in entry order)
    ours = run(make_cfg(tmp_path / "ours", tmp_path / "data", [*common, "loss.switch_prior=start"]))["metrics"]
    zero = run(make_cfg(tmp_path / "zero", tmp_path / "data", common))["metrics"]
    pixel = run(make_cfg(tmp_path / "pixel", tmp_path / "data", [*common, "loss=pixel"]))["metrics"]
    assert ours["spectral_end"] == 0 and zero["spectral_end"] == 4
    for key in ("train_psnr", "train_mask_iou", "novel_psnr", "3d_mean_error"):
        assert ours[key] == pixel[key], key
    assert zero["train_psnr"] != pixel["train_psnr"]
