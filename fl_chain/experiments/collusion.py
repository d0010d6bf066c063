"""Coordinated attacks for experiments: colluding nodes that see every participant's update (the
standard, pessimistic threat model of the robust-aggregation literature). A Grid wrapper rewrites the
colluders' training replies before the coordinator receives them:

- ALIE, "a little is enough" (Baruch et al., NeurIPS 2019): mean - z * std of the round's updates,
  coordinate-wise, z chosen from the number of participants and colluders as in the paper, so the
  colluders sit just inside what median- and distance-based defences accept; all colluders send the
  same vector.
- IPM, inner-product manipulation (Xie et al., UAI 2020): -epsilon x the mean update, so the aggregate's
  inner product with the true descent direction turns negative.
- Min-Max and Min-Sum (Shejwalkar & Houmansadr, NDSS 2021; experiments/agr_tailored.py): the mean
  update pushed along a perturbation vector (`perturbation`: unit-vec, std or sign) as far as the
  benign updates' own spread allows. `jitter` > 0: each colluder adds its own Gaussian noise of about
  `jitter` x the vector's norm (seeded by its `seed`), so the colluders no longer send copies (the copy
  rule of defence/evidence.py then sees no collusion).
Used by the demo harness (`run_demo(attacks=...)`) only; nothing here runs in a real federation."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np
from flwr.app import Message

from fl_chain.coordinator.gate import DelegatingGrid
from fl_chain.defence.vectors import flat_delta, previous_vector, unflatten
from fl_chain.experiments.agr_tailored import min_max, min_sum
from fl_chain.wire.records import AUTH_RECORD, record_to_arrays, reply_parts, with_update


def alie_z(participants: int, colluders: int) -> float:
    """Baruch et al.'s z: s = floor(n/2 + 1) - m nodes must be 'outvoted', z = Phi^-1((n - s) / n)."""
    s = participants // 2 + 1 - colluders
    p = min(max((participants - s) / participants, 0.5), 0.99)
    return NormalDist().inv_cdf(p)


def colluding_deltas(
    deltas: Mapping[int, np.ndarray], colluders: Mapping[int, Mapping[str, object]]
) -> dict[int, np.ndarray]:
    """What each colluder sends instead of its own update, from every participant's update."""
    stacked = np.stack(list(deltas.values()))
    mean, std = stacked.mean(axis=0), stacked.std(axis=0)
    z = alie_z(len(deltas), len(colluders))
    out = {}
    tailored = {"min-max": min_max, "min-sum": min_sum}
    for i, attack in colluders.items():
        kind = attack.get("kind")
        if kind == "alie":
            out[i] = mean - float(attack.get("z", z)) * std
        elif kind in tailored:  # the colluders' own updates are benign too: they trained honestly
            out[i] = tailored[kind](stacked, str(attack.get("perturbation", "unit-vec")))
        else:  # ipm
            out[i] = -float(attack.get("epsilon", 0.5)) * mean
        out[i] = jittered(out[i], float(attack.get("jitter", 0.0)), int(attack.get("seed", i)))
    return out


def jittered(vector: np.ndarray, jitter: float, seed: int) -> np.ndarray:
    """`vector` plus Gaussian noise whose norm is about `jitter` x its norm (unchanged for 0)."""
    if jitter <= 0:
        return vector
    scale = jitter * float(np.linalg.norm(vector)) / np.sqrt(vector.size)
    return vector + np.random.default_rng(seed).normal(0.0, scale, vector.shape)


@dataclass
class _PushedRound:
    """Training messages pushed together and the replies that arrived for them so far."""

    messages: list[Message]
    ids: set[str]
    replies: list[Message] = field(default_factory=list)


class CollusionGrid(DelegatingGrid):
    """Passes messages through; rewrites the training replies of colluding addresses (see above), both
    when a round is sent at once (send_and_receive) and when it is pushed and pulled piecemeal (as
    ChainStrategy's DeadlineGrid does): then the colluders' replies are held back until every reply of
    their round has arrived, since they are computed from all of them."""

    def __init__(self, grid, colluders: Mapping[str, Mapping[str, object]]) -> None:
        super().__init__(grid)
        self.colluders = {a.lower(): attack for a, attack in colluders.items()}
        self._address: dict[int, str] = {}  # node id -> address, learned from the join answers
        self._rounds: dict[str, _PushedRound] = {}  # pushed training message id -> its round

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        """Deliver, then rewrite the colluders' training replies."""
        messages = list(messages)
        replies = list(self._grid.send_and_receive(messages, timeout=timeout))
        self._learn_addresses(replies)
        return self._rewrite(messages, replies)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Deliver; remember which training messages went out together."""
        messages = list(messages)
        ids = list(self._grid.push_messages(messages))
        if any("arrays" in m.content.array_records for m in messages):
            pushed = _PushedRound(messages, set(ids))
            self._rounds.update(dict.fromkeys(ids, pushed))
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """Replies as they arrive; a round's colluders' only once the whole round is in (rewritten)."""
        out: list[Message] = []
        held = {r.metadata.reply_to_message_id for p in self._rounds.values() for r in p.replies}
        # a reply already pulled and held back must not be asked for again (Flower answers that with
        # a "Message Unavailable" error reply)
        for reply in self._grid.pull_messages([i for i in message_ids if i not in held]):
            self._learn_addresses([reply])  # join answers arrive pulled too (the gate never blocks on them)
            pushed = self._rounds.get(reply.metadata.reply_to_message_id)
            if pushed is None:
                out.append(reply)
                continue
            pushed.replies.append(reply)
            if not self._is_colluder(reply):
                out.append(reply)  # an honest reply goes on at once (and is kept for the colluders')
            if len(pushed.replies) == len(pushed.ids):
                out += [r for r in self._rewrite(pushed.messages, pushed.replies) if self._is_colluder(r)]
                for message_id in pushed.ids:
                    self._rounds.pop(message_id, None)
        return out

    def _is_colluder(self, reply: Message) -> bool:
        return self._address.get(reply.metadata.src_node_id) in self.colluders

    def _learn_addresses(self, replies: list[Message]) -> None:
        for reply in replies:
            answer = None if reply.has_error() else reply.content.config_records.get(AUTH_RECORD)
            if answer is not None and "address" in answer:
                self._address[reply.metadata.src_node_id] = str(answer["address"]).lower()

    def _rewrite(self, messages: list[Message], replies: list[Message]) -> list[Message]:
        replies = list(replies)
        train = [m for m in messages if "arrays" in m.content.array_records]
        if not train:
            return replies
        previous = record_to_arrays(train[0].content.array_records["arrays"])
        usable = {
            i: flat_delta(record_to_arrays(reply_parts(r)[0]), previous)
            for i, r in enumerate(replies)
            if not r.has_error() and not isinstance(reply_parts(r), str)
        }
        colluders = {
            i: self.colluders[self._address[replies[i].metadata.src_node_id]]
            for i in usable
            if self._address.get(replies[i].metadata.src_node_id) in self.colluders
        }
        if not colluders:
            return replies
        base = previous_vector(previous)
        for i, delta in colluding_deltas(usable, colluders).items():
            replies[i] = with_update(replies[i], arrays=unflatten(base + delta, previous))
        return replies
