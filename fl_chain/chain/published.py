"""Documents a task publishes beside its models, fetched by the URI the chain implies and checked to
commit to the chain's root: a verified round's manifest, a commitment-mode round's outcome leaves, a
reputation checkpoint's leaves, and the task's rules (checked against its rulesHash). The documents are
parsed by protocol/ (manifest.py, outcomes.py, task_rules.py); here they are only located, read (bounded)
and held against the chain. `History` keeps a task's outcome
leaves and their reputation fold for the validators, the audit and a resumed coordinator."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from fl_chain.chain import ledger, registry, reputation
from fl_chain.chain.checkpoints import CheckpointRecord
from fl_chain.chain.client import ChainClient
from fl_chain.errors import FlchainError
from fl_chain.protocol.documents import document_name
from fl_chain.protocol.manifest import MAX_MANIFEST_BYTES, RoundManifest, parse_manifest
from fl_chain.protocol.outcomes import (
    MAX_DOCUMENT_BYTES,
    CheckpointLeaves,
    RoundOutcomes,
    parse_checkpoint,
    parse_outcomes,
)
from fl_chain.protocol.reputation_fold import fold_round, held_suspended, new_fold
from fl_chain.protocol.reputation_model import ReputationModel
from fl_chain.protocol.task_rules import MAX_RULES_BYTES, TaskRules, parse_rules, rules_document_name
from fl_chain.store import ROUNDS_DIR, BlobTooLarge, read_blob


class Unavailable(FlchainError):
    """A manifest or update blob cannot be read from here (now): no verdict either way, unlike a blob that
    is there and wrong."""


class _Rooted(Protocol):
    """A published document: a set of Merkle leaves whose root the chain holds."""

    def root(self) -> bytes:
        """The Merkle root of the document's leaves."""
        ...


D = TypeVar("D", bound=_Rooted)


def read_published(uri: str, max_bytes: int, what: str = "blob") -> bytes:
    """The bytes at `uri` (`store_read.fetch`: checked scheme and place, streamed, at most `max_bytes`);
    Unavailable if they cannot be fetched or this reader does not fetch such a URI, BlobTooLarge if
    there are too many."""
    try:
        return read_blob(uri, max_bytes, what)
    except BlobTooLarge:
        raise
    except FlchainError as exc:
        raise Unavailable(str(exc)) from None


def document_uri(client: ChainClient, task: int, round_number: int, root: bytes) -> str:
    """Where the document of `round_number` of `task` with Merkle root `root` is published (the task's
    on-chain blob base + rounds/…)."""
    return _in_rounds(ledger.task_record(client, task).blob_base, document_name(task, round_number, root))


def _in_rounds(base: str, name: str) -> str:
    """The URI of document `name` in the `rounds/` of the store at `base`."""
    return base + ("" if base.endswith("/") else "/") + ROUNDS_DIR + "/" + name


def fetch_rules(client: ChainClient, task: int) -> TaskRules:
    """The task's published rules document, checked to hash to its on-chain rulesHash. Unavailable if it
    cannot be fetched; a one-line FlchainError if the task declared no rules or the document is not
    the one the chain names."""
    record = ledger.task_record(client, task)
    if record.rules_hash == ledger.ZERO_HASH:
        raise FlchainError(f"task {task} declared no rules (its rulesHash is zero)")
    uri = _in_rounds(record.blob_base, rules_document_name(record.rules_hash))
    rules = parse_rules(read_published(uri, MAX_RULES_BYTES, "rules document"), uri)
    if rules.rules_hash() != record.rules_hash:
        raise FlchainError(
            f"{uri}: the rules hash to 0x{rules.rules_hash().hex()}, task {task}'s rulesHash is "
            f"0x{record.rules_hash.hex()}"
        )
    return rules


def fetch_document(
    client: ChainClient,
    where: tuple[int, int, bytes],
    parse: Callable[[bytes, str], D],
    max_bytes: int,
    claimed: str = "the chain has",
) -> tuple[D, int]:
    """The document published for (task, round, root), parsed by `parse` and checked to give `root`;
    (document, bytes read). Unavailable if it cannot be fetched; a one-line FlchainError if it is not
    the committed one (`claimed` names who holds the root in that message)."""
    task, round_number, root = where
    uri = document_uri(client, task, round_number, root)
    blob = read_published(uri, max_bytes, "document")
    document = parse(blob, uri)
    if document.root() != root:
        raise FlchainError(f"{uri}: its leaves give root 0x{document.root().hex()}, {claimed} 0x{root.hex()}")
    return document, len(blob)


