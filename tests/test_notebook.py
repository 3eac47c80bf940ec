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
