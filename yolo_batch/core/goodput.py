"""Goodput: progress per second. Which batch to train at next, from numbers alone (pure, stdlib only).

Policy ``goodput`` starts at the ``speed`` pick. At each epoch's end it compares the batches that fit by

    goodput(b) = predicted images/s at b  x  efficiency(b)

where ``efficiency(b)`` is the progress an image makes at ``b`` against an image at Ultralytics' nominal batch
``nbs``. At or below ``nbs`` it is 1: accumulation keeps the optimizer on ``nbs`` images a step, Ultralytics'
recipe holds, and goodput behaves as ``speed`` (throughput decides).

Above ``nbs`` a step sees ``S = b x accumulate / nbs`` times the images, and an epoch makes ``S`` times fewer
optimizer steps and BatchNorm updates. Version 1 took Pollux's ``(phi + nbs) / (phi + b)`` (Qiao et al., OSDI
'21) from the gradient-noise scale ``phi`` (McCandlish et al. 2018). That assumes every step's lr is rescaled to
do the work of up to ``S`` steps, which Ultralytics' recipe does not do (nothing scales Adam's lr); with
``phi`` in the thousands large batches looked free, and on the CPU benchmark goodput trained at 128 and 256
and missed the target. Version 2 counts progress in steps at ``nbs``, as AdaScale counts scale-invariant
iterations (Johnson et al. 2020):

    efficiency(b) = min(worth(b), gain(b)) / S

- ``gain(b) = S (phi + nbs) / (phi + S nbs)``, AdaScale's gain ratio: the most steps at ``nbs`` that one step at
  ``b`` can do, however large its lr (`gain_ratio`). ``gain / S`` is Pollux's efficiency.
- ``worth(b)``: the steps at ``nbs`` that the step's size buys, from the recipe that trains (`Recipe`). With
  SGD the detection loss is a sum over images, so the step grows with them: ``step = f x S`` (``f``:
  ``lr_scaling``'s factor) and ``worth = step`` (the linear rule: Goyal et al. 2017, Smith et al. 2018). With
  Adam, AdamW, RMSprop... and MuSGD (whose Muon update is normalised) the update does not grow with the
  gradient: ``step = f`` and ``worth = f ** 2`` (the square-root rule for adaptive optimizers: Malladi et al.
  2022). So with Adam and no ``lr_scaling`` a step at ``b`` is worth one step at ``nbs`` and the efficiency is
  ``nbs / b``: the update count (Hoffer et al. 2017: the large-batch gap is too few updates).

Two guards leave out the batches above ``nbs`` whose progress the rule cannot vouch for (`Recipe.excluded`):

- the lr has not decayed enough: no step larger than the recipe's largest (lr0 at ``nbs``), ``step x lr_left
  <= 1``, with ``lr_left`` the schedule's factor for the next epoch (Ultralytics' ``lf`` from ``lrf``,
  ``cos_lr`` and ``epochs``). SGD's batch grows above ``nbs`` only as the lr decays: Smith et al. 2018, "Don't
  decay the learning rate, increase the batch size";
- BatchNorm's running statistics (what validation and the checkpoints use) would trail the weights by more
  than an epoch: with momentum ``m`` per update (Ultralytics' 0.03, scaled with the batch by ``bn_momentum:
  auto``) a batch's statistics keep half their weight for ``b x ln 0.5 / ln(1 - m)`` images; that must not
  exceed the training set.

A switch needs a predicted gain above ``gain`` (``goodput_gain``, 5 % by default) over the current batch, and a
settled noise scale: the epoch estimate exists for the last two epochs and moved by less than ``SETTLE`` (20 %)
between them (`settled`). A run above ``nbs`` is off Ultralytics' recipe and need not wait to go back: when
the same batch at or below ``nbs`` wins by more than ``gain`` at a noise scale of 0 and of infinity, it wins
at every noise scale (the efficiency above ``nbs`` only grows with it), and the switch is made at once.

Batches considered: the multiples of 8 (every batch below 8) from ``min_batch`` to the fit bound, the fit
bound itself and the current batch. The fit bound is the largest batch the probe's memory law (after the
verified step) puts within the budget, capped by ``max_batch`` and the training set, and after an
out-of-memory step-down below the batch that ran out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from yolo_batch.core.recipe import half_life_images, scaled

if TYPE_CHECKING:
    from yolo_batch.core.throughput import Pace

SETTLE = 0.20  # the noise scale has settled when it moved less than this share between the last two epochs
ULTRALYTICS_BN_MOMENTUM = 0.03  # every BatchNorm's momentum after Ultralytics' initialize_weights


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


@dataclass(frozen=True)
class Recipe:
    """What a step above ``nbs`` does in the run that trains: its optimizer, lr, schedule, BatchNorm and data.

    Attributes:
        optimizer (str): The optimizer's class name: ``SGD``, or an adaptive one (Adam, AdamW, MuSGD, ...).
        lr_scaling (str): ``none``, ``linear`` or ``sqrt``: lr0's factor at each batch (`lr_factor`), as applied.
        lr_left (float): The lr schedule's factor for the next epoch: 1 at the start, ``lrf`` at the end.
        dataset_size (int | None): Training images (None: no BatchNorm guard).
        bn_momentum (str): ``keep`` or ``auto`` (scaled with the batch, `recipe.scaled`).
        bn_base (float): BatchNorm's momentum per update (``keep``), at batch 16 (``auto``).

    Examples:
        >>> adam, sgd = Recipe(), Recipe("SGD", lr_left=0.4)
        >>> adam.step(128, 64), adam.worth(128, 64), sgd.step(128, 64), sgd.worth(128, 64)
        (1.0, 1.0, 2.0, 2.0)
        >>> Recipe(lr_scaling="sqrt").worth(256, 64), Recipe(lr_scaling="sqrt").step(32, 64)
        (4.0, 1.0)
    """

    optimizer: str = "AdamW"
    lr_scaling: str = "none"
    lr_left: float = 1.0
    dataset_size: int | None = None
    bn_momentum: str = "keep"
    bn_base: float = ULTRALYTICS_BN_MOMENTUM

    @property
    def sums(self) -> bool:
        """True for SGD: its step grows with the gradient, which the detection loss sums over the images."""
        return self.optimizer.lower() == "sgd"

    def step(self, batch: int, nbs: int) -> float:
        """The size of one step at ``batch`` against one at ``nbs`` with the same lr (1 at or below nbs)."""
        if batch <= nbs:
            return 1.0
        f = lr_factor(self.lr_scaling, batch, nbs)
        return f * effective(batch, nbs) / nbs if self.sums else f

    def worth(self, batch: int, nbs: int) -> float:
        """Steps at ``nbs`` that one step at ``batch`` does by its size: SGD linear, adaptive the square."""
        step = self.step(batch, nbs)
        return step if self.sums else step**2

    def excluded(self, batch: int, nbs: int) -> str | None:
        """Why ``batch`` is not compared (None: it is); only batches above nbs can be left out.

        Examples:
            >>> Recipe("SGD", lr_left=0.6).excluded(128, 64)  # its step is 2x lr0's at nbs, and 0.6 x 2 > 1
            'a step that large needs the lr decayed further than 60% of lr0'
            >>> Recipe("SGD", lr_left=0.5).excluded(128, 64) is None, Recipe().excluded(128, 64) is None
            (True, True)
            >>> Recipe(dataset_size=2560).excluded(128, 64)  # 128 x ln 0.5 / ln 0.97 = 2913 images
            "BatchNorm's running statistics would halve over more than an epoch of 2560 images"
            >>> Recipe(dataset_size=2560, bn_momentum="auto").excluded(128, 64) is None  # 364 images
            True
        """
        if batch <= nbs:
            return None
        if self.step(batch, nbs) * self.lr_left > 1 + 1e-9:
            return f"a step that large needs the lr decayed further than {self.lr_left:.0%} of lr0"
        momentum = scaled(self.bn_base, batch) if self.bn_momentum == "auto" else self.bn_base
        if self.dataset_size and half_life_images(momentum, batch) > self.dataset_size:
            return f"BatchNorm's running statistics would halve over more than an epoch of {self.dataset_size} images"
        return None


def gain_ratio(batch: int, nbs: int, noise: float) -> float:
    """AdaScale's gain ratio: the most steps at ``nbs`` one step at ``batch`` can do, from the noise scale.

    ``S (noise + nbs) / (noise + S nbs)`` with ``S`` the effective batch over ``nbs``: 1 without gradient noise,
    ``S`` with nothing but noise (``noise`` may be ``math.inf``); 1 at or below nbs.

    Examples:
        >>> gain_ratio(128, 64, 0.0), round(gain_ratio(128, 64, 64.0), 3), gain_ratio(128, 64, math.inf)
        (1.0, 1.333, 2.0)
    """
    b = effective(batch, nbs)
    if b <= nbs:
        return 1.0
    if math.isinf(noise):
        return b / nbs
    return b / nbs * (noise + nbs) / (noise + b)


def efficiency(batch: int, nbs: int, noise: float, recipe: Recipe = Recipe()) -> float:
    """The progress of an image at ``batch`` against one at ``nbs``: ``min(worth, gain) / S`` above nbs, else 1.

    Examples:
        >>> efficiency(48, 64, 100.0), efficiency(128, 64, 100.0), efficiency(256, 64, 1e6)  # Adam, lr as set
        (1.0, 0.5, 0.25)
        >>> round(efficiency(128, 64, 100.0, Recipe("SGD")), 3)  # the summed loss: Pollux's (100 + 64) / (100 + 128)
        0.719
        >>> round(efficiency(256, 64, 2000.0, Recipe(lr_scaling="sqrt")), 3)  # the square-root rule
        0.915
    """
    b = effective(batch, nbs)
    if batch <= nbs or b <= nbs:
        return 1.0
    return min(recipe.worth(batch, nbs), gain_ratio(batch, nbs, noise)) / (b / nbs)


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


@dataclass(frozen=True)
class _Compared:
    """One comparison at one noise scale: the best batch, its gain over the current one, and the words."""

    best: int
    gain: float
    words: str
    steps: str  # "; " and why the efficiency above nbs is what it is, for the best and the current batch


def _compare(pace: Pace, batches: list[int], current: int, nbs: int, noise: float, recipe: Recipe) -> _Compared:
    """The best goodput among ``batches`` (the smallest among equals) against ``current``'s."""

    def good(b: int) -> tuple[float, float, float]:
        speed, eff = pace.images_per_s(b), efficiency(b, nbs, noise, recipe)
        return speed * eff, speed, eff

    table = {b: good(b) for b in batches}
    now = table.get(current) or good(current)
    best = max(table, key=lambda b: (table[b][0], -b))
    g = table[best][0] / now[0] - 1 if now[0] > 0 else 0.0
    words = (
        f"goodput {best}: {table[best][1]:.0f} images/s x efficiency {table[best][2]:.2f} = {table[best][0]:.0f} "
        f"against {current}: {now[1]:.0f} x {now[2]:.2f} = {now[0]:.0f}"
    )
    above = "".join(f"; {b}: {_steps(b, nbs, noise, recipe)}" for b in dict.fromkeys((best, current)) if b > nbs)
    return _Compared(best, g, words, above)


