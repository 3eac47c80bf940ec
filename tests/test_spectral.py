import math

import pytest
import torch

from spectral_tracking.losses.spectral import (
    L1_EPS,
    PHASE_SCALE,
    frequency_band,
    frequency_grid,
    full_frequency_grid,
    max_num_bands,
    moment_loss,
    pixel_coordinates,
    spectral_band_errors,
    spectral_loss,
    spectral_moments,
    spectral_moments_reference,
)


@pytest.fixture(autouse=True)
def single_thread():
    # Tiny tensors: on a shared 2-core machine thread hand-offs dominate the run time.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def blob(centre, size=(32, 48), sigma=2.0, cutoff=3.0, dtype=torch.float64):
    """Gaussian blob in pixel units, cut off at `cutoff` sigma. centre: [2] (x, y) pixels -> [H, W]."""
    height, width = size
    ys = torch.arange(height, dtype=dtype)
    xs = torch.arange(width, dtype=dtype)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    m2 = ((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / sigma**2
    return torch.where(m2 < cutoff**2, torch.exp(-0.5 * m2), torch.zeros_like(m2))


# ------------------------------------------------------------------------------------------------
# Grid and coordinates
# ------------------------------------------------------------------------------------------------


def test_frequency_grid_bands_are_log_shells():
    freqs, band = frequency_grid(5)
    m = freqs.abs().amax(-1)
    assert freqs.shape == ((2 * 16 + 1) ** 2, 2)
    assert torch.equal(band, frequency_band(freqs))
    assert bool((band[1:] >= band[:-1]).all())
    assert bool((m[band == 0] <= 1).all()) and int((band == 0).sum()) == 9
    for k in range(1, 5):
        inside = m[band == k]
        assert bool((inside > 2 ** (k - 1)).all()) and bool((inside <= 2**k).all())
        assert int((band == k).sum()) == (2 ** (k + 1) + 1) ** 2 - (2**k + 1) ** 2
    assert len({tuple(f) for f in freqs.tolist()}) == freqs.shape[0]  # no duplicates


def test_frequency_grid_1d():
    freqs, band = frequency_grid(4, ndim=1)
    assert freqs[:, 1].abs().sum() == 0
    assert sorted(freqs[:, 0].tolist()) == list(range(-8, 9))
    assert band.tolist() == frequency_band(freqs).tolist()


def test_resolution_limit_arithmetic():
    assert max_num_bands(128, 128) == 8  # 2^7 = 128 <= 128
    assert max_num_bands(127, 100) == 7
    assert max_num_bands(512, 512) == 10
    assert max_num_bands(64, 96) == 7  # the longer side sets the pitch
    assert max_num_bands(1, 1) == 1


def test_pixel_coordinates_non_square_keep_square_pixels():
    x, y = pixel_coordinates(4, 8, dtype=torch.float64)
    assert torch.allclose(x, torch.tensor([-7, -5, -3, -1, 1, 3, 5, 7], dtype=torch.float64) / 8)
    assert torch.allclose(y, torch.tensor([-3, -1, 1, 3], dtype=torch.float64) / 8)
    # band 0 phase never wraps: |0.5 pi x| < pi / 2 on every pixel centre
    assert bool((PHASE_SCALE * x.abs() < math.pi / 2).all())


# ------------------------------------------------------------------------------------------------
# Moments: fast vs plain twin, shift theorem, Parseval
# ------------------------------------------------------------------------------------------------


def test_spectral_moments_match_direct_sum():
    torch.manual_seed(0)
    images = torch.rand(2, 3, 10, 14, dtype=torch.float64)
    freqs = torch.tensor([[0, 0], [1, -1], [3, 2], [-5, 7], [14, -14], [2, 2]])
    fast = spectral_moments(images, freqs)
    ref = spectral_moments_reference(images, freqs)
    assert fast.shape == (2, 3, 6) and fast.dtype == torch.complex128
    assert torch.allclose(fast, ref, atol=1e-10)
    # (0, 0) is the plain pixel sum
    assert torch.allclose(fast[..., 0].real, images.sum((-1, -2)))
    # hand-computed single pixel: I = 1 at (row 1, col 2) of a 4x4 image -> p = (1/4, -1/4)
    one = torch.zeros(4, 4, dtype=torch.float64)
    one[1, 2] = 1.0
    m = spectral_moments(one, torch.tensor([[1, 0], [0, 1], [2, 3]]))
    expected = torch.exp(1j * PHASE_SCALE * torch.tensor([0.25, -0.25, 2 * 0.25 - 3 * 0.25], dtype=torch.float64))
    assert torch.allclose(m, expected, atol=1e-12)


@pytest.mark.parametrize("shift", [(3, 0), (0, -2), (5, 4), (-7, 3)])
def test_shift_theorem_whole_pixel_shifts(shift):
    height, width = 32, 48
    longest = max(height, width)
    image = blob(torch.tensor([20.0, 14.0]), size=(height, width))
    shifted = torch.roll(image, shifts=(shift[1], shift[0]), dims=(0, 1))  # zero border: no wrap-around
    assert torch.allclose(shifted.sum(), image.sum())
    freqs, _ = frequency_grid(max_num_bands(height, width))
    d = torch.tensor(shift, dtype=torch.float64) * 2 / longest  # pixels -> normalised units
    factor = torch.exp(1j * PHASE_SCALE * (freqs.double() @ d))
    m0 = spectral_moments(image, freqs)
    m1 = spectral_moments(shifted, freqs)
    assert torch.allclose(m1, m0 * factor, atol=1e-9)


@pytest.mark.parametrize("size", [(12, 12), (10, 16), (9, 5)])
def test_parseval_full_grid_l2_is_scaled_mse(size):
    torch.manual_seed(1)
    height, width = size
    pred = torch.rand(2, 3, height, width, dtype=torch.float64)
    gt = torch.rand(2, 3, height, width, dtype=torch.float64)
    freqs = full_frequency_grid(height, width)
    longest = max(height, width)
    assert freqs.shape[0] == (2 * longest) ** 2
    loss = moment_loss(pred, gt, freqs, torch.ones(freqs.shape[0], dtype=torch.float64), norm="l2")
    mse = torch.nn.functional.mse_loss(pred, gt)
    assert torch.allclose(loss, 4 * longest**2 / (height * width) * mse, rtol=1e-10)


# ------------------------------------------------------------------------------------------------
# Loss: fast paths vs plain twin, definition, normalisation, band skipping
# ------------------------------------------------------------------------------------------------


def _eq22_by_hand(pred_rgb, gt_rgb, pred_mask, gt_mask, weights, lambda_mask, norm):
    """Eq. 22 straight from the definitions (full symmetric frequency set, direct sums)."""
    views, height, width, _ = pred_rgb.shape
    freqs, band = frequency_grid(len(weights))

    def term(pred, gt):  # pred [V, C, H, W]
        dm = (spectral_moments_reference(pred, freqs) - spectral_moments_reference(gt, freqs)) / (height * width)
        # l1: the smoothed complex modulus (L1_EPS), l2: squared modulus
        dist = torch.sqrt(dm.abs() ** 2 + L1_EPS**2) - L1_EPS if norm == "l1" else dm.abs() ** 2
        return sum(weights[k] * dist[..., band == k].mean() for k in range(len(weights)))

    rgb = term(pred_rgb.permute(0, 3, 1, 2), gt_rgb.permute(0, 3, 1, 2))
    return rgb + lambda_mask * term(pred_mask[:, None], gt_mask[:, None])


@pytest.mark.parametrize("norm", ["l1", "l2"])
@pytest.mark.parametrize("method", ["fft", "dft", "reference", "auto"])
def test_spectral_loss_matches_definition_and_gradients_agree(norm, method):
    torch.manual_seed(2)
    views, height, width = 2, 12, 20
    pred_rgb = torch.rand(views, height, width, 3, dtype=torch.float64, requires_grad=True)
    pred_mask = torch.rand(views, height, width, dtype=torch.float64, requires_grad=True)
    gt_rgb = torch.rand(views, height, width, 3, dtype=torch.float64)
    gt_mask = torch.rand(views, height, width, dtype=torch.float64)
    weights = [1.0, 0.7, 0.2, 0.05, 0.01]  # K = 5: 2^4 = 16 <= 20
    loss = spectral_loss(pred_rgb, gt_rgb, pred_mask, gt_mask, weights, lambda_mask=0.3, norm=norm, method=method)
    grads = torch.autograd.grad(loss, [pred_rgb, pred_mask])
    ref = _eq22_by_hand(pred_rgb, gt_rgb, pred_mask, gt_mask, weights, 0.3, norm)
    ref_grads = torch.autograd.grad(ref, [pred_rgb, pred_mask])
    assert torch.allclose(loss, ref, rtol=1e-9)
    for g, r in zip(grads, ref_grads):
        # the by-hand form subtracts two large moments; agreement is limited by that cancellation
        assert torch.allclose(g, r, rtol=1e-6, atol=1e-6 * r.abs().max().item())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method", ["fft", "dft", "reference", "auto"])
def test_spectral_loss_lambda_rgb_weighs_the_colour_term(method, dtype):
    """lambda_rgb * (colour term) + lambda_mask * (mask term); 0 leaves the masks' moments only."""
    torch.manual_seed(5)
    views, height, width = 2, 12, 20
    pred_rgb = torch.rand(views, height, width, 3, dtype=dtype, requires_grad=True)
    pred_mask = torch.rand(views, height, width, dtype=dtype)
    gt_rgb, gt_mask = torch.rand(views, height, width, 3, dtype=dtype), torch.rand(views, height, width, dtype=dtype)
    weights = [1.0, 0.5, 0.25]
    f64 = [t.detach().double() for t in (pred_rgb, gt_rgb, pred_mask, gt_mask)]
    colour = _eq22_by_hand(*f64, weights, 0.0, "l1")  # lambda_mask = 0: the colour term alone
    mask = _eq22_by_hand(*f64, weights, 1.0, "l1") - colour
    largest = {}
    for lam in (1.0, 0.4, 0.0):
        loss = spectral_loss(pred_rgb, gt_rgb, pred_mask, gt_mask, weights, lambda_mask=0.3, method=method,
                             lambda_rgb=lam)
        tol = 1e-9 if dtype == torch.float64 else 1e-5
        assert float(loss) == pytest.approx(float(lam * colour + 0.3 * mask), rel=tol)
        (grad,) = torch.autograd.grad(loss, [pred_rgb])
        largest[lam] = float(grad.abs().max())
    assert largest[0.4] == pytest.approx(0.4 * largest[1.0], rel=1e-4)
    assert largest[0.0] < 1e-5 * largest[1.0]  # no colour gradient (up to the FFT's rounding)
    with pytest.raises(ValueError, match="lambda_rgb"):
        spectral_loss(pred_rgb, gt_rgb, pred_mask, gt_mask, weights, lambda_mask=0.3, lambda_rgb=-1.0)


@pytest.mark.parametrize("method", ["fft", "dft"])
def test_band_errors_at_the_nyquist_limit(method):
    torch.manual_seed(3)
    pred, gt = torch.rand(2, 8, 16, dtype=torch.float64), torch.rand(2, 8, 16, dtype=torch.float64)
    k = max_num_bands(8, 16)  # 5: top frequency 16 = max(H, W)
    fast = spectral_band_errors(pred, gt, k, method=method)
    ref = spectral_band_errors(pred, gt, k, method="reference")
    assert fast.shape == (2, k)
    assert torch.allclose(fast, ref, rtol=1e-9)


def test_float32_fast_paths_close_to_reference():
    torch.manual_seed(4)
    pred, gt = torch.rand(1, 4, 32, 32), torch.rand(1, 4, 32, 32)
    ref = spectral_band_errors(pred.double(), gt.double(), 6, method="reference")
    for method in ("fft", "dft"):
        fast = spectral_band_errors(pred, gt, 6, method=method)
        assert fast.dtype == torch.float32
        assert torch.allclose(fast.double(), ref, rtol=1e-4, atol=1e-7)
    rgb, mask = pred.permute(0, 2, 3, 1)[..., :3], pred[:, 3]
    gt_rgb, gt_mask = gt.permute(0, 2, 3, 1)[..., :3], gt[:, 3]
    weights = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5]
    ref_loss = spectral_loss(rgb.double(), gt_rgb.double(), mask.double(), gt_mask.double(), weights,
                             lambda_mask=0.5, method="reference")
    for method in ("fft", "dft"):
        loss = spectral_loss(rgb, gt_rgb, mask, gt_mask, weights, lambda_mask=0.5, method=method)
        assert loss.dtype == torch.float32
        assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-5)


