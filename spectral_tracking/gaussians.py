"""The `Gaussians` container and the standard 3DGS PLY layout.

Conventions (the same as the original 3DGS code and gsplat):

- ``means``          [N, 3]  world-space centres.
- ``quats``          [N, 4]  rotations as quaternions (w, x, y, z); not necessarily unit length,
                             every consumer normalises.
- ``log_scales``     [N, 3]  natural log of the per-axis standard deviations.
- ``opacity_logits`` [N]     logit of the opacity (opacity = sigmoid(logit)).
- ``sh``             [N, (d+1)^2, 3]  spherical-harmonics coefficients, degree d in 0..3; band 0 is
                             the "DC" term, colour = 0.5 + SH_C0 * sh[:, 0] for view-independent use.

The PLY layout is the one written by the reference 3DGS implementation and read by the usual splat
viewers: ``x y z nx ny nz f_dc_0..2 f_rest_0..(3*((d+1)^2-1)-1) opacity scale_0..2 rot_0..3``, all
float32, binary little endian. ``f_rest`` is stored channel-major (all red coefficients, then green,
then blue), which is why ``_sh_to_rest``/``_rest_to_sh`` transpose.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Union

import numpy as np
import torch
from torch import Tensor

from spectral_tracking.errors import PLYFormatError  # noqa: F401  (raised here)

SH_C0 = 0.28209479177387814

PathLike = Union[str, Path]


def quat_multiply(a: Tensor, b: Tensor) -> Tensor:
    """Hamilton product a (x) b of (w, x, y, z) quaternions, broadcasting over leading dims."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        dim=-1,
    )


def axis_angle_matrix(axis: Tensor, degrees: float) -> Tensor:
    """[3, 3] rotation by ``degrees`` about the ``axis`` [3] (normalised here; Rodrigues), float64."""
    a = axis.double() / axis.double().norm()
    K = torch.tensor([[0.0, -a[2], a[1]], [a[2], 0.0, -a[0]], [-a[1], a[0], 0.0]], dtype=torch.float64)
    t = math.radians(float(degrees))
    return torch.eye(3, dtype=torch.float64) + math.sin(t) * K + (1 - math.cos(t)) * K @ K


def rotation_degrees(R: Tensor) -> float:
    """The angle of the rotation ``R`` [3, 3] in degrees (0-180), from its trace."""
    return math.degrees(math.acos(max(-1.0, min(1.0, (float(torch.trace(R)) - 1) / 2))))


def quat_to_rotmat(q: Tensor) -> Tensor:
    """(w, x, y, z) quaternions [..., 4] (normalised here) to rotation matrices [..., 3, 3]."""
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    w, x, y, z = q.unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(*q.shape[:-1], 3, 3)


def rotmat_to_quat(R: Tensor) -> Tensor:
    """Rotation matrices [..., 3, 3] to unit (w, x, y, z) quaternions [..., 4] with w >= 0."""
    m = R.reshape(-1, 3, 3)
    t = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    # Four candidate formulas; pick the numerically best-conditioned one per matrix.
    cands = torch.stack(
        [
            torch.stack([1 + t, m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]], -1),
            torch.stack([m[:, 2, 1] - m[:, 1, 2], 1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2], m[:, 0, 1] + m[:, 1, 0], m[:, 0, 2] + m[:, 2, 0]], -1),
            torch.stack([m[:, 0, 2] - m[:, 2, 0], m[:, 0, 1] + m[:, 1, 0], 1 - m[:, 0, 0] + m[:, 1, 1] - m[:, 2, 2], m[:, 1, 2] + m[:, 2, 1]], -1),
            torch.stack([m[:, 1, 0] - m[:, 0, 1], m[:, 0, 2] + m[:, 2, 0], m[:, 1, 2] + m[:, 2, 1], 1 - m[:, 0, 0] - m[:, 1, 1] + m[:, 2, 2]], -1),
        ],
        dim=1,
    )  # [M, 4 candidates, 4]
    diag = torch.stack([t, m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]], -1)
    best = diag.argmax(-1)
    q = cands[torch.arange(m.shape[0], device=R.device), best]
    q = q / q.norm(dim=-1, keepdim=True)
    q = torch.where(q[:, :1] < 0, -q, q)
    return q.reshape(*R.shape[:-2], 4)


