"""The front door for data: the registry, `load_dataset` (normalised, ground truth attached), the
error family, type detection and the still (NeRF-synthetic) reader."""

import json

import numpy as np
import pytest
import torch

from spectral_tracking.cameras import orbit_camera
from spectral_tracking.run.config import ConfigError
from spectral_tracking.data import (
    DATASETS, DataError, DataNotFoundError, Sequence, SequenceFormatError, detect_type, load_dataset, load_sequence,
    normalized, read_dataset, write_sequence,
)
from spectral_tracking.data.nerf_synthetic import load_nerf_synthetic, write_nerf_synthetic
from spectral_tracking.data.synthetic import generate
from spectral_tracking.gaussians import random_gaussians

SMALL = dict(frames=3, resolution=32, num_gaussians=400)


def small_sequence(scale=3.0, T=3, size=16) -> Sequence:
    """A sequence whose asset is far from the standard frame (bounding radius ~ scale / 2)."""
    g = random_gaussians(30, seed=1, extent=scale)
    cams = orbit_camera([0.0, 90.0, 45.0], radius=4 * scale, width=size, height=size)
    gen = torch.Generator().manual_seed(0)
    return Sequence(canonical=g, cameras=cams, view_names=["0.0", "90.0", "45.0"], azimuths=[0.0, 90.0, 45.0],
                    images=torch.randint(0, 256, (3, T, size, size, 3), generator=gen, dtype=torch.uint8),
                    masks=torch.randint(0, 256, (3, T, size, size), generator=gen, dtype=torch.uint8),
                    supervision_views=[0, 1], novel_views=[2], gt_means=g.means[None].repeat(T, 1, 1) + 0.1)


@pytest.fixture(scope="module")
def realistic_folder(tmp_path_factory):
    return generate("hopper_jump", setting="realistic", root=tmp_path_factory.mktemp("syn"), **SMALL)


def test_registry_names_and_error_family():
    assert list(DATASETS) == ["synthetic", "donut", "consistent4d", "sc4d", "gart", "folder", "nerf_synthetic"]
    assert issubclass(SequenceFormatError, DataError) and issubclass(SequenceFormatError, ValueError)
    assert issubclass(DataNotFoundError, DataError) and issubclass(DataNotFoundError, FileNotFoundError)
    with pytest.raises(ConfigError, match="unknown dataset type 'colmap'"):
        load_dataset({"type": "colmap"}, 32)


def test_folder_is_normalised_with_its_ground_truth(tmp_path):
    seq = small_sequence()
    folder = write_sequence(seq, tmp_path / "seq")
    out = load_dataset({"type": "folder", "path": str(folder)}, 16)
    assert abs(out.canonical.bounding_sphere()[1] - 0.5) < 1e-5
    rec = out.meta["normalization"]
    assert rec["bounding_radius"] == 0.5 and len(rec["center"]) == 3
    # ground truth moved with the asset; the images are unchanged
    index, gt = out.ground_truth()
    assert torch.equal(index, torch.arange(30))
    expected = (seq.gt_means - torch.tensor(rec["center"])) * rec["scale"]
    torch.testing.assert_close(gt, expected)
    assert torch.equal(out.images, seq.images)
    # a sequence already in the standard frame (or recorded as such) is left alone
    assert normalized(out) is out
    with pytest.raises(ConfigError, match=r"frames are 16x16 but resolution=32"):
        load_dataset({"type": "folder", "path": str(folder)}, 32)


def test_realistic_ground_truth_goes_through_the_canonical_index(realistic_folder):
    seq = load_dataset({"type": "folder", "path": str(realistic_folder)}, 32)
    assert seq.meta["normalization"] == {"bounding_radius": 0.5}  # generated in the standard frame: untouched
    raw = np.load(realistic_folder / "gt" / "canonical_index.npy")
    assert torch.equal(seq.gt_index, torch.from_numpy(raw))
    index, gt = seq.ground_truth()
    assert torch.equal(index, torch.nonzero(torch.from_numpy(raw) >= 0).squeeze(1))
    assert gt.shape == (3, len(index), 3)
    torch.testing.assert_close(gt[0], seq.canonical.means[index], atol=1e-6, rtol=0)
    # a wrong index file is reported with its path
    np.save(realistic_folder / "gt" / "canonical_index.npy", raw[:-1])
    with pytest.raises(SequenceFormatError, match=r"canonical_index\.npy: expected \d+ entries"):
        load_sequence(realistic_folder)
    np.save(realistic_folder / "gt" / "canonical_index.npy", raw)


