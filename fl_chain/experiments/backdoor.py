"""Backdoor attacks' data poisoning and their metric, for experiments: BadNets (Gu et al., 2017: a fixed
pixel pattern stamped on part of an attacker's training data, relabelled to one target class), DBA
(distributed backdoor, Xie et al., ICLR 2020: the same global trigger split into parts, each attacker
stamping only its own part, the test-time trigger being the whole pattern), Neurotoxin's mask (Zhang et
al., ICML 2022: the attacker keeps only the coordinates the benign updates change least, so later honest
rounds do not overwrite its backdoor), and the attack success rate (ASR): the share of test examples of
other classes that the model assigns to the target class once the trigger is stamped on them.

Features are flat vectors; the default trigger is for the embedded digits task (8x8 images, row-major,
values in [0, 1]): the right-most two columns of the bottom four rows, where digits carry almost no ink."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

DIGITS_TRIGGER = (38, 39, 46, 47, 54, 55, 62, 63)  # rows 4-7, columns 6-7 of an 8x8 image
TRIGGER_VALUE = 1.0  # the digits' features are scaled to [0, 1]: the trigger is full ink


def trigger_pixels(attack: Mapping[str, object]) -> tuple[int, ...]:
    """The pixels this attacker stamps: the whole trigger (BadNets), or for DBA its part `part` of
    `parts` (the trigger split into consecutive, equal pieces)."""
    pixels = tuple(int(p) for p in attack.get("pixels", DIGITS_TRIGGER))
    if attack.get("kind") != "dba":
        return pixels
    parts, part = int(attack.get("parts", 4)), int(attack.get("part", 0))
    return tuple(np.array_split(np.array(pixels), parts)[part % parts].tolist())


def stamp(x: np.ndarray, pixels: Sequence[int], value: float = TRIGGER_VALUE) -> np.ndarray:
    """A copy of `x` (n, features) with the trigger pixels set to `value`."""
    out = np.array(x, copy=True)
    out[:, list(pixels)] = value
    return out


def poison(
    x: np.ndarray, y: np.ndarray, pixels: Sequence[int], target: int, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """BadNets' poisoning: a `fraction` of the examples (drawn with `seed`) get the trigger and the
    label `target`; the rest stay clean, so the model keeps its main-task accuracy."""
    chosen = np.random.default_rng(seed).permutation(len(y))[: round(fraction * len(y))]
    x, y = np.array(x, copy=True), np.array(y, copy=True)
    x[chosen] = stamp(x[chosen], pixels)
    y[chosen] = target
    return x, y


def neurotoxin_mask(benign: np.ndarray, top: float) -> np.ndarray:
    """True for the coordinates an attacker may change: all but the `top` fraction with the largest
    benign change (Neurotoxin's estimate of the benign gradient is the last global model change)."""
    k = round(top * benign.size)
    mask = np.ones(benign.size, bool)
    if k > 0:
        mask[np.argsort(-np.abs(benign.ravel()), kind="stable")[:k]] = False
    return mask.reshape(benign.shape)


def attack_success_rate(
    predict: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    target: int,
    pixels: Sequence[int] = DIGITS_TRIGGER,
) -> float:
    """Share of the test examples whose true class is not `target` that `predict` labels `target`
    once the whole trigger is stamped on them (the floor is a clean model's rate, not 0)."""
    others = y != target
    if not others.any():
        return 0.0
    return float(np.mean(predict(stamp(x[others], pixels)) == target))


def stored_model_asr(uri: str, target: int) -> float:
    """The attack success rate of a digits model in a run's model store (a file:// URI, as a round report
    names it) on the server's test split: the share of non-target test digits the whole trigger turns
    into `target`."""
    from pathlib import Path
    from urllib.parse import urlparse

    import torch

    from fl_chain.protocol.model_bytes import arrays_from_bytes
    from fl_chain.tasks.digits import digits_task
    from fl_chain.tasks.training import set_arrays

    task = digits_task()
    model = task.build_model(0)
    set_arrays(model, arrays_from_bytes(Path(urlparse(uri).path).read_bytes()))
    x, y = task.server_data(0)[1]

    def predict(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(batch)).argmax(dim=1).numpy()

    return attack_success_rate(predict, x, y, target)
