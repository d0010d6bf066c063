"""Compile the Solidity contracts with py-solc-x, driving solcjs (or a native `solc` on PATH).

solcjs has no `--combined-json`, and prints a non-JSON line before its standard-JSON output, so
py-solc-x's `compile_standard` is pointed at a tiny shell shim that filters that line. Imports are
resolved here in Python (OpenZeppelin from node_modules), so the compiler receives every source in
the standard-JSON input and native solc and solcjs see identical input. Artifacts are cached in
`build/contracts.json` keyed by a hash of the input, so a changed source triggers a rebuild.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

import solcx
from solcx.exceptions import SolcError

from fl_chain.errors import FlchainError
from fl_chain.paths import contracts_dir, node_modules, project_root, require_node_tool

CONTRACT_NAMES = ("NodeRegistry", "Reputation", "ModelLedger", "ValidationQuorum", "ReputationCheckpoints")
EVM_VERSION = "shanghai"  # solc 0.8.37 defaults to osaka; ganache fails on MCOPY
_IMPORT_RE = re.compile(r'^\s*import\s+(?:[^"\']*from\s+)?["\']([^"\']+)["\']\s*;', re.MULTILINE)


def _resolve(import_path: str, importer: str) -> str:
    """Source-unit name of an import, relative imports resolved against the importer's name."""
    if import_path.startswith("."):
        parts = importer.split("/")[:-1]
        for piece in import_path.split("/"):
            if piece == "..":
                parts.pop()
            elif piece != ".":
                parts.append(piece)
        return "/".join(parts)
    return import_path


def _read_unit(name: str) -> str:
    local = contracts_dir() / name
    if local.exists():
        return local.read_text()
    dep = node_modules() / name
    if dep.exists():
        return dep.read_text()
    raise FlchainError(f"import {name!r} not found in {contracts_dir()} or {node_modules()}")


def collect_sources(entry_files: list[str]) -> dict[str, str]:
    """All source units reachable by imports from the given files, keyed by source-unit name."""
    sources: dict[str, str] = {}
    todo = list(entry_files)
    while todo:
        name = todo.pop()
        if name in sources:
            continue
        text = _read_unit(name)
        sources[name] = text
        todo.extend(_resolve(imp, name) for imp in _IMPORT_RE.findall(text))
    return sources


def standard_input(sources: dict[str, str]) -> dict[str, Any]:
    """The standard-JSON compiler input for the given sources."""
    return {
        "language": "Solidity",
        "sources": {name: {"content": text} for name, text in sorted(sources.items())},
        "settings": {
            "optimizer": {"enabled": True, "runs": 10000},
            "evmVersion": EVM_VERSION,
            "viaIR": True,  # commitRound has more calldata arrays than the legacy stack allows
            "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}},
        },
    }


def _solc_binary(build_dir: Path) -> Path:
    """A native solc if one is on PATH, else a shim around the pinned solcjs."""
    native = shutil.which("solc")
    if native:
        return Path(native)
    solcjs = require_node_tool("solc/solc.js", "solcjs (npm package solc)")
    shim = build_dir / "solcjs-shim"
    # solcjs exits before flushing a pipe (output cut at 64 KiB), so it writes to a file first; and it
    # reads its input with one non-blocking read, which fails with EAGAIN when the input is larger than
    # a pipe holds, so the input goes through a file too.
    script = (
        "#!/bin/sh\n"
        "in=$(mktemp) && out=$(mktemp) || exit 1\n"
        'cat > "$in"\n'
        f'node {solcjs} "$@" < "$in" > "$out"; rc=$?\n'
        'grep -v \'^>>>\' "$out"; rm -f "$in" "$out"; exit $rc\n'
    )
    if not shim.exists() or shim.read_text() != script:
        shim.write_text(script)
        shim.chmod(0o755)
    return shim


def compile_contracts(force: bool = False, build_dir: Path | None = None) -> dict[str, dict[str, Any]]:
    """ABI and bytecode of every flchain contract, compiled only when a source changed.

    Returns a mapping contract name -> {"abi": [...], "bytecode": "0x..."}.
    """
    build_dir = build_dir or project_root() / "build"
    build_dir.mkdir(parents=True, exist_ok=True)
    sources = collect_sources([f"{n}.sol" for n in CONTRACT_NAMES])
    compiler_input = standard_input(sources)
    input_hash = hashlib.sha256(json.dumps(compiler_input, sort_keys=True).encode()).hexdigest()
    cache = build_dir / "contracts.json"
    if not force and cache.exists():
        cached = json.loads(cache.read_text())
        if cached.get("input_hash") == input_hash:
            return cached["contracts"]

    binary = _solc_binary(build_dir)
    try:
        output = solcx.compile_standard(compiler_input, solc_binary=binary)
    except SolcError as exc:
        first = next((ln for ln in str(exc).splitlines() if "Error" in ln), str(exc).splitlines()[0])
        raise FlchainError(f"Solidity compilation failed: {first.strip()}") from None
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise FlchainError(f"Solidity compilation failed: {errors[0]['formattedMessage'].splitlines()[0]}")
    contracts: dict[str, dict[str, Any]] = {}
    for name in CONTRACT_NAMES:
        out = output["contracts"][f"{name}.sol"][name]
        contracts[name] = {"abi": out["abi"], "bytecode": "0x" + out["evm"]["bytecode"]["object"]}
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps({"input_hash": input_hash, "contracts": contracts}))
    tmp.replace(cache)
    return contracts
