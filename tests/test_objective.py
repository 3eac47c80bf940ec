"""The tracker's objective: `Objective.at(step)` (schedule, image loss, ARAP weight) and the image
losses' one signature."""

from pathlib import Path

import pytest
import torch

from spectral_tracking.tracking import schedule
from spectral_tracking.losses.image import IMAGE_LOSSES, PixelLoss, SpectralMomentLoss
from spectral_tracking.losses.photometric import pixel_loss
from spectral_tracking.losses.spectral import spectral_loss
from spectral_tracking.tracking.objective import LossSettings, Objective

REPO = Path(__file__).resolve().parents[1]


def images(seed=0, V=1, H=16, W=16):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(V, H, W, 3, generator=g), torch.rand(V, H, W, generator=g),
            torch.rand(V, H, W, 3, generator=g), (torch.rand(V, H, W, generator=g) > 0.5).float())


def test_spectral_objective_follows_the_schedule():
    s = LossSettings(num_bands=3, warmup=0.2, spectral_end=60, arap_start_iter=10, lambda_arap=2.0)
    obj = Objective(s, max_steps=100)
    ref = schedule.SpectralSchedule(max_steps=100, num_bands=3, warmup=0.2, spectral_end=60)
    for step in (0, 9, 10, 19, 20, 40, 59, 60, 99):
        o = obj.at(step)
        assert o.phase == ref.phase(step) and o.alpha == ref.alpha(step)
        assert torch.equal(o.band_weights, ref.band_weights(step))
        assert o.image_loss is (obj.spectral if step < 60 else obj.spatial)
        assert o.lambda_arap == (2.0 if step >= 10 else 0.0) and o.lambda_image == s.lambda_image


def test_pixel_baseline_is_spatial_from_step_zero():
    obj = Objective(LossSettings(image="pixel", num_bands=4), max_steps=100)
    for step in (0, 50, 99):
        o = obj.at(step)
        assert o.phase == "spatial" and o.image_loss is obj.spatial and torch.equal(o.band_weights, torch.zeros(4))


def test_image_losses_share_one_signature_and_match_their_functions():
    pred, alpha, gt, mask = images()
    w = torch.tensor([1.0, 0.5])
    spec = SpectralMomentLoss(lambda_mask=0.5, norm="l1")(pred, alpha, gt, mask, w)
    assert torch.equal(spec["image"], spectral_loss(pred, gt, alpha, mask, w, lambda_mask=0.5, norm="l1"))
    pix = PixelLoss(lambda_bce=0.3)(pred, alpha, gt, mask, w)
    assert torch.equal(pix["image"], pixel_loss(pred, gt, alpha, mask, lambda_bce=0.3)["total"])
    assert set(IMAGE_LOSSES) == {"spectral", "pixel", "lpips"}


def test_lpips_net_has_one_default():
    from spectral_tracking.run.config import compose

    assert LossSettings().lpips_net == compose(["out_dir=/x"]).loss.lpips_net == "alex"


def test_bad_settings_name_the_key():
    with pytest.raises(ValueError, match="loss.image"):
        LossSettings(image="fourier")
    with pytest.raises(ValueError, match="loss.spatial"):
        LossSettings(spatial="ssim")


def test_pixel_loss_terms_can_be_ablated_as_in_table_3():
    pred, alpha, gt, mask = images(1)
    full = pixel_loss(pred, gt, alpha, mask, lambda_bce=0.3)
    only_mse = PixelLoss(lambda_bce=0.0, lambda_masked=0.0)(pred, alpha, gt, mask, torch.ones(1))
    assert torch.equal(only_mse["image"], full["mse"])
    no_masked = Objective(LossSettings(image="pixel", lambda_masked_mse=0.0), 10).at(0)
    got = no_masked.image_loss(pred, alpha, gt, mask, no_masked.band_weights)["image"]
    torch.testing.assert_close(got, full["mse"] + 0.3 * full["bce"])


def test_mask_iou():
    from spectral_tracking.metrics import mask_iou

    a = torch.zeros(2, 4, 4)
    m = torch.zeros(2, 4, 4)
    a[0, :2] = 1.0  # 8 pixels
    m[0, 1:3] = 1.0  # 8 pixels, 4 shared: IoU 4 / 12
    assert mask_iou(a, m) == pytest.approx((4 / 12 + 1.0) / 2)  # the empty pair counts as 1


