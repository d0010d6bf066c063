"""Every dot product among a round's updates (and the server's root update g0, and their coordinate-wise
median) in one blocked pass over the parameters: the Gram matrix of the flattened deltas.

Scores, outlier checks, trust weights, the evidence of harm, the influence bounds and the backdoor filter
only need norms and cosines. Computing them from whole float64
copies of every delta (`vectors.flat_delta`) costs 8 bytes per parameter per update in fresh memory: at 100M
parameters and 3 updates that is 2.4 GB plus the median's stack, and allocating it dominated the
coordinator's round (bench/model_size.py: 44.6 s of scoring). Here the deltas are formed one block of
`BLOCK` parameters at a time into one reused buffer, and one matrix product per block accumulates all
the dot products, so memory stays at a few MB whatever the model's size. A round's later steps read the
same matrix after dropping or clipping updates (`DeltaGram.rows`: a dropped update is a row no longer
read, a clipped one's dot products scale by its factor), so the parameters are read once per round.

Results equal the whole-vector formulas up to floating-point summation order (the blocks are summed in a
fixed order, so a validator re-deriving a round with this code gets the same numbers bit for bit).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import numpy as np

from fl_chain.defence.vectors import coordinate_median

Arrays = Mapping[str, np.ndarray]
BLOCK = 1 << 18  # parameters per block: 2 MB of float64 per row, warm in cache-friendly memory
ROOT = "\x00root"  # row labels that cannot collide with a participant's name
MEDIAN = "\x00median"


@dataclass(frozen=True)
class DeltaGram:
    """Dot products of the flattened deltas (update - previous), g0 and the median delta, by label."""

    labels: tuple[str, ...]
    matrix: np.ndarray
    _indices: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_indices", {label: i for i, label in enumerate(self.labels)})

    def _index(self, label: str) -> int:
        if label not in self._indices:
            raise ValueError(f"{label!r} is not a row of this Gram matrix")
        return self._indices[label]

    @property
    def members(self) -> tuple[str, ...]:
        """The participants' rows (every label but ROOT and MEDIAN), in order."""
        return tuple(label for label in self.labels if label not in (ROOT, MEDIAN))

    def rows(self, names: Iterable[str], scale: Mapping[str, float] | None = None) -> DeltaGram:
        """The Gram matrix of the participants `names` (in that order) and the ROOT and MEDIAN rows as they
        are, each participant's delta multiplied by `scale.get(name, 1)`: a dropped update is a row no
        longer read, and a clipped update's delta is its factor x the delta as sent (derivation.clip_update,
        to the cast back to the model's dtype), so its dot products scale by the factor. No parameter is
        read again."""
        names, scale = list(names), scale or {}
        labels = names + [label for label in (ROOT, MEDIAN) if label in self._indices]
        index = [self._index(label) for label in labels]
        factors = np.array(
            [float(scale.get(name, 1.0)) for name in names] + [1.0] * (len(labels) - len(names))
        )
        matrix = self.matrix[np.ix_(index, index)] * np.outer(factors, factors)
        return DeltaGram(tuple(labels), matrix)

    def cosines(self, labels: Sequence[str]) -> np.ndarray:
        """The matrix of `cosine(a, b)` for a, b in `labels` (the same arithmetic, all at once)."""
        index = [self._index(label) for label in labels]
        dots = self.matrix[np.ix_(index, index)]
        norms = np.sqrt(np.maximum(np.diag(dots), 0.0))
        nonzero = norms > 0
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return np.where(np.outer(nonzero, nonzero), dots / np.outer(norms, norms), 0.0)

    def dot(self, a: str, b: str) -> float:
        """a . b"""
        return float(self.matrix[self._index(a), self._index(b)])

    def norm(self, label: str) -> float:
        """The L2 norm of one row."""
        return float(np.sqrt(max(self.dot(label, label), 0.0)))

    def cosine(self, a: str, b: str) -> float:
        """Cosine similarity of two rows (0 when either is zero, as vectors.cosine)."""
        na, nb = self.norm(a), self.norm(b)
        return self.dot(a, b) / (na * nb) if na > 0 and nb > 0 else 0.0


def _flat(array: np.ndarray) -> np.ndarray:
    """The array in C order as one vector (a view when it already is contiguous)."""
    return np.asarray(array).reshape(-1)


def _blocks(previous: Arrays) -> Iterator[tuple[str, int, int, int]]:
    """(array name, start and end within the array, offset of the array in the flat vector) per block,
    in the array order of `previous` (the order every flattening in defence/ uses)."""
    offset = 0
    for name, ref in previous.items():
        size = int(np.size(ref))
        for lo in range(0, size, BLOCK):
            yield name, lo, min(lo + BLOCK, size), offset
        offset += size


