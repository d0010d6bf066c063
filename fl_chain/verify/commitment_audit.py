"""`flchain audit` for commitment-mode tasks: every round's outcome leaves are fetched by their root and
checked as the validators check them, every proposed reputation checkpoint is re-computed from those
leaves, and the suspensions of the latest finalized checkpoint must be in effect in the registry."""

from __future__ import annotations

from fl_chain.chain import checkpoints, ledger, registry
from fl_chain.chain.client import ChainClient
from fl_chain.errors import FlchainError
from fl_chain.verify.audit import Finding
from fl_chain.verify.commitment_check import History, check_checkpoint, round_differences
from fl_chain.verify.round_check import Unavailable


def audit_commitment(client: ChainClient, task: int) -> list[Finding]:
    """An "outcomes" finding per commitment-mode round, a "checkpoints" finding per proposed checkpoint
    and a "suspensions" finding for the latest finalized one (nothing for other tasks)."""
    history = History(client, task)
    findings = []
    for rnd in range(ledger.round_count(client, task)):
        if ledger.outcomes_root(client, task, rnd) is None:
            continue
        findings.append(_outcomes(client, history, task, rnd))
    if client.checkpoints is None or not findings:
        return findings
    start = client.deployment.deployed_block
    proposals = client.checkpoints.events.CheckpointProposed().get_logs(
        from_block=start, argument_filters={"task": task}
    )
    for proposal in proposals:
        findings.append(_checkpoint(client, history, int(proposal["args"]["id"])))
    latest = checkpoints.latest(client, task)
    if latest is not None:
        findings.append(_suspensions(client, history, latest))
    return findings


def _outcomes(client: ChainClient, history: History, task: int, rnd: int) -> Finding:
    where = f"task {task} round {rnd}"
    try:
        outcomes = history.outcomes(rnd)
    except FlchainError as exc:
        return Finding(where, "outcomes", False, str(exc))
    differences = round_differences(client, outcomes, task, rnd)
    if differences:
        return Finding(where, "outcomes", False, "; ".join(differences[:3]))
    return Finding(where, "outcomes", True, f"{len(outcomes.outcomes)} leaves give the committed root")


def _checkpoint(client: ChainClient, history: History, checkpoint_id: int) -> Finding:
    record = checkpoints.get(client, checkpoint_id)
    where = f"task {record.task} checkpoint {checkpoint_id} (through round {record.through_round})"
    try:
        check = check_checkpoint(client, checkpoint_id, history)
    except Unavailable as exc:
        return Finding(where, "checkpoints", True, f"not re-computed here: {exc}")
    state = "finalized" if record.finalized else "rejected" if record.rejected else "pending"
    votes = f"{record.attestations} attested, {record.disputes} disputed"
    if check.ok:
        detail = f"{state}, re-computed: {record.leaf_count} nodes ({votes})"
        return Finding(where, "checkpoints", not record.rejected, detail)
    if record.finalized:
        return Finding(where, "checkpoints", False, f"finalized although {check.difference} ({votes})")
    return Finding(where, "checkpoints", False, f"{state} by the validators: {check.difference} ({votes})")


def _suspensions(client: ChainClient, history: History, latest: checkpoints.CheckpointRecord) -> Finding:
    where = f"task {latest.task} checkpoint {latest.id}"
    check = check_checkpoint(client, latest.id, history) if latest.finalized else None
    if check is None or check.expected is None:
        return Finding(where, "suspensions", True, "not re-computed here")
    held = [leaf[0] for leaf in check.expected.leaves if not leaf[2]]
    active = registry.active_of(client, held) if held else {}
    pending = [node for node in held if active.get(node)]
    if pending:
        return Finding(where, "suspensions", False, f"not applied to the registry yet: {', '.join(pending)}")
    return Finding(where, "suspensions", True, f"{len(held)} suspended nodes, all suspended in the registry")
