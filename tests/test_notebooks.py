"""The notebooks execute top to bottom (nbclient, a real kernel, a real chain and simulation)."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def test_quickstart_notebook_executes(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FLCHAIN_NOTEBOOK_HOME", str(tmp_path / "home"))
    notebook = nbformat.read(NOTEBOOKS / "01_quickstart.ipynb", as_version=4)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    ).execute()
    outputs = "".join(
        o.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for o in cell.get("outputs", [])
    )
    assert "every committed hash matches its blob" in outputs
    assert any(
        "image/png" in o.get("data", {})
        for cell in notebook.cells
        if cell.cell_type == "code"
        for o in cell.outputs
    )


def test_contribution_and_reputation_notebook_executes(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FLCHAIN_NOTEBOOK_HOME", str(tmp_path / "home"))
    notebook = nbformat.read(NOTEBOOKS / "02_contribution_and_reputation.ipynb", as_version=4)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    ).execute()
    outputs = "".join(
        o.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for o in cell.get("outputs", [])
    )
    assert "attackers rank below every honest node" in outputs
