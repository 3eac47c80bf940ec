"""Evaluation of a tracking module: image metrics on training and novel views, 3D error where the
truth is known. Called at the end of a run and by `PeriodicEvalCallback` during it."""

from __future__ import annotations

import torch
from torch import Tensor

from spectral_tracking.data.sequence import STANDARD_RADIUS
from spectral_tracking.metrics import gaussian_3d_error, gsgd_view_metrics, image_metrics, mask_iou

PROTOCOLS = ("ours", "gsgd")


def evaluate(module, truth: tuple[Tensor, Tensor] | None = None, lpips_net: str | None = "alex",
             per_view: bool = False, protocol: str = "ours") -> dict:
    """PSNR / SSIM (/ LPIPS) per image over every frame of the training and the novel views
    (``train_*``, ``novel_*``; ``*_mask_iou`` and ``*_last_mask_iou``, the last frame's), and
    ``3d_*`` (`gaussian_3d_error`; ``3d_last_error``: the last frame's) where ``truth`` = (canonical
    indices [M], true means [T, M, 3]) is given. With ``per_view``, also ``view_<name>_psnr`` and
    ``view_<name>_ssim`` for every view (e.g. ``view_90.0_psnr``: the side view).

    protocol: "ours" (per image, data range 1, mean over frames x views) or "gsgd" (the image
    metrics of the GSGD code the paper builds on, `gsgd_view_metrics`, averaged over views; LPIPS
    AlexNet there whatever ``lpips_net``, skipped when ``lpips_net`` is None).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"eval.protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    tg = module.targets
    out: dict = {}
    for split, views in (("train", tg.train_views), ("novel", tg.eval_views)):
        if not views:
            continue
        rgb, alpha = module.render_all(views)
        pred = rgb.reshape(-1, *rgb.shape[2:])
        gt = tg.images[views].reshape(-1, *tg.images.shape[2:])
        if protocol == "gsgd":
            per = [gsgd_view_metrics(rgb[i], tg.images[v], with_lpips=lpips_net is not None) for i, v in enumerate(views)]
            m = {k: sum(p[k] for p in per) / len(per) for k in per[0]}
        else:
            m = image_metrics(pred.clamp(0, 1), gt, lpips_net=lpips_net)
        out.update({f"{split}_{k}": float(v) for k, v in m.items() if v is not None})
        out[f"{split}_mask_iou"] = mask_iou(alpha, tg.masks[views])
        out[f"{split}_last_mask_iou"] = mask_iou(alpha[:, -1], tg.masks[views, -1])  # where a failure shows first
        if per_view:
            for i, v in enumerate(views):
                mv = image_metrics(rgb[i].clamp(0, 1), tg.images[v], lpips_net=None)
                out.update({f"view_{tg.view_names[v]}_{k}": float(x) for k, x in mv.items() if x is not None})
    if truth is not None:
        index, gt_means = truth
        tracked = module.tracked_means()[:, index]
        e = gaussian_3d_error(tracked, gt_means, radius=STANDARD_RADIUS)  # every dataset is normalised to it: errors in asset radii
        out.update({f"3d_{k}": float(v) for k, v in e.items()})
        out["3d_last_error"] = gaussian_3d_error(tracked[-1:], gt_means[-1:], radius=STANDARD_RADIUS)["mean_error"]
    return out


@torch.no_grad()
def final_frame(module) -> tuple[Tensor, Tensor]:
    """(result, target) [H, W, 3] of the last frame in the first training view."""
    t = module.targets.num_frames - 1
    v = module.targets.train_views[0]
    result = module.render_views(module.gaussians_at(t), [v]).rgb[0].cpu().clamp(0, 1)
    return result, module.targets.images[v, t]
