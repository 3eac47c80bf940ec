"""The tracked result as an average of the last steps' weights (Polyak averaging; beyond the paper).

Each step draws one frame, and Adam moves the deformation by a step of the full rate toward it, so
the weights of the last step fit that frame and jitter on the others. `WeightAverage` keeps an
exponential moving average of every trainable parameter over the spatial phase and, when training
ends, puts it in place of the last step's weights: what is evaluated, exported and written to the
final checkpoint is the average.

    average(t) = decay * average(t - 1) + (1 - decay) * weights(t)      (a window of about 1 / (1 - decay) steps)

It starts at ``average.start * max_steps`` or at the first step of the spatial phase, whichever is
later: the spectral phase's weights are not averaged into the result. Its window is at most a
quarter of the steps from ``average.start * max_steps`` to the end, so that a short run's average
does not lag behind it (at 500 steps from half the run, 0.98 is within that). ``average.decay=0``
keeps the last step's weights (the paper). Measured in ``experiments/results/rotation_curves_average``
(docs/method.md).

The average is the callback's state, saved in checkpoints, so a resumed run ends with the same
average as an uninterrupted one; loading the final checkpoint again puts the same values in place.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from spectral_tracking.tracking.schedule import SPATIAL
from spectral_tracking.tracking.settings import AverageSettings

__all__ = ["AverageSettings", "WeightAverage"]


class WeightAverage(pl.Callback):
    """Exponential moving average of ``pl_module``'s trainable parameters over the spatial phase,
    from ``start * max_steps`` on; put in place of the weights at the end of training."""

    def __init__(self, settings: AverageSettings, max_steps: int) -> None:
        self.first = int(round(float(settings.start) * int(max_steps)))
        # the window is at most a quarter of the steps averaged, so that a short run's average does not lag
        # behind it (the first weights keep under 2% of it; 500 steps from half the run: 0.984, above 0.98)
        averaged = int(max_steps) - self.first
        self.decay = min(float(settings.decay), 1.0 - 4.0 / averaged) if averaged > 4 else 0.0
        self.average: list[torch.Tensor] | None = None
        self.since: int | None = None  # the step the average started at

    @staticmethod
    def _parameters(pl_module) -> list[torch.Tensor]:
        return [p for p in pl_module.parameters() if p.requires_grad]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.decay <= 0:
            return
        step = int(trainer.global_step) - 1  # the step that just ran
        if step < self.first or pl_module.objective.phase(step) != SPATIAL:
            return
        params = self._parameters(pl_module)
        with torch.no_grad():
            if self.average is None:
                self.average = [p.detach().clone() for p in params]
                self.since = step
                return
            if self.average[0].device != params[0].device:  # restored from a checkpoint onto the CPU
                self.average = [a.to(p.device) for a, p in zip(self.average, params, strict=True)]
            torch._foreach_lerp_(self.average, [p.detach() for p in params], 1.0 - self.decay)  # one call, as torch.optim

    def on_train_end(self, trainer, pl_module) -> None:
        # only at the last step: a fit that Ctrl-C stopped early (session.train) ends here too, and its checkpoint
        # must keep the raw weights beside their Adam moments, or the resumed run would go on from the average
        if self.average is None or int(trainer.global_step) < int(trainer.max_steps):
            return
        with torch.no_grad():
            for avg, p in zip(self.average, self._parameters(pl_module), strict=True):
                p.copy_(avg.to(p.device))

    def state_dict(self) -> dict:
        return {"average": None if self.average is None else [a.cpu() for a in self.average], "since": self.since}

    def load_state_dict(self, state_dict: dict) -> None:
        average = state_dict.get("average")
        self.average = None if average is None else [a.clone() for a in average]
        self.since = state_dict.get("since")
