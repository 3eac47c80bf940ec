"""The on-disk sequence format: round trip, validation errors naming the file, atomic writes."""

import json
import shutil

import numpy as np
import pytest
import torch

from spectral_tracking.cameras import orbit_camera
from spectral_tracking.errors import DataNotFoundError, SequenceFormatError
from spectral_tracking.data.folder import atomic_write, is_complete, load_sequence, write_sequence
from spectral_tracking.data.frames import write_png
from spectral_tracking.data.sequence import Sequence, azimuth_of_camera, normalize_scene
from spectral_tracking.gaussians import random_gaussians


def tiny_sequence(T=3, H=12, W=16, seed=0) -> Sequence:
    gen = torch.Generator().manual_seed(seed)
    az = [0.0, 90.0, 180.0, 270.0, 45.0]
    cams = orbit_camera(az, width=W, height=H)
    V = len(az)
    images = torch.randint(0, 256, (V, T, H, W, 3), generator=gen, dtype=torch.uint8)
    masks = torch.randint(0, 256, (V, T, H, W), generator=gen, dtype=torch.uint8)
    return Sequence(canonical=random_gaussians(20, seed=seed), cameras=cams, view_names=[f"{a:.1f}" for a in az],
                    azimuths=az, images=images, masks=masks, supervision_views=[0, 1, 2, 3], novel_views=[4],
                    gt_means=torch.randn(T, 20, 3, generator=gen), fps=12.0, meta={"note": "test"})


@pytest.fixture
def written(tmp_path):
    seq = tiny_sequence()
    return seq, write_sequence(seq, tmp_path / "seq")


@pytest.mark.parametrize("rgba", [True, False])
def test_round_trip(tmp_path, rgba):
    seq = tiny_sequence()
    folder = write_sequence(seq, tmp_path / "seq", rgba=rgba)
    assert (folder / "masks").is_dir() != rgba
    back = load_sequence(folder)
    assert torch.equal(back.images, seq.images)
    assert torch.equal(back.masks, seq.masks)
    assert torch.allclose(back.cameras.viewmats, seq.cameras.viewmats)
    assert torch.allclose(back.cameras.Ks, seq.cameras.Ks)
    assert back.view_names == seq.view_names and back.azimuths == seq.azimuths
    assert back.supervision_views == [0, 1, 2, 3] and back.novel_views == [4]
    assert back.train_views == [0, 1, 2, 3] and back.eval_views == [4]
    assert torch.allclose(back.gt_means, seq.gt_means)
    assert torch.allclose(back.canonical.means, seq.canonical.means)
    assert back.fps == 12.0 and back.meta["note"] == "test" and back.num_frames == 3


def test_float_access_and_target(written):
    seq, folder = written
    s = load_sequence(folder)
    img, m = s.image(1, 2), s.mask(1, 2)
    assert img.shape == (12, 16, 3) and m.shape == (12, 16)
    assert torch.allclose(img * 255, seq.images[1, 2].float())
    bg = torch.tensor([0.2, 0.4, 0.6])
    tgt = s.target(1, 2, bg)
    assert torch.allclose(tgt, img * m[..., None] + bg * (1 - m[..., None]))
    assert s.time(0) == 0.0 and s.time(2) == 1.0


def test_missing_frame_names_file(written):
    _, folder = written
    (folder / "frames" / "90.0" / "1.png").unlink()
    with pytest.raises(SequenceFormatError, match=r"90\.0.*1\.png"):
        load_sequence(folder)


def test_extra_frame_is_an_error(written):
    _, folder = written
    shutil.copy(folder / "frames" / "0.0" / "0.png", folder / "frames" / "0.0" / "7.png")
    with pytest.raises(SequenceFormatError, match=r"7\.png"):
        load_sequence(folder)


def test_inconsistent_image_size_names_file(written):
    _, folder = written
    write_png(folder / "frames" / "180.0" / "2.png", np.zeros((10, 16, 4), np.uint8))
    with pytest.raises(SequenceFormatError, match=r"180\.0.2\.png.*16x10.*16x12"):
        load_sequence(folder)


def test_mask_of_wrong_size_names_file(tmp_path):
    folder = write_sequence(tiny_sequence(), tmp_path / "seq", rgba=False)
    write_png(folder / "masks" / "0.0" / "1.png", np.zeros((12, 15), np.uint8))
    with pytest.raises(SequenceFormatError, match=r"masks.0\.0.1\.png.*15x12"):
        load_sequence(folder)


def test_rgb_frame_without_mask_is_an_error(tmp_path):
    folder = write_sequence(tiny_sequence(), tmp_path / "seq", rgba=False)
    (folder / "masks" / "270.0" / "0.png").unlink()
    with pytest.raises(SequenceFormatError, match=r"270\.0.0\.png.*needs a mask"):
        load_sequence(folder)


def test_camera_count_must_match_view_folders(written):
    _, folder = written
    cams = json.loads((folder / "cameras.json").read_text())
    cams["views"] = cams["views"][:3] + cams["views"][4:]  # drop "270.0"
    (folder / "cameras.json").write_text(json.dumps(cams))
    with pytest.raises(SequenceFormatError, match=r"cameras\.json.*3 cameras.*4 view folders"):
        load_sequence(folder)


def test_corrupt_png_names_file(written):
    _, folder = written
    p = folder / "novel" / "45.0" / "0.png"
    p.write_bytes(p.read_bytes()[:40])
    with pytest.raises(SequenceFormatError, match=r"45\.0.0\.png.*not a readable image"):
        load_sequence(folder)


