"""Readers of public layouts (GART dogs, SC4D / GSGD), the COCO RLE decoder, the Consistent4D reader."""

import numpy as np
import pytest
import torch
from PIL import Image

from spectral_tracking.cameras import orbit_camera
from spectral_tracking.data import select_views
from spectral_tracking.data.consistent4d import load_consistent4d
from spectral_tracking.errors import DataNotFoundError, SequenceFormatError
from spectral_tracking.data.frames import resize_rgb_mask
from spectral_tracking.data.gart import load_gart
from spectral_tracking.data.rle import counts_to_rle_string, decode_coco_rle, encode_coco_rle, rle_string_to_counts
from spectral_tracking.data.sc4d import load_sc4d
from spectral_tracking.gaussians import random_gaussians, save_ply


# ----------------------------------------------------------------------------------------------
# COCO RLE
# ----------------------------------------------------------------------------------------------
def test_hand_made_compressed_rle():
    # Runs [2, 5, 5, 40, 3] over a 5x11 mask, compressed by hand following pycocotools' rleToString:
    # from the 4th run on, the difference to the run two places earlier is stored:
    # 2 -> '2', 5 -> '5', 5 -> '5', 40 - 5 = 35 -> 5-bit groups 3 (+0x20 "more") and 1 -> 'S', '1';
    # 3 - 5 = -2 -> one group 30 (0x10 = sign) -> 'N'.
    assert rle_string_to_counts("255S1N") == [2, 5, 5, 40, 3]
    assert counts_to_rle_string([2, 5, 5, 40, 3]) == "255S1N"
    # [10, 50, 2, 1]: 10 -> ':'; 50 -> groups 18 (0x10 set, so +0x20 "more" although positive), 1 -> 'b', '1';
    # 2 -> '2'; 1 - 50 = -49 -> groups 15 (+0x20), 30 (sign) -> '_', 'N'.
    assert rle_string_to_counts(":b12_N") == [10, 50, 2, 1]
    assert counts_to_rle_string([10, 50, 2, 1]) == ":b12_N"
    assert decode_coco_rle({"size": [7, 9], "counts": ":b12_N"}).sum() == 50 + 1
    m = decode_coco_rle({"size": [5, 11], "counts": b"255S1N"})
    assert m.shape == (5, 11) and m.dtype == np.uint8
    col_major = m.T.reshape(-1)
    assert col_major[:2].sum() == 0 and col_major[2:7].all() and col_major[7:12].sum() == 0
    assert col_major[12:52].all() and col_major[52:].sum() == 0
    # pixel p sits at row p % 5, column p // 5
    assert m[2, 0] == 1 and m[1, 0] == 0 and m[0, 1] == 1 and m[2, 1] == 0 and m[0, 2] == 0 and m[2, 2] == 1


def test_uncompressed_rle_and_tiny_mask():
    # 3x4 mask, column-major pixels 0,0,1 | 1,1,1 | 1,0,0 | 0,0,0 -> runs [2, 5, 5]
    expect = np.array([[0, 1, 1, 0], [0, 1, 0, 0], [1, 1, 0, 0]], np.uint8)
    assert np.array_equal(decode_coco_rle({"size": [3, 4], "counts": [2, 5, 5]}), expect)
    assert np.array_equal(decode_coco_rle({"size": [3, 4], "counts": "255"}), expect)
    assert encode_coco_rle(expect) == {"size": [3, 4], "counts": b"255"}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rle_round_trip_random(seed):
    rng = np.random.default_rng(seed)
    m = (rng.random((37, 53)) < 0.3).astype(np.uint8)
    m[:5, :7] = 1  # starts with a run of ones (counts begin with 0)
    assert np.array_equal(decode_coco_rle(encode_coco_rle(m)), m)


def test_rle_errors():
    with pytest.raises(ValueError, match="cover 12 pixels"):
        decode_coco_rle({"size": [3, 5], "counts": [2, 5, 5]})
    with pytest.raises(ValueError, match="'size' and 'counts'"):
        decode_coco_rle({"counts": "255"})


