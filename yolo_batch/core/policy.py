"""The decision, from numbers alone: a memory law, a budget and a policy give a batch and a reason in words.

Pure and without torch, so every rule is unit-tested on simulated devices in milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from yolo_batch.core.recipe import optimizer_steps

if TYPE_CHECKING:
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
    pace=None,
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
        policy (str): ``ladder`` or ``fit``.
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

    Examples:
        >>> m = MemoryModel(Law(4 * GIB, 0.5 * GIB))
        >>> d = decide(m, 28.8 * GIB)
        >>> d.batch, d.reason
        (32, '64 needs 36.00 GiB > budget 28.80 GiB; 32 fits at 20.00 GiB')
    """
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
    if policy == "ladder":
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
                skipped = f"{', '.join(str(t.batch) for t in too_big)} above the cap ({cap_note}); " if too_big else ""
                reason = f"{skipped}{lead + '; ' if lead else ''}{c.batch} fits at {gib(c.predicted_peak_bytes)}"
                return Decision(c.batch, policy, budget_bytes, c.predicted_peak_bytes, reason, rungs)
            tried.append(f"{c.batch} needs {gib(c.predicted_peak_bytes)} > budget {gib(budget_bytes)}")
        why = "; ".join(tried) if tried else f"every candidate is above the cap ({cap_note})"
        if fit_n >= min_batch:
            at = gib(model.peak(fit_n))
            if any(c.batch <= cap and c.batch >= min_batch for c in rungs):  # memory ruled out the rungs
                reason = f"{why}; no candidate fits, auto-fit {fit_n} at {at}"
            elif fit_n == cap:  # the cap decided, memory would allow more
                reason = f"{why}; the cap decides: {fit_n} fits at {at}"
            else:
                reason = f"{why}; auto-fit {fit_n} at {at} ({fit_n + 1} would need {gib(model.peak(fit_n + 1))})"
            return Decision(fit_n, policy, budget_bytes, model.peak(fit_n), reason, rungs)
        return _none_fits(model, budget_bytes, policy, min_batch, rungs)
    if policy == "fit":
        b = fit_n - fit_n % 8 if fit_n >= 8 else fit_n
        if b < min_batch <= fit_n:  # rounding must not fall below the floor the user set
            b = min_batch
        rungs_in = [c.batch for c in rungs if c.fits and c.batch >= min_batch]
        ladder = max(rungs_in) if rungs_in else fit_n  # ladder's pick: fit, the largest, never picks below it
        floor = f" (not rounded below ladder's {ladder})" if b < ladder else ""
        b = max(b, ladder) if fit_n >= min_batch else b
        if b >= min_batch:
            limit = cap_note if fit_n == cap else f"{fit_n + 1} would need {gib(model.peak(fit_n + 1))}"
            rounding = f", rounded down to {b}{floor}" if b != fit_n else floor
            reason = f"largest that fits is {fit_n} ({limit}){rounding}; {b} fits at {gib(model.peak(b))}"
            return Decision(b, policy, budget_bytes, model.peak(b), reason, rungs)
        return _none_fits(model, budget_bytes, policy, min_batch, rungs)
    if policy in SPEEDS:  # goodput starts at the speed pick (`goodput` re-chooses at epoch ends)
        if pace is None:
            raise ValueError(f"policy {policy!r} needs the measured pace (time law and dataloader rate)")
        if fit_n < min_batch:
            return _none_fits(model, budget_bytes, policy, min_batch, rungs)
        b, reason = _within_recipe(pace, min_batch, fit_n, speed_threshold, speed_gain, speed_min_steps)
        limit = cap_note if fit_n == cap else f"{fit_n + 1} would need {gib(model.peak(fit_n + 1))}"
        reason = f"{reason} (the largest that fits is {fit_n}: {limit}); {b} fits at {gib(model.peak(b))}"
        nbs = pace.law.nbs
        if b > nbs:
            reason += f"; above nbs={nbs} every optimizer step sees {b} images, not {nbs}"
        return Decision(b, policy, budget_bytes, model.peak(b), f"{pace.binding_words(b)}; {reason}", rungs)
    raise ValueError(f"policy must be 'ladder', 'fit', 'speed' or 'goodput', got {policy!r}")


def images(n: int | None) -> str:
    """``"1 image"``, ``"64 images"``.

    Examples:
        >>> images(1), images(64)
        ('1 image', '64 images')
    """
    return f"{n} image{'' if n == 1 else 's'}"


def _rungs(model: MemoryModel, budget: float, sizes: tuple[int, ...], cap: tuple[int, str], pace) -> tuple:
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


SPEED_SCAN = 65536  # `speed` compares at most this many batch sizes


