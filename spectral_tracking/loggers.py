"""The run's experiment logger (``logger`` config group): csv | tensorboard | wandb | none."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf


def build_logger(cfg: DictConfig, out_dir: Path):
    name = cfg.logger.name
    if name == "none":
        return False
    if name == "csv":
        from pytorch_lightning.loggers import CSVLogger

        return CSVLogger(save_dir=str(out_dir), name="csv", version="")
    if name == "tensorboard":
        from pytorch_lightning.loggers import TensorBoardLogger

        return TensorBoardLogger(save_dir=str(out_dir), name="tensorboard", version="")
    if name == "wandb":
        from pytorch_lightning.loggers import WandbLogger

        run_name = f"{cfg.task_name}-{out_dir.name}"
        return WandbLogger(
            project=cfg.logger.project, entity=cfg.logger.entity, name=run_name, save_dir=str(out_dir),
            offline=bool(cfg.logger.offline), tags=list(cfg.logger.tags), id=None,
            config=OmegaConf.to_container(cfg, resolve=True),
        )
    raise ValueError(f"logger.name: unknown logger {name!r}")


def is_wandb(logger) -> bool:
    return bool(logger) and type(logger).__name__ == "WandbLogger"


def finish_wandb(logger) -> None:
    """Close the wandb run (also on failure), so sweep jobs never share one."""
    if is_wandb(logger):
        import wandb

        if wandb.run is not None:
            wandb.finish()
