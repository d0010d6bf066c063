"""Replay the ledger and check it: every round's blob is reachable and hashes to the committed hash,
the parent chain is unbroken, participants were Active just before their round was committed, and the
reputation recomputed from the events (with the Python reference of the contract) equals the on-chain
state."""

from __future__ import annotations

from dataclasses import dataclass

from fl_chain.chain import ledger, registry, reputation
from fl_chain.chain.client import ChainClient
from fl_chain.chain.ledger import ZERO_HASH, round_count
from fl_chain.errors import FlchainError
from fl_chain.protocol.fixedpoint import from_fixed
from fl_chain.protocol.reputation_model import ReputationModel, ReputationParams
from fl_chain.store import BlobIntegrityError, fetch_blob


@dataclass
class Finding:
    """One check's outcome."""

    where: str
    check: str
    ok: bool
    detail: str = ""


def _logs(event, start: int, **filters) -> list:
    return list(event().get_logs(from_block=start, argument_filters=filters or None))


def audit_task(client: ChainClient, task: int) -> list[Finding]:
    """Blob, parent-chain and participant checks for every committed round of a task."""
    start = client.deployment.deployed_block
    findings: list[Finding] = []
    commits = {e["args"]["round"]: e for e in _logs(client.ledger.events.RoundCommitted, start, task=task)}
    contributions: dict[int, list] = {}
    for e in _logs(client.ledger.events.ContributionRecorded, start, task=task):
        contributions.setdefault(e["args"]["round"], []).append(e)
    previous = ZERO_HASH
    for rnd in range(round_count(client, task)):
        where = f"task {task} round {rnd}"
        event = commits.get(rnd)
        if event is None:
            findings.append(Finding(where, "commit event", False, "no RoundCommitted event"))
            continue
        model_hash, parent = bytes(event["args"]["modelHash"]), bytes(event["args"]["parentHash"])
        record = ledger.get_round(client, task, rnd)
        stored = record.model_hash
        findings.append(
            Finding(where, "hash", stored == model_hash, "" if stored == model_hash else "event/state differ")
        )
        ok = parent == previous
        detail = "" if ok else f"parent 0x{parent.hex()[:12]}… != previous 0x{previous.hex()[:12]}…"
        findings.append(Finding(where, "parent chain", ok, detail))
        previous = model_hash
        uri = record.uri
        try:
            fetch_blob(uri, model_hash)
            findings.append(Finding(where, "blob", True, uri))
        except BlobIntegrityError as exc:
            findings.append(Finding(where, "blob", False, str(exc)))
        except FlchainError as exc:
            findings.append(Finding(where, "blob", False, f"unreachable: {exc}"))
        block = int(event["blockNumber"])
        inactive = [
            c["args"]["node"]
            for c in contributions.get(rnd, [])
            if not registry.is_active(client, c["args"]["node"], block - 1)
        ]
        findings.append(
            Finding(
                where,
                "participants active",
                not inactive,
                f"{len(contributions.get(rnd, []))} participants"
                if not inactive
                else f"not active before block {block}: {', '.join(inactive)}",
            )
        )
    from fl_chain.verify.commitment_audit import audit_commitment  # leaves and folds are on the fl side
    from fl_chain.verify.round_audit import audit_verified_rounds

    findings.extend(audit_verified_rounds(client, task))  # derivations and omission complaints
    findings.extend(audit_commitment(client, task))  # outcome leaves and reputation checkpoints
    return findings


def audit_reputation(client: ChainClient) -> list[Finding]:
    """Recompute every node's reputation and status from the events and compare with the chain."""
    start = client.deployment.deployed_block
    rep, ledger = client.reputation.events, client.ledger.events
    events = []
    for source in (
        rep.ParametersChanged,
        rep.EligibilityChanged,
        rep.RoundMissed,
        rep.Penalized,
        ledger.ContributionRecorded,
    ):
        events += _logs(source, start)
    events.sort(key=lambda e: (e["blockNumber"], e["logIndex"]))
    model = ReputationModel(ReputationParams())
    for e in events:
        args, name = e["args"], e["event"]
        if name == "ParametersChanged":
            model.params = ReputationParams(
                args["alpha"],
                args["initialReputation"],
                args["missDecay"],
                args["penalty"],
                args["suspendThreshold"],
            )
        elif name == "EligibilityChanged":
            (model.approve if args["active"] else model.suspend)(args["node"])
        elif name == "ContributionRecorded":
            model.apply_round([(args["node"], int(args["score"]))])
        elif name == "RoundMissed":
            model.apply_round([], missed=[args["node"]])
        elif name == "Penalized":
            model.apply_round([], penalized=[args["node"]])
    findings = []
    for node in sorted(model.values):
        on_chain = reputation.reputation_of(client, node)
        active = registry.status_of(client, node) == "Active"
        ok = on_chain == model.values[node] and active == model.active.get(node, False)
        detail = (
            f"{from_fixed(on_chain):.6f}" if ok else f"chain {on_chain} / recomputed {model.values[node]}"
        )
        findings.append(Finding(f"node {node}", "reputation", ok, detail))
    return findings


def audit_all(client: ChainClient, task: int | None = None) -> list[Finding]:
    """Every check of one task (or of every task) and of every node's reputation."""
    tasks = [task] if task is not None else range(1, ledger.task_count(client) + 1)
    if task is not None:
        ledger.require_task(client, task)
    findings = [f for t in tasks for f in audit_task(client, t)]
    return findings + audit_reputation(client)
