"""The experiment scripts: aggregation on hand-made rows with known answers, and each script's
--quick version end to end (tiny runs; a rerun skips every finished run)."""

import importlib

import pytest

from experiments import harness


def row(creature, loss, shift, seed, psnr, err=None, **kw):
    return {"creature": creature, "loss": loss, "shift": shift, "seed": seed, "train_psnr": psnr, "3d_mean_error": err, **kw}


ROWS = [
    row("fox", "spectral", 0.0, 0, 30.0, 0.10), row("fox", "spectral", 0.8, 0, 29.5, 0.15),  # success
    row("fox", "spectral", 0.0, 1, 28.0, 0.10), row("fox", "spectral", 0.8, 1, 26.0, 0.12),  # PSNR 2 dB down
    row("frog", "spectral", 0.0, 0, 20.0, 0.20), row("frog", "spectral", 0.8, 0, 19.5, 0.50),  # 3D error too high
    row("frog", "spectral", 0.0, 1, 22.0, None), row("frog", "spectral", 0.8, 1, 21.2, None),  # no truth: PSNR decides
]


def test_summarize_means_and_per_creature_spread():
    s = harness.summarize(ROWS, ["loss", "shift"], "train_psnr", spread_over="creature")
    assert s[("spectral", 0.8)]["mean"] == pytest.approx((29.5 + 26.0 + 19.5 + 21.2) / 4)
    assert s[("spectral", 0.8)]["n"] == 4
    assert s[("spectral", 0.8)]["min"] == pytest.approx((19.5 + 21.2) / 2)  # frog's mean
    assert s[("spectral", 0.8)]["max"] == pytest.approx((29.5 + 26.0) / 2)  # fox's mean
    plain = harness.summarize(ROWS, ["loss", "shift"], "train_psnr")
    assert plain[("spectral", 0.0)]["min"] == 20.0 and plain[("spectral", 0.0)]["max"] == 30.0
    assert harness.summarize(ROWS, ["loss", "shift"], "3d_mean_error")[("spectral", 0.8)]["n"] == 3  # None skipped


def test_success_rate_against_the_same_cases_unshifted_run():
    rates = harness.success_rates(ROWS, ["creature", "seed", "loss"], ["loss", "shift"])
    assert rates == {("spectral", 0.8): {"rate": 0.5, "n": 4}}
    assert harness.success(row("a", "s", 0.8, 0, 29.0, 0.2), row("a", "s", 0.0, 0, 30.0, 0.1))  # exactly at both limits
    assert not harness.success(row("a", "s", 0.8, 0, 28.99, 0.1), row("a", "s", 0.0, 0, 30.0, 0.1))


def test_csv_round_trip(tmp_path):
    path = harness.write_csv(ROWS, tmp_path / "r.csv")
    back = harness.read_csv(path)
    assert back[0]["train_psnr"] == 30.0 and back[6]["3d_mean_error"] is None and back[0]["creature"] == "fox"


def test_shift_curves_quick_runs_and_skips_finished_runs(tmp_path, capsys):
    from experiments import shift_curves

    assert shift_curves.main(["--quick", "--out", str(tmp_path)]) == 0
    rows = harness.read_csv(tmp_path / "results.csv")
    assert len(rows) == 4 and {r["loss"] for r in rows} == {"spectral", "pixel"}
    assert {"creature", "shift", "seed", "train_psnr", "novel_psnr", "3d_mean_error", "3d_size_ratio"} <= set(rows[0])
    table = (tmp_path / "table.md").read_text()
    assert "Success rate" in table and "Ours - Pixel" in table and (tmp_path / "shift_curves.png").is_file()
    capsys.readouterr()
    assert shift_curves.main(["--quick", "--out", str(tmp_path)]) == 0
    assert "4 runs: 4 finished, 0 to run" in capsys.readouterr().out


SCRIPTS = ["table1", "table4", "ablation_method", "ablation_pixel_loss", "multiview", "table2", "budget", "rotation_curves",
           "scale_curves", "turning"]
