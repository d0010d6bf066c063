"""`flchain audit` for verified rounds: re-derive each one (fl/round_check.py), judge every node's
omission complaint against the round's manifest the way the validators do, and show the validators'
disputes: who disputed which round and why, and who attested a round a quorum disputed."""

from __future__ import annotations

from fl_chain.chain import ledger, quorum
from fl_chain.chain.client import ChainClient
from fl_chain.errors import FlchainError
from fl_chain.verify.audit import Finding
from fl_chain.verify.round_check import RoundCheck, check_round, fetch_manifest, missed_in


def audit_verified_rounds(client: ChainClient, task: int, updates_base: str | None = None) -> list[Finding]:
    """A "derivation" finding for every verified round of a task and a "complaint" finding for every
    UpdateOmitted. Update blobs this reader cannot fetch (they are for the validators) leave the round
    "not re-derived here", which is not a failure; a blob that does not hash to what its node signed is."""
    findings: list[Finding] = []
    for rnd in range(1, ledger.round_count(client, task)):
        if ledger.updates_root(client, task, rnd) is None:
            continue
        findings.append(_derivation(check_round(client, task, rnd, updates_base), task, rnd))
    start = client.deployment.deployed_block
    complaints = client.ledger.events.UpdateOmitted().get_logs(
        from_block=start, argument_filters={"task": task}
    )
    for complaint in complaints:
        args = complaint["args"]
        findings.append(
            judge_complaint(client, task, int(args["round"]), str(args["node"]), bytes(args["updateHash"]))
        )
    return findings + audit_disputes(client, task)


def audit_disputes(client: ChainClient, task: int) -> list[Finding]:
    """A "disputes" finding per disputed round: failed when a quorum disputed it (naming every disputing
    validator with its reason, and every validator that attested it anyway), passed but shown when the
    disputes were outvoted."""
    if client.validation is None:
        return []
    start = client.deployment.deployed_block
    events = client.validation.events
    disputes: dict[int, list] = {}
    for e in events.Disputed().get_logs(from_block=start, argument_filters={"task": task}):
        disputes.setdefault(int(e["args"]["round"]), []).append(e["args"])
    findings = []
    for rnd, found in sorted(disputes.items()):
        where = f"task {task} round {rnd}"
        said = "; ".join(f"{a['validator']}: {a['reason']}" for a in found)
        if not quorum.is_disputed(client, task, rnd):
            findings.append(
                Finding(where, "disputes", True, f"outvoted ({len(found)} below the quorum): {said}")
            )
            continue
        findings.append(Finding(where, "disputes", False, f"disputed, never final: {said}"))
        disputing = {str(a["validator"]).lower() for a in found}
        attested = events.Attested().get_logs(from_block=start, argument_filters={"task": task, "round": rnd})
        for a in (e["args"] for e in attested):
            if str(a["validator"]).lower() not in disputing:
                findings.append(
                    Finding(
                        where, "disputes", False, f"{a['validator']} attested a round the quorum disputed"
                    )
                )
    return findings


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
    return Finding(
        where,
        "derivation",
        True,
        f"model {scores}re-derived from {included} signed updates; {excluded} disclosed exclusions",
    )


def judge_complaint(client: ChainClient, task: int, rnd: int, node: str, update_hash: bytes) -> Finding:
    """One node's complaint that its signed update was left out of a round, judged against the manifest."""
    where = f"task {task} round {rnd}"
    said = f"0x{update_hash.hex()[:12]}…"
    try:
        manifest, _ = fetch_manifest(client, task, rnd)
    except FlchainError as exc:
        return Finding(where, "complaint", False, f"{node} says its update {said} was left out; {exc}")
    entry = manifest.entry_of(node)
    if entry is not None and entry.update_hash != update_hash:
        return Finding(
            where,
            "complaint",
            False,
            f"{node} signed two different updates for one round ({entry.update[:14]}… disclosed, {said} in "
            "its complaint): the complaint is refused",
        )
    if entry is not None:
        return Finding(
            where, "complaint", True, f"{node}'s update {said} is disclosed; the complaint is unfounded"
        )
    if node.lower() in missed_in(client, task, rnd):
        return Finding(
            where,
            "complaint",
            False,
            f"contested: {node} says it sent update {said}; the coordinator recorded it as missed",
        )
    return Finding(
        where, "complaint", False, f"{node}'s signed update {said} was left out without disclosure"
    )
