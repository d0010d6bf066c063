"""Check a verified round against the chain: what a validator does before it attests "derivation correct",
and what `flchain audit` does for every verified round.

From the chain: the round's updates root, model hash, parent, scores (ContributionRecorded) and the nodes
it recorded as missed, and the task's rulesHash. From the task's store: the manifest (rounds/…, public) and
the included updates (updates/…, for the validators only). Checked: the manifest's leaves give the
committed root and name this chain, ledger, task and round; its rules (scoring method, claim cap, clip
and step ratios: protocol/task_rules.py) are the task's, which hash to the rulesHash the task was
created with, so a round cannot derive with rules of its own choosing; every disclosed update is signed
by its node for this round (an unsigned entry either discloses a reply without a valid claim -- it names
no update, the parser admits it only as excluded with no weight -- or a claim its node posted on-chain,
which must match the node's ClaimPosted); every included node was Active just before the commit; the
chain's scores are the manifest's; every node the commit penalized is disclosed as excluded with its
reason, and no node it recorded as missed is disclosed at all; every node that posted its claim on-chain
before the commit is disclosed and not recorded missed; every update blob hashes to what its node
signed; and the included updates re-derive the committed model and the recomputable scores
(defence/derivation.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from eth_utils import to_checksum_address

from fl_chain.chain import charges, ledger, registry, update_claims
from fl_chain.chain.client import ChainClient
from fl_chain.chain.published import Unavailable, fetch_manifest, read_published
from fl_chain.defence.derivation import RECOMPUTABLE_SCORES, Difference, rederive
from fl_chain.errors import FlchainError
from fl_chain.protocol.manifest import Entry, RoundManifest
from fl_chain.protocol.model_bytes import arrays_from_bytes
from fl_chain.store import UPDATES_DIR, BlobTooLarge, verify_blob

MAX_UPDATE_BYTES = 2 * 1024**3
Posted = dict[str, tuple[bytes, int]]  # node (lowercase) -> (update hash, weight) it posted on-chain


@dataclass
class RoundCheck:
    """The outcome of checking one verified round."""

    task: int
    round: int
    manifest: RoundManifest | None = None
    differences: list[Difference] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # update blobs this reader cannot fetch
    seconds: float = 0.0
    bytes_read: int = 0  # manifest + update blobs fetched

    @property
    def ok(self) -> bool:
        """Whether everything re-derived."""
        return self.manifest is not None and not self.differences and not self.unreadable

    @property
    def scores_rederived(self) -> bool:
        """Whether the round's scores were recomputed (else only the model was)."""
        return self.manifest is not None and self.manifest.scoring in RECOMPUTABLE_SCORES

    def first(self) -> Difference:
        """The first difference (what a dispute names)."""
        return self.differences[0]


def check_round(
    client: ChainClient, task: int, round_number: int, updates_base: str | None = None
) -> RoundCheck:
    """Check one verified round (see the module docstring). `updates_base`: where this validator reads
    update blobs (default: the task's store + "updates/")."""
    started = time.monotonic()
    out = RoundCheck(task, round_number)
    try:
        out.manifest, out.bytes_read = fetch_manifest(client, task, round_number)
    except Unavailable as exc:
        out.unreadable.append(str(exc))
    except FlchainError as exc:
        out.differences.append(Difference(b"", f"manifest: {exc}"))
    if out.manifest is not None:
        posted = binding_claims(client, task, round_number)
        out.differences += _against_chain(client, out.manifest, task, round_number, posted)
        out.differences += posted_claim_differences(client, out.manifest, task, round_number, posted)
    if out.manifest is not None and not out.differences:
        previous = ledger.load_model(client, task, ledger.parent_round(client, task, round_number))[1]
        base = (
            updates_base or ledger.task_record(client, task).blob_base.rstrip("/") + "/" + UPDATES_DIR + "/"
        )
        updates = _fetch_updates(out, base, previous)
        if not out.differences and not out.unreadable:
            out.differences += rederive(out.manifest, previous, updates)[1]
    out.seconds = time.monotonic() - started
    return out


