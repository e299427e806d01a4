"""The model-aware decision, at Ultralytics' own ``trainer.auto_batch()`` moment.

Probe real steps (`probe`), fit the memory law and pick (`policy`), verify the pick with a real step and the
validation forward (stepping down on out-of-memory), scale lr0 if asked, then record the decision
(`records`: ``batch_decision.json``, after the run's earlier decisions on resume) and log the table.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from yolo_batch.core import decision_record, policy, recipe
from yolo_batch.core.decision_record import decision_table
from yolo_batch.core.pace_record import record_fields
from yolo_batch.core.phases import Phases
from yolo_batch.core.policy import ADVICE, SPEEDS, Law, MemoryModel, gib
from yolo_batch.core.spec import AutoPlusError, BatchSpec, with_overrides
from yolo_batch.decide import lawcache, retime
from yolo_batch.decide.loader import measure_pace
from yolo_batch.decide.probe import Prober, borrowed
from yolo_batch.device import ddp, memory
from yolo_batch.record import records
from yolo_batch.session import log, session
from yolo_batch.train import adapt, lrscale, valbatch
from yolo_batch.version import __version__

if TYPE_CHECKING:
    from ultralytics.engine.trainer import BaseTrainer

    from yolo_batch.session import Session


_PLANNING: ContextVar[bool] = ContextVar("yolo_batch_planning", default=False)


class Planned(Exception):
    """Raised by `auto_batch` inside `planning` once the decision is made and recorded: nothing trains."""

    def __init__(self, record: dict[str, Any], task: str) -> None:
        super().__init__("decision made")
        self.record, self.task = record, task


@contextmanager
def planning() -> Iterator[None]:
    """Within it, `auto_batch` stops the run with `Planned` after deciding (``yolo-batch plan``'s seam).

    Examples:
        >>> with planning():
        ...     _PLANNING.get()
        True
        >>> _PLANNING.get()
        False
    """
    token = _PLANNING.set(True)
    try:
        yield
    finally:
        _PLANNING.reset(token)


def no_loggers_in_a_plan(trainer) -> None:
    """Inside `planning`, at the run's first hook: the logger integrations Ultralytics added to this trainer off.

    A plan trains nothing, so it opens no MLflow, W&B, DVCLive... run. Ultralytics adds them in
    ``BaseTrainer.__init__`` (``add_integration_callbacks``) and runs ``on_pretrain_routine_start`` right after,
    our hook first: this trainer's own lists lose every Ultralytics callback that is not a default one, in place
    (the list of the event running is being iterated). Nothing is patched; runs outside a plan keep them all.
    """
    if not _PLANNING.get():
        return
    from ultralytics.utils.callbacks import get_default_callbacks

    defaults = get_default_callbacks()
    for event, fns in trainer.callbacks.items():
        fns[:] = [
            f for f in fns if not str(getattr(f, "__module__", "")).startswith("ultralytics.") or f in defaults[event]
        ]


def auto_batch(trainer: BaseTrainer, world: int = 1) -> int:
    """Probe (or check the law cache), decide, verify and report; return the batch (per GPU when ``world`` > 1).

    Short steps: `_picked` (the law cache or the full probe, inside `probe.borrowed`), `_recipe` (goodput's start,
    the large-batch recipe, the lr plan), `_record` (the record from numbers, `decision_record.build`), the law
    cache saved, then `records` keeps it (the only writer of ``record``) and the table is logged.
    """
    s, (logger, prefix) = session(trainer), log()
    assert s is not None  # attached to auto-plus trainers only (wiring.attach)
    memory.bind(s.device, trainer.device)
    phases = Phases()
    found, prober, picked, setup_seconds = _picked(trainer, s, world, phases)
    if found.status == "miss" and found.entry is not None:
        picked.notes.append(f"law cache not used: {found.detail}")
    large, lr, bound = _recipe(trainer, s, picked, prober, world)
    record = _record(trainer, s, picked, prober, found, phases, setup_seconds, large, lr, bound, world)
    if found.setup is not None and found.status != "hit":  # the law through the verified step, when there is one
        law = picked.peaks and refit_law(picked.model, picked.result, picked.batch, picked.peaks)
        lawcache.save(found, prober, picked, record, law or picked.model)
        record["cache"] = found.record()
    if world > 1:  # this rank's verified per-GPU pick: ddp_auto_batch agrees, scales lr0 and hands it to records
        records.proposed(s, record)
        return picked.batch
    records.decided(trainer, s, record)
    for line in decision_table(record):
        logger.info(f"{prefix}{line}")
    if _PLANNING.get():
        raise Planned(record, trainer.args.task)
    return picked.batch


def _picked(trainer: BaseTrainer, s: Session, world: int, phases):
    """The law cache's pick with its verified step, or the full probe's: ``(found, prober, picked, setup_seconds)``."""
    spec, t0 = s.spec, phases.start
    with phases("cache"):
        found = lawcache.lookup(trainer, spec, s.backend, _versions(), world)
    with borrowed(trainer, phases):
        with phases("setup"):
            prober = Prober(trainer, s.backend)
        setup_seconds = time.perf_counter() - t0
        picked = lawcache.cached_pick(trainer, prober, spec, s.backend, found, phases) if found.entry else None
        if picked is None:
            forced = found.status == "miss" and found.entry is not None  # the cache disagreed: prove the new law
            picked = _full(trainer, prober, with_overrides(spec, verify=True) if forced else spec, world, phases)
    return found, prober, picked, setup_seconds


def _recipe(trainer: BaseTrainer, s: Session, picked, prober, world: int):
    """Goodput's start, the large-batch recipe above nbs (speed, goodput) and the lr plan: ``(large, lr, bound)``."""
    spec, args, batch = s.spec, trainer.args, picked.batch
    bound = _fit_bound(picked.model, picked.budget, prober, spec)  # goodput's ceiling, from the law as refitted
    if spec.policy == "goodput" and world == 1:
        adapt.begin(s, picked.pace, bound)
    # speed, goodput above nbs: the large-batch recipe (lr per optimizer family, warm-up floor, bn_momentum auto)
    large = (
        recipe.large_batch(
            batch, args.nbs, args.optimizer, spec.lr_scaling, prober.dataset_size, trainer.epochs, args.warmup_epochs
        )
        if spec.policy in SPEEDS and world == 1
        else None
    )
    # lr_scaling at the pick (DDP: at the global batch, after agreeing); lrscale applies it once the optimizer is built
    lr = lrscale.plan(trainer, s, spec.lr_scaling, batch, large) if world == 1 else {}
    return large, lr, bound


def _record(trainer: BaseTrainer, s: Session, picked, prober, found, phases, setup_seconds, large, lr, bound, world):
    """The decision's record, built from the numbers alone by `decision_record.build`."""
    spec, args, batch, result, notes = s.spec, trainer.args, picked.batch, picked.result, picked.notes
    seconds = time.perf_counter() - phases.start
    if picked.flat:
        notes.insert(0, "memory grew below the meter's resolution between probe sizes: per-image memory taken as 0")
    switch = recipe.optimizer_note(args.optimizer, prober.dataset_size, batch * max(world, 1), args.nbs, trainer.epochs)
    said = [large.words()] if large else []
    reason = "; ".join([*picked.lead, picked.decision.reason, *said, *([switch] if switch else []), *notes])
    return decision_record.build(
        batch=batch,
        value=s.value,
        spec=spec,
        head=picked.head,
        budget=picked.budget,
        model=picked.model,
        probe_law=picked.probe_law,
        candidates=picked.decision.candidates,
        verified=picked.verified,
        reason=reason,
        seconds={
            "probe_seconds": result.seconds,
            "probe_setup_seconds": setup_seconds,
            "probe_warmup_seconds": result.warmup_seconds,
            "verify_seconds": picked.verify_seconds,
            "decision_seconds": seconds,
        },
        probe_points={"train": result.train, "val": result.val, "used": picked.used, "oom": result.oom},
        facts={
            "dataset_size": prober.dataset_size,
            "task": prober.task,
            "worst_case": prober.worst_case,
            "val_batch_factor": prober.val_factor,
            "max_labels_per_image": prober.max_labels,
            "imgsz": prober.max_size,
            "amp": bool(trainer.amp),
        },
        extra={
            "phase_seconds": phases.record(seconds),
            "cache": found.record(),
            "allocated_peaks": [list(a) for a in prober.allocated] or None,  # CUDA: every probe and verified step
            **record_fields(picked.pace, batch, result),
            "time_refit": picked.time_refit,
            "recipe": large.as_record() if large else None,
            # goodput: a plain resume rescales lr0 on from here when lr_scales
            **(
                {"goodput": {"fit_bound": bound, "goodput_gain": spec.goodput_gain, "lr_scales": s.lr.applies}}
                if s.switching.on
                else {}
            ),
            **lr,
            "versions": _versions(),
        },
    )


def _full(trainer: BaseTrainer, prober, spec: BatchSpec, world: int, phases):
    """The full decision: probe the memory law (and the pace), pick, verify (stepping down, refitting once)."""
    logger, prefix = log()
    logger.info(f"{prefix}probing real training steps at batch {', '.join(map(str, spec.probe_batches))}...")
    backend = prober.backend
    result = prober.run(spec.probe_batches, spec.probe_val)
    if len(result.train) < 2 and result.oom:  # the device is small: probe again at the smallest sizes
        result = prober.run((1, 2), spec.probe_val, result)
    if len(result.train) < 2:
        raise AutoPlusError(
            f"out of memory while probing batch {min(result.oom or [1])} at imgsz={trainer.args.imgsz}; {ADVICE}"
        )
    phases.add("warmup", result.warmup_seconds)
    phases.add("probe_steps", result.seconds - result.warmup_seconds)
    with phases("fit"):  # a flat law's extra probe steps count here
        train_law, used, flat = _fit(prober, result, spec)
        val_law = _fit_val(result)
        model = policy.MemoryModel(train_law, val_law, val_factor=prober.val_factor, val_batch=valbatch.wanted())
        backend.empty_cache()
        head = backend.headroom()
        budget = head.budget(spec.utilization)
        limit = _fit_bound(model, budget, prober, spec)
    # the time law and the dataloader's images/s: timing steps and a loader cost seconds: `speed`, `goodput` pay
    with phases("pace"):
        pace = measure_pace(trainer, prober, result, limit) if spec.policy in policy.SPEEDS else None
    with phases("policy"):
        decision = policy.choose(
            model,
            budget,
            spec,
            world=world,
            dataset_size=prober.dataset_size,
            fraction=trainer.args.fraction,
            pace=pace,
        )
    if decision.batch == 0:
        raise AutoPlusError(f"no batch fits: {decision.reason}")
    with phases("verify"):
        picked = _verified(trainer, prober, spec, world, model, decision, budget, result, pace)
    picked.result, picked.used, picked.flat, picked.head, picked.budget = result, used, flat, head, budget
    picked.verify_seconds = phases.seconds["verify"]
    return picked


def _verified(trainer: BaseTrainer, prober, spec: BatchSpec, world: int, model, decision, budget, result, pace):
    """Verify the pick (`spec.verify`): step down on out-of-memory, refit the law through the verified step once."""
    batch, notes, lead = decision.batch, [], []
    skipped = retime.checked(spec, model, batch, budget, result.step_seconds, pace)  # the cache's rule too
    checking = skipped is None
    if skipped is not None and spec.verify == "auto":
        notes.append(skipped)
    probe_law, refined, good = model, False, None  # good: the last verified (batch, peaks, model)
    while checking:
        peaks = prober.verify(batch, spec.probe_val)
        if peaks is None and good is not None:  # a refitted, larger pick ran out of memory: keep the proven one
            notes.append(f"verification at {batch} ran out of memory; back to the verified {good[0]}")
            batch, peaks, model, decision = good
            break
        if peaks is None:
            lower = policy.next_lower(batch, policy=spec.policy, candidates=spec.candidates, min_batch=spec.min_batch)
            notes.append(f"verification at {batch} ran out of memory, stepped down to {lower}")
            if lower == 0:
                raise AutoPlusError(
                    f"batch {spec.min_batch} runs out of memory at imgsz={trainer.args.imgsz}; {ADVICE}"
                )
            batch, refined = lower, True  # no refit toward a batch that ran out of memory
            continue
        if not refined:  # the verified step is a point far from the probe's: refit the law through it, once
            refined = True
            refit = refit_law(model, result, batch, peaks)
            again = refit and policy.choose(
                refit, budget, spec, world=world, dataset_size=prober.dataset_size, pace=pace
            )
            if again and again.batch not in (0, batch):
                err = model.train.at(batch) / peaks[0] - 1
                lead.append(
                    f"the probe's law put a step at {batch} at {gib(model.train.at(batch))}, it measured "
                    f"{gib(peaks[0])} ({err:+.1%}): law refitted through it"
                )
                good, model, batch, decision = (batch, peaks, model, decision), refit, again.batch, again
                continue
        break
    peaks = peaks if checking else None
    pace, decision, batch, peaks, refit = retime.settle(
        prober, spec, world, model, budget, pace, decision, batch, peaks, notes, lead
    )
    verified = max(p for p in peaks if p is not None) if peaks is not None else None
    picked = lawcache.Picked(
        batch, model, probe_law, None, [], False, pace, decision, None, budget, verified, notes, lead
    )
    picked.peaks, picked.time_refit = peaks, refit
    return picked


def ddp_auto_batch(trainer: BaseTrainer) -> int:
    """DDP worker: probe this rank's GPU alone, agree on the smallest per-GPU pick; return per-GPU x world."""
    s, world = session(trainer), trainer.world_size
    assert s is not None  # a DDP worker of an auto-plus launch (rebuild's first build)
    memory.bind(s.device, trainer.device)  # this rank's GPU, as Ultralytics' _setup_ddp set it
    with ddp.unwrapped(trainer):  # the bare module: no probe step runs a collective
        per_gpu, picks = ddp.agree(lambda: auto_batch(trainer, world=world), world)
    batch = per_gpu * world
    assert s.record is not None  # auto_batch proposed this rank's (records.proposed)
    fields = {**ddp.record_fields(s.record, picks, ddp.rank()), **lrscale.plan(trainer, s, s.spec.lr_scaling, batch)}
    records.decided(trainer, s, s.record, fields)  # rank 0 writes
    record = s.record
    assert record is not None
    if ddp.rank() == 0:
        logger, prefix = log()
        for line in decision_table({**record, "batch": record["local_batch"]}):
            logger.info(f"{prefix}{line}")
        logger.info(f"{prefix}{record['ddp_reason']}")
    return batch


def refit_law(model, result, batch: int, peaks: tuple[int, int | None]):
    """The memory law through the probe's largest step and the verified step at ``batch``; None if unusable.

    The probe's small batches overstate the per-image cost on a GPU (per-step buffers that do not grow with
    the batch, the allocator's rounding): on an H100 the yolo11s law from batches 2-8 over-predicted a step at
    200 by 11 %. A line through a measured point near the pick corrects that. The validation law is refitted
    the same way when the validation forward was measured.

    Examples:
        >>> from types import SimpleNamespace
        >>> from yolo_batch.core.policy import Law, MemoryModel
        >>> probe = SimpleNamespace(train=[(2, 300.0), (8, 900.0)], val=[(4, 100.0), (16, 400.0)])
        >>> m = refit_law(MemoryModel(Law(100, 100)), probe, 100, (8500, None))
        >>> round(m.train.at(8)), round(m.train.at(100)), m.val
        (900, 8500, None)
    """

    def through(points, x, y):
        if not points or y is None:
            return None
        x0, y0 = max(points)
        if x <= x0 or y <= y0:
            return None
        slope = (y - y0) / (x - x0)
        return Law(y0 - slope * x0, slope)

    train = through(result.train, batch, peaks[0])
    if train is None:
        return None
    val = through(result.val, batch * model.val_factor, peaks[1]) if model.val else None
    return MemoryModel(train, val or model.val, model.val_factor, model.val_batch)


def _fit_bound(model, budget: float, prober, spec: BatchSpec) -> int:
    """The largest batch the memory law puts within the budget, capped by the training set and ``max_batch``."""
    return min(model.max_batch(budget), prober.dataset_size, spec.max_batch)


def _fit(prober, result, spec):
    """Fit the training law; if the peaks did not grow, probe larger batches once, then accept a flat law."""
    try:
        return (*policy.fit_law(result.train), False)
    except ValueError:
        top = max(b for b, _ in result.train)
        larger = tuple(b for b in (top * 2, top * 4) if b <= min(prober.dataset_size, spec.max_batch))
        if larger and not result.oom:
            prober.run((top, *larger), val=False, result=result)
            try:
                return (*policy.fit_law(result.train), False)
            except ValueError:
                pass
    peak = max(p for _, p in result.train)
    return policy.Law(peak, 0.0), [(b, float(p)) for b, p in result.train], True


def _fit_val(result):

    try:
        return policy.fit_law(result.val)[0] if len(result.val) >= 2 else None
    except ValueError:
        return None


def _versions() -> dict[str, str]:
    import torch
    import ultralytics

    return {"yolo_batch": __version__, "ultralytics": ultralytics.__version__, "torch": torch.__version__}
