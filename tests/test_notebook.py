"""Executes notebooks/spectral_demo.ipynb (its cells assert the demo bars) with nbclient."""

from pathlib import Path

import nbclient  # dev dependency: pip install -e .[dev]
import nbformat

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "spectral_demo.ipynb"


def test_spectral_demo_notebook_runs(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # timeout is per cell; the whole notebook takes about 25 s on 2 shared CPU cores
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = "".join(
        out.get("text", "") for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])
    )
    assert "demo_1d annealed spectral" in outputs and "FAIL" not in outputs
    assert "demo_2d spectral" in outputs


def test_results_notebook_draws_what_exists_and_names_the_command_for_what_is_missing(tmp_path, monkeypatch):
    """notebooks/results.ipynb on a results folder holding only a hand-made ablation_method CSV: that
    section draws, the next one stops with the command that would make its results."""
    import pytest

    folder = tmp_path / "results" / "ablation_method"
    folder.mkdir(parents=True)
    lines = ["name,variant,creature,shift,seed,train_psnr,novel_psnr,3d_mean_error,3d_size_ratio"]
    for variant in ("full", "align"):
        for creature in ("a", "b"):
            for shift, psnr in ((0.0, 30.0), (0.8, 25.0 if variant == "full" else 29.5)):
                lines.append(f"{variant}_{creature}_{shift},{variant},{creature},{shift},0,{psnr},20.0,0.1,1.0")
    (folder / "results.csv").write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("SPECTRAL_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK.parent / "results.ipynb", as_version=4)
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    with pytest.raises(nbclient.exceptions.CellExecutionError, match="ablation_suspects/results.csv is missing: run `python -m experiments.ablation_method"):
        client.execute()
    outputs = "".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", []))
    assert "align        shift 0.8: success 100% of 2" in outputs
    assert "full         shift 0.8: success 0% of 2" in outputs
