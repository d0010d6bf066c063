"""`flchain audit`: replay the ledger and check it.

Every round: its blob is reachable and hashes to the committed hash, the parent chain is unbroken, and
its participants were Active just before it was committed. Every node: the reputation recomputed from
the events (with the Python reference of the contract) equals the on-chain state. Verified rounds: each
is re-derived (round_check.py), every claim a node posted on-chain before the commit must be disclosed and
not recorded missed, every omission complaint is judged against the round's manifest the way
the validators judge it, and the validators' disputes are shown (who disputed which round and why, who
attested a round a quorum disputed). Commitment-mode rounds: their outcome leaves are checked as the
validators check them, every proposed reputation checkpoint is re-computed from those leaves, and the
suspensions of the latest finalized checkpoint must be in effect in the registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from web3.types import EventData

from fl_chain.chain import checkpoints, ledger, quorum, registry, reputation, update_claims
from fl_chain.chain.client import ChainClient
from fl_chain.chain.ledger import ZERO_HASH
from fl_chain.chain.published import History, Unavailable, fetch_manifest, fetch_rules
from fl_chain.errors import FlchainError
from fl_chain.protocol.fixedpoint import from_fixed
from fl_chain.protocol.ledger_mode import LedgerMode
from fl_chain.protocol.reputation_model import ReputationModel, ReputationParams
from fl_chain.store import BlobIntegrityError, fetch_verified
from fl_chain.verify.commitment_check import check_checkpoint, round_differences
from fl_chain.verify.round_check import (
    RoundCheck,
    binding_claims,
    check_round,
    judge_complaint,
    posted_claim_differences,
)


@dataclass
class Finding:
    """One check's outcome."""

    where: str
    check: str
    ok: bool
    detail: str = ""


def audit_task(client: ChainClient, task: int) -> list[Finding]:
    """Blob, parent-chain and participant checks for every committed round of a task, then the checks of
    its ledger mode (MODE_AUDITS: a verified task's derivations, complaints and disputes; a commitment
    task's outcome leaves and reputation checkpoints), the mode read from the chain."""
    commits = {e["args"]["round"]: e for e in ledger.commit_events(client, task)}
    contributions = ledger.contribution_events(client, task)
    rebases = ledger.rebases(client, task)  # round -> the finalized round it builds on instead
    models: dict[int, bytes] = {}
    findings: list[Finding] = []
    for rnd in range(ledger.round_count(client, task)):
        parent_round = rebases.get(rnd, rnd - 1)
        previous = models.get(parent_round, ZERO_HASH)
        event = commits.get(rnd)
        if event is None:
            findings.append(
                Finding(f"task {task} round {rnd}", "commit event", False, "no RoundCommitted event")
            )
            continue
        findings += _committed(client, task, event, contributions.get(rnd, []), previous)
        models[rnd] = bytes(event["args"]["modelHash"])
    return findings + MODE_AUDITS[ledger.task_mode(client, task)](client, task)


def _committed(
    client: ChainClient, task: int, event: EventData, contributions: list[EventData], previous: bytes
) -> list[Finding]:
    """The hash, parent-chain, blob and participant findings of one committed round."""
    rnd = event["args"]["round"]
    where = f"task {task} round {rnd}"
    model_hash, parent = bytes(event["args"]["modelHash"]), bytes(event["args"]["parentHash"])
    record = ledger.get_round(client, task, rnd)
    same = record.model_hash == model_hash
    ok = parent == previous
    detail = "" if ok else f"parent 0x{parent.hex()[:12]}… != previous 0x{previous.hex()[:12]}…"
    out = [
        Finding(where, "hash", same, "" if same else "event/state differ"),
        Finding(where, "parent chain", ok, detail),
    ]
    try:
        served = fetch_verified(record.uri, model_hash)[1]
        mirror = "" if served == record.uri else f" (served by the mirror {served})"
        out.append(Finding(where, "blob", True, record.uri + mirror))
    except BlobIntegrityError as exc:
        out.append(Finding(where, "blob", False, str(exc)))
    except FlchainError as exc:
        out.append(Finding(where, "blob", False, f"unreachable: {exc}"))
    block = int(event["blockNumber"])
    nodes = [c["args"]["node"] for c in contributions]
    active = registry.active_of(client, nodes, block - 1)
    inactive = [node for node in nodes if not active[node]]
    said = (
        f"not active before block {block}: {', '.join(inactive)}"
        if inactive
        else f"{len(nodes)} participants"
    )
    out.append(Finding(where, "participants active", not inactive, said))
    return out


