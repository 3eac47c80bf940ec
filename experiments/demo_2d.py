"""Paper Fig. 7: a 2D pattern of Gaussians, translated and rotated to zero overlap with its target.

    python -m experiments.demo_2d --out outputs/demos

The pattern (an asymmetric "F" of coloured, anisotropic 2D Gaussians) is moved by a rigid motion
(translation t, rotation phi about its centre) and optimised back to the target from an initial pose
with no pixel overlap, once with pixel MSE and once with annealed spectral moments (``spectral_loss``
on RGB + opacity, ``SpectralSchedule``). Both use the same Adam optimiser. Prints the final mask IoU
of each and writes a strip of frames (top: pixel MSE, bottom: spectral; the target's outline in
white). Splats are cut off at 3 sigma like the 3DGS rasteriser, with a smooth taper.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor

from spectral_tracking.losses.spectral import pixel_coordinates, spectral_loss
from spectral_tracking.tracking.schedule import SpectralSchedule

SIZE = 96
TARGET_POSE = (-0.42, -0.40, 0.0)  # (tx, ty, phi): normalised image coordinates (y down), radians
START_POSE = (0.42, 0.40, 1.0)


def pattern() -> dict[str, Tensor]:
    """The "F": centres [G, 2] (local, normalised units), scales [G, 2], angles [G], colours [G, 3]."""
    centres, scales, angles = [], [], []
    for i in range(5):  # stem, top to bottom
        centres.append((-0.12, -0.24 + 0.12 * i))
        scales.append((0.035, 0.06))
        angles.append(0.0)
    for i in range(3):  # top bar
        centres.append((-0.02 + 0.1 * i, -0.26))
        scales.append((0.055, 0.03))
        angles.append(0.0)
    for i in range(2):  # middle bar
        centres.append((-0.02 + 0.09 * i, -0.02))
        scales.append((0.05, 0.03))
        angles.append(0.0)
    centres.append((0.2, 0.2))  # a tilted foot to break symmetry further
    scales.append((0.06, 0.025))
    angles.append(0.6)
    count = len(centres)
    hue = torch.linspace(0, 1, count + 1)[:-1]
    colours = torch.stack([0.5 + 0.5 * torch.cos(2 * math.pi * (hue + s)) for s in (0.0, 1 / 3, 2 / 3)], dim=-1)
    return {
        "centres": torch.tensor(centres, dtype=torch.float32),
        "scales": torch.tensor(scales, dtype=torch.float32),
        "angles": torch.tensor(angles, dtype=torch.float32),
        "colours": colours.float(),
    }


def render_pattern(pose: Tensor, pat: dict[str, Tensor], size: int = SIZE) -> tuple[Tensor, Tensor]:
    """Differentiable splatting of the pattern under a rigid pose.

    Args:
        pose: [3] (tx, ty, phi); world = R(phi) local + t.
        pat: ``pattern()``.
    Returns:
        rgb [1, H, W, 3] and opacity [1, H, W] (renderer layout), H = W = size.
    """
    x, y = pixel_coordinates(size, size, dtype=pose.dtype, device=pose.device)
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    p = torch.stack([xx, yy], dim=-1).reshape(-1, 2)  # [P, 2]
    c, s = torch.cos(pose[2]), torch.sin(pose[2])
    rot = torch.stack([torch.stack([c, -s]), torch.stack([s, c])])  # [2, 2]
    means = pat["centres"].to(pose.dtype) @ rot.T + pose[:2]  # [G, 2]
    angle = pat["angles"].to(pose.dtype) + pose[2]
    ca, sa = torch.cos(angle), torch.sin(angle)
    d = p[None, :, :] - means[:, None, :]  # [G, P, 2]
    u = (d[..., 0] * ca[:, None] + d[..., 1] * sa[:, None]) / pat["scales"][:, None, 0]  # along the splat axis
    v = (-d[..., 0] * sa[:, None] + d[..., 1] * ca[:, None]) / pat["scales"][:, None, 1]
    m2 = u * u + v * v
    taper = (1.0 - m2 / 9.0).clamp_min(0.0) ** 3  # 3-sigma cut-off, smooth
    g = torch.where(m2 < 9.0, torch.exp(-0.5 * m2) * taper, torch.zeros_like(m2))  # [G, P]
    opacity = 1.0 - torch.prod(1.0 - 0.95 * g, dim=0)  # [P]
    rgb = (g.T @ pat["colours"].to(pose.dtype)) / (g.sum(0)[:, None] + 1e-6) * opacity[:, None]  # [P, 3]
    return rgb.reshape(1, size, size, 3), opacity.reshape(1, size, size)


def mask_iou(a: Tensor, b: Tensor, threshold: float = 0.5) -> float:
    """IoU of two opacity maps [..., H, W] thresholded at ``threshold``."""
    ma, mb = a > threshold, b > threshold
    union = (ma | mb).sum().item()
    return (ma & mb).sum().item() / union if union else 1.0


def optimise(loss_name: str, steps: int, lr: float, num_bands: int, warmup: float,
             frames: list[int]) -> dict:
    """Adam on the pose with "mse" or "spectral" supervision. Returns poses, IoUs and frames."""
    pat = pattern()
    gt_rgb, gt_mask = render_pattern(torch.tensor(TARGET_POSE), pat)
    pose = torch.tensor(START_POSE, requires_grad=True)
    opt = torch.optim.Adam([pose], lr=lr)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.1 ** (1.0 / steps))
    schedule = SpectralSchedule(max_steps=steps, num_bands=num_bands, warmup=warmup, spectral_end=int(0.8 * steps))
    out = {"frames": {}, "iou": [], "gt_rgb": gt_rgb[0], "gt_mask": gt_mask[0], "schedule": schedule}
    for step in range(steps + 1):
        rgb, mask = render_pattern(pose, pat)
        out["iou"].append(mask_iou(mask.detach(), gt_mask))
        if step in frames:
            out["frames"][step] = rgb[0].detach().clone()
        if step == steps:
            break
        if loss_name == "mse":
            loss = ((rgb - gt_rgb) ** 2).mean() + ((mask - gt_mask) ** 2).mean()
        else:
            # Spectral throughout; after spectral_end all K bands stay on (alpha = K).
            loss = spectral_loss(rgb, gt_rgb, mask, gt_mask, schedule.band_weights(step), lambda_mask=0.5)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    out["pose"] = pose.detach()
    return out


def run_2d(steps: int = 300, lr: float = 0.02, num_bands: int = 6, warmup: float = 0.2) -> dict:
    frames = sorted({0, steps // 8, steps // 4, steps // 2, steps})
    return {name: optimise(name, steps, lr, num_bands, warmup, frames) for name in ("mse", "spectral")}


def plot_2d(results: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = {"mse": "Pixel MSE", "spectral": "Spectral"}
    steps = sorted(results["mse"]["frames"])
    fig, axes = plt.subplots(2, len(steps) + 1, figsize=(2.1 * (len(steps) + 1), 5.0), squeeze=False)
    for row, key in enumerate(("mse", "spectral")):
        res = results[key]
        outline = res["gt_mask"].numpy()
        for col, step in enumerate(steps):
            ax = axes[row, col]
            ax.imshow(res["frames"][step].clamp(0, 1).numpy())
            ax.contour(outline, levels=[0.5], colors="white", linewidths=0.7)
            ax.set_title(f"{names[key]} step {step}\nIoU {res['iou'][step]:.2f}", fontsize=8)
            ax.set_axis_off()
        axes[row, -1].imshow(res["gt_rgb"].clamp(0, 1).numpy())
        axes[row, -1].set_title("target", fontsize=8)
        axes[row, -1].set_axis_off()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def summary_lines(results: dict) -> list[str]:
    mse, spec = results["mse"]["iou"], results["spectral"]["iou"]
    return [
        f"demo_2d pixel MSE  initial IoU = {mse[0]:.3f}  final IoU = {mse[-1]:.3f}  "
        f"bar < 0.1: {'PASS' if mse[-1] < 0.1 else 'FAIL'}",
        f"demo_2d spectral   initial IoU = {spec[0]:.3f}  final IoU = {spec[-1]:.3f}  "
        f"bar > 0.9: {'PASS' if spec[-1] > 0.9 else 'FAIL'}",
    ]


def main(argv=None) -> None:
    from experiments.harness import demo_main

    demo_main(__doc__, "demo_2d", 300, run_2d, plot_2d, summary_lines, argv)


if __name__ == "__main__":
    main()
