"""The synthetic benchmark: creatures, motions, generation (clean / realistic), caching, CLI."""

import json

import numpy as np
import pytest
import torch

from spectral_tracking.data import load_sequence, select_views
from spectral_tracking.data.creatures import COMPATIBLE, CREATURES, animate, make_creature
from spectral_tracking.data.benchmark import DEFAULT_GAUSSIANS, clutter_background, perturb_appearance, sequence_name
from spectral_tracking.data.folder import is_complete
from spectral_tracking.data.presets import PRESETS
from spectral_tracking.tracking.start import initial_overlap, mask_iou
from spectral_tracking.data.synthetic import generate, main
from spectral_tracking.render import render

SMALL = dict(frames=3, resolution=32, num_gaussians=400)


@pytest.fixture(scope="module")
def clean_folder(tmp_path_factory):
    return generate("quadruped_walk", root=tmp_path_factory.mktemp("syn"), **SMALL)


@pytest.fixture(scope="module")
def realistic_folder(tmp_path_factory):
    return generate("hopper_jump", setting="realistic", root=tmp_path_factory.mktemp("syn"), **SMALL)


def test_presets_are_distinct_creature_motion_pairs():
    pairs = {(p.creature, p.motion) for p in PRESETS.values()}
    assert len(PRESETS) >= 4 and len(pairs) == len(PRESETS)
    assert len({c for c, _ in pairs}) >= 4 and len({m for _, m in pairs}) >= 4
    for c, m in pairs:
        assert m in COMPATIBLE[c]


@pytest.mark.parametrize("name", sorted(CREATURES))
def test_creature_geometry(name):
    c = make_creature(name, DEFAULT_GAUSSIANS, seed=0)
    g = c.gaussians
    assert 2000 <= g.num_gaussians <= 10000 and g.sh_degree == 0
    assert abs(g.bounding_sphere()[1] - 0.5) < 1e-5
    assert set(c.labels.tolist()) == set(range(len(c.parts)))  # every part has Gaussians
    # appearance is not flat: colours vary within parts and between parts
    col = g.colors
    assert float(col.std(0).mean()) > 0.08
    within = [float(col[c.labels == i].std(0).mean()) for i in range(len(c.parts))]
    assert max(within) > 0.05
    assert torch.all(g.opacities > 0.9)


def test_creature_is_deterministic_for_a_seed():
    a, b, d = make_creature("flower", 600, 1), make_creature("flower", 600, 1), make_creature("flower", 600, 2)
    assert torch.equal(a.gaussians.means, b.gaussians.means) and torch.equal(a.gaussians.sh, b.gaussians.sh)
    assert not torch.equal(a.gaussians.means[:100], d.gaussians.means[:100])


@pytest.mark.parametrize("creature,motion", sorted((c, m) for c, ms in COMPATIBLE.items() for m in ms))
def test_motions_start_at_rest_and_move_articulated(creature, motion):
    c = make_creature(creature, 600, 0)
    frames = animate(c, motion, 9)
    rest = c.gaussians
    assert torch.allclose(frames[0].means, rest.means, atol=1e-6)
    disp = torch.stack([(f.means - rest.means).norm(dim=-1).max() for f in frames])
    assert float(disp.max()) > 0.05  # it moves
    # rigid skinning: distances inside one part are preserved, sizes unchanged
    for f in frames[1:]:
        for part in range(len(c.parts)):
            idx = torch.nonzero(c.labels == part).flatten()[:30]
            a, b = rest.means[idx], f.means[idx]
            d0 = (a[:, None] - a[None]).norm(dim=-1)
            d1 = (b[:, None] - b[None]).norm(dim=-1)
            assert torch.allclose(d0, d1, atol=1e-5)
        assert torch.equal(f.log_scales, rest.log_scales)


def test_incompatible_motion_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="flower.*wave"):
        generate(creature="flower", motion="wave", root=tmp_path, **SMALL)
    with pytest.raises(ValueError, match="unknown preset"):
        generate("dragon_fly", root=tmp_path)


def test_clean_sequence(clean_folder):
    assert clean_folder.name == sequence_name("quadruped_walk", "clean", 32, 3, 0, 400)
    seq = load_sequence(clean_folder)
    assert seq.images.shape == (6, 3, 32, 32, 3)
    assert seq.view_names == ["0.0", "90.0", "180.0", "270.0", "45.0", "135.0"]
    assert seq.supervision_views == [0, 1, 2, 3] and seq.novel_views == [4, 5]
    assert seq.meta["setting"] == "clean" and seq.meta["gt"]["matches_canonical"]
    # ground truth per frame; frame 0 is the canonical (rest pose), later frames move
    assert seq.gt_means.shape == (3, seq.canonical.num_gaussians, 3)
    assert torch.allclose(seq.gt_means[0], seq.canonical.means, atol=1e-6)
    assert (seq.gt_means[2] - seq.gt_means[0]).norm(dim=-1).max() > 0.05
    with np.load(clean_folder / "gt" / "2.npz") as z:
        assert set(z.files) >= {"means", "quats", "log_scales"}
    # the canonical renders exactly the frame-0 masks (the clean setting mirrors SC4D)
    out = render(seq.canonical, seq.cameras)
    assert (out.alpha - seq.mask(slice(None), 0)).abs().max() < 2.5 / 255
    for v in range(6):
        assert mask_iou(out.alpha[v], seq.mask(v, 0)) > 0.97
    # straight colours: re-premultiplying reproduces the render
    pre = seq.image(slice(None), 0) * seq.mask(slice(None), 0)[..., None]
    assert (pre - out.rgb).abs().max() < 3 / 255


