"""Policy ``goodput`` during training: choose at each epoch's end, switch through Ultralytics' out-of-memory restart.

At ``on_fit_epoch_end`` (after validation and the checkpoint, not after the last epoch) `after_epoch` notes the
epoch's noise-scale estimate and asks `goodput.choose` whether another batch that fits would train faster per
useful image. A switch is made at the next ``on_train_epoch_start`` (`arm`): the training loader is replaced,
for one iteration, by a stand-in whose one batch raises `BatchSwitch` inside Ultralytics' forward guard. Its
text names "out of memory", so Ultralytics' own in-epoch handler runs: it closes the loader, calls
``_build_train_pipeline`` (where `recovery.step_down` sets the new batch and calls `switch`), hands the
validator the new validation loader, resets the scheduler's epoch and its own loop state (batches per epoch,
warm-up iterations, the nominal accumulation, the optimizer-step cadence, the mosaic gate), zeroes the
gradients and restarts the epoch. So an upward switch rebuilds exactly as a step-down does: dataloaders,
``accumulate`` and weight decay as Ultralytics builds them for that batch, no image drawn from the old loader,
and the restart's own warning ("out of memory ... Reducing to batch=...") left out of the log, which says
what happened instead. The switch uses one of Ultralytics' three restarts of that epoch.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from yolo_batch.session import log

if TYPE_CHECKING:
    from ultralytics.engine.trainer import BaseTrainer

    from yolo_batch.session import Session


class BatchSwitch(RuntimeError):
    """Raised by the stand-in batch to enter Ultralytics' restart path; its text names that path."""


class _SwitchBatch(dict):
    """A batch whose first use raises `BatchSwitch` (inside Ultralytics' ``try`` around the forward)."""

    def __init__(self, old: int, new: int) -> None:
        super().__init__()
        self.message = (
            f"yolo-batch goodput switches the batch from {old} to {new} through Ultralytics' out of memory restart "
            "(no memory ran out)"
        )

    def _raise(self, *args: Any, **kwargs: Any):
        raise BatchSwitch(self.message)

    __getitem__ = get = items = keys = values = __iter__ = __contains__ = _raise


class _StandIn:
    """The training loader for one iteration: one `_SwitchBatch`, then the real loader is closed and rebuilt."""

    def __init__(self, loader, old: int, new: int) -> None:
        self.loader, self.old, self.new = loader, old, new
        self.dataset = None  # closing mosaic on the stand-in does nothing; the rebuilt loader closes it again

    def __iter__(self):
        yield _SwitchBatch(self.old, self.new)

    def __len__(self) -> int:
        return 1

    def reset(self) -> None:
        pass

    def close(self) -> None:
        if hasattr(self.loader, "close"):
            self.loader.close()


class _QuietRestart(logging.Filter):
    """Drops Ultralytics' "out of memory ... Reducing to batch=" warning of the one restart a switch causes."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("Reducing to batch=" in message and "retrying" in message)


def begin(s: Session, pace, fit_bound: int) -> None:
    """Policy goodput from here: switch at epoch ends on ``pace``, up to ``fit_bound``."""
    s.switching.on, s.switching.pace, s.switching.fit_bound = True, pace, fit_bound


def after_epoch(trainer: BaseTrainer, s: Session) -> None:
    """Note the epoch's noise scale; for ``goodput``, decide the batch of the next epoch (not after the last)."""
    state, noise = s.switching, s.meter.noise
    state.readings.append(noise.value if noise is not None else None)
    if not state.on or state.pace is None or not (s.decides or s.adapts) or s.worker:
        return
    if trainer.stop or trainer.epoch + 1 >= trainer.epochs:
        return
    from yolo_batch import goodput

    spec = s.spec
    choice = goodput.choose(
        state.pace,
        current=trainer.batch_size,
        low=spec.min_batch,
        high=state.fit_bound,
        nbs=trainer.args.nbs,
        readings=list(state.readings),
        gain=spec.goodput_gain,
    )
    logger, prefix = log()
    if choice.batch is None:
        logger.info(f"{prefix}goodput after epoch {trainer.epoch + 1}: {choice.reason}")
        return
    state.choice = choice
    logger.info(f"{prefix}goodput after epoch {trainer.epoch + 1}: switching {trainer.batch_size} -> {choice.batch}")


