"""The typed settings (spectral_tracking/tracking/settings.py) are the one home of every default:
every config file composes against them, and no group file repeats one of their defaults."""

from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from spectral_tracking.errors import ConfigError
from spectral_tracking.run.config import check_fields, compose
from spectral_tracking.tracking.settings import RunConfig

CONF = Path(__file__).resolve().parents[1] / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_file_composes_against_the_typed_settings(name):
    cfg = compose([f"experiment={name}", "out_dir=/unused"])
    check_fields(cfg)  # every field's choices and range
    OmegaConf.resolve(cfg)
    assert cfg.task_name == name and int(cfg.loss.spectral_end) <= int(cfg.max_steps)


def test_a_cpu_experiment_differs_from_its_paper_twin_only_in_scale():
    for cpu in (n for n in EXPERIMENTS if n.endswith("_cpu")):
        a = OmegaConf.to_container(compose([f"experiment={cpu}", "out_dir=/x"]), resolve=True)
        b = OmegaConf.to_container(compose([f"experiment={cpu[:-4]}", "out_dir=/x"]), resolve=True)
        differ = {k for k in a if a[k] != b[k]}
        for group in ("loss", "deform"):
            differ |= {f"{group}.{k}" for k in a[group] if a[group][k] != b[group][k]}
        # the TimeNet's rate follows the step budget: Table 6's 2e-4 for 10k steps barely moves it in 500 (pos_freqs_lr001)
        rate = {"deform.lr_init", "deform.lr_final", "deform.radius_lr"} if cpu == "sc4d_mlp_cpu" else set()
        assert differ - {"loss", "deform"} <= {"dataset", "task_name", "max_steps", "num_control_points", "resolution",
                                               "loss.num_bands", "loss.spectral_end", "loss.arap_start_iter",
                                               *rate}, (cpu, differ)


def _defaults(schema, prefix=""):
    out = {}
    for f in fields(schema):
        value = f.default_factory() if f.default_factory is not MISSING else f.default
        if is_dataclass(value):
            out.update(_defaults(type(value), f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = value
    return out


def _flat(node, prefix=""):
    out = {}
    for k, v in node.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_no_group_file_repeats_a_default():
    """A default lives in settings.py only (the experiment files are the paper's Table 6 and say so)."""
    defaults = _defaults(RunConfig)
    for path in sorted(CONF.glob("*/*.yaml")):
        group = path.parent.name
        if group in ("experiment", "dataset", "logger"):  # Table 6; readers' own keys; logger options
            continue
        data = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
        for key, value in _flat({k: v for k, v in data.items() if k != "defaults"}, f"{group}.").items():
            if key in defaults:
                assert value != defaults[key] or key in ("loss.image", "deform.name", "trainer.accelerator"), \
                    f"{path.relative_to(CONF)}: {key}={value!r} repeats the default in tracking/settings.py"


@pytest.mark.parametrize("override, key", [("views=3", "views"), ("align=sideways", "align"), ("loss.norm=l3", "loss.norm"),
                                           ("deform.precision=fp8", "deform.precision"), ("eval.protocol=x", "eval.protocol"),
                                           ("backend=opengl", "backend"), ("deform.name=bogus", "deform.name")])
def test_choices_come_from_the_settings_and_their_registries(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        check_fields(compose([override, "out_dir=/x"]))


@pytest.mark.parametrize("deform, ok", [("mlp", False), ("rigid_mlp", False), ("rigid", True),
                                         ("rigid_mlp +deform.kwargs.rigid_per_frame=true", True), ("rigid_mlp_frames", True)])
def test_a_trajectory_start_needs_a_per_frame_rigid_part_before_anything_runs(deform, ok):
    from spectral_tracking.run.config import validate

    name, *extra = deform.split()
    cfg = compose([f"deform={name}", *extra, "search.frames=all", "out_dir=/x"])
    if ok:
        validate(cfg)
    else:
        with pytest.raises(ConfigError, match=r"^search\.frames=all starts a per-frame rigid part, which deform=.* has not: "
                                              r"use deform=rigid_mlp_frames \(rigid_mlp with one rigid motion per frame\), or deform=rigid$"):
            validate(cfg)


def test_a_misspelt_top_level_key_added_with_plus_is_refused():
    """``+shfit=0.3`` would be kept beside ``shift`` and ignored: it is refused, with the setting meant."""
    from spectral_tracking.run.config import validate

    with pytest.raises(ConfigError, match=r"^shfit: no such setting; did you mean shift\?"):
        validate(compose(["+shfit=0.3", "out_dir=/x"]))
    with pytest.raises(ConfigError, match=r"^bogus_key: no such setting"):
        validate(compose(["+bogus_key=1", "out_dir=/x"]))


@pytest.mark.parametrize("experiment", [[], ["experiment=sc4d_mlp_cpu"]])
def test_start_trajectory_is_the_trajectory_variants_overrides(experiment):
    """``start=trajectory`` (conf/start/) is the experiments' ``trajectory_beam`` variant with the turn gate's fit
    test (``search.turn_fit=0.3``) in one word, with or without an experiment file, and passes the checks that a
    trajectory start needs."""
    from experiments.variants import VARIANTS
    from spectral_tracking.run.config import validate

    one = compose([*experiment, "start=trajectory", "out_dir=/x"])
    four = compose([*experiment, *VARIANTS["trajectory_beam"].overrides, "search.turn_fit=0.3", "out_dir=/x"])
    assert OmegaConf.to_container(one, resolve=True) == OmegaConf.to_container(four, resolve=True)
    assert one.search.frames == "all" and one.deform.kwargs.rigid_per_frame
    validate(one)
