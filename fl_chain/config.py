"""Typed run configuration, loaded from configs/*.toml; CLI flags override single fields.

Every section and field is known: an unknown one, or a value of the wrong type, is a one-line error
naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints
from urllib.parse import urlparse

from fl_chain.errors import FlchainError, read_text_file
from fl_chain.store_read import check_s3_uri

STRATEGIES = ("FedAvg", "FedProx", "Krum", "MultiKrum", "FedMedian", "FedTrimmedAvg", "Bulyan")


@dataclass
class ChainSection:
    """Where the contracts are and who commits."""

    deployment: str = ""  # default: HOME/deployment.json
    rpc: str = ""  # overrides the deployment's RPC URL
    coordinator_key: str = ""  # keystore of the COORDINATOR_ROLE account; empty = the local dev key


@dataclass
class FederationSection:
    """Rounds, the wrapped Flower strategy and sampling."""

    rounds: int = 5  # training rounds (`--rounds` overrides)
    strategy: str = "FedAvg"  # FedAvg, FedProx, Krum, MultiKrum, FedMedian, FedTrimmedAvg, Bulyan
    fraction_train: float = 1.0  # share of admitted nodes sampled per round
    min_nodes: int = 2  # admitted active nodes needed before a round starts
    # admitted active nodes to gather before the first round (0: min_nodes); later rounds need min_nodes,
    # so a federation can start whole and go on without a node that drops out
    start_nodes: int = 0
    round_timeout: float = 300.0  # the longest a round waits for replies
    # once a round completed, later rounds wait round_timeout_factor x the median round, at least this long
    # (and end early when every node still owed has disconnected)
    round_timeout_floor: float = 30.0
    round_timeout_factor: float = 3.0  # see round_timeout_floor
    auth_timeout: float = 120.0  # seconds to wait for `min_nodes` admitted nodes
    wait_finalized: float = 0.0  # > 0: after each commit wait up to this long for the validator quorum
    overlap_commit: bool = True  # send round r's commit while round r+1 trains (without a finality wait)
    aggregation: str = "plain"  # plain: the strategy as is | trust: FLTrust weighting around it
    # passed to the strategy's constructor, e.g. num_malicious_nodes, beta
    strategy_args: dict[str, Any] = field(default_factory=dict)


@dataclass
class TaskSection:
    """Model, data and local training."""

    name: str = "digits"  # or package.module:attr returning a fl_chain.tasks.base.TaskSpec
    partitioning: str = "iid"  # simulation partitions: iid | dirichlet (alpha) | shards
    alpha: float = 0.5  # Dirichlet concentration of the dirichlet partitioning
    local_epochs: int = 5  # local SGD epochs per round (momentum 0.9), sent to clients
    batch_size: int = 32  # local SGD batch size, sent to clients
    learning_rate: float = 0.1  # local SGD learning rate, sent to clients
    proximal_mu: float = 0.0  # FedProx's mu (0.01 if FedProx is chosen and this is 0)
    seed: int = 42  # model initialisation and training seeds


@dataclass
class StoreSection:
    """Where model blobs go and how other machines reach them."""

    dir: str = ""  # default: HOME/store; or s3://BUCKET/PREFIX (docs/storage-s3.md)
    http_host: str = "127.0.0.1"  # interface of the store's HTTP server
    http_port: int = -1  # -1: no HTTP server; 0: any free port
    public_url: str = ""  # base URL clients use, e.g. http://10.0.0.1:8700/ (empty: derived)
    endpoint_url: str = ""  # an S3-compatible service that is not AWS, e.g. http://127.0.0.1:9000
    updates: str = ""  # s3://BUCKET/PREFIX for update blobs (default: the store's updates/)


@dataclass
class ScoringSection:
    """Contribution scoring and reply limits."""

    method: str = "fltrust"  # fltrust | cosine | loss-delta | loo | gtg-shapley | data-size
    max_update_norm: float = 1000.0  # updates farther than this (L2) from the global model are dropped
    shapley_budget: int = 64  # validation evaluations per round for gtg-shapley
    reject_outliers: bool = False  # drop and penalize updates far from the median update (legacy rule)
    outlier_norm_ratio: float = 3.0  # with reject_outliers: how far from the median update is an outlier
    evidence: bool = True  # penalize on evidence anchored in the server's root update (defence/evidence.py)
    # penalize when `evidence_needed` of a node's last `evidence_window` updates were suspect
    evidence_window: int = 3  # how many of a node's last updates the evidence rule looks at
    evidence_needed: int = 2  # suspect updates among them that get the node penalized
    # or when `evidence_long_needed` of its last `evidence_long_window` were (a node suspect every 3rd round)
    evidence_long_window: int = 12  # how many of a node's last updates the longer memory looks at (0: off)
    evidence_long_needed: int = 3  # suspect updates among them that get the node penalized
    claim_cap: float = 2.0  # claimed examples count at most this x the round's median claim (0: off)
    clip_ratio: float = 0.0  # > 0: clip each update to this x the size reference (0: off)
    step_ratio: float = 1.5  # > 0: a round's step is at most this x the size reference (0: off)
    # > 0: clip each update to this x the round's median update norm (0: off). Applied with the server's
    # root update, never in verified rounds nor around trust aggregation (docs/scoring.md)
    median_clip: float = 2.0
    # fltrust scores measured from the round's suspect line (false: from cosine 0, FLTrust's own). From the
    # line, honest nodes keep their scores once the model has converged (docs/scoring.md)
    from_line: bool = True
    # an update the evidence rules left out of the aggregate as suspect (not yet a penalty) scores 0: it
    # added nothing to the model (not in verified rounds, whose validators cannot re-derive a suspicion:
    # there it stays unscored; nor the backdoor filter's exclusions, which are no evidence; docs/scoring.md)
    left_out_zero: bool = True
    # backdoor filter (defence/backdoor.py): aggregate only the updates in the root update's cosine
    # cluster, clipped to the round's median norm (verified rounds: excluded only, never clipped)
    backdoor_filter: bool = False  # leave updates outside the root update's cluster out (no penalty)
    backdoor_noise: float = 0.0  # FLAME's lambda: noise std on the aggregate, x the median norm (0: off)
    # experimental, with the filter: cluster each node's history of update directions (the sum of its unit
    # updates) with g0's, not the round's updates alone (one model-sized float32 vector per node in memory).
    # Over three seeds no better than the filter alone, and costlier on clean non-IID runs (docs/attacks.md)
    backdoor_history: bool = False


@dataclass
class SelectionSection:
    """Which nodes train each round and how much local work they get."""

    mode: str = "uniform"  # uniform (the wrapped strategy samples) | reputation
    sharpness: float = 2.0  # reputation mode: weight = reputation^sharpness x reliability
    exploration: float = 0.1  # reputation mode: the floor of every node's sampling weight
    round_seconds: float = 0.0  # > 0: size local work to each node's declared samples/s


@dataclass
class LedgerSection:
    """How rounds are committed."""

    # plain: model hash, parent, scores | verified: also the Merkle root of the node-signed updates, which
    # validators re-derive the model from before they attest (defence/derivation.py) | commitment: flat gas
    # for any number of participants: the root of the round's outcome leaves; reputation folded off-chain
    # and checkpointed for the validators to attest (coordinator/commitment.py)
    mode: str = "plain"
    checkpoint_every: int = 1  # commitment mode: propose a reputation checkpoint every this many rounds


LEDGER_MODES = ("plain", "verified", "commitment")
VERIFIABLE_STRATEGIES = ("FedAvg", "FedProx")  # what a validator can re-derive bit for bit


@dataclass
class RunConfig:
    """The whole configuration of a federated run."""

    chain: ChainSection = field(default_factory=ChainSection)
    federation: FederationSection = field(default_factory=FederationSection)
    task: TaskSection = field(default_factory=TaskSection)
    store: StoreSection = field(default_factory=StoreSection)
    scoring: ScoringSection = field(default_factory=ScoringSection)
    selection: SelectionSection = field(default_factory=SelectionSection)
    ledger: LedgerSection = field(default_factory=LedgerSection)

    def to_json(self) -> str:
        """Canonical JSON (its keccak is the task's config hash)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        """Inverse of to_json."""
        return from_mapping(json.loads(text), "<run config>")


def _coerce(value: Any, expected: type, where: str) -> Any:
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    origin = getattr(expected, "__origin__", None)
    check = origin or expected
    if check is dict:
        if not isinstance(value, dict):
            raise FlchainError(f"{where}: expected a table")
        return value
    if not isinstance(value, check) or (check is int and isinstance(value, bool)):
        raise FlchainError(f"{where}: expected {check.__name__}, got {type(value).__name__} {value!r}")
    return value


def from_mapping(data: dict[str, Any], source: str) -> RunConfig:
    """Build a RunConfig from a parsed TOML mapping, rejecting unknown sections and fields."""
    config = RunConfig()
    sections = {f.name: f for f in fields(RunConfig)}
    for section_name, values in data.items():
        if section_name not in sections:
            raise FlchainError(f"{source}: unknown section [{section_name}] (known: {', '.join(sections)})")
        if not isinstance(values, dict):
            raise FlchainError(f"{source}: [{section_name}] must be a table")
        section = getattr(config, section_name)
        hints = get_type_hints(type(section))
        for key, value in values.items():
            if key not in hints:
                raise FlchainError(f"{source}: unknown field '{section_name}.{key}'")
            setattr(section, key, _coerce(value, hints[key], f"{source}: field '{section_name}.{key}'"))
    validate(config, source)
    return config


def load_config(path: Path | None) -> RunConfig:
    """Read a TOML config file (or the defaults when path is None)."""
    if path is None:
        return RunConfig()
    if not path.exists():
        raise FlchainError(f"config file {path} does not exist")
    try:
        data = tomllib.loads(read_text_file(path, "config file"))
    except tomllib.TOMLDecodeError as exc:
        raise FlchainError(f"{path}: invalid TOML ({exc})") from None
    return from_mapping(data, str(path))


def validate(config: RunConfig, source: str) -> None:
    """Value checks beyond types; the first failing one is a one-line error naming `source` and the field."""
    _validate_federation(config.federation, source)
    _validate_task(config.task, source)
    _validate_scoring(config, source)
    _validate_ledger(config, source)
    _validate_store(config.store, source)


def _validate_store(store: StoreSection, source: str) -> None:
    """An s3:// store: a bucket, no credential in the address (it goes on-chain), no HTTP server."""
    s3 = store.dir.lower().startswith("s3://")
    if s3:
        check_s3_uri(store.dir, f"{source}: field 'store.dir'")
        if store.http_port >= 0:
            raise FlchainError(
                f"{source}: field 'store.http_port': an s3:// store is served by its bucket, expected -1"
            )
    if store.updates:
        if not s3:
            raise FlchainError(f"{source}: field 'store.updates': only for an s3:// store.dir")
        check_s3_uri(store.updates, f"{source}: field 'store.updates'")
    if store.endpoint_url and urlparse(store.endpoint_url).scheme not in ("http", "https"):
        raise FlchainError(
            f"{source}: field 'store.endpoint_url': expected an http(s):// URL, got {store.endpoint_url!r}"
        )


def _validate_federation(fed: FederationSection, source: str) -> None:
    """Strategy, rounds, sampling and round timeouts."""
    if fed.strategy not in STRATEGIES:
        raise FlchainError(
            f"{source}: field 'federation.strategy': unknown strategy {fed.strategy!r} "
            f"(expected one of {', '.join(STRATEGIES)})"
        )
    if fed.rounds < 1:
        raise FlchainError(f"{source}: field 'federation.rounds': expected >= 1, got {fed.rounds}")
    if not 0 < fed.fraction_train <= 1:
        raise FlchainError(
            f"{source}: field 'federation.fraction_train': expected (0, 1], got {fed.fraction_train}"
        )
    if fed.min_nodes < 1:
        raise FlchainError(f"{source}: field 'federation.min_nodes': expected >= 1, got {fed.min_nodes}")
    if fed.start_nodes < 0:
        raise FlchainError(f"{source}: field 'federation.start_nodes': expected >= 0, got {fed.start_nodes}")
    for name in ("round_timeout", "round_timeout_floor", "round_timeout_factor"):
        if getattr(fed, name) <= 0:
            raise FlchainError(f"{source}: field 'federation.{name}': expected > 0, got {getattr(fed, name)}")


def _validate_task(task: TaskSection, source: str) -> None:
    """Data partitioning and local training."""
    if task.partitioning not in ("iid", "dirichlet", "shards"):
        raise FlchainError(
            f"{source}: field 'task.partitioning': expected iid, dirichlet or shards, "
            f"got {task.partitioning!r}"
        )
    if task.alpha <= 0:
        raise FlchainError(f"{source}: field 'task.alpha': expected > 0, got {task.alpha}")
    for name in ("local_epochs", "batch_size"):
        if getattr(task, name) < 1:
            raise FlchainError(f"{source}: field 'task.{name}': expected >= 1")


def _validate_scoring(config: RunConfig, source: str) -> None:
    """How replies are scored and aggregated (scoring.*, federation.aggregation)."""
    fed = config.federation
    methods = ("loss-delta", "loo", "gtg-shapley", "cosine", "fltrust", "data-size")
    if config.scoring.method not in methods:
        raise FlchainError(
            f"{source}: field 'scoring.method': expected one of {', '.join(methods)}, "
            f"got {config.scoring.method!r}"
        )
    if fed.aggregation not in ("plain", "trust"):
        raise FlchainError(
            f"{source}: field 'federation.aggregation': expected plain or trust, got {fed.aggregation!r}"
        )
    sc = config.scoring
    if not 1 <= sc.evidence_needed <= sc.evidence_window:
        raise FlchainError(
            f"{source}: field 'scoring.evidence_needed': expected 1..evidence_window ({sc.evidence_window}), "
            f"got {sc.evidence_needed}"
        )
    if sc.evidence_long_window and not 1 <= sc.evidence_long_needed <= sc.evidence_long_window:
        raise FlchainError(
            f"{source}: field 'scoring.evidence_long_needed': expected 1..evidence_long_window "
            f"({sc.evidence_long_window}) or evidence_long_window = 0 (off), got {sc.evidence_long_needed}"
        )
    if sc.claim_cap < 0:
        raise FlchainError(f"{source}: field 'scoring.claim_cap': expected >= 0 (0: off), got {sc.claim_cap}")
    if sc.backdoor_history and not sc.backdoor_filter:
        raise FlchainError(
            f"{source}: field 'scoring.backdoor_history': expected false unless "
            "scoring.backdoor_filter = true (it is how the filter clusters)"
        )
    for name in ("clip_ratio", "step_ratio", "median_clip", "backdoor_noise"):
        if getattr(sc, name) < 0:
            raise FlchainError(
                f"{source}: field 'scoring.{name}': expected >= 0 (0: off), got {getattr(sc, name)}"
            )


def _validate_ledger(config: RunConfig, source: str) -> None:
    """The ledger mode (and what verified rounds need of the strategy) and node selection."""
    fed = config.federation
    if config.ledger.mode not in LEDGER_MODES:
        raise FlchainError(
            f"{source}: field 'ledger.mode': expected {', '.join(LEDGER_MODES)}, got {config.ledger.mode!r}"
        )
    if config.ledger.checkpoint_every < 1:
        raise FlchainError(
            f"{source}: field 'ledger.checkpoint_every': expected >= 1, got {config.ledger.checkpoint_every}"
        )
    if config.ledger.mode == "verified" and (
        fed.strategy not in VERIFIABLE_STRATEGIES or fed.aggregation != "plain"
    ):
        raise FlchainError(
            f"{source}: field 'ledger.mode': verified rounds re-derive FedAvg, so they need "
            f"federation.strategy {' or '.join(VERIFIABLE_STRATEGIES)} and federation.aggregation plain "
            f"(got {fed.strategy}, {fed.aggregation})"
        )
    if config.selection.mode not in ("uniform", "reputation"):
        raise FlchainError(
            f"{source}: field 'selection.mode': expected uniform or reputation, got {config.selection.mode!r}"
        )
