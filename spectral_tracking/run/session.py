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


def quiet_lightning() -> None:
    """Lightning's messages a user of this tool cannot act on, silenced: the accelerator census (GPU /
    TPU available), the LitLogger tip, "`Trainer.fit` stopped: `max_steps` reached" (the run's own
    lines say where it is), and a deprecation inside Lightning's own pytree helper. Its warnings
    stay (they pass through ``rank_zero_warn`` at WARNING)."""
    import logging
    import warnings

    for name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero",
                 "lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


def progress_bar():
    """Lightning's progress bar showing ``step N/max_steps`` (its default says ``Epoch 0/-2``: a run
    is one endless epoch cut at ``max_steps``)."""
    from pytorch_lightning.callbacks import RichProgressBar, TQDMProgressBar
    from pytorch_lightning.utilities.imports import _RICH_AVAILABLE

    class StepBar(RichProgressBar if _RICH_AVAILABLE else TQDMProgressBar):
        def _get_train_description(self, current_epoch: int) -> str:
            return "step"

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            super().on_train_epoch_start(trainer, pl_module)
            if isinstance(self, TQDMProgressBar) and self.train_progress_bar is not None:
                self.train_progress_bar.set_description("step")

        def get_metrics(self, trainer, pl_module):
            items = super().get_metrics(trainer, pl_module)
            items.pop("v_num", None)
            return items

    return StepBar()


def build_trainer(cfg: DictConfig, logger, callbacks: list) -> pl.Trainer:
    quiet_lightning()
    if bool(cfg.trainer.enable_progress_bar):
        callbacks = [*callbacks, progress_bar()]
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
        trainer.save_checkpoint(str(last), weights_only=False)
        raise RunInterrupted(
            f"interrupted by {signal.Signals(signum).name} at step {trainer.global_step}; a checkpoint is in "
            f"{last}: rerun the same command to resume", 128 + int(signum),
        ) from None
    finally:
        signal.signal(signal.SIGINT, previous)
    trainer.save_checkpoint(str(last), weights_only=False)  # the final step, so a change of eval.* can re-evaluate from it