def test_no_frame_is_an_error_and_one_frame_is_a_still(written, tmp_path):
    """num_frames = 0 is refused; a one-frame folder is a still capture (fit.py's, refused for tracking
    by the registry, tests/test_fit.py); an in-memory Sequence of one frame that is not marked still is refused."""
    _, folder = written
    meta = json.loads((folder / "meta.json").read_text())
    meta["num_frames"] = 0
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(SequenceFormatError, match=r"meta\.json: num_frames = 0; a sequence holds at least 1 frame"):
        load_sequence(folder)
    with pytest.raises(SequenceFormatError, match="at least 2"):
        tiny_sequence(T=1)


def test_half_written_folder_is_never_read(written):
    _, folder = written
    meta = json.loads((folder / "meta.json").read_text())
    meta.pop("complete")
    (folder / "meta.json").write_text(json.dumps(meta))
    assert not is_complete(folder)
    with pytest.raises(SequenceFormatError, match=r'meta\.json: lacks "complete": true, the marker that every file'):
        load_sequence(folder)
    (folder / "meta.json").unlink()
    with pytest.raises(SequenceFormatError, match=r"meta\.json: missing; .*written last"):
        load_sequence(folder)


def test_missing_folder_and_canonical(tmp_path, written):
    with pytest.raises(DataNotFoundError, match="cameras.json"):
        load_sequence(tmp_path / "nope")
    _, folder = written
    (folder / "canonical.ply").unlink()
    with pytest.raises(SequenceFormatError, match="canonical.ply"):
        load_sequence(folder)
    assert load_sequence(folder, require_canonical=False).canonical is None


def test_missing_ground_truth_frame(written):
    _, folder = written
    (folder / "gt" / "2.npz").unlink()
    with pytest.raises(SequenceFormatError, match=r"gt.2\.npz"):
        load_sequence(folder)


def test_normalize_scene_keeps_images():
    """Normalising the asset and moving the cameras with it leaves every projection unchanged."""
    g = random_gaussians(50, extent=0.3, seed=1).translate(torch.tensor([0.4, -0.2, 0.1]))
    cams = orbit_camera([0.0, 90.0, 200.0], radius=2.5, width=40, height=30)
    gn, cn, rec = normalize_scene(g, cams)
    assert abs(gn.bounding_sphere()[1] - 0.5) < 1e-5

    def project(points, c):
        x = points @ c.viewmats[:, :3, :3].transpose(-1, -2) + c.viewmats[:, None, :3, 3]
        uv = x @ c.Ks.transpose(-1, -2)
        return uv[..., :2] / uv[..., 2:]

    assert torch.allclose(project(g.means, cams), project(gn.means, cn), atol=1e-3)
    assert rec["scale"] > 0


def test_a_recorded_standard_frame_is_not_trusted_when_the_asset_disagrees(caplog):
    """meta.json says radius 0.5, but canonical.ply was replaced by a 3.7x asset: it is normalised
    (with a warning naming both radii), not tracked at the wrong size; a 2% perturbation is trusted."""
    from dataclasses import replace

    from spectral_tracking.data.sequence import normalized

    base, _, _ = normalize_scene(random_gaussians(50, extent=0.3, seed=1), orbit_camera([0.0], width=16, height=12))
    seq = replace(tiny_sequence(), canonical=base, meta={"folder": "seq_x", "normalization": {"bounding_radius": 0.5}})
    assert normalized(seq) is seq
    slightly = replace(seq, canonical=replace(base, means=base.means * 1.02))
    assert normalized(slightly) is slightly
    big = replace(seq, canonical=replace(base, means=base.means * 3.7))
    with caplog.at_level("WARNING"):
        out = normalized(big)
    assert abs(out.canonical.bounding_sphere()[1] - 0.5) < 1e-4
    assert "seq_x: meta.json records an asset of bounding radius 0.5, but its canonical asset's is 1.85" in caplog.text


def test_azimuth_of_camera():
    cams = orbit_camera([0.0, 45.0, 90.0, 270.0])
    got = [azimuth_of_camera(v) for v in cams.viewmats]
    assert np.allclose(got, [0.0, 45.0, 90.0, 270.0], atol=1e-4)


def _writer(calls):
    def write(tmp):
        calls.append(tmp)
        write_sequence(tiny_sequence(), tmp)
    return write


def test_atomic_write_caches_and_regenerates(tmp_path):
    final = tmp_path / "cache" / "seq"
    calls = []
    atomic_write(final, _writer(calls))
    assert len(calls) == 1 and is_complete(final)
    assert not list(final.parent.glob("*.partial-*"))
    atomic_write(final, _writer(calls))  # complete: a no-op
    assert len(calls) == 1
    (final / "meta.json").unlink()  # now it looks half-written
    atomic_write(final, _writer(calls))
    assert len(calls) == 2 and is_complete(final)


def test_atomic_write_interrupted_leaves_nothing_readable(tmp_path):
    final = tmp_path / "seq"

    def crash(tmp):
        write_sequence(tiny_sequence(), tmp)
        (tmp / "meta.json").unlink()
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(final, crash)
    assert not final.exists() and not list(tmp_path.glob("*.partial-*"))
    # a stale partial folder of a dead process is cleaned up by the next run
    stale = tmp_path / "seq.partial-999999999"
    stale.mkdir()
    calls = []
    atomic_write(final, _writer(calls))
    assert not stale.exists() and is_complete(final)
