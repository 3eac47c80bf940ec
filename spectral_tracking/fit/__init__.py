"""Step one of the workflow: fit a canonical 3DGS asset to posed RGBA images (``python fit.py ...``).

    one frame of a Sequence (cameras + RGB + masks)   inputs.py   `load_frame`, `pick_frame`
    -> random init in the common view volume,          init.py     `init_random`, `init_from_ply`
       or a PLY
    -> L1 + 0.2 D-SSIM with gsplat's DefaultStrategy   loop.py     `fit`, `l1_dssim_loss`
       or the Spectral-GS SpectralGSStrategy             strategy.py `SpectralGSStrategy`
    -> canonical.ply (standard 3DGS layout, what       run.py      `run(cfg)` (conf/fit.yaml; settings.py: `FitConfig`)
       train.py consumes) + fit_views.png + metrics.json

The fit runs in the input's world frame (no normalisation): the tracker's `load_dataset` moves the
cameras together with the asset when it normalises, so the two stay lined up. Each step renders one
random training view (``views_per_step``), composites target and render over the same background (a
random colour per step by default, which makes the alpha match the masks), and follows gsplat's loop
order: backward, optimizer step, then the strategy's ``step_post_backward`` (which reads
``meta["means2d"].grad``).

Nothing lost, nothing silent: every setting is checked (`check_settings`) and ``out`` is refused
when it holds an earlier fit (unless ``overwrite=true``) or is a dataset's own folder (always;
`check_out_folder`) before anything is read or written; ``out`` is created only once the inputs
are read. Numbered PNGs have no cameras: fitting them assumes the Consistent4D front camera, which
``data.type=consistent4d`` asks for by name. Errors of `spectral_tracking.errors.USER_ERRORS` are one line in fit.py.
"""

from spectral_tracking.fit.init import init_from_ply, init_random, knn_scale
from spectral_tracking.fit.inputs import DATA_TYPES, FitInputError, load_frame, pick_frame, source_of
from spectral_tracking.fit.loop import (
    FitResult,
    FitSettings,
    build_strategy,
    fit,
    gaussians_to_params,
    l1_dssim_loss,
    make_optimizers,
    params_to_gaussians,
    pooled_psnr,
    render_views,
)
from spectral_tracking.fit.settings import DEFAULT_LR, STRATEGIES, FitConfig
from spectral_tracking.fit.run import check_out_folder, check_settings, run, save_views_png
from spectral_tracking.fit.strategy import SpectralGSStrategy

__all__ = [
    "DATA_TYPES", "DEFAULT_LR", "STRATEGIES", "FitConfig", "FitInputError", "FitResult", "FitSettings", "SpectralGSStrategy",
    "build_strategy", "check_out_folder", "check_settings", "fit", "gaussians_to_params", "init_from_ply", "init_random", "knn_scale", "l1_dssim_loss",
    "load_frame", "make_optimizers", "params_to_gaussians", "pick_frame", "pooled_psnr", "render_views", "run",
    "save_views_png", "source_of",
]
