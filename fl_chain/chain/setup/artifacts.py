"""The compiled contracts shipped inside the package: what `deploy_contracts` deploys.

`make artifacts` (python -m fl_chain.chain.setup.compile) writes them from `contracts/`; a test asserts
they equal a fresh compile of the sources, so an installed wheel deploys with neither npm nor a Solidity
compiler and still deploys exactly what the repository's sources say.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fl_chain.errors import FlchainError

SHIPPED = Path(__file__).resolve().parent / "contracts.json"
FORMAT = 1  # the layout of contracts.json; bump when its keys change


def artifact_document(
    contracts: dict[str, dict[str, Any]], settings: dict[str, Any], compiler: str, sources_hash: str
) -> dict[str, Any]:
    """The shipped file's content: every contract's ABI and bytecode, how they were compiled and a hash
    of the exact compiler input (sources and settings) they came from."""
    return {
        "format": FORMAT,
        "compiler": compiler,
        "settings": settings,
        "sources_sha256": sources_hash,
        "contracts": contracts,
    }


def read_document(path: Path = SHIPPED) -> dict[str, Any]:
    """The shipped artifact document, or a one-line error saying how to produce it."""
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise FlchainError(
            f"compiled contracts missing at {path}: in a checkout run `make artifacts` "
            "(a released flchain ships them)"
        ) from None
    except (OSError, ValueError) as exc:
        raise FlchainError(f"compiled contracts at {path} cannot be read: {exc}") from None
    if document.get("format") != FORMAT or not isinstance(document.get("contracts"), dict):
        raise FlchainError(f"compiled contracts at {path}: expected format {FORMAT} with a 'contracts' map")
    return document


def load_artifacts(path: Path = SHIPPED) -> dict[str, dict[str, Any]]:
    """ABI and bytecode of every contract, as shipped: name -> {"abi": [...], "bytecode": "0x..."}."""
    return read_document(path)["contracts"]