# ----------------------------------------------------------------------------------------------
# GART
# ----------------------------------------------------------------------------------------------
def make_gart_tree(root, ids=(3, 4, 7), size=64, focal=(500.0, 520.0, 540.0)):
    (root / "images").mkdir(parents=True)
    (root / "pred").mkdir()
    rng = np.random.default_rng(0)
    masks = {}
    for k, i in enumerate(ids):
        img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(img).save(root / "images" / f"{i:04d}.png")
        m = np.zeros((size, size), np.uint8)
        m[10 + k: 40, 20:50 - k] = 1
        masks[i] = m
        np.save(root / "images" / f"{i:04d}.npy", np.array(encode_coco_rle(m), dtype=object), allow_pickle=True)
        np.savez(root / "pred" / f"{i:04d}.npz", pred_focal=np.array([focal[k]]), pred_trans=np.zeros((1, 3)))
    save_ply(random_gaussians(40, extent=0.2, seed=3), root / "point_cloud.ply")
    return masks


def test_gart_reader(tmp_path):
    masks = make_gart_tree(tmp_path / "dog")
    seq = load_gart(tmp_path / "dog")
    assert seq.images.shape == (1, 3, 64, 64, 3) and seq.num_views == 1
    for t, i in enumerate((3, 4, 7)):
        assert np.array_equal(seq.masks[0, t].numpy(), masks[i] * 255)
    expected_focal = 520.0 * 64 / 256  # median pred_focal, scaled from 256 pixels
    assert torch.isclose(seq.cameras.Ks[0, 0, 0], torch.tensor(expected_focal))
    assert torch.allclose(seq.cameras.Ks[0, :2, 2], torch.tensor([32.0, 32.0]))
    assert torch.allclose(seq.cameras.centers[0], torch.tensor([0.0, 0.0, 2.0]), atol=1e-5)
    assert abs(seq.canonical.bounding_sphere()[1] - 0.5) < 1e-5
    assert seq.meta["source_frame_ids"] == [3, 4, 7]
    small = load_gart(tmp_path / "dog", resolution=32)
    assert small.images.shape == (1, 3, 32, 32, 3)
    assert torch.isclose(small.cameras.Ks[0, 0, 0], torch.tensor(expected_focal / 2))


def test_gart_missing_mask_is_reported_not_skipped(tmp_path):
    make_gart_tree(tmp_path / "dog")
    (tmp_path / "dog" / "images" / "0004.npy").unlink()
    with pytest.raises(SequenceFormatError, match=r"\[4\].*frame_ids"):
        load_gart(tmp_path / "dog")
    seq = load_gart(tmp_path / "dog", frame_ids=[3, 7])
    assert seq.num_frames == 2
    with pytest.raises(SequenceFormatError, match=r"0004\.npy"):
        load_gart(tmp_path / "dog", frame_ids=[3, 4])


def test_gart_bad_mask_size_and_absent_data(tmp_path):
    make_gart_tree(tmp_path / "dog")
    np.save(tmp_path / "dog" / "images" / "0007.npy", np.array(encode_coco_rle(np.zeros((60, 64))), dtype=object),
            allow_pickle=True)
    with pytest.raises(SequenceFormatError, match=r"0007\.npy.*64x60"):
        load_gart(tmp_path / "dog")
    with pytest.raises(DataNotFoundError, match=r"images/NNNN\.npy"):
        load_gart(tmp_path / "no_dog")


