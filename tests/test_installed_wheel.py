"""flchain as a Flower user gets it: the wheel built from this checkout, installed into a fresh virtual
environment outside the repository, deploys onto a local anvil and runs examples/tabular-cancer (whose
pyproject.toml lists flchain as a dependency) for 2 rounds on the Simulation Engine, with nothing from the
checkout on the path: no contract sources, no node_modules (anvil comes from PATH), no PYTHONPATH.

No network: the wheel's dependencies are the ones already installed here, reached through a .pth file in
the new environment (lines of a .pth are plain path entries: the checkout's own editable flchain, hooked
in by its .pth file, is not picked up). pip would write the dependencies' console scripts into the new
environment; Flower's are written here the same way, from its entry points."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import uuid
import zipfile
from importlib.metadata import distribution
from pathlib import Path

from eth_account import Account
from packaging.requirements import Requirement

from fl_chain.chain import ledger
from fl_chain.chain.client import open_chain
from fl_chain.chain.setup.localnode import anvil_binary, free_port
from fl_chain.runners.processes import spawn, wait_port, write_flwr_home
from tests.test_e2e_deployment import processes_left

ROOT = Path(__file__).resolve().parents[1]


def build_wheel(tree: Path, out: Path) -> Path:
    """`pip wheel --no-deps` of a source tree, without build isolation (no download of setuptools)."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        str(out),
        ".",
    ]
    subprocess.run(cmd, cwd=tree, check=True, capture_output=True, timeout=180)
    return next(out.glob("flchain-*.whl"))


def _check_wheel(wheel: Path) -> None:
    """Ranges and extras in the metadata; compiled contracts inside, contract sources not needed."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "fl_chain/chain/setup/contracts.json" in names
    assert not any(n.endswith(".sol") for n in names)
    requires = [
        ln.removeprefix("Requires-Dist: ") for ln in metadata.splitlines() if ln.startswith("Requires-Dist:")
    ]
    assert "flwr<2,>=1.42" in requires and "web3<9,>=8" in requires
    pinned = [r for r in map(Requirement, requires) if any(spec.operator == "==" for spec in r.specifier)]
    assert all(r.marker is not None and 'extra == "dev"' in str(r.marker) for r in pinned)  # dev tools only
    assert {ln.split(": ")[1] for ln in metadata.splitlines() if ln.startswith("Provides-Extra:")} >= {
        "demo",
        "dashboard",
        "dev",
    }
    assert "Requires-Python: <4,>=3.11" in metadata


def _outside() -> dict[str, str]:
    """This environment without what points into the checkout."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FLCHAIN_ROOT", "FLCHAIN_ANVIL")}


def _fresh_venv(where: Path, wheel: Path) -> Path:
    """A virtual environment with the wheel installed and the already-installed dependencies reachable."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=60)
    python = where / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-index", "--no-deps"]
    # Away from the checkout (python -m puts the working directory on the path, and the wheel build left
    # flchain.egg-info there): pip must not find flchain installed already.
    subprocess.run(
        [*pip, str(wheel)], check=True, capture_output=True, timeout=120, cwd=where, env=_outside()
    )
    # Only now: with the dependencies visible, pip would take the checkout's editable flchain for this one.
    (site / "zz_installed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    for entry in distribution("flwr").entry_points.select(group="console_scripts"):
        script = where / "bin" / entry.name
        script.write_text(
            f"#!{python}\nimport sys\nfrom {entry.module} import {entry.attr}\nsys.exit({entry.attr}())\n"
        )
        script.chmod(0o755)
    return python


def test_the_installed_wheel_deploys_and_runs_a_users_app(tmp_path: Path) -> None:
    assert not tmp_path.is_relative_to(ROOT)
    wheel = build_wheel(ROOT, tmp_path / "wheel")
    _check_wheel(wheel)
    venv = tmp_path / "venv"
    python = _fresh_venv(venv, wheel)
    user = tmp_path / "user"  # the user's working directory: no checkout in sight
    user.mkdir()
    marker = f"flchain-installed-{uuid.uuid4()}"
    bin_dir = venv / "bin"
    env = _outside()
    env.update(PATH=f"{bin_dir}:{anvil_binary().parent}:/usr/bin:/bin", COLUMNS="200", PYTHONUNBUFFERED="1")
    env["FLCHAIN_TEST_MARKER"] = marker

    def flchain(*args: str) -> str:
        result = subprocess.run(
            [bin_dir / "flchain", *args],
            cwd=user,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    where = subprocess.run(
        [python, "-c", "import fl_chain; print(fl_chain.__file__)"],
        cwd=user,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.strip().startswith(str(venv))  # the installed package, not the checkout
    home = user / ".flchain"
    flchain("chain", "up", "--detach", "--port", str(free_port()))
    link = None
    try:
        keys = user / "simulated-keys.json"
        assert "2 simulated nodes registered" in flchain(
            "node", "simulated-keys", "--count", "2", "--out", str(keys)
        )
        assert oct(keys.stat().st_mode & 0o777) == "0o600"
        app = user / "app"
        shutil.copytree(
            ROOT / "examples" / "tabular-cancer", app, ignore=shutil.ignore_patterns("__pycache__")
        )
        pyproject = app / "pyproject.toml"
        assert '"flchain' in pyproject.read_text()  # a dependency of the App, as a user's App lists it
        declared = 'flchain-deployment = ""\nflchain-store = ""\nflchain-simulated-keys = ""\n'
        pyproject.write_text(
            pyproject.read_text().replace("[tool.flwr.app.config]\n", "[tool.flwr.app.config]\n" + declared)
        )
        port = free_port()
        command = [str(bin_dir / "flower-superlink"), "--insecure", "--simulation"]
        command += ["--disable-runtime-dependency-installation", "--host", "127.0.0.1", "--port", str(port)]
        link = spawn("SuperLink", command, tmp_path / "superlink.log", env)
        wait_port("127.0.0.1", port, link)
        flwr_home = write_flwr_home(tmp_path / "flwr-home", f"127.0.0.1:{port}")
        run_config = (
            f"flchain-deployment='{home / 'deployment.json'}' flchain-store='{home / 'store'}' "
            f"flchain-simulated-keys='{keys}' min-nodes=2 num-server-rounds=2"
        )
        flwr = [str(bin_dir / "flwr"), "run", str(app), "flchain", "--stream", "--run-config", run_config]
        flwr += ["--federation-config", "num-supernodes=2 client-resources-num-cpus=1"]
        result = subprocess.run(
            flwr,
            cwd=user,
            capture_output=True,
            text=True,
            env={**env, "FLWR_HOME": str(flwr_home)},
            timeout=300,
            check=False,
        )
        assert result.returncode == 0 and "Strategy execution finished" in result.stdout, result.stdout
        chain = open_chain(home / "deployment.json")
        task = ledger.task_count(chain)
        assert ledger.round_count(chain, task) == 3  # round 0 + 2 rounds
        simulated = {Account.from_key(k).address for k in json.loads(keys.read_text())["keys"]}
        for rnd in (1, 2):
            assert set(ledger.contributions(chain, task, rnd)) == simulated
        assert "round" in flchain("status").lower()  # the installed CLI reads the ledger it wrote
    finally:
        if link is not None:
            link.stop()
        subprocess.run(
            [bin_dir / "flchain", "chain", "down"],
            cwd=user,
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
    assert processes_left(marker) == []