def test_loss_does_not_depend_on_resolution():
    # The same scene (a blob 1/8 of the image wide, and a displaced target) at two resolutions.
    def scene(size):
        scale = size / 64
        pred = blob(torch.tensor([20.0, 30.0]) * scale, size=(size, size), sigma=4 * scale)
        gt = blob(torch.tensor([40.0, 28.0]) * scale, size=(size, size), sigma=4 * scale)
        return pred[None, :, :, None].expand(1, size, size, 3), gt[None, :, :, None].expand(1, size, size, 3)

    values = [spectral_loss(*scene(s), None, None, [1.0] * 5, lambda_mask=0.0).item() for s in (64, 128)]
    assert values[0] > 0
    assert values[1] == pytest.approx(values[0], rel=0.01)


def test_inactive_bands_are_skipped_and_zero_weights_give_zero():
    torch.manual_seed(5)
    pred = torch.rand(1, 16, 16, 3, dtype=torch.float64, requires_grad=True)
    gt = torch.rand(1, 16, 16, 3, dtype=torch.float64)
    a = spectral_loss(pred, gt, None, None, [1.0, 0.5, 0.0, 0.0], lambda_mask=0.0)
    b = spectral_loss(pred, gt, None, None, [1.0, 0.5], lambda_mask=0.0)
    assert torch.equal(a, b)
    zero = spectral_loss(pred, gt, None, None, torch.zeros(4), lambda_mask=0.0)
    (grad,) = torch.autograd.grad(zero, pred)
    assert zero.item() == 0.0 and grad.abs().sum().item() == 0.0


