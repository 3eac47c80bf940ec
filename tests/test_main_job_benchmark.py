"""benchmarks/main_job.py: its parsing of the run's log and its arguments (the timing itself is a
benchmark, run by hand; the slow test runs it once end to end)."""

import importlib.util
import logging
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "main_job.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("main_job_bench", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_reads_the_outputs_line_that_write_outputs_logs(bench, caplog):
    # the same format string as spectral_tracking.run.outputs.write_outputs
    log = logging.getLogger("spectral_tracking.run.outputs")
    with caplog.at_level(logging.INFO, logger="spectral_tracking.run.outputs"):
        log.info("outputs written in %.1f s (%s)", 2.345, "strip 0.02, curves 0.40")
    assert float(bench.OUTPUTS_LINE.search(caplog.text).group(1)) == pytest.approx(2.3)
    src = (BENCH.parents[1] / "spectral_tracking" / "run" / "outputs.py").read_text()
    assert '"outputs written in %.1f s (%s)"' in src


def test_rejects_zero_runs(bench):
    with pytest.raises(SystemExit):
        bench.main(["--runs", "0"])


@pytest.mark.slow
def test_runs_end_to_end(bench, capsys):
    assert bench.main(["--runs", "1", "--imports", "1", "--", "max_steps=10", "eval.videos=false", "eval.lpips=none"]) == 0
    out = capsys.readouterr().out
    assert "main job median wall" in out and "imports (spectral_tracking.run.track)" in out
