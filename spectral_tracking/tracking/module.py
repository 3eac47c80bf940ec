"""The tracking LightningModule: deform -> render -> image loss (spectral or spatial) + ARAP.

One optimisation step samples one (frame, view) pair, renders the deformed canonical asset in that
view and compares it with the target. The objective of the step (which image loss, its band
weights, ARAP's weight) is `Objective.at(step)` (tracking/objective.py), which also owns when the
spectral phase ends; callbacks only log and record.

Sampling is a pure function of (seed, step), so a run resumed from a checkpoint sees exactly the
same (frame, view) sequence as an uninterrupted one.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from spectral_tracking.cameras import Cameras
from spectral_tracking.gaussians import Gaussians
from spectral_tracking.losses.arap import ARAP, sample_frames
from spectral_tracking.losses.recentre import recentre_loss
from spectral_tracking.losses.scale import ScalePrior
from spectral_tracking.render import render
from spectral_tracking.tracking.objective import Objective
from spectral_tracking.tracking.schedule import SPECTRAL, band_weights
from spectral_tracking.tracking.settings import LossSettings
from spectral_tracking.tracking.targets import Targets

__all__ = ["LossSettings", "Targets", "TrackingModule"]


def lr_factor(step: int, final_ratio: float, decay_steps: int) -> float:
    """Learning-rate multiplier at ``step``: exponential decay to ``final_ratio`` over the first
    ``decay_steps`` steps, then held. The run decays over ``lr_decay * max_steps`` steps: SC4D / GSGD
    decay over position_lr_max_steps = 3,500 of 10k steps (lr_decay 0.35); 1.0, the default, decays
    over the whole run."""
    return final_ratio ** (min(step, decay_steps) / max(decay_steps, 1))


class TrackingModule(pl.LightningModule):
    """deformation: a `Deformation` (or one wrapped by `WithAppearance`); lr: learning rate per
    parameter group of the deformation (see ``deformation.param_groups``), decayed exponentially
    to ``lr_final_ratio`` times its value over ``max_steps``."""

    def __init__(
        self,
        deformation: nn.Module,
        targets: Targets,
        loss: LossSettings,
        max_steps: int,
        lr: dict[str, float],
        lr_final_ratio: float,
        background: Tensor,  # [3]
        seed: int = 0,
        backend: str = "auto",
        progressive_frames: float = 0.2,
        arap_frames: int = 2,
        arap_sampling: str = "uniform",
        lr_decay: float = 1.0,
        rigid_first: float = 0.0,
        pos_anneal: float = 0.0,
        adam_eps: float = 1e-15,
    ) -> None:
        super().__init__()
        self.deformation = deformation
        self.targets = targets
        self.loss_cfg = loss
        self.objective = Objective(loss, max_steps)
        self.max_steps = int(max_steps)
        self.lr = {k: float(v) for k, v in lr.items()}
        self.lr_final_ratio = float(lr_final_ratio)
        self.adam_eps = float(adam_eps)
        self.register_buffer("background", background.float().reshape(3), persistent=False)
        self.seed = int(seed)
        self.backend = backend
        self.progressive_frames = float(progressive_frames)
        self.arap_frames = int(arap_frames)
        if arap_sampling not in ("uniform", "rendered"):
            raise ValueError(f"arap_sampling must be uniform or rendered, got {arap_sampling!r}")
        self.arap_sampling = arap_sampling
        if not 0 < lr_decay <= 1:
            raise ValueError(f"lr_decay must be in (0, 1] (a fraction of max_steps), got {lr_decay}")
        self.lr_decay_steps = max(1, round(float(lr_decay) * self.max_steps))
        self.rigid_until = round(float(rigid_first) * self.max_steps)
        if self.rigid_until > 0 and "rigid" not in {g["name"] for g in deformation.param_groups(self.lr)}:
            raise ValueError(f"deform.rigid_first={rigid_first}: {type(deformation).__name__} has no rigid part to learn "
                             f"first; use deform=rigid_mlp or deform.rigid_first=0")
        self.pos_anneal_steps = round(float(pos_anneal) * self.max_steps)
        if self.pos_anneal_steps > 0 and not hasattr(self.motion, "set_position_window"):
            raise ValueError(f"deform.pos_anneal={pos_anneal}: {type(self.motion).__name__} has no TimeNet whose position "
                             f"encoding could open coarse to fine; use deform=mlp (or rigid_mlp) or deform.pos_anneal=0")
        self.arap = ARAP(deformation.canonical_control_points.detach())
        self.scale_prior = ScalePrior(deformation.canonical_control_points.detach())
        self._cameras: dict[tuple, Cameras] = {}

    # --- sampling --------------------------------------------------------------------------------
    def active_frames(self, step: int) -> int:
        """GSGD-style progressive schedule: frames join one by one over the first
        `progressive_frames * max_steps` steps (frame 0 first), then all are active."""
        T = self.targets.num_frames
        ramp = self.progressive_frames * self.max_steps
        if ramp <= 0:
            return T
        return min(T, 1 + int(step / ramp * (T - 1)))

    def sample(self, step: int) -> tuple[int, int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        frame = int(torch.randint(self.active_frames(step), (1,), generator=g))
        view = self.targets.train_views[int(torch.randint(len(self.targets.train_views), (1,), generator=g))]
        return frame, view

    # --- model -----------------------------------------------------------------------------------
    @property
    def motion(self) -> nn.Module:
        """The deformation itself: ``deformation``, or the one that `WithAppearance` wraps."""
        return getattr(self.deformation, "motion", self.deformation)

    def open_position_frequencies(self, step: int) -> None:
        """BARF's coarse-to-fine on the TimeNet's position encoding (``deform.pos_anneal``, beyond the
        paper): frequency k of F gets weight w_k(alpha) of eq. 7 (the band window of the spectral
        schedule), alpha = F * step / (pos_anneal * max_steps), so the encoding opens from the raw
        position at step 0 to all F frequencies; from then on, and with pos_anneal 0, all are open."""
        if self.pos_anneal_steps <= 0:
            return
        F = self.motion.position_frequencies
        opened = step >= self.pos_anneal_steps or F == 0
        self.motion.set_position_window(None if opened else band_weights(F * step / self.pos_anneal_steps, F))

    def gaussians_at(self, frame: int) -> Gaussians:
        return self.deformation(frame)

    def view_cameras(self, views: list[int]):
        key = (tuple(views), self.device)
        cameras = self._cameras.get(key)
        if cameras is None:  # built (and validated) once per view set and device, not every step
            cameras = self._cameras[key] = self.targets.cameras[list(views)].to(self.device)
        return cameras

    def render_views(self, gaussians: Gaussians, views: list[int]):
        return render(gaussians, self.view_cameras(views), background=self.background, backend=self.backend)

    # --- the step --------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        step = int(self.global_step)
        loss, terms, frame, objective = self.step_loss(step)
        if self.logs_step(step):
            self.log_step(loss, terms, frame, objective)
        return loss

    def step_loss(self, step: int) -> tuple[Tensor, dict[str, Tensor], int, object]:
        """The loss of optimisation step ``step`` (the module's state is that after ``step`` steps):
        (loss, its terms, the sampled frame, the step's `StepObjective`). The deformation is
        evaluated once for the rendered frame and ARAP's frames together (one TimeNet pass)."""
        objective = self.objective.at(step)
        self.open_position_frequencies(step)
        for f in range(self.active_frames(step - 1) if step > 0 else 1, self.active_frames(step)):
            self.deformation.copy_frame(f - 1, f)  # a joining frame starts where the previous one is
        frame, view = self.sample(step)
        # the frames whose control points ARAP and the scale term see
        control_frames = self.control_frames(step, frame) if objective.lambda_arap > 0 or objective.lambda_scale > 0 else []
        gaussians, control_points = self.deformation.frame_and_control_points(frame, control_frames)
        out = self.render_views(gaussians, [view])
        gt_rgb = self.targets.images[view, frame][None].to(self.device)
        gt_mask = self.targets.masks[view, frame][None].to(self.device)
        objective = self.objective.rescues(objective, out.alpha, gt_mask)  # a frame that lost its target
        terms = objective.image_loss(out.rgb, out.alpha, gt_rgb, gt_mask, objective.band_weights)
        if objective.phase == SPECTRAL:
            self.objective.observe(step, out.alpha, gt_mask)
        loss = objective.lambda_image * terms["image"]
        if objective.recentre > 0:  # the rescue of a render that shows nothing: back towards the target's centroid
            terms["recentre"] = recentre_loss(gaussians.means, self.view_cameras([view]), gt_mask)
            loss = loss + objective.lambda_image * objective.recentre * terms["recentre"]
        if objective.lambda_arap > 0:
            terms["arap"] = self.arap(control_points)  # mean over the frames
            loss = loss + objective.lambda_arap * terms["arap"]
        if objective.lambda_scale > 0:
            terms["scale"] = self.scale_prior(control_points)
            loss = loss + objective.lambda_scale * terms["scale"]
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"step {step}: the loss is not finite ({float(loss)}; terms "
                f"{ {k: float(v) for k, v in terms.items()} }); lower deform.lr_init or check the data"
            )
        return loss, terms, frame, objective

    def control_frames(self, step: int, frame: int) -> list[int]:
        """The frames whose control points ARAP (and the scale term) sees at step ``step`` whose rendered frame
        is ``frame``: ``arap_frames`` drawn uniformly (``arap_sampling="uniform"``), or the rendered frame and
        ``arap_frames - 1`` others (``"rendered"``: one TimeNet pass over ``arap_frames`` frames, not 1 + that)."""
        g = torch.Generator().manual_seed(self.seed * 7_919 + step)
        include = frame if self.arap_sampling == "rendered" else None
        return sample_frames(self.targets.num_frames, self.arap_frames, generator=g, include=include)

    def logs_step(self, step: int) -> bool:
        """Whether step ``step`` logs: the steps whose values the trainer writes to its loggers
        (every ``log_every_n_steps``, and the last). Each ``self.log`` walks Lightning's result
        collections (the largest part of the framework's time per step in a profile of the default
        run), so values that would not be written are not logged. `ProgressionCallback` then
        records the loss terms on these steps only (curves.png)."""
        trainer = self._trainer
        if trainer is None:
            return True
        every = max(1, int(trainer.log_every_n_steps))
        return (step + 1) % every == 0 or step + 1 >= self.max_steps

    def log_step(self, loss: Tensor, terms: dict[str, Tensor], frame: int, objective) -> None:
        for name, value in terms.items():
            self.log(f"train/{name}", value.detach(), on_step=True)
        self.log("train/loss", loss.detach(), on_step=True, prog_bar=True)
        self.log("train/frame", float(frame), on_step=True)
        spectral = objective.phase == SPECTRAL
        self.log("schedule/alpha", float(objective.alpha), on_step=True)
        self.log("schedule/active_bands", float((objective.band_weights > 0).sum()) if spectral else 0.0, on_step=True)
        self.log("schedule/spatial_phase", float(not spectral), on_step=True)
        self.log("schedule/spectral_end", float(self.objective.spectral_end), on_step=True)

    def configure_optimizers(self):
        groups = self.deformation.param_groups(self.lr)
        # fused: one kernel for all parameters, 3x faster than the per-tensor loop on the CPU
        # (0.3 vs 1.0 ms a step for the TimeNet); it differs from it by float rounding only.
        opt = torch.optim.Adam(groups, eps=self.adam_eps, fused=True)
        decay = lambda s: lr_factor(s, self.lr_final_ratio, self.lr_decay_steps)  # noqa: E731
        # rigid first: until rigid_until only the whole asset's rigid part ("rigid") learns, so a size
        # mismatch in one view can only be met by moving in depth, not by scaling the control points
        held = lambda s: 0.0 if s < self.rigid_until else decay(s)  # noqa: E731
        sched = torch.optim.lr_scheduler.LambdaLR(opt, [decay if g["name"] == "rigid" else held for g in groups])
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # --- evaluation ------------------------------------------------------------------------------
    @torch.no_grad()
    def render_all(self, views: list[int]) -> tuple[Tensor, Tensor]:
        """Render every frame in ``views``: rgb [V, T, H, W, 3], alpha [V, T, H, W] (on CPU)."""
        rgbs, alphas = [], []
        for t in range(self.targets.num_frames):
            out = self.render_views(self.gaussians_at(t), views)
            rgbs.append(out.rgb.cpu())
            alphas.append(out.alpha.cpu())
        return torch.stack(rgbs, 1), torch.stack(alphas, 1)

    @torch.no_grad()
    def tracked_means(self) -> Tensor:
        """[T, N, 3] tracked Gaussian means of every frame."""
        return torch.stack([self.gaussians_at(t).means.cpu() for t in range(self.targets.num_frames)])

    def train_dataloader(self):
        # Targets live in the module; the loader only paces the steps.
        return torch.utils.data.DataLoader(_Steps(self.max_steps), batch_size=None)


class _Steps(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i