def test_identical_images_give_zero_loss_and_finite_gradient():
    pred = torch.rand(1, 16, 16, 3, requires_grad=True)
    loss = spectral_loss(pred, pred.detach().clone(), None, None, [1.0, 1.0, 1.0], lambda_mask=0.0)
    (grad,) = torch.autograd.grad(loss, pred)
    assert abs(loss.item()) < 1e-9  # zero up to the rounding of the folded l1 smoothing constant
    assert bool(torch.isfinite(grad).all()) and grad.abs().max().item() < 1e-6


# ------------------------------------------------------------------------------------------------
# The locality trap (paper Sec. 3.1): disjoint blobs
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "start, goal, min_cosine",
    [((34.0, 30.0), (12.0, 14.0), 0.8), ((36.0, 24.0), (10.0, 24.0), 0.999), ((12.0, 36.0), (34.0, 14.0), 0.999)],
)
def test_locality_trap_pixel_gradient_vanishes_spectral_points_at_target(start, goal, min_cosine):
    size = (48, 48)
    position = torch.tensor(start, dtype=torch.float64, requires_grad=True)  # on a pixel centre
    target_pos = torch.tensor(goal, dtype=torch.float64)
    target = blob(target_pos, size=size)
    rendered = blob(position, size=size)
    assert (rendered * target).sum().item() == 0.0  # disjoint supports

    # Pixel MSE: the cross term is exactly zero, the self term is translation invariant.
    (cross_grad,) = torch.autograd.grad((rendered * target).sum(), position, retain_graph=True)
    assert cross_grad.abs().max().item() == 0.0
    mse = ((rendered - target) ** 2).mean()
    (mse_grad,) = torch.autograd.grad(mse, position, retain_graph=True)
    assert mse_grad.abs().max().item() < 1e-15

    # Band 0 of the spectral loss: non-zero and pointing from the blob to the target.
    rgb = rendered[None, :, :, None].expand(1, *size, 3)
    gt = target[None, :, :, None].expand(1, *size, 3)
    spec_grads = []
    for method in ("fft", "dft", "reference"):
        spec = spectral_loss(rgb, gt, rendered[None], target[None], [1.0], lambda_mask=0.5, method=method)
        spec_grads.append(torch.autograd.grad(spec, position, retain_graph=True)[0])
    spec_grad = spec_grads[0]
    for other in spec_grads[1:]:  # the twins agree, also on the l1 kinks where w^T d = 0
        assert torch.allclose(other, spec_grad, rtol=1e-9, atol=1e-15)
    to_target = target_pos - position.detach()
    cosine = torch.dot(-spec_grad, to_target) / (spec_grad.norm() * to_target.norm())
    assert spec_grad.norm().item() > 1e-4
    assert cosine.item() > min_cosine  # exact on axes and diagonals, band 0 is anisotropic in between
    moving = to_target != 0
    assert bool((-spec_grad * to_target)[moving].gt(0).all())  # every offset component shrinks


