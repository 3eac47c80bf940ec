"""Python API: `track` a canonical asset through a sequence without writing a Hydra command line.

    from spectral_tracking import load_ply, track
    from spectral_tracking.data import load_sequence

    result = track(load_ply("my_asset.ply"), load_sequence("my_sequence"), shift=0.3, max_steps=300)
    result.metrics["novel_psnr"], result.paths["video"], result.frames[-1]   # Gaussians, in my_asset's frame

Settings are the keys of ``conf/train.yaml`` and its groups (``deform="rigid_mlp"``,
``loss="pixel"``, ``trainer="gpu"``); nested keys go in a dict (``eval={"lpips": "none"}``) or in
``overrides=["loss.num_bands=4"]``. The same config files and the same `spectral_tracking.run.track.run`
serve the CLI, so a run made here and one made with ``python train.py`` are alike, folder and all.
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
    return str(v)


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
    from hydra import compose, initialize_config_dir

    import spectral_tracking.run.config  # noqa: F401  (registers the ${frac:...} resolver)
    from spectral_tracking.runtime.paths import config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name, overrides=list(overrides))


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
        A given sequence (with ``canonical`` in it) is written to ``out_dir/input/`` and read from
        there, so the run folder holds what was tracked. Frames must be square; the run uses their size.
    out_dir: the run folder (default ``outputs/track/<time>`` under the current folder). A folder
        holding a finished run with the same settings is returned as it is (``skip_finished``).
    export_ply: write ``frames/frame_XXXX.ply`` (in the asset's frame; `TrackResult.frames` reads them).
    settings, overrides: config values (module docstring), e.g. ``shift=0.5, max_steps=500,
        deform="mlp", logger="none"``.
    """
    from spectral_tracking.run.track import run

    out = Path(out_dir) if out_dir is not None else Path("outputs") / "track" / time.strftime("%Y-%m-%d_%H-%M-%S")
    args = [*_flatten(settings), *overrides, f"out_dir={out.resolve()}", f"eval.export_ply={_value(export_ply)}"]
    if canonical is not None and not isinstance(canonical, Gaussians):
        canonical = load_ply(canonical)
    if sequence is None and canonical is not None:
        raise ValueError("track: a canonical was given without a sequence to track it through")
    if sequence is not None:
        folder = _sequence_folder(sequence, canonical, out / "input")
        size = _square_size(folder)
        args += ["dataset=folder", f"dataset.path={folder.resolve()}", f"resolution={size}"]
    result = run(compose_config(args))
    paths = {k: Path(v) for k, v in result["figures"].items()}
    return TrackResult(metrics=result["metrics"], paths=paths, out_dir=out, config=result["config"])


def _sequence_folder(sequence, canonical: Gaussians | None, folder: Path) -> Path:
    """A folder in the project's format holding ``sequence`` with ``canonical`` as its asset."""
    from spectral_tracking.data import Sequence, load_sequence, write_sequence
    from spectral_tracking.data.folder import is_complete

    if not isinstance(sequence, Sequence):
        if canonical is None:
            return Path(sequence)
        sequence = load_sequence(sequence, require_canonical=False)
    if canonical is not None:
        # The given asset replaces the sequence's: a normalisation recorded for the old one no longer holds.
        meta = {k: v for k, v in sequence.meta.items() if k not in ("normalization", "folder")}
        same = sequence.canonical is not None and sequence.canonical.num_gaussians == canonical.num_gaussians
        truth = {} if same else {"gt_means": None, "gt_index": None}  # truth of other Gaussians does not apply
        sequence = replace(sequence, canonical=canonical, meta=meta, **truth)
    if sequence.canonical is None:
        raise ValueError("track: the sequence has no canonical asset; pass canonical=<Gaussians or PLY path>")
    if not is_complete(folder):
        write_sequence(sequence, folder, extra_meta={"written_by": "spectral_tracking.api.track"})
    return folder


def _square_size(folder: Path) -> int:
    import json

    cams = json.loads((folder / "cameras.json").read_text())["views"][0]
    if cams["width"] != cams["height"]:
        raise ValueError(f"track: frames are {cams['width']}x{cams['height']}; the tracker runs on square frames")
    return int(cams["width"])
