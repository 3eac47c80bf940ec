"""Paper Fig. 2: aligning a 1D pulse from Theta_0 = 6 pulse widths, three objectives.

    python -m experiments.demo_1d --out outputs/demos

Columns: pixel L2 (stranded: no overlap, no gradient), a static high-frequency moment k = 5 (phase
wrapping, ends in a false minimum) and annealed spectral moments (converges). The figure shows, per
column, the pulses and the loss landscape over Theta with the optimisation trajectory; the annealed
column is shown at several steps of the schedule, as in the paper.

The pulse is a Gaussian of width sigma cut off at 3 sigma like the 3DGS rasteriser's culling, with a
smooth (C2) taper so that sampling does not add spurious gradients: when the pulses do not overlap
the pixel-loss gradient is zero up to rounding. Theta is the offset from the target in pulse
widths. Everything is float64; all three runs use the same Adam optimiser and learning rate.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from spectral_tracking.losses.spectral import frequency_grid, moment_distance, pixel_coordinates, spectral_moments
from spectral_tracking.tracking.schedule import SpectralSchedule

WIDTH = 512  # pixels of the 1D "image" [1, W]
SIGMA = 0.08  # pulse width in normalised units (about 20 pixels)
TARGET = -0.24  # target centre; the pulse starts at TARGET + THETA0 * SIGMA
THETA0 = 6.0
STATIC_K = 5


def pulse(centres: Tensor, width: int = WIDTH, sigma: float = SIGMA) -> Tensor:
    """Truncated, tapered Gaussian pulses.

    Args:
        centres: [P] pulse centres in normalised coordinates (x in [-1, 1]).
    Returns:
        [P, 1, W] images (channels-first [..., H=1, W]) in [0, 1].
    """
    x, _ = pixel_coordinates(1, width, dtype=centres.dtype, device=centres.device)
    m2 = ((x[None, :] - centres[:, None]) / sigma) ** 2  # [P, W]
    inside = m2 < 9.0
    taper = (1.0 - m2 / 9.0).clamp_min(0.0) ** 3
    values = torch.where(inside, torch.exp(-0.5 * m2) * taper, torch.zeros_like(m2))
    return values[:, None, :]


def l2_loss(pred: Tensor, gt: Tensor) -> Tensor:
    """Pixel L2 per pulse: pred [P, 1, W], gt [1, 1, W] -> [P]."""
    return ((pred - gt) ** 2).mean(dim=(-1, -2))


def moment_losses(pred: Tensor, gt: Tensor, freqs: Tensor, weights: Tensor) -> Tensor:
    """Weighted (smoothed) l1 moment distance per pulse, as ``moment_loss`` but kept per pulse.

    Args:
        pred: [P, 1, W]; gt: [1, 1, W]; freqs: [F, 2]; weights: [F].
    Returns:
        [P]: sum_f weights_f |M_f(pred - gt)| / W.
    """
    dm = spectral_moments(pred - gt, freqs) / pred.shape[-1]  # [P, F] (images [P, H=1, W])
    return (moment_distance(dm, "l1") * weights).sum(-1)


def static_weights(k: int = STATIC_K) -> tuple[Tensor, Tensor]:
    """The single frequency kx = k (its mirror -k has the same |dM|)."""
    return torch.tensor([[k, 0]]), torch.ones(1, dtype=torch.float64)


def annealed_weights(schedule: SpectralSchedule, step: float) -> tuple[Tensor, Tensor]:
    """1D bands 0..K-1 with eq. 7 weights, each band averaged over its frequencies."""
    freqs, band = frequency_grid(schedule.num_bands, ndim=1)
    w = schedule.band_weights(step).double()
    size = torch.bincount(band, minlength=schedule.num_bands).double()
    return freqs, w[band] / size[band]


def optimise(loss_fn, steps: int, lr: float, theta0: float = THETA0) -> tuple[list[float], list[float]]:
    """Adam on the pulse centre; loss_fn(step, centres [P]) -> [P]. Returns (Theta_t, loss_t) per step."""
    centre = torch.tensor([TARGET + theta0 * SIGMA], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([centre], lr=lr)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.05 ** (1.0 / steps))  # lr / 20 at the end
    thetas, losses = [], []
    for step in range(steps):
        loss = loss_fn(step, centre).sum()
        thetas.append((centre.item() - TARGET) / SIGMA)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    thetas.append((centre.item() - TARGET) / SIGMA)
    losses.append(loss_fn(steps, centre.detach()).sum().item())
    return thetas, losses


def run_1d(steps: int = 400, lr: float = 0.01, num_bands: int = 6, warmup: float = 0.2) -> dict:
    """Runs the three columns. Returns {name: {"theta": [...], "loss": [...]}, "schedule": ...}."""
    gt = pulse(torch.tensor([TARGET], dtype=torch.float64))
    schedule = SpectralSchedule(max_steps=steps, num_bands=num_bands, warmup=warmup,
                                spectral_end=int(0.8 * steps))
    sf, sw = static_weights()

    def l2(step, c):
        return l2_loss(pulse(c), gt)

    def static(step, c):
        return moment_losses(pulse(c), gt, sf, sw)

    def annealed(step, c):
        freqs, w = annealed_weights(schedule, min(step, steps - 1))
        return moment_losses(pulse(c), gt, freqs, w)

    results = {"schedule": schedule, "steps": steps}
    for name, fn in (("L2", l2), (f"static k={STATIC_K}", static), ("annealed spectral", annealed)):
        thetas, losses = optimise(fn, steps, lr)
        results[name] = {"theta": thetas, "loss": losses, "fn": fn}
    return results


def landscape(fn, step: int, thetas: Tensor) -> Tensor:
    """Loss over a grid of offsets: thetas [P] (pulse widths) -> [P]."""
    with torch.no_grad():
        return fn(step, TARGET + thetas * SIGMA)


def plot_1d(results: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = results["steps"]
    snapshots = [0, int(0.3 * steps), int(0.6 * steps), steps]
    columns = [("L2", steps), (f"static k={STATIC_K}", steps)] + [("annealed spectral", s) for s in snapshots]
    grid = torch.linspace(-12, 12, 481, dtype=torch.float64)
    x, _ = pixel_coordinates(1, WIDTH, dtype=torch.float64)
    target = pulse(torch.tensor([TARGET], dtype=torch.float64))[0, 0]
    fig, axes = plt.subplots(2, len(columns), figsize=(3.0 * len(columns), 5.2), squeeze=False)
    for col, (name, step) in enumerate(columns):
        res = results[name]
        theta_now = res["theta"][step]
        top, bottom = axes[0, col], axes[1, col]
        top.plot(x.numpy(), target.numpy(), color="green", label="target")
        rendered = pulse(torch.tensor([TARGET + theta_now * SIGMA], dtype=torch.float64))[0, 0]
        top.plot(x.numpy(), rendered.numpy(), color="red", label="rendered")
        title = name if name != "annealed spectral" else f"annealed, step {step}"
        if name == "annealed spectral":
            title += f"\nalpha={results['schedule'].alpha(min(step, steps - 1)):.2f}"
        top.set_title(title, fontsize=9)
        top.set_xlim(-1, 1)
        top.set_yticks([])
        land = landscape(res["fn"], min(step, steps - 1), grid)
        bottom.plot(grid.numpy(), land.numpy(), color="black", lw=1)
        path_theta = res["theta"][: step + 1]
        path_loss = landscape(res["fn"], min(step, steps - 1), torch.tensor(path_theta, dtype=torch.float64))
        bottom.plot(path_theta, path_loss.numpy(), ".", color="tab:blue", ms=3, alpha=0.5)
        bottom.plot([path_theta[0]], [path_loss[0].item()], "o", color="red", ms=5)
        bottom.plot([path_theta[-1]], [path_loss[-1].item()], "*", color="gold", ms=10, mec="k")
        bottom.axvline(0, color="green", lw=0.8, ls="--")
        bottom.set_xlabel("Theta (pulse widths)")
        bottom.set_yticks([])
    axes[0, 0].legend(fontsize=7, loc="upper left")
    axes[1, 0].set_ylabel("loss landscape + trajectory")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def summary_lines(results: dict) -> list[str]:
    bars = {"L2": ("> 5 (stranded)", lambda t: abs(t) > 5),
            f"static k={STATIC_K}": (">= 1 (false minimum)", lambda t: abs(t) >= 1),
            "annealed spectral": ("< 0.05 (converged)", lambda t: abs(t) < 0.05)}
    lines = []
    for name, (bar, ok) in bars.items():
        final = results[name]["theta"][-1]
        lines.append(f"demo_1d {name:18s} Theta_0 = {THETA0:.1f}  final Theta = {final:+.4f}  "
                     f"bar |Theta| {bar}: {'PASS' if ok(final) else 'FAIL'}")
    return lines


def main(argv=None) -> None:
    from experiments.harness import demo_main

    demo_main(__doc__, "demo_1d", 400, run_1d, plot_1d, summary_lines, argv)


if __name__ == "__main__":
    main()
