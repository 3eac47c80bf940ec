"""Nothing lost, nothing silent: atomic checkpoints, the run-folder lock, signals, logs kept across
resume, sweeps that report failures, settings refused before any file is written."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from spectral_tracking.run.atomic import CorruptCheckpointError, atomic_torch_save, load_checkpoint_or_previous, previous_path
from spectral_tracking.run.config import ConfigError
from spectral_tracking.run.folder import RunFolderBusy, RunLock
from spectral_tracking.run.track import run
from test_train import REPO, make_cfg, tiny_overrides


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data")


# --- checkpoints --------------------------------------------------------------------------------
def _ckpt(step: int) -> dict:
    return {"state_dict": {"w": torch.full((3,), float(step))}, "global_step": step}


def test_a_checkpoint_write_that_fails_half_way_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.ckpt"
    atomic_torch_save(_ckpt(1), path)
    real_save = torch.save

    def full_disk(obj, f, *a, **k):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        atomic_torch_save(_ckpt(2), path)
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.load(path, weights_only=False)["global_step"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temporary file left behind


def test_torch_saves_full_disk_error_names_the_checkpoint_and_is_one_line(tmp_path, monkeypatch, capsys):
    """torch.save on a full disk raises ``RuntimeError: [enforce fail at inline_container.cc:672] .
    unexpected pos ...`` (its text for /dev/full): it becomes the OSError it stands for, with the
    checkpoint's path, and the entry point prints one line and exits 2."""
    import errno

    from spectral_tracking import cli

    path = tmp_path / "checkpoints" / "last.ckpt"

    def full_disk(obj, f, *a, **k):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError) as info:
        atomic_torch_save(_ckpt(2), path)
    assert info.value.errno in (errno.ENOSPC, errno.EIO) and info.value.filename == str(path)
    assert "unexpected pos 704 vs 598" in str(info.value)
    monkeypatch.setattr("spectral_tracking.run.track.run_job", lambda cfg: (_ for _ in ()).throw(info.value))
    with pytest.raises(SystemExit) as code:
        cli.track_job(None)
    err = capsys.readouterr().err.strip().splitlines()
    assert code.value.code == 2 and len(err) == 1, err
    assert err[0].startswith(f"error: cannot write {path}: the ") and "rerun: a run resumes from its last checkpoint" in err[0]


@pytest.mark.parametrize("code, what", [(13, "permission denied"), (30, "the file system is read-only"), (28, "the disk is full"),
                                        (20, "a file stands where a folder should be"), (17, "a file stands where a folder should be")])
def test_a_write_the_disk_refuses_is_one_line_naming_the_file(tmp_path, monkeypatch, capsys, code, what):
    import spectral_tracking.fit.run  # noqa: F401
    from spectral_tracking import cli

    fit_run = sys.modules["spectral_tracking.fit.run"]
    target = tmp_path / "out" / "canonical.ply"
    monkeypatch.setattr(fit_run, "run", lambda cfg: (_ for _ in ()).throw(OSError(code, "x", str(target))))
    with pytest.raises(SystemExit) as exit_code:
        cli.fit_job(None)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_code.value.code == 2 and err == [err[0]] and err[0].startswith(f"error: cannot write {target}: {what}; ")
    monkeypatch.setattr(fit_run, "run", lambda cfg: (_ for _ in ()).throw(OSError(5, "an I/O error of no file")))
    with pytest.raises(OSError):  # not a write we can name: it keeps its traceback
        cli.fit_job(None)


def test_an_unreadable_last_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog):
    path = tmp_path / "last.ckpt"
    atomic_torch_save(_ckpt(1), path)
    atomic_torch_save(_ckpt(2), path)
    assert torch.load(previous_path(path), weights_only=False)["global_step"] == 1
    assert load_checkpoint_or_previous(path)[0] == path
    path.write_bytes(path.read_bytes()[:100])  # truncated
    found, ckpt = load_checkpoint_or_previous(path)
    assert found == previous_path(path) and ckpt["global_step"] == 1
    assert "unreadable" in caplog.text
    previous_path(path).write_bytes(b"garbage")
    with pytest.raises(CorruptCheckpointError, match=f"{path}: the checkpoint is unreadable.*skip_finished=false"):
        load_checkpoint_or_previous(path)


