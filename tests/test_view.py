"""The browser viewer: it serves a finished run's page, and a real headless browser draws the scene.

The viewer needs viser (the ``[viewer]`` extra, also in ``[dev]``); the browser check needs a
Chromium binary (Debian: ``apt-get install chromium``) and is skipped without one.
"""

import base64
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from test_train import make_cfg

from spectral_tracking.run.track import run

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--enable-unsafe-swiftshader", "--use-angle=swiftshader"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, seconds: float = 60) -> str:
    end = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.read().decode(errors="replace")
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.3)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("view")
    run(make_cfg(tmp, tmp / "data", ["max_steps=4", "eval.videos=false", "eval.progression_frames=0"]))
    return tmp / "run"


@pytest.fixture
def viewer(run_dir):
    pytest.importorskip("viser", reason="the viewer extra (viser) is not installed")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "spectral_tracking.view", str(run_dir), "--port", str(port), "--seconds", "120"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield f"http://127.0.0.1:{port}", proc
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_viewer_serves_the_page(viewer):
    url, proc = viewer
    page = wait_http(url + "/")
    assert "<html" in page.lower() and "<script" in page.lower()
    assert proc.poll() is None


def test_viewer_steps_through_the_frames(run_dir):
    pytest.importorskip("viser", reason="the viewer extra (viser) is not installed")
    from spectral_tracking.view import serve

    server, handles = serve(run_dir, port=free_port())
    try:
        assert handles["num_frames"] == 4
        for t in (1, 3, 0, 2):  # each frame's Gaussians are added on first show, then toggled
            handles["show"](t)
        assert wait_http(f"http://127.0.0.1:{server.get_port()}/")
    finally:
        server.stop()


def test_viewer_refuses_a_folder_without_a_run(tmp_path):
    pytest.importorskip("viser", reason="the viewer extra (viser) is not installed")
    out = subprocess.run([sys.executable, "-m", "spectral_tracking.view", str(tmp_path)], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 2 and "tracked.npz" in out.stderr


def test_viewer_without_viser_says_how_to_install(tmp_path, monkeypatch):
    import spectral_tracking.view as view

    monkeypatch.setitem(sys.modules, "viser", None)  # import viser -> ImportError
    with pytest.raises(view.ViewerUnavailable, match=r"pip install"):
        view.serve(tmp_path)


def screenshot(url: str, path: Path, seconds: float = 60, size=(1280, 800), ready=None) -> np.ndarray:
    """Open ``url`` in headless Chromium and screenshot it (over the DevTools protocol), retrying
    until ``ready(image)`` holds or ``seconds`` pass. Returns the last screenshot [H, W, 3]."""
    from io import BytesIO

    from PIL import Image
    from websockets.sync.client import connect

    profile = path.parent / "chromium-profile"
    port = free_port()
    proc = subprocess.Popen([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--remote-debugging-port={port}",
                             "--remote-allow-origins=*", f"--window-size={size[0]},{size[1]}", url],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        targets = json.loads(wait_http(f"http://127.0.0.1:{port}/json/list", 30))
        page = next(t for t in targets if t.get("type") == "page")
        end = time.monotonic() + seconds
        with connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=30) as ws:
            msg_id = 0
            while True:
                time.sleep(2)
                msg_id += 1
                ws.send(json.dumps({"id": msg_id, "method": "Page.captureScreenshot", "params": {"format": "png"}}))
                while True:
                    reply = json.loads(ws.recv(timeout=30))
                    if reply.get("id") == msg_id:
                        break
                png = base64.b64decode(reply["result"]["data"])
                image = np.asarray(Image.open(BytesIO(png)).convert("RGB"))
                if ready is None or ready(image) or time.monotonic() > end:
                    path.write_bytes(png)
                    return image
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)


def asset_pixels(image: np.ndarray) -> int:
    """Pixels of the synthetic creature's warm, saturated colours (the splats: the page is white, the
    panel grey, the frustums green and blue), between the notice at the top left and the panel at
    the top right."""
    r, g, b = (image[:, 320:940, i].astype(int) for i in range(3))
    return int(((r - b > 60) & (r > 90) & (g < 200) & (g > 30)).sum())


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium binary (Debian: apt-get install chromium); the browser check is skipped")
def test_viewer_draws_in_a_headless_browser(viewer, tmp_path):
    pytest.importorskip("websockets", reason="websockets (a viser dependency) is needed to drive the browser")
    url, _ = viewer
    wait_http(url + "/")
    image = screenshot(url + "/", tmp_path / "viewer.png", ready=lambda im: asset_pixels(im) > 400)
    assert image.shape[0] > 400 and image.shape[1] == 1280
    # the page is drawn (not blank) and the Gaussians of the tracked asset are on it
    assert (image.std(axis=(0, 1)) > 5).all()
    assert asset_pixels(image) > 400, f"the splats are not drawn (see {tmp_path / 'viewer.png'})"


@pytest.mark.parametrize("content, match", [(b"PK\x03\x04 truncated", "not a readable tracked sequence"),
                                            (None, "missing")])
def test_a_broken_tracked_npz_is_one_line(tmp_path, content, match):
    import numpy as np

    from spectral_tracking.export import load_tracked

    path = tmp_path / "tracked.npz"
    if content is None:
        np.savez(path, means=np.zeros((1, 2, 3)))
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=match):
        load_tracked(path)


def test_a_bad_port_is_one_line(tmp_path, capsys):
    from spectral_tracking.view import main

    assert main([str(tmp_path), "--port", "99999", "--seconds", "1"]) == 2
    assert "--port 99999: a TCP port is 0-65535" in capsys.readouterr().err