@dataclass
class NormalizeTransform:
    """x_normalised = scale * (x - center). ``inverse`` maps results back to the original frame."""

    center: Tensor  # [3]
    scale: float

    def apply(self, points: Tensor) -> Tensor:
        return (points - self.center.to(points)) * self.scale

    def inverse(self, points: Tensor) -> Tensor:
        return points / self.scale + self.center.to(points)


@dataclass
class Gaussians:
    """A set of 3D Gaussians. Tensors share a device and dtype; N may not be zero."""

    means: Tensor  # [N, 3]
    quats: Tensor  # [N, 4] (w, x, y, z)
    log_scales: Tensor  # [N, 3]
    opacity_logits: Tensor  # [N]
    sh: Tensor  # [N, (d+1)^2, 3]

    def __post_init__(self) -> None:
        n = self.means.shape[0] if self.means.dim() == 2 else -1
        expect = {
            "means": (n, 3),
            "quats": (n, 4),
            "log_scales": (n, 3),
            "opacity_logits": (n,),
        }
        for name, shape in expect.items():
            t = getattr(self, name)
            if tuple(t.shape) != shape:
                raise ValueError(f"Gaussians.{name}: expected shape {list(shape)}, got {list(t.shape)}")
        if self.sh.dim() != 3 or self.sh.shape[0] != n or self.sh.shape[2] != 3:
            raise ValueError(f"Gaussians.sh: expected shape [N, (d+1)^2, 3] with N={n}, got {list(self.sh.shape)}")
        if self.sh.shape[1] not in (1, 4, 9, 16):
            raise ValueError(f"Gaussians.sh: {self.sh.shape[1]} coefficients per channel is no SH degree 0..3 (1, 4, 9 or 16)")

    # --- derived quantities -------------------------------------------------------------------
    @property
    def num_gaussians(self) -> int:
        return self.means.shape[0]

    def __len__(self) -> int:
        return self.num_gaussians

    @property
    def sh_degree(self) -> int:
        return int(round(math.sqrt(self.sh.shape[1]))) - 1

    @property
    def device(self) -> torch.device:
        return self.means.device

    @property
    def scales(self) -> Tensor:
        """[N, 3] per-axis standard deviations."""
        return self.log_scales.exp()

    @property
    def opacities(self) -> Tensor:
        """[N] opacities in (0, 1)."""
        return torch.sigmoid(self.opacity_logits)

    @property
    def colors(self) -> Tensor:
        """[N, 3] view-independent RGB from the degree-0 coefficient (may leave [0, 1])."""
        return 0.5 + SH_C0 * self.sh[:, 0]

    def rotmats(self) -> Tensor:
        """[N, 3, 3] rotation matrices of the (normalised) quaternions."""
        return quat_to_rotmat(self.quats)

    def covariances(self) -> Tensor:
        """[N, 3, 3] world covariances R S S^T R^T."""
        M = self.rotmats() * self.scales[:, None, :]
        return M @ M.transpose(-1, -2)

    # --- tensor plumbing ----------------------------------------------------------------------
    def _map(self, fn) -> "Gaussians":
        return Gaussians(**{f.name: fn(getattr(self, f.name)) for f in fields(self)})

    def to(self, device=None, dtype=None) -> "Gaussians":
        return self._map(lambda t: t.to(device=device, dtype=dtype))

    def detach(self) -> "Gaussians":
        return self._map(lambda t: t.detach())

    def clone(self) -> "Gaussians":
        return self._map(lambda t: t.clone())

    def subset(self, index: Tensor) -> "Gaussians":
        """Gaussians selected by a boolean mask [N] or integer index [M]."""
        if index.dtype == torch.bool and index.shape != (self.num_gaussians,):
            raise ValueError(f"subset: boolean mask must have shape [{self.num_gaussians}], got {list(index.shape)}")
        out = self._map(lambda t: t[index])
        return out

    @staticmethod
    def cat(parts: list["Gaussians"]) -> "Gaussians":
        if not parts:
            raise ValueError("Gaussians.cat: nothing to concatenate")
        degrees = {p.sh_degree for p in parts}
        if len(degrees) != 1:
            raise ValueError(f"Gaussians.cat: mixed SH degrees {sorted(degrees)}")
        return Gaussians(**{f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in fields(Gaussians)})

    # --- rigid / similarity transforms --------------------------------------------------------
    def translate(self, offset: Tensor) -> "Gaussians":
        """Move every Gaussian by ``offset`` [3]."""
        return replace(self, means=self.means + offset.to(self.means))

    def transform(self, rotation: Tensor, translation: Tensor | None = None, scale: float = 1.0) -> "Gaussians":
        """x -> scale * R x + t for every mean; orientations rotate by R, sizes scale by ``scale``.

        rotation: [3, 3] proper rotation matrix. SH coefficients beyond degree 0 are view-dependent
        and are not rotated (a documented approximation; exact for degree 0 assets).
        """
        R = rotation.to(self.means)
        t = torch.zeros(3, dtype=self.means.dtype, device=self.device) if translation is None else translation.to(self.means)
        q = rotmat_to_quat(R)
        return replace(
            self,
            means=scale * self.means @ R.T + t,
            quats=quat_multiply(q.expand_as(self.quats), self.quats),
            log_scales=self.log_scales + math.log(scale),
        )

    def bounding_sphere(self) -> tuple[Tensor, float]:
        """Centre (the bounding-box centre of the means) and radius (max distance to it)."""
        lo, hi = self.means.min(0).values, self.means.max(0).values
        center = (lo + hi) / 2
        radius = float((self.means - center).norm(dim=-1).max())
        return center, radius

    def normalize(self, radius: float = 0.5) -> tuple["Gaussians", NormalizeTransform]:
        """Centre the asset and scale its means into a bounding sphere of ``radius``.

        Returns the normalised Gaussians and the transform (``transform.inverse`` maps positions
        back to the original frame).
        """
        center, r = self.bounding_sphere()
        if r <= 0:
            raise ValueError("Gaussians.normalize: all means coincide, the asset has no extent")
        s = radius / r
        tf = NormalizeTransform(center=center.detach().clone(), scale=s)
        eye = torch.eye(3, dtype=self.means.dtype, device=self.device)
        out = replace(self, means=self.means - center).transform(eye, scale=s)
        return out, tf

    def check_finite(self, source: str = "Gaussians") -> None:
        for f in fields(self):
            t = getattr(self, f.name)
            if not torch.isfinite(t).all():
                bad = int((~torch.isfinite(t)).sum())
                raise ValueError(f"{source}: {f.name} holds {bad} non-finite values (NaN or inf)")