# --- the run folder ---------------------------------------------------------------------------------
def test_a_second_run_into_a_locked_folder_is_refused_at_once(tmp_path, data_root):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from spectral_tracking.run.folder import RunLock\n"
         f"with RunLock({str(out)!r}):\n    print('locked', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        start = time.time()
        with pytest.raises(RunFolderBusy, match=f"in use by pid {holder.pid}"):
            run(make_cfg(tmp_path, data_root))
        assert time.time() - start < 5 and not (out / "metrics.json").exists()
    finally:
        holder.kill()
        holder.wait()
    # the kernel drops the lock with its dead holder: the folder is usable again
    with RunLock(out):
        pass


def test_skip_finished_false_clears_the_old_outputs_and_eval_changes_reevaluate(tmp_path, data_root):
    first = run(make_cfg(tmp_path, data_root, ["max_steps=6", "eval.export_ply=true"]))
    folder = tmp_path / "run"
    assert (folder / "frames").is_dir() and first["config"]["max_steps"] == 6
    again = run(make_cfg(tmp_path, data_root, ["max_steps=6", "skip_finished=false"]))
    assert not (folder / "frames").exists() and "ply" not in again["figures"]
    # only eval.* changed: no training, the final checkpoint is evaluated again with the new settings
    reeval = run(make_cfg(tmp_path, data_root, ["max_steps=6", "eval.progression_frames=0"]))
    assert reeval["metrics"]["steps"] == 6 and "progression" not in reeval["figures"]
    assert reeval["metrics"]["train_psnr"] == pytest.approx(again["metrics"]["train_psnr"], abs=1e-4)
    assert json.loads((folder / "metrics.json").read_text())["config"]["eval"]["progression_frames"] == 0


def test_non_finite_metrics_are_written_as_null_with_a_warning(tmp_path, caplog):
    from spectral_tracking.run.outputs import save_result

    saved = save_result(tmp_path, {"3d_mean_error": float("nan"), "train_psnr": 20.0}, {}, {}, {})
    text = (tmp_path / "metrics.json").read_text()
    assert json.loads(text)["metrics"] == {"3d_mean_error": None, "train_psnr": 20.0} == saved["metrics"]
    assert "NaN" not in text and "3d_mean_error" in caplog.text
    # the same frame by frame: a frame identical to its target has an infinite PSNR
    save_result(tmp_path, {"train_psnr": 20.0}, {}, {}, {}, {"train_psnr": [20.0, float("inf"), 19.0]})
    assert json.loads((tmp_path / "metrics.json").read_text())["frames"] == {"train_psnr": [20.0, None, 19.0]}
    assert "frames' train_psnr is not a number in frame(s) [1]" in caplog.text


def test_csv_log_keeps_the_rows_before_a_resume_and_seconds_add_up(tmp_path, data_root, monkeypatch):
    from spectral_tracking.tracking.module import TrackingModule

    overrides = ["logger=csv"]
    original = TrackingModule.training_step

    def crashing(self, batch, batch_idx):
        if self.global_step == 14:
            raise KeyboardInterrupt("simulated kill")
        return original(self, batch, batch_idx)

    monkeypatch.setattr(TrackingModule, "training_step", crashing)
    with pytest.raises(BaseException):
        run(make_cfg(tmp_path, data_root, overrides))
    monkeypatch.setattr(TrackingModule, "training_step", original)
    log_file = tmp_path / "run" / "csv" / "metrics.csv"
    first_rows = list(csv.DictReader(open(log_file)))
    assert first_rows and max(int(r["step"]) for r in first_rows) >= 10
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    before = [v["seconds"] for k, v in ckpt["callbacks"].items() if "ElapsedTime" in k][0]
    start = time.time()
    result = run(make_cfg(tmp_path, data_root, overrides))
    segment = time.time() - start
    rows = [r for r in csv.DictReader(open(log_file)) if r.get("train/loss")]
    steps = [int(r["step"]) for r in rows]
    assert steps == sorted(set(steps)) and set(range(24)) <= set(steps) | {0}, steps  # every step once
    # seconds = the first segment (up to its checkpoint) + this one, not this one alone
    assert before > 0 and before < result["metrics"]["seconds"] <= before + segment + 0.1


