"""``BaseTrainer._do_train``'s restart state, and the loggers' private reads: the port's attribute side.

Ultralytics 8.4 restarts an epoch after an out-of-memory error while ``epoch == start_epoch`` and
``_oom_retries < 3`` (`RESTART_CAP`); its restart rebuilds the pipeline and recomputes ``accumulate``. `rebuild`
steers that restart through these functions alone: `open_restart` / `close_restart` hold and put back the
``start_epoch`` gate, `oom_retries` / `end_restarts` read and spend the counter, `swap_train_loader` puts the
switch's stand-in in place, `accumulate` / `set_accumulate` save and restore the stand-in iteration's warm-up.
The lines they rely on are checked at attach time (`yolo_batch.port.fingerprint`).
"""

from __future__ import annotations

import sys
from typing import Any

RESTART_CAP = 3  # Ultralytics' "self._oom_retries >= 3": no restart past it (the fingerprint pins the line)


def oom_retries(trainer: Any) -> int:
    """Ultralytics' out-of-memory restarts so far in this epoch (``_oom_retries``; 0 where the release has none)."""
    return int(getattr(trainer, "_oom_retries", 0))


def end_restarts(trainer: Any) -> None:
    """No more restarts this epoch: the next out-of-memory error raises (the counter at `RESTART_CAP`)."""
    trainer._oom_retries = RESTART_CAP


def open_restart(trainer: Any) -> int:
    """Let the epoch that runs restart (``start_epoch = epoch``); return the ``start_epoch`` it replaced."""
    held = int(trainer.start_epoch)
    trainer.start_epoch = trainer.epoch
    return held


def close_restart(trainer: Any, held: int) -> None:
    """Put ``start_epoch`` back (before the checkpoint and a resume read it)."""
    trainer.start_epoch = held


def accumulate(trainer: Any) -> int:
    """The loop's gradient accumulation now (the warm-up ramps it)."""
    return int(trainer.accumulate)


def set_accumulate(trainer: Any, value: int) -> None:
    """Put the loop's gradient accumulation back to ``value``."""
    trainer.accumulate = value


def swap_train_loader(trainer: Any, loader: Any) -> Any:
    """Make ``loader`` the one the epoch iterates next; return the one it replaced."""
    old, trainer.train_loader = trainer.train_loader, loader
    return old


def mlflow_active(trainer: Any) -> bool:
    """Ultralytics' MLflow callback started or found a run for this trainer (8.4's ``_mlflow_active``; 8.3: True)."""
    return bool(getattr(trainer, "_mlflow_active", True))


def comet_step(trainer: Any) -> tuple[Any, Any]:
    """(step, epoch) as Ultralytics' Comet callback logs them (its ``_fetch_trainer_metadata``)."""
    meta = sys.modules["ultralytics.utils.callbacks.comet"]._fetch_trainer_metadata(trainer)
    return meta["curr_step"], meta["curr_epoch"]
