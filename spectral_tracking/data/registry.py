"""One entry point for every dataset kind, for configs: ``load_dataset(kind, **options) -> Sequence``.

kinds and their options:

- ``synthetic``:     preset, setting ("clean" | "realistic"), frames, resolution, seed, root, num_gaussians
                     (generated on first use, then cached; see `spectral_tracking.data.synthetic.generate`)
- ``donut``:         motion ("bend" | "twist" | "squash"), setting, frames, resolution, seed, root, donut_ply
- ``sequence``:      folder (any folder in the on-disk format)
- ``consistent4d``:  folder (or name under ../shared/data/consistent4d), resolution
- ``gart``:          folder, canonical, frame_ids, resolution
- ``sc4d``:          folder, resolution

``views`` (1 | 2 | 4), when given, selects the training views (`select_views`).
"""

from __future__ import annotations

from pathlib import Path

from spectral_tracking.data.sequence import Sequence, load_sequence
from spectral_tracking.data.views import select_views

KINDS = ("synthetic", "donut", "sequence", "consistent4d", "gart", "sc4d")


def load_dataset(kind: str, views: int | None = None, **options) -> Sequence:
    if kind == "synthetic":
        from spectral_tracking.data.synthetic import generate

        seq = load_sequence(generate(**options))
    elif kind == "donut":
        from spectral_tracking.data.synthetic import generate

        motion = options.pop("motion", "bend")
        seq = load_sequence(generate(preset=f"donut_{motion}", **options))
    elif kind == "sequence":
        seq = load_sequence(**options)
    elif kind == "consistent4d":
        from spectral_tracking.data.consistent4d import DEFAULT_ROOT, load_consistent4d

        folder = Path(options.pop("folder"))
        if not folder.is_absolute() and not folder.exists() and (DEFAULT_ROOT / folder).exists():
            folder = DEFAULT_ROOT / folder
        seq = load_consistent4d(folder, **options)
    elif kind == "gart":
        from spectral_tracking.data.formats import load_gart

        seq = load_gart(**options)
    elif kind == "sc4d":
        from spectral_tracking.data.formats import load_sc4d

        seq = load_sc4d(**options)
    else:
        raise ValueError(f"unknown dataset kind {kind!r}; choose from {KINDS}")
    return select_views(seq, views) if views is not None else seq
