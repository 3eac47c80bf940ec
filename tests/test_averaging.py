"""The tracked result as an average of the last steps' weights (run/averaging.py)."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from spectral_tracking.run.averaging import WeightAverage
from spectral_tracking.tracking.objective import Objective
from spectral_tracking.tracking.settings import AverageSettings, LossSettings

END = SimpleNamespace(global_step=100, max_steps=100)  # a trainer at its last step


class _Module(nn.Module):
    def __init__(self, spectral_end: int, pixel: bool = False) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(3))
        self.frozen = nn.Parameter(torch.zeros(2), requires_grad=False)
        settings = LossSettings(image="pixel" if pixel else "spectral").resolved(max_steps=10**6)
        self.objective = Objective(settings, max_steps=10**6)
        self.objective.spectral_end = spectral_end  # where the switch ended the spectral phase


def _steps(callback, module, values, first_step=0):
    """Set the weights to each of ``values`` in turn, as steps ``first_step``, ``first_step + 1``, ..."""
    for i, v in enumerate(values):
        with torch.no_grad():
            module.w.fill_(float(v))
            module.frozen.fill_(float(v))
        trainer = SimpleNamespace(global_step=first_step + i + 1)  # counts the steps that ran
        callback.on_train_batch_end(trainer, module, None, None, i)


def test_the_average_is_the_exponential_moving_average_from_the_later_of_start_and_the_spatial_phase():
    module = _Module(spectral_end=46)
    callback = WeightAverage(AverageSettings(decay=0.5, start=0.4), max_steps=100)  # from step 40, but spatial at 46
    _steps(callback, module, [100, 100, 100, 100, 100, 100, 2, 4, 8, 16], first_step=40)
    expected = 2.0
    for v in (4, 8, 16):
        expected = 0.5 * expected + 0.5 * v
    assert module.w.detach().tolist() == [16.0] * 3  # training goes on with the last step's weights
    callback.on_train_end(END, module)
    assert module.w.detach().tolist() == pytest.approx([expected] * 3)
    assert module.frozen.detach().tolist() == [16.0, 16.0]  # only what trains is averaged
    assert callback.since == 46


def test_the_pixel_baseline_averages_from_start_and_decay_zero_keeps_the_last_step():
    module = _Module(spectral_end=10**6, pixel=True)  # no schedule: spatial from step 0
    callback = WeightAverage(AverageSettings(decay=0.5, start=0.0), max_steps=100)
    _steps(callback, module, [0, 2, 4, 6])
    callback.on_train_end(END, module)
    expected = 0.0
    for v in (2, 4, 6):
        expected = 0.5 * expected + 0.5 * v
    assert module.w.detach().tolist() == pytest.approx([expected] * 3)

    off = _Module(spectral_end=0)
    callback = WeightAverage(AverageSettings(decay=0.0, start=0.0), max_steps=4)
    _steps(callback, off, [0, 2, 4, 6])
    callback.on_train_end(END, off)
    assert off.w.detach().tolist() == [6.0] * 3 and callback.average is None


def test_a_resumed_average_ends_where_the_uninterrupted_one_does():
    values = [1, 5, 2, 8, 3, 9, 4, 7]
    whole = _Module(spectral_end=0)
    callback = WeightAverage(AverageSettings(decay=0.7, start=0.0), max_steps=100)
    _steps(callback, whole, values, first_step=2)
    callback.on_train_end(END, whole)

    first = _Module(spectral_end=0)
    callback = WeightAverage(AverageSettings(decay=0.7, start=0.0), max_steps=100)
    _steps(callback, first, values[:5], first_step=2)
    state = callback.state_dict()  # what the checkpoint holds
    resumed = _Module(spectral_end=0)
    callback = WeightAverage(AverageSettings(decay=0.7, start=0.0), max_steps=100)
    callback.load_state_dict(state)
    _steps(callback, resumed, values[5:], first_step=7)
    callback.on_train_end(END, resumed)
    assert resumed.w.detach().tolist() == whole.w.detach().tolist()
    callback.on_train_end(END, resumed)  # the final checkpoint loaded again: the same values in place
    assert resumed.w.detach().tolist() == whole.w.detach().tolist()


def test_a_fit_stopped_before_its_last_step_keeps_the_raw_weights():
    """Ctrl-C ends the fit early (run/session.py, train): Lightning still calls on_train_end, and the checkpoint
    saved then must hold the raw weights beside their Adam moments, or the resumed run goes on from the average
    (a helper's reproduction: train PSNR 22.245 uninterrupted, 23.118 resumed after Ctrl-C at step 14 of 20)."""
    module = _Module(spectral_end=0)
    callback = WeightAverage(AverageSettings(decay=0.5, start=0.0), max_steps=100)
    _steps(callback, module, [0, 2, 4, 6])
    callback.on_train_end(SimpleNamespace(global_step=4, max_steps=100), module)
    assert module.w.detach().tolist() == [6.0] * 3 and callback.average is not None
    callback.on_train_end(SimpleNamespace(global_step=100, max_steps=100), module)
    assert module.w.detach().tolist() != [6.0] * 3


def test_a_run_stopped_by_ctrl_c_resumes_to_the_uninterrupted_result(tmp_path):
    """End to end, with the default averaging: a run interrupted by SIGINT after its average began, then run
    again, ends with the uninterrupted run's weights to the bit."""
    import os
    import signal

    from spectral_tracking.errors import RunInterrupted
    from spectral_tracking.run.config import compose
    from spectral_tracking.run.track import run
    from spectral_tracking.tracking.module import TrackingModule

    base = ["max_steps=20", "resolution=32", "num_control_points=16", "dataset.frames=4", "loss.num_bands=3",
            "trainer=debug", "logger=none", "eval.lpips=none", "eval.videos=false", "eval.progression_frames=0",
            "trainer.enable_progress_bar=false", f"dataset.root={tmp_path / 'data'}"]
    whole = run(compose(base + [f"out_dir={tmp_path / 'whole'}"]))
    step = TrackingModule.training_step

    def interrupted(self, batch, i):
        if int(self.global_step) == 14:  # the average began at step 10
            os.kill(os.getpid(), signal.SIGINT)
        return step(self, batch, i)

    TrackingModule.training_step = interrupted
    try:
        with pytest.raises(RunInterrupted, match="interrupted by SIGINT"):
            run(compose(base + [f"out_dir={tmp_path / 'cut'}"]))
    finally:
        TrackingModule.training_step = step
    resumed = run(compose(base + [f"out_dir={tmp_path / 'cut'}"]))
    assert resumed["metrics"]["average_from"] == whole["metrics"]["average_from"] == 10
    a = torch.load(tmp_path / "whole" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "cut" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a if torch.is_tensor(a[k])), "the resumed weights differ"


def test_a_short_run_averages_over_at_most_a_quarter_of_its_averaged_steps():
    assert WeightAverage(AverageSettings(decay=0.98, start=0.5), max_steps=500).decay == 0.98  # the CPU scale: as set
    assert WeightAverage(AverageSettings(decay=0.98, start=0.5), max_steps=40).decay == pytest.approx(0.8)  # 20 averaged
    assert WeightAverage(AverageSettings(decay=0.98, start=0.5), max_steps=8).decay == 0.0  # too short: the last step


def test_average_settings_are_checked(tmp_path):
    from spectral_tracking.errors import ConfigError
    from spectral_tracking.run.config import compose, validate

    for bad in ("average.decay=1", "average.decay=-0.1", "average.start=1.5"):
        with pytest.raises(ConfigError, match=bad.split("=")[0].replace(".", r"\.")):
            validate(compose([bad, f"out_dir={tmp_path}"]))
