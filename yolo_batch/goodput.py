"""Goodput: images/s that count. Which batch to train at next, from numbers alone (pure, stdlib only).

Policy ``goodput`` starts at the ``speed`` pick. At each epoch's end it compares the batches that fit by

    goodput(b) = predicted images/s at b  x  statistical efficiency of the effective batch ``b x accumulate``

(Pollux, OSDI '21). With the gradient-noise scale ``phi`` (images) and Ultralytics' nominal batch ``nbs``
as the reference, an effective batch ``B`` above ``nbs`` needs ``(phi + B) / (phi + nbs)`` times the images
to make the same progress, so its efficiency is ``(phi + nbs) / (phi + B)``; at or below ``nbs`` it is 1
(accumulation holds the effective batch near ``nbs``, and throughput alone decides).

A switch needs both:

- a settled noise scale: the epoch estimate exists for the last two epochs and moved by less than ``SETTLE``
  (20 %) between them (`settled`);
- a predicted gain above ``gain`` (``goodput_gain``, 5 % by default) over the current batch.

Batches considered: the multiples of 8 (every batch below 8) from ``min_batch`` to the fit bound, the fit
bound itself and the current batch. The fit bound is the largest batch the probe's memory law (after the
verified step) puts within the budget, capped by ``max_batch`` and the training set, and after an
out-of-memory step-down below the batch that ran out.
"""

from __future__ import annotations

from dataclasses import dataclass

SETTLE = 0.20  # the noise scale has settled when it moved less than this share between the last two epochs


def accumulate(batch: int, nbs: int) -> int:
    """Batches per optimizer step at ``batch``, as Ultralytics sets it: ``max(round(nbs / batch), 1)``.

    The one place of the formula (`effective`, `throughput.Pace`, the effect log's ``accumulate``).

    Examples:
        >>> accumulate(16, 64), accumulate(24, 64), accumulate(128, 64)
        (4, 3, 1)
    """
    return max(round(nbs / batch), 1)


def effective(batch: int, nbs: int) -> int:
    """Images per optimizer step at ``batch``: ``batch x round(nbs / batch)`` (at least ``batch``), as Ultralytics.

    Examples:
        >>> effective(16, 64), effective(24, 64), effective(48, 64), effective(128, 64)
        (64, 72, 48, 128)
    """
    return batch * accumulate(batch, nbs)


def efficiency(batch: int, nbs: int, noise: float) -> float:
    """Statistical efficiency of training at ``batch`` against an effective batch of ``nbs`` (1 at or below it).

    Examples:
        >>> efficiency(16, 64, 100.0), round(efficiency(128, 64, 100.0), 3), round(efficiency(128, 64, 1e6), 3)
        (1.0, 0.719, 1.0)
    """
    b = effective(batch, nbs)
    if b <= nbs:
        return 1.0
    return (noise + nbs) / (noise + b)


def settled(readings: list[float | None]) -> tuple[bool, str]:
    """Whether the per-epoch noise-scale readings have settled, and the words for it.

    Settled: the last two epochs both have an estimate and the last moved by less than `SETTLE` from the one
    before.

    Examples:
        >>> settled([None, 100.0, 110.0])
        (True, 'noise scale 110 (100 -> 110, +10%, settled)')
        >>> settled([100.0, 150.0])[0], settled([120.0])[0], settled([100.0, None])[0]
        (False, False, False)
    """
    if len(readings) < 2 or readings[-1] is None or readings[-2] is None:
        have = sum(r is not None for r in readings[-2:])
        return False, f"noise scale not settled ({have} of the last 2 epochs have an estimate)"
    prev, last = readings[-2], readings[-1]
    moved = (last - prev) / prev
    words = f"noise scale {last:.0f} ({prev:.0f} -> {last:.0f}, {moved:+.0%}"
    if abs(moved) >= SETTLE:
        return False, f"{words}, not settled: moves by {SETTLE:.0%} or more)"
    return True, f"{words}, settled)"


