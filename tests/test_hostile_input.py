"""Hostile input: replies built to exhaust memory or time, garbage join answers, and truncated,
corrupted or hostile state files. Each is refused with a reason (a one-line error naming the file for
files); nothing raises past the check, nothing else is lost. Property-based where the input space is
large (hypothesis); the counts of inputs tried are written for docs/reliability.md."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from eth_account import Account
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fl_chain.coordinator.screening import ScreeningPolicy, screen_replies
from fl_chain.errors import FlchainError
from fl_chain.protocol.join import Challenges, sign_statement
from fl_chain.protocol.update_signing import RoundContext
from fl_chain.wire.records import UPDATE_RECORD, arrays_to_record, record_mismatch
from tests.conftest import flower_server_identity

MODEL = {"w": np.zeros((30, 20), np.float32), "b": np.zeros(20, np.float32)}
TRIED: dict[str, int] = {}  # input kind -> how many were tried (reported for docs/reliability.md)


def _count(kind: str) -> None:
    TRIED[kind] = TRIED.get(kind, 0) + 1


@pytest.fixture(scope="module", autouse=True)
def _report_counts() -> None:
    yield
    target = os.environ.get("FLCHAIN_RELIABILITY_JSON")
    if target:
        with open(target, "a") as fh:
            fh.write(json.dumps({"kind": "hostile-inputs", "tried": TRIED}) + "\n")


# ---- replies built to exhaust memory or time ------------------------------------------------------


def _reply(record: ArrayRecord, extra: RecordDict | None = None) -> Message:
    content = RecordDict({"arrays": record, "metrics": MetricRecord({"num-examples": 10})})
    for key, value in (extra or {}).items():
        content[key] = value
    with flower_server_identity(7):
        outgoing = Message(RecordDict(), dst_node_id=1, message_type="train")
        return Message(content, reply_to=outgoing)


def _never_decoded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    decoded: list[int] = []
    real = Array.numpy

    def counting(self: Array) -> np.ndarray:
        decoded.append(len(self.data))
        return real(self)

    monkeypatch.setattr(Array, "numpy", counting)
    return decoded


def test_replies_built_to_exhaust_memory_or_time_are_refused_before_decoding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Refused from metadata alone (count, names, shapes, dtypes, byte sizes): no array is decoded."""
    big = {"w": np.ones((3000, 2000), np.float32), "b": MODEL["b"]}  # 10,000 x the model's first array
    many = ArrayRecord(
        {f"a{i}": Array("float32", (1,), "numpy.ndarray", b"\x00" * 4) for i in range(200_000)}
    )
    lying = arrays_to_record(MODEL)  # right shape declared, 24 MB of bytes carried
    lying["w"] = Array("float32", (30, 20), "numpy.ndarray", b"\x00" * 24_000_000)
    hostile = {
        "array 10,000x the model's": (arrays_to_record(big), "has shape (3000, 2000)"),
        "200,000 tiny arrays": (many, "200000 arrays, expected the model's 2"),
        "declared shape, 24 MB of bytes": (lying, "carries 24,000,000 bytes for 2,400 of data"),
        "other dtype": (arrays_to_record({**MODEL, "b": MODEL["b"].astype(np.float64)}), "dtype float64"),
        "renamed array": (arrays_to_record({"w": MODEL["w"], "x" * 10_000: MODEL["b"]}), "unexpected array"),
    }
    decoded = _never_decoded(monkeypatch)
    verified = {1: "0x" + "11" * 20}
    for name, (record, reason) in hostile.items():
        _count("reply")
        screened = screen_replies([_reply(record)], verified, MODEL, ScreeningPolicy())
        assert not screened.accepted, name
        assert reason in screened.dropped[verified[1]], (name, screened.dropped)
        assert len(screened.dropped[verified[1]]) < 200  # the reason quotes no attacker payload in bulk
        assert screened.penalized == {verified[1]}
    assert decoded == []
    assert record_mismatch(arrays_to_record(MODEL), MODEL) is None