# ------------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------------


def _good():
    return (torch.rand(1, 16, 16, 3), torch.rand(1, 16, 16, 3), torch.rand(1, 16, 16), torch.rand(1, 16, 16))


def test_mismatched_shapes_raise():
    p, g, pm, gm = _good()
    with pytest.raises(ValueError, match="pred_rgb .* and gt_rgb .* must have the same shape"):
        spectral_loss(p, g[:, :8], pm, gm, [1.0], lambda_mask=0.5)
    with pytest.raises(ValueError, match="pred_mask must be"):
        spectral_loss(p, g, pm[:, :8], gm[:, :8], [1.0], lambda_mask=0.5)
    with pytest.raises(ValueError, match="pred_mask .* and gt_mask"):
        spectral_loss(p, g, pm, gm[:, :8], [1.0], lambda_mask=0.5)
    with pytest.raises(ValueError, match=r"\[V, H, W, C\]"):
        spectral_loss(p[0], g[0], pm, gm, [1.0], lambda_mask=0.5)
    with pytest.raises(ValueError, match="both pred_mask and gt_mask"):
        spectral_loss(p, g, pm, None, [1.0], lambda_mask=0.5)
    with pytest.raises(ValueError, match="no masks"):
        spectral_loss(p, g, None, None, [1.0], lambda_mask=0.5)
    with pytest.raises(ValueError, match="weights must be"):
        moment_loss(p[..., 0], g[..., 0], torch.tensor([[1, 0]]), torch.ones(2))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_values_raise(bad):
    p, g, pm, gm = _good()
    g[0, 3, 4, 1] = bad
    with pytest.raises(ValueError, match="gt_rgb has 1 non-finite"):
        spectral_loss(p, g, pm, gm, [1.0], lambda_mask=0.5)
    p, g, pm, gm = _good()
    pm[0, 0, 0] = bad
    with pytest.raises(ValueError, match="pred_mask has 1 non-finite"):
        spectral_loss(p, g, pm, gm, [1.0], lambda_mask=0.5)
    with pytest.raises(ValueError, match="band_weights must be finite"):
        spectral_loss(*_good(), [1.0, bad], lambda_mask=0.5)