@pytest.mark.parametrize("override, key", [
    ("resolution=0", "resolution"), ("shift=nan", "shift"), ("seed=-1", "seed"), ("num_control_points=0", "num_control_points"),
    ("deform.lr_init=0", "deform.lr_init"), ("loss.norm=l3", "loss.norm"), ("loss.expansion=foo", "loss.expansion"),
    ("arap_frames=0", "arap_frames"), ("background=[1.0,1.0]", "background"), ("progressive_frames=-0.5", "progressive_frames"),
    ("resolution=12", "resolution=12"), ("dataset.frames=1", "dataset.frames"), ("trainer=gpu", "trainer=gpu"),
    ("backend=gsplat", "backend=gsplat"),
])
def test_bad_settings_are_refused_before_any_file_is_written(tmp_path, data_root, override, key):
    if "gpu" in override or "gsplat" in override:
        if torch.cuda.is_available():
            pytest.skip("CUDA is available: the setting is valid here")
    cfg = make_cfg(tmp_path, data_root, [override])
    with pytest.raises(ConfigError, match=key.replace("[", r"\[")):
        run(cfg)
    assert not (tmp_path / "run").exists()


# --- signals and sweeps (subprocesses) -----------------------------------------------------------
def _train_cmd(tmp_path, data_root, *extra):
    return [sys.executable, str(REPO / "train.py"), *tiny_overrides(tmp_path, data_root), *extra]


def test_sigterm_saves_a_checkpoint_exits_143_and_the_same_command_resumes(tmp_path, data_root):
    cmd = _train_cmd(tmp_path, data_root, "max_steps=400", "eval.progression_frames=0")
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)  # the first checkpoint (step 40) means training is under way
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 143, err[-2000:]
    assert "interrupted by SIGTERM at step" in err and "rerun the same command to resume" in err
    step = torch.load(ckpt, weights_only=False)["global_step"]
    assert 0 < step < 400 and not (tmp_path / "run" / "metrics.json").exists()
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["metrics"]["steps"] == 400


