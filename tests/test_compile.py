"""Compilation through py-solc-x + solcjs: OpenZeppelin imports resolve, artifacts are cached and
rebuilt when a source changes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import solcx

from fl_chain.chain.setup.compile import CONTRACT_NAMES, collect_sources, compile_contracts
from fl_chain.paths import contracts_dir, node_modules


@pytest.fixture()
def project_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the contract sources with the real node_modules linked in."""
    shutil.copytree(contracts_dir(), tmp_path / "contracts")
    (tmp_path / "node_modules").symlink_to(node_modules())
    cache = contracts_dir().parent / "build" / "contracts.json"
    if cache.exists():  # the session's chain fixture usually compiled already: start from its cache
        (tmp_path / "build").mkdir()
        shutil.copy(cache, tmp_path / "build" / "contracts.json")
    monkeypatch.setenv("FLCHAIN_ROOT", str(tmp_path))
    return tmp_path


def test_openzeppelin_imports_are_collected() -> None:
    sources = collect_sources([f"{n}.sol" for n in CONTRACT_NAMES])
    assert "@openzeppelin/contracts/access/AccessControl.sol" in sources
    assert "@openzeppelin/contracts/utils/introspection/ERC165.sol" in sources  # relative import


def test_compile_is_cached_and_rebuilt_on_change(project_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = compile_contracts()
    assert set(first) == set(CONTRACT_NAMES)
    assert all(
        a["bytecode"].startswith("0x60") and len(a["bytecode"]) > 2000 and a["abi"] for a in first.values()
    )
    assert (project_copy / "build" / "contracts.json").exists()

    calls: list[int] = []
    real = solcx.compile_standard

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(solcx, "compile_standard", counting)  # imported on use
    assert compile_contracts() == first and calls == []  # unchanged sources: served from the cache
    source = project_copy / "contracts" / "Reputation.sol"
    source.write_text(source.read_text() + "\n// edited\n")
    compile_contracts()
    assert calls == [1]


def test_syntax_error_is_one_line(project_copy: Path) -> None:
    from fl_chain.errors import FlchainError

    source = project_copy / "contracts" / "ModelLedger.sol"
    source.write_text(source.read_text().replace("contract ModelLedger", "contract ModelLedger {{"))
    with pytest.raises(FlchainError, match="Solidity compilation failed: ") as info:
        compile_contracts()
    assert "\n" not in str(info.value)
