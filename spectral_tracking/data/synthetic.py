"""The synthetic tracking benchmark: procedural creatures with known articulated motion.

Run ``python -m spectral_tracking.data.synthetic --help``. Each preset (``presets.py``) is a
(creature, motion) pair, rendered by the benchmark generator (``benchmark.py``: the orbit rig, the
clean and realistic settings, the cache) into the sequence format of ``folder.py``; the donut_*
presets hand over to ``donut.py``.

Generation is cached in ``<root>/<preset>_<setting>_r<res>_t<frames>_s<seed>[_n<gaussians>]``:
a complete folder is reused as is; an interrupted one is deleted and regenerated.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from spectral_tracking.data.benchmark import DEFAULT_GAUSSIANS, DEFAULT_ROOT, SETTINGS, check_settings, render_cached, sequence_name
from spectral_tracking.data.creatures import COMPATIBLE, CREATURES, MOTIONS, animate, make_creature
from spectral_tracking.data.folder import load_sequence
from spectral_tracking.data.frames import to_uint8, write_png
from spectral_tracking.data.presets import DONUT_PRESETS, PRESETS
from spectral_tracking.data.sequence import Sequence


def generate(preset: str | None = None, setting: str = "clean", frames: int = 24, resolution: int = 128, seed: int = 0,
             root: str | Path | None = None, creature: str | None = None, motion: str | None = None,
             num_gaussians: int = DEFAULT_GAUSSIANS, backend: str = "auto", donut_ply: str | Path | None = None) -> Path:
    """Generate one sequence (or reuse the cached one) and return its folder.

    Either ``preset`` (a key of PRESETS or DONUT_PRESETS) or ``creature`` + ``motion``.
    """
    if preset is None:
        if creature is None or motion is None:
            raise ValueError("generate: give a preset, or both creature and motion")
        preset = f"{creature}_{motion}"
    if preset in PRESETS:
        creature, motion = PRESETS[preset].creature, PRESETS[preset].motion
    elif preset in DONUT_PRESETS:
        creature, motion = "donut", preset.split("_", 1)[1]
    elif creature is None:
        raise ValueError(f"unknown preset {preset!r}; presets: {sorted(PRESETS) + list(DONUT_PRESETS)}")
    if creature == "donut":
        from spectral_tracking.data.donut import generate_donut

        return generate_donut(motion, setting, frames, resolution, seed, root, donut_ply, backend)
    if creature not in CREATURES:
        raise ValueError(f"unknown creature {creature!r}; choose from {sorted(CREATURES)}")
    if motion not in COMPATIBLE[creature]:
        raise ValueError(f"creature {creature!r} has no motion {motion!r}; it supports {COMPATIBLE[creature]}")
    check_settings(setting, frames, resolution)
    root = Path(root) if root is not None else DEFAULT_ROOT
    final = root / sequence_name(preset, setting, resolution, frames, seed, num_gaussians)

    def source():
        c = make_creature(creature, num_gaussians, seed)
        record = {"num_gaussians": c.gaussians.num_gaussians, "parts": [p.name for p in c.parts],
                  "provenance": f"procedural creature {creature!r} with articulated motion {motion!r} (rigid skinning)"}
        return c.gaussians, animate(c, motion, frames), record, {"labels": c.labels.numpy()}

    return render_cached(final, source, preset=preset, creature=creature, motion=motion, setting=setting,
                         resolution=resolution, seed=seed, backend=backend)


def pair_names() -> list[str]:
    """Every ``<creature>_<motion>`` pair the generator supports (the presets are four of them)."""
    return [f"{c}_{m}" for c in sorted(COMPATIBLE) for m in COMPATIBLE[c]]


def from_config(ds: Mapping, resolution: int | None, require_canonical: bool = True) -> Sequence:
    """The ``dataset=synthetic`` entry: ``ds.preset``, ``ds.setting``, ``ds.frames``, ``ds.seed``,
    ``ds.root``; generated (and cached) at ``resolution``. ``ds.preset`` is a preset or any supported
    ``<creature>_<motion>`` pair (e.g. ``humanoid_jump``), for measuring beyond the four presets."""
    from spectral_tracking.errors import ConfigError

    name = str(ds["preset"])
    if name not in pair_names():  # the presets are pairs too, under their own names
        raise ConfigError(f"dataset.preset: unknown preset {name!r}; presets: {sorted(PRESETS)}, or a creature_motion "
                          f"pair: {pair_names()}")
    creature, motion = name.split("_", 1)
    folder = generate(creature=creature, motion=motion, setting=ds["setting"], frames=int(ds["frames"]),
                      resolution=resolution, seed=int(ds.get("seed", 0)), root=ds["root"])
    return load_sequence(folder)


# ----------------------------------------------------------------------------------------------
# Contact sheet
# ----------------------------------------------------------------------------------------------
def contact_sheet(folders: list[Path], out: Path, shift_radius: float = 0.5, seed: int = 0,
                  columns: int = 5, backend: str = "auto") -> Path:
    """A PNG: per sequence, rows = views, columns = frame 0 with the canonical overlaid
    (semi-transparent magenta) moved by ``shift_radius`` along +x (how far a start of that radius is;
    the tracker's start draws its direction from the run's seed), then ``columns`` frames spread over
    the sequence. Clean frames are shown over grey; realistic ones as stored (with their clutter)."""
    from PIL import Image, ImageDraw

    from spectral_tracking.render import render

    blocks = []
    for folder in folders:
        seq = load_sequence(folder)
        T, H, W = seq.num_frames, seq.height, seq.width
        ts = sorted(set(int(round(x)) for x in np.linspace(0, T - 1, columns)))
        shifted = seq.canonical.translate(torch.tensor([float(shift_radius), 0.0, 0.0]))
        with torch.no_grad():
            over = render(shifted, seq.cameras, backend=backend)
        bg = torch.tensor([0.18, 0.18, 0.2])
        raw = seq.meta.get("setting") == "realistic"  # show the clutter the tracker sees

        def cell(v, t):
            return seq.image(v, t) if raw else seq.target(v, t, bg)

        rows = []
        for v in range(seq.num_views):
            first = cell(v, 0)
            a = over.alpha[v][..., None]
            tint = torch.tensor([1.0, 0.3, 0.9])
            overlay = first * (1 - 0.55 * a) + 0.55 * (0.5 * over.rgb[v] + 0.5 * tint * a)
            cells = [overlay] + [cell(v, t) for t in ts]
            rows.append(torch.cat([torch.nn.functional.pad(c.permute(2, 0, 1), (1, 1, 1, 1), value=1.0).permute(1, 2, 0) for c in cells], 1))
        grid = to_uint8(torch.cat(rows, 0).clamp(0, 1))
        label_h, label_w = 16, 56
        canvas = Image.new("RGB", (grid.shape[1] + label_w, grid.shape[0] + 2 * label_h), (255, 255, 255))
        canvas.paste(Image.fromarray(grid), (label_w, 2 * label_h))
        d = ImageDraw.Draw(canvas)
        m = seq.meta
        d.text((2, 2), f"{m.get('preset', folder.name)} ({m.get('setting', '')}): {m.get('num_gaussians', seq.canonical.num_gaussians)} Gaussians, "
                       f"{T} frames; col 1 = frame 0 + canonical shifted by {shift_radius}", fill=(0, 0, 0))
        for j, t in enumerate(["t0+shift"] + [f"t={t}" for t in ts]):
            d.text((label_w + j * (W + 2) + 3, label_h + 2), t, fill=(0, 0, 0))
        for v in range(seq.num_views):
            role = "novel" if v in seq.novel_views else "sup"
            d.text((2, 2 * label_h + v * (H + 2) + H // 2 - 6), f"{seq.view_names[v]}\n{role}", fill=(0, 0, 0))
        blocks.append(np.asarray(canvas))
    width = max(b.shape[1] for b in blocks)
    sheet = np.concatenate([np.pad(b, ((0, 8), (0, width - b.shape[1]), (0, 0)), constant_values=255) for b in blocks], 0)
    write_png(Path(out), sheet)
    return Path(out)


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m spectral_tracking.data.synthetic",
                                description="Generate the synthetic tracking benchmark (cached) and/or a contact sheet.")
    p.add_argument("--preset", nargs="*", default=None,
                   help=f"presets to generate (default: all of {sorted(PRESETS)}); also {list(DONUT_PRESETS)}")
    p.add_argument("--creature", choices=sorted(CREATURES), help="generate this creature instead of a preset (with --motion)")
    p.add_argument("--motion", choices=sorted(MOTIONS), help="motion for --creature")
    p.add_argument("--setting", choices=SETTINGS, nargs="*", default=["clean"], help="clean (SC4D-like) and/or realistic (GART-like)")
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--resolution", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gaussians", type=int, default=DEFAULT_GAUSSIANS, help="Gaussians per creature (about)")
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT, help=f"cache folder (default {DEFAULT_ROOT})")
    p.add_argument("--donut-ply", type=Path, default=None, help="donut asset for the donut_* presets")
    p.add_argument("--backend", default="auto", help="renderer backend (auto, cpu, torch, gsplat)")
    p.add_argument("--preview", type=Path, default=None, help="write a contact sheet of the generated sequences to this PNG")
    p.add_argument("--shift", type=float, default=0.5, help="shift radius of the canonical overlaid in the preview")
    p.add_argument("--list", action="store_true", help="list presets and exit")
    a = p.parse_args(argv)
    if a.list:
        for k, v in PRESETS.items():
            print(f"{k:16s} {v.description}")
        for k in DONUT_PRESETS:
            print(f"{k:16s} the real donut asset (../shared/data/donut) with procedural {k.split('_')[1]}")
        return 0
    if a.creature or a.motion:
        if not (a.creature and a.motion):
            p.error("--creature and --motion go together")
        jobs = [dict(creature=a.creature, motion=a.motion)]
    else:
        jobs = [dict(preset=k) for k in (a.preset if a.preset else PRESETS)]
    folders = []
    t_all = time.perf_counter()
    for setting in a.setting:
        for job in jobs:
            t0 = time.perf_counter()
            try:
                f = generate(setting=setting, frames=a.frames, resolution=a.resolution, seed=a.seed, root=a.root,
                             num_gaussians=a.gaussians, backend=a.backend, donut_ply=a.donut_ply, **job)
            except (ValueError, FileNotFoundError) as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
            folders.append(f)
            print(f"{f}  ({time.perf_counter() - t0:.1f} s)")
    print(f"total {time.perf_counter() - t_all:.1f} s for {len(folders)} sequence(s)")
    if a.preview is not None:
        out = contact_sheet(folders, a.preview, shift_radius=a.shift, seed=a.seed, backend=a.backend)
        print(f"contact sheet: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
