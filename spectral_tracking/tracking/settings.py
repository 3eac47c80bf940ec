"""Every setting of a tracking run, its default and its allowed values: defined here once.

`RunConfig` is the schema of ``conf/train.yaml``: `spectral_tracking.run.config.register_configs`
stores it in Hydra's ConfigStore, so the YAML files only choose among options and hold the values
that differ from these defaults (the paper's Table 6 in ``conf/experiment/``, a dataset's paths),
and a key that is not here is an error. `spectral_tracking.run.config.validate` derives its checks
from the metadata below (``choices``, ``low`` / ``high``), then adds the checks that relate two
settings. The defaults are the tracker's; where the paper says otherwise the comment says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from omegaconf import II, MISSING, OmegaConf


def _frac(total, fraction) -> int:
    """``${frac:${max_steps},0.6}`` -> round(0.6 * max_steps): schedule steps that follow max_steps."""
    return int(round(float(total) * float(fraction)))


def _mul(a, b) -> float:
    """``${mul:${.lr_init},0.1}`` -> 0.1 * lr_init: a setting that follows another one."""
    return float(a) * float(b)


for _name, _fn in (("frac", _frac), ("mul", _mul)):
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _fn)


def setting(default: Any = MISSING, *, choices: tuple | Callable[[], tuple] | None = None, low: float | None = None,
            high: float | None = None, low_open: bool = False, integer: bool = False, factory=None, what: str = ""):
    """A dataclass field with its checks (read by `spectral_tracking.run.config.validate`):
    ``choices`` (a tuple, or a function returning one, for registries imported on use), a range
    ``[low, high]`` (``(low, high]`` with ``low_open``), ``integer``, and ``what``: the unit or
    meaning named in the error message."""
    metadata = {k: v for k, v in dict(choices=choices, low=low, high=high, low_open=low_open, integer=integer,
                                      what=what).items() if v is not None and v is not False and v != ""}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def check_choices(settings, prefix: str) -> None:
    """ValueError naming ``<prefix><field>`` for a field of ``settings`` outside its fixed
    ``choices`` (the dataclasses check themselves on construction; the registries' choices, which
    need their modules imported, and interpolations are left to
    `spectral_tracking.run.config.validate`, which checks the composed config)."""
    from dataclasses import fields

    for f in fields(settings):
        choices = f.metadata.get("choices")
        value = getattr(settings, f.name)
        if choices is None or callable(choices) or (isinstance(value, str) and value.startswith("${")):
            continue
        if value not in choices:
            raise ValueError(f"{prefix}{f.name}: expected one of {', '.join(map(repr, choices))}, got {value!r}")


def _deformations() -> tuple:
    from spectral_tracking.deform import DEFORMATIONS

    return tuple(DEFORMATIONS)


def _backends() -> tuple:
    from spectral_tracking.render.render import BACKENDS

    return BACKENDS


def _protocols() -> tuple:
    from spectral_tracking.evaluation import PROTOCOLS

    return PROTOCOLS


def _align_methods() -> tuple:
    from spectral_tracking.tracking.align import METHODS

    return METHODS


def _expansions() -> tuple:
    from spectral_tracking.tracking.schedule import MODES

    return MODES


# --------------------------------------------------------------------------------------------------
# The method
# --------------------------------------------------------------------------------------------------
@dataclass
class LossSettings:
    """The ``loss`` group: the image loss of each phase, the band schedule, ARAP (paper Table 6;
    ``conf/experiment/`` holds its per-setting values)."""

    image: str = setting("spectral", choices=("spectral", "pixel"))  # pixel: the "Pixel" baseline, spatial from step 0
    spatial: str = setting("pixel", choices=("pixel", "lpips"))  # the image loss after the spectral phase
    num_bands: int = setting(6, low=1, integer=True)
    warmup: float = setting(0.2, low=0, high=1, what=" (a fraction of max_steps with only band 0 active)")
    expansion: str = setting("log", choices=_expansions)  # tracking/schedule.py
    # The latest step of the spectral phase (Table 6's "add pixel loss"); the overlap switch may end it earlier.
    spectral_end: int = setting(II("frac:${max_steps},0.6"), low=0, integer=True)
    # End the spectral phase once the running mask IoU reaches this (beyond the paper; tracking/objective.py);
    # null: at spectral_end (the paper).
    switch_iou: Optional[float] = setting(0.5, low=0, high=1, low_open=True)
    # When the switch may end the spectral phase: start (at any step: a start that already overlaps skips the
    # warm-up too) | warmup (only after the warm-up)
    switch_from: str = setting("start", choices=("start", "warmup"))
    # What the running IoU starts from: zero (it needs about 4 steps to pass 0.5, so even a start that overlaps
    # has 4 spectral steps) | start (the start's own IoU, frame 0 over the training views: a start that already
    # overlaps has none, and is tracked exactly as the Pixel baseline would until a rescue fires: rescue_iou)
    switch_prior: str = setting("zero", choices=("zero", "start"))
    # A step of the spatial phase whose render overlaps its target below this mask IoU (the asset has left
    # the frame: a pixel loss has no gradient to bring it back) takes the spectral loss of the lowest
    # rescue_bands bands instead (beyond the paper; tracking/objective.py); null: never (the paper).
    rescue_iou: Optional[float] = setting(0.1, low=0, high=1, low_open=True)
    rescue_bands: int = setting(3, low=1, integer=True)
    # In a rescue step whose render shows (almost) nothing, where the spectral loss has no gradient either, the
    # weight (times lambda_image) of the gap between the viewing directions of the Gaussians' centroid and of the
    # target mask's centroid (losses/recentre.py; beyond the paper). 0: off (the rescue as on 2026-12-07)
    rescue_recentre: float = setting(1.0, low=0)
    norm: str = setting("l1", choices=("l1", "l2"))
    # how a band's frequencies combine: mean | sum (eq. 22's sum over the band, as printed; either way the colour
    # term is the mean over the channels and the views: losses/image.py)
    band_reduction: str = setting("mean", choices=("mean", "sum"))
    lambda_image: float = setting(5000.0, low=0)
    lambda_spec_mask: float = setting(0.5, low=0)
    lambda_spec_rgb: float = setting(1.0, low=0)  # weight of the colour moments (the paper: 1; 0 = masks only)
    lambda_bce: float = setting(0.3, low=0)
    lambda_masked_mse: float = setting(1.0, low=0)  # the masked MSE of eq. 23 (0: the Table 3 ablation)
    bce_eps: float = setting(1e-3, low=0, low_open=True)  # the BCE's opacity clamp (losses/photometric.py)
    lambda_late_lpips: float = setting(1.0, low=0)
    lpips_net: str = setting("alex", choices=("alex", "vgg"))  # the LPIPS loss's backbone (spatial=lpips)
    lambda_arap: float = setting(1.0, low=0)
    arap_start_iter: int = setting(II("frac:${max_steps},0.1"), low=0, integer=True)
    lambda_scale: float = setting(0.0, low=0)  # the scale-preserving term (losses/scale.py; beyond the paper)

    def __post_init__(self) -> None:
        check_choices(self, "loss.")

    def resolved(self, max_steps: int) -> "LossSettings":
        """A copy whose settings that follow ``max_steps`` (``${frac:${max_steps},0.6}``, the
        defaults of ``spectral_end`` and ``arap_start_iter``) are numbers: for settings made in
        Python rather than composed by Hydra."""
        from dataclasses import asdict

        if not any(isinstance(v, str) and "${" in v for v in asdict(self).values()):
            return self
        node = OmegaConf.create({"max_steps": int(max_steps), "loss": asdict(self)})
        return LossSettings(**OmegaConf.to_container(node, resolve=True)["loss"])

    @property
    def latest_spectral_end(self) -> int:
        """The step at which the spatial phase starts at the latest (0 for the Pixel baseline)."""
        return 0 if self.image == "pixel" else int(self.spectral_end)


@dataclass
class DeformSettings:
    """The ``deform`` group: the deformation model and its learning rates (Adam, decayed
    exponentially from ``lr_init`` to ``lr_final`` over ``lr_decay * max_steps``)."""

    name: str = setting("mlp", choices=_deformations)
    lr_init: float = setting(0.001, low=0, low_open=True)
    lr_final: float = setting(0.0005, low=0, low_open=True)
    rigid_lr: float = setting(0.01, low=0)  # the global rigid part (rigid, rigid_mlp), decayed by the same ratio
    radius_lr: float = setting(II("mul:${.lr_init},0.1"), low=0)  # learnable skinning radii (kwargs.learnable_radius)
    # The TimeNet's arithmetic (mlp, rigid_mlp): fp32 (the paper) | bf16 (autocast) | auto (bf16 where the
    # hardware computes it natively; deform/mlp.py).
    precision: str = setting("auto", choices=("fp32", "bf16", "auto"))
    # A fraction of max_steps during which only the whole asset's rigid part learns (rigid_mlp; beyond the paper)
    rigid_first: float = setting(0.0, low=0, high=1)
    # Frequencies encoding the control points' positions in the TimeNet's input (mlp, rigid_mlp): sin / cos of
    # 2^k x for k < pos_freqs, x in [-1, 1] over the asset. SC-GS / SC4D / the paper: 10 (experiments/results/pos_freqs)
    pos_freqs: int = setting(10, low=0, integer=True)
    # A fraction of max_steps over which the TimeNet's position-encoding frequencies open one by one (BARF's
    # coarse-to-fine, the window of eq. 7; mlp, rigid_mlp; beyond the paper). 0: all open from step 0 (SC4D).
    # At most 0.9, so that the tracked result (evaluated, exported, checkpointed) has every frequency open
    pos_anneal: float = setting(0.0, low=0, high=0.9)
    # Adam's epsilon for every group of the deformation. 1e-15: 3DGS's, which Deformable-3DGS / SC-GS / SC4D keep
    # for their deformation networks too; there a weight whose gradient is only rounding noise still moves by
    # about the rate each step. 1e-8: PyTorch's default. 1e-4 gives the same spread and quality (rotation_null_eps4)
    adam_eps: float = setting(1e-15, low=0, low_open=True)
    kwargs: dict = setting(factory=dict)  # further keyword arguments of the deformation class


@dataclass
class SearchSettings:
    """The ``search`` group: ``align=search``'s global similarity search (tracking/search.py)."""

    rotations: str = setting("grid", choices=("grid", "cube", "yaw", "none"))  # the rotation hypotheses
    count: int = setting(72, low=1, integer=True)  # hypotheses of the grid (the identity and count - 1 spread over SO(3))
    # the best-screened hypotheses that are fitted (frame 0's search; each frame of frames=all fits 3, or beam if
    # more). The identity takes one of these places where the screening did not keep it (see prefer)
    keep: int = setting(8, low=1, integer=True)
    steps: int = setting(45, low=3, integer=True)  # fitting steps (successive halving over three thirds)
    # Where the winner's silhouette matches frame 0's mask below this IoU in a training view, the search runs
    # once more with twice the steps and the lower loss wins (null: never)
    retry_iou: Optional[float] = setting(0.9, low=0, high=1)
    bands: int = setting(3, low=1, integer=True)  # the lowest spectral bands the search compares
    lr: float = setting(0.05, low=0, low_open=True)  # Adam's step on the rotation (radians; translation and log-scale: x0.2)
    scale: str = setting("auto", choices=("auto", "free", "fixed"))  # the size: auto = free with two or more views
    # The identity (no turn) is always fitted, and a turn wins only with a loss below prefer x the identity's: a
    # symmetric asset (a torus, a flower) keeps its orientation where a symmetric turn fits as well. At 1 the lowest
    # loss wins, but the identity is still fitted in place of the last screened hypothesis (keep=1: it alone)
    prefer: float = setting(0.5, low=0, high=1, low_open=True)
    # larger assets are searched on a proxy: their Gaussians merged per voxel cell (moment matching), widened to keep
    # their silhouette's area; the winner is polished on the asset itself
    max_gaussians: int = setting(4000, low=1, integer=True)
    # first: frame 0 only | all: then the whole asset's rigid motion frame by frame (hypotheses around the
    # pose before), the start of a per-frame rigid part (deform=rigid_mlp with rigid_per_frame, or rigid)
    frames: str = setting("first", choices=("first", "all"))
    # frames=all: the turns tried around the pose before, +-local_degrees about each axis and twice that about the
    # vertical (at most 90: beyond it the vertical's turns wrap past a half turn)
    local_degrees: float = setting(35.0, low=0, high=90)
    # frames=all: each frame's depth once more from the mask area of the orientation found there (false: the
    # area of the pose before's orientation only, as until 2026-12-06; a turning elongated body changes its area)
    realign: bool = True
    # frames=all with one training view, where depth shows only as apparent size: each frame's depth along its
    # viewing ray is the median over this many frames centred on it (odd; 1: each frame's own)
    depth_window: int = setting(5, low=1, integer=True)
    # frames=all with one training view: the trajectory's rotations are kept only where one frame's turn from
    # frame 0 reaches this many degrees; below it, only its centre track (each frame a translation; 0: always kept)
    turn_gate: float = setting(45.0, low=0, high=180)
    # the turn gate applies to runs with at most this many training views (1: one view only, as until 2026-12-07).
    # Two opposite views (the front and the back) see a yaw as a change of width, which a gait also makes
    gate_views: int = setting(1, low=1, integer=True)
    # and only where, in some frame, the turned pose's pixel loss is at most turn_fit x that of the centre track
    # alone: a real turn shows the body's other side (the turning motions and the twists: 0.02-0.23), a body
    # deforming in place fits a rigid turn a little better everywhere (the Consistent4D videos: 0.51-0.56, with
    # turns of 75-99 degrees found). null: the angle alone, as until 2026-12-07
    turn_fit: Optional[float] = setting(None, low=0)
    # frames=all: trajectories followed at once, the lowest summed score over the frames winning (1: greedy, each
    # frame's best fit only, as until 2026-12-06; a turn and its mirror fit one view alike for a few frames)
    beam: int = setting(1, low=1, integer=True)
    # frames=all: each frame's fitting steps (successive halving) and polish steps on the asset itself. Fewer cut
    # the start's cost, but no smaller pair held the turns (turning_beam_steps6 / 9 / 12: a hop's turn lost, a turn
    # of 60 degrees a frame flipped, the humanoid's turns taken to the mirror)
    frame_steps: int = setting(15, low=3, integer=True)
    frame_polish: int = setting(10, low=0, integer=True)
    # frames=all: the spectral bands each frame's fit compares (its polish: two more), null: `bands`, as until
    # 2026-12-07. The frame before's pose is near, so the fit needs no global basin, and the finer bands tell a turn
    # from its mirror where the three lowest see one silhouette (experiments/trajectory_probe.py)
    frame_bands: Optional[int] = setting(None, low=1, integer=True)
    # frames=all: a prior on smooth turning. Each frame's score (beam_score: its pixel error, or its fitted loss) is
    # weighed by 1 + smooth x (the change, in
    # radians, of the turn per frame)^2 in the trajectories' sums, so that a branch jumping to a mirror and back
    # costs more than one turning steadily (0: the losses alone, as until 2026-12-07)
    smooth: float = setting(0.0, low=0)
    # frames=all: what ranks the beam's trajectories, frame by frame: pixels = each fit's whole asset rendered at
    # full size, its mean squared colour error (a turn and its mirror cast one silhouette in the low bands, not in
    # the fine detail); bands = the fit's own low-band loss (as until 2026-12-07)
    beam_score: str = setting("pixels", choices=("pixels", "bands"))
    # frames=all, where the turn gate kept the rotations: each frame's pose then refined (a turn and a translation)
    # on its full-size colour and mask error for this many Adam steps (tracking/refine.py), at refine_lr radians
    # (translation: x0.2) decaying to zero; with one view the depths are then the window's median again. 0: the
    # poses as the beam found them, as until 2026-12-07 (turning_bridge_bound10, with the bridge: the turns' 3D
    # error 0.144 -> 0.124 radii)
    refine_steps: int = setting(40, low=0, integer=True)
    refine_lr: float = setting(0.02, low=0, low_open=True)
    # the most the refine turns a frame (degrees; null: no bound, as until 2026-12-07). Unbounded, the rigid canonical's
    # best pixel match follows the part of a twisting body that turns (hopper_twist@1: frames 8 and 11 degrees off
    # refined to 27 and 33; trajectory_beam_pairs_bound10: the hopper's twist 0.114 -> 0.093 radii, the turns the same)
    refine_degrees: Optional[float] = setting(10.0, low=0, high=180)
    # the refine's translation with one training view: free (true), or in the view's image plane, each frame keeping
    # the depth the trajectory gave it (false: a rigid asset against an articulated body finds its apparent size
    # biased: free, the humanoid's turns 0.119 -> 0.146 radii in runs at bdd63ce / 5b60fb2, not kept)
    refine_depth: bool = False
    # frames=all, where the turn gate kept the rotations: an inner frame whose pose differs by more than bridge_degrees
    # from the pose between its neighbours' takes that pose where its pixel loss is at most (1 + bridge_margin) x its
    # own (tracking/refine.py, bridge_trajectory: a side-on articulated body fits a wrong turn as well; the turns' 3D
    # error 0.128 -> 0.123 radii, body turn 8.7 -> 7.0 degrees, against the refine alone at 923cda2). null: never,
    # as until 2026-12-07
    bridge_margin: Optional[float] = setting(0.3, low=0)
    bridge_degrees: float = setting(15.0, low=0, high=180)
    # the bridge over runs of up to this many wrong frames in a row, the longest first, each frame of a run
    # taking its pose on the way between the run's neighbours (1: one frame at a time between its two
    # neighbours, as until 2026-12-07; two wrong frames side by side each took half of the other's error)
    bridge_span: int = setting(1, low=1, integer=True)
    # frames=all with one training view: each frame's depth measured again at its final pose from the ratio of the
    # render's silhouette to the target's (tracking/depth.py): its area, height or width, or (smoothest) the one whose
    # depth track over the frames is the least rough, then the window's median. Probes of the start alone: mean depth
    # error 0.084 -> 0.050 radii on the turning sequences, 0.074 -> 0.051 on the pairs'; trained, the turns' 3D error
    # 0.124 -> 0.105 (turning_depth_cue), the presets and pairs 0.131 -> 0.126 (trajectory_beam_pairs_cue).
    # null: the trajectory's depths, as until 2026-12-07
    depth_cue: Optional[str] = setting("smoothest", choices=(None, "area", "height", "width", "smoothest"))