HOSTILE_NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**90), max_value=2**90),
    st.sampled_from([float("inf"), float("-inf"), float("nan"), -1, 0, 2**80, 2**53 + 1, True]),
    st.text(max_size=5),
    st.none(),
    st.lists(st.one_of(st.floats(allow_nan=True), st.integers(), st.text(max_size=3)), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def _metrics_reply(values: dict[str, object], src: int) -> Message:
    """A training reply whose MetricRecord holds exactly `values`, also those Flower's own type checks
    would refuse (a hostile peer's serialiser need not run them)."""
    metrics = MetricRecord()
    metrics._data.update(values)  # bypasses MetricRecord's checks on purpose
    content = RecordDict({"arrays": arrays_to_record(MODEL), "metrics": metrics})
    with flower_server_identity(7):
        outgoing = Message(RecordDict(), dst_node_id=src, message_type="train")
        return Message(content, reply_to=outgoing)


def _fine(value: object, weight: bool) -> bool:
    """What check_metrics must accept: a real, finite number in range (a list of them for a metric)."""
    items = value if isinstance(value, list) and not weight else [value]
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            return False
        number = float(item) if abs(item) < 2**1000 else float("inf")
        if weight and not 0 < number <= 2**53:
            return False
        if not abs(number) <= 1e15:
            return False
    return True


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(weight=HOSTILE_NUMBERS, loss=HOSTILE_NUMBERS, drop_weight=st.booleans())
def test_hostile_numbers_in_a_reply_are_refused_never_fatal(
    weight: object, loss: object, drop_weight: bool
) -> None:
    """Any value in a reply's metrics (inf, nan, negative, 2**80, strings, lists, missing): screening never
    raises, a refused reply is its sender's penalty with a reason and is not aggregated, and an honest
    reply beside it is accepted."""
    _count("reply metrics")
    values: dict[str, object] = {"loss": loss} if drop_weight else {"num-examples": weight, "loss": loss}
    hostile, honest = "0x" + "11" * 20, "0x" + "22" * 20
    admitted = {1: hostile, 2: honest}
    replies = [_metrics_reply(values, 1), _metrics_reply({"num-examples": 5, "loss": 0.5}, 2)]
    screened = screen_replies(replies, admitted, MODEL, ScreeningPolicy())
    usable = not drop_weight and _fine(weight, True) and _fine(loss, False)
    assert honest in screened.weights and honest not in screened.penalized
    if usable:
        assert hostile in screened.weights and hostile not in screened.penalized
    else:
        assert hostile not in screened.weights and hostile not in screened.updates
        assert hostile in screened.penalized and screened.dropped[hostile]
        assert [r.metadata.src_node_id for r in screened.accepted] == [2]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(digest=HOSTILE_NUMBERS, weight=HOSTILE_NUMBERS, signature=HOSTILE_NUMBERS, require=st.booleans())
def test_hostile_update_claims_are_refused_never_fatal(
    digest: object, weight: object, signature: object, require: bool
) -> None:
    """A reply's signed-update claim with any values (also types Flower would refuse): screening never
    raises; the reply is dropped (and its sender penalized, since a claim is its own doing) and an honest
    unsigned reply beside it is judged as usual."""
    _count("update claims")
    hostile, honest = "0x" + "11" * 20, "0x" + "22" * 20
    claim = ConfigRecord()
    claim._data.update({"hash": digest, "weight": weight, "signature": signature})  # unchecked on purpose
    bad = _metrics_reply({"num-examples": 5, "loss": 0.5}, 1)
    bad.content[UPDATE_RECORD] = claim
    replies = [bad, _metrics_reply({"num-examples": 5, "loss": 0.5}, 2)]
    context = RoundContext(31337, "0x" + "33" * 20, 1, 1)
    policy = ScreeningPolicy(require_signed=require)
    screened = screen_replies(replies, {1: hostile, 2: honest}, MODEL, policy, context)
    assert hostile not in screened.weights and hostile in screened.penalized and screened.dropped[hostile]
    assert (honest in screened.weights) is not require  # unsigned: accepted unless signatures are required


def test_a_reply_with_many_records_is_refused() -> None:
    """Flower's records do not nest; a reply can only pile up records, and more than one of a kind is
    refused before anything in them is read."""
    extra = RecordDict({f"c{i}": ConfigRecord({"k": "v" * 100}) for i in range(1000)})
    extra["metrics2"] = MetricRecord({"x": 1.0})
    screened = screen_replies([_reply(arrays_to_record(MODEL), extra)], {1: "0xab"}, MODEL, ScreeningPolicy())
    _count("reply")
    assert "exactly one ArrayRecord and one MetricRecord" in screened.dropped["0xab"]


# ---- join answers -------------------------------------------------------------------------------

GARBAGE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.binary(max_size=300),
    st.text(max_size=300),
    st.text(alphabet="0123456789abcdefABCDEFx", min_size=0, max_size=200).map(lambda t: "0x" + t),
    st.lists(st.integers(), max_size=5),
    st.just("0x" + "ab" * 10_000),  # oversized
)


