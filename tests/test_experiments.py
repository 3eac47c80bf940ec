"""The experiment scripts: aggregation on hand-made rows with known answers, and each script's
--quick version end to end (tiny runs; a rerun skips every finished run)."""

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "experiments"))

import harness  # noqa: E402


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
    import shift_curves

    assert shift_curves.main(["--quick", "--out", str(tmp_path)]) == 0
    rows = harness.read_csv(tmp_path / "results.csv")
    assert len(rows) == 4 and {r["loss"] for r in rows} == {"spectral", "pixel"}
    assert {"creature", "shift", "seed", "train_psnr", "novel_psnr", "3d_mean_error", "3d_size_ratio"} <= set(rows[0])
    table = (tmp_path / "table.md").read_text()
    assert "Success rate" in table and "Ours - Pixel" in table and (tmp_path / "shift_curves.png").is_file()
    capsys.readouterr()
    assert shift_curves.main(["--quick", "--out", str(tmp_path)]) == 0
    assert "4 runs: 4 finished, 0 to run" in capsys.readouterr().out
