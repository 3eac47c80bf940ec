"""Videos of a tracked sequence: `tracked_frames` (every frame, target | tracked for each view, at
``TRACKED_FPS``) and `orbit_frames` (the tracked asset at a few frames, seen from a full orbit, at
``ORBIT_FPS``), written by `write_video` (`spectral_tracking.run.outputs` encodes them in the background).

MP4 (H.264) is written with imageio + imageio-ffmpeg, whose wheel bundles an ffmpeg binary; without
them the video is written as a GIF beside the requested path, with one warning saying how to install
the encoder.
"""

from __future__ import annotations

import itertools
import logging
import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from spectral_tracking.cameras import Cameras, look_at
from spectral_tracking.figures import grid, panel, upscale_factor
from spectral_tracking.render import render

log = logging.getLogger(__name__)

ENCODER_HINT = "pip install imageio imageio-ffmpeg"


def mp4_available() -> bool:
    """True when imageio and its ffmpeg plugin (with a usable ffmpeg binary) are installed."""
    try:
        import imageio.v2  # noqa: F401
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # ImportError, or the plugin has no binary for this platform
        return False
    return True


def _pad_to(frame: np.ndarray, multiple: int) -> np.ndarray:
    h, w = frame.shape[:2]
    ph, pw = -h % multiple, -w % multiple
    if ph or pw:
        frame = np.pad(frame, ((0, ph), (0, pw), (0, 0)), constant_values=255)
    return frame


