"""A run's output folder: is it finished, does it hold the same run, where does it resume from.

A folder holding ``metrics.json`` of the same settings is a finished run (``skip_finished``);
one holding ``checkpoints/last.ckpt`` resumes from it; ``skip_finished=false`` starts it over.
Settings are compared by a fingerprint of the resolved config, without the keys that do not
change what a run computes (`NOT_IN_FINGERPRINT`).
"""

from __future__ import annotations

import copy
import fcntl
import hashlib
import json
import logging
import os
import shutil
import socket
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from spectral_tracking.errors import ConfigError, RunFolderBusy, RunRefused  # noqa: F401  (raised here)

log = logging.getLogger(__name__)

# Keys that do not change what a run computes: they may differ between a run and its resumption.
NOT_IN_FINGERPRINT = ("logger", "trainer", "skip_finished", "check_memory", "ckpt_path", "out_dir", "task_name", "eval", "hydra")


def _trajectory(c: dict) -> bool:
    """Whether a resolved config runs the trajectory search (align=search with search.frames=all)."""
    return c.get("align") == "search" and (c.get("search") or {}).get("frames") == "all"


# The deformations (`spectral_tracking.deform.DEFORMATIONS` names) with a TimeNet, written out so that reading a
# fingerprint needs no torch (tests/test_experiments.py checks it against the registry; deform=rigid_mlp_frames
# is rigid_mlp by name)
TIMENET_DEFORMATIONS = ("mlp", "rigid_mlp")


def _timenet(c: dict) -> bool:
    """Whether the run's deformation has a TimeNet (the others ignore its settings)."""
    return (c.get("deform") or {}).get("name") in TIMENET_DEFORMATIONS


# Settings added after runs were recorded, newest batch last, each with the test of whether it applies to
# a run (on the resolved config). A run to which a batch does not apply computes what it computed before the
# batch existed, so the fingerprint of its config without the batch, which its folder or CSV row recorded
# then, still names it: adding a setting does not make hours of finished runs stale.
ADDED_SETTINGS: tuple[tuple[tuple[str, ...], Callable[[dict], bool]], ...] = (
    # 2026-12-06: the trajectory's corrections (tracking/search.py), read only by align=search with frames=all
    (("search.realign", "search.depth_window", "search.turn_gate"), _trajectory),
    # 2026-12-06: the trajectory's beam; at 1 (greedy) it computes what it computed before
    (("search.beam",), lambda c: _trajectory(c) and c["search"].get("beam", 1) != 1),
    # 2026-12-06: the switch's prior; at zero, or without the switch (the Pixel baseline, the fixed step), as before
    (("loss.switch_prior",), lambda c: (c.get("loss") or {}).get("switch_prior", "zero") != "zero"
     and c["loss"].get("image") == "spectral" and c["loss"].get("switch_iou") is not None),
    # 2026-12-06: the TimeNet's coarse-to-fine position encoding; at 0, every frequency from step 0 as before
    (("deform.pos_anneal",), lambda c: _timenet(c) and c["deform"].get("pos_anneal", 0.0) != 0.0),
    # 2026-12-06: the TimeNet's position frequencies as a setting of its own; at SC4D's 10, as before
    (("deform.pos_freqs",), lambda c: _timenet(c) and c["deform"].get("pos_freqs", 10) != 10),
    # 2026-12-06: the result as the average of the last steps' weights (run/averaging.py); at 0, the last step's
    (("average",), lambda c: (c.get("average") or {}).get("decay", 0.0) != 0.0),
    # 2026-12-07: the rescue of a frame that lost its target (tracking/objective.py); off (null), or in the Pixel
    # baseline, as before. On, a run is the same only where it never fires, which is not known before it runs
    (("loss.rescue_iou", "loss.rescue_bands"), lambda c: (c.get("loss") or {}).get("rescue_iou") is not None
     and c["loss"].get("image") == "spectral"),
    # 2026-12-07: the trajectory's steps a frame; at 15 and 10 (the defaults), as before. (Runs made at commits
    # 6eb3c25-673f5a8, where the defaults were 9 / 5 and then 12 / 5, hold those in their fingerprint.)
    (("search.frame_steps", "search.frame_polish"),
     lambda c: _trajectory(c) and (c["search"].get("frame_steps", 15) != 15 or c["search"].get("frame_polish", 10) != 10)),
    # 2026-12-07: the rescue's recentring of an empty render; off (0), or without the rescue, as before. On,
    # a run is the same only where no rescue step renders empty, which is not known before it runs
    (("loss.rescue_recentre",), lambda c: (c.get("loss") or {}).get("rescue_recentre", 0.0) != 0.0
     and c["loss"].get("rescue_iou") is not None and c["loss"].get("image") == "spectral"),
    # 2026-12-07: Adam's epsilon as a setting; at 3DGS's 1e-15 (hard-coded until then), as before
    (("deform.adam_eps",), lambda c: (c.get("deform") or {}).get("adam_eps", 1e-15) != 1e-15),
    # 2026-12-07: the trajectory's own bands; null (search.bands), or without the trajectory, as before
    (("search.frame_bands",), lambda c: _trajectory(c) and c["search"].get("frame_bands") is not None),
    # 2026-12-07: the trajectory's prior on smooth turning; at 0, or without the trajectory, as before
    (("search.smooth",), lambda c: _trajectory(c) and c["search"].get("smooth", 0.0) != 0.0),
    # 2026-12-07: the turn gate for more than one view; without the trajectory, or where the run's training views
    # are one or more than search.gate_views (the default 1: any run), as before
    (("search.gate_views",), lambda c: _trajectory(c) and 1 < int(c.get("views", 1)) <= c["search"].get("gate_views", 1)),
    # 2026-12-07: the beam's score; at bands, or without the trajectory, as before
    (("search.beam_score",), lambda c: _trajectory(c) and c["search"].get("beam_score", "bands") != "bands"),
    # 2026-12-07: the trajectory's refine on pixels (tracking/refine.py); at 0 steps, or without the trajectory, as before
    (("search.refine_steps", "search.refine_lr", "search.refine_depth"),
     lambda c: _trajectory(c) and c["search"].get("refine_steps", 0) != 0),
    # 2026-12-07: the trajectory's bridge over frames the pixels cannot tell (tracking/refine.py); off (null), or
    # without the trajectory, as before
    (("search.bridge_margin", "search.bridge_degrees"),
     lambda c: _trajectory(c) and c["search"].get("bridge_margin") is not None),
    # 2026-12-07: the bound on the refine's turn; none (null), or without the refine, as before
    (("search.refine_degrees",),
     lambda c: _trajectory(c) and c["search"].get("refine_degrees") is not None
     and c["search"].get("refine_steps", 0) != 0),
    # 2026-12-07: the trajectory's depths from the silhouettes at its final poses (tracking/depth.py); off (null),
    # without the trajectory, or with more than one training view, as before
    (("search.depth_cue",),
     lambda c: _trajectory(c) and c["search"].get("depth_cue") is not None and int(c.get("views", 1)) == 1),
    # 2026-12-07: the bridge over runs of wrong frames (tracking/refine.py); at 1, without the bridge or without the
    # trajectory, as before
    (("search.bridge_span",),
     lambda c: _trajectory(c) and c["search"].get("bridge_margin") is not None and c["search"].get("bridge_span", 1) != 1),
    # 2026-12-07: which frames ARAP sees (tracking/module.py, control_frames); uniform, as before
    (("arap_sampling",), lambda c: c.get("arap_sampling", "uniform") != "uniform"),
    # 2026-12-07: the turn gate's test of the fit (tracking/start.py); off (null), or without the trajectory, as before
    (("search.turn_fit",), lambda c: _trajectory(c) and c["search"].get("turn_fit") is not None),
)


