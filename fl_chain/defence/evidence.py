"""Evidence of harm, anchored in the server's root update g0 (defence/anchor.py), accumulated over rounds.

A contribution score only says how much a reply helped; a penalty needs evidence. Per round, an
update is *suspect* when it points against the server's descent direction (cos(delta, g0) below
`min_cosine`), when its size is far outside the root update's (norm ratio above `max_norm_ratio`:
boosting; below `min_norm_ratio`: a free-rider returning the model it got), or when it is a copy of
another node's update (colluding Sybils; honest nodes never send identical updates). Deviation from
the other replies is never evidence: with non-IID data honest updates differ, and with a majority of
attackers the other replies are the attackers'.

A node is penalized for a suspect update only when at least `needed` of its last `window`
participations were suspect (one bad round never is); a copy is penalized at once (two honest nodes
never send the same update). Pure: verdicts in, penalties out; the coordinator keeps the book for the
run. An update is measured by its norm, its cosine with g0 and its cosines with the other updates only,
all read from the round's Gram matrix (defence/gram.py: no model-sized vector per update)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from fl_chain.defence.gram import ROOT, DeltaGram

Reference = float | Mapping[str, float] | None  # one size yardstick, each node's own, or none
# who -> (its update's highest cosine with a root update trained on one label alone, that root update's cosine
# with g0), or None: not measured (RootAnchor.closest_labels)
LabelCosine = Callable[[str], tuple[float, float] | None]


@dataclass(frozen=True)
class EvidencePolicy:
    """When an update is suspect, and how much suspicion makes a penalty."""

    # single honest updates dip lower (docs/anchor-calibration.md): hence `needed`. -0.05 penalized 11 honest
    # nodes of 45 replayed 30-round runs, all at 1 local epoch on Dir 0.1 (single-class nodes point against
    # a balanced g0 while the model is barely trained); -0.2 with per-node size yardsticks penalized none,
    # and still caught a sign-flipping median node in 37 of them by round 5
    # (bench/evidence_calibration.py, docs/evidence-calibration.md)
    min_cosine: float = -0.2
    # in a Flower App's ChainStrategy, directions count only in rounds where g0 improves the 'loss' of
    # the app's evaluate_fn by more than this (relative; RootAnchor.improves, ChainStrategy)
    min_root_improvement: float = 0.02
    # the suspect line moves down by this x (1 - the cosine between the root updates of the root set's two
    # halves): a g0 that does not reproduce is weaker evidence (RootAnchor.direction_line;
    # bench/late_calibration.py, docs/late-calibration.md)
    agreement_slack: float = 0.3
    # an update below the line is no evidence when it points with the root update trained on the root set's
    # examples of one label alone at least `label_cosine` (what an honest node holding mostly that label
    # sends) and against g0 no further than that label's root update does, less `label_slack`. Measured in
    # a 30-round digits run (Dir 0.1, 1 epoch): a single-label honest node at cosine -0.12..-0.33 with g0 had
    # 0.88-0.98 with its label's root update, which was itself at -0.16..-0.31 with g0; every honest node had
    # at least 0.34 with some label's; sign-flippers 0.28 at most on Dir 0.1, 0.13 on IID
    # (RootAnchor.closest_labels; docs/attacks.md)
    label_cosine: float = 0.5
    label_slack: float = 0.2
    max_norm_ratio: float = 6.0  # honest updates measured at 0.15-4.65 x (docs/anchor-calibration.md)
    min_norm_ratio: float = 0.01
    duplicate_cosine: float = 0.9999
    window: int = 3
    needed: int = 2
    # a longer memory for attackers that stay under `needed` of `window` (suspect every 3rd round): also
    # penalized when `long_needed` of the last `long_window` participations were suspect (0: off). 3 of 12
    # caught a periodic sign-flipper in 28 of 60 replayed 30-round cells (2 of 3 alone: 1) and penalized no
    # honest node more (bench/evidence_memory.py, docs/attacks.md)
    long_window: int = 12
    long_needed: int = 3


def suspicions(
    gram: DeltaGram,
    policy: EvidencePolicy,
    reference: Reference = -1.0,
    directions: bool = True,
    line: float | None = None,
    label: LabelCosine | None = None,
) -> tuple[dict[str, str], dict[str, str]]:
    """(suspect this round: who -> why, copies: who -> why) for one round's accepted updates: the
    participants' rows of `gram` (their deltas; its ROOT row is g0, defence/gram.py). Sizes are
    measured against `reference`: one yardstick for every update (a negative one: |g0|) or each node's
    own (who -> yardstick, RootAnchor.size_references); with None (no size yardstick: defence/anchor.py) only
    directions and copies count, and a zero update still marks a free-rider. With `directions` False (g0
    no longer improves the server's held-out loss: its direction is the root set's noise, and honest
    updates point against it as often as not) a direction is no evidence this round. `line`: the cosine
    below which a direction is suspect this round (default policy.min_cosine; RootAnchor.direction_line).
    `label`: who -> how close its update is to a one-label root update (RootAnchor.closest_labels), if the
    root set has labels: an update that points with one label's, and against g0 no further than that
    label's does, is not suspect by its direction."""
    line = policy.min_cosine if line is None else line
    yardsticks = _yardsticks(reference, gram)
    suspect: dict[str, str] = {}
    for who in gram.members:
        norm = gram.norm(who)
        size = None if yardsticks is None else yardsticks[who]
        ratio = norm / size if size else 1.0
        if size is None and norm == 0:
            suspect[who] = "update is zero (returns the model it got)"
        elif size is not None and ratio < policy.min_norm_ratio:
            suspect[who] = f"update {ratio:.3f} x an honest update's expected size (returns the model it got)"
        elif size is not None and ratio > policy.max_norm_ratio:
            suspect[who] = f"update {ratio:.1f} x an honest update's expected size (boosted)"
        elif directions and (against := _points_against(who, gram.cosine(who, ROOT), line, policy, label)):
            suspect[who] = against
    return suspect, copies(gram, policy.duplicate_cosine)