def lr_factor(scaling: str, batch: int, nbs: int) -> float:
    """lr0's factor under ``lr_scaling`` at ``batch``: effective / nbs (or its square root) above nbs, else 1.

    Examples:
        >>> lr_factor("linear", 128, 64), lr_factor("sqrt", 256, 64), lr_factor("linear", 16, 64)
        (2.0, 2.0, 1.0)
    """
    b = effective(batch, nbs)
    if scaling == "none" or b <= nbs:
        return 1.0
    return b / nbs if scaling == "linear" else (b / nbs) ** 0.5


def sizes(low: int, high: int, current: int) -> list[int]:
    """The batches compared: multiples of 8 (all below 8) in ``[low, high]``, ``high`` and ``current``.

    Examples:
        >>> sizes(1, 20, 12)
        [1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20]
    """
    out = {b for b in range(max(low, 1), high + 1) if b < 8 or b % 8 == 0}
    out |= {b for b in (high, current) if low <= b <= high}
    return sorted(out)


@dataclass(frozen=True)
class Choice:
    """The outcome of one epoch-end comparison: ``batch`` to switch to (None: stay) and the reason in words."""

    batch: int | None
    reason: str
    gain: float = 0.0


def choose(
    pace,
    *,
    current: int,
    low: int,
    high: int,
    nbs: int,
    readings: list[float | None],
    gain: float = 0.05,
) -> Choice:
    r"""Compare the batches that fit by goodput; switch when the best beats ``current`` by more than ``gain``.

    Args:
        pace (throughput.Pace): Predicted training images/s per batch (the probe's time law and dataloader).
        current (int): The batch training runs at.
        low (int): ``min_batch``.
        high (int): The fit bound (see the module docstring).
        nbs (int): The run's nominal batch.
        readings (list[float | None]): The noise-scale estimate at each finished epoch, oldest first.
        gain (float): ``goodput_gain``: the predicted gain a switch needs.

    Returns:
        (Choice): The batch to switch to, or None, and why.

    Examples:
        >>> from yolo_batch.throughput import Pace, TimeLaw
        >>> pace = Pace(TimeLaw(0.1, 0.01))  # 16: 61.5 images/s, 64: 86.5
        >>> c = choose(pace, current=16, low=1, high=64, nbs=64, readings=[500.0, 520.0])
        >>> c.batch, round(c.gain, 3)
        (64, 0.405)
        >>> print(c.reason.replace("; ", "\n"))
        goodput 64: 86 images/s x efficiency 1.00 = 86 against 16: 62 x 1.00 = 62 (+41% > goodput_gain 5%)
        noise scale 520 (500 -> 520, +4%, settled)
        >>> choose(pace, current=16, low=1, high=64, nbs=64, readings=[500.0]).batch is None
        True
    """
    ok, noise_words = settled(readings)
    if not ok:
        return Choice(None, f"stays at {current}: {noise_words}")
    if high < low:
        return Choice(None, f"stays at {current}: no batch from min_batch {low} to the fit bound {high}")
    last = readings[-1]
    assert last is not None  # settled: the last two readings are estimates
    noise = float(last)

    def good(b: int) -> tuple[float, float, float]:
        speed, eff = pace.images_per_s(b), efficiency(b, nbs, noise)
        return speed * eff, speed, eff

    table = {b: good(b) for b in sizes(low, high, current)}
    now = table.get(current) or good(current)
    best = max(table, key=lambda b: (table[b][0], -b))  # the smallest batch among equals
    g = table[best][0] / now[0] - 1 if now[0] > 0 else 0.0
    words = (
        f"goodput {best}: {table[best][1]:.0f} images/s x efficiency {table[best][2]:.2f} = {table[best][0]:.0f} "
        f"against {current}: {now[1]:.0f} x {now[2]:.2f} = {now[0]:.0f}"
    )
    if best == current:
        return Choice(None, f"stays at {current}: the best goodput of the batches up to {high}; {noise_words}")
    if g <= gain:
        return Choice(None, f"stays at {current}: {words} ({g:+.0%}, not above goodput_gain {gain:.0%}); {noise_words}")
    return Choice(best, f"{words} ({g:+.0%} > goodput_gain {gain:.0%}); {noise_words}", g)
