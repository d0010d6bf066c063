"""Which training replies may reach aggregation: Flower replies in, verdicts out, nothing on-chain (the
defences' arithmetic is defence/'s; this module applies it to the round's messages). Every reply is
decoded once; one bad reply never aborts a round. The steps anchored in g0 that follow (evidence and the
clips) are coordinator/anchored_steps.py's."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from flwr.app import Message, MetricRecord

from fl_chain.coordinator.gate import short_reason
from fl_chain.defence.gram import DeltaGram
from fl_chain.defence.scoring import find_outliers
from fl_chain.defence.update_checks import check_metrics, check_update
from fl_chain.errors import FlchainError
from fl_chain.protocol.model_bytes import HashPool
from fl_chain.protocol.update_signing import RoundContext, SignedUpdate, check_claim, claim_signed_by
from fl_chain.wire.records import (
    WEIGHT_KEY,
    record_mismatch,
    record_views,
    reply_parts,
    update_claim,
    with_update,
)

if TYPE_CHECKING:  # early_checks imports this module's check_reply
    from fl_chain.coordinator.early_checks import Checked, EarlyChecks


@dataclass(frozen=True)
class ScreeningPolicy:
    """Limits a reply must meet."""

    max_update_norm: float = 1e3
    weight_key: str = WEIGHT_KEY
    reject_outliers: bool = False
    outlier_norm_ratio: float = 3.0
    claim_cap: float = 2.0  # a claimed example count counts at most this x the round's median claim (0: off)
    require_signed: bool = False  # refuse a reply without the node's signature on its update


@dataclass
class Screened:
    """The outcome of screening one round's replies; participants are named by address."""

    accepted: list[Message] = field(default_factory=list)  # in the order received, for the strategy
    updates: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)
    answered: set[int] = field(default_factory=set)  # node ids that replied without an error
    # admitted nodes (by address) that replied without an error, whatever became of the reply: a verified
    # round discloses each of them, so none can say it answered and was neither disclosed nor missed
    responded: set[str] = field(default_factory=set)
    dropped: dict[str, str] = field(default_factory=dict)  # who -> reason
    penalized: set[str] = field(default_factory=set)  # verified senders of unusable or outlier replies
    # usable updates the evidence rules left out of the aggregate as suspect, without a penalty yet
    suspect: set[str] = field(default_factory=set)
    clipped: dict[str, float] = field(default_factory=dict)  # who -> factor its update was scaled by
    signed: dict[str, SignedUpdate] = field(default_factory=dict)  # who -> its signature on its update
    # who -> what it signed for this round, also for replies dropped for any reason (a verified round
    # discloses those as excluded, so their nodes do not complain of omission)
    claims: dict[str, SignedUpdate] = field(default_factory=dict)
    originals: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # who -> update as sent
    hash_seconds: float = 0.0  # spent hashing the usable updates (in parallel), for the round's time split
    hash_cpu_seconds: float = 0.0  # the CPU time those hashes took (HashSpans.cpu_seconds)
    # Gram matrices of `updates` computed this round (the outlier check's, round_gram's): current_grams
    grams: list[DeltaGram] = field(default_factory=list)

    def current_grams(self) -> tuple[DeltaGram, ...]:
        """The Gram matrices computed this round that are still of `updates` as they stand: the same
        participants in the same order, none clipped (a clip replaces an update's arrays)."""
        if self.clipped:
            return ()
        return tuple(g for g in self.grams if g.members == tuple(self.updates))


@dataclass(frozen=True)
class _Usable:
    """A reply that passed the checks that need no hash: its sender, signed claim, update and weight."""

    reply: Message
    who: str
    claim: Mapping[str, object] | None
    arrays: dict[str, np.ndarray]
    weight: float


