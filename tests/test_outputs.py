"""What a run leaves: the videos, the readable strip, the curves, tracked.npz, and per-frame PLYs in
the frame of the asset the user gave (tiny runs: 32 px, 4 frames)."""

import json
import logging
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from test_train import CONF, make_cfg, tiny_overrides

from spectral_tracking.export import load_tracked, to_asset_frame
from spectral_tracking.gaussians import load_ply
from spectral_tracking.run.track import build_module, build_targets, run

FRAMES, RES = 4, 32  # tiny_overrides


def video_frames(path: Path) -> np.ndarray:
    import imageio.v3 as iio

    return iio.imread(path)  # [F, H, W, 3]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data_root):
    tmp = tmp_path_factory.mktemp("outputs")
    result = run(make_cfg(tmp, data_root, ["eval.export_ply=true", "eval.export_splat=true", "views=1"]))
    return result, tmp / "run"


def test_every_output_is_listed_and_exists(finished):
    result, folder = finished
    figures = result["figures"]
    for key, name in [("strip", "final_strip.png"), ("progression", "progression.gif"), ("video", "tracked.mp4"),
                      ("orbit", "orbit.mp4"), ("curves", "curves.png"), ("tracked", "tracked.npz"), ("ply", "frames"),
                      ("splat", "frames")]:
        assert Path(figures[key]) == folder / name and (folder / name).exists(), key
    assert json.loads((folder / "metrics.json").read_text())["figures"] == figures


def test_tracked_video_has_every_frame_and_view(finished):
    result, folder = finished
    frames = video_frames(folder / "tracked.mp4")
    views = 1 + len(result["run"]["eval_views"])  # target above tracked for each view
    assert frames.shape[0] == FRAMES
    # panels of 32 px enlarged 8x to 256, a 22 px caption above each, two rows, padded to 16
    assert frames.shape[1] == math.ceil((2 * (256 + 22) + 2) / 16) * 16
    assert frames.shape[2] == math.ceil((views * 258 - 2) / 16) * 16
    assert frames.std() > 10  # not a blank video


def test_orbit_video_circles_the_asset(finished):
    _, folder = finished
    frames = video_frames(folder / "orbit.mp4")
    assert frames.shape[0] == 48 and frames.shape[1] >= 256 + 22
    # four frames of the sequence side by side
    assert frames.shape[2] == math.ceil((4 * 258 - 2) / 16) * 16
    # it turns: the first and the quarter-turn views differ
    assert np.abs(frames[0].astype(float) - frames[12].astype(float)).mean() > 1


def test_strip_is_a_readable_figure(finished):
    _, folder = finished
    image = Image.open(folder / "final_strip.png")
    # columns initial | target | result of 256 px; rows training view and first novel view, captioned
    assert image.width == 3 * 256 + 2 * 2
    assert image.height == 26 + 2 * (256 + 22) + 2


def test_curves_come_from_the_run(finished):
    _, folder = finished
    image = Image.open(folder / "curves.png")
    assert image.width >= 1000 and image.height >= 300


def test_the_curves_mark_where_this_runs_spatial_phase_began(tmp_path, data_root, monkeypatch):
    """curves.png's dashed line is the run's own switch (`Objective.spectral_end`, metrics.json's
    spectral_end), which the overlap switch moves before loss.spectral_end, not the configured step."""
    import spectral_tracking.figures as figures  # write_outputs imports save_curves from there when it runs

    seen = {}
    save_curves = figures.save_curves

    def spy(history, path, spectral_end=None):
        seen["spectral_end"] = spectral_end
        return save_curves(history, path, spectral_end=spectral_end)

    monkeypatch.setattr(figures, "save_curves", spy)
    cfg = make_cfg(tmp_path, data_root, ["views=1", "eval.videos=false"])
    run(cfg)
    switched = json.loads((tmp_path / "run" / "metrics.json").read_text())["metrics"]["spectral_end"]
    assert switched < int(cfg.loss.spectral_end)  # the overlap switch ended the spectral phase early here
    assert seen["spectral_end"] == switched


def test_tracked_npz_holds_the_sequence(finished):
    result, folder = finished
    data = load_tracked(folder / "tracked.npz")
    T, N = data["means"].shape[:2]
    assert T == FRAMES and data["quats"].shape == (T, N, 4) and data["colors"].shape == (N, 3)
    assert data["control_points"].shape == (T, 16, 3)
    assert data["images"].shape[:2] == (len(data["view_names"]), T) and data["images"].dtype == np.uint8
    ply0 = load_ply(folder / "frames" / "frame_0000.ply")
    np.testing.assert_allclose(data["means"][0], ply0.means.numpy(), atol=1e-5)  # synthetic: frames coincide


