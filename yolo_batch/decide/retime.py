"""What both decision paths (the probe's, the law cache's) do with a pick: verify it where, time it when far.

`checked`: whether a pick is proven by a verified step (``probe.verify``), one rule for a fresh decision
(`decide._verified`) and a cached one (`lawcache.cached_pick`), so a cache hit never runs a step the decision it
replaces would have skipped.

A ``speed`` pick far from the timed sizes is timed before it is kept: one step, a refitted time law, a new pick.
The time law is fitted on the sizes `loader.time_law` timed; far above them it extrapolates (on a CPU the law
from batches 2-32 was 6-35 % high at 128-256). `settle` runs once the pick is verified:
a pick more than `FAR` x the largest timed size is timed, the law refitted (`throughput.refit_time_law`), and
the policy decides once more, never above the timed pick (memory was verified there).
"""

from __future__ import annotations

from dataclasses import replace

from yolo_batch.core import policy
from yolo_batch.core.policy import gib
from yolo_batch.core.spec import BatchSpec, with_overrides
from yolo_batch.core.throughput import refit_time_law
from yolo_batch.device.memory import is_oom

FAR = 2  # a pick more than this many times the largest timed batch is timed before it is trusted
VERIFY_MARGIN = 0.5  # verify: auto proves picks whose predicted peak is above this share of the budget...
VERIFY_CHEAP_S = 1.0  # ...or whose step (estimated from the probe) takes at most this long


def far(pace, batch: int) -> bool:
    """True when ``batch`` is more than `FAR` x the largest batch the time law was fitted on."""
    return bool(pace is not None and pace.points and batch > FAR * max(b for b, _ in pace.points))


def step_estimate(step_seconds: dict[int, float], batch: int) -> float:
    """Seconds of one verification at ``batch`` (a training step and the 2x validation forward), from the probe's.

    Examples:
        >>> step_estimate({2: 0.1, 8: 0.4}, 32), step_estimate({}, 32)
        (1.6, inf)
    """
    if not step_seconds:
        return float("inf")
    largest = max(step_seconds)
    return step_seconds[largest] / largest * batch


def checked(spec: BatchSpec, model, batch: int, budget: float, step_seconds: dict[int, float], pace) -> str | None:
    """None when the pick at ``batch`` is verified (``probe.verify``), else the note that says why it is not.

    ``auto`` verifies when the predicted peak is above `VERIFY_MARGIN` of the budget, or the step is cheap (at most
    `VERIFY_CHEAP_S`, estimated from the probe's ``step_seconds``), or the pick is `far` (it is timed: that step
    verifies it too).
    """
    step_s = step_estimate(step_seconds, batch)
    near = model.peak(batch) > VERIFY_MARGIN * budget
    cheap = step_s <= VERIFY_CHEAP_S or far(pace, batch)
    if spec.verify is True or (spec.verify == "auto" and (near or cheap)):
        return None
    if spec.verify == "auto":
        return (
            f"not verified: the predicted peak is under {VERIFY_MARGIN:.0%} of the budget and a step at "
            f"{batch} would take ~{step_s:.0f}s"
        )
    return "not verified: probe.verify is false"


def retimed(prober, spec: BatchSpec, world: int, model, budget, pace, batch: int, warm: bool):
    """Time a step at a pick far above the timed sizes, refit the time law through it and decide once more.

    The verification step (``warm``: it ran) paid for memory touched for the first time, as every first step at a
    size does (`loader.time_law`), so one more step at ``batch`` (the pick, after any out-of-memory step-down) is
    timed; without it, two. The new decision does
    not go above the timed pick (memory was verified there, not above): where it would, it is capped there.

    Returns:
        (tuple | None): ``(pace, decision, record, words)``, or None when the pick is near the timed sizes, the
        step ran out of memory or the refit is unusable.
    """
    if not far(pace, batch):
        return None
    try:
        for _ in range(1 if warm else 2):
            prober.train_step(batch, reset=False)
    except RuntimeError as e:
        if not is_oom(e):
            raise
        prober.trainer.optimizer.zero_grad(set_to_none=True)
        prober.backend.empty_cache()
        return None
    seconds, top = prober.last_seconds[0], max(b for b, _ in pace.points)
    law = refit_time_law(pace.law, list(pace.points), batch, seconds)
    if law is None:
        return None
    new = replace(pace, law=law, points=(*pace.points, (batch, seconds)))

    def decided(top: int):
        return policy.choose(
            model, budget, with_overrides(spec, max_batch=top), world=world, dataset_size=prober.dataset_size,
            fraction=prober.trainer.args.fraction, pace=new,
        )  # fmt: skip

    again = decided(spec.max_batch)
    if again.batch > batch:  # memory was verified at the timed pick, not above: decide up to it
        again, name = decided(batch * max(world, 1)), f"max_batch {batch}"
        rungs = tuple(replace(c, cap=f"the timed {batch}") if c.cap == name else c for c in again.candidates)
        words = again.reason.replace(f"capped by {name}", f"capped at the timed {batch}")
        again = replace(again, reason=words, candidates=rungs)
    if again.batch == 0:
        return None
    predicted = pace.law.work_seconds(batch)
    record = {
        "largest_timed": top,
        "point": [batch, round(seconds, 5)],
        "predicted_seconds": round(predicted, 5),
        "before": pace.law.as_record(),
        "after": law.as_record(),
        "batch_before": batch,
        "batch_after": again.batch,
    }
    then = f"re-decided {again.batch}" if again.batch != batch else f"{batch} stands"
    words = (
        f"the time law from batches up to {top} put a step at {batch} at {predicted * 1e3:.0f} ms, it took "
        f"{seconds * 1e3:.0f} ms ({predicted / seconds - 1:+.0%}): time law refitted through it, {then}"
    )
    return new, again, record, words


def settle(prober, spec: BatchSpec, world: int, model, budget, pace, decision, batch: int, peaks, notes, lead):
    """`retimed`, applied to a verified (or unverified) pick: both decision paths (the probe's, the cache's) end so.

    Its words go to ``lead``; when the re-decision moves below ``batch``, ``notes`` says where memory was verified
    and the verified peaks no longer belong to the pick.

    Returns:
        (tuple): ``(pace, decision, batch, peaks, refit)``; unchanged, with ``refit`` None, when nothing was timed.
    """
    found = retimed(prober, spec, world, model, budget, pace, batch, peaks is not None) if pace else None
    if found is None:
        return pace, decision, batch, peaks, None
    pace, again, refit, words = found
    lead.append(words)
    if again.batch != batch:  # at most the timed batch: memory verified above it
        if peaks is not None:
            notes.append(f"memory verified at {batch} ({gib(max(p for p in peaks if p is not None))}), above the pick")
        batch, peaks = again.batch, None
    return pace, again, batch, peaks, refit
