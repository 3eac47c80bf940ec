"""The training step's shortcuts keep the maths: one deformation call for the rendered frame and
ARAP's frames (one batched TimeNet pass), and logging only on the steps the trainer writes."""

import pytest
import torch

from spectral_tracking.deform import build_deformation
from spectral_tracking.deform.appearance import WithAppearance
from spectral_tracking.deform.mlp import TimeNet
from spectral_tracking.gaussians import random_gaussians


def _moved(name: str, appearance: bool = False):
    torch.manual_seed(0)
    d = build_deformation(name, random_gaussians(400, seed=1), 6, num_control_points=24)
    with torch.no_grad():  # away from the zero-initialised identity
        for p in d.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return WithAppearance(d) if appearance else d


def test_batched_timenet_equals_one_call_per_time():
    torch.manual_seed(0)
    net = TimeNet(depth=4, width=32, skip=1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    points = torch.rand(10, 3) * 2 - 1
    times = torch.tensor([0.0, 0.3, 1.0])
    dxyz, rot = net(points, times)
    assert dxyz.shape == (3, 10, 3) and rot.shape == (3, 10, 4)
    for i, t in enumerate(times):
        d1, r1 = net(points, t)
        assert d1.shape == (10, 3)
        torch.testing.assert_close(dxyz[i], d1, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(rot[i], r1, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name, appearance", [("mlp", False), ("rigid_mlp", False), ("direct", False),
                                              ("rigid", False), ("mlp", True)])
def test_frame_and_control_points_equals_separate_calls(name, appearance):
    d = _moved(name, appearance)
    frame, arap_frames = 2, [0, 2, 5]  # the rendered frame among ARAP's: evaluated once
    g, points = d.frame_and_control_points(frame, arap_frames)
    ref_g = d(frame)
    ref_points = torch.stack([d.control_point_positions(f) for f in arap_frames])
    for field in ("means", "quats", "sh"):
        torch.testing.assert_close(getattr(g, field), getattr(ref_g, field), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(points, ref_points, rtol=1e-6, atol=1e-7)

    params = [p for p in d.parameters() if p.requires_grad]
    loss = g.means.square().sum() + g.sh.sum() + points.square().sum()
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    ref_loss = ref_g.means.square().sum() + ref_g.sh.sum() + ref_points.square().sum()
    ref_grads = torch.autograd.grad(ref_loss, params, allow_unused=True)
    for a, b in zip(grads, ref_grads):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)  # summation order only


def test_no_control_frames_gives_no_points():
    d = _moved("mlp")
    g, points = d.frame_and_control_points(1, [])
    assert points is None
    torch.testing.assert_close(g.means, d(1).means)


def test_logs_on_the_steps_the_trainer_writes():
    from types import SimpleNamespace

    from spectral_tracking.tracking.module import TrackingModule

    m = SimpleNamespace(_trainer=SimpleNamespace(log_every_n_steps=10), max_steps=25)
    logged = [s for s in range(25) if TrackingModule.logs_step(m, s)]
    assert logged == [9, 19, 24]  # as Lightning's should_update_logs: (step + 1) % n == 0, and the last
    assert TrackingModule.logs_step(SimpleNamespace(_trainer=None, max_steps=25), 3)  # outside a trainer


def test_position_window_weights_each_frequency_of_the_encoding():
    from spectral_tracking.deform.mlp import positional_encoding

    x = torch.rand(5, 3) * 2 - 1
    full = positional_encoding(x, 4)
    torch.testing.assert_close(positional_encoding(x, 4, torch.ones(4)), full)
    half = positional_encoding(x, 4, torch.tensor([1.0, 0.5, 0.0, 0.0]))
    # layout: x [3], sin [4 freqs x 3], cos [4 freqs x 3]
    for part in (slice(3, 15), slice(15, 27)):
        w = torch.tensor([1.0, 0.5, 0.0, 0.0]).repeat_interleave(3)
        torch.testing.assert_close(half[:, part], full[:, part] * w)
    torch.testing.assert_close(half[:, :3], x)


def test_pos_anneal_opens_the_timenet_position_frequencies_coarse_to_fine():
    """deform.pos_anneal: at step 0 only the raw position, halfway about half the frequencies, then
    all (the window is None, so the network computes exactly what it computes without annealing)."""
    from types import SimpleNamespace

    from spectral_tracking.tracking.module import TrackingModule

    d = _moved("mlp")
    m = SimpleNamespace(pos_anneal_steps=100, deformation=WithAppearance(d))
    m.motion = TrackingModule.motion.fget(m)  # the property unwraps WithAppearance
    assert m.motion is d
    F = d.position_frequencies
    TrackingModule.open_position_frequencies(m, 0)
    assert torch.equal(d.net.pos_window, torch.zeros(F))
    TrackingModule.open_position_frequencies(m, 50)
    w = d.net.pos_window
    assert bool((w[: F // 2] == 1).all()) and bool((w[F // 2:] == 0).all())
    TrackingModule.open_position_frequencies(m, 100)
    assert d.net.pos_window is None
    t = torch.tensor(0.4)
    opened = d.local_motion(t, 0.4)
    d.set_position_window(torch.ones(F))
    for a, b in zip(opened, d.local_motion(t, 0.4)):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="expected 10 weights"):
        d.set_position_window(torch.ones(3))
    TrackingModule.open_position_frequencies(SimpleNamespace(pos_anneal_steps=0, deformation=_moved("direct")), 5)  # off: no-op


def test_arap_sampling_rendered_puts_the_rendered_frame_among_araps_and_runs_the_timenet_over_fewer_rows(tmp_path):
    """arap_sampling=uniform draws ARAP's frames as sample_frames always has (the same frames, step by step);
    rendered puts the step's rendered frame among them, so a step's TimeNet pass covers arap_frames frames."""
    from benchmarks.step import build, compose
    from spectral_tracking.losses.arap import sample_frames

    common = ["dataset.frames=6", "resolution=32", "num_control_points=20", "align=none", "shift=0", "max_steps=20",
              "loss.arap_start_iter=0", f"dataset.root={tmp_path / 'data'}", f"out_dir={tmp_path / 'run'}"]
    rows = {}
    for sampling in ("uniform", "rendered"):
        module = build(compose([*common, f"arap_sampling={sampling}"]), torch.device("cpu"))
        seen = []
        hook = module.deformation.net.register_forward_hook(lambda m, args, out: seen.append(out[0].shape[0]))
        for step in range(12):
            frame = module.sample(step)[0]
            frames = module.control_frames(step, frame)
            if sampling == "uniform":
                g = torch.Generator().manual_seed(module.seed * 7_919 + step)
                assert frames == sample_frames(6, 2, generator=g)
            else:
                assert frame in frames and len(frames) == 2
            module.step_loss(step)
        hook.remove()
        rows[sampling] = sum(seen)
    assert rows["rendered"] < rows["uniform"]
