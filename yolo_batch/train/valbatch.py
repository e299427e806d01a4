"""A fixed validation batch for runs that ask for one: ``YOLO_BATCH_VAL_BATCH=N`` (set by ``yolo-batch sweep``).

Ultralytics validates during training at twice the training batch (detect, segment, pose, classify; obb at the
batch itself), with letterboxed rect batches whose padding follows the batch: the same weights get a slightly
different mAP at another validation batch (yolov5 #5168). No stock ``yolo train`` argument sets it (``batch``
sets both), so a sweep that compares training at several batches holds the validation batch fixed through
this variable. The plugin reads it only in runs it already sees (auto-plus runs, ``YOLO_BATCH_OBSERVE=1``);
without it every run validates as stock.

`attach` gives the trainer an instance-level ``get_dataloader`` that builds validation loaders at ``N``; an
out-of-memory step-down in validation (`recovery.guarded_validate`, through `lower`) lowers ``N`` for the rest of
the run. This module alone writes the session's ``val_batch``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from yolo_batch import port
from yolo_batch.core.spec import AutoPlusError
from yolo_batch.session import log, session

if TYPE_CHECKING:
    from ultralytics.engine.trainer import BaseTrainer

    from yolo_batch.session import Session


ENV = "YOLO_BATCH_VAL_BATCH"


def wanted() -> int | None:
    """The validation batch ``YOLO_BATCH_VAL_BATCH`` asks for, or None when it is unset or empty.

    Raises:
        AutoPlusError: For a value that is not an integer >= 1 (one line).

    Examples:
        >>> os.environ[ENV] = "32"; wanted()
        32
        >>> del os.environ[ENV]; wanted() is None
        True
    """
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise AutoPlusError(f"{ENV}={raw!r} is invalid; it must be an integer >= 1 (the validation batch), or unset")
    return value


def attach(trainer: BaseTrainer, session: Session) -> None:
    """Validate at the fixed batch in this run, when ``YOLO_BATCH_VAL_BATCH`` asks for one (and say so)."""
    session.val_batch = wanted()
    if session.val_batch is not None:
        port.wrap(trainer, "get_dataloader", _get_dataloader, trainer)  # this trainer only

        logger, prefix = log()
        logger.info(f"{prefix}validating at batch {session.val_batch} in every epoch ({ENV})")


def lower(session, new: int) -> None:
    """After running out of memory in validation: the fixed validation batch (if any) is ``new`` from now on."""
    if session.val_batch:
        session.val_batch = new


def _get_dataloader(trainer, original, dataset_path, batch_size=16, rank=0, mode="train"):
    """Ultralytics' ``get_dataloader``, with validation loaders at the session's fixed batch."""
    s = session(trainer)
    fixed = s.val_batch if s is not None else None
    if mode == "val" and fixed:
        batch_size = fixed
    return original(dataset_path, batch_size=batch_size, rank=rank, mode=mode)