# ----------------------------------------------------------------------------------------------
# SC4D / GSGD
# ----------------------------------------------------------------------------------------------
def make_sc4d_tree(root, T=3, size=32, azimuths=(0.0, 90.0, 180.0, 270.0)):
    from spectral_tracking.render import render

    g = random_gaussians(60, extent=0.25, scale_range=(0.03, 0.06), seed=5).translate(torch.tensor([0.1, 0.05, -0.05]))
    g.opacity_logits += 3
    root.mkdir(parents=True)
    save_ply(g, root / "point_cloud.ply")
    from plyfile import PlyData, PlyElement

    rec = np.zeros(4, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("c_radius", "<f4")])
    rec["x"], rec["c_radius"] = [0.1, 0.2, 0.3, 0.4], 0.05
    PlyData([PlyElement.describe(rec, "vertex")]).write(str(root / "point_cloud_c.ply"))
    cams = orbit_camera(list(azimuths), width=size, height=size)
    out = render(g, cams)
    for v, a in enumerate(azimuths):
        (root / f"{a:.1f}").mkdir()
        for t in range(T):
            rgba = np.concatenate([out.rgb[v].numpy(), out.alpha[v, ..., None].numpy()], -1)
            Image.fromarray(np.rint(np.clip(rgba, 0, 1) * 255).astype(np.uint8)).save(root / f"{a:.1f}" / f"{t}.png")
    (root / "s2").mkdir()  # SC4D output folders hold other things too
    return g


def test_sc4d_reader_normalises_without_changing_images(tmp_path):
    from spectral_tracking.render import render

    make_sc4d_tree(tmp_path / "sc4d")
    seq = load_sc4d(tmp_path / "sc4d")
    assert seq.view_names == ["0.0", "90.0", "180.0", "270.0"] and seq.azimuths == [0.0, 90.0, 180.0, 270.0]
    assert seq.num_frames == 3 and seq.meta["ignored_entries"] == ["s2"]
    assert abs(seq.canonical.bounding_sphere()[1] - 0.5) < 1e-5
    ctrl = seq.meta["control_points"]
    assert ctrl["means"].shape == (4, 3) and ctrl["radius"].shape == (4,)
    s = seq.meta["normalization"]["scale"]
    assert torch.allclose(ctrl["radius"], torch.full((4,), 0.05 * s))
    # the normalised asset seen by the moved cameras reproduces the stored frames
    out = render(seq.canonical, seq.cameras)
    assert (out.alpha - seq.masks[:, 0].float() / 255).abs().max() < 0.02
    two = select_views(seq, 2)
    assert [two.view_names[i] for i in two.train_views] == ["0.0", "180.0"]
    assert sorted(two.view_names[i] for i in two.eval_views) == ["270.0", "90.0"]


def test_sc4d_errors(tmp_path):
    make_sc4d_tree(tmp_path / "a")
    (tmp_path / "a" / "90.0" / "2.png").unlink()
    with pytest.raises(SequenceFormatError, match=r"90\.0.*2\.png"):
        load_sc4d(tmp_path / "a")
    make_sc4d_tree(tmp_path / "b")
    Image.new("RGB", (32, 32)).save(tmp_path / "b" / "0.0" / "1.png")
    with pytest.raises(SequenceFormatError, match=r"0\.0.1\.png.*RGBA"):
        load_sc4d(tmp_path / "b")
    with pytest.raises(DataNotFoundError, match=r"point_cloud\.ply"):
        load_sc4d(tmp_path / "missing")


# ----------------------------------------------------------------------------------------------
# Consistent4D (fake tree; the real videos are tested in test_data_real.py)
# ----------------------------------------------------------------------------------------------
def test_consistent4d_reader_fake(tmp_path):
    d = tmp_path / "toy"
    d.mkdir()
    for t in range(4):
        a = np.zeros((90, 90, 4), np.uint8)
        a[20 + t: 60, 30:70] = (200, 100, 50, 255)
        Image.fromarray(a).save(d / f"{t}.png")
    seq = load_consistent4d(d, resolution=30)
    assert seq.images.shape == (1, 4, 30, 30, 3) and seq.canonical is None
    m = seq.masks[0, 0].float() / 255
    assert abs(float(m.mean()) - (40 * 40) / (90 * 90)) < 0.02
    inside = seq.images[0, 0][m > 0.99]
    assert (inside.float() - torch.tensor([200.0, 100.0, 50.0])).abs().max() <= 1  # no black fringe
    (d / "2.png").unlink()
    with pytest.raises(SequenceFormatError, match=r"2\.png"):
        load_consistent4d(d)
    (d / "5.png").write_bytes(b"not a png")
    with pytest.raises(SequenceFormatError):
        load_consistent4d(d)
    with pytest.raises(DataNotFoundError, match="consistent4d"):
        load_consistent4d(tmp_path / "absent")


