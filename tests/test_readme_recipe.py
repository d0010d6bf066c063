"""The multi-machine recipe (docs/multi-machine.md, "Server and clients on separate machines"), run command by
command as written, on this one machine: machine A and three nodes, each in its own directory with its
own FLCHAIN_HOME, so a node has only what the recipe gives it.

The test changes a command only by the mechanical substitutions in SUBSTITUTIONS (a prompt stripped,
the checkout's paths, 127.0.0.1 for the host name A, free ports for 8545/9100, the address `node keygen`
printed for 0xN1ADDRESS, a copy into the node's directory for `scp`, the test password for `...`, node
i's share for `--partition 0/3`, an optional `[--task digits]` given) plus a small run (few rounds)
in the config the recipe copies. A command it does not recognise, a host, port or node name it did not
replace, or a step of the recipe that is missing fails the test: the page and the test cannot drift."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fl_chain.chain.client import open_chain
from fl_chain.chain.deployment import Deployment
from fl_chain.chain.ledger import contributions, round_count
from fl_chain.chain.setup.localnode import free_port, read_pidfile
from fl_chain.proctree import pid_alive, stop_pid
from tests.test_deployment_security import DEV_ADDRESSES, private_keys_in
from tests.test_e2e_deployment import processes_left

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "docs" / "multi-machine.md"  # the recipe moved from the README to the docs site
SECTION = "# Server and clients on separate machines"
PASSWORD = "readme recipe password"
NODES = 3  # the recipe's `--partition 0/3`: three nodes, partitions 0/3, 1/3, 2/3
ROUNDS = 2
FLCHAIN = [sys.executable, "-m", "fl_chain"]
# Every change the test makes to a README command, by kind. Nothing else is changed.
SUBSTITUTIONS = {
    "prompt": "`A$ `/`N1$ ` stripped; N1's commands run once per node, in that node's directory",
    "flchain": "`.venv/bin/flchain` -> `sys.executable -m fl_chain`",
    "checkout": "a path into the checkout (`scripts/…`, `configs/…`) -> the same file of this checkout",
    "host": "the host name `A` -> 127.0.0.1 where a node connects (and in the certificate it checks)",
    "port": "8545 / 9100 -> free ports",
    "address": "0xN1ADDRESS -> the address `node keygen` printed",
    "scp": "`scp X N1:Y` -> a copy of A's X into the node's directory as Y",
    "password": "`...` -> the test password",
    "partition": "`--partition 0/3` -> node i's `i/3`",
    "optional": "`[--task digits]` -> `--task digits`",
}
# The README's own setting for the copied config, and the test's small run on top of it.
CONFIG_SETTING = re.compile(r'^#\s+in run\.toml set \[chain\] (coordinator_key = "[^"]+")\s*$')
SMALL_RUN = {
    r"^rounds = 5\b": f"rounds = {ROUNDS}",
    r"^min_nodes = 2\b": f"min_nodes = {NODES}",  # every round trains on every node
    r"^local_epochs = 5\b": "local_epochs = 1",
}


@dataclass
class Machine:
    """A machine of the recipe: its directory (the command's working directory) and environment."""

    name: str
    dir: Path
    env: dict[str, str]
    address: str = ""
    outputs: list[str] = field(default_factory=list)


def recipe_lines() -> list[str]:
    """The ```sh block of the README's multi-machine section, continuation lines joined."""
    text = README.read_text()
    section = text[text.index(SECTION) :]
    block = section[section.index("```sh\n") + len("```sh\n") :]
    block = block[: block.index("```")]
    joined = re.sub(r"\\\n\s*", " ", block)
    return [line.rstrip() for line in joined.splitlines() if line.strip()]


def parse(lines: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """(prompt, command) pairs, comments stripped, and the comment lines; any other line fails."""
    commands, comments = [], []
    for line in lines:
        if line.startswith("#"):
            comments.append(line)
            continue
        match = re.fullmatch(r"(A|N1)\$\s+(.+?)(\s+#\s.*)?", line)
        assert match, f"README recipe line not recognised: {line!r}"
        commands.append((match.group(1), match.group(2)))
    return commands, comments


class Recipe:
    """Runs the recipe's commands on machine A and the nodes, recording every substitution made."""

    def __init__(self, tmp_path: Path, marker: str) -> None:
        base = {k: v for k, v in os.environ.items() if not k.startswith("FLCHAIN_")}
        base.update(PYTHONUNBUFFERED="1", COLUMNS="200", FLCHAIN_TEST_MARKER=marker)
        self.a = self._machine("A", tmp_path / "A", base)
        self.nodes = [self._machine(f"N{i + 1}", tmp_path / f"N{i + 1}", base) for i in range(NODES)]
        self.rpc_port = free_port("0.0.0.0")
        self.link_port = free_port("0.0.0.0")
        self.used: set[str] = set()
        self.server: subprocess.Popen | None = None
        self.clients: list[subprocess.Popen] = []

    @staticmethod
    def _machine(name: str, directory: Path, base: dict[str, str]) -> Machine:
        directory.mkdir(parents=True)
        return Machine(name, directory, {**base, "FLCHAIN_HOME": str(directory / ".flchain")})

    def targets(self, prompt: str, command: str) -> list[tuple[Machine, Machine | None]]:
        """(machine that runs it, node it concerns): a command naming N1 runs once per node."""
        if prompt == "N1":
            return [(node, node) for node in self.nodes]
        if "N1" in command:
            return [(self.a, node) for node in self.nodes]
        return [(self.a, None)]

    def substitute(self, command: str, machine: Machine, node: Machine | None) -> list[str]:
        """The command's argv after the mechanical substitutions (and only those)."""
        self.used.add("prompt")
        if "[--task digits]" in command:
            command = command.replace("[--task digits]", "--task digits")
            self.used.add("optional")
        argv: list[str] = []
        tokens = shlex.split(command)
        for i, token in enumerate(tokens):
            previous = tokens[i - 1] if i else ""
            if i == 0 and token == ".venv/bin/flchain":
                argv += FLCHAIN
                self.used.add("flchain")
                continue
            if (i == 0 and token.startswith("scripts/")) or (tokens[0] == "cp" and i == 1):
                assert (ROOT / token).is_file(), f"{token}: no such file in the checkout"
                token = str(ROOT / token)
                self.used.add("checkout")
            elif token == "FLCHAIN_KEY_PASSWORD=..." and tokens[0] == "export":
                token = f"FLCHAIN_KEY_PASSWORD={PASSWORD}"
                self.used.add("password")
            elif token == "0xN1ADDRESS":
                assert node is not None and node.address, "0xN1ADDRESS before `node keygen` printed it"
                token = node.address
                self.used.add("address")
            elif token in ("http://A:8545", "A:9100"):
                port = self.rpc_port if "8545" in token else self.link_port
                token = token.replace("A:8545", f"127.0.0.1:{port}").replace("A:9100", f"127.0.0.1:{port}")
                self.used |= {"host", "port"}
            elif token in ("8545", "9100") and previous == "--port":
                token = str(self.rpc_port if token == "8545" else self.link_port)
                self.used.add("port")
            elif token == "A" and tokens[0].endswith("make-certs.sh"):
                token = "127.0.0.1"
                self.used.add("host")
            elif token.startswith("N1:") and tokens[0] == "scp":
                assert node is not None
                token = str(node.dir / token.removeprefix("N1:"))
                self.used.add("scp")
            elif token == "0/3" and previous == "--partition":
                token = f"{self.nodes.index(machine)}/3"
                self.used.add("partition")
            leftover = re.search(r"\bN1\b|\bA:|8545|9100|\.\.\.|0xN1", token)
            assert token != tokens[i] or not leftover, f"{command!r}: {token!r} is not substituted"
            argv.append(token)
        return argv

    def run(self, machine: Machine, argv: list[str]) -> str:
        result = subprocess.run(
            argv,
            cwd=machine.dir,
            env=machine.env,
            stdin=subprocess.DEVNULL,  # a command that would prompt fails instead of waiting
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        output = result.stdout + result.stderr
        machine.outputs.append(output)
        assert result.returncode == 0, f"{machine.name}$ {shlex.join(argv)}\n{output}"
        return result.stdout

    def spawn(self, machine: Machine, argv: list[str], log: str) -> subprocess.Popen:
        with open(machine.dir.parent / log, "w") as fh:
            return subprocess.Popen(
                argv, cwd=machine.dir, env=machine.env, stdin=subprocess.DEVNULL, stdout=fh, stderr=fh
            )

    def stop(self) -> None:
        """Clients, then the server (SIGTERM, as Ctrl-C would, by PID), then A's chain."""
        for proc in [*self.clients, self.server]:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        pidfile = self.a.dir / ".flchain" / "chain.json"
        chain = read_pidfile(pidfile)
        subprocess.run(
            [*FLCHAIN, "chain", "down"], cwd=self.a.dir, env=self.a.env, capture_output=True, timeout=60
        )
        for pid in (chain.gate_pid, chain.pid) if chain is not None else ():  # if `chain down` failed
            if pid and pid_alive(pid):
                stop_pid(pid)


@pytest.mark.timeout(300)
def test_the_readme_multi_machine_recipe_runs_as_written(tmp_path: Path) -> None:
    commands, comments = parse(recipe_lines())
    settings = [m.group(1) for c in comments if (m := CONFIG_SETTING.match(c))]
    assert settings == ['coordinator_key = ".flchain/keys/coordinator.json"'], comments
    marker = f"flchain-readme-{uuid.uuid4()}"
    recipe = Recipe(tmp_path, marker)
    a, nodes = recipe.a, recipe.nodes
    done: list[str] = []
    try:
        for prompt, command in commands:
            for machine, node in recipe.targets(prompt, command):
                argv = recipe.substitute(command, machine, node)
                done.append(step(recipe, machine, node, argv))
        assert sorted(set(done)) == sorted(STEPS), f"recipe steps run: {done}"
        assert recipe.used == set(SUBSTITUTIONS), recipe.used  # every substitution is one the recipe needs

        assert recipe.server is not None
        server_log = tmp_path / "server.out"
        client_logs = [tmp_path / f"client-{n.name}.out" for n in nodes]
        recipe.server.wait(timeout=240)
        output = server_log.read_text()
        everything = output + "".join(log.read_text() for log in client_logs)
        assert recipe.server.returncode == 0, everything

        # The server says what the README says: only the Fleet API on the public port, every node
        # verified at the join gate, one line per committed round, and the run is complete.
        assert f"SuperLink on 0.0.0.0:{recipe.link_port} (Fleet API only" in output, output
        for n in nodes:
            assert re.search(rf"node \d+ \({n.address}\) verified", output, re.IGNORECASE), output
        assert re.search(r"^round 0: accuracy ", output, re.M), output
        for rnd in range(1, ROUNDS + 1):
            assert re.search(rf"^round {rnd}: accuracy .*, {NODES} participants", output, re.M), output
        assert "run complete" in output and "refused" not in output, output
        # The ledger has every round, each trained on every node.
        chain = open_chain(a.dir / ".flchain" / "deployment.json", f"http://127.0.0.1:{recipe.rpc_port}")
        task = int(chain.ledger.functions.taskCount().call())
        assert task == 1 and round_count(chain, task) == ROUNDS + 1
        for rnd in range(1, ROUNDS + 1):
            assert {p.lower() for p in contributions(chain, task, rnd)} == {n.address.lower() for n in nodes}
        # Each node learned of the commits from its own chain watcher, through its own RPC URL.
        deadline = time.monotonic() + 10
        while not all(f"round {ROUNDS} of task {task} committed" in log.read_text() for log in client_logs):
            assert time.monotonic() < deadline, everything
            time.sleep(0.3)
        # A node has only what the recipe gave it (and its own state directory); the password was printed
        # nowhere.
        for n in nodes:
            given = {p.name for p in n.dir.iterdir()} - {".flchain"}
            assert given == {"node.json", "flchain-deployment.json", "ca.crt"}, given
        printed = everything + "".join(m for machine in (a, *nodes) for m in machine.outputs)
        assert PASSWORD not in printed
    finally:
        recipe.stop()
    assert processes_left(marker) == []


def step(recipe: Recipe, machine: Machine, node: Machine | None, argv: list[str]) -> str:
    """Run one substituted command as its step requires, check what it prints; returns the step's name."""
    a = recipe.a
    if argv[0] == "export":
        name, value = argv[1].split("=", 1)
        machine.env[name] = value
        return "export"
    if argv[0] == "scp":
        assert machine is a and node is not None and len(argv) == 3
        source, target = machine.dir / argv[1], Path(argv[2])
        assert target.parent == node.dir, argv
        shutil.copyfile(source, target)
        if source.name == "deployment.json":  # "addresses, ABIs, no key"
            text = target.read_text()
            holders = set(json.loads(text)["roles"].values()) | DEV_ADDRESSES
            assert "dev_keys" not in text and private_keys_in(text, holders) == []
            return "scp deployment"
        assert source.name == "ca.crt" and "PRIVATE KEY" not in target.read_text()
        return "scp ca.crt"
    if argv[0] == "cp":
        assert machine is a and len(argv) == 3 and argv[1].endswith("configs/demo.toml")
        recipe.run(machine, argv)
        config = machine.dir / argv[2]
        text = config.read_text()
        edits = {r'^coordinator_key = ""': 'coordinator_key = ".flchain/keys/coordinator.json"', **SMALL_RUN}
        for pattern, value in edits.items():
            text, count = re.subn(pattern, value, text, flags=re.M)
            assert count == 1, pattern
        config.write_text(text)
        return "config"
    if argv[0].endswith("scripts/make-certs.sh"):
        assert "SAN: IP:127.0.0.1" in recipe.run(machine, argv)
        return "certificates"
    assert argv[: len(FLCHAIN)] == FLCHAIN, f"README command not recognised: {argv}"
    words = argv[len(FLCHAIN) :]
    if words[:2] == ["chain", "up"]:
        out = recipe.run(machine, argv)
        deployment = Deployment.load(a.dir / ".flchain" / "deployment.json")
        assert deployment.dev_keys == {} and not set(deployment.roles.values()) & DEV_ADDRESSES
        for role in ("admin", "registrar", "coordinator"):  # fresh keystores, as the comment says
            assert (a.dir / ".flchain" / "keys" / f"{role}.json").is_file()
            assert f"{role} keystore" in out, out
        assert "RPC gate" in out, out
        return "chain up"
    if words[:2] == ["node", "keygen"]:
        out = recipe.run(machine, argv)
        match = re.search(r"address (0x[0-9a-fA-F]{40})", out)  # "prints the address"
        assert match, out
        machine.address = match.group(1)
        return "keygen"
    if words[:2] == ["chain", "fund"]:
        out = recipe.run(machine, argv)
        assert node is not None and f"to {node.address}; balance 1 ether" in out, out  # "1 ether"
        assert out.startswith("sent 1 ether from"), out
        return "fund"
    if words[:2] == ["node", "apply"]:
        out = recipe.run(machine, argv)
        assert f"{machine.address} applied".lower() in out.lower() and "status Pending" in out, out
        return "apply"
    if words[:2] == ["node", "approve"]:
        out = recipe.run(machine, argv)
        assert node is not None and f"{node.address}: Active" in out, out
        return "approve"
    if words[:1] == ["server"]:
        assert recipe.server is None
        recipe.server = recipe.spawn(machine, argv, "server.out")
        return "server"
    if words[:1] == ["client"]:
        recipe.clients.append(recipe.spawn(machine, argv, f"client-{machine.name}.out"))
        return "client"
    raise AssertionError(f"README command not recognised: {argv}")


STEPS = [
    "export",
    "chain up",
    "scp deployment",
    "keygen",
    "fund",
    "apply",
    "approve",
    "config",
    "certificates",
    "scp ca.crt",
    "server",
    "client",
]