def screen_replies(
    replies: Iterable[Message],
    verified: Mapping[int, str],
    previous: Mapping[str, np.ndarray],
    policy: ScreeningPolicy,
    context: RoundContext | None = None,
    early: EarlyChecks | None = None,
) -> Screened:
    """Sort replies into accepted and dropped (with reasons); verified senders of unusable or (with
    `reject_outliers`) outlier updates are marked for a penalty. With `context`, a reply's signed claim
    on its update (protocol/update_signing.py) must match the update, the sender and this round; a reply
    that carries a claim which does not is dropped and penalized (the node signed something else or
    someone else's update), and with `require_signed` an unsigned reply is dropped. `early`: the round's
    checks and hashes started as replies arrived (coordinator/early_checks.py), read instead of
    repeating them."""
    out, usable = Screened(), []
    # One hash per update, for its signature and (verified mode) its manifest entry and stored blob. Each
    # usable update starts hashing in a thread as soon as it is checked, so the hashes run while the next
    # replies are checked and in parallel with each other (hashlib and numpy release the GIL).
    hashing = HashPool(early.spans if early is not None else None) if context is not None else None
    try:
        for reply in replies:
            node_id = reply.metadata.src_node_id
            who = verified.get(node_id, f"node {node_id}")
            checked = early.checked(reply) if early is not None else None
            try:
                candidate = _screen_one(
                    out, reply, who, node_id in verified, previous, policy, context, checked
                )
            except Exception as exc:  # a reply is data from another party: nothing in it may stop the round
                _drop_unscreenable(out, who, node_id, node_id in verified, exc)
                continue
            if candidate is not None:
                usable.append((candidate, _hashed(checked, candidate, hashing)))
        for candidate, digest in usable:
            node_id = candidate.reply.metadata.src_node_id
            try:
                _admit(out, candidate, digest.result() if digest else None, policy, context)
            except Exception as exc:
                _drop_unscreenable(out, candidate.who, node_id, True, exc)
    finally:
        if hashing is not None:
            out.hash_seconds = hashing.close()  # the early hashes' spans and these, overlaps once
            out.hash_cpu_seconds = hashing.spans.cpu_seconds()
    if policy.reject_outliers:
        _drop_outliers(out, verified, previous, policy.outlier_norm_ratio)
    if policy.claim_cap > 0:
        _cap_claims(out, verified, policy)
    return out


def _hashed(checked: Checked | None, usable: _Usable, hashing: HashPool | None) -> Future[bytes] | None:
    """The future of a usable update's hash: the early one, or one started now (None: not asked for)."""
    if hashing is None:
        return None
    if checked is not None and checked.update_hash is not None:
        done: Future[bytes] = Future()
        done.set_result(checked.update_hash)
        return done
    return hashing.submit(usable.arrays)


def _screen_one(
    out: Screened,
    reply: Message,
    who: str,
    admitted: bool,
    previous: Mapping[str, np.ndarray],
    policy: ScreeningPolicy,
    context: RoundContext | None,
    checked: Checked | None = None,
) -> _Usable | None:
    """Screen one reply into `out`: dropped with its reason (penalized when it is the admitted sender's
    fault), or returned as usable, for its signature check (`_admit`) once its update is hashed.
    `checked`: its checks, already run (early_checks.py)."""
    if reply.has_error():
        out.dropped[who] = f"error reply: {short_reason(reply.error.reason)}"
        return None
    out.answered.add(reply.metadata.src_node_id)
    if not admitted:
        out.dropped[who] = "reply from an unverified node"
        return None
    out.responded.add(who)
    claim = update_claim(reply) if context is not None else None
    if claim is not None and (signed := claim_signed_by(claim, context, who)) is not None:
        out.claims[who] = signed
    if checked is not None:
        reason, arrays, weight = checked.reason, checked.arrays, checked.weight
    else:
        reason, arrays, weight = check_reply(reply, previous, policy)
    if reason:
        out.dropped[who] = reason
        out.penalized.add(who)
        return None
    return _Usable(reply, who, claim, arrays, weight)


def _admit(
    out: Screened,
    usable: _Usable,
    update_hash: bytes | None,
    policy: ScreeningPolicy,
    context: RoundContext | None,
) -> None:
    """Accept a usable reply into `out`, or (with `context`) drop it if its signed claim does not match
    its update (`update_hash`)."""
    who = usable.who
    if context is not None and update_hash is not None:
        reason, signed = _check_signature(
            usable.claim, out.claims.get(who), who, update_hash, usable.weight, context, policy.require_signed
        )
        if reason:
            out.dropped[who] = reason
            if usable.claim is not None:  # a false claim is the node's doing; no claim may not be
                out.penalized.add(who)
            return
        if signed is not None:
            out.signed[who] = signed
    out.accepted.append(usable.reply)
    out.updates[who], out.weights[who] = usable.arrays, usable.weight
    out.originals[who] = usable.arrays