# Settings whose default changed while some runs ignore them, newest last: (keys, the test of whether a run ignores
# them, the values they had as defaults before). A run that ignores them computed the same under any of those
# values, so its fingerprint with each of them still names it.
PAST_DEFAULTS: tuple[tuple[tuple[str, ...], Callable[[dict], bool], tuple[tuple, ...]], ...] = (
    # 2026-12-07: the trajectory's steps a frame were 9 / 5 (6eb3c25), then 12 / 5 (673f5a8), then 15 / 10 again;
    # only align=search with frames=all reads them
    (("search.frame_steps", "search.frame_polish"), lambda c: not _trajectory(c), ((9, 5), (12, 5))),
)


def _hash(settings: dict) -> str:
    return hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _kept(cfg: DictConfig) -> dict:
    container = OmegaConf.to_container(cfg, resolve=True)
    return {k: v for k, v in container.items() if k not in NOT_IN_FINGERPRINT}


def config_fingerprint(cfg: DictConfig) -> str:
    """Hash of the resolved settings that determine a run's result (see ``NOT_IN_FINGERPRINT``)."""
    return _hash(_kept(cfg))


def config_fingerprints(cfg: DictConfig) -> list[str]:
    """`config_fingerprint`, the fingerprints with the `PAST_DEFAULTS` of settings the run ignores,
    then the fingerprints the same run had before the `ADDED_SETTINGS` batches that do not apply to it
    (newest first, up to the first one that applies)."""
    kept = _kept(cfg)
    out = [_hash(kept)]
    for keys, ignores, values in PAST_DEFAULTS:
        if ignores(kept):
            for past in values:
                other = copy.deepcopy(kept)
                for key, value in zip(keys, past):
                    group, _, name = key.rpartition(".")
                    (other[group] if group else other)[name] = value
                out.append(_hash(other))
    for keys, applies in reversed(ADDED_SETTINGS):
        if applies(kept):
            break
        for key in keys:
            group, _, name = key.rpartition(".")
            (kept.get(group) or {}).pop(name, None) if group else kept.pop(name, None)
        out.append(_hash(kept))
    return out