def audit_reputation(client: ChainClient) -> list[Finding]:
    """Recompute every node's reputation and status from the events and compare with the chain."""
    model = ReputationModel(ReputationParams())
    for e in reputation.replay_events(client):
        args, name = e["args"], e["event"]
        if name == "ParametersChanged":
            fields = ("alpha", "initialReputation", "missDecay", "penalty", "suspendThreshold")
            model.params = ReputationParams(*(args[f] for f in fields))
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


def audit_verified_rounds(client: ChainClient, task: int, updates_base: str | None = None) -> list[Finding]:
    """The task's "rules" finding, a "derivation" finding for every verified round of a task, "posted
    claims" findings for a round nodes posted their claims for, a "complaint" finding for every
    UpdateOmitted and the "disputes" findings. Update blobs this reader cannot fetch (they are for the
    validators) leave the round "not re-derived here", which is not a failure; a blob that does not hash
    to what its node signed is."""
    findings = [_rules(client, task)]
    for rnd in range(1, ledger.round_count(client, task)):  # round 0, the initial model, commits plain
        check = check_round(client, task, rnd, updates_base)
        findings.append(_derivation(check, task, rnd))
        findings += _posted_claims(client, check, task, rnd)
    for complaint in update_claims.omission_complaints(client, task):
        args = complaint["args"]
        findings.append(
            _complaint(client, task, int(args["round"]), str(args["node"]), bytes(args["updateHash"]))
        )
    return findings + audit_disputes(client, task)


def audit_disputes(client: ChainClient, task: int) -> list[Finding]:
    """A "disputes" finding per disputed round: failed when a quorum disputed it (naming every disputing
    validator with its reason, and every validator that attested it anyway), passed but shown when the
    disputes were outvoted."""
    if client.validation is None:
        return []
    findings = []
    for rnd, found in sorted(quorum.disputes_of(client, task).items()):
        where = f"task {task} round {rnd}"
        said = "; ".join(f"{a['validator']}: {a['reason']}" for a in found)
        if not quorum.is_disputed(client, task, rnd):
            findings.append(
                Finding(where, "disputes", True, f"outvoted ({len(found)} below the quorum): {said}")
            )
            continue
        findings.append(Finding(where, "disputes", False, f"disputed, never final: {said}"))
        disputing = {str(a["validator"]).lower() for a in found}
        findings += [
            Finding(where, "disputes", False, f"{validator} attested a round the quorum disputed")
            for validator in quorum.attesters_of(client, task, rnd)
            if validator.lower() not in disputing
        ]
    return findings


def _rules(client: ChainClient, task: int) -> Finding:
    """The task's published rules, checked against its on-chain rulesHash: like a manifest, the rules
    document is public, so every reader must be able to fetch it."""
    where = f"task {task}"
    try:
        rules = fetch_rules(client, task)
    except Unavailable as exc:
        return Finding(where, "rules", False, f"rules document unavailable: {exc}")
    except FlchainError as exc:
        return Finding(where, "rules", False, str(exc))
    return Finding(where, "rules", True, f"{rules.describe()} (rulesHash 0x{rules.rules_hash().hex()[:16]}…)")


def _derivation(check: RoundCheck, task: int, rnd: int) -> Finding:
    where = f"task {task} round {rnd}"
    if check.differences:
        first = check.first()
        leaf = f" (leaf 0x{first.leaf.hex()[:12]}…)" if first.leaf else ""
        more = f"; {len(check.differences) - 1} more" if len(check.differences) > 1 else ""
        return Finding(where, "derivation", False, f"{first.what}{leaf}{more}")
    if check.manifest is None:  # the manifest is public: every reader must be able to fetch it
        return Finding(where, "derivation", False, f"manifest unavailable: {check.unreadable[0]}")
    if check.unreadable:  # update blobs are for the validators: a public auditor may not read them
        return Finding(where, "derivation", True, f"not re-derived here: {check.unreadable[0]}")
    included, excluded = len(check.manifest.included), len(check.manifest.excluded)
    scores = (
        "and scores " if check.scores_rederived else f"(scores by {check.manifest.scoring}: not re-derived) "
    )
    detail = f"model {scores}re-derived from {included} signed updates; {excluded} disclosed exclusions"
    return Finding(where, "derivation", True, detail)


