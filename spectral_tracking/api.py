"""Python API: `track` a canonical asset through a sequence without writing a Hydra command line.

    from spectral_tracking import load_ply, track
    from spectral_tracking.data import load_sequence

    result = track(load_ply("my_asset.ply"), load_sequence("my_sequence"), shift=0.3, max_steps=300)
    result.metrics["novel_psnr"], result.paths["video"], result.frames[-1]   # Gaussians, in my_asset's frame

Settings are the keys of ``conf/train.yaml`` and its groups (``deform="rigid_mlp"``,
``loss="pixel"``, ``trainer="gpu"``); nested keys go in a dict (``eval={"lpips": "none"}``) or in
``overrides=["loss.num_bands=4"]``. The same config files and the same `spectral_tracking.run.track.run`
serve the CLI, so a run made here and one made with ``python train.py`` are alike, folder and all; a
given sequence goes to the run in memory (``dataset=memory``), its fingerprint in the run's config.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping
from typing import Sequence as SequenceType

from spectral_tracking.gaussians import Gaussians, PathLike, load_ply

__all__ = ["TrackResult", "compose_config", "track"]


@dataclass
class TrackResult:
    """What `track` returns: the run's metrics, its output paths (``video``, ``orbit``, ``strip``,
    ``curves``, ``tracked``, ``ply``, ...) and folder, and the tracked frames."""

    metrics: dict
    paths: dict[str, Path]
    out_dir: Path
    config: dict
    _frames: list[Gaussians] | None = field(default=None, repr=False)

    @property
    def frame_paths(self) -> list[Path]:
        """Per-frame PLYs, in the frame of the asset that was given (``frames/frame_XXXX.ply``)."""
        if "ply" not in self.paths:
            raise FileNotFoundError(f"{self.out_dir}: this run exported no PLYs (track(..., export_ply=True))")
        return sorted(Path(self.paths["ply"]).glob("frame_*.ply"))

    @property
    def frames(self) -> list[Gaussians]:
        """The tracked Gaussians of every frame, in the frame of the asset that was given."""
        if self._frames is None:
            self._frames = [load_ply(p) for p in self.frame_paths]
        return self._frames


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_value(x) for x in v) + "]"
    return _quoted(str(v)) if isinstance(v, (str, Path)) else str(v)


def _quoted(text: str) -> str:
    """A string as a Hydra override value: as it is where the override grammar reads it plainly, else
    quoted (a path such as ``runs/run (1)`` or ``a,b`` would otherwise fail to parse or split a sweep)."""
    import re

    if re.fullmatch(r"[\w./~+@:-]*", text):
        return text
    return "'" + text.replace("'", "\\'") + "'"  # inside quotes Hydra reads a backslash as itself


def _flatten(settings: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key, value in settings.items():
        if isinstance(value, Mapping):
            out += _flatten(value, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}={_value(value)}")
    return out


def compose_config(overrides: SequenceType[str] = (), config_name: str = "train"):
    """The composed run config (``conf/train.yaml`` with ``overrides``), as ``python train.py
    <overrides>`` would see it. ``out_dir`` must be among the overrides (there is no Hydra run dir)."""
    from spectral_tracking.run.config import compose

    return compose(overrides, config_name)


def input_fingerprint(sequence) -> str:
    """A hash of what a run tracks and measures: the canonical's Gaussians, the frames, masks and
    cameras, the views' azimuths (they choose the training views), the ground truth (the 3D errors), its
    frame rate and its normalisation record (the frame the exports are written in). It goes into the
    run's config (``dataset.fingerprint``), so a run folder made from other inputs is never reused for
    these, nor resumed with them."""
    import hashlib
    import json

    h = hashlib.sha1()
    g = sequence.canonical
    tensors = [g.means, g.quats, g.log_scales, g.opacity_logits, g.sh, sequence.images, sequence.masks,
               sequence.cameras.Ks, sequence.cameras.viewmats]
    tensors += [t for t in (sequence.gt_means, getattr(sequence, "gt_index", None)) if t is not None]
    for tensor in tensors:
        t = tensor.detach().cpu().contiguous()
        h.update(str((tuple(t.shape), str(t.dtype))).encode())
        h.update(t.numpy().tobytes())
    h.update(repr((list(sequence.view_names), list(sequence.train_views), list(sequence.eval_views))).encode())
    h.update(repr((list(sequence.azimuths), float(sequence.fps), sequence.gt_means is None)).encode())
    h.update(json.dumps(sequence.meta.get("normalization"), sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def _check_type(value, name: str, allowed: tuple, what: str) -> None:
    if value is not None and not isinstance(value, allowed):
        raise TypeError(f"track: {name} must be {what}, got {type(value).__name__}")


def track(
    canonical: Gaussians | PathLike | None = None,
    sequence=None,
    *,
    out_dir: PathLike | None = None,
    overrides: SequenceType[str] = (),
    export_ply: bool = True,
    **settings: Any,
) -> TrackResult:
    """Track ``canonical`` through ``sequence`` and return a `TrackResult`.

    canonical: the asset (`Gaussians` or a 3DGS PLY path), in the frame of the sequence's cameras;
        None: the sequence's own canonical.
    sequence: a `spectral_tracking.data.Sequence`, a sequence folder (the project's format), or None
        for the config's dataset (default: the built-in synthetic benchmark; ``dataset="donut"`` etc.).
        A given sequence is tracked as it is in memory (frames must be square; the run uses their
        size); its fingerprint (`input_fingerprint`) is part of the run's settings, so a folder
        holding a run of other inputs is refused, never reused.
    out_dir: the run folder (default ``outputs/track/<time>`` under the current folder). A folder
        holding a finished run with the same settings and inputs is returned as it is (``skip_finished``).
    export_ply: write ``frames/frame_XXXX.ply`` (in the asset's frame; `TrackResult.frames` reads them).
    settings, overrides: config values (module docstring), e.g. ``shift=0.5, max_steps=500,
        deform="mlp", logger="none"``.

    Every argument and setting is checked before anything is written.
    """
    from spectral_tracking.data import Sequence
    from spectral_tracking.run.config import validate
    from spectral_tracking.run.track import run

    _check_type(canonical, "canonical", (Gaussians, str, Path), "Gaussians or a path to a 3DGS PLY")
    _check_type(sequence, "sequence", (Sequence, str, Path), "a spectral_tracking.data.Sequence or a sequence folder")
    _check_type(out_dir, "out_dir", (str, Path), "a folder path")
    if isinstance(overrides, (str, bytes)) or not all(isinstance(o, str) for o in overrides):
        raise TypeError("track: overrides must be a list of 'key=value' strings")
    if sequence is None and canonical is not None:
        raise ValueError("track: a canonical was given without a sequence to track it through")
    out = Path(out_dir) if out_dir is not None else Path("outputs") / "track" / time.strftime("%Y-%m-%d_%H-%M-%S")
    args = [*_flatten(settings), *overrides, f"out_dir={_quoted(str(out.resolve()))}", f"eval.export_ply={_value(export_ply)}"]
    seq = None
    if sequence is not None:
        seq = _sequence(sequence, canonical)
        args += ["dataset=memory", f"dataset.fingerprint={input_fingerprint(seq)}", f"resolution={_square_size(seq)}"]
    cfg = compose_config(args)
    validate(cfg)  # every setting, before anything is written
    from spectral_tracking.runtime.paths import claim_run_dir

    claim_run_dir(out)  # made here so that a run refused on its data removes it, and the outputs/track/ made with it
    result = run(cfg, sequence=seq)
    paths = {k: Path(v) for k, v in result["figures"].items()}
    return TrackResult(metrics=result["metrics"], paths=paths, out_dir=out, config=result["config"])


def _sequence(sequence, canonical):
    """The `Sequence` to track, with ``canonical`` (a `Gaussians` or a PLY path) as its asset."""
    from spectral_tracking.data import Sequence, load_sequence

    if not isinstance(sequence, Sequence):
        sequence = load_sequence(sequence, require_canonical=canonical is None)
    if canonical is not None:
        if not isinstance(canonical, Gaussians):
            canonical = load_ply(canonical)
        # The given asset replaces the sequence's: a normalisation recorded for the old one no longer holds.
        meta = {k: v for k, v in sequence.meta.items() if k not in ("normalization", "folder")}
        same = sequence.canonical is not None and sequence.canonical.num_gaussians == canonical.num_gaussians
        truth = {} if same else {"gt_means": None, "gt_index": None}  # truth of other Gaussians does not apply
        sequence = replace(sequence, canonical=canonical, meta=meta, **truth)
    if sequence.canonical is None:
        raise ValueError("track: the sequence has no canonical asset; pass canonical=<Gaussians or PLY path>")
    canonical = sequence.canonical
    canonical.check_finite("track: canonical")
    return sequence


def _square_size(sequence) -> int:
    width, height = sequence.cameras.width, sequence.cameras.height
    if width != height:
        raise ValueError(f"track: frames are {width}x{height}; the tracker runs on square frames")
    return int(width)
