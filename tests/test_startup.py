"""Process start and end of the entry points: the imports with the garbage collector paused
(`spectral_tracking.runtime.preload`) and the exit without the interpreter's teardown (`runtime.exit.exit_now`)."""

import subprocess
import sys
import textwrap
from pathlib import Path


def _python(code: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_preload_restores_the_collector_state_and_freezes_the_imports(tmp_path):
    for enabled in (True, False):
        proc = _python(f"""
            import gc
            {'' if enabled else 'gc.disable()'}
            from spectral_tracking.runtime import preload
            preload.stack()
            import sys
            print(gc.isenabled(), gc.get_freeze_count() > 100_000, "pytorch_lightning" in sys.modules)
            frozen = gc.get_freeze_count()
            preload.stack()  # a second call does nothing
            print(gc.get_freeze_count() == frozen)
            """, tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == [str(enabled), "True", "True", "True"]


def test_exit_now_waits_for_threads_runs_atexit_and_flushes(tmp_path):
    proc = _python("""
        import atexit, sys, threading, time
        from pathlib import Path
        from spectral_tracking.runtime.exit import exit_now

        atexit.register(lambda: Path("atexit.txt").write_text("ran"))
        def slow():
            time.sleep(0.3)
            Path("thread.txt").write_text("done")
        threading.Thread(target=slow).start()
        sys.stdout.write("buffered, no newline")
        exit_now(3)
        Path("after.txt").write_text("never")
        """, tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == "buffered, no newline"
    assert (tmp_path / "atexit.txt").read_text() == "ran"
    assert (tmp_path / "thread.txt").read_text() == "done"
    assert not (tmp_path / "after.txt").exists()


def test_the_interpreter_internals_exit_now_relies_on_are_there():
    """runtime/exit.py is the package's one use of interpreter internals (threading._shutdown,
    atexit._run_exitfuncs: the measured 0.9-1.2 s of teardown it skips). If a Python drops either,
    this fails loudly instead of exit_now silently skipping the thread hooks or atexit."""
    from spectral_tracking.runtime.exit import INTERNALS

    missing = [f"{module.__name__}.{name}" for module, name in INTERNALS if not callable(getattr(module, name, None))]
    assert not missing, f"interpreter internals gone: {missing}; revisit spectral_tracking/runtime/exit.py"


def test_no_private_python_or_lightning_api_outside_runtime():
    """Private attributes of Python's or Lightning's modules (``threading._x``, ``trainer._x``) are
    used only in spectral_tracking/runtime/, where each is measured and checked above."""
    import re

    pattern = re.compile(r"\b(threading|atexit|sys|os|gc|trainer|pl|pytorch_lightning|lightning)\._[a-z]\w*")
    root = Path(__file__).resolve().parents[1] / "spectral_tracking"
    hits = [f"{p.relative_to(root)}: {m.group(0)}" for p in root.rglob("*.py") if "runtime" not in p.parts
            for m in pattern.finditer(p.read_text()) if m.group(0) not in ("sys._getframe",)]
    assert not hits, hits


def test_a_misspelt_setting_is_one_line_and_writes_nothing(tmp_path):
    """The command line's settings are composed before Hydra runs: a misspelt key gets one line with
    the setting meant, exit status 2, and no outputs/ folder (Hydra's log) in the current folder."""
    for arg, message in (("loss.swtich_iou=0.5", "did you mean loss.switch_iou?"),
                         ("+loss.swtich_iou=0.5", "did you mean loss.switch_iou?"),
                         ("max_steps=abc", "max_steps=abc: Value 'abc'"),
                         ("deform=mpl", "deform=mpl: no such option; choose one of direct, mlp, rigid, rigid_mlp")):
        res = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[1] / "train.py"), arg],
                             cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert res.returncode == 2, res.stderr[-1500:]
        lines = [line for line in res.stderr.splitlines() if line.strip()]
        assert lines[-1].startswith("error: ") and message in lines[-1] and "Traceback" not in res.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_run_given_out_dir_logs_there_and_leaves_nothing_in_the_current_folder(tmp_path):
    """train.log is the run's own (in its folder, written once the folder is locked and this run's):
    nothing in outputs/ for a call given out_dir=, and a call that stops on bad data leaves nothing."""
    repo = Path(__file__).resolve().parents[1]
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    tiny = ["resolution=32", "max_steps=4", "num_control_points=16", "dataset.frames=4", "loss.num_bands=3",
            "trainer=debug", "logger=none", "eval.lpips=none", "eval.videos=false", f"dataset.root={tmp_path / 'data'}"]
    res = subprocess.run([sys.executable, str(repo / "train.py"), *tiny, f"out_dir={tmp_path / 'run'}"], cwd=cwd,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert list(cwd.iterdir()) == []
    log = (tmp_path / "run" / "train.log").read_text()
    assert "outputs written" in log and (tmp_path / "run" / "metrics.json").is_file()
    res = subprocess.run([sys.executable, str(repo / "train.py"), "dataset=folder", f"dataset.path={tmp_path / 'nowhere'}",
                          "logger=none", f"out_dir={tmp_path / 'refused'}"], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 2 and "nowhere" in res.stderr.splitlines()[-1], res.stderr[-2000:]
    assert list(cwd.iterdir()) == [] and not (tmp_path / "refused").exists()


def test_a_refused_run_without_out_dir_leaves_no_folder_and_a_folder_that_cannot_be_made_is_one_line(tmp_path):
    """Without out_dir= the run folder (outputs/<task>/<time>) is made by the command before Hydra runs
    (cli.precheck): a run refused on its data removes it and the outputs/ made with it, and a run folder that
    cannot be made (a file in its path) is one line, exit status 2."""
    repo = Path(__file__).resolve().parents[1]
    (tmp_path / "afile").write_text("")
    for args, message in ((["dataset=folder", f"dataset.path={tmp_path / 'nowhere'}"], "nowhere"),
                          (["dataset=folder", f"dataset.path={tmp_path / 'nowhere'}", f"out_dir={tmp_path / 'afile' / 'run'}"],
                           "cannot make this folder (Not a directory")):
        res = subprocess.run([sys.executable, str(repo / "train.py"), *args, "logger=none"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
        lines = [line for line in res.stderr.splitlines() if line.strip()]
        assert res.returncode == 2 and message in lines[-1] and "Traceback" not in res.stderr, res.stderr[-2000:]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_a_fit_given_out_writes_its_log_there_and_nothing_in_the_current_folder(tmp_path):
    """fit.py: no Hydra folder (outputs/<date>/<time>/.hydra, fit.log) beside an out= folder; the fit's log is
    out/fit.log and its settings are in metrics.json; a fit refused on its data leaves no out folder."""
    repo = Path(__file__).resolve().parents[1]
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    res = subprocess.run([sys.executable, str(repo / "fit.py"), f"data.path={tmp_path / 'nowhere'}", f"out={tmp_path / 'fit'}"],
                         cwd=cwd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "nowhere" in res.stderr.splitlines()[-1], res.stderr[-2000:]
    assert list(cwd.iterdir()) == [] and not (tmp_path / "fit").exists()
