"""The rules are fixed per task (issue 24, point 5): a task records the hash of its rules document (scoring
method, claim cap, clip and step ratios) on-chain when it is created, the coordinator publishes the
document in the task's store, and a verified round whose manifest declares other rules is disputed.

Before this change each manifest declared its own `scoring` and `claim_cap`, bound to nothing: a manifest
saying `scoring: "fltrust"` (or any unknown string) made validators skip recomputing the scores, and one
saying `claim_cap: 0` let a colluding node's huge signed weight own the aggregate; in both cases the
cooked round re-derived consistently and validators attested it. The lying coordinator here builds its
rounds exactly as ChainStrategy does (verified_round.build, derivation.aggregate, the real committer)
and changes only the rules it declares, and derives its model by those declared rules, so the rules
check alone stands between it and finality."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from eth_account.signers.local import LocalAccount

from fl_chain.chain import ledger, quorum
from fl_chain.chain.published import fetch_rules
from fl_chain.config import RunConfig
from fl_chain.coordinator import verified_round
from fl_chain.coordinator.committer import RoundCommitter
from fl_chain.coordinator.ledger_session import LedgerSession
from fl_chain.coordinator.policies import ChainOptions, effective_rules, round_policy, rules_of
from fl_chain.coordinator.screening import Screened
from fl_chain.defence import derivation
from fl_chain.defence.scoring import ScoringPolicy, score_round
from fl_chain.errors import FlchainError
from fl_chain.protocol.fixedpoint import SCALE
from fl_chain.protocol.ledger_mode import LedgerMode
from fl_chain.protocol.model_bytes import hash_arrays
from fl_chain.protocol.task_rules import TaskRules, parse_rules, rules_document_name, task_rules
from fl_chain.protocol.update_signing import RoundContext, sign_update
from fl_chain.store import ModelStore
from fl_chain.store_http import BlobServer
from fl_chain.verify.audit import audit_task
from fl_chain.verify.validator import Attestation, Dispute, Validator
from tests.chainutil import LocalChain, new_nodes
from tests.verified_helpers import RULES, open_verified_task, quorum_validators

COLLUDER_CLAIM = 1_000_000  # the examples the coordinator's friend signs for (honest nodes: 50..150)


@dataclass
class Task:
    """A verified task on a real chain (created with RULES), four registered nodes, three validators
    (quorum 2), and a coordinator that builds each round by the rules it chooses to declare."""

    chain: LocalChain
    committer: RoundCommitter
    nodes: list[LocalAccount]
    validators: list[Validator]
    model: dict[str, np.ndarray]
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))

    @property
    def client(self):
        return self.chain.client

    @property
    def id(self) -> int:
        return self.committer.task

    def round(self, number: int, declared: TaskRules = RULES, step: float = 1.0) -> None:
        """Every node trains and signs (node 0, the coordinator's friend, for COLLUDER_CLAIM examples);
        the coordinator weighs the claims with the declared claim cap, scores by cosine (or, declaring a
        method validators do not recompute, gives its friend all the credit), shortens the step by
        `step`, and commits the manifest declaring `declared`."""
        context = RoundContext(self.client.deployment.chain_id, self.client.ledger.address, self.id, number)
        screened = Screened()
        for i, node in enumerate(self.nodes):
            arrays = {
                k: (v + self.rng.normal(0.05, 0.1, v.shape)).astype(v.dtype) for k, v in self.model.items()
            }
            claim = COLLUDER_CLAIM if i == 0 else int(self.rng.integers(50, 150))
            signed = sign_update(node, *vars(context).values(), hash_arrays(arrays), claim)
            screened.claims[node.address] = screened.signed[node.address] = signed
            screened.updates[node.address] = screened.originals[node.address] = arrays
            screened.weights[node.address] = float(claim)
        weights = verified_round.canonical_weights(screened, declared.claim_cap)
        _, scores = score_round(
            ScoringPolicy("cosine"), self.model, screened.updates, screened.weights, None, number
        )
        if declared.scoring not in derivation.RECOMPUTABLE_SCORES:
            scores = {who: SCALE if who == self.nodes[0].address else 0 for who in scores}
        model = derivation.aggregate(self.model, screened.updates, weights, step)
        built = verified_round.build(
            context, screened, scores, self.committer.parent_hash, hash_arrays(model), declared, step
        )
        self.committer.commit(number, model, scores, verified=built)
        self.model = model

    def judge(self, number: int) -> list[Attestation | Dispute]:
        """Each validator handles the round's commit, as its watcher would deliver it."""
        return [v.attest(self.id, number) for v in self.validators]


@pytest.fixture()
def task(chain: LocalChain, tmp_path: Path) -> Task:
    client = chain.client
    committer, model = open_verified_task(client, chain.coordinator, tmp_path / "store", b"\x01" * 32, 1)
    validators = quorum_validators(client, chain.admin, committer.task)
    return Task(chain, committer, new_nodes(chain, 4), validators, model)


def _failed_derivations(t: Task, number: int) -> list[str]:
    return [
        x.detail
        for x in audit_task(t.client, t.id)
        if not x.ok and x.check == "derivation" and x.where.endswith(f"round {number}")
    ]


def test_an_honest_round_under_the_tasks_rules_is_attested(task: Task) -> None:
    """The coordinator declares the task's own rules: every validator re-derives and attests, the audit
    is clean. (Before: the same, but the rules were the manifest's word alone.)"""
    task.round(1)
    verdicts = task.judge(1)
    assert all(isinstance(v, Attestation) for v in verdicts), verdicts
    assert quorum.is_finalized(task.client, task.id, 1) and not quorum.is_disputed(task.client, task.id, 1)
    findings = audit_task(task.client, task.id)
    assert all(x.ok for x in findings), [x for x in findings if not x.ok]
    (rules,) = [x for x in findings if x.check == "rules"]
    assert "scoring cosine, claim cap 2" in rules.detail, rules


@pytest.mark.parametrize(
    ("scoring", "expected"),
    [("fltrust", "declares rules other than the task's"), ("made-up", "is not a scoring method")],
)
def test_a_manifest_declaring_another_scoring_method_is_disputed(
    task: Task, scoring: str, expected: str
) -> None:
    """The coordinator says it scored by `scoring`, which validators do not recompute, and hands its
    friend all the credit. Before: validators skipped the scores and attested; the round finalized."""
    task.round(1)
    task.judge(1)
    task.round(2, TaskRules(scoring, RULES.claim_cap, RULES.clip_ratio, RULES.step_ratio))
    verdicts = task.judge(2)
    assert all(isinstance(v, Dispute) and expected in v.reason for v in verdicts), verdicts
    assert quorum.is_disputed(task.client, task.id, 2) and not quorum.is_finalized(task.client, task.id, 2)
    failed = _failed_derivations(task, 2)
    assert failed and expected in failed[0], failed


def test_a_manifest_declaring_claim_cap_0_is_disputed(task: Task) -> None:
    """The coordinator lifts the claim cap, so its friend's 1,000,000 signed examples own the aggregate;
    the model re-derives by the declared cap. Before: validators attested; the round finalized."""
    task.round(1)
    task.judge(1)
    uncapped = TaskRules(RULES.scoring, 0.0, RULES.clip_ratio, RULES.step_ratio)
    task.round(2, uncapped)
    verdicts = task.judge(2)
    assert all(isinstance(v, Dispute) and "rules other than the task's" in v.reason for v in verdicts)
    assert "claim cap 0" in verdicts[0].reason
    assert quorum.is_disputed(task.client, task.id, 2) and not quorum.is_finalized(task.client, task.id, 2)
    failed = _failed_derivations(task, 2)
    assert failed and "rules other than the task's" in failed[0], failed


def test_a_step_factor_the_tasks_rules_do_not_allow_is_disputed(task: Task) -> None:
    """The task bounds no step (step ratio 0), yet the manifest shortens the round's step to 0.3 (keeping
    the model near the previous one, whatever the nodes sent) and declares the task's rules. Before:
    any factor in (0, 1] re-derived and was attested."""
    task.round(1)
    task.judge(1)
    task.round(2, RULES, step=0.3)
    verdicts = task.judge(2)
    assert all(isinstance(v, Dispute) and "bound no step" in v.reason for v in verdicts), verdicts
    assert quorum.is_disputed(task.client, task.id, 2)


def test_the_tasks_rules_hash_is_on_chain_and_matches_the_published_rules(
    chain: LocalChain, tmp_path: Path
) -> None:
    """createTask records the rules hash (getTask, TaskCreated); the coordinator published the rules
    document by that hash, and anyone reading the task's store over HTTP gets rules that hash to it.
    Before: a task had no rules; createTask took three arguments."""
    client = chain.client
    store_dir = tmp_path / "store"
    server = BlobServer(store_dir).start()
    try:
        store = ModelStore(store_dir, public_base=f"http://127.0.0.1:{server.port}/")
        committer = RoundCommitter.new_task(
            client, chain.coordinator, store, b"\x02" * 32, mode="verified", rules=RULES
        )
        record = ledger.task_record(client, committer.task)
        assert record.rules_hash == RULES.rules_hash() and record.mode is LedgerMode.VERIFIED
        assert fetch_rules(client, committer.task) == RULES  # over HTTP, checked against the chain
        published = store_dir / "rounds" / rules_document_name(RULES.rules_hash())
        assert parse_rules(published.read_bytes(), str(published)) == RULES
        published.write_bytes(task_rules("cosine", 3.0, 0.0, 0.0, "other").to_json())  # swapped in the store
        with pytest.raises(FlchainError, match="rulesHash is 0x"):
            fetch_rules(client, committer.task)
        (audited,) = [x for x in audit_task(client, committer.task) if x.check == "rules"]
        assert not audited.ok and "rulesHash is 0x" in audited.detail, audited
    finally:
        server.stop()
    events = client.ledger.events.TaskCreated.get_logs(from_block=0)
    (created,) = [e for e in events if int(e["args"]["task"]) == committer.task]
    assert bytes(created["args"]["rulesHash"]) == RULES.rules_hash()


def test_a_task_is_created_with_its_effective_policys_rules(chain: LocalChain, tmp_path: Path) -> None:
    """A ChainStrategy's rules are its effective policy's (FLTrust without a root set scores by cosine),
    and LedgerSession.open_task records exactly those; a run with other rules cannot resume the task.
    Before: the task recorded no rules, and a resumed run could derive by any."""
    config = RunConfig()
    config.ledger.mode = "verified"
    config.scoring.method = "fltrust"
    session = LedgerSession(chain.client, chain.coordinator, ModelStore(tmp_path / "store"), config=config)
    rules = effective_rules(ChainOptions(policy=round_policy(config)), "FedAvg")
    assert rules.scoring == "cosine" and rules.claim_cap == config.scoring.claim_cap
    committer, _ = session.open_task({"w": np.ones(3, np.float32)}, "rules/1.0", rules)
    assert ledger.task_record(chain.client, committer.task).rules_hash == rules.rules_hash()
    committer.check_rules(rules)
    with pytest.raises(FlchainError, match=f"task {committer.task} was created with rules 0x") as info:
        committer.check_rules(task_rules("cosine", 0.0, 0.0, 0.0, "resumed"))
    assert "\n" not in str(info.value)


def test_unknown_or_missing_rules_are_refused_at_task_creation(chain: LocalChain, tmp_path: Path) -> None:
    """An unknown scoring method is a one-line error before any transaction; a verified task without
    rules is refused in Python and by the contract (EmptyRulesHash)."""
    client = chain.client
    before = ledger.task_count(client)
    config = RunConfig()
    config.scoring.method = "made-up"
    with pytest.raises(FlchainError, match="scoring 'made-up' is not a scoring method") as info:
        rules_of(round_policy(config))
    assert "\n" not in str(info.value)
    store = ModelStore(tmp_path / "store")
    with pytest.raises(FlchainError, match="a verified task needs its rules"):
        RoundCommitter.new_task(client, chain.coordinator, store, b"\x03" * 32, mode="verified")
    with pytest.raises(FlchainError, match="EmptyRulesHash"):
        ledger.create_task(client, chain.coordinator, b"\x03" * 32, "file:///s/", LedgerMode.VERIFIED)
    assert ledger.task_count(client) == before


def _document(**changes: object) -> bytes:
    data = json.loads(RULES.to_json())
    data.update(changes)
    return json.dumps(data).encode()


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"not json", "not a JSON task rules"),
        (b"[1, 2]", "kind 'task-rules'"),
        (_document(kind="manifest"), "kind 'task-rules'"),
        (_document(version=2), "task-rules version 2"),
        (_document(scoring="fltrust2"), "scoring 'fltrust2' is not a scoring method"),
        (_document(scoring=7), "scoring is missing or not a string"),
        (_document(claim_cap=-1), "claim_cap is negative"),
        (_document(claim_cap="2"), "claim_cap is missing or not a finite number"),
        (
            b'{"kind":"task-rules","version":1,"scoring":"cosine","claim_cap":Infinity}',
            "claim_cap is missing",
        ),
        (_document(step_ratio=None), "step_ratio is missing or not a finite number"),
        (_document(clip_ratio=True), "clip_ratio is missing or not a finite number"),
        (_document(shapley=64), "unknown field 'shapley'"),
        (b" " * (70 * 1024), "larger than"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_a_bad_rules_document_is_a_one_line_error(blob: bytes, message: str) -> None:
    with pytest.raises(FlchainError, match=message) as info:
        parse_rules(blob, "rounds/rules-ab.json")
    assert "\n" not in str(info.value) and str(info.value).startswith("rounds/rules-ab.json")


def test_the_rules_hash_does_not_depend_on_how_numbers_are_spelled() -> None:
    """`2` and `2.0` are one rule: the hash is taken over the canonical document, so a manifest written
    by another implementation cannot be disputed for its number formatting."""
    spelled = parse_rules(_document(claim_cap=2, clip_ratio=0, step_ratio=0.0), "doc")
    assert spelled == RULES and spelled.rules_hash() == RULES.rules_hash()