def fetch_manifest(client: ChainClient, task: int, round_number: int) -> tuple[RoundManifest, int]:
    """A verified round's manifest, checked to commit to the chain's updates root; (manifest, bytes)."""
    root = ledger.updates_root(client, task, round_number)
    if root is None:
        raise FlchainError(f"round {round_number} of task {task} is not a verified round")
    return fetch_document(client, (task, round_number, root), parse_manifest, MAX_MANIFEST_BYTES)


def fetch_outcomes(client: ChainClient, task: int, round_number: int) -> RoundOutcomes:
    """A commitment-mode round's outcome leaves, checked to give the chain's outcomes root."""
    root = ledger.outcomes_root(client, task, round_number)
    if root is None:
        raise FlchainError(f"round {round_number} of task {task} is not a commitment-mode round")
    return fetch_document(client, (task, round_number, root), parse_outcomes, MAX_DOCUMENT_BYTES)[0]


def fetch_checkpoint(client: ChainClient, record: CheckpointRecord) -> CheckpointLeaves:
    """The published leaves of a proposed checkpoint, checked against its proposed root."""
    where = (record.task, record.through_round, record.root)
    return fetch_document(client, where, parse_checkpoint, MAX_DOCUMENT_BYTES, "proposed")[0]


def fold_inputs(
    client: ChainClient, task: int, round_number: int, model: ReputationModel
) -> tuple[tuple[int, int, int, int, int], list[str], int]:
    """What the chain says a commitment-mode round folds with: (the Reputation parameters in effect at
    its commit block, the nodes `model` holds suspended that the registrar re-approved after the round
    that suspended them and that are Active as of the block before the commit, the commit block). Read
    at fixed blocks, so the coordinator, the validators and the audit get the same inputs whenever they
    fold."""
    block = ledger.get_round(client, task, round_number).block
    held = held_suspended(model)
    reinstated: list[str] = []
    if held:
        nodes = sorted(held)
        active = registry.active_of(client, nodes, block - 1)
        since = registry.activated_at(client, nodes, block - 1)
        reinstated = [n for n in nodes if active[n] and since[n] > held[n]]
    return reputation.parameters_at(client, block), reinstated, block


def fold_with_chain(
    client: ChainClient, task: int, model: ReputationModel, outcomes: RoundOutcomes
) -> list[str]:
    """Fold one committed round into `model` with the inputs the chain gives it (`fold_inputs`);
    returns the nodes it suspends."""
    params, reinstated, block = fold_inputs(client, task, outcomes.round, model)
    return fold_round(model, outcomes, params, reinstated, block)


@dataclass
class History:
    """A task's outcome leaves, fetched once each, and the fold through the newest round folded so far:
    a checkpoint folds every round from round 1, but consecutive checkpoints only fold the rounds in
    between (a validator's work per checkpoint does not grow with the task's age)."""

    client: ChainClient
    task: int
    rounds: dict[int, RoundOutcomes] = field(default_factory=dict)
    _folded: tuple[int, ReputationModel] | None = None  # (through round, fold)

    def outcomes(self, round_number: int) -> RoundOutcomes:
        """One round's checked outcomes (see fetch_outcomes)."""
        if round_number not in self.rounds:
            self.rounds[round_number] = fetch_outcomes(self.client, self.task, round_number)
        return self.rounds[round_number]

    def fold(self, through_round: int) -> ReputationModel:
        """The fold of rounds 1..through_round, each with its chain inputs (`fold_inputs`: parameters
        at its commit, reinstatements before it); a copy: the caller may change it."""
        start, model = 1, new_fold(_initial(self.client))
        if self._folded is not None and self._folded[0] <= through_round:
            start, model = self._folded[0] + 1, _copy(self._folded[1])
        for rnd in range(start, through_round + 1):
            fold_with_chain(self.client, self.task, model, self.outcomes(rnd))
        self._folded = (through_round, _copy(model))
        for rnd in [r for r in self.rounds if r <= through_round]:  # folded: a long run's memory stays flat
            del self.rounds[rnd]
        return model


def _initial(client: ChainClient) -> tuple[int, int, int, int, int]:
    """Parameters of an empty fold (each folded round sets its own)."""
    return reputation.parameters(client)


def _copy(model: ReputationModel) -> ReputationModel:
    return ReputationModel(model.params, dict(model.values), dict(model.active), dict(model.suspended_at))
