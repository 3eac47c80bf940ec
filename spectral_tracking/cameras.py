"""Pinhole cameras, batched over views.

Convention: OpenCV. Camera axes x right, y down, z forward (into the scene); ``viewmats`` are
world-to-camera 4x4 matrices, ``Ks`` are 3x3 intrinsics in pixels with the pixel (u, v) covering
[u, u+1) x [v, v+1), so the centre of the top-left pixel is (0.5, 0.5), as in gsplat.

World convention of the orbit rig (the one SC4D and GSGD use, after DreamGaussian): +y is up, the
object sits at the origin, azimuth 0 puts the camera on the +z axis, and azimuth grows from +z towards
+x (azimuth 90 = camera on +x): counter-clockwise when seen from above (+y). Elevation is positive
above the equator (DreamGaussian's ``orbit_camera`` uses the opposite sign; the rig uses 0).

Rig geometry: `project_points`, `forward_axes`, `view_volume` (the region every camera sees) and
`scene_scale` (gsplat's learning-rate scale for object-centric captures).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor


UP = (0.0, 1.0, 0.0)  # the world's up: the orbit rig's +y, the creatures stand on it


@dataclass
class Cameras:
    """V pinhole cameras sharing one image size."""

    Ks: Tensor  # [V, 3, 3]
    viewmats: Tensor  # [V, 4, 4] world-to-camera
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.Ks.dim() != 3 or self.Ks.shape[1:] != (3, 3):
            raise ValueError(f"Cameras.Ks: expected shape [V, 3, 3], got {list(self.Ks.shape)}")
        if self.viewmats.dim() != 3 or self.viewmats.shape[1:] != (4, 4):
            raise ValueError(f"Cameras.viewmats: expected shape [V, 4, 4], got {list(self.viewmats.shape)}")
        if self.Ks.shape[0] != self.viewmats.shape[0]:
            raise ValueError(f"Cameras: {self.Ks.shape[0]} intrinsics but {self.viewmats.shape[0]} viewmats")
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise ValueError(f"Cameras: image size must be positive, got {self.width}x{self.height}")
        if not (torch.isfinite(self.Ks).all() and torch.isfinite(self.viewmats).all()):
            raise ValueError("Cameras: Ks or viewmats hold non-finite values")
        self.width, self.height = int(self.width), int(self.height)

    def __len__(self) -> int:
        return self.Ks.shape[0]

    def __getitem__(self, index) -> "Cameras":
        if isinstance(index, int):
            index = slice(index, index + 1) if index != -1 else slice(-1, None)
        return Cameras(self.Ks[index], self.viewmats[index], self.width, self.height)

    def to(self, device=None, dtype=None) -> "Cameras":
        return Cameras(self.Ks.to(device=device, dtype=dtype), self.viewmats.to(device=device, dtype=dtype),
                       self.width, self.height)

    @property
    def device(self) -> torch.device:
        return self.Ks.device

    @property
    def centers(self) -> Tensor:
        """[V, 3] camera centres in world coordinates."""
        R, t = self.viewmats[:, :3, :3], self.viewmats[:, :3, 3]
        return -(R.transpose(-1, -2) @ t[..., None])[..., 0]

    @staticmethod
    def cat(parts: Sequence["Cameras"]) -> "Cameras":
        sizes = {(c.width, c.height) for c in parts}
        if len(sizes) != 1:
            raise ValueError(f"Cameras.cat: mixed image sizes {sorted(sizes)}")
        w, h = sizes.pop()
        return Cameras(torch.cat([c.Ks for c in parts]), torch.cat([c.viewmats for c in parts]), w, h)

    def resized(self, width: int, height: int) -> "Cameras":
        """The same cameras for another image size (intrinsics scaled)."""
        K = self.Ks.clone()
        K[:, 0] *= width / self.width
        K[:, 1] *= height / self.height
        return Cameras(K, self.viewmats.clone(), width, height)


def camera_problem(K: Tensor, viewmat: Tensor, rotation_tol: float = 1e-2) -> str | None:
    """What makes one camera unusable, in words, or None when it is a pinhole camera.

    K [3, 3]: finite, focal lengths fx = K[0, 0] and fy = K[1, 1] positive, last row [0, 0, 1].
    viewmat [4, 4] world-to-camera: finite, last row [0, 0, 0, 1], rotation block orthonormal with
    determinant +1 (to ``rotation_tol``, so matrices stored as rounded text pass). Readers call
    this before building `Cameras`, so a bad file is named instead of surfacing as NaN in a render.
    """
    K, viewmat = K.double(), viewmat.double()
    if K.shape != (3, 3) or viewmat.shape != (4, 4):
        return f"K must be 3x3 and viewmat 4x4, got {list(K.shape)} and {list(viewmat.shape)}"
    if not torch.isfinite(K).all():
        return "K holds NaN or inf"
    if not torch.isfinite(viewmat).all():
        return "viewmat holds NaN or inf"
    if not (K[0, 0] > 0 and K[1, 1] > 0):
        zero = " (K is all zero)" if not K.any() else ""
        return f"K has focal lengths fx={float(K[0, 0]):g}, fy={float(K[1, 1]):g}; both must be positive pixels{zero}"
    if not torch.allclose(K[2], K.new_tensor([0.0, 0.0, 1.0]), atol=1e-6):
        return f"K's last row is {K[2].tolist()}, expected [0, 0, 1]"
    if not torch.allclose(viewmat[3], viewmat.new_tensor([0.0, 0.0, 0.0, 1.0]), atol=1e-6):
        return f"viewmat's last row is {viewmat[3].tolist()}, expected [0, 0, 0, 1] (a world-to-camera 4x4)"
    R = viewmat[:3, :3]
    err = float((R @ R.T - torch.eye(3, dtype=R.dtype)).abs().max())
    if err > rotation_tol or float(torch.linalg.det(R)) < 0:
        return (f"viewmat's 3x3 block is not a rotation (|R R^T - I| = {err:.3g}, det {float(torch.linalg.det(R)):.3g}); "
                "expected a rigid world-to-camera matrix [R | t]")
    return None


def intrinsics_from_fovy(fovy_deg: float, width: int, height: int) -> Tensor:
    """3x3 K with square pixels and the principal point at the image centre."""
    f = 0.5 * height / math.tan(math.radians(fovy_deg) / 2)
    return torch.tensor([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])


def look_at(eye: Tensor, target: Tensor, up: Tensor | None = None) -> Tensor:
    """World-to-camera 4x4 (OpenCV) for a camera at ``eye`` [3] looking at ``target`` [3]."""
    up = torch.tensor([0.0, 1.0, 0.0], dtype=eye.dtype) if up is None else up.to(eye)
    forward = target - eye
    forward = forward / forward.norm()
    right = torch.linalg.cross(forward, up)
    if right.norm() < 1e-8:
        raise ValueError("look_at: viewing direction is parallel to the up vector")
    right = right / right.norm()
    down = torch.linalg.cross(forward, right)
    c2w = torch.eye(4, dtype=eye.dtype)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, down, forward, eye
    return torch.linalg.inv(c2w)


def orbit_camera(
    azimuth_deg: float | Sequence[float] = 0.0,
    elevation_deg: float = 0.0,
    radius: float = 2.0,
    fovy_deg: float = 49.1,
    width: int = 256,
    height: int = 256,
) -> Cameras:
    """Cameras on a sphere around the origin looking at it (the SC4D / GSGD rig by default).

    ``azimuth_deg`` may be one value or a list (one camera each). Azimuth 0 is the +z axis, 90 the +x
    axis; world +y is up; positive elevation is above the equator.
    """
    azimuths = [float(azimuth_deg)] if isinstance(azimuth_deg, (int, float)) else [float(a) for a in azimuth_deg]
    if abs(elevation_deg) >= 90:
        raise ValueError(f"orbit_camera: elevation must be in (-90, 90) degrees, got {elevation_deg}")
    if radius <= 0:
        raise ValueError(f"orbit_camera: radius must be positive, got {radius}")
    el = math.radians(elevation_deg)
    mats = []
    for az_deg in azimuths:
        az = math.radians(az_deg)
        eye = torch.tensor([radius * math.cos(el) * math.sin(az), radius * math.sin(el), radius * math.cos(el) * math.cos(az)])
        mats.append(look_at(eye, torch.zeros(3)))
    K = intrinsics_from_fovy(fovy_deg, width, height)
    return Cameras(K.expand(len(mats), 3, 3).clone(), torch.stack(mats), width, height)


# ----------------------------------------------------------------------------------------------
# Geometry of a rig: what the cameras look at
# ----------------------------------------------------------------------------------------------
def forward_axes(cameras: Cameras) -> Tensor:
    """[V, 3] viewing directions (camera +z) in world coordinates."""
    return cameras.viewmats[:, 2, :3]


def project_points(points: Tensor, cameras: Cameras) -> tuple[Tensor, Tensor]:
    """Pixel coordinates [V, P, 2] and depths [V, P] of world points [P, 3]."""
    R, t = cameras.viewmats[:, :3, :3], cameras.viewmats[:, :3, 3]
    cam = torch.einsum("vij,pj->vpi", R, points) + t[:, None]
    z = cam[..., 2]
    uv = torch.einsum("vij,vpj->vpi", cameras.Ks, cam)[..., :2] / z.clamp_min(1e-8)[..., None]
    return uv, z


def view_volume(cameras: Cameras) -> tuple[Tensor, float]:
    """Centre [3] and radius of the region every camera looks at.

    The centre is the least-squares meeting point of the optical axes (for one camera, or parallel
    axes: the point on the axis closest to the world origin); the radius is the half-width of the
    narrowest view at that point, so a ball of that radius around the centre is seen by every camera.
    Raises ValueError when that point is behind a camera (no common view volume).
    """
    C = cameras.centers.double()  # [V, 3]
    d = forward_axes(cameras).double()
    d = d / d.norm(dim=-1, keepdim=True)
    P = torch.eye(3, dtype=torch.float64) - d[:, :, None] * d[:, None, :]  # [V, 3, 3] projectors
    A = P.sum(0)
    center = None
    if len(cameras) > 1 and torch.linalg.cond(A) < 1e6:
        center = torch.linalg.solve(A, (P @ C[..., None]).sum(0))[:, 0]
    if center is None or ((center - C) * d).sum(-1).min() <= 0:
        depth = (-(C[0]) * d[0]).sum()  # along the first camera's axis, closest to the origin
        if depth <= 0:
            depth = C[0].norm().clamp_min(1.0)
        center = C[0] + depth * d[0]
    depth = ((center - C) * d).sum(-1)  # [V]
    if (depth <= 0).any():
        raise ValueError("the cameras have no common view volume (the meeting point of their axes is behind a camera)")
    K = cameras.Ks.double()
    half = torch.minimum(
        torch.minimum(K[:, 0, 2], cameras.width - K[:, 0, 2]) / K[:, 0, 0],
        torch.minimum(K[:, 1, 2], cameras.height - K[:, 1, 2]) / K[:, 1, 1],
    )  # tan of the narrowest half-angle [V]
    radius = float((depth * half / torch.sqrt(1 + half**2)).min())
    return center.float(), radius


def scene_scale(cameras: Cameras) -> float:
    """gsplat's scene scale for object-centric captures: 1.1 x the largest camera-to-centre distance
    (centre: `view_volume`)."""
    center, _ = view_volume(cameras)
    return 1.1 * float((cameras.centers - center).norm(dim=-1).max())
