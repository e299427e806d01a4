"""The decision, from numbers alone: a memory law, a budget and a policy give a batch and a reason in words.

Pure and without torch, so every rule is unit-tested on simulated devices in milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from yolo_batch.core.speedpick import within_recipe

if TYPE_CHECKING:
    from collections.abc import Callable

    from yolo_batch.core.spec import BatchSpec
    from yolo_batch.core.throughput import Pace

ADVICE = "lower imgsz, use a smaller model, enable AMP, or free device memory"  # every out-of-memory error ends so

GIB = 2**30
SPEEDS = ("speed", "goodput")  # the policies that need the measured pace


def gib(n: float) -> str:
    """Format bytes as GiB for reasons and tables.

    Examples:
        >>> gib(1.5 * 2**30)
        '1.50 GiB'
    """
    return f"{n / GIB:.2f} GiB"


@dataclass(frozen=True)
class Law:
    """Peak memory of one kind of step as ``fixed_bytes + per_image_bytes * images``."""

    fixed_bytes: float
    per_image_bytes: float

    def at(self, images: float) -> float:
        """Predicted peak bytes for ``images`` images per step."""
        return self.fixed_bytes + self.per_image_bytes * images

    def max_images(self, budget_bytes: float) -> float:
        """Largest (real-valued) image count whose peak stays within ``budget_bytes``."""
        if self.per_image_bytes <= 0:
            return math.inf if self.fixed_bytes <= budget_bytes else 0.0
        return (budget_bytes - self.fixed_bytes) / self.per_image_bytes


def fit_law(points: list[tuple[int, float]]) -> tuple[Law, list[tuple[int, float]]]:
    """Least-squares fit of peak bytes against batch, after dropping non-monotone points.

    A point whose peak is not above every smaller batch's peak is measurement noise (allocator caching,
    a lazily created buffer) and is dropped.

    Args:
        points (list[tuple[int, float]]): ``(batch, peak_bytes)`` pairs.

    Returns:
        (tuple[Law, list]): The law and the points it was fitted on.

    Raises:
        ValueError: When fewer than two usable points remain.

    Examples:
        >>> law, used = fit_law([(2, 120.0), (4, 140.0), (8, 180.0)])
        >>> round(law.fixed_bytes), round(law.per_image_bytes)
        (100, 10)
    """
    kept: list[tuple[int, float]] = []
    for b, peak in sorted(points):
        if not kept or (b > kept[-1][0] and peak > kept[-1][1]):
            kept.append((b, float(peak)))
    if len(kept) < 2:
        raise ValueError(f"need two batch sizes whose peaks grow with the batch to fit a memory law, got {points}")
    n = len(kept)
    mx = sum(b for b, _ in kept) / n
    my = sum(p for _, p in kept) / n
    slope = sum((b - mx) * (p - my) for b, p in kept) / sum((b - mx) ** 2 for b, _ in kept)
    return Law(my - slope * mx, slope), kept


@dataclass(frozen=True)
class MemoryModel:
    """Training-step law plus, optionally, the validation forward's law at ``val_factor`` x the batch.

    ``val_batch`` fixes the validation batch instead (``YOLO_BATCH_VAL_BATCH``, set by sweeps).

    Examples:
        >>> m = MemoryModel(Law(100, 10), Law(50, 4), val_batch=64)
        >>> m.peak(8), m.peak(30), m.max_batch(350)
        (306, 400, 25)
    """

    train: Law
    val: Law | None = None
    val_factor: int = 2
    val_batch: int | None = None

    def _val_images(self, batch: int) -> int:
        return self.val_batch or batch * self.val_factor

    def peak(self, batch: int) -> float:
        """Predicted peak bytes when training (and validating) at ``batch``."""
        p = self.train.at(batch)
        return max(p, self.val.at(self._val_images(batch))) if self.val else p

    def max_batch(self, budget_bytes: float) -> int:
        """Largest integer batch whose predicted peak fits ``budget_bytes`` (0 if not even one image)."""
        n = self.train.max_images(budget_bytes)
        if self.val and self.val_batch:
            n = n if self.val.at(self.val_batch) <= budget_bytes else 0.0
        elif self.val:
            n = min(n, self.val.max_images(budget_bytes) / self.val_factor)
        if math.isinf(n):
            return 2**31 - 1
        b = max(int(math.floor(n + 1e-9)), 0)
        while b > 0 and self.peak(b) > budget_bytes:  # guard against float rounding
            b -= 1
        return b


@dataclass(frozen=True)
class Candidate:
    """One batch that was considered: its predicted peak, whether it fits, its predicted images/s (if known).

    ``fits`` is False above a cap too (``max_batch``, the training set), and ``cap`` then names it.
    """

    batch: int
    predicted_peak_bytes: float
    fits: bool
    images_per_s: float | None = None
    cap: str | None = None


@dataclass(frozen=True)
class Decision:
    """The pick and why. ``batch`` is 0 when not even the smallest allowed batch fits."""

    batch: int
    policy: str
    budget_bytes: float
    predicted_peak_bytes: float
    reason: str
    candidates: tuple[Candidate, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Ask:
    """One decision's inputs as each policy's rule reads them (`decide` works out the caps once for all).

    Attributes:
        model (MemoryModel): The memory law.
        budget (float): Bytes the run may use at its peak.
        policy (str): The policy's name, as the decision states it.
        min_batch (int): Smallest allowed batch.
        cap (int): ``max_batch``, or the training set when smaller.
        cap_note (str): What the cap is, in the reason's words.
        fit_n (int): The largest batch that fits the budget, at most ``cap``.
        rungs (tuple[Candidate, ...]): The candidates, largest first.
        pace (throughput.Pace | None): Predicted images/s per batch.
        speed_threshold (float): ``speed``: the share of the best predicted images/s to reach.
        speed_gain (float): ``speed``: the predicted gain a batch above ``nbs`` needs.
        speed_min_steps (int): ``speed``: the optimizer steps a batch above ``nbs`` must leave the run.
    """

    model: MemoryModel
    budget: float
    policy: str
    min_batch: int
    cap: int
    cap_note: str
    fit_n: int
    rungs: tuple[Candidate, ...]
    pace: Pace | None = None
    speed_threshold: float = 0.97
    speed_gain: float = 0.10
    speed_min_steps: int = 0

    def limit(self) -> str:
        """Why ``fit_n`` is the largest: the cap, or the memory the next batch would need."""
        if self.fit_n == self.cap:
            return self.cap_note
        return f"{self.fit_n + 1} would need {gib(self.model.peak(self.fit_n + 1))}"


def _ladder(a: Ask) -> Decision:
    """``ladder``: the largest candidate that fits, else the largest batch >= ``min_batch`` that does."""
    model, budget, cap, min_batch, rungs = a.model, a.budget, a.cap, a.min_batch, a.rungs
    too_big = [c for c in rungs if c.batch > cap]
    tried = []
    for c in rungs:
        if c.batch > cap:
            continue
        if c.batch < min_batch:
            tried.append(f"{c.batch} is below min_batch {min_batch}")
            continue
        if c.fits:
            lead = "; ".join(tried)
            skipped = f"{', '.join(str(t.batch) for t in too_big)} above the cap ({a.cap_note}); " if too_big else ""
            reason = f"{skipped}{lead + '; ' if lead else ''}{c.batch} fits at {gib(c.predicted_peak_bytes)}"
            return Decision(c.batch, a.policy, budget, c.predicted_peak_bytes, reason, rungs)
        tried.append(f"{c.batch} needs {gib(c.predicted_peak_bytes)} > budget {gib(budget)}")
    why = "; ".join(tried) if tried else f"every candidate is above the cap ({a.cap_note})"
    fit_n = a.fit_n
    if fit_n < min_batch:
        return _none_fits(model, budget, a.policy, min_batch, rungs)
    at = gib(model.peak(fit_n))
    if any(c.batch <= cap and c.batch >= min_batch for c in rungs):  # memory ruled out the rungs
        reason = f"{why}; no candidate fits, auto-fit {fit_n} at {at}"
    elif fit_n == cap:  # the cap decided, memory would allow more
        reason = f"{why}; the cap decides: {fit_n} fits at {at}"
    else:
        reason = f"{why}; auto-fit {fit_n} at {at} ({fit_n + 1} would need {gib(model.peak(fit_n + 1))})"
    return Decision(fit_n, a.policy, budget, model.peak(fit_n), reason, rungs)


def _fit(a: Ask) -> Decision:
    """``fit``: the largest batch that fits, rounded down to a multiple of 8 when >= 8, never below ladder's pick."""
    fit_n, min_batch, model = a.fit_n, a.min_batch, a.model
    b = fit_n - fit_n % 8 if fit_n >= 8 else fit_n
    if b < min_batch <= fit_n:  # rounding must not fall below the floor the user set
        b = min_batch
    rungs_in = [c.batch for c in a.rungs if c.fits and c.batch >= min_batch]
    ladder = max(rungs_in) if rungs_in else fit_n  # ladder's pick: fit, the largest, never picks below it
    floor = f" (not rounded below ladder's {ladder})" if b < ladder else ""
    b = max(b, ladder) if fit_n >= min_batch else b
    if b < min_batch:
        return _none_fits(model, a.budget, a.policy, min_batch, a.rungs)
    rounding = f", rounded down to {b}{floor}" if b != fit_n else floor
    reason = f"largest that fits is {fit_n} ({a.limit()}){rounding}; {b} fits at {gib(model.peak(b))}"
    return Decision(b, a.policy, a.budget, model.peak(b), reason, a.rungs)