def test_ground_truth_without_index_must_match_the_canonical(tmp_path):
    seq = small_sequence()
    assert seq.ground_truth()[1].shape == (3, 30, 3)
    bad = Sequence(**{**seq.__dict__, "gt_means": seq.gt_means[:, :20]})
    with pytest.raises(SequenceFormatError, match="gt/ holds 20 Gaussians per frame but the canonical has 30"):
        bad.ground_truth()
    assert Sequence(**{**seq.__dict__, "gt_means": None}).ground_truth() is None


def test_synthetic_entry_and_missing_data(tmp_path):
    ds = {"type": "synthetic", "preset": "quadruped_walk", "setting": "clean", "frames": 3, "seed": 0, "root": str(tmp_path)}
    with pytest.raises(ConfigError, match="unknown preset 'nope'.*or a creature_motion pair: .*'humanoid_jump'"):
        load_dataset({**ds, "preset": "nope"}, 32)
    with pytest.raises(ConfigError, match="unknown preset 'flower_walk'"):  # a creature without that motion
        load_dataset({**ds, "preset": "flower_walk"}, 32)
    pair = load_dataset({**ds, "preset": "humanoid_jump"}, 32)  # a pair outside the presets
    assert pair.meta["creature"] == "humanoid" and pair.meta["motion"] == "jump" and pair.num_frames == 3
    with pytest.raises(DataNotFoundError, match="the donut asset is not at"):
        load_dataset({"type": "donut", "asset": str(tmp_path / "none.ply"), "motion": "bend", "frames": 3,
                      "root": str(tmp_path)}, 32)
    with pytest.raises(DataNotFoundError, match="no such sequence folder"):
        load_dataset({"type": "folder", "path": str(tmp_path / "absent")}, 32)


def test_consistent4d_needs_its_fitted_canonical_for_tracking(tmp_path):
    from PIL import Image

    video = tmp_path / "toy"
    video.mkdir()
    for t in range(3):
        a = np.zeros((40, 40, 4), np.uint8)
        a[10 + t:30, 10:30] = (200, 100, 50, 255)
        Image.fromarray(a).save(video / f"{t}.png")
    ds = {"type": "consistent4d", "name": "toy", "path": str(video), "canonical": str(tmp_path / "canonical.ply")}
    with pytest.raises(DataNotFoundError, match=r"no canonical asset at .*canonical\.ply. Fit one from frame 0 first"):
        load_dataset(ds, 20)
    raw = read_dataset(ds, None, require_canonical=False)  # what fit.py reads: as stored, no asset yet
    assert raw.canonical is None and raw.images.shape == (1, 3, 40, 40, 3)
    from spectral_tracking.gaussians import save_ply

    save_ply(random_gaussians(50, seed=0, extent=2.0), tmp_path / "canonical.ply")
    seq = load_dataset(ds, 20)
    assert seq.images.shape == (1, 3, 20, 20, 3) and abs(seq.canonical.bounding_sphere()[1] - 0.5) < 1e-5


def test_nerf_synthetic_is_a_still_capture(tmp_path):
    seq = small_sequence(T=2).still(0, [0, 1, 2])
    assert seq.static and seq.num_frames == 1 and seq.supervision_views == [0, 1, 2]
    write_nerf_synthetic(tmp_path / "scene", seq)
    assert detect_type(tmp_path / "scene") == "nerf_synthetic"
    back = load_nerf_synthetic(tmp_path / "scene")
    assert back.static and back.view_names == ["r_0", "r_1", "r_2"]
    assert torch.equal(back.images, seq.images) and torch.equal(back.masks, seq.masks)
    with pytest.raises(SequenceFormatError, match="still capture"):
        load_dataset({"type": "nerf_synthetic", "path": str(tmp_path / "scene")}, 16)
    assert load_nerf_synthetic(tmp_path / "scene", resolution=8).images.shape == (3, 1, 8, 8, 3)
    with pytest.raises(SequenceFormatError, match="exactly 1 frame"):
        Sequence(**{**seq.__dict__, "images": seq.images.repeat(1, 2, 1, 1, 1), "masks": seq.masks.repeat(1, 2, 1, 1)})
    # a frame saved without its alpha: refused, naming the file (an all-opaque mask made the whole view the object)
    from PIL import Image

    frame = next((tmp_path / "scene").rglob("r_1.png"))
    Image.open(frame).convert("RGB").save(frame)
    with pytest.raises(SequenceFormatError, match=r"r_1\.png: an RGB image without alpha; .* save the frames with their alpha"):
        load_nerf_synthetic(tmp_path / "scene")


def test_detect_type(tmp_path):
    with pytest.raises(DataNotFoundError, match="no such folder"):
        detect_type(tmp_path / "missing")
    with pytest.raises(SequenceFormatError, match="no cameras found"):
        detect_type(tmp_path)
    (tmp_path / "cameras.json").write_text(json.dumps({"views": []}))
    assert detect_type(tmp_path) == "folder"
