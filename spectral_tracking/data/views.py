"""Training / evaluation view selection (paper Appendix D.3)."""

from __future__ import annotations

from dataclasses import replace

from spectral_tracking.data.sequence import Sequence, azimuth_of_camera

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
    includes views the tracker never saw (when the sequence has any). Raises ValueError naming the
    missing azimuths and the available ones.
    """
    if views not in TRAIN_AZIMUTHS:
        raise ValueError(f"select_views: views must be 1, 2 or 4 (paper App. D.3), got {views!r}")
    available = {i: view_azimuth(seq, i) for i in seq.supervision_views}
    chosen, missing = [], []
    for az in TRAIN_AZIMUTHS[views]:
        hits = [i for i, a in available.items() if _angle_close(a, az, tolerance_deg)]
        if not hits:
            missing.append(az)
        else:
            chosen.append(hits[0])
    if missing:
        have = {seq.view_names[i]: round(a, 2) for i, a in available.items()}
        raise ValueError(
            f"select_views(views={views}): no supervision view at azimuth(s) {missing} degrees; "
            f"the sequence{' ' + seq.meta['folder'] if 'folder' in seq.meta else ''} has {have}")
    held_out = [i for i in seq.supervision_views if i not in chosen]
    eval_views = list(seq.novel_views) + held_out
    return replace(seq, train_views=chosen, eval_views=eval_views,
                   meta={**seq.meta, "views": views, "train_view_names": [seq.view_names[i] for i in chosen],
                         "eval_view_names": [seq.view_names[i] for i in eval_views]})