def _speed(a: Ask) -> Decision:
    """``speed`` (and ``goodput``'s start): the fastest by the pace, within nbs first (`speedpick.within_recipe`)."""
    pace, model = a.pace, a.model
    if pace is None:
        raise ValueError(f"policy {a.policy!r} needs the measured pace (time law and dataloader rate)")
    if a.fit_n < a.min_batch:
        return _none_fits(model, a.budget, a.policy, a.min_batch, a.rungs)
    b, reason = within_recipe(pace, a.min_batch, a.fit_n, a.speed_threshold, a.speed_gain, a.speed_min_steps)
    reason = f"{reason} (the largest that fits is {a.fit_n}: {a.limit()}); {b} fits at {gib(model.peak(b))}"
    nbs = pace.law.nbs
    if b > nbs:
        reason += f"; above nbs={nbs} every optimizer step sees {b} images, not {nbs}"
    return Decision(b, a.policy, a.budget, model.peak(b), f"{pace.binding_words(b)}; {reason}", a.rungs)


# One rule per policy: the one source of the policy names (`spec.POLICIES` reads it); goodput starts at the
# speed pick and re-chooses at epoch ends (`goodput`).
RULES: dict[str, Callable[[Ask], Decision]] = {"ladder": _ladder, "fit": _fit, "speed": _speed, "goodput": _speed}