def test_band_reduction_sum_is_eq_22_as_printed():
    """On a tiny image: sum_k w_k sum_{w in band k} |M(w; I) - M(w; I_gt)| / (H W), averaged over
    channels, plus lambda_mask times the same for the masks (|.| smoothed by L1_EPS, as the loss does)."""
    from spectral_tracking.losses.spectral import L1_EPS, frequency_grid, spectral_moments_reference

    pred, alpha, gt, mask = images(3, H=8, W=8)
    weights = torch.tensor([1.0, 0.7, 0.2])
    freqs, band = frequency_grid(3)

    def eq22(a, b):  # a, b: [C, H, W] -> scalar
        dm = (spectral_moments_reference(a.double(), freqs) - spectral_moments_reference(b.double(), freqs)) / 64
        per_freq = ((dm.abs() ** 2 + L1_EPS ** 2).sqrt() - L1_EPS).mean(0)  # smoothed |dM|, mean over channels
        return sum(weights[k] * per_freq[band == k].sum() for k in range(3))

    expected = eq22(pred[0].permute(2, 0, 1), gt[0].permute(2, 0, 1)) + 0.5 * eq22(alpha, mask)
    got = SpectralMomentLoss(lambda_mask=0.5, norm="l1", band_reduction="sum")(pred.double(), alpha.double(),
                                                                                gt.double(), mask.double(), weights)
    torch.testing.assert_close(got["image"], expected, rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match="band_reduction"):
        SpectralMomentLoss(band_reduction="max")


def test_bce_eps_bounds_the_opacity_gradient():
    """Where the render is opaque and the target empty, BCE's gradient is about 1 / bce_eps."""
    pred = torch.zeros(1, 4, 4, 3, dtype=torch.float64)
    gt = torch.zeros(1, 4, 4, 3, dtype=torch.float64)
    mask = torch.zeros(1, 4, 4, dtype=torch.float64)
    for eps, bound in ((1e-6, 1e5), (1e-3, 1e2)):
        alpha = torch.full((1, 4, 4), 1 - 2 * eps, dtype=torch.float64, requires_grad=True)  # inside the clamp
        pixel_loss(pred, gt, alpha, mask, lambda_bce=1.0, bce_eps=eps)["bce"].backward()
        g = alpha.grad.abs().max() * alpha.numel()  # undo the mean over pixels
        assert bound < g < 10 * bound, (eps, float(g))


def test_a_spatial_step_that_lost_its_target_is_rescued_by_the_low_bands():
    """loss.rescue_iou: a spatial step whose render does not overlap its target (the asset left the
    frame, where a pixel loss has no gradient) takes the spectral loss of the lowest rescue_bands bands;
    a step that overlaps, a spectral step and the Pixel baseline are left as they are. The count is
    extra state, so a resumed run keeps it."""
    s = LossSettings(num_bands=4, warmup=0.2, spectral_end=60, switch_iou=None, rescue_iou=0.1, rescue_bands=2)
    obj = Objective(s, max_steps=100)
    mask = torch.zeros(1, 16, 16)
    mask[:, 2:8, 2:8] = 1
    away, over = torch.zeros(1, 16, 16), mask.clone()
    away[:, 10:14, 10:14] = 1  # no overlap: IoU 0
    spatial, spectral = obj.at(80), obj.at(10)
    rescued = obj.rescues(spatial, away, mask)
    assert rescued.image_loss is obj.spectral and torch.equal(rescued.band_weights, torch.tensor([1.0, 1.0, 0.0, 0.0]))
    assert rescued.phase == spatial.phase and rescued.lambda_image == spatial.lambda_image
    assert obj.rescues(spatial, over, mask) is spatial
    assert obj.rescues(spectral, away, mask) is spectral
    assert obj.rescue_steps == 1
    again = Objective(s, max_steps=100)
    again.set_extra_state(obj.get_extra_state())
    assert again.rescue_steps == 1
    for off in (Objective(LossSettings(image="pixel", num_bands=4, rescue_iou=0.1), max_steps=100),
                Objective(LossSettings(num_bands=4, spectral_end=60, switch_iou=None, rescue_iou=None), max_steps=100)):
        step = off.at(80)
        assert off.rescues(step, away, mask) is step and off.rescue_steps == 0


def test_a_rescue_step_whose_render_is_empty_also_recentres():
    """loss.rescue_recentre: a rescue step whose render holds (almost) no opacity, where the moments
    have no gradient either, gets the recentring term's weight (counted, and kept in the extra state);
    a rescue step with some of the asset in view does not; 0 turns it off."""
    s = LossSettings(num_bands=4, warmup=0.2, spectral_end=60, switch_iou=None, rescue_iou=0.1, rescue_bands=2)
    obj = Objective(s, max_steps=100)
    mask = torch.zeros(1, 16, 16)
    mask[:, 2:8, 2:8] = 1
    empty, away = torch.zeros(1, 16, 16), torch.zeros(1, 16, 16)
    away[:, 10:14, 10:14] = 1  # in view, no overlap
    spatial = obj.at(80)
    assert spatial.recentre == 0.0 and obj.rescues(spatial, away, mask).recentre == 0.0
    assert obj.rescues(spatial, empty, mask).recentre == 1.0
    assert (obj.rescue_steps, obj.recentre_steps) == (2, 1)
    again = Objective(s, max_steps=100)
    again.set_extra_state(obj.get_extra_state())
    assert again.recentre_steps == 1
    off = Objective(LossSettings(num_bands=4, spectral_end=60, switch_iou=None, rescue_iou=0.1, rescue_recentre=0.0),
                    max_steps=100)
    rescued = off.rescues(off.at(80), empty, mask)
    assert rescued.image_loss is off.spectral and off.rescue_steps == 1  # rescued, without the recentring
    assert rescued.recentre == 0.0 and off.recentre_steps == 0


