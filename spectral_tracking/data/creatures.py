"""Procedural creatures made of Gaussians, with articulated motions and known ground truth.

A creature is a tree of ellipsoidal parts (torso, head, limbs, tail, petals, ...). Each part is
covered with small flat Gaussians lying in its surface (so it renders as a closed, opaque body), and
coloured with a gradient along the part plus stripes or spots, so appearance is not flat. Every
Gaussian carries the index of its part (hard rigid skinning).

A motion maps normalised time s in [0, 1] to a root transform and one local rotation per part about
its joint, given in rest-pose world coordinates. Forward kinematics composes them down the tree:
``M_part = M_parent @ T(joint) @ R_local @ T(-joint)``; ``M_root = T(root_t) @ R_root-about-centre``.

World frame: +y up (the orbit rig's), creatures stand on their feet around the origin and are
normalised to a bounding sphere of radius 0.5 in their rest pose (joints move with them). The
quadruped walks along +x, so the front camera (azimuth 0, on +z) sees it in profile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from spectral_tracking.gaussians import SH_C0, Gaussians, quat_multiply, rotmat_to_quat


# ----------------------------------------------------------------------------------------------
# Small rotation helpers (numpy, float64)
# ----------------------------------------------------------------------------------------------
def axis_angle(axis, angle: float) -> np.ndarray:
    """3x3 rotation by ``angle`` radians about ``axis`` (Rodrigues)."""
    a = np.asarray(axis, np.float64)
    a = a / np.linalg.norm(a)
    K = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + math.sin(angle) * K + (1 - math.cos(angle)) * K @ K


def _frame_from_axis(axis) -> np.ndarray:
    """A rotation whose first column (the ellipsoid's local x) points along ``axis``."""
    x = np.asarray(axis, np.float64)
    x = x / np.linalg.norm(x)
    helper = np.array([0.0, 1.0, 0.0]) if abs(x[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    z = np.cross(x, helper)
    z /= np.linalg.norm(z)
    y = np.cross(z, x)
    return np.stack([x, y, z], 1)


def _about(point, R: np.ndarray) -> np.ndarray:
    """4x4 rotation R about ``point``."""
    p = np.asarray(point, np.float64)
    M = np.eye(4)
    M[:3, :3] = R
    M[:3, 3] = p - R @ p
    return M


# ----------------------------------------------------------------------------------------------
# Parts and creatures
# ----------------------------------------------------------------------------------------------
@dataclass
class Part:
    """An ellipsoidal body part.

    center, radii: rest-pose centre and semi-axes (local x along ``axis``).
    joint: rest-pose pivot about which the part rotates relative to ``parent`` (the root's is its centre).
    color, tip_color: RGB at the local -x and +x ends of the part (a gradient between them).
    pattern: "plain", "stripes" (across the local x axis) or "spots"; pattern_color paints them.
    tags: names motions use to find parts ("leg", "front", "left", "tail", "petal", ...).
    """

    name: str
    center: tuple[float, float, float]
    radii: tuple[float, float, float]
    axis: tuple[float, float, float] = (1.0, 0.0, 0.0)
    parent: str | None = None
    joint: tuple[float, float, float] | None = None
    color: tuple[float, float, float] = (0.5, 0.5, 0.5)
    tip_color: tuple[float, float, float] | None = None
    pattern: str = "plain"
    pattern_color: tuple[float, float, float] = (0.1, 0.1, 0.1)
    pattern_freq: float = 3.0
    tags: tuple[str, ...] = ()


@dataclass
class Creature:
    """A built creature: its Gaussians (rest pose, normalised) and the skeleton that moves them."""

    name: str
    parts: list[Part]
    gaussians: Gaussians  # rest pose, normalised to bounding radius 0.5
    labels: Tensor  # long [N] part index of every Gaussian
    joints: np.ndarray  # [P, 3] rest-pose joints, normalised coordinates
    centers: np.ndarray  # [P, 3] rest-pose part centres, normalised coordinates
    parents: list[int]  # [P] parent index, -1 for the root
    scale: float  # normalised = scale * (raw - offset)
    offset: np.ndarray  # [3]

    def part_indices(self, *tags: str) -> list[int]:
        """Parts carrying every one of ``tags``."""
        return [i for i, p in enumerate(self.parts) if all(t in p.tags for t in tags)]

    def pose(self, root: np.ndarray, local: dict[int, np.ndarray]) -> np.ndarray:
        """Forward kinematics: [P, 4, 4] world transforms of every part.

        root: [4, 4] transform applied to the whole creature; local: part index -> [3, 3] rotation
        about that part's joint (missing parts do not rotate relative to their parent).
        """
        P = len(self.parts)
        M = np.zeros((P, 4, 4))
        done = [False] * P
        order = []
        while len(order) < P:  # parents before children
            for i in range(P):
                if not done[i] and (self.parents[i] < 0 or done[self.parents[i]]):
                    order.append(i)
                    done[i] = True
        for i in order:
            Li = _about(self.joints[i], local.get(i, np.eye(3)))
            M[i] = (root if self.parents[i] < 0 else M[self.parents[i]]) @ Li
        return M

    def deform(self, transforms: np.ndarray) -> Gaussians:
        """Apply per-part [P, 4, 4] rigid transforms to the rest Gaussians (rigid skinning)."""
        g = self.gaussians
        Mt = torch.as_tensor(transforms, dtype=g.means.dtype)[self.labels]  # [N, 4, 4]
        R, t = Mt[:, :3, :3], Mt[:, :3, 3]
        means = (R @ g.means[..., None])[..., 0] + t
        quats = quat_multiply(rotmat_to_quat(R), g.quats)
        return Gaussians(means=means, quats=quats, log_scales=g.log_scales.clone(),
                         opacity_logits=g.opacity_logits.clone(), sh=g.sh.clone())


def _sample_part(part: Part, n: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """n surface samples of an ellipsoid: (points [n, 3], normals [n, 3], local coords [n, 3] in [-1, 1])."""
    D = np.asarray(part.radii, np.float64)
    out = []
    while sum(len(o) for o in out) < n:
        u = rng.normal(size=(4 * n, 3))
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        # Area element of the map u -> D u is proportional to |D^-1 u|: rejection-sample it.
        w = np.linalg.norm(u / D, axis=1)
        keep = rng.random(len(u)) < w / w.max()
        out.append(u[keep])
    u = np.concatenate(out)[:n]
    Rf = _frame_from_axis(part.axis)
    pts = np.asarray(part.center) + (u * D) @ Rf.T
    nrm = (u / D) @ Rf.T
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
    return pts, nrm, u


def _ellipsoid_area(radii) -> float:
    a, b, c = radii
    p = 1.6075  # Knud Thomsen's approximation (relative error < 1.1%)
    return 4 * math.pi * (((a * b) ** p + (a * c) ** p + (b * c) ** p) / 3) ** (1 / p)


def _part_colors(part: Part, local: np.ndarray, points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """[n, 3] colours: gradient along local x, then stripes/spots, then a little per-Gaussian noise."""
    c0 = np.asarray(part.color)
    c1 = np.asarray(part.tip_color if part.tip_color is not None else part.color)
    s = (local[:, :1] + 1) / 2
    col = c0 * (1 - s) + c1 * s
    pc = np.asarray(part.pattern_color)
    if part.pattern == "stripes":
        w = 0.5 + 0.5 * np.sin(2 * math.pi * part.pattern_freq * local[:, :1])
        w = np.clip((w - 0.6) * 4, 0, 1)
        col = col * (1 - w) + pc * w
    elif part.pattern == "spots":
        k = max(3, int(part.pattern_freq * 3))
        centres = rng.normal(size=(k, 3))
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        d = np.linalg.norm(local[:, None, :] - centres[None], axis=2).min(1, keepdims=True)
        w = np.clip((0.45 - d) * 10, 0, 1)
        col = col * (1 - w) + pc * w
    elif part.pattern == "eyes":
        # two dark dots on the front (+z) of the part
        for sx in (-1, 1):
            e = np.array([0.45 * sx, 0.35, 0.82])
            d = np.linalg.norm(local - e, axis=1, keepdims=True)
            col = np.where(d < 0.28, pc, col)
    elif part.pattern != "plain":
        raise ValueError(f"Part {part.name}: unknown pattern {part.pattern!r}")
    col = col + rng.normal(scale=0.03, size=col.shape)
    return np.clip(col, 0.02, 0.98)


def build_creature(name: str, parts: list[Part], num_gaussians: int, seed: int) -> Creature:
    """Cover ``parts`` with ~num_gaussians flat surface Gaussians (split by part area), normalise."""
    names = [p.name for p in parts]
    if len(set(names)) != len(names):
        raise ValueError(f"creature {name}: duplicate part names")
    rng = np.random.default_rng(seed)
    areas = np.array([_ellipsoid_area(p.radii) for p in parts])
    counts = np.maximum(24, np.round(num_gaussians * areas / areas.sum())).astype(int)
    pts, nrms, cols, labels, sizes = [], [], [], [], []
    for i, (p, n) in enumerate(zip(parts, counts)):
        x, nrm, loc = _sample_part(p, int(n), rng)
        pts.append(x)
        nrms.append(nrm)
        cols.append(_part_colors(p, loc, x, rng))
        labels.append(np.full(len(x), i))
        spacing = math.sqrt(areas[i] / n)
        sizes.append(np.full(len(x), 0.75 * spacing))
    pts, nrms, cols = np.concatenate(pts), np.concatenate(nrms), np.concatenate(cols)
    labels, sizes = np.concatenate(labels), np.concatenate(sizes)
    N = len(pts)
    # Orientation: local z along the surface normal, random spin in the tangent plane.
    tangent = np.cross(nrms, rng.normal(size=(N, 3)))
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    bit = np.cross(nrms, tangent)
    Rg = np.stack([tangent, bit, nrms], axis=2)  # columns
    jitter = rng.uniform(0.8, 1.25, size=(N, 1))
    scales = np.concatenate([sizes[:, None] * jitter, sizes[:, None] * jitter, 0.25 * sizes[:, None]], 1)

    joints = np.array([p.joint if p.joint is not None else p.center for p in parts], np.float64)
    centers = np.array([p.center for p in parts], np.float64)
    parents = []
    for p in parts:
        if p.parent is None:
            parents.append(-1)
        elif p.parent not in names:
            raise ValueError(f"creature {name}: part {p.name} has unknown parent {p.parent!r}")
        else:
            parents.append(names.index(p.parent))
    if parents.count(-1) != 1:
        raise ValueError(f"creature {name}: expected exactly one root part, got {parents.count(-1)}")

    g = Gaussians(
        means=torch.tensor(pts, dtype=torch.float32),
        quats=rotmat_to_quat(torch.tensor(Rg, dtype=torch.float32)),
        log_scales=torch.tensor(np.log(scales), dtype=torch.float32),
        opacity_logits=torch.full((N,), 4.0),
        sh=((torch.tensor(cols, dtype=torch.float32) - 0.5) / SH_C0)[:, None, :],
    )
    gn, tf = g.normalize(0.5)
    s, c = tf.scale, tf.center.double().numpy()
    return Creature(name=name, parts=parts, gaussians=gn, labels=torch.as_tensor(labels, dtype=torch.long),
                    joints=s * (joints - c), centers=s * (centers - c), parents=parents, scale=s, offset=c)


# ----------------------------------------------------------------------------------------------
# The creatures (raw units; normalised when built)
# ----------------------------------------------------------------------------------------------
def quadruped_parts() -> list[Part]:
    """A fox-like four-legged animal walking along +x."""
    orange, cream, dark = (0.85, 0.45, 0.15), (0.95, 0.85, 0.7), (0.2, 0.12, 0.08)
    parts = [
        Part("torso", (0.0, 0.55, 0.0), (0.45, 0.2, 0.2), color=(0.75, 0.35, 0.1), tip_color=orange,
             pattern="stripes", pattern_color=(0.45, 0.2, 0.05), pattern_freq=3.5, tags=("torso",)),
        Part("belly", (0.0, 0.45, 0.0), (0.36, 0.12, 0.16), parent="torso", color=cream, tags=("torso",)),
        Part("head", (0.55, 0.78, 0.0), (0.17, 0.15, 0.14), parent="torso", joint=(0.38, 0.66, 0.0),
             color=orange, tip_color=cream, pattern="eyes", pattern_color=dark, tags=("head",)),
        Part("snout", (0.72, 0.74, 0.0), (0.1, 0.06, 0.06), parent="head", joint=(0.62, 0.76, 0.0),
             color=cream, tip_color=dark, tags=("head",)),
        Part("ear_l", (0.52, 0.95, 0.07), (0.04, 0.08, 0.04), axis=(0, 1, 0), parent="head", joint=(0.52, 0.88, 0.07),
             color=orange, tip_color=dark, tags=("ear",)),
        Part("ear_r", (0.52, 0.95, -0.07), (0.04, 0.08, 0.04), axis=(0, 1, 0), parent="head", joint=(0.52, 0.88, -0.07),
             color=orange, tip_color=dark, tags=("ear",)),
        Part("tail", (-0.62, 0.7, 0.0), (0.26, 0.07, 0.07), axis=(-0.85, 0.5, 0), parent="torso", joint=(-0.42, 0.6, 0.0),
             color=orange, tip_color=(0.98, 0.98, 0.95), tags=("tail",)),
    ]
    for fx, front in ((0.3, "front"), (-0.3, "back")):
        for fz, side in ((0.12, "left"), (-0.12, "right")):
            parts.append(Part(f"leg_{front}_{side}", (fx, 0.25, fz), (0.26, 0.06, 0.06), axis=(0, -1, 0), parent="torso",
                              joint=(fx, 0.48, fz), color=orange, tip_color=dark, tags=("leg", front, side)))
    return parts


def humanoid_parts() -> list[Part]:
    """A little person facing +z (the front camera), arms at the sides."""
    skin, shirt, jeans = (0.93, 0.75, 0.6), (0.2, 0.45, 0.85), (0.15, 0.2, 0.45)
    parts = [
        Part("torso", (0.0, 0.92, 0.0), (0.3, 0.2, 0.12), axis=(0, 1, 0), color=shirt, tip_color=(0.3, 0.6, 0.95),
             pattern="stripes", pattern_color=(0.95, 0.95, 0.95), pattern_freq=3.0, tags=("torso",)),
        Part("head", (0.0, 1.38, 0.0), (0.15, 0.14, 0.14), axis=(0, 1, 0), parent="torso", joint=(0.0, 1.2, 0.0),
             color=skin, pattern="eyes", pattern_color=(0.1, 0.1, 0.15), tags=("head",)),
        Part("hair", (0.0, 1.46, -0.03), (0.13, 0.15, 0.14), axis=(0, 1, 0), parent="head", joint=(0.0, 1.2, 0.0),
             color=(0.35, 0.2, 0.1), tags=("head",)),
    ]
    for sx, side in ((1, "left"), (-1, "right")):
        parts += [
            Part(f"upper_arm_{side}", (0.27 * sx, 0.98, 0.0), (0.15, 0.055, 0.055), axis=(0, -1, 0), parent="torso",
                 joint=(0.27 * sx, 1.12, 0.0), color=shirt, tags=("arm", "upper", side)),
            Part(f"forearm_{side}", (0.27 * sx, 0.72, 0.0), (0.15, 0.05, 0.05), axis=(0, -1, 0), parent=f"upper_arm_{side}",
                 joint=(0.27 * sx, 0.85, 0.0), color=skin, tip_color=(0.85, 0.6, 0.5), tags=("arm", "lower", side)),
            Part(f"leg_{side}", (0.1 * sx, 0.36, 0.0), (0.34, 0.075, 0.075), axis=(0, -1, 0), parent="torso",
                 joint=(0.1 * sx, 0.68, 0.0), color=jeans, tip_color=(0.1, 0.1, 0.1), tags=("leg", side)),
        ]
    return parts


def hopper_parts() -> list[Part]:
    """A frog facing +z with long folded hind legs."""
    green, light, dark = (0.3, 0.65, 0.2), (0.75, 0.85, 0.45), (0.1, 0.3, 0.08)
    parts = [
        Part("body", (0.0, 0.3, 0.0), (0.3, 0.17, 0.24), axis=(0, 0, 1), color=green, tip_color=(0.4, 0.75, 0.25),
             pattern="spots", pattern_color=dark, pattern_freq=3.0, tags=("torso",)),
        Part("head", (0.0, 0.4, 0.27), (0.13, 0.1, 0.18), axis=(1, 0, 0), parent="body", joint=(0.0, 0.35, 0.15),
             color=green, tip_color=green, tags=("head",)),
        Part("throat", (0.0, 0.3, 0.25), (0.15, 0.07, 0.12), axis=(0, 0, 1), parent="body", color=light, tags=("torso",)),
    ]
    for sx, side in ((1, "left"), (-1, "right")):
        parts += [
            Part(f"eye_{side}", (0.1 * sx, 0.5, 0.3), (0.055, 0.055, 0.055), parent="head", joint=(0.1 * sx, 0.45, 0.3),
                 color=(0.95, 0.8, 0.2), pattern="eyes", pattern_color=(0.05, 0.05, 0.05), tags=("eye",)),
            Part(f"thigh_{side}", (0.26 * sx, 0.22, -0.12), (0.2, 0.07, 0.08), axis=(0.3 * sx, 0.0, 1.0), parent="body",
                 joint=(0.2 * sx, 0.25, -0.15), color=green, tip_color=light, pattern="stripes", pattern_color=dark,
                 pattern_freq=2.0, tags=("leg", "hind", "upper", side)),
            Part(f"shin_{side}", (0.32 * sx, 0.1, -0.1), (0.2, 0.05, 0.06), axis=(0.2 * sx, 0.0, -1.0), parent=f"thigh_{side}",
                 joint=(0.32 * sx, 0.16, 0.05), color=green, tip_color=(0.9, 0.75, 0.3), pattern="stripes",
                 pattern_color=dark, pattern_freq=2.0, tags=("leg", "hind", "lower", side)),
            Part(f"front_leg_{side}", (0.2 * sx, 0.13, 0.22), (0.13, 0.04, 0.04), axis=(0.2 * sx, -1.0, 0.2), parent="body",
                 joint=(0.17 * sx, 0.24, 0.2), color=green, tip_color=(0.9, 0.75, 0.3), tags=("leg", "front", side)),
        ]
    return parts


def flower_parts(num_petals: int = 8) -> list[Part]:
    """A flower on a stem: stem (root, pivoting at its base), leaves, a seed disc and petals."""
    parts = [
        Part("stem", (0.0, 0.42, 0.0), (0.42, 0.035, 0.035), axis=(0, 1, 0), joint=(0.0, 0.0, 0.0),
             color=(0.2, 0.45, 0.15), tip_color=(0.35, 0.65, 0.2), tags=("stem",)),
        Part("leaf_l", (0.13, 0.3, 0.0), (0.14, 0.025, 0.06), axis=(1, 0.5, 0), parent="stem", joint=(0.02, 0.25, 0.0),
             color=(0.15, 0.5, 0.15), tip_color=(0.4, 0.75, 0.3), pattern="stripes", pattern_color=(0.5, 0.8, 0.4),
             pattern_freq=1.0, tags=("leaf",)),
        Part("leaf_r", (-0.12, 0.45, 0.0), (0.12, 0.025, 0.05), axis=(-1, 0.6, 0), parent="stem", joint=(-0.02, 0.4, 0.0),
             color=(0.15, 0.5, 0.15), tip_color=(0.4, 0.75, 0.3), pattern="stripes", pattern_color=(0.5, 0.8, 0.4),
             pattern_freq=1.0, tags=("leaf",)),
        Part("disc", (0.0, 0.86, 0.0), (0.12, 0.06, 0.12), axis=(1, 0, 0), parent="stem", joint=(0.0, 0.82, 0.0),
             color=(0.55, 0.3, 0.08), tip_color=(0.75, 0.5, 0.1), pattern="spots", pattern_color=(0.25, 0.12, 0.02),
             pattern_freq=4.0, tags=("head",)),
    ]
    palette = [(0.95, 0.35, 0.55), (0.98, 0.6, 0.2)]
    for k in range(num_petals):
        a = 2 * math.pi * k / num_petals
        d = np.array([math.sin(a), 0.25, math.cos(a)])
        d /= np.linalg.norm(d)
        parts.append(Part(f"petal_{k}", tuple(np.array([0, 0.86, 0]) + 0.22 * d), (0.17, 0.025, 0.075), axis=tuple(d),
                          parent="disc", joint=tuple(np.array([0, 0.86, 0]) + 0.08 * d),
                          color=(0.98, 0.9, 0.6), tip_color=palette[k % 2], pattern="stripes",
                          pattern_color=(0.9, 0.2, 0.35), pattern_freq=1.5, tags=("petal",)))
    return parts


CREATURES: dict[str, Callable[[], list[Part]]] = {
    "quadruped": quadruped_parts,
    "humanoid": humanoid_parts,
    "hopper": hopper_parts,
    "flower": flower_parts,
}


# ----------------------------------------------------------------------------------------------
# Motions: (creature, s in [0, 1]) -> (root [4, 4], {part: local rotation [3, 3]})
# ----------------------------------------------------------------------------------------------
# Every motion is the identity at s = 0, so frame 0 shows the rest pose (the canonical).
Motion = Callable[[Creature, float], tuple[np.ndarray, dict[int, np.ndarray]]]
X, Y, Z = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)


def _root(c: Creature, R: np.ndarray | None = None, t=(0.0, 0.0, 0.0)) -> np.ndarray:
    M = _about(c.joints[c.parents.index(-1)], np.eye(3) if R is None else R)
    M[:3, 3] += np.asarray(t)
    return M


FORWARD = {"quadruped": X}  # facing direction per creature; +z (towards the front camera) otherwise


def _swing(c: Creature, angle: float) -> np.ndarray:
    """Rotation that swings a downward-hanging limb's tip forward by ``angle`` (negative: backward)."""
    return axis_angle(np.cross(FORWARD.get(c.name, Z), Y), angle)


def motion_walk(c: Creature, s: float) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """One and a half gait cycles: legs swing about their hips (diagonal pairs in phase for four legs), arms
    counter-swing, the head nods, the tail wags, the body bobs and advances a little."""
    ph = 2 * math.pi * 1.5 * s
    local = {}
    legs = c.part_indices("leg")
    if not legs:
        raise ValueError(f"motion 'walk' needs a creature with legs; {c.name} has none")
    for i in legs:
        tags = c.parts[i].tags
        if "front" in tags or "back" in tags:  # quadruped: front-left with back-right
            phase = 0.0 if ("front" in tags) != ("right" in tags) else math.pi
        else:
            phase = 0.0 if "left" in tags else math.pi
        local[i] = _swing(c, 0.45 * math.sin(ph + phase))
    for i in c.part_indices("arm", "upper"):
        phase = math.pi if "left" in c.parts[i].tags else 0.0
        local[i] = _swing(c, 0.5 * math.sin(ph + phase))
    for i in c.part_indices("arm", "lower"):
        local[i] = _swing(c, 0.3 * math.sin(ph / 2) ** 2 + 0.2 * math.sin(ph))
    for i in c.part_indices("tail"):
        local[i] = axis_angle(Y, 0.5 * math.sin(ph * 1.5)) @ axis_angle(Z, 0.15 * math.sin(ph))
    for i in c.part_indices("head"):
        if "head" not in c.parts[c.parents[i]].tags:
            local[i] = _swing(c, 0.12 * math.sin(2 * ph))
    fwd = np.asarray(FORWARD.get(c.name, Z))
    t = 0.12 * s * fwd + np.array([0.0, 0.02 * abs(math.sin(ph)), 0.0])
    return _root(c, t=t), local


def motion_wave(c: Creature, s: float) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """The right arm rises sideways over the head and the forearm waves three times; the head
    tilts and the body sways."""
    ups, lows = c.part_indices("arm", "upper", "right"), c.part_indices("arm", "lower", "right")
    if not ups:
        raise ValueError(f"motion 'wave' needs a creature with a right arm; {c.name} has none")
    r = min(1.0, s / 0.3)
    r = r * r * (3 - 2 * r)  # smoothstep
    local = {ups[0]: axis_angle(Z, -2.4 * r)}
    for i in lows:
        local[i] = axis_angle(Z, -0.6 * r * math.sin(2 * math.pi * 3 * s))
    for i in c.part_indices("arm", "upper", "left"):
        local[i] = axis_angle(Z, 0.15 * r)
    for i in c.part_indices("head"):
        if "head" not in c.parts[c.parents[i]].tags:
            local[i] = axis_angle(Z, 0.2 * math.sin(2 * math.pi * s))
    sway = axis_angle(Z, 0.06 * math.sin(2 * math.pi * s)) @ axis_angle(Y, 0.3 * math.sin(2 * math.pi * s))
    return _root(c, R=sway), local


def motion_jump(c: Creature, s: float) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Two hops: crouch, push off with the legs stretched back, fly on a parabola, land."""
    local = {}
    k = (2 * s) % 1.0 if s < 1.0 else 1.0  # phase within a hop
    # crouch (k < 0.2), flight (0.2..0.85), landing crouch (0.85..1); every envelope is 0 at k = 0
    crouch = math.sin(math.pi * k / 0.2) if k < 0.2 else (math.sin(math.pi * (k - 0.85) / 0.15) if k > 0.85 else 0.0)
    air = math.sin(math.pi * (k - 0.2) / 0.65) if 0.2 <= k <= 0.85 else 0.0
    for i in c.part_indices("leg"):
        tags = c.parts[i].tags
        if "hind" in tags:  # folded frog legs unfold backwards
            ang = (2.6 * air - 0.2 * crouch) if "upper" in tags else (-3.1 * air + 0.3 * crouch)
            local[i] = axis_angle(X, ang)
        elif "front" in tags:
            local[i] = _swing(c, 0.6 * air)
        else:
            local[i] = _swing(c, -0.6 * air + 0.2 * crouch)
    for i in c.part_indices("arm", "upper"):
        local[i] = axis_angle(Z, 2.0 * air * (1 if "left" in c.parts[i].tags else -1))
    hops = min(2.0, math.floor(2 * s) + min(1.0, max(0.0, (k - 0.2) / 0.65)))
    fwd = np.asarray(FORWARD.get(c.name, Z))
    t = 0.1 * hops * fwd + np.array([0.0, 0.3 * air - 0.05 * crouch, 0.0])
    pitch = _swing(c, -0.3 * air * math.cos(math.pi * (k - 0.2) / 0.65)) if air > 0 else np.eye(3)
    return _root(c, R=pitch, t=t), local


def motion_twist(c: Creature, s: float) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """The body sways about its base while upper parts twist about the vertical axis; petals and
    leaves open and close; other limbs turn with their parents."""
    ph = 2 * math.pi * s
    local = {}
    sway = axis_angle(Z, 0.25 * math.sin(ph)) @ axis_angle(X, 0.15 * math.sin(2 * ph))
    for i in c.part_indices("head"):
        local[i] = axis_angle(Y, 1.6 * math.sin(ph))
    for i in c.part_indices("petal"):
        d = c.centers[i] - c.joints[i]
        hinge = np.cross(d, Y)
        local[i] = axis_angle(hinge, 0.5 * math.sin(2 * ph))
    for i in c.part_indices("leaf"):
        local[i] = axis_angle(Z, 0.3 * math.sin(3 * ph) * (1 if c.centers[i][0] > 0 else -1))
    for i in c.part_indices("tail"):
        local[i] = axis_angle(Y, 0.8 * math.sin(2 * ph))
    if not c.part_indices("petal"):  # a whole-body twist for animals: torso turns, limbs flail
        sway = axis_angle(Y, 0.9 * math.sin(ph)) @ sway
        for i in c.part_indices("leg") + c.part_indices("arm"):
            local[i] = axis_angle(X, 0.4 * math.sin(2 * ph) * (1 if i % 2 else -1))
    return _root(c, R=sway), local


TURN_DEGREES = 180.0  # the turn over the sequence
TURN_TRAVEL = (0.6, 0.0, -0.3)  # where the root ends up (1.34 asset radii), sideways and away from the front camera


def motion_turn(c: Creature, s: float) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Large rigid motion on top of the creature's own: it walks (hops, for the hopper) while turning
    a full 180 degrees about the vertical and travelling about one asset radius sideways and away
    from the front camera. Turns the front camera's profile into the other profile (and a front view
    into a back view), the case a translation cannot explain."""
    base = motion_jump if "hind" in {tag for part in c.parts for tag in part.tags} else motion_walk
    root, local = base(c, s)
    yaw = _about(c.joints[c.parents.index(-1)], axis_angle(Y, math.radians(TURN_DEGREES) * s))
    travel = np.eye(4)
    travel[:3, 3] = np.asarray(TURN_TRAVEL) * s
    return travel @ yaw @ root, local


MOTIONS: dict[str, Motion] = {"walk": motion_walk, "wave": motion_wave, "jump": motion_jump, "twist": motion_twist,
                              "turn": motion_turn}

# Which motions make sense for which creature (the CLI validates --creature/--motion against this).
COMPATIBLE: dict[str, tuple[str, ...]] = {
    "quadruped": ("walk", "jump", "twist", "turn"),
    "humanoid": ("wave", "walk", "jump", "twist", "turn"),
    "hopper": ("jump", "twist", "turn"),
    "flower": ("twist",),  # rooted: it cannot travel, so no turn
}


def make_creature(name: str, num_gaussians: int = 3000, seed: int = 0) -> Creature:
    if name not in CREATURES:
        raise ValueError(f"unknown creature {name!r}; choose from {sorted(CREATURES)}")
    return build_creature(name, CREATURES[name](), num_gaussians, seed)


def animate(creature: Creature, motion: str, num_frames: int) -> list[Gaussians]:
    """The deformed Gaussians of frames t = 0..T-1 at times s = t / (T - 1)."""
    if motion not in MOTIONS:
        raise ValueError(f"unknown motion {motion!r}; choose from {sorted(MOTIONS)}")
    if motion not in COMPATIBLE[creature.name]:
        raise ValueError(f"motion {motion!r} does not fit creature {creature.name!r}; it supports {COMPATIBLE[creature.name]}")
    if num_frames < 2:
        raise ValueError(f"animate: need at least 2 frames, got {num_frames}")
    out = []
    for t in range(num_frames):
        root, local = MOTIONS[motion](creature, t / (num_frames - 1))
        out.append(creature.deform(creature.pose(root, local)))
    return out
