"""A ``speed`` pick far from the timed sizes is timed before it is kept: one step, a refitted time law, a new pick.

The time law is fitted on the sizes `loader.time_law` timed; far above them it extrapolates (on a CPU the law
from batches 2-32 was 6-35 % high at 128-256). `decide._verified` calls `retimed` once the pick is verified:
a pick more than `FAR` x the largest timed size is timed, the law refitted (`throughput.refit_time_law`), and
the policy decides once more, never above the timed pick (memory was verified there).
"""

from __future__ import annotations

from dataclasses import replace

from yolo_batch.core import policy
from yolo_batch.core.policy import gib
from yolo_batch.core.spec import BatchSpec, with_overrides
from yolo_batch.core.throughput import refit_time_law
from yolo_batch.memory import is_oom

FAR = 2  # a pick more than this many times the largest timed batch is timed before it is trusted


def far(pace, batch: int) -> bool:
    """True when ``batch`` is more than `FAR` x the largest batch the time law was fitted on."""
    return bool(pace is not None and pace.points and batch > FAR * max(b for b, _ in pace.points))


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