def test_too_many_bands_for_the_resolution_raise():
    p, g, pm, gm = _good()  # 16 x 16: K <= 5
    spectral_loss(p, g, pm, gm, [1.0] * 5, lambda_mask=0.5)
    with pytest.raises(ValueError, match=r"num_bands=6 needs frequencies up to 2\^5=32.*16x16.*num_bands <= 5"):
        spectral_loss(p, g, pm, gm, [1.0] * 6, lambda_mask=0.5)
    with pytest.raises(ValueError, match="num_bands=6"):
        spectral_band_errors(p[..., 0], g[..., 0], 6)


def test_other_bad_arguments_raise():
    p, g, pm, gm = _good()
    with pytest.raises(ValueError, match="norm must be one of"):
        spectral_loss(p, g, pm, gm, [1.0], lambda_mask=0.5, norm="l3")
    with pytest.raises(ValueError, match="method must be one of"):
        spectral_loss(p, g, pm, gm, [1.0], lambda_mask=0.5, method="fast")
    with pytest.raises(ValueError, match="band_weights must be finite and >= 0"):
        spectral_loss(p, g, pm, gm, [1.0, -0.1], lambda_mask=0.5)
    with pytest.raises(ValueError, match="non-empty 1D"):
        spectral_loss(p, g, pm, gm, [], lambda_mask=0.5)
    with pytest.raises(ValueError, match="lambda_mask must be finite"):
        spectral_loss(p, g, pm, gm, [1.0], lambda_mask=-1.0)
    with pytest.raises(TypeError, match="real floating"):
        spectral_moments(torch.ones(4, 4, dtype=torch.int64), torch.tensor([[0, 1]]))
    with pytest.raises(TypeError, match="integer"):
        spectral_moments(torch.ones(4, 4), torch.tensor([[0.5, 1.0]]))
    with pytest.raises(ValueError, match=r"\[F, 2\]"):
        spectral_moments(torch.ones(4, 4), torch.tensor([0, 1]))


