"""The package as Flower users get it: ranges in its metadata, our exact versions in the lock, and a light
core that a node or a coordinator imports without the extras."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from fl_chain.errors import FlchainError
from fl_chain.extras import EXTRAS, require_extra

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _locked() -> dict[str, str]:
    """requirements.lock as name -> exact version."""
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        found = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line)
        if found:
            pins[canonicalize_name(found[1])] = found[2]
    return pins


def test_the_lock_satisfies_every_range() -> None:
    locked = _locked()
    extras = PROJECT["optional-dependencies"]
    assert set(extras) >= {"demo", "dashboard", "dev"}
    for group, requirements in [("core", PROJECT["dependencies"]), *extras.items()]:
        for text in requirements:
            req = Requirement(text)
            if req.name == "flchain":  # dev includes the other extras
                continue
            name = canonicalize_name(req.name)
            assert name in locked, f"{group}: {text} is not in requirements.lock (run `make lock`)"
            assert req.specifier.contains(locked[name], prereleases=True), (
                f"{group}: {text} vs {locked[name]}"
            )
            if group != "dev":  # a library's metadata: ranges, never our exact versions
                assert not any(s.operator == "==" for s in req.specifier), f"{group}: {text} is a pin"
    assert PROJECT["requires-python"] == ">=3.11,<4"  # Flower 1.42's own range


# Imported with the extras' modules made unimportable, as on a node that installed only `flchain`.
LIGHT_CORE = """
import importlib.abc, sys
HEAVY = {heavy!r}
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in HEAVY:
            raise ImportError(f'{{name}} is not installed')
sys.meta_path.insert(0, Absent())
from fl_chain.ext import ChainStrategy, LedgerSession, flchain_mod
import fl_chain.cli, fl_chain.runners.server, fl_chain.runners.node, fl_chain.chain.setup.bootstrap
from fl_chain.cli import run
code = run(['chain', '--help'])
print(code, sorted(m for m in sys.modules if m.split('.')[0] in HEAVY))
"""


def test_a_node_and_a_coordinator_need_none_of_the_extras() -> None:
    heavy = sorted({m for modules in EXTRAS.values() for m in modules} | {"solcx"})
    out = subprocess.run(
        [sys.executable, "-c", LIGHT_CORE.format(heavy=heavy)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "0 []"


def test_a_missing_extra_is_one_line() -> None:
    with pytest.raises(
        FlchainError,
        match=r"^flchain demo needs nosuchmodule, not installed here: pip install 'flchain\[demo\]'$",
    ):
        require_extra("demo", "flchain demo", ("json", "nosuchmodule"))
    require_extra("dashboard", "anything", ("json",))  # present: no error
