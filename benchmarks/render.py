"""Renderer speed and memory: forward + backward medians for every available backend.

    python benchmarks/render.py                 # the small scenes, all backends available here
    python benchmarks/render.py --reps 9 --scenes 2k_128 10k_256

Scenes: 2,000 random Gaussians at 128x128; 10,000 at 256x256; 300,000 at 512x512 (``--scenes 300k_512``,
not run by default) (all SH degree 0, means in a cube of
half-size 0.5, scales 0.005-0.03, cameras at radius 2); the donut asset (``../shared/data/donut``,
normalised to radius 0.5) at 256x256. One orbit camera (azimuth 30, elevation 15) each.
``quadruped_300k`` (on request): the canonical asset of ``benchmarks/scale.py``'s 300k row (the
generated quadruped, 300,000 Gaussians of 2-3 px, opaque) in its first training camera at 512x512,
generated into ``data/synthetic`` if missing: a dense asset, where most Gaussians are hidden.

``--calls`` adds, for the ``cpu`` backend, the median of each C++ call of the render (projection,
binning, compositing, each direction) on a line of its own:

    python benchmarks/render.py --scenes quadruped_300k --backends cpu --calls --reps 12

Each (scene, backend) runs in its own subprocess: time is the wall-clock median of ``reps`` renders
each followed by ``backward()`` of a loss on rgb, alpha and depth (after one warm-up), with the
median CPU time (``process_time``, all threads) beside it, which a busy machine inflates less; peak memory
is the growth of the process's maximum resident set size (``getrusage(RUSAGE_SELF).ru_maxrss``) from
just before the first render to the end, i.e. what rendering adds on top of the scene itself.
CUDA timings synchronise the device; CUDA peak memory is ``torch.cuda.max_memory_allocated``.
One line per scene, so runs can be compared.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DONUT = REPO.parent / "shared" / "data" / "donut" / "point_cloud.ply"
SCENES = {"2k_128": (2000, 128), "10k_256": (10000, 256), "donut_256": (None, 256), "300k_512": (300000, 512),
          "quadruped_300k": (300000, 512)}
DEFAULT_SCENES = ("2k_128", "10k_256", "donut_256")  # 300k_512 on request (about 10 s a backend on the CPU)


def _scene(scene: str):
    """(Gaussians, Cameras) of a scene."""
    from spectral_tracking.cameras import orbit_camera
    from spectral_tracking.gaussians import load_ply, random_gaussians

    n, res = SCENES[scene]
    if scene == "quadruped_300k":
        if str(REPO) not in sys.path:  # run as a script: the repository root is not on the path
            sys.path.insert(0, str(REPO))
        from benchmarks.scale import sequence_folder
        from spectral_tracking.data.folder import load_sequence

        seq = load_sequence(sequence_folder(REPO / "data" / "synthetic", n, res, 4))
        return seq.canonical, seq.cameras[[0]]
    g = load_ply(DONUT).normalize()[0] if n is None else random_gaussians(n, 0, extent=0.5, scale_range=(0.005, 0.03), seed=0)
    return g, orbit_camera(30.0, 15.0, radius=2.0, width=res, height=res)


def _measure(scene: str, backend: str, reps: int, calls: bool = False) -> dict:
    """Runs inside the subprocess."""
    import torch

    from spectral_tracking.gaussians import Gaussians
    from spectral_tracking.render import render
    from spectral_tracking.runtime import native

    n, res = SCENES[scene]
    g, cams = _scene(scene)
    call_times: dict[str, list[float]] = {}
    if calls:  # time every C++ call (each returns when its work is done: no device to synchronise)
        plain = native.NativeFunction.__call__

        def timed(self, **kwargs):
            t = time.perf_counter()
            out = plain(self, **kwargs)
            call_times.setdefault(self.name, []).append(time.perf_counter() - t)
            return out

        native.NativeFunction.__call__ = timed
    device = "cuda" if backend == "gsplat" else "cpu"
    g, cams = g.to(device), cams.to(device)
    leaves = [t.detach().clone().requires_grad_(True) for t in (g.means, g.quats, g.log_scales, g.opacity_logits, g.sh)]
    gs = Gaussians(*leaves)
    if backend == "cpu":
        from spectral_tracking.render.cpu import load_library

        load_library()  # compile outside the measurement

    def step():
        out = render(gs, cams, backend=backend)
        loss = out.rgb.square().mean() + out.alpha.mean() + (out.depth * out.alpha).mean()
        loss.backward()
        if device == "cuda":
            torch.cuda.synchronize()
        return out

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = step()  # warm-up
    call_times.clear()
    times, cpu_times = [], []
    for _ in range(reps):
        t, c = time.perf_counter(), time.process_time()
        step()
        times.append(time.perf_counter() - t)
        cpu_times.append(time.process_time() - c)
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times.sort()
    cpu_times.sort()
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else (rss1 - rss0) / 1024  # ru_maxrss is KiB
    return {"n": gs.num_gaussians, "res": res, "median_s": times[len(times) // 2], "min_s": times[0],
            "cpu_s": cpu_times[len(cpu_times) // 2],
            "peak_mb": peak, "coverage": float(out.alpha.mean()),
            "calls_ms": {k: 1e3 * sorted(v)[len(v) // 2] for k, v in call_times.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=7, help="timed repetitions for the fast backends")
    ap.add_argument("--torch-reps", type=int, default=3, help="timed repetitions for the slow torch reference")
    ap.add_argument("--scenes", nargs="+", default=list(DEFAULT_SCENES), choices=list(SCENES))
    ap.add_argument("--backends", nargs="+", default=None, help="default: every backend available here")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch.set_num_threads in each measurement (default: torch's default, one per core)")
    ap.add_argument("--calls", action="store_true", help="also the median of each C++ call (cpu backend)")
    ap.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        scene, backend = args._child
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        print(json.dumps(_measure(scene, backend, args.torch_reps if backend == "torch" else args.reps, args.calls)))
        return

    import torch

    backends = args.backends or (["cpu", "torch"] + (["gsplat"] if torch.cuda.is_available() else []))
    print(f"# torch {torch.__version__}, {args.threads or torch.get_num_threads()} threads, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f} at start; fwd+bwd wall-clock medians; "
          f"peak = max-RSS growth (CPU) / max allocated (CUDA)")
    failed = 0
    for scene in args.scenes:
        if SCENES[scene][0] is None and not DONUT.exists():
            print(f"scene={scene:<10} skipped: {DONUT} not found")
            continue
        res = {}
        for backend in backends:
            cmd = [sys.executable, __file__, "--reps", str(args.reps), "--torch-reps", str(args.torch_reps)]
            cmd += ["--threads", str(args.threads)] if args.threads else []
            cmd += ["--calls"] if args.calls else []
            proc = subprocess.run([*cmd, "--_child", scene, backend], capture_output=True, text=True, cwd=REPO)
            if proc.returncode != 0:
                failed += 1
                res[backend] = {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
            else:
                res[backend] = json.loads(proc.stdout.strip().splitlines()[-1])
        first = next((r for r in res.values() if "n" in r), {})
        parts = [f"scene={scene:<10} N={first.get('n', '?'):>6} {first.get('res', '?')}^2"]
        for backend, r in res.items():
            if "error" in r:
                parts.append(f"{backend}: FAILED ({r['error']})")
            else:
                parts.append(f"{backend} {r['median_s']:.4f} s (min {r['min_s']:.4f}, cpu-time {r['cpu_s']:.4f} s, "
                             f"peak +{r['peak_mb']:.0f} MB)")
        if "median_s" in res.get("cpu", {}) and "median_s" in res.get("torch", {}):
            parts.append(f"cpu speed-up over torch {res['torch']['median_s'] / res['cpu']['median_s']:.1f}x")
        print(" | ".join(parts), flush=True)
        if res.get("cpu", {}).get("calls_ms"):
            print(" " * 17 + "cpu calls (median ms): " + ", ".join(
                f"{k.removeprefix('st_')} {v:.2f}" for k, v in res["cpu"]["calls_ms"].items()), flush=True)
    print(f"# load average {os.getloadavg()[0]:.2f} at end")
    if failed:
        sys.exit(f"render.py: {failed} measurement(s) FAILED (above); exit 1")


if __name__ == "__main__":
    main()
