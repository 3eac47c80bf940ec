"""Memory that grows with what a run needs: targets kept as uint8 until indexed, evaluation and videos
one frame at a time, metrics and the search's screening in chunks. Each change must leave the
numbers as they were (tiny runs: 32 px, 4 frames)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from test_train import make_cfg

import spectral_tracking.metrics as metrics
from spectral_tracking.data import load_dataset, select_views
from spectral_tracking.evaluation import evaluate
from spectral_tracking.run.track import build_module, build_targets
from spectral_tracking.tracking.targets import MaskStack, TargetImages

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def module(tmp_path_factory, data_root):
    cfg = make_cfg(tmp_path_factory.mktemp("run"), data_root, ["align=none", "shift=0.2", "views=2"])
    seq, targets = build_targets(cfg)
    with torch.no_grad():
        m = build_module(cfg, seq.canonical, targets)
        for p in m.deformation.parameters():  # a tracked-looking state, not the identity
            p.add_(torch.randn_like(p) * 1e-2)
    return m, seq


def test_targets_share_the_sequence_uint8_frames_and_index_to_the_old_floats(module):
    m, seq = module
    tg, bg = m.targets, m.background
    assert tg.images.data.data_ptr() == seq.images.data_ptr() and tg.masks.data.data_ptr() == seq.masks.data_ptr()
    every = (slice(None), slice(None))
    old_images, old_masks = seq.target(*every, background=bg), seq.mask(*every)  # the float stacks runs used to hold
    assert tg.images.shape == old_images.shape and tg.masks.shape == old_masks.shape
    for index in [(1, 2), (slice(None), 0), ([0, 2], 3), (0, slice(None), slice(None, None, 2), slice(None, None, 2))]:
        assert torch.equal(tg.images[index], old_images[index]), index
        assert torch.equal(tg.masks[index], old_masks[index]), index
    with pytest.raises(IndexError, match="colour channel"):
        tg.images[0, 0, 0, 0, 1]
    with pytest.raises(TypeError, match="uint8"):
        MaskStack(old_masks)
    with pytest.raises(TypeError, match="uint8"):
        TargetImages(old_images, seq.masks, bg)


def test_evaluation_frame_by_frame_gives_the_whole_stack_numbers(module):
    """The streamed evaluation against the metrics over whole [V x T] stacks, as it was computed."""
    m, _ = module
    tg = m.targets
    got = evaluate(m, lpips_net=None, per_view=True)
    for split, views in (("train", tg.train_views), ("novel", tg.eval_views)):
        rgb, alpha = m.render_all(views)
        whole = metrics.image_metrics(rgb.reshape(-1, *rgb.shape[2:]).clamp(0, 1), tg.images[views].reshape(-1, *rgb.shape[2:]),
                                      lpips_net=None)
        for key in ("psnr", "ssim"):
            assert got[f"{split}_{key}"] == pytest.approx(whole[key], rel=1e-6, abs=1e-6)
        assert got[f"{split}_mask_iou"] == pytest.approx(metrics.mask_iou(alpha, tg.masks[views]), abs=1e-6)
        assert got[f"{split}_last_mask_iou"] == pytest.approx(metrics.mask_iou(alpha[:, -1], tg.masks[views, -1]), abs=1e-6)
        for i, v in enumerate(views):
            one = metrics.image_metrics(rgb[i].clamp(0, 1), tg.images[v], lpips_net=None)
            assert got[f"view_{tg.view_names[v]}_psnr"] == pytest.approx(one["psnr"], rel=1e-6)


def test_the_gsgd_protocol_reports_gsgd_image_metrics_beside_the_frame_by_frame_iou(module):
    m, _ = module
    tg = m.targets
    got = evaluate(m, lpips_net=None, protocol="gsgd")
    per_view = evaluate(m, lpips_net=None, protocol="gsgd", per_view=True)
    ours = evaluate(m, lpips_net=None, per_view=True)
    for split, views in (("train", tg.train_views), ("novel", tg.eval_views)):
        gsgd = [metrics.gsgd_view_metrics(m.render_all([v])[0][0], tg.images[v], with_lpips=False) for v in views]
        assert got[f"{split}_psnr"] == pytest.approx(sum(g["psnr"] for g in gsgd) / len(gsgd), rel=1e-6)
        assert got[f"{split}_mask_iou"] == ours[f"{split}_mask_iou"]
        assert not any(k.startswith("view_") for k in got)
    views_of = lambda result: {k: v for k, v in result.items() if k.startswith("view_")}  # noqa: E731
    assert views_of(per_view) == views_of(ours)


def test_metrics_in_chunks_equal_metrics_at_once(monkeypatch):
    g = torch.Generator().manual_seed(0)
    pred, gt = torch.rand(5, 24, 20, 3, generator=g), torch.rand(5, 24, 20, 3, generator=g)
    at_once = metrics.image_metric_values(pred, gt, lpips_net=None)
    monkeypatch.setattr(metrics, "EVAL_CHUNK_PIXELS", 2 * 24 * 20)  # chunks of 2, 2 and 1 images
    chunked = metrics.image_metric_values(pred, gt, lpips_net=None)
    for key in at_once:
        torch.testing.assert_close(chunked[key], at_once[key], rtol=1e-6, atol=1e-7)
    assert metrics.per_image(lambda p, q: None, pred, gt) is None  # LPIPS without weights: None, not a partial list


def test_the_search_screens_in_chunks_with_the_same_result(tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    import spectral_tracking.tracking.search as search
    from spectral_tracking.tracking.start import displace

    ds = OmegaConf.create({"type": "synthetic", "preset": "quadruped_walk", "setting": "clean", "frames": 2, "seed": 0,
                           "root": str(tmp_path)})
    seq = select_views(load_dataset(ds, 32), 2)
    moved, _ = displace(seq.canonical, 0.3, seed=1, rotation=90.0)
    images = torch.stack([seq.target(v, 0, background=torch.ones(3)) for v in range(seq.num_views)])
    masks = torch.stack([seq.mask(v, 0) for v in range(seq.num_views)])
    kwargs = dict(background=torch.ones(3), count=12, keep=2, steps=3, refine_steps=0)
    whole = search.search_pose(moved, seq.cameras, images, masks, list(seq.train_views), **kwargs)
    monkeypatch.setattr(search, "SCREEN_PIXELS", 5 * 2 * 32 * 32)  # 5 hypotheses a render: chunks of 5, 5, 2
    chunked = search.search_pose(moved, seq.cameras, images, masks, list(seq.train_views), **kwargs)
    torch.testing.assert_close(chunked.gaussians.means, whole.gaussians.means, rtol=1e-5, atol=1e-6)
    assert chunked.loss == pytest.approx(whole.loss, rel=1e-5)


def test_videos_are_made_frame_by_frame_from_a_function(tmp_path, monkeypatch):
    import spectral_tracking.video as video

    made = []

    def frames():
        for i in range(3):
            made.append(i)
            yield np.full((20, 30, 3), i * 40, np.uint8)

    out = video.write_video(frames, tmp_path / "v.mp4")
    assert out.suffix == ".mp4" and made == [0, 1, 2]
    monkeypatch.setattr(video, "mp4_available", lambda: False)
    gif = video.write_video(frames, tmp_path / "w.mp4")  # the fallback asks the function again
    from PIL import Image

    assert gif.suffix == ".gif" and Image.open(gif).n_frames == 3
    with pytest.raises(ValueError, match="no frames"):
        video.write_video(lambda: iter(()), tmp_path / "x.mp4")


@pytest.mark.slow
def test_the_scale_benchmark_prints_every_column(tmp_path):
    import subprocess

    out = subprocess.run([sys.executable, "benchmarks/scale.py", "--quick", "--sweep", "resolution", "--resolutions", "32",
                          "--root", str(tmp_path), "--override", "arap_sampling=rendered"],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "overrides arap_sampling=rendered" in out.stdout
    row = [line for line in out.stdout.splitlines() if line.startswith("resolution")]
    assert len(row) == 1 and "it/s" in row[0] and "held" in row[0] and "run peak" in row[0]
    assert "breakdown (fwd+bwd ms): render" in out.stdout and "Adam" in out.stdout
    # an override reaches the rows' settings after the benchmark's own: a bad one stops the step's child
    bad = subprocess.run([sys.executable, "benchmarks/scale.py", "--quick", "--sweep", "resolution", "--resolutions", "32",
                          "--no-run", "--root", str(tmp_path), "--override", "arap_frames=0"],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0 and "arap_frames" in bad.stdout + bad.stderr


def test_a_run_that_will_not_fit_stops_before_the_start_with_one_line(tmp_path, data_root, monkeypatch):
    import spectral_tracking.run.memory as memory
    from spectral_tracking.errors import ConfigError
    from spectral_tracking.run.track import run

    parts = memory.estimate(6, 100, 512, 512, 1_000_000)
    assert parts["frames"] == 4 * 6 * 100 * 512 * 512 and parts["gaussians"] == memory.PER_GAUSSIAN_BYTES * 1e6
    monkeypatch.setattr(memory, "_available_bytes", lambda: 1e6)  # 1 MB free
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"this run needs about .* GB of memory .*4 frames x 32x32.* GB more than its loaded frames, but 0\.0 GB is free: "
                                          r"lower resolution=.*check_memory=false to run anyway") as err:
        run(make_cfg(tmp_path, data_root, ["max_steps=4"]))
    assert "\n" not in str(err.value) and not out.exists()  # nothing written
    result = run(make_cfg(tmp_path, data_root, ["max_steps=4", "check_memory=false"]))
    record = json.loads((out / "run_meta.json").read_text())["memory_estimate_gb"]
    assert set(record) == {"process", "frames", "images", "gaussians"} and result["metrics"]["steps"] == 4