def _steps(batch: int, nbs: int, noise: float, recipe: Recipe) -> str:
    """Why the efficiency above nbs is what it is, in words."""
    s = effective(batch, nbs) / nbs
    worth, ratio = recipe.worth(batch, nbs), gain_ratio(batch, nbs, noise)
    lr = f"lr0 x{lr_factor(recipe.lr_scaling, batch, nbs):.3g}"
    how = f"{recipe.optimizer} {lr}{', loss summed over the images' if recipe.sums else ''}"
    return (
        f"{s:.3g}x fewer steps an epoch, each worth {min(worth, ratio):.2f} at nbs {nbs} (by its size {worth:.2f}: "
        f"{how}; by the gain ratio {ratio:.2f}{', its most, at any noise scale' if math.isinf(noise) else ''})"
    )


def _left_out(out: dict[int, str]) -> str:
    """The batches left out, grouped by reason: ``"; not compared: 72-128 (reason)"``."""
    groups: dict[str, list[int]] = {}
    for b, why in out.items():
        groups.setdefault(why, []).append(b)
    parts = [f"{min(bs)}-{max(bs)} ({why})" if len(bs) > 1 else f"{bs[0]} ({why})" for why, bs in groups.items()]
    return f"; not compared: {', '.join(parts)}" if parts else ""