@settings(max_examples=300, deadline=None)
@given(claimed=GARBAGE, signature=GARBAGE)
def test_garbage_join_answers_are_refused_with_a_short_reason(claimed: object, signature: object) -> None:
    _count("join answer")
    challenges = Challenges(31337, 7, _LEDGER)
    challenges.issue(11)
    address, reason = challenges.verify(11, claimed, signature)
    assert address is None and 0 < len(reason) < 200


_KEY = Account.from_key("0x" + "42" * 32)
_LEDGER = "0x" + "5e" * 20  # the gate's ModelLedger, named in every join statement


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    chain_id=st.sampled_from([1, 31337, 1337]),
    run_id=st.integers(0, 2**63),
    node_id=st.integers(0, 2**63),
    other_node=st.integers(0, 2**63),
)
def test_signatures_of_another_chain_run_or_node_never_verify(
    chain_id: int, run_id: int, node_id: int, other_node: int
) -> None:
    """A well-formed signature verifies only for its own chain, run, node and nonce: replayed by a
    second node id, or answered for another chain or run, it is refused."""
    _count("join answer")
    challenges = Challenges(31337, 7, _LEDGER)
    statement = challenges.issue(node_id)
    signature = sign_statement(_KEY, replace(statement, chain_id=chain_id, run_id=run_id))
    genuine = (chain_id, run_id) == (31337, 7)
    address, _ = challenges.verify(node_id, _KEY.address, signature)
    assert (address == _KEY.address) == genuine
    if other_node != node_id:  # the same answer by a second node id
        replay = Challenges(31337, 7, _LEDGER)
        replay.issue(other_node)
        assert replay.verify(other_node, _KEY.address, signature)[0] is None


# ---- state files ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def valid_files(tmp_path_factory: pytest.TempPathFactory, anvil_process) -> dict[str, Path]:
    """One valid file of each kind flchain reads back, written by flchain itself on a real chain."""
    from fl_chain.chain.watcher import ChainWatcher
    from fl_chain.wire.report import RoundReport, RunEvents
    from tests.chainutil import fresh_deployment, new_nodes

    folder = tmp_path_factory.mktemp("valid")
    chain = fresh_deployment(anvil_process)
    chain.client.deployment.save(folder / "deployment.json")
    new_nodes(chain, 2)
    ChainWatcher(chain.client, folder / "cursor.json").poll()
    events = RunEvents(folder / "rounds.jsonl")
    for n in range(3):
        events.emit(RoundReport(round=n, participants=["0x" + "ab" * 20], scores={"0x" + "ab" * 20: 5}))
    # A real keystore; pbkdf2 with few iterations so that a hundred decryptions stay quick.
    keystore = Account.encrypt("0x" + "42" * 32, "pw", kdf="pbkdf2", iterations=2)
    (folder / "keystore.json").write_text(json.dumps(keystore))
    (folder / "run.toml").write_text(
        "[federation]\nrounds = 3\nmin_nodes = 2\n\n[task]\nlocal_epochs = 1\nlearning_rate = 0.05\n"
        '\n[chain]\nrpc = "http://127.0.0.1:8545"\n'
    )
    return {p.name: p for p in folder.iterdir()}


def _loaders(files: dict[str, Path]) -> dict[str, tuple[Path, Callable[[Path], object]]]:
    """Each file kind flchain reads back: a valid example and the function that reads it."""
    from fl_chain.chain.deployment import Deployment
    from fl_chain.chain.identity import keystore_address, load_key
    from fl_chain.chain.watcher import Cursor
    from fl_chain.config import load_config
    from fl_chain.wire.report import read_reports

    return {
        "config": (files["run.toml"], load_config),
        "deployment": (files["deployment.json"], Deployment.load),
        "keystore": (files["keystore.json"], lambda p: (keystore_address(p), load_key(p, "pw"))),
        "watcher cursor": (files["cursor.json"], Cursor.load),
        "rounds.jsonl": (files["rounds.jsonl"], read_reports),
    }


