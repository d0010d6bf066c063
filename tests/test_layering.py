"""The architecture's rules (docs/architecture.md) as a test: an `ast` walk over every module of fl_chain/."""

from __future__ import annotations

import ast
import importlib
import re
import shutil
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fl_chain"
TOP = ("cli", "views", "demo", "dashboard", "ext", "__main__")  # the user-facing layer
ROLES = ("protocol", "defence", "chain", "wire", "node", "coordinator", "verify", "runners", "experiments")
# What each role may import from fl_chain (base modules such as errors, paths, store, tasks are open to all).
MAY_IMPORT = {
    "protocol": {"protocol"},
    "defence": {"protocol", "defence"},
    "chain": {"protocol", "chain"},
    "wire": {"protocol", "wire"},
    "node": {"protocol", "defence", "chain", "wire", "node"},
    "coordinator": {"protocol", "defence", "chain", "wire", "coordinator"},
    "verify": {"protocol", "defence", "chain", "wire", "verify"},
    "runners": {"protocol", "defence", "chain", "wire", "node", "coordinator", "verify", "runners"},
    "experiments": set(ROLES),
}
PURE = ("protocol", "defence")  # no web3 and no flwr at module level
RAW_CALL = re.compile(r"\.(?:functions|events)(?:\.|\s*$)", re.M)  # contract.functions.x / contract.events.X


def _room(dotted: str) -> str:
    """The role package (or top-level module) a dotted fl_chain name lives in."""
    parts = dotted.split(".")[1:]
    if not parts:
        return ""
    return "cli" if parts[0].startswith("cli") else parts[0]


def _imports(tree: ast.Module, module: str) -> list[tuple[str, bool, int]]:
    """(imported dotted name, at module level, line) for every import, `from x import y` as x.y too."""
    top = {id(n) for n in tree.body}
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        found += [(n, id(node) in top, node.lineno) for n in names]
    return found


def _modules(package: Path) -> list[tuple[str, Path]]:
    return [(".".join(p.relative_to(package.parent).with_suffix("").parts), p) for p in package.rglob("*.py")]


def layering_violations(package: Path = PACKAGE) -> list[str]:
    """Every import or contract call that breaks a rule, as 'file:line: what'."""
    bad = []
    for module, path in _modules(package):
        room, src = _room(module), path.read_text()
        where = f"{path.relative_to(package.parent)}"
        for name, module_level, line in _imports(ast.parse(src), module):
            target = _room(name) if name.startswith("fl_chain.") else None
            if room in PURE and module_level and name.split(".")[0] in ("web3", "flwr"):
                bad.append(f"{where}:{line}: {room}/ imports {name} at module level")
            if room == "chain" and name.split(".")[0] == "flwr":
                bad.append(f"{where}:{line}: chain/ imports flwr")
            if target is None or target == room:
                continue
            if target in ROLES and room in MAY_IMPORT and target not in MAY_IMPORT[room]:
                bad.append(f"{where}:{line}: {room}/ imports {target}/")
            if target in TOP and room not in TOP:
                bad.append(f"{where}:{line}: {room or module} (below the CLI) imports {target}")
        if room != "chain":
            for m in RAW_CALL.finditer(src):
                bad.append(
                    f"{where}:{src.count(chr(10), 0, m.start()) + 1}: raw contract call outside chain/"
                )
    return sorted(set(bad))


def test_imports_follow_the_layers() -> None:
    """No upward import, no coordinator<->verify import, no raw contract call outside the wrappers."""
    assert layering_violations() == []


def test_a_deliberate_upward_import_is_caught(tmp_path: Path) -> None:
    """The walk is not vacuous: one upward import in a copy of the tree is reported."""
    copy = tmp_path / "fl_chain"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "static"))
    target = copy / "chain" / "ledger.py"
    target.write_text(target.read_text() + "\nfrom fl_chain.coordinator import strategy  # upward\n")
    found = layering_violations(copy)
    assert any("chain/ledger.py" in v and "imports coordinator/" in v for v in found), found


@pytest.mark.parametrize("entry", ["fl_chain.coordinator.server_app:app", "fl_chain.node.client_app:app"])
def test_flower_entry_points_resolve(entry: str) -> None:
    """The strings handed to Flower's processes name importable objects."""
    module, attr = entry.split(":")
    assert getattr(importlib.import_module(module), attr) is not None
    from fl_chain.runners import processes

    assert entry in Path(processes.__file__).read_text()


def test_public_ext_names_resolve() -> None:
    """fl_chain.ext's public names (the stable API for users' Flower Apps) all import."""
    from fl_chain import ext

    assert ext.__all__ and all(getattr(ext, name) is not None for name in ext.__all__)