def arm(trainer: BaseTrainer, s: Session) -> None:
    """At an epoch's start: put the stand-in loader in place for a switch decided at the last epoch's end."""
    state = s.switching
    if state.choice is None or isinstance(trainer.train_loader, _StandIn):
        return
    logger, prefix = log()
    if not hasattr(trainer, "_build_train_pipeline") or getattr(trainer, "_oom_retries", 0) >= 3:
        logger.warning(f"{prefix}goodput: no switch to {state.choice.batch}: the out-of-memory restarts are used up")
        state.choice = None
        return
    state.log_filter = _QuietRestart()
    logger.addFilter(state.log_filter)
    # the loop's warm-up step runs once for the stand-in's iteration: `switch` puts back what it set
    groups = [(g.get("lr"), g.get("momentum")) for g in trainer.optimizer.param_groups]  # type: ignore[attr-defined]  # Ultralytics types optimizer None
    state.saved = (groups, trainer.accumulate)
    trainer.train_loader = _StandIn(trainer.train_loader, trainer.batch_size, state.choice.batch)


def pending(trainer: BaseTrainer, s: Session) -> bool:
    """True inside ``_build_train_pipeline`` when the restart was a goodput switch."""
    return s.switching.choice is not None and isinstance(getattr(trainer, "train_loader", None), _StandIn)


def switch(trainer: BaseTrainer, s: Session) -> None:
    """Called by `recovery.step_down` before the rebuild: set the new batch, rescale lr0, record and log it."""
    from yolo_batch import goodput, lrscale, records

    logger, prefix = log()
    state = s.switching
    if state.log_filter is not None:
        logger.removeFilter(state.log_filter)
        state.log_filter = None
    old, choice = trainer.train_loader.old, state.choice
    state.choice = None
    groups, trainer.accumulate = state.saved
    for group, (lr, momentum) in zip(trainer.optimizer.param_groups, groups):  # type: ignore[attr-defined]  # Ultralytics types optimizer None
        group["lr"] = lr
        if momentum is not None:
            group["momentum"] = momentum
    new = choice.batch
    trainer.args.batch = trainer.batch_size = new
    lr = lrscale.follow(trainer, s)  # lr_scaling at the new batch, from the base lr0
    effective = goodput.effective(new, trainer.args.nbs)
    entry = {
        "source": "goodput",
        "policy": "goodput",
        "batch": new,
        "previous_batch": old,
        "effective_batch": effective,
        "lr0": lrscale.lr0_now(trainer, s),
        "lr_scaling": s.spec.lr_scaling,
        "reason": choice.reason,
        "from_epoch": trainer.epoch + 1,
    }
    records.changed(trainer, s, entry, f"goodput: {choice.reason}")  # joins the history once the epoch finished
    logger.warning(
        f"{prefix}goodput: batch {old} -> {new} from epoch {trainer.epoch + 1} (effective batch {effective}, "
        f"lr0 {lrscale.lr0_now(trainer, s):.6g}{lr}): {choice.reason}"
    )


def resumes_goodput(resume, s: Session) -> bool:
    """At a plain resume (``resume=.../last.pt``, no batch given): True when the run's latest decision is goodput.

    If so, the session takes the decision's settings (``goodput_gain``, ``min_batch``, ``oom_retries``...).
    """
    import json
    from pathlib import Path

    from yolo_batch.records import latest
    from yolo_batch.session import DECISION_FILE
    from yolo_batch.spec import KEYS, BatchSpec

    if not str(resume).endswith(".pt"):
        return False
    try:
        data = json.loads((Path(str(resume)).resolve().parent.parent / DECISION_FILE).read_text(encoding="utf-8"))
        top = latest(data.get("history") or [data])
        if not top or top.get("policy") != "goodput" or not top.get("goodput") or not top.get("speed"):
            return False
        s.spec = BatchSpec(**{k: v for k, v in (top.get("settings") or {}).items() if k in KEYS})
    except (OSError, ValueError, TypeError, AttributeError):
        return False
    return s.spec.policy == "goodput"


def resume(trainer: BaseTrainer, s: Session) -> None:
    """A resumed goodput run: the pace and fit bound from its decision (`lrscale` carries its lr_scaling on)."""
    from yolo_batch.throughput import pace_from_record

    record = s.record or {}
    kept = record.get("goodput") or {}
    begin(s, pace_from_record(record), int(kept.get("fit_bound") or trainer.batch_size))


def after_oom(s: Session, new: int) -> None:
    """After an out-of-memory step-down to ``new``: goodput never switches above it again."""
    state = s.switching
    if state.on:
        state.fit_bound = min(state.fit_bound, new)
    state.choice = None
