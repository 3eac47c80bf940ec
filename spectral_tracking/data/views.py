"""Training / evaluation view selection (paper Appendix D.3)."""

from __future__ import annotations

from dataclasses import replace

from spectral_tracking.data.sequence import Sequence, azimuth_of_camera
from spectral_tracking.errors import SequenceFormatError

# Number of training views -> their orbit azimuths in degrees.
TRAIN_AZIMUTHS: dict[int, list[float]] = {1: [0.0], 2: [0.0, 180.0], 4: [0.0, 90.0, 180.0, 270.0]}


def view_azimuth(seq: Sequence, index: int) -> float:
    """Azimuth of view ``index`` in degrees: from cameras.json if recorded, else from its camera centre."""
    az = seq.azimuths[index]
    return float(az) % 360.0 if az is not None else azimuth_of_camera(seq.cameras.viewmats[index])


def _angle_close(a: float, b: float, tol: float) -> bool:
    d = abs((a - b + 180.0) % 360.0 - 180.0)
    return d <= tol


def select_views(seq: Sequence, views: int, tolerance_deg: float = 0.5) -> Sequence:
    """Pick the training views by azimuth: 1 -> 0; 2 -> 0, 180; 4 -> 0, 90, 180, 270.

    Training views are taken from the supervision views (folder ``frames/``). Evaluation views are
    the novel views plus every supervision view not used for training, so evaluation always
    includes views the tracker never saw (when the sequence has any). Raises `SequenceFormatError`
    (a ``ValueError``) naming the sequence's cameras, the missing azimuths and the available ones.
    """
    if views not in TRAIN_AZIMUTHS:
        from spectral_tracking.errors import ConfigError

        raise ConfigError(f"views must be 1, 2 or 4 (azimuths 0 / 0,180 / 0,90,180,270; paper App. D.3), got {views!r}")
    available = {i: view_azimuth(seq, i) for i in seq.supervision_views}
    chosen, missing = [], []
    for az in TRAIN_AZIMUTHS[views]:
        hits = [i for i, a in available.items() if _angle_close(a, az, tolerance_deg)]
        if not hits:
            missing.append(az)
        else:
            chosen.append(hits[0])
    if missing:
        raise SequenceFormatError(_missing_views_message(seq, views, missing, available, tolerance_deg))
    held_out = [i for i in seq.supervision_views if i not in chosen]
    eval_views = list(seq.novel_views) + held_out
    return replace(seq, train_views=chosen, eval_views=eval_views,
                   meta={**seq.meta, "views": views, "train_view_names": [seq.view_names[i] for i in chosen],
                         "eval_view_names": [seq.view_names[i] for i in eval_views]})


def _missing_views_message(seq: Sequence, views: int, missing: list[float], available: dict[int, float], tol: float) -> str:
    """One line: which file holds the cameras, what ``views`` needs, what the sequence has, what to do."""
    from pathlib import Path

    folder = seq.meta.get("folder")
    if folder and (Path(folder) / "cameras.json").is_file():
        where = str(Path(folder) / "cameras.json")
    else:
        where = str(folder or "the sequence")
    have = ", ".join(f"{seq.view_names[i]!r} at {a:.1f}" for i, a in available.items()) or "no supervision views"
    need = ", ".join(f"{a:g}" for a in TRAIN_AZIMUTHS[views])
    fewer = [n for n, azs in TRAIN_AZIMUTHS.items() if n < views and all(
        any(_angle_close(a, az, tol) for a in available.values()) for az in azs)]
    todo = "add that view or correct its azimuth_deg"
    if fewer:
        todo = f"set views={max(fewer)}, or {todo}"
    return (f"{where}: views={views} trains on the supervision views at azimuths {need} degrees, but none is within {tol:g} "
            f"degrees of {', '.join(f'{a:.1f}' for a in missing)} (azimuth_deg, or the camera centre where it is null); "
            f"the sequence has {have}; {todo}")
