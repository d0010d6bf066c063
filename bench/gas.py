"""Gas of ModelLedger.commitRound against the issue's budget (120k + 12k per participant), and of the
same round committed as a verified round (commitVerifiedRound: plus the Merkle root of its updates);
then the two modes side by side at 10 / 100 / 1,000 / 10,000 participants: the per-participant commit
against commitment mode (commitOutcomes, the reputation checkpoint, its attestations, a suspension
applied by proof and a proof checked by isActive).

Runs a real anvil node, deploys the contracts, registers 1,000 nodes and commits rounds with
0, 1, 10, 50, 100 and (per-participant mode) 1,000 participants. Prints tables and writes docs/gas.md.
Usage: .venv/bin/python bench/gas.py
"""

from __future__ import annotations

import json
import secrets
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eth_account import Account  # noqa: E402
from eth_utils import to_checksum_address  # noqa: E402

from fl_chain.chain import checkpoints, quorum  # noqa: E402
from fl_chain.chain.registry import Capacity  # noqa: E402
from fl_chain.chain.setup import bootstrap  # noqa: E402
from fl_chain.protocol.outcomes import CheckpointLeaves, RoundOutcomes  # noqa: E402
from fl_chain.protocol.update_signing import sign_ticket, sign_update  # noqa: E402

SIZES = (0, 1, 10, 50, 100)
MODE_SIZES = (10, 100, 1_000, 10_000)  # participants per round, both modes side by side
BLOCK_GAS_LIMIT = 30_000_000  # anvil's default and Ethereum mainnet's order of magnitude
CASSANO_PER_CLIENT = (128_000, 156_000)  # Cassano et al. 2024: gas per client per round
REPEATS = 2  # the second commit of each size is the steady state (all slots already non-zero)
OUTCOMES: list[int] = []


def budget(n: int) -> int:
    """The issue's gas budget for a commit with n participants."""
    return 120_000 + 12_000 * n