# --------------------------------------------------------------------------------------------------
# What a run evaluates and how it runs
# --------------------------------------------------------------------------------------------------
@dataclass
class AverageSettings:
    """The ``average`` group: the tracked result as an exponential moving average of the last steps'
    weights (run/averaging.py; beyond the paper)."""

    # The weight of the past: a window of about 1 / (1 - decay) steps. 0: the last step's weights (the paper)
    decay: float = setting(0.98, low=0, high=0.999)
    # A fraction of max_steps before which nothing is averaged (nor before the spatial phase starts)
    start: float = setting(0.5, low=0, high=1)


@dataclass
class EvalSettings:
    every_n_steps: int = setting(0, low=0, integer=True)  # 0: only at the end
    lpips: str = setting("alex", choices=("alex", "vgg", "none"))
    progression_frames: int = setting(50, low=0, integer=True)  # frames of progression.gif (0: off)
    protocol: str = setting("ours", choices=_protocols)  # ours (per image, range 1) | gsgd (metrics.py)
    per_view: bool = False  # also PSNR / SSIM of each view (view_<name>_psnr)
    export_ply: bool = False  # every frame's tracked Gaussians as PLY (frames/, in the given asset's frame)
    videos: bool = True  # tracked.mp4 and orbit.mp4
    export_splat: bool = False  # also frames/frame_XXXX.splat (gsplat.export_splats)