def _posted_claims(client: ChainClient, check: RoundCheck, task: int, rnd: int) -> list[Finding]:
    """A "posted claims" finding for a round some nodes posted their claim for (ClaimPosted): failed for
    each posting node the round omitted or recorded as missed, else one passed finding."""
    if check.manifest is None:
        return []
    posted = binding_claims(client, task, rnd)
    if not posted:
        return []
    where = f"task {task} round {rnd}"
    differences = posted_claim_differences(client, check.manifest, task, rnd)
    if differences:
        return [Finding(where, "posted claims", False, d.what) for d in differences]
    return [Finding(where, "posted claims", True, f"{len(posted)} claims posted on time, all disclosed")]


def _complaint(client: ChainClient, task: int, rnd: int, node: str, update_hash: bytes) -> Finding:
    """One node's complaint that its signed update was left out of a round, judged against the manifest."""
    where = f"task {task} round {rnd}"
    said = f"0x{update_hash.hex()[:12]}…"
    try:
        manifest, _ = fetch_manifest(client, task, rnd)
    except FlchainError as exc:
        return Finding(where, "complaint", False, f"{node} says its update {said} was left out; {exc}")
    verdict, entry = judge_complaint(client, manifest, task, rnd, node, update_hash)
    if verdict == "two updates":
        detail = (
            f"{node} signed two different updates for one round ({entry.update[:14]}… disclosed, {said} in "
            "its complaint): the complaint is refused"
        )
        return Finding(where, "complaint", False, detail)
    if verdict == "disclosed" and entry is not None and entry.unsigned:
        detail = (
            f"{node} answered without a valid signed update ({entry.reason or 'no reason given'}), as the "
            f"manifest discloses: its complaint about update {said} is unfounded"
        )
        return Finding(where, "complaint", True, detail)
    if verdict == "disclosed":
        return Finding(
            where, "complaint", True, f"{node}'s update {said} is disclosed; the complaint is unfounded"
        )
    if verdict == "missed":
        detail = f"contested: {node} says it sent update {said}; the coordinator recorded it as missed"
        return Finding(where, "complaint", False, detail)
    return Finding(
        where, "complaint", False, f"{node}'s signed update {said} was left out without disclosure"
    )


def audit_commitment(client: ChainClient, task: int) -> list[Finding]:
    """An "outcomes" finding per round of a commitment-mode task, a "checkpoints" finding per proposed
    checkpoint and a "suspensions" finding for the latest finalized one."""
    history = History(client, task)
    findings = [_outcomes(client, history, task, rnd) for rnd in range(ledger.round_count(client, task))]
    if client.checkpoints is None or not findings:
        return findings
    findings += [_checkpoint(client, history, i) for i in checkpoints.proposed_ids(client, task)]
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
    pending = [node for node, _ in checkpoints.unapplied_suspensions(client, check.expected)]
    if pending:
        return Finding(where, "suspensions", False, f"not applied to the registry yet: {', '.join(pending)}")
    return Finding(where, "suspensions", True, f"{len(held)} suspended nodes, all suspended in the registry")


def _no_mode_checks(client: ChainClient, task: int) -> list[Finding]:
    """A plain task: its rounds have nothing beyond the common checks."""
    return []


# What the audit replays for each ledger mode (the audit's side of coordinator/round_writers.py and
# verify/modes.py).
MODE_AUDITS: dict[LedgerMode, Callable[[ChainClient, int], list[Finding]]] = {
    LedgerMode.PLAIN: _no_mode_checks,
    LedgerMode.VERIFIED: audit_verified_rounds,
    LedgerMode.COMMITMENT: audit_commitment,
}