def test_exported_frames_are_every_frame(finished):
    result, folder = finished
    plys = sorted((folder / "frames").glob("frame_*.ply"))
    assert [p.name for p in plys] == [f"frame_{t:04d}.ply" for t in range(FRAMES)]
    splats = sorted((folder / "frames").glob("frame_*.splat"))
    assert len(splats) == FRAMES and result["figures"]["splat"] == str(folder / "frames")
    # 32 bytes a Gaussian: position (3 float32), scale (3 float32), RGBA and rotation (4 + 4 uint8)
    g = load_ply(plys[-1])
    raw = np.frombuffer(splats[-1].read_bytes(), dtype=np.dtype([("xyz", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)]))
    assert len(raw) == g.num_gaussians
    np.testing.assert_allclose(np.sort(raw["xyz"][:, 0]), np.sort(g.means[:, 0].numpy()), atol=1e-6)


def folder_cfg(tmp_path: Path, folder: Path, overrides=()):
    """The tiny settings on a sequence folder (``dataset=folder`` has no frames / root keys)."""
    from hydra import compose, initialize_config_dir

    tiny = [o for o in tiny_overrides(tmp_path, tmp_path) if not o.startswith("dataset.")]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=[*tiny, "dataset=folder", f"dataset.path={folder}", *overrides])


