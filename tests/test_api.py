"""The Python API (`spectral_tracking.track`), the console scripts' config lookup, and the
notebook that walks a user through them (executed on tiny settings)."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from spectral_tracking import TrackResult, load_ply, track
from spectral_tracking.api import _flatten

REPO = Path(__file__).resolve().parents[1]
TINY = dict(max_steps=6, num_control_points=16, loss={"num_bands": 3}, trainer="debug", logger="none",
            eval={"lpips": "none", "videos": False, "progression_frames": 0})


@pytest.fixture(scope="module")
def sequence_folder(tmp_path_factory) -> Path:
    from spectral_tracking.data import generate

    return generate(preset="quadruped_walk", frames=4, resolution=32, root=tmp_path_factory.mktemp("data"))


def test_settings_become_overrides():
    assert _flatten({"shift": 0.5, "deform": "rigid_mlp", "finetune_appearance": True, "ckpt_path": None,
                     "background": [1.0, 0.0, 0.0], "eval": {"lpips": "none", "export_ply": False}}) == [
        "shift=0.5", "deform=rigid_mlp", "finetune_appearance=true", "ckpt_path=null", "background=[1.0,0.0,0.0]",
        "eval.lpips=none", "eval.export_ply=false"]
    # a string the override grammar would not read plainly is quoted: it neither fails to parse nor splits a sweep
    assert _flatten({"logger": {"run_name": "my run, 2"}, "note": "it's"}) == ["logger.run_name='my run, 2'", "note='it\\'s'"]


def test_an_out_dir_the_override_grammar_would_misread_is_passed_whole(sequence_folder, tmp_path):
    """Folder names such as ``run (1)`` or ``a,b``, ordinary on a desktop, are a run's folder like any other."""
    from spectral_tracking.data import load_sequence

    canonical = load_ply(sequence_folder / "canonical.ply")
    out = tmp_path / "runs (1), copy"
    result = track(canonical, load_sequence(sequence_folder), out_dir=out, shift=0.0, **TINY)
    assert result.out_dir == out and (out / "metrics.json").is_file()


def test_track_a_sequence_object_with_a_canonical(sequence_folder, tmp_path):
    from spectral_tracking.data import load_sequence

    canonical = load_ply(sequence_folder / "canonical.ply")
    result = track(canonical, load_sequence(sequence_folder), out_dir=tmp_path / "run", shift=0.2, **TINY)
    assert isinstance(result, TrackResult) and result.out_dir == tmp_path / "run"
    assert result.metrics["steps"] == 6 and result.metrics["train_psnr"] > 5 and "3d_mean_error" in result.metrics
    assert result.config["shift"] == 0.2 and result.config["dataset"]["type"] == "memory"
    assert result.config["resolution"] == 32  # taken from the frames
    assert len(result.config["dataset"]["fingerprint"]) == 16  # what was tracked is named in the run's settings
    assert not (tmp_path / "run" / "input").exists()  # nothing written to disk and read back
    frames = result.frames
    assert len(frames) == 4 and all(g.num_gaussians == canonical.num_gaussians for g in frames)
    assert Path(result.paths["tracked"]).is_file() and Path(result.paths["strip"]).is_file()


def test_track_paths_and_a_canonical_in_another_frame(sequence_folder, tmp_path):
    """A PLY path and a folder path; the asset given at 3x scale with the cameras left as they are is
    a different scene, but the exported frames come back at the given asset's scale."""
    canonical = load_ply(sequence_folder / "canonical.ply")
    big = canonical.transform(torch.eye(3), scale=3.0)
    from spectral_tracking.gaussians import save_ply

    ply = save_ply(big, tmp_path / "big.ply")
    result = track(ply, sequence_folder, out_dir=tmp_path / "run", shift=0.0, **TINY)
    assert result.frames[0].bounding_sphere()[1] == pytest.approx(big.bounding_sphere()[1], rel=0.05)


def test_track_needs_a_sequence_for_a_canonical(sequence_folder):
    with pytest.raises(ValueError, match="without a sequence"):
        track(sequence_folder / "canonical.ply")


