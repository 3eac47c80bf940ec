"""Will this run fit? Its peak memory estimated from its sizes, checked before the start stage.

A tracking run's peak grows with four things, each measured with ``benchmarks/scale.py`` (the
process's peak resident set of a whole ``train.py`` run, ``experiment=sc4d_mlp``, on the CPU):

- the process: Python, torch, Lightning and the C++ kernels (0.5 GB before anything is loaded), with
  the working set every run has whatever its size (the search's screening chunk, the evaluation's
  chunk): `BASE_BYTES`;
- the frames, held as uint8 (``V x T x H x W x 4`` bytes: colour and mask) for the whole run;
- the images of one step or one evaluated frame (render buffers, the spectral loss's transforms,
  SSIM's filtered stacks in chunks, the search's screening in chunks): about `PER_PIXEL_BYTES` per
  pixel of one view;
- the Gaussians (the asset, its deformed copy and projections with their gradients, Adam's
  moments for the deformation): about `PER_GAUSSIAN_BYTES` each.

On a GPU the frames stay on the CPU and the rest is on the device. The check runs once the frames
are loaded (a sequence whose frames alone do not fit stops in its reader) and compares what the run
will still add (the images and the Gaussians) with the memory free now, on the device that holds them. The estimate is deliberately round: it exists to stop a
run that would be killed hours later, not to predict the peak to the megabyte; ``check_memory=false``
runs anyway.
"""

from __future__ import annotations

from spectral_tracking.errors import ConfigError

# Fitted to benchmarks/scale.py's whole-run peaks (2026-12-06, 3k Gaussians, 4 frames, 6 views unless
# said): 256^2 0.84 GB (estimate 0.80), 512^2 1.02 (1.10), 1024^2 2.12 (2.27); 512^2 with 12 frames 1.08
# (1.15), 100 frames 1.73 (1.70); 300k Gaussians 1.32 (1.43), 1M 2.04 (2.20).
BASE_BYTES = 0.7e9
PER_PIXEL_BYTES = 1_400.0
PER_GAUSSIAN_BYTES = 1_100.0

__all__ = ["BASE_BYTES", "PER_GAUSSIAN_BYTES", "PER_PIXEL_BYTES", "check_fits", "estimate", "estimate_for"]


def estimate(views: int, frames: int, height: int, width: int, gaussians: int) -> dict[str, float]:
    """The peak's parts in bytes: ``process``, ``frames``, ``images``, ``gaussians`` (module docstring)."""
    return {"process": BASE_BYTES, "frames": 4.0 * views * frames * height * width,
            "images": PER_PIXEL_BYTES * height * width, "gaussians": PER_GAUSSIAN_BYTES * gaussians}


def _available_bytes() -> float | None:
    """MemAvailable of /proc/meminfo (what the kernel can give without swapping), or None elsewhere."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def estimate_for(seq) -> dict[str, float]:
    """`estimate` for a run on the loaded sequence ``seq`` (its views, frames, size and canonical)."""
    return estimate(seq.num_views, seq.num_frames, seq.height, seq.width, seq.canonical.num_gaussians)


def check_fits(parts: dict[str, float], seq, device) -> None:
    """Raise a one-line `ConfigError` when a run on the loaded sequence ``seq``, whose peak is
    estimated as ``parts`` (`estimate_for`), will not fit in the memory free now (CPU RAM, or the
    GPU's on CUDA)."""
    gb = {k: v / 1e9 for k, v in parts.items()}
    sizes = (f"frames {gb['frames']:.1f} GB: {seq.num_views} views x {seq.num_frames} frames x {seq.width}x{seq.height}; "
             f"images {gb['images']:.1f} GB at {seq.width}x{seq.height}; "
             f"Gaussians {gb['gaussians']:.1f} GB: {seq.canonical.num_gaussians:,}")
    advice = ("lower resolution= (the frames and images grow with its square) or the frames (dataset.frames=, "
              "or fewer views=), use an asset with fewer Gaussians, free memory, or set check_memory=false to run anyway")
    still = parts["images"] + parts["gaussians"]  # the process and the frames are loaded already
    if getattr(device, "type", str(device)) == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info(device)
        if still > free:
            raise ConfigError(f"this run needs about {still / 1e9:.1f} GB of GPU memory ({sizes}) but {free / 1e9:.1f} GB "
                              f"is free on {torch.cuda.get_device_name(device)}: {advice}")
        return
    available = _available_bytes()
    if available is not None and still > available:
        total = sum(parts.values())
        raise ConfigError(f"this run needs about {total / 1e9:.1f} GB of memory (process {gb['process']:.1f} GB, {sizes}), "
                          f"{still / 1e9:.1f} GB more than its loaded frames, but {available / 1e9:.1f} GB is free: {advice}")