def _one_blas_thread() -> AbstractContextManager:
    """One BLAS thread while the blocks' products run: each is a product of a few rows (a few MFLOP), and
    on a loaded 2-core machine handing each to a second thread cost more than the arithmetic (one row
    of 100M parameters: 0.2-0.6 s with OpenBLAS's threads, 0.11 s with one; the products' bits are the
    same either way, measured for 1-17 rows). threadpoolctl comes with scikit-learn (the `demo` extra);
    without it, BLAS keeps its own threads."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # a base install without scikit-learn
        return nullcontext()
    return threadpool_limits(1, user_api="blas")


def delta_gram(
    updates: Mapping[str, Arrays],
    previous: Arrays,
    root: np.ndarray | None = None,
    median: bool = False,
) -> DeltaGram:
    """The Gram matrix of the updates' deltas from `previous` (rows labelled by participant), plus `ROOT`
    (the flat root update g0) if given and `MEDIAN` (the coordinate-wise median delta, as
    vectors.coordinate_median) if asked, computed block by block."""
    who = list(updates)
    labels = tuple(who) + ((ROOT,) if root is not None else ()) + ((MEDIAN,) if median else ())
    gram = np.zeros((len(labels), len(labels)))
    sizes = [int(np.size(v)) for v in previous.values()]
    if root is not None and root.size != sum(sizes):
        raise ValueError(f"root update has {root.size} parameters, the model {sum(sizes)}")
    buffer = np.empty((len(labels), min(BLOCK, max(sizes, default=1))))
    flats = {name: _flat(ref) for name, ref in previous.items()}
    update_flats: dict[str, list[np.ndarray]] = {}
    with _one_blas_thread():
        for name, lo, hi, offset in _blocks(previous):
            if name not in update_flats:
                update_flats = {name: [_flat(updates[w][name]) for w in who]}  # one array's views at a time
            block = buffer[:, : hi - lo]
            for row, flat in enumerate(update_flats[name]):
                np.subtract(flat[lo:hi], flats[name][lo:hi], out=block[row], dtype=np.float64)
            row = len(who)
            if root is not None:
                block[row] = root[offset + lo : offset + hi]
                row += 1
            if median:
                block[row] = coordinate_median(list(block[: len(who)])) if who else 0.0
            gram += block @ block.T
    return DeltaGram(labels, gram)


def vector_gram(deltas: Mapping[str, np.ndarray], root: np.ndarray | None = None) -> DeltaGram:
    """The DeltaGram of whole flat vectors already formed (who -> delta, and `root` as ROOT): for
    replays of stored vectors (bench/) and small constructed cases, where memory is no concern."""
    labels = tuple(deltas) + ((ROOT,) if root is not None else ())
    vectors = [np.asarray(v, np.float64).reshape(-1) for v in deltas.values()]
    if root is not None:
        vectors.append(np.asarray(root, np.float64).reshape(-1))
    if not vectors:
        return DeltaGram(labels, np.zeros((0, 0)))
    stacked = np.stack(vectors)
    return DeltaGram(labels, stacked @ stacked.T)


def known_gram(grams: Iterable[DeltaGram], labels: tuple[str, ...]) -> DeltaGram | None:
    """The Gram matrix among `grams` with exactly these `labels` (rows, in this order), or None. A Gram
    with another row beside them is not taken: the matrix product of another shape may sum in another
    order, and a validator re-deriving scores must get the same numbers bit for bit."""
    return next((g for g in grams if g.labels == labels), None)


def median_cosines(
    updates: Mapping[str, Arrays], previous: Arrays, grams: Iterable[DeltaGram] = ()
) -> dict[str, float]:
    """Each update's cosine with the coordinate-wise median update (0 for a null update). `grams`: Gram
    matrices already computed of these updates as they stand (the outlier check's); one of exactly
    these participants and MEDIAN is read instead of the parameters (delta_gram's same call)."""
    gram = known_gram(grams, (*updates, MEDIAN)) or delta_gram(updates, previous, median=True)
    return {who: gram.cosine(who, MEDIAN) for who in updates}


def root_gram(
    updates: Mapping[str, Arrays], previous: Arrays, root: np.ndarray, grams: Iterable[DeltaGram] = ()
) -> DeltaGram:
    """A Gram matrix of the updates' deltas and the server's root update g0 (its row ROOT): one of `grams`
    that holds exactly these rows (the round's, coordinator/anchored_steps.round_gram), else a new pass."""
    return known_gram(grams, (*updates, ROOT)) or delta_gram(updates, previous, root=root)


def squared_distance(update: Arrays, reference: Arrays, names: Sequence[str]) -> float | str:
    """sum((update - reference)**2) over the named arrays, in float64, block by block; or the name of the
    first array that holds NaN or Inf (checked in the same pass)."""
    squared = 0.0
    size = max((int(np.size(reference[n])) for n in names), default=1)
    buffer = np.empty(min(BLOCK, max(size, 1)))
    for name in names:
        value, ref = _flat(update[name]), _flat(reference[name])
        for lo in range(0, value.size, BLOCK):
            hi = min(lo + BLOCK, value.size)
            if not np.isfinite(value[lo:hi]).all():
                return name
            part = buffer[: hi - lo]
            np.subtract(value[lo:hi], ref[lo:hi], out=part, dtype=np.float64)
            squared += float(part @ part)
    return squared