def _against_chain(
    client: ChainClient, manifest: RoundManifest, task: int, rnd: int, posted: Posted
) -> list[Difference]:
    """What the manifest of round `rnd` of `task` says that the chain contradicts: its context, model and
    parent, a signature (an unsigned entry must be an excluded claim its node posted, `posted`), a node
    that was not Active before the commit, the recorded scores."""
    record = ledger.get_round(client, task, rnd)
    parent = (
        ledger.get_round(client, task, ledger.parent_round(client, task, rnd)).model_hash if rnd > 0 else b""
    )
    context = (client.deployment.chain_id, client.ledger.address, task, rnd)
    out = [
        Difference(b"", f"the manifest's {what} is {said}, the chain's {actual}")
        for what, said, actual in (
            ("chain id", manifest.chain_id, context[0]),
            ("ledger", manifest.ledger.lower(), str(context[1]).lower()),
            ("task", manifest.task, task),
            ("round", manifest.round, rnd),
            ("model", manifest.model, "0x" + record.model_hash.hex()),
            ("parent", manifest.parent, "0x" + parent.hex()),
        )
        if said != actual
    ]
    out += _rules_differences(client, manifest, task)
    for entry in manifest.entries:
        if entry.unsigned:  # no signature to check: a reply disclosed as answered, or a posted claim
            if not entry.answered_without_claim and posted.get(entry.node.lower()) != (
                entry.update_hash,
                entry.claimed,
            ):
                out.append(Difference(entry.leaf(), f"{entry.node} posted no such claim on-chain"))
            continue
        try:
            signer = entry.signed(*context).signer()
        except FlchainError as exc:
            signer = str(exc)
        if signer.lower() != entry.node.lower():
            out.append(Difference(entry.leaf(), f"the update of {entry.node} is not signed by it"))
    active = registry.active_of(client, [e.node for e in manifest.included], record.block - 1)
    for entry in manifest.included:
        if not active[entry.node]:
            out.append(Difference(entry.leaf(), f"{entry.node} was not Active before the commit"))
    on_chain = {to_checksum_address(k): v for k, v in ledger.contributions(client, task, rnd).items()}
    disclosed = {to_checksum_address(e.node): e.score for e in manifest.included}
    if on_chain != disclosed:
        changed = sorted(set(on_chain.items()) ^ set(disclosed.items()))
        out.append(Difference(b"", f"the chain's scores differ from the manifest's: {changed[:4]}"))
    return out + _charges_against_manifest(client, manifest, task, rnd)


def _charges_against_manifest(
    client: ChainClient, manifest: RoundManifest, task: int, rnd: int
) -> list[Difference]:
    """The commit's charges the manifest does not back: a penalized node must be disclosed as excluded
    with its reason (a penalty is tied to the round's evidence), a node recorded as missed must have no
    entry (a disclosed entry means it answered). Read from the commit's Penalized and RoundMissed events."""
    out = []
    for node in sorted(charges.penalized_in(client, task, rnd)):
        entry = manifest.entry_of(node)
        why = _unbacked_penalty(entry)
        if why:  # an undisclosed node is named by its address (what a dispute's leaf may be)
            leaf = entry.leaf() if entry is not None else bytes.fromhex(node[2:])
            out.append(Difference(leaf, f"{to_checksum_address(node)} was penalized but {why}"))
    for node in sorted(charges.missed_in(client, task, rnd)):
        entry = manifest.entry_of(node)
        if entry is not None:
            what = f"{to_checksum_address(node)} was recorded as missed but the manifest discloses its update"
            out.append(Difference(entry.leaf(), what))
    return out


def binding_claims(client: ChainClient, task: int, rnd: int) -> Posted:
    """The claims posted for a committed round that bind its coordinator: those mined in a block before
    the commit's. A claim in the commit's own block (a node front-running the commit it saw pending)
    cannot have been seen by the coordinator; an honest node waits for its post's receipt before it
    replies, so its claim is always in an earlier block."""
    committed = ledger.get_round(client, task, rnd).block
    return update_claims.posted_claims(client, task, rnd, before_block=committed)


