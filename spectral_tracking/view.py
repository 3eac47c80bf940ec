"""Browser viewer of a tracked sequence: ``python -m spectral_tracking.view <run folder>``.

Serves the run's ``tracked.npz`` (`spectral_tracking.export.save_tracked`) with viser (the optional
``[viewer]`` extra): the tracked Gaussians of each frame with a frame slider and a play switch, the
control points of the current frame and their trajectories over the sequence, the cameras as
frustums (training views green, novel views blue, each showing its target image of the current
frame), and the first training view's target beside the scene. Everything is in the standard frame
the run tracked in (bounding radius 0.5). No GPU is used on the serving side: the browser renders.

On a remote machine, forward the port and open it locally:

    ssh -L 8080:localhost:8080 user@host        # then http://localhost:8080
"""

from __future__ import annotations

import argparse
import math
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

from spectral_tracking.errors import ViewerUnavailable  # noqa: F401  (raised here)
from spectral_tracking.export import load_tracked
from spectral_tracking.figures import upscale, upscale_factor
from spectral_tracking.gaussians import quat_to_rotmat, rotmat_to_quat

VIEWER_HINT = "the viewer needs the [viewer] extra: pip install \"spectral_tracking[viewer]\" (or: pip install viser)"
TRAIN_COLOR = (30, 160, 70)
NOVEL_COLOR = (40, 110, 220)


def covariances(quats: np.ndarray, log_scales: np.ndarray) -> np.ndarray:
    """[N, 3, 3] covariances R S^2 R^T from quats [N, 4] (w, x, y, z) and log-scales [N, 3]."""
    R = quat_to_rotmat(torch.from_numpy(np.asarray(quats, np.float32)))
    s2 = torch.from_numpy(np.exp(2 * np.asarray(log_scales, np.float32)))
    return (R * s2[:, None, :] @ R.transpose(-1, -2)).numpy()


