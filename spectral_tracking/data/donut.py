"""The real donut asset with procedural non-rigid motion (bend, twist, squash): a real asset with
known motion.

The asset (``../shared/data/donut/point_cloud.ply``, 45,624 Gaussians, trained with the reference 3DGS
code) lies flat in its x-y plane with its top along +z. We turn its top to world +y, tilt it 35 degrees
towards the front camera so the hole shows, and normalise it to a bounding sphere of 0.5. Motions
are smooth deformation fields f(x, s) in the normalised world frame; each Gaussian's covariance
follows the field's local Jacobian (central differences), Sigma' = J Sigma J^T, re-factored into a
rotation and scales, so shapes shear and stretch with the field.

Generate the sequences with ``python -m spectral_tracking.data.donut`` or
``python -m spectral_tracking.data.synthetic --preset donut_bend``; both render through the benchmark
generator (``benchmark.py``), like the creatures.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from spectral_tracking.data.benchmark import DEFAULT_GAUSSIANS, DEFAULT_ROOT, SETTINGS, check_settings, render_cached, sequence_name
from spectral_tracking.data.creatures import axis_angle
from spectral_tracking.data.folder import load_sequence
from spectral_tracking.data.sequence import Sequence
from spectral_tracking.errors import DataNotFoundError
from spectral_tracking.gaussians import Gaussians, load_ply, rotmat_to_quat

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DONUT = REPO.parent / "shared" / "data" / "donut" / "point_cloud.ply"
MOTIONS = ("bend", "twist", "squash")


def load_donut(path: str | Path | None = None) -> tuple[Gaussians, dict]:
    """The normalised, upright, tilted donut and a record of what was done to it."""
    path = Path(path) if path is not None else DEFAULT_DONUT
    if not path.is_file():
        raise DataNotFoundError(
            f"{path}: donut asset not found. Put a standard 3DGS PLY there (the project's ../shared/data/donut/"
            "point_cloud.ply) or pass --donut-ply / donut_ply=")
    R = torch.as_tensor(axis_angle((1, 0, 0), math.radians(-55.0)), dtype=torch.float32)  # top (+z) -> up, tilted 35 deg
    g, tf = load_ply(path).transform(R).normalize(0.5)
    record = {"source_ply": str(path), "normalization": {"bounding_radius": 0.5, "center_after_rotation": tf.center.tolist(), "scale": tf.scale},
              "orientation": "asset +z turned to world +y, then tilted 35 degrees towards +z (the front camera)"}
    return g, record


def deform_field(g: Gaussians, f: Callable[[Tensor], Tensor], eps: float = 1e-3) -> Gaussians:
    """Move Gaussians through a deformation field ``f``: [M, 3] -> [M, 3] (float64).

    Means map through f; covariances through the field's Jacobian J (central differences, step eps):
    Sigma' = J Sigma J^T, eigen-decomposed into new scales and rotations.
    """
    x = g.means.double()
    new = f(x)
    cols = []
    for i in range(3):
        e = torch.zeros(3, dtype=torch.float64)
        e[i] = eps
        cols.append((f(x + e) - f(x - e)) / (2 * eps))
    J = torch.stack(cols, -1)  # [N, 3, 3], J[:, :, i] = df/dx_i
    cov = J @ g.covariances().double() @ J.transpose(-1, -2)
    evals, evecs = torch.linalg.eigh(cov)
    evecs = torch.where((torch.linalg.det(evecs) < 0)[:, None, None], evecs * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64), evecs)
    return Gaussians(
        means=new.to(g.means.dtype), quats=rotmat_to_quat(evecs).to(g.quats.dtype),
        log_scales=(0.5 * evals.clamp_min(1e-20).log()).to(g.log_scales.dtype),
        opacity_logits=g.opacity_logits.clone(), sh=g.sh.clone(),
    )


def bend(x: Tensor, kappa: float) -> Tensor:
    """Bend the x axis into an arc of curvature kappa about the centre (0, 1/kappa, 0) (Barr's bend)."""
    if abs(kappa) < 1e-8:
        return x.clone()
    r = 1.0 / kappa
    phi = kappa * x[:, 0]
    rho = r - x[:, 1]
    return torch.stack([torch.sin(phi) * rho, r - torch.cos(phi) * rho, x[:, 2]], -1)


def twist(x: Tensor, rate: float) -> Tensor:
    """Rotate each point about the x axis by ``rate * x`` radians (the ring warps into a saddle)."""
    a = rate * x[:, 0]
    c, s = torch.cos(a), torch.sin(a)
    return torch.stack([x[:, 0], c * x[:, 1] - s * x[:, 2], s * x[:, 1] + c * x[:, 2]], -1)


def squash(x: Tensor, amount: float) -> Tensor:
    """Volume-preserving squash: y scaled by (1 - amount), x and z by 1 / sqrt(1 - amount)."""
    k = 1.0 - amount
    return x * torch.tensor([1 / math.sqrt(k), k, 1 / math.sqrt(k)], dtype=x.dtype)


def donut_motion(g: Gaussians, motion: str, num_frames: int) -> list[Gaussians]:
    """Frames t = 0..T-1 of ``motion`` at s = t / (T - 1); s = 0 is the rest pose."""
    if motion not in MOTIONS:
        raise ValueError(f"unknown donut motion {motion!r}; choose from {MOTIONS}")
    if num_frames < 2:
        raise ValueError(f"donut_motion: need at least 2 frames, got {num_frames}")
    out = []
    for t in range(num_frames):
        s = t / (num_frames - 1)
        w = math.sin(2 * math.pi * s)
        if motion == "bend":
            f = lambda x, w=w: bend(x, 2.0 * w)  # noqa: E731
        elif motion == "twist":
            f = lambda x, w=w: twist(x, 2.5 * w)  # noqa: E731
        else:
            f = lambda x, s=s: squash(x, 0.35 * math.sin(math.pi * 2 * s) ** 2) + torch.tensor(  # noqa: E731
                [0.0, 0.15 * math.sin(2 * math.pi * s) ** 2, 0.0], dtype=x.dtype)
        out.append(deform_field(g, f))
    return out


def generate_donut(motion: str, setting: str = "clean", frames: int = 24, resolution: int = 128, seed: int = 0,
                   root: str | Path | None = None, donut_ply: str | Path | None = None, backend: str = "auto") -> Path:
    """Render the donut with ``motion`` into a cached sequence folder (preset ``donut_<motion>``)."""
    if motion not in MOTIONS:
        raise ValueError(f"unknown donut motion {motion!r}; choose from {MOTIONS}")
    check_settings(setting, frames, resolution)
    preset = f"donut_{motion}"
    root = Path(root) if root is not None else DEFAULT_ROOT
    final = root / sequence_name(preset, setting, resolution, frames, seed, DEFAULT_GAUSSIANS)
    if donut_ply is not None and Path(donut_ply).resolve() != Path(DEFAULT_DONUT).resolve():
        # another asset than the shared donut: its own cached folder, named by the file's content (the cache
        # is read by name, so without this a folder rendered from another asset would be tracked)
        import hashlib

        path = Path(donut_ply)
        if not path.is_file():
            raise DataNotFoundError(f"{path}: the donut asset is not there (a 3DGS point_cloud.ply)")
        final = final.with_name(f"{final.name}_a{hashlib.sha1(path.read_bytes()).hexdigest()[:10]}")

    def source():
        truth, record = load_donut(donut_ply)
        record["provenance"] = "real trained 3DGS donut (douglas0406/GSHairLoD, MIT) with procedural non-rigid motion"
        return truth, donut_motion(truth, motion, frames), record, {}

    return render_cached(final, source, preset=preset, creature="donut", motion=motion, setting=setting,
                         resolution=resolution, seed=seed, backend=backend)


def from_config(ds: Mapping, resolution: int | None, require_canonical: bool = True) -> Sequence:
    """The ``dataset=donut`` entry: ``ds.asset`` (the 3DGS PLY), ``ds.motion``, ``ds.frames``, ``ds.root``."""
    asset = Path(ds["asset"])
    if not asset.is_file():
        raise DataNotFoundError(f"dataset=donut: the donut asset is not at {asset} (set dataset.asset=PATH "
                                f"to the 3DGS point_cloud.ply)")
    return load_sequence(generate_donut(ds["motion"], frames=int(ds["frames"]), resolution=resolution, root=ds["root"],
                                        donut_ply=asset))


def main(argv: list[str] | None = None) -> int:
    """``python -m spectral_tracking.data.donut``: generate (or find cached) donut_* sequences."""
    p = argparse.ArgumentParser(prog="python -m spectral_tracking.data.donut",
                                description="Generate the donut sequences (the real asset with procedural motion), cached.")
    p.add_argument("--motion", nargs="*", choices=MOTIONS, default=list(MOTIONS))
    p.add_argument("--setting", choices=SETTINGS, nargs="*", default=["clean"])
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--resolution", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT, help=f"cache folder (default {DEFAULT_ROOT})")
    p.add_argument("--donut-ply", type=Path, default=None, help=f"the donut asset (default {DEFAULT_DONUT})")
    p.add_argument("--backend", default="auto", help="renderer backend (auto, cpu, torch, gsplat)")
    a = p.parse_args(argv)
    for setting in a.setting:
        for motion in a.motion:
            try:
                print(generate_donut(motion, setting, a.frames, a.resolution, a.seed, a.root, a.donut_ply, a.backend))
            except (ValueError, FileNotFoundError) as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
