"""Out of memory, anywhere in an auto-plus run: step the batch down and go on, or stop with a resumable message.

Ultralytics halves the batch after an out-of-memory error in the first epoch only (at most 3 times per
epoch). `callbacks.on_train_epoch_start` makes every epoch eligible while it runs; `step_down` replaces the
halving with the policy's next lower batch; `guarded_validate` halves the validation batch; `guarded_train`
turns what cannot be absorbed into one clear line. These are instance attributes of auto-plus trainers only.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from yolo_batch.session import log, session
from yolo_batch.spec import AutoPlusError

if TYPE_CHECKING:
    from ultralytics.engine.trainer import BaseTrainer

    from yolo_batch.session import Session


def open_epoch(trainer: BaseTrainer, s: Session) -> None:
    """At an epoch's start (auto-plus and resumed goodput runs): every epoch may restart after running out of memory.

    Ultralytics recovers from an out-of-memory error only while ``epoch == start_epoch``: ``start_epoch`` is held
    here and set to this epoch while it runs (`close_epoch` puts it back before anything else reads it), within
    ``oom_retries`` (past it Ultralytics' own cap of 3 makes the next one raise, and `guarded_train` explain it).
    """
    oom = s.oom
    if oom.start_epoch is None:
        oom.start_epoch = trainer.start_epoch
    trainer.start_epoch = trainer.epoch
    oom.retries_seen = getattr(trainer, "_oom_retries", 0)
    if oom.events >= s.spec.oom_retries:
        trainer._oom_retries = 3


def close_epoch(trainer: BaseTrainer, s: Session) -> None:
    """At an epoch's training end: Ultralytics' ``start_epoch`` back as it was."""
    if s.oom.start_epoch is not None:
        trainer.start_epoch, s.oom.start_epoch = s.oom.start_epoch, None


def halved(s: Session, old: int, new: int) -> None:
    """A measured run's batch went from ``old`` down to ``new`` (Ultralytics' own halving): one event per half."""
    s.oom.events += round(math.log2(old / new))


def guarded_train(trainer: BaseTrainer, original):
    """Turn an out-of-memory error that recovery could not absorb into one clear, resumable message."""
    from yolo_batch.memory import is_oom

    try:
        return original()
    except RuntimeError as e:
        s = session(trainer)
        if not is_oom(e) or s is None:
            raise
        last = Path(trainer.last)
        where = f"epoch {trainer.epoch + 1}" if hasattr(trainer, "epoch") else "set-up"
        resume = (
            f"the last finished epoch is saved: yolo train resume model={last} batch=N"
            if last.exists()
            else "no epoch finished, nothing to resume"
        )
        raise AutoPlusError(
            f"out of memory at batch {trainer.batch_size} in {where} after {s.oom.events} step-down(s) "
            f"(oom_retries={s.spec.oom_retries}); {resume}"
        ) from e


def step_down(trainer: BaseTrainer, original):
    """Rebuild the data pipeline; after an OOM, at the plugin's next lower batch instead of Ultralytics' half.

    A goodput switch comes through here too (`adapt`): the same restart, at the batch goodput chose.
    """
    from yolo_batch import lrscale, policy, records

    s = session(trainer)
    assert s is not None  # attached to auto-plus trainers only (wiring.attach)
    if s.worker and s.oom.train_batch is None:  # DDP worker, first build: agree on the batch with the other ranks
        from yolo_batch.decide import ddp_auto_batch

        trainer.args.batch = trainer.batch_size = ddp_auto_batch(trainer)
    retries = getattr(trainer, "_oom_retries", 0)
    from yolo_batch import adapt

    if s.oom.train_batch is not None and retries > s.oom.retries_seen and adapt.pending(trainer, s):
        adapt.switch(trainer, s)  # goodput: the restart was a batch switch, through the same rebuild
    elif s.oom.train_batch is not None and retries > s.oom.retries_seen:  # Ultralytics caught an OOM mid-epoch
        old, spec = s.oom.train_batch, s.spec
        new = policy.next_lower(old, policy=spec.policy, candidates=spec.candidates, min_batch=spec.min_batch)
        if new == 0:
            raise AutoPlusError(
                f"out of memory at batch {old} and no smaller batch >= min_batch {spec.min_batch} is left; "
                f"{policy.ADVICE}"
            )
        s.oom.events += 1
        trainer.args.batch = trainer.batch_size = new
        adapt.after_oom(s, new)
        words = f"out of memory at {old}"
        entry = {"source": "oom", "batch": new, "previous_batch": old, "reason": words, "from_epoch": trainer.epoch + 1}
        records.changed(trainer, s, entry, words)  # joins the history once the epoch at `new` finished
        logger, prefix = log()
        logger.warning(
            f"{prefix}out of memory at batch {old} in epoch {trainer.epoch + 1}; redoing the epoch at batch {new} "
            f"(step-down {s.oom.events} of at most {spec.oom_retries}; finished epochs are kept)"
        )
    s.oom.retries_seen = retries
    result = original()
    s.oom.train_batch = trainer.batch_size
    lrscale.follow(trainer, s)  # lr_scaling follows the batch that trains (a no-op before the optimizer is scaled)
    return result


def guarded_validate(trainer: BaseTrainer, original):
    """Validate; on out-of-memory (detect validates at 2x the batch) halve the validation batch and retry."""
    from yolo_batch.memory import is_oom

    s = session(trainer)
    assert s is not None  # attached to auto-plus trainers only (wiring.attach)
    while True:
        try:
            return original()
        except RuntimeError as e:
            loader = trainer.test_loader
            if not is_oom(e) or loader.batch_size <= 1 or s.oom.events >= s.spec.oom_retries:
                raise
        s.oom.events += 1
        s.backend.empty_cache() if s.backend else None
        new = max(loader.batch_size // 2, 1)
        if s.val_batch:  # a fixed validation batch (YOLO_BATCH_VAL_BATCH) steps down too
            s.val_batch = new
        split = trainer.data.get(trainer.args.split) or trainer.data.get("val")
        trainer.test_loader = trainer.get_dataloader(split, batch_size=new, rank=-1, mode="val")
        trainer.validator.dataloader = trainer.test_loader  # type: ignore[attr-defined]  # Ultralytics types it None
        logger, prefix = log()
        logger.warning(
            f"{prefix}out of memory validating at batch {loader.batch_size}; validating at {new} "
            f"(step-down {s.oom.events} of at most {s.spec.oom_retries})"
        )
