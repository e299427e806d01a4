"""The port: the one place that reads or writes Ultralytics' internals on a live trainer.

Every read or write of a private (``_``-prefixed) Ultralytics attribute, of the loop state the plugin toggles
(``start_epoch``, ``accumulate``, the training loader's swap), and every instance-level method replacement goes
through here. A release that changes one of them changes one file of this package:

- `methods`: the trainer methods the plugin may replace on one instance (`METHODS`, one row each), `wrap`,
  `replace`, `wrapper`;
- `loop`: ``_do_train``'s restart state (``_oom_retries``, the ``start_epoch`` gate, ``accumulate``, the
  training loader) and the loggers' private reads;
- `fingerprint`: the installed release's lines the plugin relies on, checked once per process (`check`).

``tests/test_layout.py`` holds the rule: no module outside this package touches a private attribute of an
Ultralytics object or assigns a method on a trainer. Importing this package costs the standard library only.
"""

from __future__ import annotations

from yolo_batch.port.fingerprint import Support, check
from yolo_batch.port.loop import (
    RESTART_CAP,
    accumulate,
    close_restart,
    comet_step,
    end_restarts,
    mlflow_active,
    oom_retries,
    open_restart,
    set_accumulate,
    swap_train_loader,
)
from yolo_batch.port.methods import METHODS, replace, wrap, wrapper

__all__ = [
    "METHODS",
    "RESTART_CAP",
    "Support",
    "accumulate",
    "check",
    "close_restart",
    "comet_step",
    "end_restarts",
    "mlflow_active",
    "oom_retries",
    "open_restart",
    "replace",
    "set_accumulate",
    "swap_train_loader",
    "wrap",
    "wrapper",
]
