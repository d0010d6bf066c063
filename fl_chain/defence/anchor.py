"""The server's anchor: each round the coordinator trains the current global model on a small clean
root set it controls (FLTrust, Cao et al., NDSS 2021), with the same local settings as the nodes. The
root update g0 is the yardstick for contribution (cosine with g0), for evidence of harm (defence/evidence.py)
and for trust-weighted aggregation (defence/trust.py). For the embedded digits task the root set is the
server's validation split; a user task's `server_data` validation split plays the same role.

Sizes need a yardstick scaled to a node's work: FLTrust has server and clients run the same number of
local iterations, while here nodes train epochs over data sets of any size, so an honest node with 3.5x
the root set's data sends an update several times |g0| (examples/cnn-digits). With the
root set's size known (`root_examples`), the size reference is |g0| x (a median node's claimed examples /
root examples): local steps, and to first order the update's size, grow with the examples trained on.
Without it, no size rule applies (boosting and free-riding evidence, influence bounds); directions do.
g0 itself is always the root training's own update: its direction is the yardstick for contribution
and for evidence of harm.

Late in a run that direction stops being evidence: once the model has converged, g0 is mostly the root
set's own noise and honest updates point against it as often as not (bench/late_calibration.py: over 30
honest runs of 30 rounds, 5 or 10 digits nodes, the evidence rules with a fixed line penalized 60 honest
nodes in 26 runs, 22 of the first penalties in round 9 or later). How much g0's direction is worth is
measured each round: with `halves`, the root trainer is also run on each half of the root set (config
ROOT_HALF = 0 or 1), and the cosine between the two updates (`agreement`) says how reproducible g0 is.
The suspect line moves down with it (`direction_line`): min_cosine - slack x (1 - agreement), so an
update must point further against a g0 that does not reproduce before it is suspect. A trainer without
halves gives no agreement figure and the line stays where the policy puts it (a Flower App's run also
has `improves`, on its evaluate_fn).

A node holding (mostly) one label points against a balanced g0 in every round, by its data alone: on
Dir 0.1 at 1 local epoch one such honest node sat at cosine -0.12 to -0.33 with g0 for 18 rounds and was
penalized. With the root set's `labels` known (a classification task's server data), an update below the
line is also compared with the root updates trained on each label's examples alone (`closest_labels`,
config ROOT_CLASS): that node's pointed with its label's at 0.88-0.98, sign-flippers' at 0.28 at most. An
update that points with one label's root update may then point against g0 as far as that label's root
update does (in rounds 18-30, -0.29 to -0.31 where the node was at -0.31 to -0.33), less a slack, and no
further: an attacker who aims at the excuse gains no more room than an honest node of that label has.
Those root trainings run only in a round where some update is below the line."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from fl_chain.defence.gram import ROOT, delta_gram
from fl_chain.defence.vectors import cosine, flat_delta, previous_vector, unflatten
from fl_chain.protocol.model_bytes import hash_arrays

Arrays = Mapping[str, np.ndarray]
RootTrainer = Callable[[Arrays, Mapping[str, Any]], dict[str, np.ndarray]]
HeldOutLoss = Callable[[Arrays], float | None]  # the server's loss on data it does not train on
CLAIM_CAP = 2.0  # a claim counts for a size yardstick up to this x the round's median (as in aggregation)
ROOT_HALF = "root-half"  # in the root trainer's config: train on this half (0 or 1) of the root set only
ROOT_CLASS = "root-class"  # in the root trainer's config: train on the root set's examples of this label only
LABEL_ROOT = "\x00one-label root"  # its row in closest_labels' Gram: cannot collide with a participant's name


class RootAnchor:
    """g0 for the current global model, computed once per model and training config (the coordinator,
    its scoring and a trust-weighted aggregator may all ask in the same round)."""

    def __init__(
        self,
        train_on_root: RootTrainer,
        root_examples: int | None = None,
        halves: bool = False,
        labels: Sequence[int] = (),
    ) -> None:
        """`halves`: the trainer honours ROOT_HALF in its config (then `agreement` is measured); `labels`:
        the root set's labels, for a trainer that honours ROOT_CLASS (then `closest_labels` measures)."""
        self.train_on_root = train_on_root
        self.root_examples = root_examples
        self.halves = halves
        self.labels = tuple(labels)
        self.agreement: float | None = None  # of the last g0 computed (None: not measured)
        self._key: bytes | None = None
        self._delta: np.ndarray | None = None
        self._config: Mapping[str, Any] | None = None  # the last g0's training config

    def size_references(
        self,
        root: np.ndarray,
        claims: Mapping[str, float],
        cap: float = CLAIM_CAP,
        root_norm: float | None = None,
    ) -> dict[str, float] | None:
        """Each node's size yardstick for the evidence rules, or None (no size rules): the median node's
        (`size_reference`) x sqrt(the node's claim / the median claim), the claim capped at `cap` x the
        median so a lie about it buys at most sqrt(cap). An update's size grows with the examples
        trained on, but less than linearly once steps saturate: against the median node's yardstick
        alone the largest honest Dir 0.1 nodes measured up to 10x, against their own claim's linear
        share the smallest up to 17x; with the square root at most 7.2x, and in 45 calibration runs no
        honest node went over the policy's 6x twice in 3 rounds (bench/evidence_calibration.py,
        docs/evidence-calibration.md). `root_norm`: |root|, if the caller has it already."""
        median = float(np.median(list(claims.values()))) if claims else 0.0
        size = self.size_reference(root, median, root_norm)
        if size is None:
            return None
        return {who: size * (min(c, cap * median) / median) ** 0.5 for who, c in claims.items()}

    def size_reference(
        self, root: np.ndarray, node_examples: float | None, root_norm: float | None = None
    ) -> float | None:
        """The update size an honest median node's update is measured against, or None (no size rules).
        `root_norm`: |root|, if the caller has it already (a read of every parameter at 100M)."""
        if not self.root_examples or not node_examples:
            return None
        norm = float(np.linalg.norm(root)) if root_norm is None else root_norm
        return norm * node_examples / self.root_examples

    @staticmethod
    def improves(
        previous: Arrays, root: np.ndarray, held_out_loss: HeldOutLoss | None, margin: float = 0.02
    ) -> bool:
        """Whether g0 still improves the server's held-out loss (data it does not train on) by more
        than `margin` (relative): only then is its direction evidence. Measured on cnn-digits (3 IID
        nodes, 10 local epochs, seeds 0-2): once g0 stops improving the test loss (round 3-4), honest
        updates' cosines with g0 drift below zero (-0.1 to -0.25) and stay there; in round 3 of one seed
        g0 improved it by 0.0 % while an honest node was at -0.12. True without a held-out loss."""
        if held_out_loss is None:
            return True
        before = held_out_loss(previous)
        after = held_out_loss(unflatten(previous_vector(previous) + root, previous))
        return before is None or after is None or after < before * (1.0 - margin)

    def delta(self, previous: Arrays, config: Mapping[str, Any]) -> np.ndarray:
        """Flattened root update g0 = trained - previous."""
        key = hash_arrays(previous) + repr(sorted(config.items())).encode()
        if key != self._key:
            trained = self.train_on_root(previous, config)
            self._key, self._delta = key, flat_delta(trained, previous)
            self.agreement = self._halves_agreement(previous, config) if self.halves else None
            self._config = dict(config)
        return self._delta

    def closest_labels(
        self, updates: Mapping[str, Arrays], previous: Arrays
    ) -> dict[str, tuple[float, float]]:
        """How much each update (the arrays a node sent, trained from `previous`, the model of the last
        g0) looks like an honest node's that holds (mostly) one label: who -> (its highest cosine with a
        root update trained on the root set's examples of one label alone, that label's root update's own
        cosine with g0). Empty without labels or before any g0. Each call trains the root set once per
        label, from `previous` with g0's config (together one more pass over the root set), and reads
        every cosine from one blocked Gram pass per label (defence/gram.py), so at most one more model
        is held at a time whatever the labels: the caller asks only in a round where some update is
        below the line, and only about those."""
        if not self.labels or self._config is None or self._delta is None or not updates:
            return {}
        config = self._config
        closest = dict.fromkeys(updates, (-2.0, 0.0))
        for label in self.labels:
            trained = self.train_on_root(previous, {**config, ROOT_CLASS: label})
            gram = delta_gram({**updates, LABEL_ROOT: trained}, previous, self._delta)
            with_g0 = gram.cosine(LABEL_ROOT, ROOT)
            for who in updates:
                closest[who] = max(closest[who], (gram.cosine(who, LABEL_ROOT), with_g0))
        return closest

    def _halves_agreement(self, previous: Arrays, config: Mapping[str, Any]) -> float:
        """Cosine between the root updates trained on each half of the root set."""
        a, b = (flat_delta(self.train_on_root(previous, {**config, ROOT_HALF: h}), previous) for h in (0, 1))
        return cosine(a, b)

    def direction_line(self, min_cosine: float, slack: float) -> float:
        """The cosine below which an update is suspect against the last g0: `min_cosine` lowered by
        `slack` x (1 - the halves' agreement, floored at 0); `min_cosine` when not measured."""
        if self.agreement is None:
            return min_cosine
        return min_cosine - slack * (1.0 - max(self.agreement, 0.0))