def _user_frame_folder(data_root: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the tiny benchmark sequence with its asset (and cameras) moved into a user frame:
    scaled 3.7x and moved by (2, -1, 5), so the images stay the same. Returns (folder, its canonical.ply)."""
    from spectral_tracking.cameras import Cameras
    from spectral_tracking.data import load_sequence, write_sequence

    source = next(p for p in Path(data_root).rglob("meta.json") if "_r32_t4_" in str(p)).parent
    seq = load_sequence(source)
    s, c = 3.7, torch.tensor([2.0, -1.0, 5.0])
    g = seq.canonical
    user = replace(g, means=g.means * s + c, log_scales=g.log_scales + math.log(s))
    vm = seq.cameras.viewmats.clone()
    R, t = vm[:, :3, :3], vm[:, :3, 3]
    vm[:, :3, 3] = s * t - (R @ c[:, None])[..., 0]  # camera coordinates scaled by s: the same images
    cams = Cameras(seq.cameras.Ks.clone(), vm, seq.cameras.width, seq.cameras.height)
    meta = {k: v for k, v in seq.meta.items() if k not in ("normalization", "folder", "gt")}
    folder = write_sequence(replace(seq, canonical=user, cameras=cams, gt_means=None, gt_index=None, meta=meta), tmp_path / "user_seq")
    return folder, folder / "canonical.ply"


def test_export_of_an_untrained_run_is_the_input_ply(finished, data_root, tmp_path):
    """Tracking 0 steps is the identity: frame 0's export equals the canonical the user gave, in its
    own frame (not the normalised one the tracker works in), to float precision."""
    from spectral_tracking.export import export_asset_frames

    folder, ply = _user_frame_folder(data_root, tmp_path)
    cfg = folder_cfg(tmp_path, folder, ["shift=0"])
    seq, targets = build_targets(cfg)
    assert seq.meta["normalization"]["scale"] == pytest.approx(1 / 3.7, rel=1e-3)
    module = build_module(cfg, seq.canonical, targets)
    (path,) = export_asset_frames(module.deformation, tmp_path / "frames", seq.meta["normalization"], frames=[0])
    given, exported = load_ply(ply), load_ply(path)
    scale = float(given.means.abs().max())
    torch.testing.assert_close(exported.means, given.means, atol=2e-6 * scale, rtol=0)
    torch.testing.assert_close(exported.log_scales, given.log_scales, atol=1e-5, rtol=0)
    torch.testing.assert_close(exported.quats / exported.quats.norm(dim=-1, keepdim=True),
                               given.quats / given.quats.norm(dim=-1, keepdim=True), atol=1e-5, rtol=0)
    torch.testing.assert_close(exported.opacity_logits, given.opacity_logits)
    torch.testing.assert_close(exported.sh, given.sh)


def test_a_run_exports_in_the_users_frame(data_root, tmp_path):
    folder, ply = _user_frame_folder(data_root, tmp_path)
    result = run(folder_cfg(tmp_path, folder, ["shift=0.1", "max_steps=4", "eval.export_ply=true", "eval.videos=false",
                                               "eval.progression_frames=0"]))
    given = load_ply(ply)
    last = load_ply(Path(result["figures"]["ply"]) / f"frame_{FRAMES - 1:04d}.ply")
    _, r_given = given.bounding_sphere()
    center, r_last = last.bounding_sphere()
    assert r_last == pytest.approx(r_given, rel=0.2)  # user units (radius ~1.85), not 0.5
    assert float((center - given.bounding_sphere()[0]).norm()) < 0.5 * r_given


def test_to_asset_frame_without_a_record_is_the_identity():
    from spectral_tracking.gaussians import random_gaussians

    g = random_gaussians(10)
    assert to_asset_frame(g, None) is g and to_asset_frame(g, {"bounding_radius": 0.5}) is g


def test_exports_carry_the_appearance_offset(tmp_path):
    from spectral_tracking.deform import build_deformation
    from spectral_tracking.deform.appearance import WithAppearance
    from spectral_tracking.export import export_asset_frames
    from spectral_tracking.gaussians import random_gaussians

    asset = random_gaussians(60, seed=1)
    d = WithAppearance(build_deformation("rigid", asset, 2, num_control_points=8))
    with torch.no_grad():
        d.appearance_offset.fill_(0.25)
    (path,) = export_asset_frames(d, tmp_path, {"center": [1.0, 2.0, 3.0], "scale": 0.5}, frames=[1])
    g = load_ply(path)
    torch.testing.assert_close(g.sh, asset.sh + 0.25, atol=1e-6, rtol=0)
    torch.testing.assert_close(g.means, asset.means / 0.5 + torch.tensor([1.0, 2.0, 3.0]), atol=1e-5, rtol=0)


def test_an_export_of_a_frame_holding_nan_names_the_frame_and_writes_nothing(tmp_path):
    """gsplat's .splat export drops rows holding NaN without a word, and a PLY would carry them: both
    exports refuse the frame, naming it, before anything of it is written."""
    from spectral_tracking.deform import build_deformation
    from spectral_tracking.export import export_asset_frames, export_asset_splats
    from spectral_tracking.gaussians import random_gaussians

    asset = random_gaussians(60, seed=1)
    d = build_deformation("rigid", asset, 2, num_control_points=8)
    with torch.no_grad():
        d.canonical_means[3, 0] = float("nan")
    for export in (export_asset_frames, export_asset_splats):
        with pytest.raises(ValueError, match=r"export: frame 0 of the tracked sequence: means holds \d+ non-finite"):
            export(d, tmp_path / export.__name__, None, frames=[0])
        assert not list((tmp_path / export.__name__).glob("frame_*"))


def test_without_the_encoder_videos_fall_back_to_gif(tmp_path, monkeypatch, caplog):
    import spectral_tracking.video as video

    monkeypatch.setattr(video, "mp4_available", lambda: False)
    frames = [np.full((20, 30, 3), i * 40, np.uint8) for i in range(3)]
    with caplog.at_level(logging.WARNING):
        out = video.write_video(frames, tmp_path / "tracked.mp4")
    assert out == tmp_path / "tracked.gif" and out.is_file() and not (tmp_path / "tracked.mp4").exists()
    assert Image.open(out).n_frames == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "pip install imageio imageio-ffmpeg" in warnings[0]


def test_a_failing_encoder_falls_back_to_gif(tmp_path, monkeypatch, caplog):
    import imageio.v2 as imageio_v2

    import spectral_tracking.video as video

    def broken(*args, **kwargs):
        raise RuntimeError("ffmpeg: cannot execute binary file")

    monkeypatch.setattr(imageio_v2, "get_writer", broken)
    with caplog.at_level(logging.WARNING):
        out = video.write_video([np.zeros((8, 8, 3), np.uint8)] * 2, tmp_path / "orbit.mp4")
    assert out.suffix == ".gif" and out.is_file() and not list(tmp_path.glob("*.mp4"))
    assert "encoder failed" in caplog.text and "pip install imageio imageio-ffmpeg" in caplog.text


def test_mp4_is_written_with_the_bundled_encoder(tmp_path):
    import spectral_tracking.video as video

    assert video.mp4_available(), "imageio-ffmpeg is a dependency: pip install -e ."
    frames = [np.full((20, 30, 3), i * 40, np.uint8) for i in range(5)]
    out = video.write_video(frames, tmp_path / "v.mp4")
    got = video_frames(out)
    assert out.suffix == ".mp4" and got.shape == (5, 32, 32, 3)


def test_progression_history_survives_a_checkpoint():
    from spectral_tracking.run.callbacks import ProgressionCallback

    cb = ProgressionCallback(frame=0, view=0, every=2)
    cb.history = [{"step": 0, "train/loss": 1.0, "progression/psnr": 12.0}, {"step": 1, "train/loss": 0.5}]
    again = ProgressionCallback(frame=0, view=0, every=2)
    again.load_state_dict(cb.state_dict())
    assert again.history == cb.history


def test_tracked_npz_keeps_large_targets_as_thumbnails(tmp_path):
    from types import SimpleNamespace

    from spectral_tracking.cameras import orbit_camera
    from spectral_tracking.deform import build_deformation
    from spectral_tracking.export import save_tracked
    from spectral_tracking.gaussians import random_gaussians

    targets = SimpleNamespace(num_frames=2, cameras=orbit_camera([0, 90], width=512, height=512), images=torch.rand(2, 2, 512, 512, 3),
                              view_names=["0.0", "90.0"], train_views=[0], eval_views=[1])
    module = SimpleNamespace(deformation=build_deformation("rigid", random_gaussians(50), 2, num_control_points=8), targets=targets)
    data = load_tracked(save_tracked(module, tmp_path / "tracked.npz"))
    assert data["images"].shape == (2, 2, 256, 256, 3) and int(data["width"]) == 512
    assert data["means"].shape == (2, 50, 3) and data["normalization"] == {}
