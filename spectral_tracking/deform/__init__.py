"""Deformation models: sparse control points + skinning, driven by an MLP, a direct morph field or
a rigid motion. ``build_deformation(name, canonical, num_frames, **cfg)`` is the one entry point
configs use; ``deformation(frame) -> Gaussians`` is the one interface they all share.

=============  ==========================================================================
name           motion
=============  ==========================================================================
``mlp``        TimeNet on J control points (SC4D / GSGD), skinned onto the Gaussians
``direct``     per-frame per-control-point offsets [T, J, 3] and rotations [T, J, 4]
``rigid``      per-frame (default) SE(3) of the whole asset about its centre
``rigid_mlp``  shared (default) rigid motion composed after ``mlp``
=============  ==========================================================================
"""

from __future__ import annotations

from spectral_tracking.deform.base import PARAM_GROUPS, Deformation, export_frames, interpolate_frames
from spectral_tracking.deform.control_points import (
    SkinBinding,
    bind_to_control_points,
    blend,
    blend_reference,
    control_point_radius,
    farthest_point_sampling,
    knn,
    skin,
    skin_reference,
    skinning_weights,
    transposed_weights,
)
from spectral_tracking.deform.direct import DirectDeformation
from spectral_tracking.deform.mlp import MLPDeformation, TimeNet, positional_encoding
from spectral_tracking.deform.rigid import RigidDeformation, RigidMotion, axis_angle_to_quat, rotation_6d_to_rotmat
from spectral_tracking.deform.rigid_mlp import RigidMLPDeformation
from spectral_tracking.gaussians import Gaussians

DEFORMATIONS: dict[str, type[Deformation]] = {
    "mlp": MLPDeformation,
    "direct": DirectDeformation,
    "rigid": RigidDeformation,
    "rigid_mlp": RigidMLPDeformation,
}


def build_deformation(name: str, canonical: Gaussians, num_frames: int, precision: str | None = None,
                       pos_freqs: int | None = None, **cfg) -> Deformation:
    """Construct the deformation called ``name`` (a key of `DEFORMATIONS`) for ``canonical``.

    precision, pos_freqs: the TimeNet's arithmetic and the frequencies encoding its control-point
    positions, for the deformations that have one (mlp, rigid_mlp; the others ignore them). cfg:
    keyword arguments of that class (e.g. num_control_points=800, learnable_radius=False); an
    unknown keyword raises ``ValueError`` naming the class and the keywords it accepts.
    """
    if name not in DEFORMATIONS:
        raise ValueError(f"build_deformation: unknown deformation {name!r}; choose one of {sorted(DEFORMATIONS)}")
    cls = DEFORMATIONS[name]
    import inspect

    accepted = set()  # the class's own keywords, and its parents' as far as each passes **kwargs on
    for klass in cls.__mro__:
        if klass is object or not issubclass(klass, Deformation):
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        accepted |= {p.name for p in params if p.kind is not p.VAR_KEYWORD} - {"self", "canonical", "num_frames", "skinning"}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    for key, value in (("precision", precision), ("pos_freqs", pos_freqs)):
        if value is not None and key in accepted and key not in cfg:
            cfg[key] = value
    unknown = sorted(set(cfg) - accepted)
    if unknown:
        raise ValueError(
            f"build_deformation: {name} ({cls.__name__}) does not take {unknown}; it accepts {sorted(accepted)}"
        )
    return cls(canonical, num_frames, **cfg)


__all__ = [
    "DEFORMATIONS",
    "PARAM_GROUPS",
    "Deformation",
    "DirectDeformation",
    "MLPDeformation",
    "RigidDeformation",
    "RigidMLPDeformation",
    "RigidMotion",
    "SkinBinding",
    "TimeNet",
    "axis_angle_to_quat",
    "bind_to_control_points",
    "blend",
    "blend_reference",
    "build_deformation",
    "control_point_radius",
    "export_frames",
    "farthest_point_sampling",
    "interpolate_frames",
    "knn",
    "positional_encoding",
    "rotation_6d_to_rotmat",
    "skin",
    "skin_reference",
    "skinning_weights",
    "transposed_weights",
]
