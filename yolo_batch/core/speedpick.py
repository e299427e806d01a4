"""The ``speed`` policy's search: the fastest batch by the measured pace, within Ultralytics' recipe first.

`within_recipe` is the ``speed`` (and ``goodput``'s starting) pick of `policy`: the threshold rule at or below
``nbs``, above it only past ``speed_gain`` and in a run long enough. Pure: numbers in, a batch and its words out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from yolo_batch.core.recipe import optimizer_steps

if TYPE_CHECKING:
    from yolo_batch.core.throughput import Pace

SPEED_SCAN = 65536  # `speed` compares at most this many batch sizes


def fastest(pace: Pace, low: int, high: int, threshold: float) -> tuple[int, str]:
    """The smallest batch in ``[low, high]`` reaching ``threshold`` of the best predicted images/s, and why.

    Examples:
        >>> from yolo_batch.core.throughput import Pace, TimeLaw
        >>> fastest(Pace(TimeLaw(0.1, 0.01)), 1, 64, 0.97)  # 53 is the smallest to reach 0.97 x 86; 56 rounds it
        (56, '56 reaches 85 images/s, 98% of the best 86 (at 64) with speed_threshold 0.97')
        >>> fastest(Pace(TimeLaw(0.1, 0.01)), 1, 8, 0.97)
        (8, '8 reaches 44 images/s, the best of the batches that fit')
        >>> fastest(Pace(TimeLaw(0.1, 0.01), loader_images_per_s=50, overlapped=True), 1, 64, 0.97)
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


def within_recipe(
    pace: Pace, low: int, high: int, threshold: float, gain: float, min_steps: int = 0
) -> tuple[int, str]:
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
        >>> within_recipe(pace, 1, 128, 0.97, 0.10)[0], within_recipe(pace, 1, 128, 0.97, 0.05)[0]
        (64, 128)
    """
    nbs = pace.law.nbs
    if low > nbs or high <= nbs:  # only one side of nbs is allowed
        b, why = fastest(pace, low, high, threshold)
        return b, why + (f"; min_batch {low} is above nbs={nbs}" if low > nbs else "")
    inside, why = fastest(pace, low, nbs, threshold)
    above, _ = fastest(pace, nbs + 1, high, threshold)
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