def posted_claim_differences(
    client: ChainClient, manifest: RoundManifest, task: int, rnd: int, posted: Posted | None = None
) -> list[Difference]:
    """The nodes that posted their claim on-chain before round `rnd` was committed (ClaimPosted: the
    contract accepts it only for the task's next round, from a sampled, eligible node) and that the round
    then omitted from its manifest or recorded as missed: the coordinator received their reply, or at
    least cannot show it did not, so the round is disputed. A posting node the manifest discloses
    (included, or excluded with a reason) is fine."""
    posted = binding_claims(client, task, rnd) if posted is None else posted
    if not posted:
        return []
    missed = charges.missed_in(client, task, rnd)
    out = []
    for node, (update_hash, _weight) in sorted(posted.items()):
        leaf = bytes.fromhex(node[2:]).rjust(32, b"\0")
        claim = f"{to_checksum_address(node)}'s claim 0x{update_hash.hex()[:16]}"
        if node in missed:
            out.append(Difference(leaf, f"recorded missed: {claim} was posted on time"))
        elif manifest.entry_of(node) is None:
            out.append(Difference(leaf, f"claim posted on time but omitted: {claim}"))
    return out


def _rules_differences(client: ChainClient, manifest: RoundManifest, task: int) -> list[Difference]:
    """A Difference unless the manifest's rules hash to the task's on-chain rulesHash."""
    recorded = ledger.task_record(client, task).rules_hash
    declared = manifest.rules.rules_hash()
    if declared == recorded:
        return []
    return [
        Difference(
            b"",
            f"the manifest declares rules other than the task's ({manifest.rules.describe()}: "
            f"0x{declared.hex()[:16]}…, the task's rulesHash 0x{recorded.hex()[:16]}…)",
        )
    ]


def _unbacked_penalty(entry: Entry | None) -> str:
    """Why a penalty is not backed by a node's manifest entry ("" when it is: excluded, with a reason)."""
    if entry is None:
        return "the manifest does not disclose it"
    if entry.included:
        return "the manifest discloses its update as included"
    return "" if entry.reason else "the manifest excludes its update without a reason"


def _fetch_updates(out: RoundCheck, base: str, previous: dict[str, np.ndarray]) -> dict[str, dict]:
    """The included updates by hash; unreadable ones go to `out.unreadable`, wrong ones (another hash,
    not safetensors, not the model's shape) to `out.differences`."""
    updates = {}
    for entry in out.manifest.included:
        uri = base.rstrip("/") + "/" + entry.update[2:]
        try:
            blob = read_published(uri, MAX_UPDATE_BYTES)
        except Unavailable as exc:  # not readable from here (update blobs are for the validators only)
            out.unreadable.append(str(exc))
            continue
        except BlobTooLarge as exc:
            out.differences.append(Difference(entry.leaf(), f"update of {entry.node}: {exc}"))
            continue
        try:
            verify_blob(blob, entry.update_hash, uri)
            arrays = arrays_from_bytes(blob)
        except Exception as exc:  # tampered or not safetensors: not the update its node signed
            out.differences.append(Difference(entry.leaf(), f"update of {entry.node}: {exc}"))
            continue
        out.bytes_read += len(blob)
        if _shape_of(arrays) != _shape_of(previous):
            out.differences.append(
                Difference(entry.leaf(), f"update of {entry.node} is not the model's shape")
            )
            continue
        updates[entry.update] = arrays
    return updates


def _shape_of(arrays) -> dict[str, tuple]:
    return {k: (np.asarray(v).shape, np.asarray(v).dtype.str) for k, v in arrays.items()}


def judge_complaint(
    client: ChainClient, manifest: RoundManifest, task: int, round_number: int, node: str, update_hash: bytes
) -> tuple[str, Entry | None]:
    """The verdict on a node's complaint that its signed update `update_hash` was left out of a verified
    round whose (root-checked) manifest is `manifest`, with the manifest's entry for the node if any:
    "disclosed" (the manifest discloses that update: unfounded), "two updates" (it discloses another:
    the node signed two, the complaint is refused), "missed" (not disclosed, but the commit recorded
    the node as missed: contested) or "omitted" (left out without disclosure: founded). A node the
    manifest discloses as having answered without a valid signed claim (an unsigned entry, with the
    reason) is "disclosed" too: its reply was received and disclosed, the update it signed separately
    afterwards was never sent."""
    entry = manifest.entry_of(node)
    if entry is not None and entry.unsigned:
        return "disclosed", entry
    if entry is not None:
        return ("disclosed" if entry.update_hash == update_hash else "two updates"), entry
    if node.lower() in charges.missed_in(client, task, round_number):
        return "missed", None
    return "omitted", None