def camera_poses(viewmats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(wxyz [V, 4], position [V, 3]) camera-to-world poses of world-to-camera ``viewmats`` [V, 4, 4]
    (OpenCV: x right, y down, z forward, which is also viser's frustum convention)."""
    vm = torch.from_numpy(np.asarray(viewmats, np.float64))
    R, t = vm[:, :3, :3], vm[:, :3, 3]
    c2w = R.transpose(-1, -2)
    position = -(c2w @ t[..., None])[..., 0]
    return rotmat_to_quat(c2w).numpy(), position.numpy()


def _up_direction(viewmats: np.ndarray) -> np.ndarray:
    up = -np.asarray(viewmats)[:, 1, :3].mean(0)
    return up / max(float(np.linalg.norm(up)), 1e-8)


def build_scene(server, data: dict, title: str = "") -> dict:
    """Fill a viser ``server`` with the tracked sequence ``data`` (`load_tracked`); returns the GUI
    handles (``frame``, ``play``, ``fps``) and a ``show(t)`` that switches the scene to frame t."""
    means, quats = data["means"], data["quats"].astype(np.float32)
    T = means.shape[0]
    rgbs = data["colors"].astype(np.float32) / 255
    opac = data["opacities"].astype(np.float32)[:, None]
    cps = data["control_points"]
    images = data["images"]
    W, H = int(data["width"]), int(data["height"])
    train, novel = [int(v) for v in data["train_views"]], [int(v) for v in data["eval_views"]]

    up = _up_direction(data["viewmats"])
    server.scene.set_up_direction(tuple(float(x) for x in up))
    wxyz, positions = camera_poses(data["viewmats"])
    center = means.reshape(-1, 3).mean(0)
    # Behind and above the first training camera, so its frustum and the asset are both in view.
    eye = center + 1.25 * (positions[train[0]] - center) + 0.35 * np.linalg.norm(positions[train[0]] - center) * up
    server.initial_camera.position = tuple(float(x) for x in eye)
    server.initial_camera.look_at = tuple(float(x) for x in center)
    server.initial_camera.up = tuple(float(x) for x in up)
    server.initial_camera.fov = 1.2 * 2 * math.atan(int(data["height"]) / (2 * float(data["Ks"][0, 1, 1])))  # radians

    # A frame's Gaussians are sent to the browser the first time it is shown and kept there, so the
    # page opens after one frame (a 45k-Gaussian asset with 32 frames would otherwise send 1.4M first).
    splats: dict[int, object] = {}
    lock = threading.Lock()

    def splats_of(t: int):
        if t not in splats:
            splats[t] = server.scene.add_gaussian_splats(
                f"/tracked/frame_{t:04d}", centers=means[t], covariances=covariances(quats[t], data["log_scales"]),
                rgbs=rgbs, opacities=opac)
        return splats[t]

    splats_of(0)
    overlay = []
    if T > 1:
        segments = np.stack([cps[:-1], cps[1:]], axis=2).reshape(-1, 2, 3)  # [(T-1) J, 2, 3]
        overlay.append(server.scene.add_line_segments("/control_points/trajectories", points=segments, colors=(120, 120, 120),
                                       thickness=1.5, thickness_units="screen"))
    points = server.scene.add_point_cloud("/control_points/current", points=cps[0], colors=(220, 30, 30),
                                          point_size=0.02, point_shape="circle")
    overlay.append(points)
    fy = float(data["Ks"][0, 1, 1])
    fov = 2 * math.atan(H / (2 * fy))
    frustums = {}
    for v in (*train, *novel):
        frustums[v] = server.scene.add_camera_frustum(
            f"/cameras/{'train' if v in train else 'novel'}_{data['view_names'][v]}", fov=fov, aspect=W / H,
            scale=0.12, color=TRAIN_COLOR if v in train else NOVEL_COLOR, image=images[v, 0],
            wxyz=wxyz[v], position=positions[v])

    with server.gui.add_folder("Sequence"):
        frame = server.gui.add_slider("frame", min=0, max=max(T - 1, 1), step=1, initial_value=0, disabled=T < 2)
        play = server.gui.add_checkbox("play", initial_value=False)
        fps = server.gui.add_slider("fps", min=1, max=30, step=1, initial_value=8)
        show_cps = server.gui.add_checkbox("control points", initial_value=True)
    k = upscale_factor(*images.shape[2:4], 240)  # the stored thumbnails may be smaller than W x H
    target = server.gui.add_image(upscale(images[train[0], 0], k), label=f"target, training view {data['view_names'][train[0]]}")
    if title:
        server.gui.add_markdown(title)
    state = {"t": 0}

    def show(t: int) -> None:
        t = int(t) % T
        with lock:  # called from the GUI's thread (slider) and the play loop
            if t != state["t"]:
                splats_of(t).visible = True
                splats_of(state["t"]).visible = False
                state["t"] = t
            points.points = cps[t]
            target.image = upscale(images[train[0], t], k)
            for v, fr in frustums.items():
                fr.image = images[v, t]

    @frame.on_update
    def _(_event) -> None:
        show(frame.value)

    @show_cps.on_update
    def _(_event) -> None:
        for handle in overlay:
            handle.visible = show_cps.value

    return {"frame": frame, "play": play, "fps": fps, "show": show, "num_frames": T}


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8080, play: bool = False):
    """Start the viewer for ``run_dir`` (a finished run's folder) and return (server, handles);
    the caller keeps the process alive (`main` loops, advancing frames while "play" is on)."""
    try:
        import viser
    except ImportError as e:
        raise ViewerUnavailable(VIEWER_HINT) from e
    run_dir = Path(run_dir)
    npz = run_dir / "tracked.npz"
    if not npz.is_file():
        raise FileNotFoundError(f"{npz}: no tracked sequence in this folder (a run writes it when it finishes; "
                                f"give the folder of a finished tracking run)")
    data = load_tracked(npz)
    server = viser.ViserServer(host=host, port=port, verbose=False)
    T, N = data["means"].shape[:2]
    handles = build_scene(server, data, title=f"**{run_dir.name}**  \n{T} frames, {N} Gaussians, "
                                              f"{data['control_points'].shape[1]} control points")
    handles["play"].value = play
    return server, handles


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spectral_tracking.view", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Over SSH: ssh -L PORT:localhost:PORT user@host, then open http://localhost:PORT")
    parser.add_argument("run_dir", help="a finished tracking run's folder (holds tracked.npz)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for the whole network)")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--play", action="store_true", help="start playing the sequence")
    parser.add_argument("--seconds", type=float, default=0, help="stop after this many seconds (0 = run until Ctrl-C)")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        print(f"error: --port {args.port}: a TCP port is 0-65535 (0 picks a free one); e.g. --port 8080", file=sys.stderr)
        return 2
    try:
        server, handles = serve(args.run_dir, host=args.host, port=args.port, play=args.play)
    except (ViewerUnavailable, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    port = server.get_port()
    print(f"viewer of {args.run_dir}: http://{'localhost' if args.host in ('0.0.0.0', '127.0.0.1') else args.host}:{port}"
          f"  (remote machine: ssh -L {port}:localhost:{port} user@host, then open that address)", flush=True)
    start = time.monotonic()
    try:
        while not args.seconds or time.monotonic() - start < args.seconds:
            if handles["play"].value and handles["num_frames"] > 1:
                handles["frame"].value = (int(handles["frame"].value) + 1) % handles["num_frames"]
                handles["show"](handles["frame"].value)
            time.sleep(1.0 / max(1, int(handles["fps"].value)))
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
