"""The Lightning part of a run: the trainer, its checkpoints, and what happens on SIGTERM / SIGINT.

On SIGTERM (a cluster's scheduler, ``kill``) or SIGINT (Ctrl-C) the current step finishes, a
checkpoint is written (atomically, see `spectral_tracking.run.atomic`) and `RunInterrupted` is raised:
the entry point says where it stopped and exits 143 / 130, so a scheduler records a failure and
the same command resumes. Training time is kept in the checkpoint (`ElapsedTime`), so a resumed
run reports the seconds of all its segments.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning.utilities.exceptions import SIGTERMException

from spectral_tracking.errors import RunInterrupted  # noqa: F401  (raised here)
from spectral_tracking.run.atomic import AtomicCheckpointIO


class ElapsedTime(pl.Callback):
    """Seconds of training over every segment of a run (kept in the checkpoint)."""

    def __init__(self) -> None:
        self.before = 0.0  # seconds of the segments before this one
        self._start = time.time()

    @property
    def seconds(self) -> float:
        return self.before + time.time() - self._start

    def state_dict(self) -> dict:
        return {"seconds": self.seconds}

    def load_state_dict(self, state_dict: dict) -> None:
        self.before = float(state_dict.get("seconds", 0.0))


def build_trainer(cfg: DictConfig, logger, callbacks: list) -> pl.Trainer:
    checkpoints = pl.callbacks.ModelCheckpoint(
        dirpath=str(Path(cfg.out_dir) / "checkpoints"), save_last=True, save_top_k=0,
        every_n_train_steps=max(1, int(cfg.max_steps) // 10),
    )
    return pl.Trainer(
        max_steps=int(cfg.max_steps), accelerator=cfg.trainer.accelerator, devices=1,
        precision=cfg.trainer.precision, logger=logger, callbacks=[*callbacks, checkpoints],
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=bool(cfg.trainer.enable_progress_bar), enable_model_summary=False,
        log_every_n_steps=int(cfg.trainer.log_every_n_steps), num_sanity_val_steps=0,
        limit_val_batches=0, default_root_dir=str(cfg.out_dir), deterministic=False,
    )


def train(trainer: pl.Trainer, module: pl.LightningModule, ckpt_path: str | None, out_dir: Path) -> None:
    """``trainer.fit`` that ends with ``checkpoints/last.ckpt`` at the final step, and on SIGTERM /
    SIGINT saves it at the current step and raises `RunInterrupted`. Lightning handles SIGTERM
    itself (it raises `SIGTERMException` after the step); Ctrl-C asks the trainer to stop after the
    current step through its public ``should_stop``."""
    last = Path(out_dir) / "checkpoints" / "last.ckpt"
    received: list[int] = []

    def on_sigint(signum, frame) -> None:
        received.append(signum)
        trainer.should_stop = True

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        trainer.fit(module, ckpt_path=ckpt_path)
        if received:
            raise SIGTERMException()
    except SIGTERMException:
        signum = received[0] if received else signal.SIGTERM
        trainer.save_checkpoint(str(last))
        raise RunInterrupted(
            f"interrupted by {signal.Signals(signum).name} at step {trainer.global_step}; a checkpoint is in "
            f"{last}: rerun the same command to resume", 128 + int(signum),
        ) from None
    finally:
        signal.signal(signal.SIGINT, previous)
    trainer.save_checkpoint(str(last))  # the final step, so a change of eval.* can re-evaluate from it
