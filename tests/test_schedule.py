import math

import pytest
import torch

from spectral_tracking.run.config import PAPER_PRESETS, experiment_schedule
from spectral_tracking.tracking.schedule import (
    ANNEALED_MODES,
    MODES,
    SpectralSchedule,
    alpha,
    band_weights,
    phase,
)

SCHEDULES = [experiment_schedule(name, mode=mode) for name in sorted(PAPER_PRESETS) for mode in ANNEALED_MODES] + [
    SpectralSchedule(max_steps=100, num_bands=4, warmup=0.0, spectral_end=100, mode="log"),
    SpectralSchedule(max_steps=100, num_bands=1, warmup=0.5, spectral_end=80, mode="linear"),
    SpectralSchedule(max_steps=10, num_bands=3, warmup=0.3, spectral_end=3, mode="log"),  # no expansion
]
IDS = [f"{s.num_bands}b-{s.warmup}-{s.spectral_end}-{s.mode}" for s in SCHEDULES]


def _steps(schedule):
    return range(0, schedule.max_steps, max(1, schedule.max_steps // 400))


def _fields(s):
    return dict(max_steps=s.max_steps, warmup=s.warmup, num_bands=s.num_bands, spectral_end=s.spectral_end)


def test_presets_are_table_6():
    assert _fields(experiment_schedule("sc4d_mlp")) == dict(max_steps=10000, warmup=0.3, num_bands=8, spectral_end=6000)
    assert _fields(experiment_schedule("sc4d_direct")) == dict(max_steps=10000, warmup=0.2, num_bands=6, spectral_end=4000)
    assert _fields(experiment_schedule("gart")) == dict(max_steps=10000, warmup=0.25, num_bands=8, spectral_end=7000)
    assert experiment_schedule("gart").mode == "log"


@pytest.mark.parametrize("schedule", SCHEDULES, ids=IDS)
def test_band0_fully_on_throughout_the_spectral_phase(schedule):
    for step in _steps(schedule):
        if schedule.is_spectral(step):
            assert schedule.band_weights(step)[0].item() == 1.0


@pytest.mark.parametrize("schedule", SCHEDULES, ids=IDS)
def test_weights_in_unit_interval_and_monotone_in_t(schedule):
    previous = None
    for step in range(schedule.max_steps):
        w = schedule.band_weights(step)
        assert w.shape == (schedule.num_bands,) and w.dtype == torch.float32
        assert bool((w >= 0).all()) and bool((w <= 1).all())
        assert bool((w[1:] <= w[:-1]).all())  # lower bands are never weaker than higher ones
        if previous is not None:
            assert bool((w >= previous).all())
        previous = w


@pytest.mark.parametrize("schedule", SCHEDULES, ids=IDS)
def test_alpha_warmup_then_reaches_num_bands_at_the_switch(schedule):
    start = schedule.warmup_end
    for step in _steps(schedule):
        a = schedule.alpha(step)
        if step < start:
            assert a == 1.0
            assert schedule.band_weights(step)[1:].sum().item() == 0.0  # only band 0 during warm-up
        assert 1.0 <= a <= schedule.num_bands
    assert schedule.alpha(schedule.spectral_end) == schedule.num_bands
    assert schedule.alpha(schedule.max_steps + 5) == schedule.num_bands


@pytest.mark.parametrize("schedule", SCHEDULES, ids=IDS)
def test_band_fully_on_once_alpha_passes_k_plus_1_and_off_below_k(schedule):
    for step in _steps(schedule):
        a = schedule.alpha(step)
        w = schedule.band_weights(step)
        for k in range(schedule.num_bands):
            if a >= k + 1:
                assert w[k].item() == 1.0
            if a <= k:
                assert w[k].item() == 0.0


@pytest.mark.parametrize("schedule", SCHEDULES, ids=IDS)
def test_switch_to_spatial_exactly_at_spectral_end(schedule):
    t = schedule.spectral_end
    if t > 0:
        assert schedule.phase(t - 1) == "spectral" and schedule.is_spectral(t - 1)
    assert schedule.phase(t) == "spatial" and not schedule.is_spectral(t)
    assert phase(t, t) == "spatial" and phase(t - 0.5, t) == "spectral"


def test_band_weights_follow_eq7():
    for a in torch.linspace(0, 6, 97).tolist():
        w = band_weights(a, 6)
        for k in range(6):
            expected = (1 - math.cos(math.pi * min(max(a - k, 0.0), 1.0))) / 2
            assert w[k].item() == pytest.approx(expected, abs=1e-7)


def test_log_mode_alpha_linear_and_linear_mode_frequency_linear():
    log = SpectralSchedule(max_steps=1000, num_bands=8, warmup=0.2, spectral_end=800, mode="log")
    lin = SpectralSchedule(max_steps=1000, num_bands=8, warmup=0.2, spectral_end=800, mode="linear")
    steps = [200, 300, 400, 500, 600, 700]
    alphas = [log.alpha(s) for s in steps]
    assert alphas[0] == 1.0
    assert all(b - a == pytest.approx(7 / 6) for a, b in zip(alphas, alphas[1:]))  # 7 bands over 600 steps
    top = [2 ** (lin.alpha(s) - 1) for s in steps]  # largest fully-on frequency
    assert top[0] == pytest.approx(1.0)
    assert all(b - a == pytest.approx(127 / 6) for a, b in zip(top, top[1:]))
    # with the same end points the linear frequency ramp opens bands earlier than the log one
    assert all(lin.alpha(s) >= log.alpha(s) for s in steps)


def test_linear_slow_is_the_tangent_of_the_log_ramp():
    """linear_slow: top frequency 1 + ln2 (K-1) s, never ahead of log, equal to it at the start."""
    log = SpectralSchedule(max_steps=1000, num_bands=6, warmup=0.2, spectral_end=700, mode="log")
    slow = SpectralSchedule(max_steps=1000, num_bands=6, warmup=0.2, spectral_end=700, mode="linear_slow")
    assert slow.alpha(0) == slow.alpha(199) == 1.0 and slow.alpha(700) == 6.0  # warm-up, then the spatial phase
    for step in (250, 450, 699):
        s = (step - 200) / 500
        assert 2 ** (slow.alpha(step) - 1) == pytest.approx(1 + math.log(2) * 5 * s)
        assert slow.alpha(step) <= log.alpha(step)
    # the same slope at the start of the ramp (d alpha / d step)
    assert (slow.alpha(201) - 1) == pytest.approx(log.alpha(201) - 1, rel=1e-2)
    assert slow.alpha(699) == pytest.approx(1 + math.log2(1 + math.log(2) * 5 * 499 / 500))  # about 3.16


def test_functional_and_dataclass_agree():
    s = experiment_schedule("sc4d_direct", mode="linear")
    for step in (0, 1999, 2000, 2500, 3999, 4000, 9999):
        assert s.alpha(step) == alpha(step, 10000, 0.2, 4000, 6, "linear")
        assert torch.equal(s.band_weights(step), band_weights(s.alpha(step), 6))


def test_bad_configuration_raises():
    with pytest.raises(ValueError, match="spectral_end=100 comes before the end of the warm-up"):
        SpectralSchedule(max_steps=1000, num_bands=4, warmup=0.3, spectral_end=100)
    with pytest.raises(ValueError, match="warmup is a fraction"):
        SpectralSchedule(max_steps=1000, num_bands=4, warmup=1.5, spectral_end=900)
    with pytest.raises(ValueError, match="mode must be one of"):
        SpectralSchedule(max_steps=1000, num_bands=4, warmup=0.3, spectral_end=900, mode="cosine")
    with pytest.raises(ValueError, match="num_bands must be an integer >= 1"):
        SpectralSchedule(max_steps=1000, num_bands=0, warmup=0.3, spectral_end=900)
    with pytest.raises(ValueError, match="max_steps"):
        SpectralSchedule(max_steps=0, num_bands=4, warmup=0.3, spectral_end=0)
    with pytest.raises(ValueError, match="unknown preset 'sc4d'"):
        experiment_schedule("sc4d")
    with pytest.raises(ValueError, match="step must be finite and >= 0"):
        alpha(-1, 1000, 0.3, 900, 4)
    with pytest.raises(ValueError, match="alpha must be finite"):
        band_weights(float("nan"), 4)
    # warmup * max_steps is rounded: 0.3 * 10 ends the warm-up at step 3, not 3.0000000000000004
    assert SpectralSchedule(max_steps=10, num_bands=2, warmup=0.3, spectral_end=3).warmup_end == 3


def test_no_annealing_opens_every_band_from_step_zero():
    s = SpectralSchedule(max_steps=100, num_bands=4, warmup=0.2, spectral_end=60, mode="none")
    assert "none" in MODES
    for step in (0, 10, 59):
        assert s.alpha(step) == 4.0 and torch.equal(s.band_weights(step), torch.ones(4)) and s.phase(step) == "spectral"
    assert s.phase(60) == "spatial"
