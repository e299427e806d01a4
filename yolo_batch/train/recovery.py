"""Out of memory, anywhere in an auto-plus run: step the batch down and go on, or stop with a resumable message.

Ultralytics halves the batch after an out-of-memory error in the first epoch only (at most 3 times per
epoch). `rebuild` makes every epoch eligible and calls `step_down`, which replaces the halving with the
policy's next lower batch; `guarded_validate` halves the validation batch; `guarded_train` turns what cannot
be absorbed into one clear line. Writes `session.OomState`. These are instance attributes of auto-plus
trainers only.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from yolo_batch.core import policy
from yolo_batch.core.spec import AutoPlusError
from yolo_batch.device.memory import is_oom
from yolo_batch.record import records
from yolo_batch.session import log, session
from yolo_batch.train import adapt, valbatch

if TYPE_CHECKING:
    from ultralytics.engine.trainer import BaseTrainer


def halved(s, old: int, new: int) -> None:
    """A measured run's batch went from ``old`` down to ``new`` (Ultralytics' own halving): one event per half."""
    s.oom.events += round(math.log2(old / new))


def guarded_train(trainer: BaseTrainer, original):
    """Turn an out-of-memory error that recovery could not absorb into one clear, resumable message."""
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


def step_down(trainer, s, old: int) -> int:
    """`rebuild`'s out-of-memory step-down, before the pipeline is rebuilt: the policy's next lower batch than ``old``.

    Ultralytics halved the batch; the policy's next lower batch replaces that half. The change joins the history
    once the epoch at the new batch finished (`records.changed`).

    Raises:
        AutoPlusError: When no batch >= ``min_batch`` is left.
    """
    spec = s.spec
    new = policy.next_lower(old, policy=spec.policy, candidates=spec.candidates, min_batch=spec.min_batch)
    if new == 0:
        raise AutoPlusError(
            f"out of memory at batch {old} and no smaller batch >= min_batch {spec.min_batch} is left; {policy.ADVICE}"
        )
    s.oom.events += 1
    adapt.after_oom(s, new)
    words = f"out of memory at {old}"
    entry = {"source": "oom", "batch": new, "previous_batch": old, "reason": words, "from_epoch": trainer.epoch + 1}
    records.changed(trainer, s, entry, words)  # joins the history once the epoch at `new` finished
    logger, prefix = log()
    logger.warning(
        f"{prefix}out of memory at batch {old} in epoch {trainer.epoch + 1}; redoing the epoch at batch {new} "
        f"(step-down {s.oom.events} of at most {spec.oom_retries}; finished epochs are kept)"
    )
    return new


def restarts_left(s) -> bool:
    """True while out-of-memory step-downs are left (``oom_retries``): the next epoch may restart."""
    return s.oom.events < s.spec.oom_retries


def guarded_validate(trainer: BaseTrainer, original):
    """Validate; on out-of-memory (detect validates at 2x the batch) halve the validation batch and retry."""
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
        valbatch.lower(s, new)  # a fixed validation batch (YOLO_BATCH_VAL_BATCH) steps down too
        split = trainer.data.get(trainer.args.split) or trainer.data.get("val")
        trainer.test_loader = trainer.get_dataloader(split, batch_size=new, rank=-1, mode="val")
        trainer.validator.dataloader = trainer.test_loader  # type: ignore[attr-defined]  # Ultralytics types it None
        logger, prefix = log()
        logger.warning(
            f"{prefix}out of memory validating at batch {loader.batch_size}; validating at {new} "
            f"(step-down {s.oom.events} of at most {s.spec.oom_retries})"
        )