def main() -> None:
    """Measure and report."""
    with tempfile.TemporaryDirectory() as tmp:
        local = bootstrap.start_local(Path(tmp))
        try:
            nodes = bootstrap.register_nodes(
                local.client,
                max(MODE_SIZES[:3]) + 24,
                capacity=Capacity(2, 4096, 100),
                progress=lambda done, total: print(f"registered {done}/{total} nodes", end="\r"),
            )
            print()
            rows = measure(local, nodes)
            modes = measure_modes(local, nodes[20:])  # measure() suspends some of nodes[10:20]
            protocol = measure_protocol(local, nodes[-44:-24])  # members of no task of measure_modes
        finally:
            local.stop()
    table = Table(title="ModelLedger.commitRound gas (anvil, steady state)")
    for col in (
        "participants",
        "gas",
        "budget 120k+12k·n",
        "gas / budget",
        "marginal gas / participant",
        "verified round gas",
        "verified - plain",
    ):
        table.add_column(col, justify="right")
    base = rows[0][1]
    lines = [
        "# Gas of a round commit",
        "",
        "Measured by `bench/gas.py` on anvil (shanghai EVM, optimizer 10000 runs, via-IR). One transaction "
        "commits the model hash, the participants and their scores, and updates every participant's "
        "reputation. Steady state: each participant already has a reputation slot (enrolled at approval).",
        "A verified round (`commitVerifiedRound`) is the same commit plus the Merkle root of the round's "
        "accepted updates (one storage slot and one event), so its extra cost does not grow with the "
        "participants.",
        "",
        "| participants | gas | budget 120k+12k·n | gas / budget | marginal gas / participant "
        "| verified round gas | verified - plain |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, gas, verified in rows:
        marginal = f"{(gas - base) / n:,.0f}" if n else "-"
        ratio = f"{gas / budget(n):.2f}"
        extra = f"{verified - gas:+,}"
        table.add_row(str(n), f"{gas:,}", f"{budget(n):,}", ratio, marginal, f"{verified:,}", extra)
        lines.append(f"| {n} | {gas:,} | {budget(n):,} | {ratio} | {marginal} | {verified:,} | {extra} |")
    if OUTCOMES:
        gas, suspensions = OUTCOMES
        extra = gas - rows[[n for n, _, _ in rows].index(10)][1]
        label = f"10 scored + 5 missed + 5 penalized ({suspensions} auto-suspended)"
        table.add_row(label, f"{gas:,}", "-", "-", f"{extra / 10:,.0f} per extra node")
        lines.append(f"| {label} | {gas:,} | - | - | {extra / 10:,.0f} per missed/penalized node |")
    lines += [
        "",
        "For comparison (DESIGN.md, measured on these machines): storing every client's score in contract "
        "storage costs ~0.6M gas for 10 clients and ~4.7M for 100; published systems pay 115-156k gas per "
        "client per round.",
        "",
    ]
    Console().print(table)
    lines += modes_report(modes)
    lines += protocol_report(protocol)
    out = ROOT / "docs" / "gas.md"
    out.write_text("\n".join(lines))
    data = {
        "per_participant": [{"participants": n, "gas": g, "verified": v} for n, g, v in rows],
        "modes": modes,
        "protocol": protocol,
    }
    (ROOT / "docs" / "gas.json").write_text(
        json.dumps(data, indent=1) + "\n"
    )  # read by bench/scale_projection.py
    print(f"wrote {out}")


def measure(local: bootstrap.LocalDeployment, nodes: list) -> list[tuple[int, int, int]]:
    """Commit rounds of each size twice each way on a fresh deployment; return (participants, gas,
    verified-round gas) triples.
    commitRound is called raw on purpose: this measures the contract, not the Python wrapper."""
    client, coordinator = local.client, local.coordinator
    ledger = client.ledger.functions
    # A task keeps one ledger mode: task 1 is plain, task 2 verified (its round 0 commits plain).
    client.transact(coordinator, ledger.createTask(b"\x01" * 32, "file:///store/", 0, bytes(32)))
    client.transact(coordinator, ledger.createTask(b"\x02" * 32, "file:///store/", 1, b"\x0e" * 32))
    first = secrets.token_bytes(32)
    client.transact(coordinator, ledger.commitRound(2, 0, first, "", b"\0" * 32, [], [], [], [], []))
    chain_of = {False: [1, 0, b"\0" * 32], True: [2, 1, first]}  # task, next round, parent
    results = []
    for n in SIZES:
        gas = {}
        for verified in (False, True):
            for _ in range(REPEATS):
                task, rnd, parent = chain_of[verified]
                model = secrets.token_bytes(32)
                chosen = [x.address for x in nodes[:n]]
                scores = [900_000 + secrets.randbelow(100_001) for _ in chosen]  # above the threshold
                # Steady state: the participants' task membership is not re-recorded (joined = []).
                arguments = (task, rnd, model, "", parent, chosen, scores, [], [], [])
                fn = (
                    ledger.commitVerifiedRound(*arguments, secrets.token_bytes(32))
                    if verified
                    else ledger.commitRound(*arguments)
                )
                receipt = client.transact(coordinator, fn)
                chain_of[verified] = [task, rnd + 1, model]
            gas[verified] = int(receipt["gasUsed"])
        results.append((n, gas[False], gas[True]))
    _, rnd, parent = chain_of[False]
    # Charges reach a task's members (and nodes in no task): one round makes all 20 members.
    model = secrets.token_bytes(32)
    twenty = sorted((x.address for x in nodes[:20]), key=lambda a: int(a, 16))
    client.transact(
        coordinator, ledger.commitRound(1, rnd, model, "", parent, twenty, [900_000] * 20, [], [], twenty)
    )
    parent, rnd = model, rnd + 1
    # Outcome paths: 10 scored participants plus 5 missed and 5 penalized nodes (the second commit's
    # penalties take those nodes below the threshold, so it also pays for their automatic suspension).
    for _ in range(REPEATS):
        model = secrets.token_bytes(32)
        scored = [x.address for x in nodes[:10]]
        fn = ledger.commitRound(
            1, rnd, model, "", parent, scored, [900_000] * 10, [x.address for x in nodes[10:15]],
            [x.address for x in nodes[15:20]], [],
        )  # fmt: skip
        receipt = client.transact(coordinator, fn)
        parent, rnd = model, rnd + 1
    OUTCOMES.append(int(receipt["gasUsed"]))
    OUTCOMES.append(len(client.events(client.reputation, "AutoSuspended", receipt)))
    return results


def measure_modes(local: bootstrap.LocalDeployment, nodes: list) -> list[dict]:
    """Per size: the per-participant commit (measured up to what fits a block) and commitment mode's
    round commit, checkpoint proposal, two attestations (quorum 2), a suspension applied by proof and
    an isActive proof check. Leaves are real trees over random addresses plus one registered node."""
    client, coordinator = local.client, local.coordinator
    admin = Account.from_key(client.deployment.dev_keys["admin"])
    client.transact(admin, quorum.quorum_contract(client).functions.setQuorum(2))
    validators = bootstrap.new_validators(client, 2)
    ledger = client.ledger.functions
    plain_task = client.events(
        client.ledger,
        "TaskCreated",
        client.transact(coordinator, ledger.createTask(b"\x03" * 32, "file:///s/", 0, bytes(32))),
    )[0]["task"]
    task = client.events(
        client.ledger,
        "TaskCreated",
        client.transact(coordinator, ledger.createTask(b"\x04" * 32, "file:///s/", 2, bytes(32))),
    )[0]["task"]
    plain_parent, parent = b"\0" * 32, b"\0" * 32
    plain_rnd = rnd = 0
    rows = []
    for i, n in enumerate(MODE_SIZES):
        row: dict = {"participants": n}
        if n <= len(nodes) - 4:  # the per-participant commit, measured where the nodes are registered
            # Steady state: every participant is already a member of the task. A node's first round in a
            # task costs once more (its membership slot, and its first-task slot the first time ever);
            # committed here in chunks, since 1,000 first memberships do not fit one block.
            for start in range(0, n, 200):
                model = secrets.token_bytes(32)
                chunk = sorted(
                    (x.address for x in nodes[start : min(n, start + 200)]), key=lambda a: int(a, 16)
                )
                fn = ledger.commitRound(
                    plain_task,
                    plain_rnd,
                    model,
                    "",
                    plain_parent,
                    chunk,
                    [900_000] * len(chunk),
                    [],
                    [],
                    chunk,
                )
                client.transact(coordinator, fn)
                plain_parent, plain_rnd = model, plain_rnd + 1
            for _ in range(REPEATS):
                model = secrets.token_bytes(32)
                chosen = sorted((x.address for x in nodes[:n]), key=lambda a: int(a, 16))
                fn = ledger.commitRound(
                    plain_task, plain_rnd, model, "", plain_parent, chosen, [900_000] * n, [], [], []
                )
                receipt = client.transact(coordinator, fn)
                plain_parent, plain_rnd = model, plain_rnd + 1
            row["per_participant"] = int(receipt["gasUsed"])
        suspended = nodes[-1 - i].address  # one registered node the checkpoint suspends
        others = [to_checksum_address(secrets.token_bytes(20)) for _ in range(n - 1)]
        scores = {a: 100_000 + secrets.randbelow(900_001) for a in others}
        for _ in range(REPEATS):
            model = secrets.token_bytes(32)
            context = (client.deployment.chain_id, client.ledger.address, task, rnd)
            outcomes = RoundOutcomes.of(context, parent, model, scores, [], [suspended])
            fn = ledger.commitOutcomes(task, rnd, model, "", parent, outcomes.root(), len(outcomes.outcomes))
            receipt = client.transact(coordinator, fn)
            parent, rnd = model, rnd + 1
        row["commitment_round"] = int(receipt["gasUsed"])
        gas = [
            int(quorum.attest_outcomes(client, v, task, rnd - 1, model, outcomes.root(), 900_000)["gasUsed"])
            for v in validators
        ]
        row["round_attest_first"], row["round_attest_final"] = gas
        row["outcomes_bytes"] = len(outcomes.to_json())
        leaves = tuple(sorted([(a, scores[a], True) for a in others] + [(suspended, 100_000, False)]))
        checkpoint = CheckpointLeaves(
            client.deployment.chain_id, client.ledger.address, task, rnd - 1, (0,) * 5, leaves
        )
        checkpoint_id, receipt = checkpoints.propose(client, coordinator, task, rnd - 1, checkpoint.root(), n)
        row["checkpoint"] = int(receipt["gasUsed"])
        row["checkpoint_bytes"] = len(checkpoint.to_json())
        gas = [
            int(checkpoints.attest(client, v, checkpoint_id, checkpoint.root())["gasUsed"])
            for v in validators
        ]
        row["attest_first"], row["attest_final"] = gas
        (node, value, _), proof = checkpoint.proof_of(suspended)
        receipt = checkpoints.apply_suspension(client, coordinator, task, node, value, proof)
        row["suspension"] = int(receipt["gasUsed"])
        row["proof_hashes"] = len(proof)
        active = next(leaf for leaf in leaves if leaf[2])
        _, proof = checkpoint.proof_of(active[0])
        row["is_active_call"] = int(
            client.checkpoints.functions.isActive(task, active[0], active[1], proof).estimate_gas()
        )
        rows.append(row)
        print(f"{n} participants: {row}")
    return rows


def modes_report(rows: list[dict]) -> list[str]:
    """The side-by-side table (printed and as markdown lines)."""
    slope = (rows[2]["per_participant"] - rows[1]["per_participant"]) / (
        rows[2]["participants"] - rows[1]["participants"]
    )
    table = Table(title="Per-participant mode vs commitment mode, gas per round (anvil)")
    head = (
        "participants", "per-participant commit", "per client", "commitment round", "checkpoint",
        "2 attestations", "commitment total", "Cassano 2024 (128-156k/client)",
    )  # fmt: skip
    for col in head:
        table.add_column(col, justify="right")
    lines = [
        "",
        "## Two modes side by side",
        "",
        '`bench/gas.py`, same run. **Per-participant mode** (`ledger.mode = "plain"`, the default) writes '
        "every "
        'participant\'s score and reputation on-chain. **Commitment mode** (`ledger.mode = "commitment"`) '
        "commits one Merkle root of the round's outcome leaves (`commitOutcomes`), and a reputation "
        "checkpoint (`ReputationCheckpoints.propose`, one root of every node's folded reputation) that "
        "the validators re-compute and attest (quorum 2 here; the second attestation finalizes it). "
        "The leaves are real trees over the stated number of nodes. Per-participant gas above 1,000 "
        f"participants is extrapolated from the measured slope ({slope:,.0f} gas per participant, "
        "marked ~); a per-participant round of 10,000 would not fit a 30M-gas block. The validators' "
        "attestations of the round itself (`attestOutcomes` here, `attest` in per-participant mode: "
        f"{rows[0]['round_attest_first']:,} and {rows[0]['round_attest_final']:,} gas) are paid in both "
        "modes and not counted. The first checkpoint of a task costs more (fresh storage slots).",
        "",
        "| participants | per-participant commit | per client | commitment round | checkpoint "
        "| 2 attestations | commitment total (round + checkpoint + attestations) "
        "| Cassano 2024, 128-156k per client |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        n = row["participants"]
        measured = row.get("per_participant")
        per = (
            measured
            if measured is not None
            else int(rows[2]["per_participant"] + slope * (n - rows[2]["participants"]))
        )
        per_text = (
            f"{per:,}"
            if measured is not None
            else f"~{per:,}" + (" (over a block)" if per > BLOCK_GAS_LIMIT else "")
        )
        attest = row["attest_first"] + row["attest_final"]
        total = row["commitment_round"] + row["checkpoint"] + attest
        cassano = f"{CASSANO_PER_CLIENT[0] * n / 1e6:,.1f}M-{CASSANO_PER_CLIENT[1] * n / 1e6:,.1f}M"
        cells = (f"{n:,}", per_text, f"{per / n:,.0f}", f"{row['commitment_round']:,}",
                 f"{row['checkpoint']:,}", f"{attest:,}", f"{total:,}", cassano)  # fmt: skip
        table.add_row(*cells)
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Also per size (commitment mode): the published outcome leaves and checkpoint (bytes), a suspension "
        "applied by proof (`applySuspension`, gas) and a proof checked by `isActive` (gas of the call).",
        "",
        "| participants | outcome leaves | checkpoint leaves | proof hashes | applySuspension "
        "| isActive call |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['participants']:,} | {row['outcomes_bytes']:,} B | {row['checkpoint_bytes']:,} B | "
            f"{row['proof_hashes']} | {row['suspension']:,} | {row['is_active_call']:,} |"
        )
    lines += [
        "",
        "BlockFLow (Mugunthan et al. 2020) also pays per agent per round on Ethereum; I could not retrieve "
        "its figure on this machine (no network), so it is not tabulated.",
        "",
    ]
    Console().print(table)
    return lines


def _gas(receipt: dict) -> int:
    return int(receipt["gasUsed"])


def measure_protocol(local: bootstrap.LocalDeployment, nodes: list) -> dict[str, int]:
    """Gas of the integrity protocol's calls on one verified task (issue 24): its creation with a rules
    hash, a node's posted claim, a commit whose 5 missed and 5 penalized nodes wait for finality, their
    settlement once it stands, a complaint, the validators' attestations and disputes, a rebase past
    a disputed round and a revoked validator's vote discounted. 20 registered nodes (members of no
    other task); three validators, quorum 2."""
    client, coordinator = local.client, local.coordinator
    admin = Account.from_key(client.deployment.dev_keys["admin"])
    ledger, rpc = client.ledger.functions, client.w3.provider
    validators = bootstrap.new_validators(client, 3)
    gas: dict[str, int] = {}
    receipt = client.transact(coordinator, ledger.createTask(b"\x05" * 32, "file:///s/", 1, b"\x0e" * 32))
    gas["createTask (verified, rules hash)"] = _gas(receipt)
    task = client.events(client.ledger, "TaskCreated", receipt)[0]["task"]
    members = sorted((x.address for x in nodes[:20]), key=lambda a: int(a, 16))
    by_address = {x.address: x for x in nodes[:20]}
    chain_id, at = client.deployment.chain_id, client.ledger.address
    parent = secrets.token_bytes(32)
    client.transact(coordinator, ledger.commitRound(task, 0, parent, "", b"\0" * 32, [], [], [], [], []))

    def commit(
        rnd: int, scored: list[str], missed: tuple = (), penalized: tuple = (), joined: tuple = ()
    ) -> dict:
        nonlocal parent
        model = secrets.token_bytes(32)
        values = [900_000] * len(scored)
        lists = (list(missed), list(penalized), list(joined))
        fn = ledger.commitVerifiedRound(
            task, rnd, model, "", parent, scored, values, *lists, secrets.token_bytes(32)
        )
        receipt = client.transact(coordinator, fn)
        parent = model
        return receipt

    commit(1, members, joined=tuple(members))  # every node becomes a member of the task
    node = by_address[members[0]]
    ticket = sign_ticket(coordinator, chain_id, at, task, 2, node.address)
    update = sign_update(node, chain_id, at, task, 2, secrets.token_bytes(32), 100)
    fn = ledger.postClaim(task, 2, update.update_hash, update.weight, bytes.fromhex(ticket[2:]))
    gas["postClaim (one node, one round)"] = _gas(client.transact(node, fn))
    receipt = commit(2, members[:10], tuple(members[10:15]), tuple(members[15:20]))
    gas["commitVerifiedRound, 10 scored + 5 missed + 5 penalized (charges held)"] = _gas(receipt)
    for rnd in (1, 2):
        model, root = client.call(ledger.getRound(task, rnd))[0], client.call(ledger.updatesRoot(task, rnd))
        for i, v in enumerate(validators[:2]):
            receipt = quorum.attest_verified(client, v, task, rnd, model, root, 900_000)
            gas[f"attestVerified ({'first' if i == 0 else 'finalizing'})"] = _gas(receipt)
    sig = bytes.fromhex(update.signature[2:])
    fn = ledger.complainOmitted(task, 2, update.update_hash, update.weight, sig, bytes.fromhex(ticket[2:]))
    gas["complainOmitted"] = _gas(client.transact(node, fn))
    rpc.make_request("evm_increaseTime", [int(client.call(ledger.complaintWindow())) + 1])
    rpc.make_request("evm_mine", [])
    fn = ledger.settleCharges(task, 2, members[10:15], members[15:20])
    gas["settleCharges (5 missed + 5 penalized, once finality stands)"] = _gas(client.transact(node, fn))
    commit(3, members[:10])
    for i, v in enumerate(validators[:2]):
        receipt = quorum.dispute(client, v, task, 3, b"", "does not re-derive")
        gas[f"dispute ({'first' if i == 0 else 'disputing the round'})"] = _gas(receipt)
    gas["rebase (past the disputed round)"] = _gas(client.transact(coordinator, ledger.rebase(task, 2)))
    commit(4, members[:10])
    model, root = client.call(ledger.getRound(task, 4))[0], client.call(ledger.updatesRoot(task, 4))
    quorum.attest_verified(client, validators[2], task, 4, model, root, 900_000)
    quorum.set_validator(client, admin, validators[2].address, granted=False)
    receipt = client.transact(
        node, quorum.quorum_contract(client).functions.discount(task, 4, validators[2].address)
    )
    gas["discount (a revoked validator's attestation)"] = _gas(receipt)
    return gas


def protocol_report(gas: dict[str, int]) -> list[str]:
    """The protocol calls' table (printed and as markdown lines)."""
    table = Table(title="Integrity protocol calls, gas (anvil, one verified task)")
    table.add_column("call")
    table.add_column("gas", justify="right")
    lines = [
        "",
        "## Integrity protocol calls",
        "",
        "`bench/gas.py`, same run: one verified task, 20 member nodes, three validators (quorum 2). A "
        "verified round's missed and penalized nodes are recorded at commit (one event, one hash slot) and "
        "charged when anyone settles them after the round's finality stands, so a disputed round charges "
        "nobody.",
        "",
        "| call | gas |",
        "|---|---:|",
    ]
    for name, value in gas.items():
        table.add_row(name, f"{value:,}")
        lines.append(f"| {name} | {value:,} |")
    Console().print(table)
    return lines


if __name__ == "__main__":
    main()
