"""The notebooks execute top to bottom (nbclient, a real kernel, a real chain and simulation). Each test
executes an in-memory copy and writes nothing back: the stored, executed notebooks come from `make
notebooks` (scripts/execute_notebooks.py)."""

from __future__ import annotations

import re
import tempfile
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


def test_ledger_explorer_notebook_executes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A live chain read through the Python API alone: the notebook asserts that the ledger's views and
    the watcher's events agree (rounds, contributions, reputation history) and stops anvil in its last
    cell."""
    text, outputs = _execute("03_ledger_explorer.ipynb", tmp_path, monkeypatch)
    summary = re.search(
        r"ledger read from the chain: (\d+) rounds, (\d+) contributions, (\d+) reputation", text
    )
    assert summary is not None, text[-2000:]
    rounds, contributions, updates = map(int, summary.groups())
    assert rounds == 4 and contributions > 0 and updates > 0
    assert "anvil stopped" in text
    assert any("image/png" in o.get("data", {}) for o in outputs)


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_stored_notebooks_are_executed_and_clean(path: Path) -> None:
    """What a reader of the repository sees: every code cell ran (no error), a plot is there, and no
    path of the machine that ran `make notebooks` leaked into the outputs."""
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count is not None for cell in code), f"{path.name}: run `make notebooks`"
    outputs = [o for cell in code for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)
    assert not [cell for cell in code if "execution" in cell.metadata]
    stored = path.read_text()
    for leak in {str(NOTEBOOKS.parent), tempfile.gettempdir() + "/flchain-notebook-"}:
        assert leak not in stored, f"{path.name} names {leak}"