def test_resize_keeps_colour_at_soft_edges():
    rgb = np.zeros((40, 40, 3), np.uint8)
    rgb[:, :20] = (255, 0, 0)
    mask = np.zeros((40, 40), np.uint8)
    mask[:, :20] = 255
    r, m = resize_rgb_mask(rgb, mask, 10)
    soft = (m > 0) & (m < 255)
    assert m.shape == (10, 10) and r.shape == (10, 10, 3)
    assert np.all(r[m > 0][:, 0] == 255) and np.all(r[m > 0][:, 1:] == 0)
    assert soft.sum() == 0 or np.all(r[soft][:, 0] == 255)


def test_a_16_bit_grey_png_is_scaled_to_8_bits_not_clipped(tmp_path):
    """A 16-bit matte (0..65535) reads as 0..255 in proportion: clipped, every value above 255 would turn
    into a fat hard mask."""
    from PIL import Image

    from spectral_tracking.data.frames import read_png

    ramp = np.linspace(0, 65535, 64).astype(np.uint16)[None].repeat(4, 0)
    Image.fromarray(ramp).save(tmp_path / "matte.png")
    got = read_png(tmp_path / "matte.png")[..., 0]
    assert got.dtype == np.uint8 and got.shape == (4, 64)
    np.testing.assert_array_equal(got[0], np.rint(ramp[0] / 65535.0 * 255).astype(np.uint8))


def test_a_non_square_video_is_refused_not_squashed(tmp_path):
    """Consistent4D (as SC4D and GART) resizes a frame to resolution x resolution: an 80x40 frame would be
    squashed 2:1 (its object distorted) without a word, so it is refused, naming the file."""
    d = tmp_path / "wide"
    d.mkdir()
    for t in range(2):
        a = np.zeros((40, 80, 4), np.uint8)
        a[10:30, 30:50] = (200, 100, 50, 255)
        Image.fromarray(a).save(d / f"{t}.png")
    with pytest.raises(SequenceFormatError, match=r"0\.png: frames are 80x40; .* non-square frames are not supported"):
        load_consistent4d(d, resolution=32)
    assert load_consistent4d(d, resolution=None).images.shape == (1, 2, 40, 80, 3)  # unresized, as stored


def test_a_donut_sequence_from_another_asset_is_cached_apart(tmp_path, monkeypatch):
    """The donut's cached sequences are read by name: one rendered from another asset (dataset.asset) gets a
    folder of its own, named by the file's content, so the shared donut's folder is never tracked for it;
    a missing asset is one line naming the file."""
    import spectral_tracking.data.donut as donut
    from spectral_tracking.errors import DataNotFoundError
    from spectral_tracking.gaussians import random_gaussians, save_ply

    finals = []
    monkeypatch.setattr(donut, "render_cached", lambda final, source, **kwargs: finals.append(final) or final)
    a, b = tmp_path / "a.ply", tmp_path / "b.ply"
    save_ply(random_gaussians(20, seed=1), a)
    save_ply(random_gaussians(20, seed=2), b)
    for asset in (None, a, a, b):
        donut.generate_donut("squash", frames=4, resolution=32, root=tmp_path / "cache", donut_ply=asset)
    default, first, again, other = (f.name for f in finals)
    assert default == "donut_squash_clean_r32_t4_s0"  # the shared donut: the name as before
    assert first == again and first.startswith(default + "_a") and other != first
    with pytest.raises(DataNotFoundError, match=r"nowhere\.ply: the donut asset is not there"):
        donut.generate_donut("squash", frames=4, resolution=32, root=tmp_path / "cache", donut_ply=tmp_path / "nowhere.ply")