# ----------------------------------------------------------------------------------------------
# PLY
# ----------------------------------------------------------------------------------------------
_REQUIRED = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
             "rot_0", "rot_1", "rot_2", "rot_3"]


def _rest_names(num_rest: int) -> list[str]:
    return [f"f_rest_{i}" for i in range(num_rest)]


def read_ply(path: Path):
    """The parsed PLY (``plyfile.PlyData``) of an existing file; `PLYFormatError` naming the file
    when it cannot be parsed."""
    from plyfile import PlyData

    try:
        return PlyData.read(str(path))
    except Exception as e:  # plyfile raises several exception types for malformed input
        raise PLYFormatError(f"{path}: not a readable PLY file ({type(e).__name__}: {e})") from e


def load_ply(path: PathLike, device: str | torch.device = "cpu") -> Gaussians:
    """Read a standard 3DGS PLY. Raises `PLYFormatError` (a ``ValueError``) naming the file and the
    problem, ``FileNotFoundError`` if there is no file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such PLY file")
    ply = read_ply(path)
    if "vertex" not in [el.name for el in ply.elements]:
        raise PLYFormatError(f"{path}: PLY has no 'vertex' element")
    v = ply["vertex"]
    names = [p.name for p in v.properties]
    missing = [n for n in _REQUIRED if n not in names]
    if missing:
        raise PLYFormatError(f"{path}: missing required vertex properties {missing} (standard 3DGS layout expected)")
    n = v.count
    if n == 0:
        raise PLYFormatError(f"{path}: PLY has zero vertices")
    rest = sorted((p for p in names if p.startswith("f_rest_")), key=lambda s: int(s.split("_")[-1]))
    if rest != _rest_names(len(rest)):
        raise PLYFormatError(f"{path}: f_rest_* properties are not numbered 0..{len(rest) - 1} contiguously")
    if len(rest) % 3 != 0 or (len(rest) // 3 + 1) not in (1, 4, 9, 16):
        raise PLYFormatError(
            f"{path}: {len(rest)} f_rest properties is no SH degree (expected 0, 9, 24 or 45 for degrees 0..3)"
        )
    data = v.data

    def col(*keys: str) -> np.ndarray:
        return np.stack([np.asarray(data[k], dtype=np.float32) for k in keys], axis=-1)

    means = col("x", "y", "z")
    dc = col("f_dc_0", "f_dc_1", "f_dc_2")
    k = len(rest) // 3
    if k:
        rest_arr = col(*rest).reshape(n, 3, k).transpose(0, 2, 1)  # [N, k, 3]
        sh = np.concatenate([dc[:, None, :], rest_arr], axis=1)
    else:
        sh = dc[:, None, :]
    arrays = {
        "means": means,
        "quats": col("rot_0", "rot_1", "rot_2", "rot_3"),
        "log_scales": col("scale_0", "scale_1", "scale_2"),
        "opacity_logits": np.asarray(data["opacity"], dtype=np.float32),
        "sh": np.ascontiguousarray(sh),
    }
    for name, arr in arrays.items():
        if not np.isfinite(arr).all():
            bad = int((~np.isfinite(arr)).sum())
            raise PLYFormatError(f"{path}: {name} holds {bad} non-finite values (NaN or inf)")
    if (np.linalg.norm(arrays["quats"], axis=-1) == 0).any():
        raise PLYFormatError(f"{path}: some rotations (rot_0..3) are all zero, not a valid quaternion")
    return Gaussians(**{k: torch.from_numpy(np.ascontiguousarray(a)).to(device) for k, a in arrays.items()})


def save_ply(gaussians: Gaussians, path: PathLike) -> Path:
    """Write ``gaussians`` in the standard 3DGS PLY layout (binary little endian, float32)."""
    from plyfile import PlyData, PlyElement

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    g = gaussians.detach().to("cpu", torch.float32)
    n = g.num_gaussians
    k = g.sh.shape[1] - 1
    rest_names = _rest_names(3 * k)
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", *rest_names, "opacity",
             "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    cols = [
        g.means.numpy(),
        np.zeros((n, 3), np.float32),
        g.sh[:, 0].numpy(),
        g.sh[:, 1:].permute(0, 2, 1).reshape(n, 3 * k).numpy(),
        g.opacity_logits[:, None].numpy(),
        g.log_scales.numpy(),
        g.quats.numpy(),
    ]
    flat = np.concatenate(cols, axis=1).astype("<f4")
    rec = np.empty(n, dtype=[(name, "<f4") for name in names])
    for i, name in enumerate(names):
        rec[name] = flat[:, i]
    tmp = path.with_suffix(path.suffix + ".tmp")
    PlyData([PlyElement.describe(rec, "vertex")], byte_order="<").write(str(tmp))
    tmp.replace(path)
    return path


def random_gaussians(
    n: int,
    sh_degree: int = 0,
    extent: float = 0.5,
    scale_range: tuple[float, float] = (0.01, 0.05),
    seed: int = 0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Gaussians:
    """Random Gaussians inside a cube of half-size ``extent`` (for tests and benchmarks)."""
    gen = torch.Generator().manual_seed(seed)
    lo, hi = math.log(scale_range[0]), math.log(scale_range[1])
    g = Gaussians(
        means=(torch.rand(n, 3, generator=gen) * 2 - 1) * extent,
        quats=torch.randn(n, 4, generator=gen),
        log_scales=torch.rand(n, 3, generator=gen) * (hi - lo) + lo,
        opacity_logits=torch.randn(n, generator=gen) + 1.0,
        sh=torch.randn(n, (sh_degree + 1) ** 2, 3, generator=gen) * 0.5,
    )
    return g.to(device, dtype)
