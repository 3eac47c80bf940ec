"""The tracking LightningModule: deform -> render -> image loss (spectral or spatial) + ARAP.

One optimisation step samples one (frame, view) pair, renders the deformed canonical asset in that
view and compares it with the target. Which image loss is active, and with which band weights, is
decided by `LossScheduleCallback` (spectral_tracking/callbacks.py) from the pure functions in
`spectral_tracking/schedule.py`; the module refuses to train without it.

Sampling is a pure function of (seed, step), so a run resumed from a checkpoint sees exactly the
same (frame, view) sequence as an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from spectral_tracking.cameras import Cameras
from spectral_tracking.gaussians import Gaussians
from spectral_tracking.losses.arap import ARAP
from spectral_tracking.losses.photometric import pixel_loss
from spectral_tracking.losses.spectral import spectral_loss
from spectral_tracking.render import render


@dataclass
class LossSettings:
    image: str = "spectral"  # spectral | pixel: the image loss before add_pixel_loss
    spatial: str = "pixel"  # pixel | lpips: the image loss after add_pixel_loss (and throughout for image=pixel)
    num_bands: int = 6
    warmup: float = 0.2
    expansion: str = "log"
    add_pixel_loss: int = 300
    norm: str = "l1"
    lambda_image: float = 5000.0
    lambda_spec_mask: float = 0.5
    lambda_bce: float = 0.3
    lambda_late_lpips: float = 1.0
    lpips_net: str = "vgg"  # backbone of the LPIPS loss (spatial=lpips): alex | vgg
    lambda_arap: float = 1.0
    arap_start_iter: int = 50

    def __post_init__(self) -> None:
        if self.image not in ("spectral", "pixel"):
            raise ValueError(f"loss.image: expected 'spectral' or 'pixel', got {self.image!r}")
        if self.spatial not in ("pixel", "lpips"):
            raise ValueError(f"loss.spatial: expected 'pixel' or 'lpips', got {self.spatial!r}")
        if self.lpips_net not in ("alex", "vgg"):
            raise ValueError(f"loss.lpips_net: expected 'alex' or 'vgg', got {self.lpips_net!r}")

    @property
    def switch_step(self) -> int:
        """Step at which the spatial phase starts (0 for the Pixel baseline)."""
        return 0 if self.image == "pixel" else int(self.add_pixel_loss)


@dataclass
class Targets:
    """Supervision for the tracker: every view of every frame."""

    cameras: Cameras  # V cameras
    images: Tensor  # [V, T, H, W, 3] in [0, 1], composited over the run's background
    masks: Tensor  # [V, T, H, W] in [0, 1]
    train_views: list[int]
    eval_views: list[int]  # novel views (never used for training)
    view_names: list[str]

    @property
    def num_frames(self) -> int:
        return self.images.shape[1]


class TrackingModule(pl.LightningModule):
    def __init__(
        self,
        canonical: Gaussians,
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
        finetune_appearance: bool = False,
        lpips_net: str = "alex",
    ) -> None:
        super().__init__()
        self.canonical = canonical
        self.deformation = deformation
        self.targets = targets
        self.loss_cfg = loss
        self.max_steps = int(max_steps)
        self.lr = {k: float(v) for k, v in lr.items()}
        self.lr_final_ratio = float(lr_final_ratio)
        self.register_buffer("background", background.float().reshape(3), persistent=False)
        self.seed = int(seed)
        self.backend = backend
        self.progressive_frames = float(progressive_frames)
        self.arap_frames = int(arap_frames)
        self.arap = ARAP(deformation.canonical_control_points.detach())
        self.lpips_net = lpips_net
        self._lpips: list[nn.Module] = []  # a list, so the frozen LPIPS net stays out of checkpoints
        self.finetune_appearance = finetune_appearance
        if finetune_appearance:
            self.appearance_offset = nn.Parameter(torch.zeros_like(canonical.sh))
        # Set every step by LossScheduleCallback.
        self.band_weights: Tensor | None = None
        self.phase: str | None = None

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
    def gaussians_at(self, frame: int) -> Gaussians:
        g = self.deformation(frame)
        if self.finetune_appearance:
            g = Gaussians(g.means, g.quats, g.log_scales, g.opacity_logits, g.sh + self.appearance_offset)
        return g

    def render_views(self, gaussians: Gaussians, views: list[int]):
        return render(gaussians, self.targets.cameras[views].to(self.device), background=self.background, backend=self.backend)

    def lpips_model(self) -> nn.Module:
        if not self._lpips:
            from spectral_tracking.losses.lpips import load_lpips

            self._lpips.append(load_lpips(self.lpips_net).to(self.device))
        return self._lpips[0]

    # --- losses ----------------------------------------------------------------------------------
    def image_loss(self, out, gt_rgb: Tensor, gt_mask: Tensor) -> dict[str, Tensor]:
        cfg = self.loss_cfg
        if self.phase == "spectral":
            value = spectral_loss(
                out.rgb, gt_rgb, out.alpha, gt_mask, self.band_weights,  # CPU weights: no device sync
                lambda_mask=cfg.lambda_spec_mask, norm=cfg.norm,
            )
            return {"spectral": value, "image": value}
        if cfg.spatial == "lpips":
            value = cfg.lambda_late_lpips * self.lpips_model()(
                out.rgb.permute(0, 3, 1, 2), gt_rgb.permute(0, 3, 1, 2)
            ).mean()
            return {"lpips": value, "image": value}
        terms = pixel_loss(out.rgb, gt_rgb, out.alpha, gt_mask, lambda_bce=cfg.lambda_bce)
        return {**terms, "image": terms["total"]}

    def training_step(self, batch, batch_idx):
        if self.phase is None or self.band_weights is None:
            raise RuntimeError(
                "TrackingModule: no loss schedule was applied this step; add "
                "spectral_tracking.callbacks.LossScheduleCallback to the Trainer's callbacks"
            )
        step = int(self.global_step)
        if step > 0 and hasattr(self.deformation, "copy_frame"):
            # Per-frame parameterisations: a frame joining the progressive schedule starts where the
            # previous frame is (GSGD-style warm start), not at the canonical pose.
            for f in range(self.active_frames(step - 1), self.active_frames(step)):
                self.deformation.copy_frame(f - 1, f)
        frame, view = self.sample(step)
        out = self.render_views(self.gaussians_at(frame), [view])
        gt_rgb = self.targets.images[view, frame][None].to(self.device)
        gt_mask = self.targets.masks[view, frame][None].to(self.device)
        terms = self.image_loss(out, gt_rgb, gt_mask)
        loss = self.loss_cfg.lambda_image * terms["image"]
        if self.loss_cfg.lambda_arap > 0 and step >= self.loss_cfg.arap_start_iter:
            g = torch.Generator().manual_seed(self.seed * 7_919 + step)
            frames = torch.randint(self.targets.num_frames, (self.arap_frames,), generator=g).tolist()
            points = torch.stack([self.deformation.control_point_positions(f) for f in frames])
            arap = self.arap(points)
            loss = loss + self.loss_cfg.lambda_arap * arap
            self.log("train/arap", arap.detach(), on_step=True, prog_bar=False)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"step {step}: the loss is not finite ({float(loss)}; terms "
                f"{ {k: float(v) for k, v in terms.items()} }); lower deform.lr_init or check the data"
            )
        for name, value in terms.items():
            self.log(f"train/{name}", value.detach(), on_step=True)
        self.log("train/loss", loss.detach(), on_step=True, prog_bar=True)
        self.log("train/frame", float(frame), on_step=True)
        return loss

    def configure_optimizers(self):
        groups = self.deformation.param_groups(self.lr)
        if self.finetune_appearance:
            groups.append({"params": [self.appearance_offset], "lr": 0.0025, "name": "appearance"})
        opt = torch.optim.Adam(groups, eps=1e-15)
        ratio = self.lr_final_ratio
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: ratio ** (min(s, self.max_steps) / max(self.max_steps, 1))
        )
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