def check_same_run(out_dir: Path, fingerprints: list[str], what: str) -> None:
    """Refuse ``out_dir`` if its run_meta.json names another run (``fingerprints``: `config_fingerprints`,
    any of which names this one)."""
    meta = out_dir / "run_meta.json"
    if not meta.exists():
        return
    try:
        old = json.loads(meta.read_text()).get("config_fingerprint")
    except json.JSONDecodeError as e:
        raise ConfigError(f"{meta}: unreadable ({e}); delete it, or use skip_finished=false to start this folder over") from None
    if old is not None and old not in fingerprints:
        raise RunRefused(
            f"{out_dir} holds {what} of a run with different settings (config fingerprint {old}, now "
            f"{fingerprints[0]}); use another out_dir, or skip_finished=false to start this folder over"
        )


# What a run leaves in its folder; ``skip_finished=false`` removes these before starting over.
# (Hydra's own ``.hydra/`` and ``*.log`` and the lock are kept: they belong to the current process.)
KEEP_ON_RESTART = (".hydra", ".lock")


def finished_result(cfg: DictConfig, fingerprints: list[str]) -> dict | None:
    """The saved result if ``cfg.out_dir`` holds this run finished with the same evaluation
    settings (and ``skip_finished``), else None, having prepared the folder for a fresh or resumed
    run. A finished run whose ``eval`` settings changed is re-evaluated from its final checkpoint."""
    out_dir = Path(cfg.out_dir)
    metrics_path = out_dir / "metrics.json"
    if cfg.skip_finished:
        if metrics_path.exists():
            check_same_run(out_dir, fingerprints, "the results")
            try:
                saved = json.loads(metrics_path.read_text())
            except json.JSONDecodeError as e:
                raise ConfigError(f"{metrics_path}: unreadable ({e}); delete it to evaluate this run again") from None
            if "metrics" not in saved:
                raise ConfigError(f"{metrics_path} is not a tracking run's result (no 'metrics'); use another out_dir")
            old_eval = saved.get("config", {}).get("eval")
            new_eval = OmegaConf.to_container(cfg.eval, resolve=True)
            if old_eval is None or old_eval == new_eval:
                log.info("%s exists: this run is finished, skipping (skip_finished=false to run again)", metrics_path)
                return saved
            if not (out_dir / "checkpoints" / "last.ckpt").exists():
                raise ConfigError(f"eval.* changed since {out_dir} finished, but it holds no final checkpoint to "
                                  f"re-evaluate; rerun with skip_finished=false")
            log.warning("eval settings changed since %s finished (%s -> %s): re-evaluating from its final checkpoint",
                        out_dir, old_eval, new_eval)
        else:
            check_same_run(out_dir, fingerprints, "a checkpoint")
    elif out_dir.is_dir():
        for item in out_dir.iterdir():
            if item.name in KEEP_ON_RESTART or item.suffix == ".log":
                continue
            shutil.rmtree(item) if item.is_dir() else item.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "failed.txt").unlink(missing_ok=True)
    return None


def resume_checkpoint(cfg: DictConfig) -> tuple[str | None, int | None]:
    """(checkpoint, its global step) to resume from: ``ckpt_path`` if set, else the folder's
    ``checkpoints/last.ckpt`` if it exists (or, when that file is unreadable, the previous checkpoint
    kept beside it); (None, None) for a fresh run."""
    from spectral_tracking.run.atomic import load_checkpoint_or_previous

    path = Path(cfg.ckpt_path) if cfg.ckpt_path is not None else Path(cfg.out_dir) / "checkpoints" / "last.ckpt"
    if cfg.ckpt_path is None and not path.exists():
        return None, None
    if cfg.ckpt_path is not None and not path.is_file():
        raise ConfigError(f"ckpt_path={cfg.ckpt_path}: no such checkpoint file; give an existing .ckpt, or leave ckpt_path "
                          f"unset to resume {cfg.out_dir} from its own checkpoints/last.ckpt")
    path, ckpt = load_checkpoint_or_previous(path)
    step = int(ckpt.get("global_step", 0))
    log.info("resuming from %s (step %d)", path, step)
    return str(path), step


def read_meta(out_dir: Path) -> dict:
    meta = Path(out_dir) / "run_meta.json"
    return json.loads(meta.read_text()) if meta.exists() else {}


class RunLock:
    """An exclusive lock on a run folder for the whole run: a second run into the same folder stops
    at once. ``flock`` on ``<out_dir>/.lock``: the kernel releases it when the process dies (even
    by SIGKILL), so a stale lock never blocks a rerun; the file names the holder for the message."""

    def __init__(self, out_dir: Path) -> None:
        self.path = Path(out_dir) / ".lock"
        self._fd: int | None = None

    def __enter__(self) -> "RunLock":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise ConfigError(f"out_dir={self.path.parent}: cannot write there ({e.strerror}); choose a writable out_dir") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunFolderBusy(
                f"{self.path.parent} is in use by {holder} (lock {self.path}); wait for that run to end "
                f"or use another out_dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
