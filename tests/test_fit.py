"""Canonical asset fitting: input adapters, initialisation, the loop, the Hydra entry, clear errors."""

import json
import logging
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from spectral_tracking.cameras import orbit_camera, project_points
from spectral_tracking.data import Sequence, SequenceFormatError
from spectral_tracking.data.frames import to_uint8
from spectral_tracking.data.nerf_synthetic import load_nerf_synthetic, write_nerf_synthetic
from spectral_tracking.fit import (
    FitInputError,
    FitSettings,
    build_strategy,
    fit,
    init_from_ply,
    init_random,
    l1_dssim_loss,
    load_frame,
    pick_frame,
    render_views,
)
from spectral_tracking.gaussians import load_ply, random_gaussians, save_ply
from spectral_tracking.metrics import psnr

REPO = Path(__file__).resolve().parents[1]


def _scene(size=32, views=(0, 90, 180, 270), n=150, seed=0):
    """One frame of posed images rendered from random Gaussians (straight colour, alpha as mask)."""
    from spectral_tracking.render import render

    gt = random_gaussians(n, seed=seed, extent=0.3, scale_range=(0.04, 0.09))
    gt.opacity_logits[:] = 3.0
    cams = orbit_camera(list(views), 15, 2.0, width=size, height=size)
    with torch.no_grad():
        out = render(gt, cams, torch.zeros(3), "cpu")
    alpha = out.alpha.clamp(0, 1)
    rgb = torch.where(alpha[..., None] > 1e-4, out.rgb / alpha.clamp_min(1e-4)[..., None], torch.zeros_like(out.rgb)).clamp(0, 1)
    names = [f"{a:.1f}" for a in views]
    return Sequence(canonical=None, cameras=cams, view_names=names, azimuths=[float(a) for a in views],
                    images=torch.from_numpy(to_uint8(rgb))[:, None], masks=torch.from_numpy(to_uint8(alpha))[:, None],
                    supervision_views=list(range(len(views))), novel_views=[], meta={"folder": "tiny synthetic scene"},
                    static=True)


