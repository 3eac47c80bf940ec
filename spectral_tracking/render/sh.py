"""Real spherical harmonics up to degree 3, in the basis and sign convention of 3DGS / gsplat.

The view-dependent colour of a Gaussian is ``max(0, 0.5 + sum_k basis_k(d) * sh_k)`` with ``d`` the
unit direction from the camera centre to the Gaussian mean (see ``projection.view_colors``).
"""

from __future__ import annotations

import torch
from torch import Tensor

# Normalisation constants of the real SH basis (Sloan, "Efficient Spherical Harmonic Evaluation",
# JCGT 2013), as used by the original 3DGS code.
C0 = 0.28209479177387814
C1 = 0.4886025119029199
C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
      -0.4570457994644658, 1.445305721320277, -0.5900435899266435)


def sh_basis(degree: int, dirs: Tensor) -> Tensor:
    """SH basis functions of degree ``degree`` (0..3) at unit directions.

    dirs: [..., 3] unit vectors. Returns [..., (degree+1)^2].
    """
    if degree not in (0, 1, 2, 3):
        raise ValueError(f"sh_basis: degree must be 0..3, got {degree}")
    out = [torch.full_like(dirs[..., 0], C0)]
    if degree >= 1:
        x, y, z = dirs.unbind(-1)
        out += [-C1 * y, C1 * z, -C1 * x]
    if degree >= 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        out += [
            C2[0] * xy,
            C2[1] * yz,
            C2[2] * (2.0 * zz - xx - yy),
            C2[3] * xz,
            C2[4] * (xx - yy),
        ]
    if degree >= 3:
        out += [
            C3[0] * y * (3 * xx - yy),
            C3[1] * xy * z,
            C3[2] * y * (4 * zz - xx - yy),
            C3[3] * z * (2 * zz - 3 * xx - 3 * yy),
            C3[4] * x * (4 * zz - xx - yy),
            C3[5] * z * (xx - yy),
            C3[6] * x * (xx - 3 * yy),
        ]
    return torch.stack(out, dim=-1)


def eval_sh(sh: Tensor, dirs: Tensor) -> Tensor:
    """Evaluate SH colour coefficients along directions (no +0.5 offset, no clamp).

    sh:   [..., (d+1)^2, 3] coefficients (broadcast against ``dirs``' leading dims).
    dirs: [..., 3] directions, normalised here.
    Returns [..., 3].
    """
    degree = int(round(sh.shape[-2] ** 0.5)) - 1
    if (degree + 1) ** 2 != sh.shape[-2] or degree > 3:
        raise ValueError(f"eval_sh: {sh.shape[-2]} coefficients per channel is no SH degree 0..3")
    if degree == 0:
        return (C0 * sh[..., 0, :]).expand(*dirs.shape[:-1], 3)
    dirs = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    basis = sh_basis(degree, dirs)  # [..., K]
    return (basis[..., None] * sh).sum(dim=-2)