def test_ground_truth_renders_the_targets(clean_folder):
    seq = load_sequence(clean_folder)
    with np.load(clean_folder / "gt" / "2.npz") as z:
        g = seq.canonical.clone()
        g.means, g.quats, g.log_scales = (torch.from_numpy(z[k]) for k in ("means", "quats", "log_scales"))
    out = render(g, seq.cameras)
    assert (out.alpha - seq.mask(slice(None), 2)).abs().max() < 2.5 / 255
    assert mask_iou(render(seq.canonical, seq.cameras[[0]]).alpha[0], seq.mask(0, 2)) < 0.98  # it did move


def test_realistic_sequence(realistic_folder):
    seq = load_sequence(realistic_folder)
    meta = seq.meta
    assert meta["setting"] == "realistic" and not meta["gt"]["matches_canonical"]
    assert (realistic_folder / "masks" / "0.0" / "0.png").is_file()
    assert set(seq.masks.unique().tolist()) <= {0, 255}
    # cluttered background: plenty of non-black pixels outside the mask
    outside = seq.image(0, 0)[seq.mask(0, 0) < 0.5]
    assert float(outside.mean()) > 0.1 and float(outside.std()) > 0.05
    # canonical differs from the truth: missing and extra Gaussians, shifted colours
    index = np.load(realistic_folder / "gt" / "canonical_index.npy")
    truth_n = seq.gt_means.shape[1]
    assert len(index) == seq.canonical.num_gaussians != truth_n
    assert (index < 0).sum() == meta["appearance_shift"]["extra"] > 0
    assert truth_n - (index >= 0).sum() == meta["appearance_shift"]["dropped"] > 0
    kept = torch.from_numpy(index[index >= 0])
    assert torch.allclose(seq.canonical.means[: len(kept)], seq.gt_means[0, kept], atol=1e-6)
    # small calibration error: stored cameras close to, but not equal to, the true ones
    true = json.loads((realistic_folder / "gt" / "cameras_true.json").read_text())["views"]
    tv = torch.tensor([v["viewmat"] for v in true])
    err = (tv - seq.cameras.viewmats).abs().max()
    assert 1e-4 < float(err) < 0.1


def test_perturb_appearance_shifts_colours():
    c = make_creature("humanoid", 600, 0)
    can, index, rec = perturb_appearance(c.gaussians, seed=3)
    kept = index >= 0
    diff = (can.colors[: kept.sum()] - c.gaussians.colors[torch.from_numpy(index[kept])]).abs().mean()
    assert float(diff) > 0.01 and rec["dropped"] > 0 and rec["extra"] > 0


def test_clutter_background_is_deterministic():
    a, b, c = clutter_background(24, 32, 1), clutter_background(24, 32, 1), clutter_background(24, 32, 2)
    assert a.shape == (24, 32, 3) and torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.std()) > 0.05


def test_generation_is_cached_and_deterministic(tmp_path, clean_folder):
    f1 = generate("quadruped_walk", root=tmp_path / "a", **SMALL)
    stamp = (f1 / "meta.json").stat().st_mtime_ns
    assert generate("quadruped_walk", root=tmp_path / "a", **SMALL) == f1
    assert (f1 / "meta.json").stat().st_mtime_ns == stamp  # no-op
    # identical for the same seed (another root), different for another seed
    assert (f1 / "frames" / "90.0" / "2.png").read_bytes() == (clean_folder / "frames" / "90.0" / "2.png").read_bytes()
    f3 = generate("quadruped_walk", root=tmp_path / "a", seed=1, **SMALL)
    assert f3 != f1 and (f3 / "frames" / "90.0" / "2.png").read_bytes() != (f1 / "frames" / "90.0" / "2.png").read_bytes()


def test_half_written_cache_is_regenerated(tmp_path):
    f = generate("flower_twist", root=tmp_path, **SMALL)
    (f / "meta.json").unlink()
    (f / "frames" / "0.0" / "1.png").unlink()
    assert not is_complete(f)
    f2 = generate("flower_twist", root=tmp_path, **SMALL)
    assert f2 == f and is_complete(f) and (f / "frames" / "0.0" / "1.png").is_file()
    load_sequence(f)


def test_views_selection_on_benchmark(clean_folder):
    seq = load_sequence(clean_folder)
    for n, names in {1: ["0.0"], 2: ["0.0", "180.0"], 4: ["0.0", "90.0", "180.0", "270.0"]}.items():
        s = select_views(seq, n)
        assert [s.view_names[i] for i in s.train_views] == names
        assert {4, 5} <= set(s.eval_views) and not set(s.eval_views) & set(s.train_views)
    assert initial_overlap(seq.canonical, select_views(seq, 4)) == pytest.approx([1.0] * 4, abs=0.03)


def test_cli_generates_and_previews(tmp_path, capsys):
    out = tmp_path / "sheet.png"
    rc = main(["--preset", "humanoid_wave", "flower_twist", "--frames", "3", "--resolution", "32", "--gaussians", "300",
               "--root", str(tmp_path / "root"), "--preview", str(out)])
    assert rc == 0 and out.is_file()
    from PIL import Image

    im = np.asarray(Image.open(out))
    assert im.shape[0] > 2 * 6 * 32 and im.shape[1] > 4 * 32  # two blocks of 6 view rows, several columns
    assert "total" in capsys.readouterr().out
    assert main(["--creature", "flower", "--motion", "walk", "--root", str(tmp_path)]) == 2
    assert main(["--list"]) == 0
