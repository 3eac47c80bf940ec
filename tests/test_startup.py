"""Process start and end of the entry points: the imports with the garbage collector paused
(`spectral_tracking.runtime.preload`) and the exit without the interpreter's teardown (`runtime.exit.exit_now`)."""

import subprocess
import sys
import textwrap


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