def _points_against(
    who: str, cos: float, line: float, policy: EvidencePolicy, label: LabelCosine | None
) -> str | None:
    """Why `who`'s direction is suspect (its cosine `cos` with g0 is below `line`), or None: above the line,
    or pointing with one label's root update at least `policy.label_cosine` and against g0 no further
    than that root update does, less `policy.label_slack` (an honest node holding that label). `label`
    measures it, asked only for updates below the line since it trains the root set per label."""
    if cos >= line:
        return None
    closest = label(who) if label is not None else None
    if closest is not None and closest[0] >= policy.label_cosine and cos >= closest[1] - policy.label_slack:
        return None
    return f"update points against the server's root update (cosine {cos:.2f})"


def _yardsticks(reference: Reference, gram: DeltaGram) -> dict | None:
    """Each update's size yardstick (None: no size rules this round)."""
    if reference is None:
        return None
    if isinstance(reference, Mapping):
        return {who: reference.get(who) for who in gram.members}
    size = gram.norm(ROOT) if reference < 0 else reference
    return dict.fromkeys(gram.members, size)


def copies(gram: DeltaGram, threshold: float) -> dict[str, str]:
    """Participants (rows of `gram`) whose non-zero update is (almost) identical to another participant's."""
    names = [w for w in sorted(gram.members) if gram.norm(w) > 0]
    found: dict[str, str] = {}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if gram.cosine(a, b) >= threshold:
                found.setdefault(a, f"update identical to {b}'s (collusion)")
                found.setdefault(b, f"update identical to {a}'s (collusion)")
    return found


@dataclass
class EvidenceBook:
    """Each node's recent verdicts in this run, and the penalties they add up to."""

    policy: EvidencePolicy = field(default_factory=EvidencePolicy)
    history: dict[str, deque] = field(default_factory=dict)

    def observe(
        self,
        gram: DeltaGram,
        reference: Reference = -1.0,
        directions: bool = True,
        line: float | None = None,
        label: LabelCosine | None = None,
    ) -> tuple[dict[str, str], dict[str, str]]:
        """Record one round's verdicts on the participants of `gram` (sizes against `reference`,
        directions only if `directions`, below `line`, excused by `label`, see `suspicions`); return
        (suspect this round: who -> why, penalized now: who -> the evidence)."""
        suspect, copied = suspicions(gram, self.policy, reference, directions, line, label)
        penalized: dict[str, str] = {}
        for who in gram.members:
            past = self.history.setdefault(
                who, deque(maxlen=max(self.policy.window, self.policy.long_window))
            )
            past.append(who in suspect or who in copied)
            if who in copied:
                penalized[who] = copied[who]
            elif who in suspect and self._adds_up(past):
                recent = list(past)[-self.policy.window :]
                seen = recent if sum(recent) >= self.policy.needed else list(past)
                penalized[who] = f"{suspect[who]}; {sum(seen)} of its last {len(seen)} updates suspect"
        return {**suspect, **copied}, penalized

    def _adds_up(self, past: deque) -> bool:
        """Whether a node's verdicts make a penalty: `needed` of the last `window`, or `long_needed` of
        the last `long_window` when that memory is on."""
        policy = self.policy
        if sum(list(past)[-policy.window :]) >= policy.needed:
            return True
        return policy.long_window > 0 and sum(past) >= policy.long_needed
