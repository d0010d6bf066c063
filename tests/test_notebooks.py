"""The notebooks execute top to bottom (nbclient, a real kernel, a real chain and simulation)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _execute(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, list]:
    """Run a notebook with its demo home in tmp_path; return its printed text and its outputs."""
    monkeypatch.setenv("FLCHAIN_NOTEBOOK_HOME", str(tmp_path / "home"))
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    ).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    return "".join(o.get("text", "") for o in outputs), outputs


def test_quickstart_notebook_executes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text, outputs = _execute("01_quickstart.ipynb", tmp_path, monkeypatch)
    assert "every committed hash matches its blob" in text
    assert any("image/png" in o.get("data", {}) for o in outputs)


def test_contribution_and_reputation_notebook_executes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The short attack run of `make test`: the notebook asserts that the attackers end with lower
    reputation than every honest node, that only attackers were penalized or suspended, and that the
    model still learns."""
    text, outputs = _execute("02_contribution_and_reputation.ipynb", tmp_path, monkeypatch)
    assert "attackers rank below every honest node" in text
    assert any("image/png" in o.get("data", {}) for o in outputs)
