"""LedgerSession: what a Flower App's ServerApp needs to put its federation on the ledger (the chain, the
coordinator's key, the model store, where run events go and the flchain policies), without flchain's
TaskSpec. `ChainStrategy.with_ledger(FedAvg(...), LedgerSession.from_context(context))` in anyone's
ServerApp; flchain's own ServerApp opens or resumes its task through one too.

Where the session comes from, in order: the RunSpec file `flchain server --app` hands the app (run config
`flchain-run`, or the FLCHAIN_RUN environment variable the SuperLink passes on); else the run config key
`flchain-deployment` (plus optional `flchain-store`, `flchain-rpc`, `flchain-coordinator-key`) for a
plain `flwr run` against any SuperLink."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from eth_account.signers.local import LocalAccount
from flwr.app import Context

from fl_chain.chain import ledger
from fl_chain.chain.client import ChainClient, open_chain
from fl_chain.chain.identity import resolve_account
from fl_chain.config import RunConfig
from fl_chain.coordinator.committer import Commit, RoundCommitter
from fl_chain.coordinator.key_handoff import handed_password
from fl_chain.coordinator.policies import round_policy, rules_of
from fl_chain.errors import FlchainError
from fl_chain.protocol.task_identity import identity_hash
from fl_chain.protocol.task_rules import TaskRules
from fl_chain.store import BlobStore, ModelStore, is_s3, store_from_config
from fl_chain.wire.report import RunEvents
from fl_chain.wire.run_spec import RUN_CONFIG_KEY, RunSpec

RUN_ENV = "FLCHAIN_RUN"  # path of a RunSpec file, set by `flchain server --app` for its ServerApp


@dataclass
class LedgerSession:
    """An open connection to one flchain deployment, acting as its coordinator."""

    client: ChainClient
    coordinator: LocalAccount
    store: BlobStore
    events: RunEvents = field(default_factory=RunEvents)
    config: RunConfig = field(default_factory=RunConfig)  # scoring, evidence and finality settings

    @classmethod
    def from_deployment(
        cls,
        deployment: str | Path,
        store_dir: str | Path,
        rpc: str | None = None,
        coordinator_key: str | Path | None = None,
        events: str | Path | None = None,
        config: RunConfig | None = None,
    ) -> LedgerSession:
        """A session on a deployment file; models go to `store_dir`, run events (JSON lines) to
        `events`. Without `coordinator_key` a local chain's development key acts as coordinator."""
        client = open_chain(Path(deployment), rpc)
        key = Path(coordinator_key) if coordinator_key else None
        password = handed_password() if key is not None else None  # from `flchain server --app`, if any
        coordinator = resolve_account(client.deployment.dev_keys, "coordinator", key, password)
        run_events = RunEvents(Path(events) if events else None)
        client.on_outage(run_events.notice)
        config = config or RunConfig()
        local = not is_s3(store_dir)
        store = ModelStore(Path(store_dir)) if local else store_from_config(config.store, store_dir)
        return cls(client, coordinator, store, run_events, config)

    @classmethod
    def from_spec(cls, spec: RunSpec) -> LedgerSession:
        """The session `flchain server` described in a RunSpec."""
        config = spec.config
        deployment = (
            Path(config.chain.deployment) if config.chain.deployment else spec.home / "deployment.json"
        )
        return cls.from_deployment(
            deployment,
            config.store.dir or spec.home / "store",
            config.chain.rpc or None,
            config.chain.coordinator_key or None,
            spec.events,
            config,
        )

    @classmethod
    def from_context(cls, context: Context) -> LedgerSession:
        """The session for this run (see the module docstring), or a one-line error saying what to set."""
        run_config: Mapping = context.run_config
        run_file = run_config.get(RUN_CONFIG_KEY) or os.environ.get(RUN_ENV)
        if run_file:
            return cls.from_spec(RunSpec.read(Path(str(run_file))))
        deployment = run_config.get("flchain-deployment")
        if not deployment:
            raise FlchainError(
                "no flchain ledger for this run: start it with `flchain server --app PATH`, or set the run "
                "config 'flchain-deployment' (and 'flchain-store') in the app's pyproject.toml"
            )
        store = run_config.get("flchain-store") or Path(str(deployment)).parent / "store"
        return cls.from_deployment(
            str(deployment),
            str(store),
            _optional(run_config, "flchain-rpc"),
            _optional(run_config, "flchain-coordinator-key"),
        )

    def open_task(
        self, initial: Mapping[str, np.ndarray], app: str = "", rules: TaskRules | None = None
    ) -> tuple[RoundCommitter, Commit]:
        """Create the task on-chain (its configHash: the model's architecture and `app`; its rulesHash:
        `rules`, the effective policy's, by default the config's) and commit the initial model as round 0."""
        config_hash = identity_hash(initial, app)
        committer = RoundCommitter.new_task(
            self.client,
            self.coordinator,
            self.store,
            config_hash,
            rules=rules if rules is not None else rules_of(round_policy(self.config)),
            **self._committer_settings(),
        )
        return committer, committer.commit(0, initial)

    def resume_task(self, task: int, parent_hash: bytes) -> RoundCommitter:
        """A committer continuing `task` from its newest round, whose model hash is `parent_hash`."""
        committer = RoundCommitter(
            self.client, self.coordinator, task, self.store, parent_hash, **self._committer_settings()
        )
        committer.parent_round = ledger.round_count(self.client, task) - 1
        return committer

    def _committer_settings(self) -> dict[str, Any]:
        """The config's finality wait, ledger mode and checkpoint interval, as RoundCommitter takes them."""
        return {
            "wait_finalized": self.config.federation.wait_finalized,
            "mode": self.config.ledger.mode,
            "checkpoint_every": self.config.ledger.checkpoint_every,
        }


def _optional(run_config: Mapping, key: str) -> str | None:
    """A run-config string, None when absent or empty."""
    return str(run_config.get(key) or "") or None