def decide(
    model: MemoryModel,
    budget_bytes: float,
    *,
    policy: str = "ladder",
    candidates: tuple[int, ...] = (16, 32, 64),
    min_batch: int = 1,
    max_batch: int = 512,
    dataset_size: int | None = None,
    fraction: float = 1.0,
    pace: Pace | None = None,
    speed_threshold: float = 0.97,
    speed_gain: float = 0.10,
    speed_min_steps: int = 0,
) -> Decision:
    """Pick the batch.

    ``ladder`` takes the largest candidate whose predicted peak fits the budget; when none fits it auto-fits
    the largest batch >= ``min_batch`` that does. ``fit`` takes the largest batch that fits, rounded down
    to a multiple of 8 when >= 8, but never below ladder's pick. ``speed`` chooses within Ultralytics' recipe
    first: the smallest batch at or below ``nbs`` (``pace.law.nbs``) that reaches ``speed_threshold`` of the best
    predicted images/s there, rounded up to a multiple of 8 when >= 8 and that still fits; a batch above ``nbs``
    (found by the same rule among the batches above it) only when it is predicted more than ``speed_gain``
    faster (`_within_recipe`). Never above ``max_batch`` or ``dataset_size``. The reason names the limit that
    decided: memory (the budget), ``max_batch``, or the training set (after ``fraction``), and for ``speed`` the
    ceiling that binds at the pick (the dataloader or the step) with the advice that helps.

    Args:
        model (MemoryModel): The measured memory law.
        budget_bytes (float): Bytes the run may use at its peak.
        policy (str): A name of `RULES`: ``ladder``, ``fit``, ``speed`` or ``goodput``.
        candidates (tuple[int, ...]): The ladder's rungs.
        min_batch (int): Smallest allowed batch.
        max_batch (int): Largest allowed batch.
        dataset_size (int | None): Training images; the batch never exceeds it.
        fraction (float): The run's ``fraction=`` (share of the training set it uses), named in the reason.
        pace (throughput.Pace | None): Predicted images/s per batch; needed by ``speed``, shown by all.
        speed_threshold (float): ``speed``: the share of the best predicted images/s to reach.
        speed_gain (float): ``speed``: the predicted gain a batch above ``nbs`` needs over the best at or below it.
        speed_min_steps (int): ``speed``: a batch above ``nbs`` only where the run still makes at least this many
            optimizer steps at it, ``ceil(dataset_size / batch) x epochs`` (``pace.epochs``); 0: no floor.

    Returns:
        (Decision): The pick, its predicted peak and the reason in words.

    Raises:
        ValueError: For a policy not in `RULES`, or ``speed``/``goodput`` without ``pace``.

    Examples:
        >>> m = MemoryModel(Law(4 * GIB, 0.5 * GIB))
        >>> d = decide(m, 28.8 * GIB)
        >>> d.batch, d.reason
        (32, '64 needs 36.00 GiB > budget 28.80 GiB; 32 fits at 20.00 GiB')
    """
    rule = RULES.get(policy)
    if rule is None:
        *names, last = map(repr, RULES)
        raise ValueError(f"policy must be {', '.join(names)} or {last}, got {policy!r}")
    cap = min(max_batch, dataset_size) if dataset_size else max_batch
    by_data = bool(dataset_size and dataset_size < max_batch)
    after = f" after fraction={fraction:g}" if fraction < 1 else ""
    data_note = f"capped by the training set of {images(dataset_size)}{after}"
    cap_note = data_note if by_data else f"capped by max_batch {max_batch}"
    cap_name = f"the training set, {images(dataset_size)}{after}" if by_data else f"max_batch {max_batch}"
    fit_n = min(model.max_batch(budget_bytes), cap)
    if policy in SPEEDS and fit_n >= min_batch:
        candidates = (*candidates, fit_n)  # the table shows the largest that fits beside the rungs
    rungs = _rungs(model, budget_bytes, candidates, (cap, cap_name), pace)
    if min_batch > cap:  # no memory can help: say which cap rules min_batch out
        reason = (
            f"min_batch {min_batch} is above {cap_name}: no batch can be picked; lower min_batch to {cap} or less"
            + (", or train on more images" if by_data else ", or raise max_batch")
        )
        return Decision(0, policy, budget_bytes, model.peak(min_batch), reason, rungs)
    return rule(
        Ask(
            model,
            budget_bytes,
            policy,
            min_batch,
            cap,
            cap_note,
            fit_n,
            rungs,
            pace,
            speed_threshold,
            speed_gain,
            speed_min_steps,
        )  # fmt: skip
    )