def _fastest(pace, low: int, high: int, threshold: float) -> tuple[int, str]:
    """The smallest batch in ``[low, high]`` reaching ``threshold`` of the best predicted images/s, and why.

    Examples:
        >>> from yolo_batch.core.throughput import Pace, TimeLaw
        >>> _fastest(Pace(TimeLaw(0.1, 0.01)), 1, 64, 0.97)  # 53 is the smallest to reach 0.97 x 86; 56 rounds it
        (56, '56 reaches 85 images/s, 98% of the best 86 (at 64) with speed_threshold 0.97')
        >>> _fastest(Pace(TimeLaw(0.1, 0.01)), 1, 8, 0.97)
        (8, '8 reaches 44 images/s, the best of the batches that fit')
        >>> _fastest(Pace(TimeLaw(0.1, 0.01), loader_images_per_s=50, overlapped=True), 1, 64, 0.97)
        (16, '16 reaches 50 images/s, 100% of the best 50 (at 64) with speed_threshold 0.97')
    """
    sizes = range(low, min(high, low + SPEED_SCAN - 1) + 1)
    speeds = {b: pace.images_per_s(b) for b in sizes}
    best = max(sizes, key=lambda b: (speeds[b], b))
    pick = next(b for b in sizes if speeds[b] >= threshold * speeds[best])
    rounded = -(-pick // 8) * 8
    if pick > 8 and rounded != pick and rounded in speeds and speeds[rounded] >= threshold * speeds[best]:
        pick = rounded  # a multiple of 8 when it still fits
    if pick == best:
        return pick, f"{pick} reaches {speeds[pick]:.0f} images/s, the best of the batches that fit"
    share = speeds[pick] / speeds[best]
    return pick, (
        f"{pick} reaches {speeds[pick]:.0f} images/s, {share:.0%} of the best {speeds[best]:.0f} (at {best}) "
        f"with speed_threshold {threshold:.2f}"
    )


def _within_recipe(pace, low: int, high: int, threshold: float, gain: float, min_steps: int = 0) -> tuple[int, str]:
    """The ``speed`` pick: the threshold rule at or below nbs, above nbs only past ``gain`` and in a long run.

    A short run is update-bound: above nbs every optimizer step sees more images, so the run makes fewer steps
    (Hoffer et al. 2017 trace the large-batch gap to them), and a run of few steps has none to spare. So a batch
    above nbs is considered only where the run still makes ``min_steps`` optimizer steps at it (``speed_min_steps``,
    10000 by default: the line Ultralytics' ``optimizer=auto`` draws between a short and a long run), counted as
    ``ceil(dataset_size / batch) x epochs`` from ``pace``; unknown counts do not hold it back.

    Above nbs only when its pick (the threshold rule among the batches above nbs) is predicted more than ``gain``
    faster than the fastest at or below nbs, and the pick at or below nbs does not reach ``threshold`` of the
    fastest above it (a low ``speed_threshold`` is content with the recipe's pick).

    Examples:
        >>> from yolo_batch.core.throughput import Pace, TimeLaw
        >>> pace = Pace(TimeLaw(0.1, 0.01), dataset_size=128)  # 64: 86.5 images/s, 128: 92.8 (+7%)
        >>> _within_recipe(pace, 1, 128, 0.97, 0.10)[0], _within_recipe(pace, 1, 128, 0.97, 0.05)[0]
        (64, 128)
    """
    nbs = pace.law.nbs
    if low > nbs or high <= nbs:  # only one side of nbs is allowed
        b, why = _fastest(pace, low, high, threshold)
        return b, why + (f"; min_batch {low} is above nbs={nbs}" if low > nbs else "")
    inside, why = _fastest(pace, low, nbs, threshold)
    above, _ = _fastest(pace, nbs + 1, high, threshold)
    best = max(range(low, nbs + 1), key=lambda b: (pace.images_per_s(b), b))  # the fastest at or below nbs
    fast_in, fast_out = pace.images_per_s(best), pace.images_per_s(above)
    g = fast_out / fast_in - 1 if fast_in > 0 else 0.0
    top = max(pace.images_per_s(b) for b in range(nbs + 1, min(high, nbs + SPEED_SCAN) + 1))  # fastest above
    steps = _steps(pace, above)
    if g > gain and steps is not None and steps < min_steps:  # a short run: too few updates to give any away
        return inside, (
            f"{why}; within nbs={nbs} (Ultralytics' recipe): {above} above it would gain {g:+.0%} in images/s, but "
            f"the run would make {steps} optimizer steps there, fewer than speed_min_steps {min_steps} (a short run "
            f"is update-bound)"
        )
    if g > gain and pace.images_per_s(inside) >= threshold * top:  # the in-recipe pick is fast enough already
        return inside, (
            f"{why}; within nbs={nbs} (Ultralytics' recipe): {inside} reaches speed_threshold {threshold:.2f} of the "
            f"fastest above it too ({top:.0f} images/s)"
        )
    if g > gain:
        return above, (
            f"{above} above nbs={nbs} reaches {fast_out:.0f} images/s, {g:+.0%} over {best} ({fast_in:.0f}), the "
            f"fastest at or below nbs: above speed_gain {gain:.0%}"
        )
    return inside, (
        f"{why}; within nbs={nbs} (Ultralytics' recipe): the fastest above it, {above} at {fast_out:.0f} images/s, "
        f"gains {g:+.0%}, not above speed_gain {gain:.0%}"
    )


def _steps(pace: Pace, batch: int) -> int | None:
    """Optimizer steps of the whole run at ``batch`` (`recipe.optimizer_steps`), or None when not known.

    Examples:
        >>> from yolo_batch.core.throughput import Pace, TimeLaw
        >>> _steps(Pace(TimeLaw(0.1, 0.01), dataset_size=2560, epochs=5), 112), _steps(Pace(TimeLaw(0.1, 0.01)), 112)
        (115, None)
    """
    n, epochs = pace.dataset_size, pace.epochs
    return optimizer_steps(n, batch, pace.law.nbs, epochs) if n and epochs else None


def _none_fits(model: MemoryModel, budget: float, policy: str, min_batch: int, rungs: tuple) -> Decision:
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
