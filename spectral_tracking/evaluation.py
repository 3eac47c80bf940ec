"""Evaluation of a tracking module: image metrics on training and novel views, 3D error where the
truth is known. Called at the end of a run and by `PeriodicEvalCallback` during it."""

from __future__ import annotations

import torch
from torch import Tensor

from spectral_tracking.data.sequence import STANDARD_RADIUS
from spectral_tracking.metrics import gaussian_3d_error, gsgd_view_metrics, image_metric_values, mask_iou_values, pose_errors

PROTOCOLS = ("ours", "gsgd")


def evaluate(module, truth: tuple[Tensor, Tensor] | None = None, lpips_net: str | None = "alex",
             per_view: bool = False, protocol: str = "ours", frames: dict | None = None) -> dict:
    """PSNR / SSIM (/ LPIPS) per image over every frame of the training and the novel views
    (``train_*``, ``novel_*``; ``*_mask_iou`` and ``*_last_mask_iou``, the last frame's), and
    ``3d_*`` (`gaussian_3d_error`; ``3d_last_error``: the last frame's; ``3d_rotation_error`` and
    ``3d_depth_error``: `pose_errors`' means, the body's turn in degrees and its depth along the first
    training view in radii) where ``truth`` = (canonical indices [M], true means [T, M, 3]) is given.
    With ``per_view``, also ``view_<name>_psnr`` and ``view_<name>_ssim`` for every view (e.g.
    ``view_90.0_psnr``: the side view).

    ``frames``, where given, is filled with the same values frame by frame (lists of T, each the mean
    over the split's views; ``3d_error``, ``3d_rotation`` and ``3d_depth``, signed, where ``truth`` is
    given): ``metrics.json``'s ``"frames"``, where the frame a run lost shows, and how two runs of one
    case differ.

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
        if protocol == "gsgd":
            per = [gsgd_view_metrics(module.render_all([v])[0][0], tg.images[v], with_lpips=lpips_net is not None)
                   for v in views]
            m = {k: sum(p[k] for p in per) / len(per) for k in per[0]}
            out.update({f"{split}_{k}": float(v) for k, v in m.items() if v is not None})
        # [T, V] each; the gsgd protocol reports its own image metrics, so there only the IoU (and per_view's)
        values = _frame_by_frame(module, views, lpips_net if protocol == "ours" else None,
                                 images=protocol == "ours" or per_view)
        if protocol == "ours":
            out.update({f"{split}_{k}": float(v.mean()) for k, v in values.items() if k != "iou"})
        if frames is not None:
            names = values if protocol == "ours" else {"iou": values["iou"]}
            frames.update({f"{split}_{'mask_iou' if k == 'iou' else k}": [round(float(x), 5) for x in v.mean(1)]
                           for k, v in names.items()})
        out[f"{split}_mask_iou"] = float(values["iou"].mean())
        out[f"{split}_last_mask_iou"] = float(values["iou"][-1].mean())  # where a failure shows first
        if per_view:
            for i, v in enumerate(views):
                out.update({f"view_{tg.view_names[v]}_{k}": float(values[k][:, i].mean()) for k in ("psnr", "ssim")})
    if truth is not None:
        index, gt_means = truth
        tracked = module.tracked_means()[:, index]
        e = gaussian_3d_error(tracked, gt_means, radius=STANDARD_RADIUS)  # every dataset is normalised to it: errors in asset radii
        out.update({f"3d_{k}": float(v) for k, v in e.items()})
        per_frame = [gaussian_3d_error(tracked[t:t + 1], gt_means[t:t + 1], radius=STANDARD_RADIUS)["mean_error"]
                     for t in range(tracked.shape[0])]
        out["3d_last_error"] = per_frame[-1]
        # where the error comes from: the body's turn, and its depth along the first training view's axis
        pose = pose_errors(tracked, gt_means, tg.cameras.viewmats[tg.train_views[0], 2, :3], radius=STANDARD_RADIUS)
        out["3d_rotation_error"] = sum(pose["rotation"]) / len(pose["rotation"])
        out["3d_depth_error"] = sum(abs(z) for z in pose["depth"]) / len(pose["depth"])
        if frames is not None:
            frames["3d_error"] = [round(e, 5) for e in per_frame]
            frames["3d_rotation"] = [round(e, 3) for e in pose["rotation"]]
            frames["3d_depth"] = [round(e, 5) for e in pose["depth"]]
    return out


@torch.no_grad()
def _frame_by_frame(module, views: list[int], lpips_net: str | None, images: bool = True) -> dict[str, Tensor]:
    """The mask IoU and (``images``) PSNR, SSIM, LPIPS (where ``lpips_net`` and its weights) of every
    frame in ``views``, each [T, V]: one frame rendered and scored at a time, so the memory held is
    one frame's, whatever the video's length."""
    tg = module.targets
    rows: dict[str, list[Tensor]] = {}
    for t in range(tg.num_frames):
        rendered = module.render_views(module.gaussians_at(t), views)
        rgb, alpha = rendered.rgb.cpu(), rendered.alpha.cpu()
        values = image_metric_values(rgb, tg.images[views, t], lpips_net=lpips_net) if images else {}
        values["iou"] = mask_iou_values(alpha, tg.masks[views, t])
        for name, v in values.items():
            rows.setdefault(name, []).append(v)
    return {name: torch.stack(v) for name, v in rows.items()}


@torch.no_grad()
def final_frame(module) -> tuple[Tensor, Tensor]:
    """(result, target) [H, W, 3] of the last frame in the first training view."""
    t = module.targets.num_frames - 1
    v = module.targets.train_views[0]
    result = module.render_views(module.gaussians_at(t), [v]).rgb[0].cpu().clamp(0, 1)
    return result, module.targets.images[v, t]
