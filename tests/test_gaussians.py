import math
import struct

import pytest
import torch

from spectral_tracking.gaussians import (
    Gaussians,
    load_ply,
    quat_multiply,
    quat_to_rotmat,
    random_gaussians,
    rotmat_to_quat,
    save_ply,
)


def _fields(g):
    return [g.means, g.quats, g.log_scales, g.opacity_logits, g.sh]


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_ply_round_trip_is_bit_exact(tmp_path, degree):
    g = random_gaussians(257, sh_degree=degree, seed=degree)
    p = save_ply(g, tmp_path / "a.ply")
    h = load_ply(p)
    assert h.sh_degree == degree
    for a, b in zip(_fields(g), _fields(h)):
        assert torch.equal(a, b)
    # writing again gives the identical file
    q = save_ply(h, tmp_path / "b.ply")
    assert p.read_bytes() == q.read_bytes()


def test_ply_header_is_standard_3dgs_layout(tmp_path):
    g = random_gaussians(3, sh_degree=1)
    p = save_ply(g, tmp_path / "a.ply")
    header = p.read_bytes().split(b"end_header")[0].decode()
    assert "format binary_little_endian 1.0" in header
    props = [line.split()[-1] for line in header.splitlines() if line.startswith("property")]
    expected = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    expected += [f"f_rest_{i}" for i in range(9)]
    expected += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    assert props == expected
    assert all("float" in line for line in header.splitlines() if line.startswith("property"))


def test_f_rest_is_channel_major(tmp_path):
    # f_rest_0..2 are the red channel's three degree-1 coefficients (3DGS convention)
    g = random_gaussians(1, sh_degree=1)
    g.sh[0, 1:, 0] = torch.tensor([1.0, 2.0, 3.0])
    g.sh[0, 1:, 1] = torch.tensor([4.0, 5.0, 6.0])
    p = save_ply(g, tmp_path / "a.ply")
    from plyfile import PlyData

    v = PlyData.read(str(p))["vertex"]
    assert [float(v[f"f_rest_{i}"][0]) for i in range(6)] == [1, 2, 3, 4, 5, 6]


def test_donut_asset_loads(donut_ply):
    g = load_ply(donut_ply)
    assert g.num_gaussians == 45624
    assert g.sh_degree == 0
    n, tf = g.normalize()
    c, r = n.bounding_sphere()
    assert r == pytest.approx(0.5, rel=1e-5)
    assert torch.allclose(tf.inverse(n.means), g.means, atol=1e-6)


def _write_ply(path, names, rows, fmt="binary_little_endian"):
    header = "ply\nformat {} 1.0\nelement vertex {}\n".format(fmt, len(rows))
    header += "".join(f"property float {n}\n" for n in names) + "end_header\n"
    body = b"".join(struct.pack("<" + "f" * len(names), *r) for r in rows)
    path.write_bytes(header.encode() + body)
    return path


BASE = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
        "rot_0", "rot_1", "rot_2", "rot_3"]


def test_bad_ply_missing_property(tmp_path):
    p = _write_ply(tmp_path / "m.ply", BASE[:-1], [[0.0] * 13])
    with pytest.raises(ValueError, match=r"m\.ply.*rot_3"):
        load_ply(p)


def test_bad_ply_nan(tmp_path):
    row = [0.0] * 14
    row[0] = float("nan")
    row[10] = 1.0
    p = _write_ply(tmp_path / "n.ply", BASE, [row])
    with pytest.raises(ValueError, match=r"n\.ply.*means.*non-finite"):
        load_ply(p)


def test_bad_ply_zero_vertices(tmp_path):
    p = _write_ply(tmp_path / "z.ply", BASE, [])
    with pytest.raises(ValueError, match=r"z\.ply.*zero vertices"):
        load_ply(p)


def test_bad_ply_rest_count(tmp_path):
    names = BASE + [f"f_rest_{i}" for i in range(6)]
    p = _write_ply(tmp_path / "r.ply", names, [[0.0] * 10 + [1.0] + [0.0] * 9])
    with pytest.raises(ValueError, match=r"r\.ply.*6 f_rest.*no SH degree"):
        load_ply(p)


def test_bad_ply_not_a_ply(tmp_path):
    p = tmp_path / "x.ply"
    p.write_text("hello world, not a ply")
    with pytest.raises(ValueError, match=r"x\.ply.*not a readable PLY"):
        load_ply(p)


def test_quaternion_helpers_agree():
    q = torch.randn(64, 4, dtype=torch.float64)
    R = quat_to_rotmat(q)
    assert torch.allclose(R @ R.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand(64, 3, 3), atol=1e-12)
    assert torch.allclose(quat_to_rotmat(rotmat_to_quat(R)), R, atol=1e-12)
    a, b = torch.randn(2, 64, 4, dtype=torch.float64)
    assert torch.allclose(quat_to_rotmat(quat_multiply(a, b)), quat_to_rotmat(a) @ quat_to_rotmat(b), atol=1e-10)


def test_transform_rotates_covariances_and_moves_means():
    g = random_gaussians(50, seed=3).to(dtype=torch.float64)
    R = quat_to_rotmat(torch.tensor([0.3, -0.2, 0.9, 0.1], dtype=torch.float64))
    t = torch.tensor([0.1, -0.4, 0.2], dtype=torch.float64)
    h = g.transform(R, t, scale=2.0)
    assert torch.allclose(h.means, 2.0 * g.means @ R.T + t)
    assert torch.allclose(h.covariances(), 4.0 * R @ g.covariances() @ R.T, atol=1e-12)
    assert torch.equal(h.sh, g.sh) and torch.equal(h.opacity_logits, g.opacity_logits)


def test_subset_translate_and_shapes():
    g = random_gaussians(10)
    s = g.subset(torch.tensor([1, 3]))
    assert s.num_gaussians == 2 and torch.equal(s.means[1], g.means[3])
    m = g.subset(g.means[:, 0] > 0)
    assert m.num_gaussians == int((g.means[:, 0] > 0).sum())
    moved = g.translate(torch.tensor([1.0, 0, 0]))
    assert torch.allclose(moved.means - g.means, torch.tensor([1.0, 0, 0]).expand(10, 3))
    with pytest.raises(ValueError, match="means"):
        Gaussians(torch.zeros(3, 2), g.quats[:3], g.log_scales[:3], g.opacity_logits[:3], g.sh[:3])
    with pytest.raises(ValueError, match="SH degree"):
        Gaussians(g.means, g.quats, g.log_scales, g.opacity_logits, torch.zeros(10, 2, 3))
    bad = g.clone()
    bad.means[0, 0] = math.inf
    with pytest.raises(ValueError, match="means.*non-finite"):
        bad.check_finite()