def choose(
    pace: Pace,
    *,
    current: int,
    low: int,
    high: int,
    nbs: int,
    readings: list[float | None],
    gain: float = 0.05,
    recipe: Recipe = Recipe(),
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
        recipe (Recipe): The optimizer, lr_scaling, lr left, BatchNorm and training set of the run.

    Returns:
        (Choice): The batch to switch to, or None, and why.

    Examples:
        >>> from yolo_batch.core.throughput import Pace, TimeLaw
        >>> pace = Pace(TimeLaw(0.1, 0.01))  # 16: 61.5 images/s, 64: 86.5, 128: 92.8
        >>> c = choose(pace, current=16, low=1, high=64, nbs=64, readings=[500.0, 520.0])
        >>> c.batch, round(c.gain, 3)
        (64, 0.405)
        >>> print(c.reason.replace("; ", "\n"))
        goodput 64: 86 images/s x efficiency 1.00 = 86 against 16: 62 x 1.00 = 62 (+41% > goodput_gain 5%)
        noise scale 520 (500 -> 520, +4%, settled)
        >>> choose(pace, current=16, low=1, high=64, nbs=64, readings=[500.0]).batch is None
        True
        >>> down = choose(pace, current=128, low=1, high=128, nbs=64, readings=[9e4])  # Adam: 2x fewer steps
        >>> down.batch, down.reason.split(" (")[0]
        (64, 'goodput 64: 86 images/s x efficiency 1.00 = 86 against 128: 93 x 0.50 = 46')
    """
    ok, noise_words = settled(readings)
    if high < low:
        return Choice(None, f"stays at {current}: no batch from min_batch {low} to the fit bound {high}")
    out = {b: why for b in sizes(low, high, current) if b != current and (why := recipe.excluded(b, nbs))}
    batches = [b for b in sizes(low, high, current) if b not in out]
    left_out = _left_out(out)
    if ok:
        noise = readings[-1]
        assert noise is not None  # settled: the last two readings exist
        c = _compare(pace, batches, current, nbs, noise, recipe)
        if c.best == current:
            return Choice(
                None, f"stays at {current}: the best goodput of the batches up to {high}; {noise_words}{left_out}"
            )
        if c.gain <= gain:
            return Choice(
                None,
                f"stays at {current}: {c.words} ({c.gain:+.0%}, not above goodput_gain {gain:.0%}){c.steps}; "
                f"{noise_words}{left_out}",
            )
        words = f"{c.words} ({c.gain:+.0%} > goodput_gain {gain:.0%}){c.steps}; {noise_words}{left_out}"
        return Choice(c.best, words, c.gain)
    if current > nbs:  # off Ultralytics' recipe: back to it without waiting when no noise scale changes the answer
        ends = [_compare(pace, batches, current, nbs, noise, recipe) for noise in (0.0, math.inf)]
        worst = ends[1]  # the efficiency above nbs only grows with the noise scale: infinite is the least gain
        if ends[0].best == worst.best <= nbs and worst.gain > gain:
            return Choice(
                worst.best,
                f"{worst.words} ({worst.gain:+.0%} > goodput_gain {gain:.0%} at any noise scale){worst.steps}; "
                f"{noise_words}{left_out}",
                worst.gain,
            )
    return Choice(None, f"stays at {current}: {noise_words}")