@pytest.mark.parametrize("size, num_bands", [((16, 16), 5), ((10, 16), 5), ((16, 10), 3), ((9, 7), 4)])
@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_fused_fft_backward_matches_autograd_twins(size, num_bands, norm):
    # The fused FFT path writes its backward by hand: compare with autograd through the DFT and the
    # direct sum, at the Nyquist limit (N = L, the doubled row and column) and below it, non-square.
    torch.manual_seed(6)
    height, width = size
    gt_rgb = torch.rand(2, height, width, 3, dtype=torch.float64)
    gt_mask = torch.rand(2, height, width, dtype=torch.float64)
    weights = torch.rand(num_bands, dtype=torch.float64) + 0.1
    results = {}
    for method in ("fft", "dft", "reference"):
        torch.manual_seed(7)
        pred_rgb = torch.rand(2, height, width, 3, dtype=torch.float64, requires_grad=True)
        pred_mask = torch.rand(2, height, width, dtype=torch.float64, requires_grad=True)
        loss = spectral_loss(pred_rgb, gt_rgb, pred_mask, gt_mask, weights, lambda_mask=0.4, norm=norm, method=method)
        results[method] = (loss, *torch.autograd.grad(loss, [pred_rgb, pred_mask]))
    for method in ("fft", "dft"):
        for got, want in zip(results[method], results["reference"]):
            assert torch.allclose(got, want, rtol=1e-9, atol=1e-14)


# ------------------------------------------------------------------------------------------------
# The C++ kernel (CPU) against its torch-op twin
# ------------------------------------------------------------------------------------------------

import spectral_tracking.losses.spectral as spectral_module  # noqa: E402
from spectral_tracking.runtime import native  # noqa: E402


def _native_or_skip():
    if spectral_module._native_kernels() is None:
        pytest.skip("the spectral C++ kernel could not be built here (no C++ compiler)")


