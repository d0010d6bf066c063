"""The compiled contracts the package ships (what every deployment deploys) never drift from contracts/."""

from __future__ import annotations

from pathlib import Path

import pytest

from fl_chain.chain.setup.artifacts import SHIPPED, load_artifacts, read_document
from fl_chain.chain.setup.compile import CONTRACT_NAMES, _solc_binary, compile_document, compiler_version
from fl_chain.errors import FlchainError
from fl_chain.paths import project_root


def test_shipped_artifacts_equal_a_compile_of_the_sources() -> None:
    # Compiled from contracts/ by the pinned compiler (build/ caches the result by a hash of the exact
    # compiler input, sources and settings); `make artifacts` rewrites the shipped file when this fails.
    fresh = compile_document()
    shipped = read_document()
    assert shipped["sources_sha256"] == fresh["sources_sha256"], "contracts/ changed: run `make artifacts`"
    assert shipped["compiler"] == compiler_version(_solc_binary(project_root() / "build"))
    assert shipped == fresh
    assert set(load_artifacts()) == set(CONTRACT_NAMES)
    assert SHIPPED.parent.name == "setup" and SHIPPED.is_relative_to(Path(__file__).parents[1] / "fl_chain")


def test_missing_or_foreign_artifacts_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(
        FlchainError, match=r"compiled contracts missing at .*: in a checkout run `make artifacts`"
    ):
        load_artifacts(tmp_path / "none.json")
    (tmp_path / "old.json").write_text('{"input_hash": "x", "contracts": {}}')
    with pytest.raises(FlchainError, match=r"expected format 1 with a 'contracts' map"):
        load_artifacts(tmp_path / "old.json")
