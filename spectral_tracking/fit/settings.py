"""Every setting of a fit (``python fit.py``), its default and its allowed values: defined here once.

`FitConfig` is the schema of ``conf/fit.yaml`` (stored in Hydra's ConfigStore as ``fit_schema`` when
this module is imported, `register`), so a key that is not here is an error and the YAML
holds no value of its own. `spectral_tracking.fit.run.check_settings` derives its checks from the
metadata below, as the tracker's `validate` does, then adds the checks that relate two settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional

from omegaconf import II, MISSING

from spectral_tracking.tracking.settings import setting

STRATEGIES = ("default", "spectral_gs")
DEFAULT_LR = {"means": 1.6e-4, "quats": 1e-3, "scales": 5e-3, "opacities": 5e-2, "sh0": 2.5e-3, "shN": 2.5e-3 / 20}


def _data_types() -> tuple:
    from spectral_tracking.fit.inputs import DATA_TYPES

    return DATA_TYPES


@dataclass
class FitData:
    path: str = MISSING  # a sequence folder, a Consistent4D video folder or a NeRF-synthetic folder
    # auto | folder | sequence | nerf_synthetic | consistent4d (readers of spectral_tracking.data.DATASETS);
    # auto never assumes a camera: numbered PNGs need type=consistent4d (its front camera)
    type: str = setting("auto", choices=_data_types)
    split: str = "train"  # NeRF-synthetic: which transforms_<split>.json
    frame: int = setting(0, low=0, integer=True)  # sequence / video: which frame is the canonical pose
    views: Any = None  # view names or indices to fit (null: the sequence's training views / all frames)


@dataclass
class Densify:
    """gsplat ``DefaultStrategy``'s arguments, shared by both strategies (names as in gsplat's docs).
    NB gsplat 1.5.3's DefaultStrategy never fires its periodic opacity reset (an operator-precedence
    slip in ``step % reset_every == 0 & step > 0``); both strategies share that behaviour."""

    refine_start_iter: int = setting(100, low=0, integer=True)
    refine_stop_iter: int = II("frac:${steps},0.75")
    refine_every: int = setting(100, low=1, integer=True)
    reset_every: int = setting(3000, low=1, integer=True)
    grow_grad2d: float = setting(0.0002, low=0)
    grow_scale3d: float = setting(0.01, low=0)
    prune_opa: float = setting(0.005, low=0, high=1)
    prune_scale3d: float = setting(0.1, low=0)
    absgrad: bool = False
    revised_opacity: bool = False
    verbose: bool = False


@dataclass
class SpectralGS:
    """`SpectralGSStrategy` only (Spectral-GS, arXiv 2409.12771, Sec. 5.1)."""

    spectral_threshold: float = setting(0.5, low=0)  # tau on the raw spectral entropy H = -sum p ln p (sphere: ln 3)
    normalized_entropy: bool = False  # true: compare H / ln 3 with tau instead (not the paper's reading)
    split_factor: float = setting(1.6, low=1, low_open=True)  # children's principal axis = parent's / factor (paper 1.6, write-up 2.0)
    # children at +-offset principal sigmas; null: span the parent's 3-sigma segment, 3 (1 - 1/split_factor), which
    # thins the needle between them; sqrt(1 - 1/split_factor^2) (0.78 at 1.6) keeps its covariance (fit/strategy.py)
    split_offset: Optional[float] = None
    max_spectral_splits: int = setting(3000, low=0, integer=True)  # per refine step, lowest entropy first (0 = no cap)


@dataclass
class FitConfig:
    """The root of ``conf/fit.yaml``. Writes canonical.ply (the standard 3DGS layout train.py
    consumes), fit_views.png, fit_log.csv and metrics.json into ``out``."""

    data: FitData = setting(factory=FitData)
    # default (gsplat DefaultStrategy) | spectral_gs (SpectralGSStrategy = default + the Spectral-GS split)
    strategy: str = setting("spectral_gs", choices=STRATEGIES)
    steps: int = setting(3000, low=1, integer=True)
    sh_degree: int = setting(0, low=0, high=3, integer=True)  # 0 (view-independent colour) is what GSGD-style tracking expects
    init: str = "random"  # random (uniform in the cameras' common view volume, carved by the masks) | path to a PLY
    num_points: int = setting(5000, low=1, integer=True)  # random init: number of points
    init_use_masks: bool = True  # random init: keep points inside every mask (visual hull)
    init_opacity: float = setting(0.1, low=0, high=0.999999, low_open=True)
    resolution: Optional[int] = setting(128, low=8, integer=True)  # longer image side in pixels (null: as stored)
    background: Any = "random"  # random (a new colour per step; masks define the alpha) | [r, g, b]
    views_per_step: int = setting(1, low=1, integer=True)  # views rendered per optimisation step
    ssim_weight: float = setting(0.2, low=0, high=1)  # loss = (1 - w) L1 + w (1 - SSIM), as in 3DGS
    lr: Dict[str, float] = setting(factory=dict)  # per-parameter Adam lr overrides (DEFAULT_LR's groups; means x scene_scale)
    means_lr_final_ratio: float = setting(0.01, low=0, low_open=True)  # the means' lr decays exponentially to this fraction
    scene_scale: Optional[float] = setting(None, low=0, low_open=True)  # null: 1.1 x the largest camera distance from the view-volume centre (gsplat)
    max_gaussians: int = setting(200000, low=0, integer=True)  # hard cap: prune the least opaque above this (0 = none)
    log_every: int = setting(100, low=1, integer=True)
    progress: bool = True
    backend: str = setting("auto", choices=("auto", "cpu", "torch", "gsplat"))  # the renderer
    device: str = setting("auto", choices=("auto", "cpu", "cuda"))
    seed: int = setting(0, low=0, integer=True)
    out: Optional[str] = None  # where outputs go (null: Hydra's run dir)
    overwrite: bool = False  # true: replace an earlier fit's canonical.ply / metrics.json in `out` (a dataset's folder is always refused)
    densify: Densify = setting(factory=Densify)
    spectral_gs: SpectralGS = setting(factory=SpectralGS)


def register() -> None:
    """Store `FitConfig` in Hydra's ConfigStore as ``fit_schema``, the schema ``conf/fit.yaml`` starts
    from (done on import: whoever composes a fit imports this module)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="fit_schema", node=FitConfig)


register()
