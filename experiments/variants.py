"""One registry of named variants: each is its overrides against today's defaults
(`spectral_tracking/tracking/settings.py`), with what it is and why it exists.

Kinds:
- ``method``: the tracker's defaults and the paper's own protocol, the two the tables compare.
- ``reading``: where the code reads the paper or a reference implementation (SC4D, GSGD)
  differently, the other reading, kept as an option and measured (docs/method.md).
- ``ablation``: an ingredient removed, or an idea tried and not adopted; kept so that its
  measurement can be rerun (each says what was found).

Variants compose with ``+``: ``paper+no_annealing`` is the paper's protocol without annealing
(later overrides win).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Variant:
    overrides: tuple[str, ...]
    kind: str  # method | reading | ablation
    doc: str


VARIANTS: dict[str, Variant] = {
    # --- method -------------------------------------------------------------------------------
    "defaults": Variant((), "method", "the tracker's defaults (align=search, the overlap switch at IoU 0.5 from any step)"),
    "paper": Variant(("align=none", "loss.switch_iou=null", "average.decay=0", "loss.rescue_iou=null"), "method",
                     "the paper's protocol: the optimiser starts from the displaced asset, the spatial phase at the fixed step, "
                     "the last step's weights are the result"),
    "pixel": Variant(("loss=pixel",), "method", "the Pixel baseline: the spatial loss from step 0, everything else equal"),
    "search": Variant(("align=search",), "method", "the start found by the global similarity search (tracking/search.py)"),
    "moments": Variant(("align=moments",), "method", "the start translated by the targets' mask moments (the defaults "
                                                      "before 2026-12-05, with loss.switch_iou=0.8 after the warm-up)"),
    "switch80": Variant(("loss.switch_iou=0.8", "loss.switch_from=warmup"), "method",
                        "the overlap switch before 2026-12-05: IoU 0.8, after the warm-up"),
    "trajectory": Variant(("align=search", "search.frames=all", "deform=rigid_mlp_frames"),
                          "method", "the search for frame 0, then the whole asset's rigid motion frame by frame as the start "
                                    "of a per-frame rigid part, learned at a tenth of the shared part's rate (at 0.01 each "
                                    "frame's motion jitters: -2.9 dB on motions without a turn, turning_trajectory); each "
                                    "frame's depth from its own orientation's area, the median depth over 5 frames, and "
                                    "only the centre track where nothing turns 45 degrees (one view)"),
    "trajectory_beam": Variant(("align=search", "search.frames=all", "deform=rigid_mlp_frames", "search.beam=2"),
                               "method", "the trajectory with two trajectories followed at once, the lower summed loss "
                                         "winning (a turn and its mirror fit one view alike for a few frames)"),
    "trajectory_greedy": Variant(("align=search", "search.frames=all", "deform=rigid_mlp_frames", "search.realign=false",
                                  "search.depth_window=1", "search.turn_gate=0"),
                                 "method", "the trajectory before 2026-12-06: each frame's pose as the greedy search left "
                                           "it (turning_trajectory_lr001, trajectory_pairs)"),
    # --- readings of the paper / reference code -----------------------------------------------
    "switch_prior": Variant(("loss.switch_prior=start",), "method",
                            "the overlap switch's running IoU seeded with the start's own IoU: a start that already "
                            "overlaps has no spectral step (the same run as Pixel) instead of 4"),
    "fixed_switch": Variant(("loss.switch_iou=null",), "reading", "the paper's fixed switch at loss.spectral_end"),
    "switch_anytime": Variant(("loss.switch_from=start",), "ablation",
                              "the overlap switch may end the spectral phase before the warm-up ends"),
    "switch50": Variant(("loss.switch_iou=0.5",), "ablation", "the overlap switch at a running mask IoU of 0.5"),
    "old_defaults": Variant(("align=moments", "loss.switch_iou=0.8", "loss.switch_from=warmup"), "method",
                            "the defaults before 2026-12-05: align=moments, the switch at IoU 0.8 after the warm-up"),
    "rigid_first": Variant(("deform=rigid_mlp", "deform.rigid_first=0.2"), "ablation",
                           "rigid_mlp whose non-rigid part waits for the first 20% of the steps"),
    "no_align": Variant(("align=none",), "reading", "the paper's start (the displaced asset), with the overlap switch"),
    "band_sum": Variant(("loss.band_reduction=sum",), "reading",
                        "eq. 22 as printed: each band sums its moments (measured: -2.7 dB unshifted; not adopted)"),
    "svd_rot": Variant(("+deform.kwargs.rotation_source=svd",), "reading",
                       "GSGD: control-point rotations from their neighbourhoods by SVD (measured: no effect)"),
    "lr_hold": Variant(("lr_decay=0.35",), "reading", "SC4D / GSGD: the LRs decay over 35% of the steps, then hold (no effect)"),
    "frames30": Variant(("progressive_frames=0.3",), "reading", "GSGD: frames phased in over 30% of the steps (no effect)"),
    "linear": Variant(("loss.expansion=linear",), "reading",
                      "the top frequency linear between the log ramp's end points (opens high bands earlier)"),
    "linear_slow": Variant(("loss.expansion=linear_slow",), "reading",
                           "the paper's 'linear growth bounded well below exponential': the log ramp's tangent (no effect)"),
    "fp32": Variant(("deform.precision=fp32",), "reading", "the TimeNet in float32 as in the paper (bf16: within run-to-run spread)"),
    # --- ablations ----------------------------------------------------------------------------
    "no_annealing": Variant(("loss.expansion=none",), "ablation", "every band from step 0"),
    "no_mask": Variant(("loss.lambda_spec_mask=0",), "ablation", "no mask moments"),
    "no_warmup": Variant(("loss.warmup=0",), "ablation", "the bands start growing at step 0"),
    "no_arap": Variant(("loss.lambda_arap=0",), "ablation", "no ARAP"),
    "rigid_mlp": Variant(("deform=rigid_mlp",), "ablation", "a shared rigid term composed with the MLP"),
    "arap10": Variant(("loss.lambda_arap=10",), "ablation",
                      "ARAP 10x stronger (the walking quadruped, shift 1e-4, six directions: train +0.8 dB, novel "
                      "+0.7 dB, 3D error 0.044 -> 0.039 radii; measured over every creature in arap10)"),
    "arap100": Variant(("loss.lambda_arap=100",), "ablation", "ARAP 100x stronger (novel views +1.1 dB, unshifted -1.9 dB)"),
    "scale_term": Variant(("loss.lambda_scale=1000",), "ablation",
                          "the scale-preserving term (size right, depth not: 500 steps do not move the asset in depth)"),
    "masks_only": Variant(("loss.lambda_spec_rgb=0",), "ablation", "the masks' moments only (realistic setting: worse)"),
    "mask3": Variant(("loss.lambda_spec_mask=3",), "ablation", "mask moments 6x stronger (realistic setting: worse)"),
    "switch30": Variant(("loss.spectral_end='${frac:${max_steps},0.3}'",), "ablation",
                        "the latest spectral step at 30% of the run (realistic setting: closer to Pixel, the earlier the better)"),
    "switch45": Variant(("loss.spectral_end='${frac:${max_steps},0.45}'",), "ablation", "the same at 45%"),
    "appearance": Variant(("finetune_appearance=true",), "ablation", "a learned colour offset (Pixel gains more from it)"),
    "pos_freqs0": Variant(("deform.pos_freqs=0",), "ablation",
                          "the TimeNet's control-point positions unencoded (SC4D / the paper: 10 frequencies)"),
    "pos_freqs2": Variant(("deform.pos_freqs=2",), "ablation", "the TimeNet's positions encoded at 2 frequencies"),
    "pos_freqs3": Variant(("deform.pos_freqs=3",), "ablation",
                          "the TimeNet's positions encoded at 3 frequencies (clean, sc4d rate: +1.2 dB; at 1e-3: level; "
                          "realistic: -0.6 dB; pos_freqs, pos_freqs_lr001, realistic_pairs_pf3)"),
    "pos_freqs4": Variant(("deform.pos_freqs=4",), "ablation", "the TimeNet's positions encoded at 4 frequencies"),
    "pos_anneal50": Variant(("deform.pos_anneal=0.5",), "ablation",
                            "the TimeNet's position frequencies open one by one over the first half of the run (BARF; "
                            "the hopper's jump, seeds 0-3: 25.0 dB against 24.3 with all from the start)"),
    "lr2e-4": Variant(("deform.lr_init=0.0002", "deform.lr_final=0.0001"), "ablation",
                      "the TimeNet at Table 6's 2e-4 / 1e-4 (for 10k steps), the CPU-scale sc4d preset's rate until "
                      "2026-12-06: 2.75 dB train PSNR and 13% of 3D error below 1e-3 unshifted (pos_freqs_lr001)"),
    "no_average": Variant(("average.decay=0",), "ablation",
                          "the last step's weights as the result, as before 2026-12-06, instead of their moving average "
                          "over the spatial phase's second half (run/averaging.py; rotation_curves_average)"),
    "bce_1e-6": Variant(("loss.bce_eps=1e-6",), "ablation",
                        "the BCE's old opacity clamp (throws the asset out of the frame on some creatures)"),
}


def overrides_of(names: Sequence[str]) -> list[str]:
    """The overrides of named variants, in order; a name may compose several with ``+``."""
    out: list[str] = []
    for name in names:
        for part in name.split("+"):
            if part not in VARIANTS:
                raise ValueError(f"unknown variant {part!r} (in {name!r}); known: {', '.join(sorted(VARIANTS))}")
            out += VARIANTS[part].overrides
    return out