def choose(
    model: MemoryModel,
    budget_bytes: float,
    spec: BatchSpec,
    *,
    world: int = 1,
    dataset_size: int | None = None,
    fraction: float = 1.0,
    pace: Pace | None = None,
) -> Decision:
    """The everyday decision: `decide` with a run's settings, for one device of ``world`` (1 but under DDP).

    Candidates and ``min_batch`` bound one device's step; ``max_batch`` and the training set bound the global
    batch, so each of ``world`` GPUs gets ``// world`` of them (at least 1). ``world=1`` changes nothing.
    ``pace`` (the time law and dataloader) is what ``speed`` and ``goodput`` need.

    Args:
        model (MemoryModel): The measured memory law.
        budget_bytes (float): Bytes the run may use at its peak on this device.
        spec (BatchSpec): The run's settings.
        world (int): The devices that share the training set and ``max_batch`` (DDP), else 1.
        dataset_size (int | None): Training images (the global count).
        fraction (float): The run's ``fraction=``, named in the reason.
        pace (throughput.Pace | None): Predicted images/s per batch.

    Returns:
        (Decision): The pick; under DDP its reason starts with ``per GPU of N``.

    Examples:
        >>> from yolo_batch.core.spec import BatchSpec
        >>> m = MemoryModel(Law(324e6, 238e6))
        >>> [choose(m, 0.9 * g * GIB, BatchSpec(), world=2).batch for g in (16, 8)]
        [32, 16]
    """
    world = max(int(world), 1)
    share = max(dataset_size // world, 1) if dataset_size else None
    decision = decide(
        model,
        budget_bytes,
        policy=spec.policy,
        candidates=spec.candidates,
        min_batch=spec.min_batch,
        max_batch=max(spec.max_batch // world, 1),
        dataset_size=share,
        fraction=fraction,
        pace=pace,
        speed_threshold=spec.speed_threshold,
        speed_gain=spec.speed_gain,
        speed_min_steps=spec.speed_min_steps,
    )
    return decision if world == 1 else replace(decision, reason=f"per GPU of {world}: {decision.reason}")


def images(n: int | None) -> str:
    """``"1 image"``, ``"64 images"``.

    Examples:
        >>> images(1), images(64)
        ('1 image', '64 images')
    """
    return f"{n} image{'' if n == 1 else 's'}"


def _rungs(
    model: MemoryModel, budget: float, sizes: tuple[int, ...], cap: tuple[int, str], pace: Pace | None
) -> tuple[Candidate, ...]:
    """The candidates, largest first; one above the cap (``(batch, its name)``) does not fit and names the cap."""
    top, name = cap
    return tuple(
        Candidate(
            b,
            model.peak(b),
            model.peak(b) <= budget and b <= top,
            pace.images_per_s(b) if pace else None,
            name if b > top else None,
        )
        for b in sorted(set(sizes), reverse=True)
    )


def _none_fits(
    model: MemoryModel, budget: float, policy: str, min_batch: int, rungs: tuple[Candidate, ...]
) -> Decision:
    """The decision when not even ``min_batch`` fits: batch 0 and advice."""
    need = model.peak(min_batch)
    reason = f"batch {min_batch} needs {gib(need)} > budget {gib(budget)}; {ADVICE}"
    return Decision(0, policy, budget, need, reason, rungs)


def next_lower(batch: int, *, policy: str, candidates: tuple[int, ...], min_batch: int = 1) -> int:
    """The batch to fall back to after ``batch`` ran out of memory.

    ``ladder`` steps to the next lower rung, else halves; ``fit`` steps to 3/4, rounded down to a multiple of 8.

    Returns 0 when nothing at or above ``min_batch`` is left.

    Examples:
        >>> rungs = (16, 32, 64)
        >>> next_lower(64, policy="ladder", candidates=rungs), next_lower(16, policy="ladder", candidates=rungs)
        (32, 8)
        >>> next_lower(40, policy="fit", candidates=(16, 32, 64)), next_lower(5, policy="fit", candidates=(16,))
        (24, 3)
    """
    if policy == "ladder":
        lower = [c for c in candidates if min_batch <= c < batch]
        b = max(lower) if lower else batch // 2
    else:
        b = int(batch * 0.75)
        b = b - b % 8 if b >= 8 else b
    return b if b >= min_batch else 0