def _loss_and_grads(views, height, width, num_bands, norm, dtype, native, monkeypatch, with_mask=True,
                    gt_grad=False, seed=3):
    monkeypatch.setattr(spectral_module, "USE_NATIVE", native)
    gen = torch.Generator().manual_seed(seed)
    pred_rgb = torch.rand(views, height, width, 3, generator=gen, dtype=dtype, requires_grad=True)
    gt_rgb = torch.rand(views, height, width, 3, generator=gen, dtype=dtype, requires_grad=gt_grad)
    pred_mask = torch.rand(views, height, width, generator=gen, dtype=dtype, requires_grad=True) if with_mask else None
    gt_mask = torch.rand(views, height, width, generator=gen, dtype=dtype) if with_mask else None
    weights = (torch.rand(num_bands, generator=gen, dtype=torch.float64) + 0.1).tolist()
    loss = spectral_loss(pred_rgb, gt_rgb, pred_mask, gt_mask, weights, lambda_mask=0.3 if with_mask else 0.0,
                         norm=norm, method="fft")
    inputs = [t for t in (pred_rgb, gt_rgb, pred_mask) if t is not None and t.requires_grad]
    return (loss.detach(), *torch.autograd.grad(3.0 * loss, inputs))


# (views, H, W, K): transform lengths 2 max(H, W) with radices 8, 4, 2, 3 and 5; N = L (every kx kept)
# and N < L; square, tall, wide
NATIVE_CASES = [(1, 16, 16, 5), (1, 16, 10, 3), (2, 10, 16, 5), (1, 12, 12, 3), (2, 9, 7, 4), (1, 24, 20, 4),
                (1, 15, 15, 4), (1, 40, 24, 6), (1, 96, 96, 7), (3, 18, 8, 2)]


