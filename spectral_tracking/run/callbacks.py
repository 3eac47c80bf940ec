"""Callbacks: they record and log, and hold no part of the objective (that is `TrackingModule` with
`spectral_tracking.tracking.objective`): the optimisation-progression recorder and periodic evaluation."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch


class ProgressionCallback(pl.Callback):
    """Renders one (frame, view) every ``every`` steps: the optimisation progression (paper Fig. 1),
    and keeps the run's step records for ``curves.png`` (`history`).

    Frames are kept (uint8 tensors, loadable with ``torch.load(weights_only=True)``) in the
    checkpoint, so a resumed run produces the same GIF. ``every`` is derived from the number of
    frames wanted (`progression_interval`), so long runs do not grow the checkpoint without bound.

    `history` holds one dict per step: ``step`` and the step's logged ``train/*`` and ``schedule/*``
    values, plus ``progression/psnr`` (PSNR in dB of the progression render against its target) on
    the steps that render. It is kept in the checkpoint too, and is independent of the logger, so
    ``logger=none`` runs get their curves as well.
    """

    RECORDED = ("train/", "schedule/")

    def __init__(self, frame: int, view: int, every: int) -> None:
        self.frame, self.view, self.every = int(frame), int(view), int(every)
        self.images: list[torch.Tensor] = []  # [H, W, 3] uint8 each
        self.history: list[dict[str, float]] = []
        self._psnr: dict[int, float] = {}  # step -> PSNR of the render grabbed at its start
        self._seen: dict[str, float] = {}  # the values callback_metrics held after the previous step

    def _render(self, pl_module) -> torch.Tensor:
        with torch.no_grad():
            out = pl_module.render_views(pl_module.gaussians_at(self.frame), [self.view])
        return (out.rgb[0].clamp(0, 1).cpu() * 255).round().to(torch.uint8)

    def _grab(self, pl_module, step: int) -> None:
        image = self._render(pl_module)
        self.images.append(image)
        target = pl_module.targets.images[self.view, self.frame].float()
        mse = float(((image.float() / 255 - target) ** 2).mean())
        self._psnr[step] = 10 * math.log10(1 / max(mse, 1e-10))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.every > 0 and trainer.global_step % self.every == 0 and len(self.images) <= trainer.global_step // self.every:
            self._grab(pl_module, int(trainer.global_step))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = int(trainer.global_step) - 1  # the step that just ran (global_step counts optimizer steps)
        record: dict[str, float] = {"step": step}
        last, self._seen = self._seen, {}
        for key, value in trainer.callback_metrics.items():
            if key.startswith(self.RECORDED):
                record[key] = self._seen[key] = float(value)
                # callback_metrics keeps a term's last value on steps that do not log it (the spectral
                # term after the switch, ARAP before it starts); a loss term exactly equal to the
                # previous step's is such a leftover and is not recorded.
                if key.startswith("train/") and last.get(key) == record[key] and key != "train/frame":
                    del record[key]
        if step in self._psnr:
            record["progression/psnr"] = self._psnr.pop(step)
        self.history.append(record)

    def state_dict(self) -> dict:
        return {"images": [im.clone() for im in self.images], "history": [dict(r) for r in self.history]}

    def load_state_dict(self, state_dict: dict) -> None:
        self.images = list(state_dict.get("images", []))
        self.history = [dict(r) for r in state_dict.get("history", [])]

    def save_gif(self, path: Path, pl_module, target: np.ndarray | None = None, fps: int = 10) -> Path | None:
        """GIF of the progression, ending with the module as it is now (rendered here, not at the end
        of training, so a run resumed at its last step still shows it); with ``target`` [H, W, 3]
        uint8, each frame is shown beside it."""
        if self.every <= 0:
            return None
        from PIL import Image

        images = [*self.images, self._render(pl_module)]
        frames = [np.concatenate([im.numpy(), target], axis=1) if target is not None else im.numpy() for im in images]
        pil = [Image.fromarray(f) for f in frames]
        path.parent.mkdir(parents=True, exist_ok=True)
        pil[0].save(path, save_all=True, append_images=pil[1:], duration=int(1000 / fps), loop=0)
        return path


def progression_interval(max_steps: int, num_frames: int) -> int:
    """Steps between progression frames so that about ``num_frames`` are recorded (0 = off)."""
    return 0 if num_frames <= 0 else max(1, int(max_steps) // int(num_frames))


class PeriodicEvalCallback(pl.Callback):
    """Evaluates the module every ``every`` steps (`spectral_tracking.evaluation.evaluate`, without
    LPIPS) and logs its numbers as ``eval/*``. truth: (canonical indices, true means [T, M, 3]) or None."""

    def __init__(self, truth, every: int) -> None:
        self.truth, self.every = truth, int(every)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        from spectral_tracking.evaluation import evaluate

        step = int(trainer.global_step)
        if self.every > 0 and step % self.every == 0 and step < trainer.max_steps:
            metrics = evaluate(pl_module, self.truth, lpips_net=None)
            for logger in trainer.loggers:
                logger.log_metrics({f"eval/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))}, step=step)