def test_a_refused_sweep_rerun_leaves_finished_jobs_untouched(tmp_path, data_root):
    sweep = tmp_path / "sweep"
    base = [o for o in tiny_overrides(tmp_path, data_root) if not o.startswith(("out_dir", "dataset.root"))]
    cmd = [sys.executable, str(REPO / "train.py"), "-m", f"hydra.sweep.dir={sweep}", "max_steps=6", "seed=0", *base]
    first = subprocess.run([*cmd, f"dataset.root={data_root}"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    (job,) = [p.parent for p in sweep.glob("*/metrics.json")]
    # (the lock file names its latest holder; Hydra's log file is appended to by every process)
    before = {p: p.stat().st_mtime_ns for p in job.rglob("*") if p.is_file() and p.suffix != ".log" and p.name != ".lock"}
    other_root = tmp_path / "other_data"  # an excluded key: same job folder, different settings
    second = subprocess.run([*cmd, f"dataset.root={other_root}"], cwd=REPO, capture_output=True,
                            text=True, timeout=600)
    assert second.returncode == 1 and "refused" in second.stderr, second.stderr[-2000:]
    after = {p: p.stat().st_mtime_ns for p in job.rglob("*") if p.is_file() and p.suffix != ".log" and p.name != ".lock"}
    assert after == before and not (job / "failed.txt").exists()


def test_unusable_out_dirs_are_one_line_errors(tmp_path, data_root):
    # an empty metrics.json, a fit's output, a read-only folder: each a ConfigError naming the folder
    bad = tmp_path / "run"
    bad.mkdir()
    (bad / "metrics.json").write_text("")
    with pytest.raises(ConfigError, match="metrics.json: unreadable"):
        run(make_cfg(tmp_path, data_root))
    (bad / "metrics.json").write_text(json.dumps({"psnr": 30.0, "num_gaussians": 100}))  # what fit.py writes
    with pytest.raises(ConfigError, match="not a tracking run's result"):
        run(make_cfg(tmp_path, data_root))
    if os.geteuid() != 0:  # root writes anywhere: the permission case needs an ordinary user
        locked = tmp_path / "ro"
        locked.mkdir(mode=0o555)
        with pytest.raises(ConfigError, match="cannot write there"):
            run(make_cfg(tmp_path, data_root, [f"out_dir={locked / 'run'}"]))


def test_a_run_resumed_at_its_last_step_keeps_the_whole_gif(tmp_path, data_root):
    from PIL import Image

    first = run(make_cfg(tmp_path, data_root))
    frames = Image.open(first["figures"]["progression"]).n_frames
    (tmp_path / "run" / "metrics.json").unlink()  # killed after the final checkpoint, before the results
    again = run(make_cfg(tmp_path, data_root))
    assert again["metrics"]["steps"] == 24 and Image.open(again["figures"]["progression"]).n_frames == frames


def test_a_resumed_wandb_run_continues_the_same_run_id(tmp_path):
    from spectral_tracking.run.loggers import build_logger

    cfg = make_cfg(tmp_path, tmp_path, ["logger=wandb"])
    logger = build_logger(cfg, tmp_path, resume_step=12, wandb_id="abcd1234")
    assert logger._wandb_init["id"] == "abcd1234" and logger._wandb_init["resume"] == "allow"


def test_what_a_run_ran_on_is_recorded(tmp_path, data_root):
    """run_meta.json (and metrics.json's run record) say the device, the renderer, the threads and the
    TimeNet's arithmetic that `auto` chose."""
    from spectral_tracking.run.track import run

    result = run(make_cfg(tmp_path, data_root, ["max_steps=2"]))
    meta = json.loads((tmp_path / "run" / "run_meta.json").read_text())
    rt = meta["runtime"]
    assert rt["device"] == "cpu" and rt["backend"] in ("cpu", "torch") and rt["threads"] >= 1
    assert rt["precision"] in ("fp32", "bf16") and result["run"]["runtime"] == rt


@pytest.mark.parametrize("override, match", [
    ("num_control_points=5000", "fewer than num_control_points=5000"),
    ("ckpt_path=/nonexistent/last.ckpt", "ckpt_path=/nonexistent/last.ckpt: no such checkpoint file"),
])
def test_late_errors_leave_no_folder_behind(tmp_path, data_root, override, match):
    """Errors found once the run has its folder (the asset too sparse for the control points, a
    missing checkpoint) are one line and leave nothing: not run_meta.json, not a folder holding only .lock."""
    from spectral_tracking.errors import ConfigError
    from spectral_tracking.run.track import run

    with pytest.raises(ConfigError, match=match):
        run(make_cfg(tmp_path, data_root, [override]))
    assert not (tmp_path / "run").exists()


def test_an_empty_dataset_path_is_refused():
    """An empty ``dataset.path=`` is refused, not read as the current folder."""
    from spectral_tracking.data import check_dataset_config
    from spectral_tracking.errors import ConfigError
    from spectral_tracking.run.config import compose

    with pytest.raises(ConfigError, match="dataset.path is empty"):
        check_dataset_config(compose(["dataset=folder", "dataset.path=", "out_dir=/x"]).dataset)