def _run_script(main: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    code = f"import sys; from spectral_tracking.cli import {main}; sys.argv = ['x', *sys.argv[1:]]; {main}()"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_console_scripts_find_the_configs_from_any_folder(tmp_path):
    track_cfg = _run_script("track_main", ["--cfg", "job", "shift=0.7", "deform=rigid_mlp"], tmp_path)
    assert track_cfg.returncode == 0, track_cfg.stderr[-2000:]
    assert "shift: 0.7" in track_cfg.stdout and "name: rigid_mlp" in track_cfg.stdout
    fit_cfg = _run_script("fit_main", ["--cfg", "job", "data.path=/somewhere"], tmp_path)
    assert fit_cfg.returncode == 0, fit_cfg.stderr[-2000:]
    assert "/somewhere" in fit_cfg.stdout


def test_pyproject_ships_the_configs_and_the_scripts():
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml with tomllib")

    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    scripts = project["project"]["scripts"]
    assert scripts == {"spectral-track": "spectral_tracking.cli:track_main", "spectral-fit": "spectral_tracking.cli:fit_main"}
    assert "viser" in " ".join(project["project"]["optional-dependencies"]["viewer"])


def test_track_your_asset_notebook_runs(tmp_path, monkeypatch):
    import nbclient
    import nbformat

    monkeypatch.setenv("SPECTRAL_TRACKING_NOTEBOOK_TINY", "1")
    nb = nbformat.read(REPO / "notebooks" / "track_your_asset.ipynb", as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = "".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", []))
    assert "train_psnr" in outputs and "frame 3: mean displacement" in outputs
    assert (tmp_path / "track_your_asset_outputs" / "run" / "tracked.mp4").is_file()


def test_a_folder_of_other_inputs_is_refused_never_reused(sequence_folder, tmp_path):
    """A finished run's folder given a different asset (or a failed call's leftovers): the inputs'
    fingerprint is part of the settings, so the other run's result is never returned for these."""
    from spectral_tracking.errors import RunRefused

    canonical = load_ply(sequence_folder / "canonical.ply")
    first = track(canonical, sequence_folder, out_dir=tmp_path / "run", shift=0.0, **TINY)
    again = track(canonical, sequence_folder, out_dir=tmp_path / "run", shift=0.0, **TINY)  # the same inputs: reused
    assert again.metrics == first.metrics
    bigger = canonical.transform(torch.eye(3), scale=3.7)
    with pytest.raises(RunRefused, match="different settings"):
        track(bigger, sequence_folder, out_dir=tmp_path / "run", shift=0.0, **TINY)


@pytest.mark.parametrize("args, kwargs, match", [
    ((123, None), {}, "canonical must be Gaussians or a path"),
    ((None, 42), {}, "sequence must be a spectral_tracking.data.Sequence or a sequence folder"),
    ((None, None), {"out_dir": 5}, "out_dir must be a folder path"),
    ((None, None), {"overrides": "shift=1"}, "overrides must be a list"),
])
def test_wrong_argument_types_name_the_argument_and_write_nothing(tmp_path, monkeypatch, args, kwargs, match):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TypeError, match=match):
        track(*args, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_bad_settings_are_refused_before_anything_is_written(sequence_folder, tmp_path):
    from spectral_tracking.errors import ConfigError

    with pytest.raises(ConfigError, match="shift"):
        track(load_ply(sequence_folder / "canonical.ply"), sequence_folder, out_dir=tmp_path / "run", shift=float("nan"))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("align", ["none", "search"])
def test_a_sequence_whose_training_masks_are_all_empty_is_refused(sequence_folder, tmp_path, align):
    """Nothing to track: one line naming the views, not a run on blank targets (align=none trained
    on them without a word)."""
    from dataclasses import replace

    from spectral_tracking.data.folder import load_sequence
    from spectral_tracking.errors import SequenceFormatError

    seq = load_sequence(sequence_folder)
    blank = replace(seq, masks=torch.zeros_like(seq.masks), images=torch.full_like(seq.images, 255))
    with pytest.raises(SequenceFormatError, match=r"every training view's mask is empty in every frame \(views \['0\.0'\]\)"):
        track(seq.canonical, blank, out_dir=tmp_path / "run", align=align, **TINY)
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_the_inputs_fingerprint_sees_azimuths_ground_truth_and_normalisation(sequence_folder):
    """What chooses the training views (the azimuths), what the 3D errors are measured against (the
    ground truth) and the frame the exports are written in (the normalisation record) change the
    fingerprint, so a corrected input never returns the run made from the old one."""
    from dataclasses import replace

    from spectral_tracking.api import input_fingerprint
    from spectral_tracking.data import load_sequence

    seq = load_sequence(sequence_folder)
    base = input_fingerprint(seq)
    assert input_fingerprint(load_sequence(sequence_folder)) == base  # the same inputs: the same fingerprint
    turned = replace(seq, azimuths=[None if a is None else a + 1.0 for a in seq.azimuths])
    moved = replace(seq, gt_means=seq.gt_means + 0.01)
    renormalised = replace(seq, meta={**seq.meta, "normalization": {"center": [1.0, 0.0, 0.0], "scale": 2.0}})
    prints = [input_fingerprint(s) for s in (turned, moved, renormalised)]
    assert base not in prints and len(set(prints)) == 3, prints
