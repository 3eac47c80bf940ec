"""A run's output folder: is it finished, does it hold the same run, where does it resume from.

A folder holding ``metrics.json`` of the same settings is a finished run (``skip_finished``);
one holding ``checkpoints/last.ckpt`` resumes from it; ``skip_finished=false`` starts it over.
Settings are compared by a fingerprint of the resolved config, without the keys that do not
change what a run computes (`NOT_IN_FINGERPRINT`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from spectral_tracking.config import ConfigError

log = logging.getLogger(__name__)

# Keys that do not change what a run computes: they may differ between a run and its resumption.
NOT_IN_FINGERPRINT = ("logger", "trainer", "skip_finished", "ckpt_path", "out_dir", "task_name", "eval", "hydra")


def config_fingerprint(cfg: DictConfig) -> str:
    """Hash of the resolved settings that determine a run's result (see ``NOT_IN_FINGERPRINT``)."""
    container = OmegaConf.to_container(cfg, resolve=True)
    kept = {k: v for k, v in container.items() if k not in NOT_IN_FINGERPRINT}
    return hashlib.sha1(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]


def check_same_run(out_dir: Path, fingerprint: str, what: str) -> None:
    meta = out_dir / "run_meta.json"
    if not meta.exists():
        return
    old = json.loads(meta.read_text()).get("config_fingerprint")
    if old is not None and old != fingerprint:
        raise ConfigError(
            f"{out_dir} holds {what} of a run with different settings (config fingerprint {old}, now "
            f"{fingerprint}); use another out_dir, or skip_finished=false to start this folder over"
        )


def finished_result(cfg: DictConfig, fingerprint: str) -> dict | None:
    """The saved result if ``cfg.out_dir`` holds this run finished (and ``skip_finished``), else None;
    prepares the folder for a (resumed or fresh) run."""
    out_dir = Path(cfg.out_dir)
    metrics_path = out_dir / "metrics.json"
    if cfg.skip_finished:
        if metrics_path.exists():
            check_same_run(out_dir, fingerprint, "the results")
            log.info("%s exists: this run is finished, skipping (skip_finished=false to run again)", metrics_path)
            return json.loads(metrics_path.read_text())
        check_same_run(out_dir, fingerprint, "a checkpoint")
    else:
        for stale in (metrics_path, out_dir / "checkpoints"):
            if stale.is_dir():
                shutil.rmtree(stale)
            elif stale.exists():
                stale.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "failed.txt").unlink(missing_ok=True)
    return None


def resume_checkpoint(cfg: DictConfig) -> str | None:
    """``ckpt_path`` if set, else the folder's ``checkpoints/last.ckpt`` if it exists."""
    if cfg.ckpt_path is not None:
        return str(cfg.ckpt_path)
    last = Path(cfg.out_dir) / "checkpoints" / "last.ckpt"
    if last.exists():
        log.info("resuming from %s", last)
        return str(last)
    return None
