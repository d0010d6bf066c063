"""Compile the Solidity contracts with py-solc-x, driving solcjs (or a native `solc` on PATH).

solcjs has no `--combined-json`, and prints a non-JSON line before its standard-JSON output, so
py-solc-x's `compile_standard` is pointed at a tiny shell shim that filters that line. Imports are
resolved here in Python (OpenZeppelin from node_modules), so the compiler receives every source in
the standard-JSON input and native solc and solcjs see identical input. Artifacts are cached in
`build/contracts.json` keyed by a hash of the input, so a changed source triggers a rebuild.

`python -m fl_chain.chain.setup.compile` (what `make artifacts` runs) writes the result, with the compiler
version, settings and input hash, into the package (artifacts.py): deploying uses that file, so only
contract developers need npm and a compiler. py-solc-x is imported on use: it is a `flchain[dev]` tool.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from fl_chain.chain.setup.artifacts import SHIPPED, artifact_document
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


def compiler_version(binary: Path) -> str:
    """The compiler's own version string, e.g. 0.8.37+commit.f401782d.Emscripten.clang."""
    out = subprocess.run([str(binary), "--version"], input="", capture_output=True, text=True, check=False)
    lines = [ln.strip() for ln in out.stdout.splitlines() if ln.strip()]
    return lines[-1].removeprefix("Version: ") if out.returncode == 0 and lines else "unknown"


def _solcx() -> Any:
    """py-solc-x, or a one-line error naming the extra that installs it."""
    try:
        import solcx
    except ImportError:
        raise FlchainError(
            "compiling the contracts needs py-solc-x: pip install 'flchain[dev]' "
            "(deploying needs no compiler: the package ships the compiled contracts)"
        ) from None
    return solcx


def _run_compiler(compiler_input: dict[str, Any], build_dir: Path) -> dict[str, dict[str, Any]]:
    """ABI and bytecode of every flchain contract from one standard-JSON compile."""
    solcx = _solcx()
    from solcx.exceptions import SolcError

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
    return contracts


def compile_document(force: bool = False, build_dir: Path | None = None) -> dict[str, Any]:
    """The artifact document (artifacts.py) of the sources in `contracts/`, compiled only when the
    compiler input changed since the cached build."""
    build_dir = build_dir or project_root() / "build"
    build_dir.mkdir(parents=True, exist_ok=True)
    compiler_input = standard_input(collect_sources([f"{n}.sol" for n in CONTRACT_NAMES]))
    input_hash = hashlib.sha256(json.dumps(compiler_input, sort_keys=True).encode()).hexdigest()
    cache = build_dir / "contracts.json"
    if not force and cache.exists():
        cached = json.loads(cache.read_text())
        if cached.get("sources_sha256") == input_hash:
            return cached
    contracts = _run_compiler(compiler_input, build_dir)
    compiler = compiler_version(_solc_binary(build_dir))
    document = artifact_document(contracts, compiler_input["settings"], compiler, input_hash)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps(document))
    tmp.replace(cache)
    return document


def compile_contracts(force: bool = False, build_dir: Path | None = None) -> dict[str, dict[str, Any]]:
    """ABI and bytecode of every flchain contract compiled from `contracts/` (cached until a source
    changes): name -> {"abi": [...], "bytecode": "0x..."}."""
    return compile_document(force, build_dir)["contracts"]


def write_shipped(path: Path = SHIPPED, force: bool = False) -> dict[str, Any]:
    """Compile `contracts/` and write the artifact document the package ships (stable bytes, so an
    unchanged compile leaves the file unchanged)."""
    document = compile_document(force)
    text = json.dumps(document, indent=1, sort_keys=True) + "\n"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return document


def main(argv: list[str] | None = None) -> None:
    """`make artifacts`: write the compiled contracts into the package."""
    parser = argparse.ArgumentParser(description="Compile contracts/ into the package's contracts.json")
    parser.add_argument("--out", type=Path, default=SHIPPED)
    parser.add_argument("--force", action="store_true", help="recompile even if the cached build matches")
    args = parser.parse_args(argv)
    document = write_shipped(args.out, args.force)
    print(f"{args.out}: {len(document['contracts'])} contracts, {document['compiler']}")


if __name__ == "__main__":
    main()
