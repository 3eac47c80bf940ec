"""The run's experiment logger (``logger`` config group): csv | tensorboard | wandb | none."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf


def build_logger(cfg: DictConfig, out_dir: Path, resume_step: int | None = None, wandb_id: str | None = None):
    """The logger of ``cfg.logger``. A resumed run (``resume_step``: the checkpoint's step) keeps the
    CSV rows logged before that step and continues the same wandb run (``wandb_id``)."""
    name = cfg.logger.name
    if name == "none":
        return False
    if name == "csv":
        return _resumable_csv_logger(out_dir, resume_step)
    if name == "tensorboard":
        return _tensorboard_logger(out_dir)
    if name == "wandb":
        from pytorch_lightning.loggers import WandbLogger

        run_name = f"{cfg.task_name}-{out_dir.name}"
        return WandbLogger(
            project=cfg.logger.project, entity=cfg.logger.entity, name=run_name, save_dir=str(out_dir),
            offline=bool(cfg.logger.offline), tags=list(cfg.logger.tags), id=wandb_id, resume="allow" if wandb_id else None,
            group=wandb_group(cfg), config=OmegaConf.to_container(cfg, resolve=True),
        )
    raise ValueError(f"logger.name: unknown logger {name!r}")


def wandb_group(cfg: DictConfig) -> str | None:
    """The wandb group of a run: ``logger.group`` when set, else in a sweep (``train.py -m``, any
    launcher) the sweep's folder, so the runs of one sweep appear together on a dashboard; None for
    a single run."""
    from spectral_tracking.run.sweep import current_sweep_dir

    if cfg.logger.get("group"):
        return str(cfg.logger.group)
    sweep = current_sweep_dir()
    return None if sweep is None else str(sweep)


def new_wandb_id() -> str:
    """An id for a new wandb run, kept in ``run_meta.json`` so that a resumed run continues it."""
    import secrets

    return secrets.token_hex(4)


def is_wandb(logger) -> bool:
    return bool(logger) and type(logger).__name__ == "WandbLogger"


def _tensorboard_logger(out_dir: Path):
    """Lightning's TensorBoardLogger, except that the end of ``fit`` only flushes it: the run logs
    its final metrics after ``fit`` and closes it then (`close_logger`). Lightning's close at the end
    of ``fit`` made the final metrics open a second event file whose writer thread was never joined
    and died with ``OSError: handle is closed`` when a sweep's worker process exited."""
    from pytorch_lightning.loggers import TensorBoardLogger

    class RunTensorBoardLogger(TensorBoardLogger):
        def finalize(self, status: str) -> None:
            if self._experiment is not None:
                self._experiment.flush()
            if status == "success":
                self.save()

        def close(self) -> None:
            if self._experiment is not None:
                self._experiment.close()  # joins the writer thread

    return RunTensorBoardLogger(save_dir=str(out_dir), name="tensorboard", version="")


def close_logger(logger) -> None:
    """The end of a run, also on failure: the TensorBoard writer closed (its thread joined) and the
    wandb run finished, so sweep jobs never share one."""
    if hasattr(logger, "close"):
        logger.close()
    finish_wandb(logger)


def finish_wandb(logger) -> None:
    """Close the wandb run (also on failure), so sweep jobs never share one."""
    if is_wandb(logger):
        import wandb

        if wandb.run is not None:
            wandb.finish()


def _resumable_csv_logger(out_dir: Path, resume_step: int | None):
    """Lightning's CSVLogger deletes an existing ``metrics.csv`` when it starts; this one keeps the
    rows of the steps before ``resume_step`` (rows logged after the checkpoint are dropped: those
    steps run again) and appends."""
    import csv

    from pytorch_lightning.loggers import CSVLogger
    from pytorch_lightning.loggers.csv_logs import ExperimentWriter

    class _AppendingWriter(ExperimentWriter):
        def _check_log_dir_exists(self) -> None:
            path = Path(self.metrics_file_path)
            if not path.is_file():
                return
            if resume_step is None:  # a fresh run in a used folder: start the log over
                path.unlink()
                return
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                keys, rows = list(reader.fieldnames or []), list(reader)
            kept = [r for r in rows if r.get("step", "") == "" or int(float(r["step"])) < resume_step]
            with open(path, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=keys)
                writer.writeheader()
                writer.writerows(kept)
            self.metrics_keys = sorted(keys)

    class _CSVLogger(CSVLogger):
        @property
        def experiment(self):
            if self._experiment is None:
                Path(self.root_dir).mkdir(parents=True, exist_ok=True)
                self._experiment = _AppendingWriter(log_dir=self.log_dir)
            return self._experiment

    return _CSVLogger(save_dir=str(out_dir), name="csv", version="")