def test_the_recentring_term_pulls_an_asset_out_of_view_towards_its_target():
    """losses/recentre.py: near the image centre, the distance (in units of half the longer image side)
    between where the Gaussians' centroid projects and the mask's centroid; a gradient that moves them
    back towards it even where nothing of them is in the image, or where they are behind the camera;
    0 for an empty mask."""
    from spectral_tracking.cameras import Cameras, intrinsics_from_fovy, look_at
    from spectral_tracking.losses.recentre import mask_centroid, recentre_loss

    W = H = 32
    viewmat = look_at(torch.tensor([0.0, 0.0, -3.0]), torch.zeros(3))
    K = intrinsics_from_fovy(40.0, W, H)
    camera = Cameras(K[None], viewmat[None], W, H)
    mask = torch.zeros(H, W)
    mask[12:20, 12:20] = 1  # centred
    torch.testing.assert_close(mask_centroid(mask), torch.tensor([16.0, 16.0], dtype=torch.float64))
    # a centroid 1.6 pixels beside the mask's: 1.6 / 16 of half the image
    beside = torch.randn(50, 3) * 0.05
    beside = beside - beside.mean(0) + torch.tensor([1.6 * 3.0 / float(K[0, 0]), 0.0, 0.0])
    assert float(recentre_loss(beside, camera, mask)) == pytest.approx(0.1, rel=0.02)
    for start, axis in ((torch.tensor([0.0, 3.0, 0.0]), 1), (torch.tensor([0.0, 0.5, -4.0]), 2)):
        means = (torch.randn(50, 3) * 0.05 + start).requires_grad_(True)
        loss = recentre_loss(means, camera, mask[None])
        assert float(loss.detach()) > 1.0  # more than half the image away
        loss.backward()
        step = -means.grad.mean(0)  # gradient descent moves them along this
        if axis == 1:  # far above the image: down towards the camera's axis
            assert float(step[1]) < 0 and abs(float(step[1])) > 10 * abs(float(step[0]))
        else:  # a unit behind the camera (which looks along +z): forwards, in front of it
            assert float(step[2]) > 0 and abs(float(step[2])) > 10 * abs(float(step[0]))
    assert float(recentre_loss(beside, camera, torch.zeros(H, W))) == 0.0


def test_a_training_step_whose_frame_left_the_image_gets_the_recentring_gradient(tmp_path):
    """module.step_loss: in a spatial step whose frame's render is empty (the asset moved far above the
    image), the loss holds the recentring term, weighted by lambda_image x rescue_recentre, and its
    gradient reaches the deformation's parameters; with it off the step has no such term."""
    from dataclasses import replace as dc_replace

    from test_train import make_cfg

    from spectral_tracking.run.track import build_module, build_targets

    def step(recentre: float):
        cfg = make_cfg(tmp_path / f"run{recentre}", tmp_path / "data",
                       ["align=none", "shift=0", "loss.switch_iou=null", "loss.spectral_end=8",
                        f"loss.rescue_recentre={recentre}"])
        seq, targets = build_targets(cfg)
        m = build_module(cfg, seq.canonical, targets)
        frame_and_points = m.deformation.frame_and_control_points

        def away(frame, control_frames):  # the deformed frame, moved far out of every view
            g, points = frame_and_points(frame, control_frames)
            return dc_replace(g, means=g.means + 10.0 * g.means.new_tensor([0.0, 1.0, 0.0])), points

        m.deformation.frame_and_control_points = away
        return m, *m.step_loss(int(cfg.max_steps) - 1)  # a spatial step

    m, loss, terms, _, objective = step(1.0)
    assert objective.recentre == 1.0 and m.objective.recentre_steps == 1 and float(terms["recentre"].detach()) > 1.0
    assert float(loss.detach()) >= objective.lambda_image * float(terms["recentre"].detach())  # in the loss, weighted
    params = [p for p in m.deformation.parameters() if p.requires_grad]
    from_recentring = torch.autograd.grad(terms["recentre"], params, allow_unused=True)
    assert any(g is not None and float(g.abs().sum()) > 0 for g in from_recentring)
    m, loss, terms, _, objective = step(0.0)
    assert "recentre" not in terms and m.objective.rescue_steps == 1 and m.objective.recentre_steps == 0