def write_video(frames: Sequence[np.ndarray] | Callable[[], Iterable[np.ndarray]], path: Path, fps: float = 8.0) -> Path:
    """Write uint8 [H, W, 3] ``frames`` as an H.264 MP4 at ``path`` (sides padded with white to a
    multiple of 16, yuv420p, so every player opens it). ``frames`` is a list, or a function returning
    an iterable (e.g. ``partial(tracked_frames, module)``): then each frame is encoded as it is made,
    so a long video never sits in memory. Without the encoder, writes ``path.with_suffix(".gif")``
    instead and warns once. Returns the path written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    source = frames if callable(frames) else (lambda: frames)

    def nonempty() -> Iterator[np.ndarray]:
        it = iter(source())
        first = next(it, None)
        if first is None:
            raise ValueError(f"write_video: no frames for {path}")
        return itertools.chain([first], it)

    reason = "no MP4 encoder (imageio-ffmpeg)"
    if mp4_available():
        import imageio.v2 as imageio

        tmp = path.with_name(path.stem + ".tmp" + path.suffix)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # imageio's notes about frame sizes; we pad ourselves
                writer = imageio.get_writer(tmp, fps=fps, codec="libx264", quality=8, pixelformat="yuv420p",
                                            macro_block_size=1, ffmpeg_log_level="error")
                try:
                    for f in nonempty():
                        writer.append_data(_pad_to(np.ascontiguousarray(f), 16))
                finally:
                    writer.close()
            tmp.replace(path)
            return path
        except (OSError, RuntimeError) as e:  # an ffmpeg that cannot run here: the run still finishes
            tmp.unlink(missing_ok=True)
            reason = f"the MP4 encoder failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
    from PIL import Image

    gif = path.with_suffix(".gif")
    log.warning("%s: wrote %s instead of %s; for MP4: %s", reason, gif.name, path.name, ENCODER_HINT)
    pil = [Image.fromarray(f) for f in nonempty()]  # a GIF is written at once: every frame in memory
    pil[0].save(gif, save_all=True, append_images=pil[1:], duration=int(1000 / fps), loop=0)
    return gif


# ----------------------------------------------------------------------------------------------
# The tracked sequence
# ----------------------------------------------------------------------------------------------
def tracked_frames(module) -> Iterator[np.ndarray]:
    """One image per frame, made when asked for (a generator: one frame's renders in memory at a
    time): a column per view (training views first, then the novel views), the target above the
    tracked render, each panel enlarged to at least 256 px and captioned."""
    tg = module.targets
    views = [*tg.train_views, *tg.eval_views]
    T, H, W = tg.num_frames, tg.images.shape[2], tg.images.shape[3]
    k = upscale_factor(H, W)
    for t in range(T):
        with torch.no_grad():
            rgb = module.render_views(module.gaussians_at(t), views).rgb.cpu()  # [V, H, W, 3]
        top, bottom = [], []
        for i, v in enumerate(views):
            kind = "train" if v in tg.train_views else "novel"
            name = f"{kind} {tg.view_names[v]}"
            top.append(panel(tg.images[v, t], f"{name}: target", k))
            bottom.append(panel(rgb[i], f"{name}: tracked  {t + 1}/{T}", k))
        yield grid([top, bottom])


TRACKED_FPS = 8.0  # tracked.mp4: one sequence frame per video frame
ORBIT_FPS = 16.0  # orbit.mp4: 48 positions in 3 s


# ----------------------------------------------------------------------------------------------
# A full orbit
# ----------------------------------------------------------------------------------------------
def orbit_cameras(cameras: Cameras, target: torch.Tensor, num: int = 48, elevation_deg: float = 15.0) -> Cameras:
    """``num`` cameras on a circle around ``target`` [3] with the intrinsics of ``cameras[0]``, at
    their mean distance from it, about their mean up direction (OpenCV: camera -y is up), raised
    by ``elevation_deg``. The first one looks from the side of the first camera."""
    centers = cameras.centers.to(torch.float32)
    target = target.to(torch.float32)
    up = -cameras.viewmats[:, 1, :3].to(torch.float32).mean(0)
    up = up / up.norm().clamp_min(1e-8)
    radius = float((centers - target).norm(dim=-1).mean())
    start = centers[0] - target
    start = start - (start @ up) * up  # its direction in the orbit plane
    if float(start.norm()) < 1e-6:  # first camera straight above: any horizontal direction
        start = torch.linalg.cross(up, torch.tensor([1.0, 0.0, 0.0]))
        if float(start.norm()) < 1e-6:
            start = torch.linalg.cross(up, torch.tensor([0.0, 0.0, 1.0]))
    e1 = start / start.norm()
    e2 = torch.linalg.cross(up, e1)
    el = math.radians(elevation_deg)
    mats = []
    for i in range(num):
        a = 2 * math.pi * i / num
        d = math.cos(el) * (math.cos(a) * e1 + math.sin(a) * e2) + math.sin(el) * up
        mats.append(look_at(target + radius * d, target, up))
    K = cameras.Ks[0].to(torch.float32)
    return Cameras(K.expand(num, 3, 3).clone(), torch.stack(mats), cameras.width, cameras.height)


def orbit_frame_indices(num_frames: int, count: int = 4) -> list[int]:
    """Up to ``count`` frames spread evenly from the first to the last."""
    count = min(count, num_frames)
    return sorted({round(i * (num_frames - 1) / max(count - 1, 1)) for i in range(count)})


ORBIT_CHUNK = 8  # orbit positions rendered per call: 48 at once held 0.6 GB of float renders at 512^2


def orbit_frames(module, num_views: int = 48, frames: list[int] | None = None) -> Iterator[np.ndarray]:
    """One image per orbit position, made when asked for (a generator, rendering `ORBIT_CHUNK`
    positions at a time): the tracked asset at each of ``frames`` (default: 4 spread over the
    sequence) side by side, all seen from that position."""
    tg = module.targets
    frames = orbit_frame_indices(tg.num_frames) if frames is None else list(frames)
    with torch.no_grad():
        gaussians = [module.gaussians_at(t) for t in frames]
        target = torch.stack([g.means.mean(0) for g in gaussians]).mean(0).cpu()
    cams = orbit_cameras(tg.cameras, target, num=num_views).to(module.device)
    k = upscale_factor(cams.height, cams.width)
    for first in range(0, num_views, ORBIT_CHUNK):
        positions = list(range(first, min(first + ORBIT_CHUNK, num_views)))
        with torch.no_grad():
            renders = [render(g, cams[positions], background=module.background, backend=module.backend).rgb.cpu()
                       for g in gaussians]
        for j, i in enumerate(positions):
            deg = 360.0 * i / num_views
            yield grid([[panel(r[j], f"frame {t + 1}/{tg.num_frames}  orbit {deg:.0f} deg", k)
                         for t, r in zip(frames, renders)]])