@dataclass
class TrainerSettings:
    accelerator: str = setting("cpu", choices=("cpu", "gpu", "cuda"))
    precision: Any = 32  # Lightning's precision (the TimeNet's own: deform.precision)
    log_every_n_steps: int = setting(10, low=1, integer=True)
    enable_progress_bar: bool = True
    threads: Any = "auto"  # per process, torch and the C++ kernels: auto = cores / jobs at once, at most $OMP_NUM_THREADS


@dataclass
class RunConfig:
    """The root of ``conf/train.yaml``. Top-level values are the ones sweeps vary
    (``python train.py -m shift=0,0.4,0.8``)."""

    dataset: Any = MISSING  # a group of its own (conf/dataset/): each reader takes its own keys
    deform: DeformSettings = setting(factory=DeformSettings)
    loss: LossSettings = setting(factory=LossSettings)
    logger: Any = MISSING  # conf/logger/
    trainer: TrainerSettings = setting(factory=TrainerSettings)
    eval: EvalSettings = setting(factory=EvalSettings)
    average: AverageSettings = setting(factory=AverageSettings)

    # The start. The benchmark moves the canonical away from frame 0's pose (tracking/start.py): turned
    # by `rotation` degrees about `rotation_axis` and rescaled by `scale`, about its centre, then moved by
    # `shift` (a radius in units of the normalised asset, bounding radius 0.5) in a direction drawn from `seed`.
    shift: float = setting(0.5, low=0, what=" (a radius in units of the normalised asset)")
    rotation: float = setting(0.0, low=0, high=180, what=" (degrees)")
    rotation_axis: str = setting("random", choices=("random", "vertical"))  # random: an axis drawn from `seed`
    scale: float = setting(1.0, low=0, low_open=True, what=" (a factor on the canonical's size)")
    # How the tracker starts: search (the default: moments, then rotation hypotheses fitted on the low
    # spectral bands; tracking/search.py) | moments (translated to where the targets' mask moments put it;
    # tracking/align.py) | none (the moved asset, as in the paper). search and moments are beyond the paper.
    align: str = setting("search", choices=_align_methods)
    search: SearchSettings = setting(factory=SearchSettings)

    views: int = setting(1, choices=(1, 2, 4))  # training views: 1 -> [0], 2 -> [0, 180], 4 -> [0, 90, 180, 270] (azimuths)
    seed: int = setting(0, low=0, integer=True)  # the shift's direction and the step sampling
    max_steps: int = setting(500, low=1, integer=True)
    resolution: int = setting(96, low=8, integer=True, what=" (square images, pixels)")
    backend: str = setting("auto", choices=_backends)  # renderer: gsplat on CUDA, the C++ cpu one otherwise
    num_control_points: int = setting(150, low=1, integer=True)
    background: list = setting(factory=lambda: [1.0, 1.0, 1.0])  # targets and renders are composited over it
    progressive_frames: float = setting(0.2, low=0, high=1, what=" (a fraction of max_steps)")  # frames join over it (GSGD)
    finetune_appearance: bool = False  # also optimise an offset on the canonical colours (off, as in the paper)
    appearance_lr: float = setting(0.0025, low=0)
    arap_frames: int = setting(2, low=1, integer=True, what=" (frames sampled per step for ARAP)")
    # which: uniform (any arap_frames frames, as until 2026-12-07) or rendered (the step's rendered frame and
    # arap_frames - 1 others: the TimeNet runs over arap_frames frames a step instead of up to 1 + arap_frames;
    # the paper-scale step 7% shorter at 12 frames, quality level: experiments/results/shift_curves_arap_*). SC-GS
    # draws its two times within 0.05 of one random time
    arap_sampling: str = setting("uniform", choices=("uniform", "rendered"))
    lr_decay: float = setting(1.0, low=0, high=1, low_open=True, what=" (a fraction of max_steps)")  # SC4D / GSGD: 0.35

    ckpt_path: Optional[str] = None  # resume from this checkpoint (optimizer, LR and loss schedule included)
    check_memory: bool = True  # stop before the start when the run will not fit in the free memory (run/memory.py)
    skip_finished: bool = True  # a folder holding metrics.json of the same settings is returned as is
    out_dir: str = II("hydra:runtime.output_dir")
    task_name: str = "track"