PLOTS = {"multiview": "multiview.png", "budget": "budget.png", "rotation_curves": "rotation_curves.png", "scale_curves": "scale_curves.png"}


@pytest.mark.parametrize("script", SCRIPTS)
def test_quick_version_runs_and_a_rerun_skips_every_finished_run(tmp_path, capsys, script):
    if script in ("table1", "table4"):
        from experiments import paper_tables

        main = lambda argv: paper_tables.main(int(script[-1]), argv)  # noqa: E731
    else:
        main = importlib.import_module(f"experiments.{script}").main
    assert main(["--quick", "--jobs", "2", "--out", str(tmp_path)]) == 0
    rows = harness.read_csv(tmp_path / "results.csv")
    assert rows and {"name", "creature", "seed", "train_psnr", "novel_psnr", "fingerprint"} <= set(rows[0])
    assert all(r["train_psnr"] is not None and r["train_psnr"] > 5 for r in rows)
    assert (tmp_path / "table.md").read_text().count("|") > 10
    if script in PLOTS:  # the figures: a PNG with something drawn
        assert (tmp_path / PLOTS[script]).stat().st_size > 10_000
    capsys.readouterr()
    assert main(["--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"{len(rows)} runs: {len(rows)} finished, 0 to run" in out


@pytest.mark.parametrize("default", [True, False])
def test_pairs_argument_bare_means_the_six_pairs_and_no_pairs_means_none(default, capsys):
    import argparse

    ap = argparse.ArgumentParser()
    harness.add_pairs_argument(ap, default=default)
    assert ap.parse_args([]).pairs == (harness.PAIRS if default else [])
    assert ap.parse_args(["--pairs"]).pairs == harness.PAIRS
    assert ap.parse_args(["--no-pairs"]).pairs == []
    assert ap.parse_args(["--pairs", "humanoid_jump"]).pairs == ["humanoid_jump"]
    with pytest.raises(SystemExit):
        ap.parse_args(["--pairs", "dog_walk"])
    assert "--pairs: unknown creature/motion dog_walk" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ap.parse_args(["--pairs", "--no-pairs"])


def test_the_fingerprints_list_of_timenet_deformations_is_the_registrys():
    from spectral_tracking.deform import DEFORMATIONS, MLPDeformation
    from spectral_tracking.run.folder import TIMENET_DEFORMATIONS

    assert set(TIMENET_DEFORMATIONS) == {n for n, cls in DEFORMATIONS.items() if issubclass(cls, MLPDeformation)}


def test_paper_scale_cases_compose():
    """The GPU commands (--scale paper) are written: every case of every script composes."""
    from experiments import ablation_pixel_loss, curves, multiview, paper_tables, turning
    from experiments.variants import VARIANTS, overrides_of

    every = {name: overrides_of([name]) for name in VARIANTS}
    cases = [
        *curves.cases("shift", "paper", harness.PRESETS[:1], [0.0, 0.8], [0], pairs=harness.PAIRS[:1]),
        *curves.cases("rotation", "paper", harness.PRESETS[:1], [90.0], [0]),
        *turning.cases("paper", turning.TURNING, [1], [0], 0.0),
        *harness.grid(harness.SCALES["clean"]["paper"], every, harness.PRESETS[:1], [0], [0.8]),
        *harness.grid(harness.SCALES["realistic"]["paper"], ablation_pixel_loss.variants(), harness.PRESETS[:1], [0], [0.6]),
        *harness.grid(harness.SCALES["clean"]["paper"], multiview.variants([1, 4]), harness.PRESETS[:1], [0], [0.8]),
        *harness.grid([], paper_tables.variants("paper"), harness.PRESETS[:1], [0], [0.5]),
    ]
    for case in cases:
        cfg = harness.compose_case(case)
        assert cfg.max_steps == 10000 and cfg.resolution == 512 and cfg.num_control_points == 800, case.name
        assert cfg.trainer.accelerator == "gpu"


def test_a_committed_results_csv_counts_as_finished_runs(tmp_path, capsys):
    """A later sitting on a fresh clone has the CSV but not the run folders: nothing reruns."""
    import shutil

    from experiments import shift_curves

    assert shift_curves.main(["--quick", "--out", str(tmp_path)]) == 0
    before = harness.read_csv(tmp_path / "results.csv")
    shutil.rmtree(tmp_path / "runs")
    capsys.readouterr()
    assert shift_curves.main(["--quick", "--out", str(tmp_path)]) == 0
    assert "4 runs: 4 finished, 0 to run" in capsys.readouterr().out
    assert harness.read_csv(tmp_path / "results.csv") == before


def test_collect_writes_the_finished_runs_and_starts_none(tmp_path, capsys):
    """--collect: a long sweep's partial results, to commit; the same command without it runs the rest."""
    import shutil

    from experiments import shift_curves

    assert shift_curves.main(["--quick", "--out", str(tmp_path)]) == 0
    rows = harness.read_csv(tmp_path / "results.csv")
    gone = rows[0]["name"]
    shutil.rmtree(tmp_path / "runs" / gone)
    (tmp_path / "results.csv").unlink()
    capsys.readouterr()
    assert shift_curves.main(["--quick", "--out", str(tmp_path), "--collect"]) == 1  # not every run finished
    out = capsys.readouterr().out
    assert "4 runs: 3 finished, 1 not run (--collect: none started)" in out
    assert not (tmp_path / "runs" / gone).exists()
    assert sorted(r["name"] for r in harness.read_csv(tmp_path / "results.csv")) == sorted(r["name"] for r in rows[1:])
    assert "3/4 runs finished" in (tmp_path / "table.md").read_text()


def test_a_result_made_by_another_config_is_run_again(tmp_path, capsys, monkeypatch):
    """Every row carries its config's fingerprint; when the config a case resolves to changes (a
    changed default, emulated here by composing every case with one more setting, or a changed
    override), rows and run folders of the old config are run again, never reused."""
    import shutil

    from experiments import shift_curves

    assert shift_curves.main(["--quick", "--out", str(tmp_path)]) == 0
    rows = harness.read_csv(tmp_path / "results.csv")
    assert all(isinstance(r["fingerprint"], str) and len(r["fingerprint"]) == 16 for r in rows)
    capsys.readouterr()
    compose = harness.compose_case
    monkeypatch.setattr(harness, "compose_case", lambda case, *a: compose(
        harness.Case(case.name, [*case.overrides, "loss.lambda_arap=0.5"], case.labels), *a))
    shutil.rmtree(tmp_path / "runs")  # only the committed CSV: its rows are of the old config
    assert shift_curves.main(["--quick", "--out", str(tmp_path)]) == 0
    assert "4 runs: 0 finished, 4 to run (4 of them made by another config, 0 resuming)" in capsys.readouterr().out
    monkeypatch.undo()
    # a changed override: the run folders (and rows) of the old config are started over
    assert shift_curves.main(["--quick", "--out", str(tmp_path), "--override", "loss.lambda_arap=2"]) == 0
    out = capsys.readouterr().out
    assert "4 runs: 0 finished, 4 to run (4 of them made by another config, 0 resuming)" in out and "FAILED" not in out


def test_an_interrupted_run_of_the_same_config_is_counted_as_resuming(tmp_path, capsys):
    """A run folder without metrics.json whose run_meta.json names this config resumes; the count says
    so instead of calling it another config's."""
    from experiments import shift_curves

    assert shift_curves.main(["--quick", "--out", str(tmp_path)]) == 0
    (tmp_path / "results.csv").unlink()
    name = min(p.name for p in (tmp_path / "runs").iterdir())
    (tmp_path / "runs" / name / "metrics.json").unlink()
    capsys.readouterr()
    assert shift_curves.main(["--quick", "--out", str(tmp_path)]) == 0
    assert "4 runs: 3 finished, 1 to run (0 of them made by another config, 1 resuming)" in capsys.readouterr().out
    assert (tmp_path / "runs" / name / "metrics.json").exists()


@pytest.mark.slow
def test_an_experiment_through_submitit_runs_each_run_as_a_job_and_skips_finished(tmp_path, capsys):
    """--launcher local_processes: the engine of --launcher slurm (submitit), on this machine."""
    from experiments import shift_curves

    assert shift_curves.main(["--quick", "--launcher", "local_processes", "--jobs", "2", "--out", str(tmp_path)]) == 0
    rows = harness.read_csv(tmp_path / "results.csv")
    assert len(rows) == 4 and all(r["train_psnr"] > 5 for r in rows)
    assert len(list((tmp_path / ".submitit").glob("*/*_0_result.pkl"))) == 4  # one submitit job per run
    capsys.readouterr()
    assert shift_curves.main(["--quick", "--launcher", "local_processes", "--out", str(tmp_path)]) == 0
    assert "4 runs: 4 finished, 0 to run" in capsys.readouterr().out


def test_slurm_parameters_reach_submitit_with_their_prefixes(tmp_path, monkeypatch):
    import os

    import submitit

    fake = tmp_path / "bin"  # submitit looks for srun before it takes parameters; nothing is submitted
    fake.mkdir()
    (fake / "srun").write_text("#!/bin/sh\nexit 1\n")
    (fake / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")

    assert harness.parse_slurm(["partition=gpu", "timeout_min=240"]) == {"partition": "gpu", "timeout_min": 240}
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        harness.parse_slurm(["partition"])
    executor = harness._submitit_executor("slurm", tmp_path, 8, {"partition": "gpu", "account": "lab", "timeout_min": 240})
    assert isinstance(executor, submitit.AutoExecutor)
    params = executor._executor.parameters  # submitit's SlurmExecutor: sbatch's options
    assert params["partition"] == "gpu" and params["account"] == "lab" and params["time"] == 240
    assert params["cpus_per_task"] == 8 and params["gpus_per_node"] == 1


def test_a_setting_added_since_that_does_not_apply_keeps_a_finished_run_finished(tmp_path):
    """folder.ADDED_SETTINGS: a run recorded before search.realign / depth_window / turn_gate existed
    (its fingerprint: the config without them and the later search.beam and loss.switch_prior) still
    counts as finished where they do not apply (the paper's start, align=none; or frames=first), and is
    run again where they do (frames=all). A frames=all run recorded before search.beam stays finished
    at beam 1 (the greedy search it ran) and is run again at beam 2. A run recorded before
    loss.switch_prior stays finished at its default (zero) and in the Pixel baseline (no switch), and is
    run again at switch_prior=start. One recorded before loss.rescue_iou is run again where the rescue is
    on (it may fire), and stays finished with it off or in the Pixel baseline. A frames=all run recorded
    before search.frame_steps / frame_polish (15 and 10 steps a frame) stays finished at 15 and 10 (the
    defaults), and is run again at 9 and 5; one recorded before loss.rescue_recentre stays finished
    with it off; one recorded while the steps defaulted to 9 / 5 or 12 / 5 stays finished without a
    trajectory (folder.PAST_DEFAULTS)."""
    import hashlib
    import json

    from omegaconf import OmegaConf

    from spectral_tracking.run.config import compose
    from spectral_tracking.run.folder import NOT_IN_FINGERPRINT, RunRefused, check_same_run, config_fingerprints

    def without(cfg, keys) -> str:
        kept = {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k not in NOT_IN_FINGERPRINT}
        for key in keys:
            group, _, name = key.rpartition(".")
            del (kept[group] if group else kept)[name]
        return hashlib.sha1(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]

    # the trajectory, scored as before search.beam_score (whose default, pixels, changes every trajectory run)
    # and before search.refine_steps (whose default, 40, changes every trajectory run too)
    trajectory = ["align=search", "search.frames=all", "deform=rigid_mlp_frames", "search.beam_score=bands",
                  "search.refine_steps=0", "search.bridge_margin=null", "search.depth_cue=null"]
    steps15 = [*trajectory, "search.frame_steps=15", "search.frame_polish=10"]  # the trajectory's steps (the defaults)
    pixels = [o for o in steps15 if o != "search.beam_score=bands"]
    refined = [o for o in pixels if o != "search.refine_steps=0"]  # the refine's defaults (40 steps)
    bridged = [o for o in pixels if o != "search.bridge_margin=null"]  # the bridge's defaults (0.3)
    cued = [o for o in steps15 if o != "search.depth_cue=null"]  # the depths from the silhouettes (smoothest)
    deform = ("deform.pos_anneal", "deform.pos_freqs", "average", "loss.rescue_iou", "loss.rescue_bands",
              "search.frame_steps", "search.frame_polish", "loss.rescue_recentre", "deform.adam_eps",
              "search.frame_bands", "search.smooth", "search.gate_views", "search.beam_score",
              "search.refine_steps", "search.refine_lr", "search.refine_depth", "search.bridge_margin",
              "search.bridge_degrees", "search.refine_degrees", "search.depth_cue",
              "search.bridge_span", "arap_sampling", "search.turn_fit")  # added after all the others
    search = ("search.realign", "search.depth_window", "search.turn_gate", "search.beam", "loss.switch_prior")
    for overrides, keys, applies in ((["align=none"], search, False),
                                     (["align=search"], search, False),
                                     (trajectory, search, True),
                                     (steps15, ("search.beam", "loss.switch_prior"), False),
                                     ([*steps15, "search.beam=2"], ("search.beam", "loss.switch_prior"), True),
                                     ([], ("loss.switch_prior",), False),
                                     (["loss=pixel", "loss.switch_prior=start"], ("loss.switch_prior",), False),
                                     (["loss.switch_iou=null", "loss.switch_prior=start"], ("loss.switch_prior",), False),
                                     (["loss.switch_prior=start"], ("loss.switch_prior",), True),
                                     (["deform.pos_freqs=10", "deform.pos_anneal=0"], (), False),
                                     (["deform.pos_freqs=3"], (), True),
                                     (["deform=direct", "deform.pos_freqs=3"], (), False),  # no TimeNet: changes nothing
                                     (["deform.pos_anneal=0.5"], (), True),
                                     (["average.decay=0.98"], (), True),
                                     (["loss.rescue_iou=0.1"], (), True),
                                     (["loss=pixel", "loss.rescue_iou=0.1"], (), False),
                                     (steps15, (), False),
                                     ([*trajectory, "search.frame_steps=9", "search.frame_polish=5"], (), True),
                                     ([*steps15, "search.frame_polish=4"], (), True),
                                     (["deform.adam_eps=1e-15"], (), False),
                                     (["deform.adam_eps=1e-4"], (), True),
                                     (["align=search", "search.frame_bands=6"], (), False),  # no trajectory: ignored
                                     ([*steps15, "search.frame_bands=6"], (), True),
                                     (["align=search", "search.smooth=1"], (), False),  # no trajectory: ignored
                                     ([*steps15, "search.smooth=0"], (), False),
                                     ([*steps15, "search.smooth=1"], (), True),
                                     ([*steps15, "search.gate_views=2"], (), False),  # one view: gated as before
                                     ([*steps15, "views=2", "search.gate_views=2"], (), True),
                                     ([*steps15, "views=3", "search.gate_views=2"], (), False),
                                     (["align=search", "search.beam_score=pixels"], (), False),  # no trajectory
                                     (pixels, (), True),
                                     (["align=search", "search.refine_steps=40"], (), False),  # no trajectory
                                     (refined, (), True),
                                     (["align=search", "search.bridge_margin=0.3"], (), False),  # no trajectory
                                     (bridged, (), True),
                                     ([*steps15, "search.refine_degrees=10"], (), False),  # no refine: ignored
                                     ([*refined, "search.refine_degrees=10"], (), True),
                                     (["align=search", "search.depth_cue=smoothest"], (), False),  # no trajectory
                                     ([*cued, "views=2"], (), False),  # two views: not measured again
                                     (cued, (), True),
                                     ([*steps15, "search.bridge_span=2"], (), False),  # no bridge: ignored
                                     (["arap_sampling=uniform"], (), False),
                                     (["arap_sampling=rendered"], (), True),
                                     (["align=search", "search.turn_fit=0.3"], (), False),  # no trajectory
                                     ([*steps15, "search.turn_fit=0.3"], (), True)):
        off = [] if any(o.startswith("average.") for o in overrides) else ["average.decay=0"]  # the default averages
        off += [] if any(o.startswith("loss.rescue") for o in overrides) else ["loss.rescue_iou=null"]  # and rescues
        cfg = compose(["experiment=sc4d_mlp_cpu", *off, *overrides, f"out_dir={tmp_path / 'run'}"])
        old = without(cfg, (*keys, *deform))
        fps = config_fingerprints(cfg)
        assert (old in fps) is not applies and fps[0] != old
        folder = tmp_path / "_".join(["run", *overrides, *keys]).replace("=", "-")
        folder.mkdir()
        (folder / "run_meta.json").write_text(json.dumps({"config_fingerprint": old}))
        if applies:
            with pytest.raises(RunRefused, match="different settings"):
                check_same_run(folder, fps, "the results")
        else:
            check_same_run(folder, fps, "the results")
    # a run recorded with the rescue, before its recentring: finished with the recentring off, run again with it on
    later = ("search.frame_steps", "search.frame_polish", "loss.rescue_recentre", "deform.adam_eps", "search.frame_bands",
             "search.smooth", "search.gate_views", "search.beam_score", "search.refine_steps", "search.refine_lr",
             "search.refine_depth", "search.bridge_margin", "search.bridge_degrees", "search.refine_degrees",
             "search.depth_cue", "search.bridge_span", "arap_sampling", "search.turn_fit")
    for recentre, applies in ((0.0, False), (1.0, True)):
        cfg = compose(["experiment=sc4d_mlp_cpu", "average.decay=0", f"loss.rescue_recentre={recentre}",
                       f"out_dir={tmp_path / 'run'}"])
        assert (without(cfg, later) in config_fingerprints(cfg)) is not applies
    # a bridged trajectory recorded before search.bridge_span: finished at span 1, run again at 2
    for span, applies in ((1, False), (2, True)):
        cfg = compose(["experiment=sc4d_mlp_cpu", "average.decay=0", "loss.rescue_iou=null", *bridged,
                       f"search.bridge_span={span}", f"out_dir={tmp_path / 'run'}"])
        assert (without(cfg, ("search.bridge_span", "arap_sampling", "search.turn_fit")) in config_fingerprints(cfg)) is not applies
    # folder.PAST_DEFAULTS: a run recorded while the trajectory's steps defaulted to 9 / 5 or 12 / 5 stays
    # finished where it has no trajectory (it never read them), and is run again where it has one
    for overrides, finished in (([], True), (trajectory, False)):
        now = compose(["experiment=sc4d_mlp_cpu", *overrides, f"out_dir={tmp_path / 'run'}"])
        for steps, polish in ((9, 5), (12, 5)):
            then = compose(["experiment=sc4d_mlp_cpu", *overrides, f"search.frame_steps={steps}",
                            f"search.frame_polish={polish}", f"out_dir={tmp_path / 'run'}"])
            assert (config_fingerprints(then)[0] in config_fingerprints(now)) is finished


def test_trajectory_probe_quick_follows_the_turn(tmp_path, capsys):
    """experiments/trajectory_probe.py --quick: the start's trajectory of the turning quadruped (4
    frames, 48 px) against the truth, printed per frame; its turn is followed within 20 degrees."""
    from experiments import trajectory_probe

    assert trajectory_probe.main(["--quick", "--frames", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("quadruped_turn@0:"))
    assert float(line.split("max")[1].split()[0]) < 20  # the worst frame's rotation error (degrees)
    assert "found yaw" in out and "mean over the turns (1)" in out


def test_frames_pairs_each_case_with_its_reference_frame_by_frame(tmp_path, capsys):
    """experiments/frames.py --pairs: a run 1.2 dB better on every frame against one better on a
    single frame; a folder of runs without "frames" is refused with a line naming the file."""
    import csv
    import json

    from experiments import frames

    folder = tmp_path / "null"
    rows = []
    for creature, psnrs in (("a", ([30.0] * 4, [31.2] * 4)), ("b", ([30.0] * 4, [30.0, 30.0, 34.0, 30.0]))):
        for rotation, values in zip((0.0, 0.01), psnrs):
            name = f"{creature}_spectral_rotation{rotation:g}_seed0"
            (folder / "runs" / name).mkdir(parents=True)
            (folder / "runs" / name / "metrics.json").write_text(json.dumps({"frames": {"train_psnr": values}}))
            rows.append({"name": name, "creature": creature, "loss": "spectral", "rotation": rotation, "seed": 0,
                         "train_psnr": sum(values) / 4})
    with (folder / "results.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    assert frames.main(["--pairs", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "| a_spectral_rotation0.01_seed0 | +1.20 | 4 of 4 | +1.20 | +1.20 | +1.20 |" in out
    # one frame 4 dB better: 1 dB on the mean of PSNRs, 0.71 pooled (its squared error 0.40x, the mean 0.85x)
    assert "| b_spectral_rotation0.01_seed0 | +1.00 | 1 of 4 | +0.00 | +4.00 | +0.71 |" in out
    assert "the 1 pairs more than 1 dB apart: the better run better in 100% of the frames" in out
    # a null frame (not a number) is named, not averaged
    (folder / "runs" / "b_spectral_rotation0_seed0" / "metrics.json").write_text(
        json.dumps({"frames": {"train_psnr": [30.0, None, 30.0, 30.0]}}))
    with pytest.raises(SystemExit, match=r"b_spectral_rotation0_seed0/metrics.json: train_psnr is null .* frame\(s\) \[1\]"):
        frames.main(["--pairs", str(folder)])
    (folder / "runs" / "a_spectral_rotation0_seed0" / "metrics.json").write_text(json.dumps({"metrics": {}}))
    with pytest.raises(SystemExit, match='a_spectral_rotation0_seed0/metrics.json: no "frames"'):
        frames.main(["--pairs", str(folder)])
    # every label column tells cases apart; two references of one case are refused, naming both
    rows = [dict(r, views=1) for r in rows] + [dict(r, views=2, name=r["name"] + "_v2") for r in rows]
    with (folder / "results.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["name", "creature", "loss", "rotation", "seed", "views", "train_psnr"])
        w.writeheader()
        w.writerows(rows)
    assert [(a, b) for a, b, _ in frames.pairs(folder, "rotation")][:2] == [
        ("a_spectral_rotation0_seed0", "a_spectral_rotation0.01_seed0"),
        ("b_spectral_rotation0_seed0", "b_spectral_rotation0.01_seed0")]
    with (folder / "results.csv").open("a", newline="") as f:  # the same case twice at the reference
        csv.DictWriter(f, fieldnames=["name", "creature", "loss", "rotation", "seed", "views", "train_psnr"]).writerow(
            dict(rows[0], name="a_again"))
    with pytest.raises(SystemExit, match="a_spectral_rotation0_seed0 and a_again are both the reference"):
        frames.pairs(folder, "rotation")