@pytest.mark.parametrize("views, height, width, num_bands", NATIVE_CASES)
@pytest.mark.parametrize("norm", ["l1", "l2"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_native_kernel_matches_torch_twin(views, height, width, num_bands, norm, dtype, monkeypatch):
    _native_or_skip()
    assert spectral_module._native_supported(height, width)
    got = _loss_and_grads(views, height, width, num_bands, norm, dtype, True, monkeypatch)
    want = _loss_and_grads(views, height, width, num_bands, norm, dtype, False, monkeypatch)
    tol = 1e-10 if dtype == torch.float64 else 2e-6
    for a, b in zip(got, want):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert float((a - b).norm() / b.norm()) < tol


def test_native_kernel_without_mask_and_with_gt_gradient(monkeypatch):
    # one view, no mask: three images, so the last pair has a single image
    _native_or_skip()
    got = _loss_and_grads(1, 12, 20, 4, "l1", torch.float64, True, monkeypatch, with_mask=False, gt_grad=True)
    want = _loss_and_grads(1, 12, 20, 4, "l1", torch.float64, False, monkeypatch, with_mask=False, gt_grad=True)
    for a, b in zip(got, want):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-14)
    assert torch.equal(got[2], -got[1])  # d loss / d gt = - d loss / d pred


def test_native_kernel_other_lengths_fall_back_to_the_twin(monkeypatch):
    # 2 max(H, W) = 34 = 2 * 17: not a product of 2, 3 and 5, so the torch-op path runs
    _native_or_skip()
    assert not spectral_module._native_supported(17, 9)
    got = _loss_and_grads(1, 17, 9, 3, "l1", torch.float64, True, monkeypatch)
    want = _loss_and_grads(1, 17, 9, 3, "l1", torch.float64, False, monkeypatch)
    for a, b in zip(got, want):
        assert torch.equal(a, b)


def test_native_kernel_no_grad_non_contiguous_and_thread_count(monkeypatch):
    _native_or_skip()
    monkeypatch.setattr(spectral_module, "USE_NATIVE", True)
    gen = torch.Generator().manual_seed(5)
    # channels-first storage viewed in the renderer layout: not contiguous
    pred_rgb = torch.rand(2, 3, 24, 32, generator=gen).permute(0, 2, 3, 1).requires_grad_()
    gt_rgb = torch.rand(2, 24, 32, 3, generator=gen)
    pred_mask = torch.rand(2, 24, 32, generator=gen).requires_grad_()
    gt_mask = torch.rand(2, 24, 32, generator=gen)
    args = (pred_rgb, gt_rgb, pred_mask, gt_mask, [1.0, 0.5, 0.25, 0.1, 0.05])
    with torch.no_grad():
        value = spectral_loss(*args, lambda_mask=0.5)
    results = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        loss = spectral_loss(*args, lambda_mask=0.5)
        results.append((loss.detach(), *torch.autograd.grad(loss, [pred_rgb, pred_mask])))
    assert torch.equal(value, results[0][0])
    for a, b in zip(*results):  # image pairs on different threads, partial sums in a fixed order
        assert torch.equal(a, b)
    monkeypatch.setattr(spectral_module, "USE_NATIVE", False)
    twin = spectral_loss(*args, lambda_mask=0.5)
    assert torch.allclose(value, twin, rtol=2e-6)


def test_native_kernel_build_failure_warns_and_uses_the_twin(monkeypatch):
    def no_compiler(source, what, flags=()):
        raise RuntimeError(f"{what}: no C++ compiler found (set $CXX or install g++)")

    monkeypatch.setattr(native, "build", no_compiler)
    monkeypatch.setattr(native, "_LOADED", {})  # forget the library built so far (restored afterwards)
    monkeypatch.setattr(native, "_WARNED", set())
    monkeypatch.setattr(spectral_module, "USE_NATIVE", True)
    with pytest.warns(RuntimeWarning, match="falls back to torch ops"):
        got = _loss_and_grads(1, 16, 16, 4, "l1", torch.float64, True, monkeypatch)
    monkeypatch.setattr(spectral_module, "USE_NATIVE", False)
    want = _loss_and_grads(1, 16, 16, 4, "l1", torch.float64, False, monkeypatch)
    for a, b in zip(got, want):
        assert torch.equal(a, b)


def test_native_prototype_table_matches_the_spectral_source():
    assert native.prototype_mismatches("spectral") == []
    (fused,) = native.parse_prototypes(native.KERNELS["spectral"].prototypes)
    assert [p.name for p in fused.params if p.nullable] == ["pred_mask", "gt_mask", "grad_rgb", "grad_mask"]


def test_native_kernel_boundary_names_the_bad_argument():
    _native_or_skip()
    plan = spectral_module.cpu._native_plan((1, 3, False, 16, 16, 3, "l1", 1 / 3, 0.0, torch.float32))
    images = torch.rand(1, 16, 16, 3)
    args = dict(V=1, H=16, W=16, C=3, pred_rgb=images, gt_rgb=torch.zeros_like(images), pred_mask=None,
                gt_mask=None, N=plan.n, factor=plan.cells.factor, band=plan.cells.band32,
                w=torch.ones(3, dtype=torch.float64), coeff=plan.coeff64, eps=0.0, grad_rgb=None, grad_mask=None,
                n_threads=1, status=plan.status)
    assert plan.fused(**args) > 0 and plan.status.item() == 0  # masks and gradients may be null
    with pytest.raises(TypeError, match="st_spectral_fused_f32: argument gt_rgb must be torch.float32"):
        plan.fused(**dict(args, gt_rgb=torch.zeros_like(images, dtype=torch.float64)))
    with pytest.raises(TypeError, match="argument w must be torch.float64, got torch.float32"):
        plan.fused(**dict(args, w=torch.ones(3)))
    with pytest.raises(ValueError, match="argument pred_rgb must be contiguous"):
        plan.fused(**dict(args, pred_rgb=torch.rand(1, 3, 16, 16).permute(0, 2, 3, 1)))
    with pytest.raises(ValueError, match="argument factor must be a tensor, got None"):
        plan.fused(**dict(args, factor=None))
    with pytest.raises(TypeError, match=r"missing arguments \['status'\]"):
        plan.fused(**{k: v for k, v in args.items() if k != "status"})