def _drop_unscreenable(out: Screened, who: str, node_id: int, admitted: bool, exc: Exception) -> None:
    """A reply whose screening raised: undo anything half-recorded, drop it with the reason, penalize an
    admitted sender (what it sent could not be read as a reply)."""
    out.accepted = [r for r in out.accepted if r.metadata.src_node_id != node_id]
    for book in (out.updates, out.weights, out.signed, out.originals):
        book.pop(who, None)
    out.dropped[who] = f"malformed reply ({type(exc).__name__}: {short_reason(str(exc))})"
    if admitted:
        out.answered.add(node_id)
        out.responded.add(who)
        out.penalized.add(who)


def _check_signature(
    claim: Mapping[str, object] | None,
    signed_by_sender: SignedUpdate | None,
    who: str,
    update_hash: bytes,
    weight: float,
    context: RoundContext,
    required: bool,
) -> tuple[str | None, SignedUpdate | None]:
    """(reason to drop, None) or (None, the checked signature or None when unsigned and allowed).
    `signed_by_sender`: the claim already recovered to its sender (signature recovery is the costly
    step, in pure Python: once per reply); only a claim that does not fit is checked again, for its
    reason."""
    if claim is None:
        return ("unsigned update (this round requires the node's signature)" if required else None), None
    if signed_by_sender is not None and (signed_by_sender.update_hash, signed_by_sender.weight) == (
        update_hash,
        int(weight),
    ):
        return None, signed_by_sender
    try:
        return None, check_claim(claim, context, who, update_hash, int(weight))
    except FlchainError as exc:
        return f"bad update signature: {exc}", None


def _cap_claims(out: Screened, verified: Mapping[int, str], policy: ScreeningPolicy) -> None:
    """No claimed example count buys more than `claim_cap` x the round's median claim of weight: the
    wrapped strategy aggregates the capped replies. (Below half liars the median is honest; against a
    majority, trust-weighted aggregation ignores claims altogether.)"""
    if not out.weights:
        return
    cap = policy.claim_cap * float(np.median(list(out.weights.values())))
    for i, reply in enumerate(out.accepted):
        who = verified[reply.metadata.src_node_id]
        if out.weights[who] > cap:
            out.weights[who] = cap
            out.accepted[i] = with_update(reply, weight=cap, weight_key=policy.weight_key)


def check_reply(
    reply: Message, previous: Mapping[str, np.ndarray], policy: ScreeningPolicy
) -> tuple[str | None, dict[str, np.ndarray], float]:
    """(why `reply` is unusable or None, its update's arrays as read-only views, its claimed weight): its
    shape against the model's, arrays that decode, a finite update within `max_update_norm`, metrics."""
    read = read_reply(reply, previous)
    if isinstance(read, str):
        return read, {}, 0.0
    arrays, metrics = read
    reason, weight = check_contents(arrays, metrics, previous, policy)
    return reason, arrays, weight


def read_reply(
    reply: Message, previous: Mapping[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], MetricRecord] | str:
    """`reply`'s update as read-only views of its own bytes and its metrics, or why it cannot be read
    (no or several records, arrays of another shape than the model's, undecodable arrays)."""
    parts = reply_parts(reply)
    if isinstance(parts, str):
        return parts
    record, metrics = parts
    mismatch = record_mismatch(record, previous)
    if mismatch:
        return mismatch
    try:
        # read-only views of the reply's own bytes: screening, scores and the store only read them, and a
        # copy of each update (400 MB at 100M parameters, in fresh memory) took 2.6 s of a 3-reply round
        return record_views(record), metrics
    except Exception as exc:  # undecodable arrays of any kind
        return f"undecodable arrays ({exc})"


def check_contents(
    arrays: Mapping[str, np.ndarray],
    metrics: MetricRecord,
    previous: Mapping[str, np.ndarray],
    policy: ScreeningPolicy,
) -> tuple[str | None, float]:
    """(why a read update is unusable or None, its claimed weight): a finite update within
    `max_update_norm` of `previous`, and metrics that hold a usable weight."""
    reason = check_update(arrays, previous, policy.max_update_norm)
    reason = reason or check_metrics(metrics, policy.weight_key)
    return reason, 0.0 if reason else float(metrics[policy.weight_key])


def _drop_outliers(
    out: Screened, verified: Mapping[int, str], previous: Mapping[str, np.ndarray], ratio: float
) -> None:
    outliers = find_outliers(previous, out.updates, ratio, out.grams)
    for who, reason in outliers.items():
        out.dropped[who] = reason
        out.penalized.add(who)
        del out.updates[who], out.weights[who]
    out.accepted = [r for r in out.accepted if verified[r.metadata.src_node_id] not in outliers]
