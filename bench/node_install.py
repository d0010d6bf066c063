"""What a node installs: the flchain core against everything it pulled in before the extras split.

For each set of requirements, the distributions it resolves to in this environment (requirements walked
through the installed packages' own metadata, markers and extras evaluated), how many there are and
their size on disk (from each package's RECORD); the wheel's size; and the import time of the mod a
ClientApp loads (`from fl_chain.ext import flchain_mod`, in a fresh process, median of 7) and of the
`flchain` CLI, for this tree and for a given earlier commit (default `main`). Prints a table and writes
docs/node-install.md and docs/node-install.json.
Usage: .venv/bin/python bench/node_install.py [--before main] [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from importlib.metadata import PackageNotFoundError, distribution
from io import BytesIO
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.test_installed_wheel import build_wheel  # noqa: E402

IMPORTS = {
    "the mod (`from fl_chain.ext import flchain_mod`)": "from fl_chain.ext import flchain_mod",
    "the CLI (`import fl_chain.cli`)": "import fl_chain.cli",
}


def closure(requirements: list[str]) -> dict[str, int]:
    """The installed distributions `requirements` resolve to: name -> bytes on disk."""
    found: dict[str, int] = {}
    todo = [(Requirement(r), frozenset(Requirement(r).extras)) for r in requirements]
    while todo:
        req, extras = todo.pop()
        name = canonicalize_name(req.name)
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            continue
        key = f"{name}[{','.join(sorted(extras))}]"
        if key in found or (name in found and not extras):
            continue
        found[name] = sum(f.size or 0 for f in dist.files or [] if f.size)
        found[key] = 0
        for text in dist.requires or []:
            sub = Requirement(text)
            wanted = [{"extra": e} for e in extras] or [{"extra": ""}]
            if sub.marker is None or any(sub.marker.evaluate(env) for env in wanted):
                todo.append((sub, frozenset(sub.extras)))
    return {k: v for k, v in found.items() if "[" not in k}


def _project(pyproject: str) -> dict:
    return tomllib.loads(pyproject)["project"]


def _tree_at(commit: str, into: Path) -> Path:
    """The repository's files at `commit`, extracted into a directory."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def wheel_size(tree: Path, out: Path) -> int:
    """Bytes of the wheel `pip wheel --no-deps` builds from a tree."""
    return build_wheel(tree, out).stat().st_size


def _import_once(tree: Path, statement: str) -> float:
    """Wall time of `statement` in a fresh interpreter that imports flchain from `tree`."""
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    env = {"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def import_seconds(trees: dict[str, Path], statement: str, repeats: int) -> dict[str, float]:
    """Median import time per tree; the trees take turns, so load on the machine hits them alike."""
    times: dict[str, list[float]] = {label: [] for label in trees}
    for _ in range(repeats):
        for label, tree in trees.items():
            times[label].append(_import_once(tree, statement))
    return {label: round(statistics.median(values), 3) for label, values in times.items()}


def measure(before_commit: str, repeats: int) -> dict:
    """Both installs side by side, in one run."""
    with tempfile.TemporaryDirectory() as tmp:
        before_tree = _tree_at(before_commit, Path(tmp) / "before")
        before = _project((before_tree / "pyproject.toml").read_text())
        after = _project((ROOT / "pyproject.toml").read_text())
        sets = {
            f"before ({before_commit}): `flchain`": before["dependencies"],
            "now: `flchain` (a node's install)": after["dependencies"],
            "now: `flchain[demo,dashboard]`": after["dependencies"]
            + after["optional-dependencies"]["demo"]
            + after["optional-dependencies"]["dashboard"],
        }
        installs = {}
        for label, requirements in sets.items():
            found = closure(requirements)
            installs[label] = {
                "distributions": len(found),
                "megabytes": round(sum(found.values()) / 2**20, 1),
            }
        wheels = {
            f"before ({before_commit})": wheel_size(before_tree, Path(tmp) / "wb"),
            "now": wheel_size(ROOT, Path(tmp) / "wa"),
        }
        trees = {f"before ({before_commit})": before_tree, "now": ROOT}
        imports = {what: import_seconds(trees, stmt, repeats) for what, stmt in IMPORTS.items()}
    return {"installs": installs, "wheel_bytes": wheels, "import_seconds": imports, "repeats": repeats}


def report(result: dict) -> str:
    """docs/node-install.md."""
    lines = [
        "# A node's install: size, dependencies, import time",
        "",
        "Measured by `bench/node_install.py` (`make bench-install`) in this repository's environment: each",
        "set of requirements walked through the installed packages' own metadata, sizes from their RECORD",
        "files. Not part of `make test`.",
        "",
        "| install | distributions | size on disk |",
        "|---|---:|---:|",
    ]
    for label, row in result["installs"].items():
        lines.append(f"| {label} | {row['distributions']} | {row['megabytes']:,} MiB |")
    lines += ["", "| wheel | bytes |", "|---|---:|"]
    lines += [f"| {label} | {size:,} |" for label, size in result["wheel_bytes"].items()]
    lines += ["", f"Import time in a fresh process (median of {result['repeats']}):", ""]
    labels = list(next(iter(result["import_seconds"].values())))
    lines += [f"| import | {' | '.join(labels)} |", "|---|" + "---:|" * len(labels)]
    for what, row in result["import_seconds"].items():
        lines.append(f"| {what} | {' | '.join(f'{row[k]:.3f} s' for k in labels)} |")
    lines += [
        "",
        "The wheel now carries the compiled contracts (`fl_chain/chain/setup/contracts.json`), so it",
        "deploys without npm or a Solidity compiler; a node's install no longer pulls torch, scikit-learn,",
        "matplotlib, ray, starlette, uvicorn or py-solc-x (the `demo`, `dashboard` and `dev` extras bring",
        "them). The imports were already free of those packages before (the mod and the CLI import them",
        "on use), so their times do not move; they are medians on a shared 2-core machine, where one",
        "process's `import fl_chain.cli` varies from 1.4 to 2.5 s: compare the columns, not runs.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Measure, print and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="main", help="the commit to compare with")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    result = measure(args.before, args.repeats)
    table = Table("install", "distributions", "MiB")
    for label, row in result["installs"].items():
        table.add_row(label, str(row["distributions"]), f"{row['megabytes']:,}")
    Console().print(table)
    text = report(result)
    print(text)
    (ROOT / "docs" / "node-install.md").write_text(text)
    (ROOT / "docs" / "node-install.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