@pytest.fixture(autouse=True)
def _one_thread():
    """32 px images gain nothing from intra-op threads, and on a shared 2-core machine OpenMP
    contention makes these tests several times slower; run them single-threaded."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def scene():
    return _scene()


# --- the loop ----------------------------------------------------------------------------------
def test_fit_tiny_scene_raises_psnr(scene):
    g0 = init_random(scene, 300, sh_degree=0, seed=1)
    black = torch.zeros(3)
    before = np.mean([float(psnr(r[None], t[None])) for r, t in zip(render_views(g0, scene.cameras, black, "cpu"),
                                                                     scene.target(torch.arange(4), 0, black))])
    strategy = build_strategy("spectral_gs", {"refine_start_iter": 40, "refine_every": 40, "refine_stop_iter": 100})
    res = fit(scene, g0, strategy, FitSettings(steps=120, log_every=40, backend="cpu", progress=False))
    assert res.metrics["psnr"] > before + 4.0, (before, res.metrics)
    assert res.metrics["psnr"] > 24.0 and res.metrics["psnr_object"] < res.metrics["psnr"]
    assert [h["step"] for h in res.history] == [40, 80, 120]
    assert res.history[-1]["psnr"] > res.history[0]["psnr"]
    for key in ("num_gaussians", "mean_entropy", "needle_fraction", "seconds", "spectral_splits"):
        assert key in res.metrics
    assert res.metrics["num_gaussians"] == len(res.gaussians)
    assert 0 <= res.metrics["needle_fraction"] <= 1 and 0 < res.metrics["mean_entropy"] <= math.log(3) + 1e-6
    res.gaussians.check_finite()
    assert res.renders.shape == (4, 32, 32, 3) and res.targets.shape == (4, 32, 32, 3)


def test_l1_dssim_loss_zero_for_identical_and_differentiable():
    a = torch.rand(2, 16, 16, 3, requires_grad=True)
    assert l1_dssim_loss(a.detach(), a.detach()).item() == pytest.approx(0.0, abs=1e-6)
    b = torch.rand(2, 16, 16, 3)
    loss = l1_dssim_loss(a, b)
    loss.backward()
    assert a.grad is not None and a.grad.abs().sum() > 0
    assert l1_dssim_loss(a, b, ssim_weight=0).item() == pytest.approx((a - b).abs().mean().item(), rel=1e-6)


# --- initialisation ----------------------------------------------------------------------------
def test_random_init_inside_every_view_and_mask(scene):
    g = init_random(scene, 400, sh_degree=2, seed=0)
    assert len(g) == 400 and g.sh_degree == 2
    uv, z = project_points(g.means, scene.cameras)
    assert (z > 0).all()
    assert ((uv >= 0) & (uv[..., :1] < 32) & (uv[..., 1:] < 32)).all()
    # every point lands on the object in every mask (nearest pixel, allowing bilinear edges)
    px = uv.long().clamp(0, 31)
    masks = scene.mask(slice(None), 0)
    m = torch.stack([masks[v, px[v, :, 1], px[v, :, 0]] for v in range(4)])
    assert (m > 0.05).float().mean() > 0.97
    assert (g.sh[:, 1:] == 0).all() and torch.isfinite(g.log_scales).all()


def test_init_from_point_cloud_and_3dgs_ply(tmp_path):
    from plyfile import PlyData, PlyElement

    pts = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    rec = np.empty(50, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    rec["x"], rec["y"], rec["z"] = pts.T
    rec["red"], rec["green"], rec["blue"] = 255, 0, 128
    PlyData([PlyElement.describe(rec, "vertex")]).write(str(tmp_path / "pc.ply"))
    g = init_from_ply(tmp_path / "pc.ply", sh_degree=1)
    assert len(g) == 50 and g.sh_degree == 1
    torch.testing.assert_close(g.means, torch.from_numpy(pts))
    torch.testing.assert_close(g.colors[0], torch.tensor([0.98, 0.02, 128 / 255]), atol=1e-5, rtol=0)
    src = random_gaussians(20, sh_degree=0, seed=2)
    save_ply(src, tmp_path / "gs.ply")
    g3 = init_from_ply(tmp_path / "gs.ply", sh_degree=3)
    assert g3.sh_degree == 3 and (g3.sh[:, 1:] == 0).all()
    torch.testing.assert_close(g3.sh[:, :1], src.sh)
    torch.testing.assert_close(g3.log_scales, src.log_scales)
    with pytest.raises(FitInputError, match="does not exist"):
        init_from_ply(tmp_path / "nope.ply", 0)


# --- input adapters ----------------------------------------------------------------------------
def test_nerf_synthetic_roundtrip(tmp_path, scene):
    write_nerf_synthetic(tmp_path, scene)
    back = load_nerf_synthetic(tmp_path)
    cams, names = back.cameras, back.view_names
    assert names == ["r_0", "r_1", "r_2", "r_3"]
    torch.testing.assert_close(cams.viewmats, scene.cameras.viewmats, atol=1e-5, rtol=0)
    torch.testing.assert_close(cams.Ks, scene.cameras.Ks, atol=1e-3, rtol=0)
    assert (back.image(slice(None), 0) - scene.image(slice(None), 0)).abs().max() < 1 / 255 + 1e-6
    assert (back.mask(slice(None), 0) - scene.mask(slice(None), 0)).abs().max() < 1 / 255 + 1e-6
    # auto-detected by the fit loader, views picked by name
    d = load_frame(tmp_path, views=["r_1", "r_3"])
    assert d.view_names == ["r_1", "r_3"] and d.images.shape == (2, 1, 32, 32, 3)
    torch.testing.assert_close(d.cameras.viewmats, scene.cameras.viewmats[[1, 3]], atol=1e-5, rtol=0)


def test_sequence_frame_adapter(scene):
    u8 = scene.images[:, 0]
    imgs = torch.stack([u8, torch.zeros_like(u8)], 1)  # [V, T=2, H, W, 3]; frame 1 is black
    masks = scene.masks.repeat(1, 2, 1, 1)
    seq = Sequence(canonical=None, cameras=scene.cameras, view_names=["a", "b", "c", "d"], azimuths=[0.0, 90.0, 180.0, 270.0],
                   images=imgs, masks=masks, supervision_views=[0, 1, 2], novel_views=[3])
    d = pick_frame(seq, frame=0)
    assert d.view_names == ["a", "b", "c"] and len(d.cameras) == 3
    assert (d.image(slice(None), 0) - scene.image(slice(None), 0)[:3]).abs().max() < 1 / 255 + 1e-6
    assert pick_frame(seq, frame=1, views=["d"]).images.max() == 0
    with pytest.raises(FitInputError, match="frame 5 out of range"):
        pick_frame(seq, frame=5)
    with pytest.raises(FitInputError, match="no view named 'x'"):
        pick_frame(seq, views=["x"])


def test_resized_scales_cameras_with_images(scene):
    d = scene.resized(16)
    assert d.images.shape == (4, 1, 16, 16, 3) and d.masks.shape == (4, 1, 16, 16)
    assert d.cameras.width == 16 and d.cameras.Ks[0, 0, 0] == pytest.approx(scene.cameras.Ks[0, 0, 0].item() / 2)
    assert scene.resized(None) is scene and scene.resized(32) is scene


# --- bad input ---------------------------------------------------------------------------------
def test_bad_input_errors(tmp_path, scene):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FitInputError, match="no cameras found"):
        load_frame(empty)
    with pytest.raises(FitInputError, match="no such folder"):
        load_frame(tmp_path / "missing")
    # transforms with no frames: no cameras
    nf = tmp_path / "noframes"
    nf.mkdir()
    (nf / "transforms_train.json").write_text(json.dumps({"camera_angle_x": 0.8, "frames": []}))
    with pytest.raises(FitInputError, match="no cameras found"):
        load_frame(nf)
    # a frame whose image is missing
    miss = tmp_path / "missing_image"
    write_nerf_synthetic(miss, scene)
    (miss / "train" / "r_2.png").unlink()
    with pytest.raises(FitInputError, match=r"r_2\.png does not exist"):
        load_frame(miss)
    # images of mixed sizes
    mixed = tmp_path / "mixed"
    write_nerf_synthetic(mixed, scene)
    Image.new("RGBA", (20, 24)).save(mixed / "train" / "r_1.png")
    with pytest.raises(FitInputError, match="different sizes"):
        load_frame(mixed)
    # counts or sizes that disagree (the one-frame Sequence checks them)
    fields = {**scene.__dict__}
    with pytest.raises(SequenceFormatError, match="4 views of images but 2 cameras"):
        Sequence(**{**fields, "cameras": scene.cameras[:2]})
    with pytest.raises(SequenceFormatError, match="images are 32x32 but cameras are 64x64"):
        Sequence(**{**fields, "cameras": scene.cameras.resized(64, 64)})
    with pytest.raises(FitInputError, match="data.type"):
        load_frame(empty, type="colmap")
    with pytest.raises(FitInputError, match="strategy must be one of"):
        build_strategy("mcmc")


# --- Hydra entry -------------------------------------------------------------------------------
def _compose(overrides):
    from hydra import compose, initialize_config_dir

    import spectral_tracking.fit.settings  # noqa: F401  (registers fit_schema)
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="fit", overrides=overrides)


def test_run_composes_real_config_and_writes_outputs(tmp_path, scene, caplog):
    from spectral_tracking.fit import run

    caplog.set_level(logging.INFO)  # as under Hydra (conf/hydra/job_logging): fit.log gets the fit's records
    write_nerf_synthetic(tmp_path / "scene", scene)
    cfg = _compose([
        f"data.path={tmp_path / 'scene'}", f"out={tmp_path / 'out'}", "steps=30", "resolution=24", "num_points=200",
        "progress=false", "log_every=10", "densify.refine_start_iter=5", "densify.refine_every=10", "backend=cpu",
        "sh_degree=1",
    ])
    assert cfg.densify.refine_stop_iter == round(0.75 * 30)
    metrics = run(cfg)
    out = tmp_path / "out"
    for name in ("canonical.ply", "fit_views.png", "fit_log.csv", "metrics.json"):
        assert (out / name).is_file(), name
    g = load_ply(out / "canonical.ply")
    assert len(g) == metrics["num_gaussians"] and g.sh_degree == 1
    assert metrics["resolution"] == [24, 24] and metrics["strategy"] == "SpectralGSStrategy"
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["psnr"] == pytest.approx(metrics["psnr"]) and saved["config"]["steps"] == 30
    assert "fitting" in (out / "fit.log").read_text()
    png = Image.open(out / "fit_views.png")
    assert png.size == (4 * 24, 2 * 24)
    assert len((out / "fit_log.csv").read_text().strip().splitlines()) == 1 + 3


def test_run_config_errors(tmp_path):
    from spectral_tracking.fit import run

    with pytest.raises(FitInputError, match="data.path is required"):
        run(_compose([f"out={tmp_path}", "data.path=''"]))
    with pytest.raises(FitInputError, match="sh_degree must be a finite integer >= 0 and <= 3"):
        run(_compose([f"out={tmp_path}", "data.path=x", "sh_degree=4"]))
    with pytest.raises(FitInputError, match="strategy must be one of"):
        run(_compose([f"out={tmp_path}", "data.path=x", "strategy=mcmc"]))


@pytest.mark.slow
def test_fit_entry_point_multirun_both_strategies(tmp_path, scene):
    write_nerf_synthetic(tmp_path / "scene", scene)
    cmd = [sys.executable, str(REPO / "fit.py"), "-m", "strategy=default,spectral_gs", f"data.path={tmp_path / 'scene'}",
           "steps=10", "resolution=16", "num_points=100", "progress=false", "backend=cpu",
           f"hydra.sweep.dir={tmp_path / 'sweep'}", "hydra.sweep.subdir=${strategy}"]
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    for s in ("default", "spectral_gs"):
        m = json.loads((tmp_path / "sweep" / s / "metrics.json").read_text())
        assert m["strategy"] == {"default": "DefaultStrategy", "spectral_gs": "SpectralGSStrategy"}[s]
        assert (tmp_path / "sweep" / s / "canonical.ply").is_file()


# --- nothing lost, nothing silent (issue 13) ------------------------------------------------------
def _tiny_fit_overrides(data_path, out, *extra):
    return [f"data.path={data_path}", f"out={out}", "steps=3", "resolution=16", "num_points=60", "progress=false",
            "log_every=1", "backend=cpu", *extra]


def _sequence_folder(tmp_path, scene):
    """``scene`` as a two-frame sequence folder (cameras.json, frames/, meta.json; no canonical)."""
    from spectral_tracking.data import write_sequence

    two = Sequence(**{**scene.__dict__, "images": scene.images.repeat(1, 2, 1, 1, 1), "masks": scene.masks.repeat(1, 2, 1, 1),
                      "static": False, "train_views": None, "eval_views": None})
    return write_sequence(two, tmp_path / "sequence")


def test_fit_refuses_a_folder_holding_an_earlier_fit_unless_overwrite(tmp_path, scene):
    from spectral_tracking.fit import run

    write_nerf_synthetic(tmp_path / "scene", scene)
    out = tmp_path / "out"
    run(_compose(_tiny_fit_overrides(tmp_path / "scene", out)))
    before = {n: (out / n).read_bytes() for n in ("canonical.ply", "metrics.json")}
    with pytest.raises(FitInputError, match=r"out=.*out already holds canonical\.ply and metrics\.json; refusing to "
                                            r"overwrite: choose another out= or add overwrite=true"):
        run(_compose(_tiny_fit_overrides(tmp_path / "scene", out, "seed=1")))
    assert {n: (out / n).read_bytes() for n in before} == before  # nothing touched
    run(_compose(_tiny_fit_overrides(tmp_path / "scene", out, "seed=1", "overwrite=true")))
    assert (out / "canonical.ply").read_bytes() != before["canonical.ply"]
    lone_meta = tmp_path / "lone_meta"
    lone_meta.mkdir()
    (lone_meta / "meta.json").write_text("{}")
    with pytest.raises(FitInputError, match=r"already holds meta\.json"):
        run(_compose(_tiny_fit_overrides(tmp_path / "scene", lone_meta)))


def test_fit_never_writes_into_a_sequence_folder(tmp_path, scene):
    from spectral_tracking.fit import run

    seq_dir = _sequence_folder(tmp_path, scene)
    listing = sorted(p.relative_to(seq_dir) for p in seq_dir.rglob("*"))
    with pytest.raises(FitInputError, match=r"is the folder being fitted \(data\.path\); a fit never writes into its input"):
        run(_compose(_tiny_fit_overrides(seq_dir, seq_dir, "overwrite=true")))
    write_nerf_synthetic(tmp_path / "scene", scene)
    with pytest.raises(FitInputError, match=r"is a dataset folder \(it holds cameras\.json\); a sequence's canonical\.ply "
                                            r"is the asset the tracker is given, never a fit output, even with overwrite=true"):
        run(_compose(_tiny_fit_overrides(tmp_path / "scene", seq_dir, "overwrite=true")))
    assert sorted(p.relative_to(seq_dir) for p in seq_dir.rglob("*")) == listing
    run_dir = tmp_path / "tracking_run"
    run_dir.mkdir()
    (run_dir / "run_meta.json").write_text("{}")
    with pytest.raises(FitInputError, match=r"holds a tracking run \(run_meta\.json\)"):
        run(_compose(_tiny_fit_overrides(tmp_path / "scene", run_dir, "overwrite=true")))


def test_numbered_pngs_need_data_type_consistent4d(tmp_path, scene, caplog):
    video = tmp_path / "video"
    video.mkdir()
    for t in range(2):
        Image.fromarray(torch.cat([scene.images[0, 0], scene.masks[0, 0][..., None]], -1).numpy(), "RGBA").save(video / f"{t}.png")
    with pytest.raises(FitInputError, match=r"numbered PNGs and no cameras .* set data\.type=consistent4d"):
        load_frame(video)
    with caplog.at_level("WARNING", logger="spectral_tracking.fit.inputs"):
        d = load_frame(video, type="consistent4d")
    assert d.num_views == 1 and "assumed Consistent4D front camera" in caplog.text


def test_a_one_image_video_is_fitted_and_refused_for_tracking_in_one_line(tmp_path, scene):
    """Fitting uses one frame: a Consistent4D folder holding only 0.png is a still, fitted as is; the
    tracker refuses it, saying why and what to do with it."""
    from spectral_tracking.data import load_dataset
    from spectral_tracking.gaussians import save_ply

    video = tmp_path / "still"
    video.mkdir()
    Image.fromarray(torch.cat([scene.images[0, 0], scene.masks[0, 0][..., None]], -1).numpy(), "RGBA").save(video / "0.png")
    d = load_frame(video, type="consistent4d")
    assert d.num_views == 1 and d.images.shape[1] == 1
    save_ply(random_gaussians(30), tmp_path / "canonical.ply")
    ds = {"type": "consistent4d", "name": "still", "path": str(video), "canonical": str(tmp_path / "canonical.ply")}
    with pytest.raises(SequenceFormatError, match=r"still capture \(one frame\); tracking needs a video\. Fit a canonical "
                                                  r"asset to it with fit\.py instead"):
        load_dataset(ds, 16)


def test_a_one_frame_sequence_folder_is_fitted_and_refused_for_tracking_in_one_line(tmp_path, scene):
    """The project's own folder format with num_frames = 1 is a still capture: fit.py reads it, the
    tracker refuses it as it refuses a one-image video."""
    from spectral_tracking.data import load_dataset, write_sequence
    from spectral_tracking.gaussians import save_ply

    folder = write_sequence(scene, tmp_path / "one")
    d = load_frame(folder)
    assert d.images.shape[1] == 1 and d.static
    save_ply(random_gaussians(30), folder / "canonical.ply")
    with pytest.raises(SequenceFormatError, match=r"still capture \(one frame\); tracking needs a video"):
        load_dataset({"type": "folder", "name": "one", "path": str(folder)}, None)


def test_bad_cameras_in_a_sequence_name_the_file_and_view(tmp_path, scene):
    seq_dir = _sequence_folder(tmp_path, scene)
    cams = json.loads((seq_dir / "cameras.json").read_text())
    cams["views"][2]["K"] = [[0.0] * 3] * 3
    (seq_dir / "cameras.json").write_text(json.dumps(cams))
    with pytest.raises(FitInputError, match=r"cameras\.json: view '180\.0': K has focal lengths fx=0"):
        load_frame(seq_dir)
    cams["views"][2]["K"] = [[float("nan")] * 3] * 3
    (seq_dir / "cameras.json").write_text(json.dumps(cams))
    with pytest.raises(FitInputError, match=r"cameras\.json: view '180\.0': K holds NaN or inf"):
        load_frame(seq_dir)


@pytest.mark.parametrize("kind", ["truncated", "nan", "inf", "zero_vertices", "renamed_property", "coincident"])
def test_bad_init_ply_names_the_file(tmp_path, kind):
    from test_data_errors import write_bad_ply

    from spectral_tracking.gaussians import PLYFormatError

    src = save_ply(random_gaussians(30, seed=0), tmp_path / "good.ply")
    bad = write_bad_ply(kind, src, tmp_path / f"{kind}.ply")
    with pytest.raises(PLYFormatError) as info:
        init_from_ply(bad, 0)
    assert str(bad) in str(info.value) and "\n" not in str(info.value)


def test_bad_point_cloud_init_names_the_file(tmp_path):
    from plyfile import PlyData, PlyElement

    from spectral_tracking.gaussians import PLYFormatError

    rec = np.zeros(4, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    PlyData([PlyElement.describe(rec, "vertex")]).write(str(tmp_path / "same.ply"))
    with pytest.raises(PLYFormatError, match=r"same\.ply: all 4 points sit at one position"):
        init_from_ply(tmp_path / "same.ply", 0)
    rec["x"] = [0, 1, np.nan, 2]
    PlyData([PlyElement.describe(rec, "vertex")]).write(str(tmp_path / "nan.ply"))
    with pytest.raises(PLYFormatError, match=r"nan\.ply: 1 points hold NaN or inf"):
        init_from_ply(tmp_path / "nan.ply", 0)
    PlyData([PlyElement.describe(np.zeros(3, dtype=[("u", "f4")]), "vertex")]).write(str(tmp_path / "u.ply"))
    with pytest.raises(PLYFormatError, match=r"u\.ply: an init PLY is a 3DGS asset .* or a point cloud"):
        init_from_ply(tmp_path / "u.ply", 0)


@pytest.mark.parametrize("override, key", [
    ("steps=0", "steps"), ("resolution=0", "resolution"), ("views_per_step=0", "views_per_step"),
    ("init_opacity=1.5", "init_opacity"), ("ssim_weight=2", "ssim_weight"), ("max_gaussians=-1", "max_gaussians"),
    ("log_every=0", "log_every"), ("+lr.means=-1", "lr.means"), ("+lr.foo=1", "lr"), ("scene_scale=0", "scene_scale"),
    ("data.frame=-1", "data.frame"), ("num_points=0", "num_points"), ("device=tpu", "device"),
    ("densify.refine_every=0", "densify.refine_every"), ("spectral_gs.split_factor=1", "spectral_gs.split_factor"),
])
def test_fit_settings_refused_before_anything_is_read_or_written(tmp_path, override, key):
    from spectral_tracking.fit import run

    out = tmp_path / "out"
    with pytest.raises(FitInputError, match="^" + key.replace(".", r"\.")):
        run(_compose(_tiny_fit_overrides(tmp_path / "no_such_data", out, override)))
    assert not out.exists()


def test_failed_fit_creates_no_out_folder(tmp_path):
    from spectral_tracking.fit import run

    with pytest.raises(FitInputError, match="no such folder"):
        run(_compose(_tiny_fit_overrides(tmp_path / "missing", tmp_path / "out")))
    assert not (tmp_path / "out").exists()


def _fit_cli(tmp_path, *args):
    import os

    cmd = [sys.executable, str(REPO / "fit.py"), "steps=3", "resolution=16", "num_points=60", "progress=false", "backend=cpu",
           f"hydra.run.dir={tmp_path / 'hydra'}", *args]
    return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})


def _assert_one_line(r, pattern):
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2, r.stderr[-3000:]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr[-3000:]
    assert re.search(pattern, lines[0]), lines[0]


def test_fit_entry_point_refuses_an_existing_fit_in_one_line(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "canonical.ply").write_text("an earlier fit")
    _assert_one_line(_fit_cli(tmp_path, f"data.path={tmp_path}", f"out={out}"),
                     r"out=.*out already holds canonical\.ply; refusing to overwrite: .*overwrite=true")
    assert (out / "canonical.ply").read_text() == "an earlier fit"


def test_fit_entry_point_misspelt_setting_one_line_nothing_written(tmp_path):
    r = _fit_cli(tmp_path, f"data.path={tmp_path}", f"out={tmp_path / 'out'}", "densify.refine_evry=5")
    _assert_one_line(r, r"^error: densify\.refine_evry: no such setting; did you mean densify\.refine_every\? "
                        r"\(every setting: spectral_tracking/fit/settings\.py\)")
    assert not (tmp_path / "out").exists() and not (tmp_path / "hydra").exists() and not (tmp_path / "outputs").exists()


def test_fit_schema_is_the_one_home_of_the_defaults():
    """conf/fit.yaml holds no value of its own (only Hydra's: no .hydra/ folder, no Hydra file log); the loop's
    defaults are the schema's (device: the loop takes a torch device, which fit.run resolves from the setting's
    "auto")."""
    import dataclasses

    from omegaconf import OmegaConf

    from spectral_tracking.fit.settings import FitConfig

    own = OmegaConf.load(REPO / "conf" / "fit.yaml")
    assert set(own) <= {"defaults", "hydra"}, f"conf/fit.yaml sets {set(own) - {'defaults', 'hydra'}}: write defaults in fit/settings.py"
    for f in dataclasses.fields(FitSettings):
        if f.name in {g.name for g in dataclasses.fields(FitConfig)} - {"device"} and f.default is not dataclasses.MISSING:
            assert f.default == getattr(FitConfig, f.name), f.name


@pytest.mark.slow
@pytest.mark.parametrize("case", ["no_path", "missing_folder", "bad_init_ply", "numbered_pngs", "bad_setting", "bad_cameras"])
def test_fit_entry_point_input_errors_one_line_exit_2(tmp_path, scene, case):
    from test_data_errors import write_bad_ply

    write_nerf_synthetic(tmp_path / "scene", scene)
    out = f"out={tmp_path / 'out'}"
    if case == "no_path":
        args, pattern = [out], r"data\.path is required \(it is not set\): add data\.path=<folder>"
    elif case == "missing_folder":
        args, pattern = [f"data.path={tmp_path / 'nope'}", out], r"nope: no such folder"
    elif case == "bad_init_ply":
        bad = write_bad_ply("truncated", save_ply(random_gaussians(30), tmp_path / "g.ply"), tmp_path / "bad.ply")
        args, pattern = [f"data.path={tmp_path / 'scene'}", f"init={bad}", out], r"bad\.ply: not a readable PLY file"
    elif case == "numbered_pngs":
        (tmp_path / "video").mkdir()
        for t in range(2):
            Image.new("RGBA", (16, 16)).save(tmp_path / "video" / f"{t}.png")
        args, pattern = [f"data.path={tmp_path / 'video'}", out], r"numbered PNGs and no cameras .*data\.type=consistent4d"
    elif case == "bad_setting":
        args, pattern = [f"data.path={tmp_path / 'scene'}", out, "init_opacity=0"], r"init_opacity must be a finite number > 0"
    else:
        seq_dir = _sequence_folder(tmp_path, scene)
        cams = json.loads((seq_dir / "cameras.json").read_text())
        cams["views"][1]["viewmat"][0][3] = float("nan")
        (seq_dir / "cameras.json").write_text(json.dumps(cams))
        args, pattern = [f"data.path={seq_dir}", out], r"cameras\.json: view '90\.0': viewmat holds NaN or inf"
    _assert_one_line(_fit_cli(tmp_path, *args), pattern)
    assert not (tmp_path / "out").exists()


def test_bad_nerf_synthetic_cameras_name_the_file_and_frame(tmp_path, scene):
    path = write_nerf_synthetic(tmp_path / "scene", scene)
    meta = json.loads(path.read_text())
    meta["camera_angle_x"] = 0.0  # infinite focal length
    path.write_text(json.dumps(meta))
    with pytest.raises(FitInputError, match=r"transforms_train\.json: camera_angle_x must be .* in \(0, pi\); got 0\.0"):
        load_frame(tmp_path / "scene")
    meta.pop("camera_angle_x")
    meta["fl_x"] = float("nan")
    path.write_text(json.dumps(meta))
    with pytest.raises(FitInputError, match=r"transforms_train\.json: frame 'r_0': K holds NaN or inf"):
        load_frame(tmp_path / "scene")
    meta.pop("fl_x")
    meta["camera_angle_x"] = 0.8
    meta["frames"][1]["transform_matrix"] = [[0.0] * 4] * 3 + [[0.0, 0.0, 0.0, 1.0]]
    path.write_text(json.dumps(meta))
    with pytest.raises(FitInputError, match=r"transforms_train\.json: frame 1 .*singular"):
        load_frame(tmp_path / "scene")
