"""Who a training round may sample and what each of its messages carries beyond the wrapped strategy's:
the gate's admitted nodes, less those the deadline grid saw vanish, those the fold holds back and, with a
selector, those not drawn; each message sized to its node's declared capacity and, in a verified round,
ticketed (the coordinator's signature that it sampled the node)."""

from __future__ import annotations

from flwr.app import Message
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fl_chain.chain import registry
from fl_chain.coordinator.committer import RoundCommitter
from fl_chain.coordinator.deadline_grid import DeadlineGrid
from fl_chain.coordinator.gate import NodeGate
from fl_chain.coordinator.policies import ChainOptions
from fl_chain.defence.selection import local_steps
from fl_chain.errors import FlchainError
from fl_chain.protocol.fixedpoint import from_fixed
from fl_chain.protocol.update_signing import RoundContext, sign_ticket
from fl_chain.wire.records import CONFIG_LOCAL_STEPS, CONFIG_TICKET, with_config


class RoundSampling:
    """The sampling side of one ChainStrategy's training rounds (the pool Flower's sampling draws from,
    and the messages' decoration); the committer and deadline grid are the round's, passed per call."""

    def __init__(self, inner: Strategy, gate: NodeGate, options: ChainOptions) -> None:
        """`inner`: the wrapped strategy (its `min_available_nodes` is a floor); `options.policy` as the
        round runs it."""
        self.inner, self.gate, self.options = inner, gate, options
        self.policy = options.policy
        self.min_nodes = max(self.policy.min_nodes, int(getattr(inner, "min_available_nodes", 1)))
        self._gathered = False  # has this run's first round had its start_nodes
        self._capacity: dict[str, int] = {}  # declared samples/s, read once per node per run

    def allowed(self, grid: Grid, committer: RoundCommitter, deadline_grid: DeadlineGrid | None) -> set[int]:
        """The admitted nodes this round may sample: the gate waits for `min_nodes` of them that this
        round can use (not owing a reply, not held back), so Flower's sampling, which waits for its
        minimum without a deadline, is never handed fewer."""
        self.gate.start_round()
        self.gate.join_task = committer.task  # join answers name the task (protocol/join.py)
        needed = self.min_nodes if self._gathered else max(self.min_nodes, self.policy.start_nodes)

        def usable(nodes: set[int]) -> set[int]:
            return self._usable(nodes, committer, deadline_grid)

        allowed = self.gate.wait_for(grid, needed, self.policy.auth_timeout, usable)
        self._gathered = True
        if self.options.selector is not None:
            allowed = self._select(allowed, committer)
        flower_waits_for = int(getattr(self.inner, "min_available_nodes", 1))
        if len(allowed) < flower_waits_for:  # Flower's sampling would wait for them without a deadline
            raise FlchainError(
                f"the strategy needs {flower_waits_for} nodes but the selection left {len(allowed)}: "
                f"{sorted(self.gate.admitted[n] for n in allowed)}"
            )
        return allowed

    def _usable(
        self, nodes: set[int], committer: RoundCommitter, deadline_grid: DeadlineGrid | None
    ) -> set[int]:
        """The nodes of `nodes` this round may use: not owing a reply (and silent since), not held back."""
        if deadline_grid is not None:  # nodes that failed to reply and were not heard from since
            nodes = nodes - deadline_grid.absent_nodes()
        held = committer.held_back()  # commitment mode: suspended in the fold, not yet final
        if held:
            nodes = {n for n in nodes if self.gate.admitted[n].lower() not in held}
        return nodes

    def _select(self, allowed: set[int], committer: RoundCommitter) -> set[int]:
        """The selector's draw among `allowed`, by reputation and reliability."""
        by_address = {self.gate.admitted[n]: n for n in allowed}
        fixed = committer.reputations(by_address)
        chosen = self.options.selector.select(list(by_address), {a: from_fixed(v) for a, v in fixed.items()})
        return {by_address[a] for a in chosen}

    def decorated(self, message: Message, committer: RoundCommitter, context: RoundContext) -> Message:
        """The message sized to its node's capacity and, in a verified round, ticketed."""
        return self._ticketed(self._sized(message, committer), committer, context)

    def _sized(self, message: Message, committer: RoundCommitter) -> Message:
        """The message with the number of mini-batches that fit the node's declared capacity."""
        if self.policy.round_seconds <= 0:
            return message
        address = self.gate.admitted[message.metadata.dst_node_id]
        if address not in self._capacity:
            self._capacity[address] = registry.get_node(committer.client, address).capacity.samples_per_sec
        steps = local_steps(self._capacity[address], self.policy.round_seconds, self.policy.batch_size)
        return message if steps is None else with_config(message, {CONFIG_LOCAL_STEPS: steps})

    def _ticketed(self, message: Message, committer: RoundCommitter, context: RoundContext) -> Message:
        """In a verified round, the message with the coordinator's ticket sampling its node (what a node
        shows the ledger to complain that its update was left out)."""
        if not self.policy.verified:
            return message
        ticket = sign_ticket(
            committer.coordinator,
            context.chain_id,
            context.ledger,
            context.task,
            context.round,
            self.gate.admitted[message.metadata.dst_node_id],
        )
        return with_config(message, {CONFIG_TICKET: ticket})
