"""Execute the notebooks in place, outputs and plots kept, so a reader browsing the repository sees them
(`make notebooks`). `make test` executes copies of them (tests/test_notebooks.py) and writes nothing back.

Each notebook runs with FLCHAIN_NOTEBOOK_HOME in a temporary directory that is deleted afterwards, so no
demo home lands in the repository; outputs are cleaned of that directory's path and of this checkout's,
and per-cell execution timestamps are not stored, so a re-run only changes what the run itself changed.
A failing notebook is left as it was and the script exits with one line naming it and the cell.

    .venv/bin/python scripts/execute_notebooks.py [NOTEBOOK ...]   # default: notebooks/*.ipynb
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
CELL_TIMEOUT = 600  # seconds; a federated run is one cell
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # Flower colours its log; stored as text the codes are noise


class NotebookFailed(Exception):
    """A notebook did not execute to the end; the message is one line."""


def execute(path: Path, timeout: int = CELL_TIMEOUT) -> nbformat.NotebookNode:
    """Execute one notebook with its demo home in a temporary directory; return it with outputs cleaned
    (`clean`). Raise NotebookFailed naming the failing cell."""
    try:
        notebook = nbformat.read(path, as_version=4)
    except (OSError, ValueError) as exc:  # missing, unreadable, or not a notebook (NotJSONError)
        raise NotebookFailed(f"{_shown(path)}: cannot read it: {' '.join(str(exc).split())[:200]}") from None
    current: dict[str, int] = {"index": -1}

    def on_cell_start(cell: nbformat.NotebookNode, cell_index: int) -> None:
        current["index"] = cell_index

    with tempfile.TemporaryDirectory(prefix="flchain-notebook-") as tmp:
        home = Path(tmp) / "home"
        saved = os.environ.get("FLCHAIN_NOTEBOOK_HOME")
        # The kernel inherits this process's environment; that is how the notebook learns its home.
        os.environ["FLCHAIN_NOTEBOOK_HOME"] = str(home)
        try:
            NotebookClient(
                notebook,
                timeout=timeout,
                kernel_name="python3",
                resources={"metadata": {"path": str(path.parent)}},
                record_timing=False,
                coalesce_streams=True,  # one stderr block per cell, as Jupyter shows it, not one per line
                on_cell_start=on_cell_start,
            ).execute()
        except (CellExecutionError, CellTimeoutError, DeadKernelError) as exc:
            raise NotebookFailed(_failure(path, notebook, current["index"], exc)) from None
        finally:
            if saved is None:
                os.environ.pop("FLCHAIN_NOTEBOOK_HOME", None)
            else:
                os.environ["FLCHAIN_NOTEBOOK_HOME"] = saved
        # Resolved too: the notebooks resolve their home, and a temporary directory may sit behind a link.
        replacements = {str(ROOT): "."}
        for base in (Path(tmp), Path(tmp).resolve()):
            replacements |= {str(base / "home"): "$FLCHAIN_NOTEBOOK_HOME", str(base): "$TMPDIR"}
        clean(notebook, replacements)
    return notebook


def _failure(path: Path, notebook: nbformat.NotebookNode, index: int, exc: Exception) -> str:
    """One line: notebook, cell number (1-based, as a reader counts them), the cell's first line, error."""
    first = notebook.cells[index].source.strip().splitlines()[0] if 0 <= index < len(notebook.cells) else ""
    if isinstance(exc, CellExecutionError):
        error = f"{exc.ename}: {exc.evalue}"
    else:
        error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
    where = f"cell {index + 1} ({first[:60]!r})" if index >= 0 else "before the first cell"
    return f"{_shown(path)}: {where} failed: {' '.join(error.split())[:300]}"


def clean(notebook: nbformat.NotebookNode, replacements: dict[str, str]) -> None:
    """Replace machine-specific paths in text outputs, drop colour codes from streams and volatile
    per-cell execution metadata."""
    # Longest first: the home lies inside the temporary directory.
    pairs = sorted(replacements.items(), key=lambda kv: len(kv[0]), reverse=True)

    def scrub(text: str) -> str:
        for old, new in pairs:
            text = text.replace(old, new)
        return text

    for cell in notebook.cells:
        cell.metadata.pop("execution", None)
        for output in cell.get("outputs", []):
            if "text" in output:
                output["text"] = ANSI.sub("", scrub(output["text"]))
            for mime, value in output.get("data", {}).items():
                if mime.startswith("text/") and isinstance(value, str):
                    output["data"][mime] = scrub(value)
            if "traceback" in output:
                output["traceback"] = [scrub(line) for line in output["traceback"]]


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    """Execute the given notebooks (default: every notebooks/*.ipynb) in order and write each back."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/*.ipynb")
    parser.add_argument("--timeout", type=int, default=CELL_TIMEOUT, help="seconds per cell")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted(NOTEBOOKS.glob("*.ipynb"))
    if not paths:
        print(f"no notebooks under {_shown(NOTEBOOKS)}", file=sys.stderr)
        return 1
    for path in paths:
        print(f"{_shown(path)}: executing ...", flush=True)
        started = time.monotonic()
        try:
            notebook = execute(path, args.timeout)
        except NotebookFailed as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        nbformat.validate(notebook)
        nbformat.write(notebook, path)
        size = path.stat().st_size / 1024
        print(f"{_shown(path)}: done in {time.monotonic() - started:.1f} s, {size:.0f} KiB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
