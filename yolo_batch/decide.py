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

from yolo_batch.core.policy import ADVICE, gib
from yolo_batch.core.spec import AutoPlusError, BatchSpec, with_overrides
from yolo_batch.session import log, session

if TYPE_CHECKING:
    from ultralytics.engine.trainer import BaseTrainer


VERIFY_MARGIN = 0.5  # verify: auto proves picks whose predicted peak is above this share of the budget...
VERIFY_CHEAP_S = 1.0  # ...or whose step (estimated from the probe) takes at most this long


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


def auto_batch(trainer, world: int = 1) -> int:
    """Probe (or check the law cache), decide, verify and report; return the batch (per GPU when ``world`` > 1)."""
    from yolo_batch import adapt, lawcache, lrscale, memory, records
    from yolo_batch.core import decision_record, recipe
    from yolo_batch.core.pace_record import record_fields
    from yolo_batch.core.phases import Phases
    from yolo_batch.core.policy import SPEEDS
    from yolo_batch.probe import Prober, borrowed

    s, (logger, prefix) = session(trainer), log()
    assert s is not None  # attached to auto-plus trainers only (wiring.attach)
    spec = s.spec
    memory.bind(s.device, trainer.device)
    phases = Phases()
    t0 = phases.start
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
    batch, model, probe_law, result, used, flat = (
        picked.batch, picked.model, picked.probe_law, picked.result, picked.used, picked.flat,
    )  # fmt: skip
    pace, decision, head, budget, verified = picked.pace, picked.decision, picked.head, picked.budget, picked.verified
    notes, lead, verify_seconds = picked.notes, picked.lead, picked.verify_seconds
    if found.status == "miss" and found.entry is not None:
        notes.append(f"law cache not used: {found.detail}")
    bound = _fit_bound(model, budget, prober, spec)  # goodput's ceiling, from the law as refitted
    if spec.policy == "goodput" and world == 1:
        adapt.begin(s, pace, bound)
    args = trainer.args
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
    seconds = time.perf_counter() - t0
    if flat:
        notes.insert(0, "memory grew below the meter's resolution between probe sizes: per-image memory taken as 0")
    switch = recipe.optimizer_note(args.optimizer, prober.dataset_size, batch * max(world, 1), args.nbs, trainer.epochs)
    said = [large.words()] if large else []
    reason = "; ".join([*lead, decision.reason, *said, *([switch] if switch else []), *notes])
    s.record = decision_record.build(
        batch=batch,
        value=s.value,
        spec=spec,
        head=head,
        budget=budget,
        model=model,
        probe_law=probe_law,
        candidates=decision.candidates,
        verified=verified,
        reason=reason,
        seconds={
            "probe_seconds": result.seconds,
            "probe_setup_seconds": setup_seconds,
            "probe_warmup_seconds": result.warmup_seconds,
            "verify_seconds": verify_seconds,
            "decision_seconds": seconds,
        },
        probe_points={"train": result.train, "val": result.val, "used": used, "oom": result.oom},
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
            **record_fields(pace, batch, result),
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
    if found.setup is not None and found.status != "hit":  # the law through the verified step, when there is one
        law = picked.peaks and refit_law(model, result, batch, picked.peaks)
        lawcache.save(found, prober, picked, s.record, law or model)
        s.record["cache"] = found.record()
    if world > 1:
        return batch  # this rank's verified per-GPU pick: ddp_auto_batch agrees, scales lr0 and writes
    records.decided(trainer, s)
    for line in decision_table(s.record):
        logger.info(f"{prefix}{line}")
    if _PLANNING.get():
        raise Planned(s.record, trainer.args.task)
    return batch


def _full(trainer: BaseTrainer, prober, spec: BatchSpec, world: int, phases):
    """The full decision: probe the memory law (and the pace), pick, verify (stepping down, refitting once)."""
    from yolo_batch import ddp, valbatch
    from yolo_batch.core import policy
    from yolo_batch.loader import measure_pace

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
        decision = ddp.per_gpu_decision(
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
    from yolo_batch import ddp, lawcache, retime
    from yolo_batch.core import policy

    batch, notes, lead = decision.batch, [], []
    step_s = _step_estimate(result, batch)
    near = model.peak(batch) > VERIFY_MARGIN * budget
    cheap = step_s <= VERIFY_CHEAP_S or retime.far(pace, batch)  # a far pick is timed: its step verifies it too
    checking = spec.verify is True or (spec.verify == "auto" and (near or cheap))
    if spec.verify == "auto" and not checking:
        notes.append(
            f"not verified: the predicted peak is under {VERIFY_MARGIN:.0%} of the budget and a step at "
            f"{batch} would take ~{step_s:.0f}s"
        )
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
            again = refit and ddp.per_gpu_decision(
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
    retimed = retime.retimed(prober, spec, world, model, budget, pace, batch, peaks is not None) if pace else None
    refit = None
    if retimed is not None:
        pace, again, refit, words = retimed
        lead.append(words)
        if again.batch != batch:  # at most the timed batch: memory verified above it
            if peaks is not None:
                top = gib(max(p for p in peaks if p is not None))
                notes.append(f"memory verified at {batch} ({top}), above the pick")
            batch, peaks = again.batch, None
        decision = again  # its reason and candidates stand on the refitted law
    verified = max(p for p in peaks if p is not None) if peaks is not None else None
    picked = lawcache.Picked(
        batch, model, probe_law, None, [], False, pace, decision, None, budget, verified, notes, lead
    )
    picked.peaks, picked.time_refit = peaks, refit
    return picked


def ddp_auto_batch(trainer: BaseTrainer) -> int:
    """DDP worker: probe this rank's GPU alone, agree on the smallest per-GPU pick; return per-GPU x world."""
    from yolo_batch import ddp, lrscale, memory, records

    s, world = session(trainer), trainer.world_size
    assert s is not None  # a DDP worker of an auto-plus launch (rebuild's first build)
    memory.bind(s.device, trainer.device)  # this rank's GPU, as Ultralytics' _setup_ddp set it
    with ddp.unwrapped(trainer):  # the bare module: no probe step runs a collective
        per_gpu, picks = ddp.agree(lambda: auto_batch(trainer, world=world), world)
    batch = per_gpu * world
    assert s.record is not None  # auto_batch built this rank's
    fields = {**ddp.record_fields(s.record, picks, ddp.rank()), **lrscale.plan(trainer, s, s.spec.lr_scaling, batch)}
    records.decided(trainer, s, fields)  # rank 0 writes
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
    from yolo_batch.core.policy import Law, MemoryModel

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


def _step_estimate(result, batch: int) -> float:
    """Seconds of one verification at ``batch`` (a training step and the 2x validation forward), from the probe."""
    if not result.step_seconds:
        return float("inf")
    largest = max(result.step_seconds)
    return result.step_seconds[largest] / largest * batch


def _fit_bound(model, budget: float, prober, spec: BatchSpec) -> int:
    """The largest batch the memory law puts within the budget, capped by the training set and ``max_batch``."""
    return min(model.max_batch(budget), prober.dataset_size, spec.max_batch)


def _fit(prober, result, spec):
    """Fit the training law; if the peaks did not grow, probe larger batches once, then accept a flat law."""
    from yolo_batch.core import policy

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
    from yolo_batch.core import policy

    try:
        return policy.fit_law(result.val)[0] if len(result.val) >= 2 else None
    except ValueError:
        return None


def decision_table(r: dict[str, Any]) -> list[str]:
    """The decision as log lines: headroom, one row per candidate, the pick and why."""
    from yolo_batch.core.pace_record import law_line

    speed = any(c.get("predicted_images_per_s") for c in r["candidates"])

    def ips(value) -> str:
        return f" {value or '-':>9}" if speed else ""

    lines = [
        f"{r['device']} usable {gib(r['free_bytes'] + r['held_bytes'])} "
        f"x utilization {r['utilization']:.2f} = budget {gib(r['budget_bytes'])}; "
        f"memory law {gib(r['fixed_bytes'])} + {r['per_image_bytes'] / 2**20:.1f} MiB/image",
        *([law_line(r)] if r.get("speed") else []),
        f"{'batch':>7} {'predicted peak':>15} {'fits':>5}" + (f" {'images/s':>9}" if speed else ""),
    ]
    for c in r["candidates"]:
        mark = "  <- pick" if c["batch"] == r["batch"] else f"  above {c['cap']}" if c.get("cap") else ""
        fits = f"{'yes' if c['fits'] else 'no':>5}{ips(c.get('predicted_images_per_s'))}"
        lines.append(f"{c['batch']:>7} {gib(c['predicted_peak_bytes']):>15} {fits}{mark}")
    if r["batch"] not in [c["batch"] for c in r["candidates"]]:
        pick_ips = ips(r.get("predicted_images_per_s"))
        lines.append(f"{r['batch']:>7} {gib(r['predicted_peak_bytes']):>15} {'yes':>5}{pick_ips}  <- pick")
    verified = r["verified_peak_bytes"]
    check = ""
    if verified:
        err = (r["predicted_peak_bytes"] - verified) / verified * 100
        check = f"; verified peak {gib(verified)} (prediction {err:+.1f}%)"
    lines.append(f"batch={r['batch']} ({r['policy']}): {r['reason']}{check}; decided in {r['decision_seconds']:.1f}s")
    return lines


def _versions() -> dict[str, str]:
    import torch
    import ultralytics

    from yolo_batch.version import __version__

    return {"yolo_batch": __version__, "ultralytics": ultralytics.__version__, "torch": torch.__version__}