KINDS = ["config", "deployment", "keystore", "watcher cursor", "rounds.jsonl"]


def _mutate(data: bytes, how: str, at: float, junk: bytes) -> bytes:
    cut = int(at * len(data))
    if how == "truncate":
        return data[:cut]
    if how == "overwrite":
        return data[:cut] + junk + data[cut + len(junk) :]
    if how == "insert":
        return data[:cut] + junk + data[cut:]
    return junk  # replace the whole file


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    how=st.sampled_from(["truncate", "overwrite", "insert", "replace"]),
    at=st.floats(0, 1),
    junk=st.one_of(
        st.binary(max_size=64),
        st.sampled_from(
            [b'"', b"{", b"]", b"null", b"[]", b"1e999", b"-1", b'"x"', b"\xff\xfe", b"true", b"{}"]
        ),
    ),
)
def test_corrupted_state_files_are_one_line_errors_naming_the_file(
    kind: str, how: str, at: float, junk: bytes, tmp_path_factory: pytest.TempPathFactory, valid_files
) -> None:
    _count(f"{kind} file")
    tmp = tmp_path_factory.mktemp("f")
    source, load = _loaders(valid_files)[kind]
    target = tmp / source.name
    target.write_bytes(_mutate(source.read_bytes(), how, at, junk))
    try:
        load(target)
    except FlchainError as exc:
        message = str(exc)
        assert str(target) in message and "\n" not in message, message
    # loading without an error is fine: the mutation left a valid file


@pytest.mark.parametrize("kind", KINDS)
def test_valid_files_load(kind: str, tmp_path: Path, valid_files: dict[str, Path]) -> None:
    source, load = _loaders(valid_files)[kind]
    target = tmp_path / source.name
    shutil.copy(source, target)
    load(target)


def test_strings_from_others_print_literally_in_the_terminal(
    chain, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Terminal output is rendered by rich with markup off: a node's endpoint, a validator's dispute reason
    or a path holding "[/]" or "[red]" shows as written, instead of raising MarkupError (a traceback in
    `flchain watch` or `flchain client`) or restyling the line."""
    from fl_chain.chain import ledger, quorum
    from fl_chain.chain.registry import Capacity, register
    from fl_chain.chain.setup import bootstrap
    from fl_chain.cli import run
    from tests.chainutil import home_with_deployment

    client = chain.client
    home = home_with_deployment(chain, tmp_path)
    hostile = "[/] [red]not red[/red] [bold"
    node = Account.create()
    client.fund(chain.admin, node.address, 10**17)
    register(client, node, Capacity(1, 1, 1), endpoint=hostile)
    validator = Account.create()
    client.fund(chain.admin, validator.address, bootstrap.NODE_FUNDS_WEI)
    quorum.set_validator(client, chain.admin, validator.address)
    task = ledger.create_task(client, chain.coordinator, b"\x01" * 32, "file:///s/")
    ledger.commit_round(client, chain.coordinator, task, 0, b"\x10" * 32, "", ledger.ZERO_HASH, {})
    quorum.dispute(client, validator, task, 0, bytes(32), hostile)
    capsys.readouterr()
    assert run(["watch", "--once", "--from-block", "0", "--home", str(home)]) == 0
    out = capsys.readouterr().out
    assert out.count(hostile) == 2, out  # the endpoint and the dispute reason, literally
    assert run(["audit", "--home", str(tmp_path / "[/]x")]) == 1
    assert "[/]x" in capsys.readouterr().err


@pytest.mark.parametrize("version", [0, 2, 5, "3"])
def test_a_keystore_of_an_unknown_version_is_a_one_line_error(version: object, tmp_path: Path) -> None:
    """Found by the file fuzzing above on a fresh clone: eth_keyfile reads versions 3 and 4 only and
    raises its own NotImplementedError for others."""
    from fl_chain.chain.identity import load_key, write_keystore

    key = tmp_path / "key.json"
    write_keystore(key, "pw")
    data = json.loads(key.read_text())
    data["version"] = version
    key.write_text(json.dumps(data))
    with pytest.raises(FlchainError, match=r"damaged keystore|not an Ethereum keystore") as info:
        load_key(key, "pw")
    assert str(key) in str(info.value) and "\n" not in str(info.value)
