"""The trainer methods the plugin replaces on one auto-plus trainer (instance attributes; the class stays stock).

`METHODS` is the one table of them, each with its owner and why. `wrap` puts a wrapper in front of the
instance's method, `replace` swaps it (and gives the one it replaced back, to restore it), `wrapper` says
which function a `wrap` installed. Any other name is refused: a new replacement is a new row here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

METHODS: dict[str, str] = {
    "auto_batch": "decide: the decision, at Ultralytics' own AutoBatch moment in _setup_train",
    "train": "recovery.guarded_train: one line for an OOM it cannot absorb; ddp.launched: the DDP launcher",
    "validate": "recovery.guarded_validate: an OOM in validation halves the validation batch",
    "_build_train_pipeline": "rebuild: each pipeline build has one reason (DDP first build, switch, step-down)",
    "_get_warmup_iterations": "lrscale.warmup: the large-batch recipe's warm-up floor",
    "optimizer_step": "callbacks: the gradient-noise tap (reads .grad only)",
    "get_dataloader": "valbatch: validation loaders at YOLO_BATCH_VAL_BATCH",
}


def _method(name: str) -> str:
    if name not in METHODS:
        raise ValueError(f"{name!r} is not a trainer method the port replaces; it replaces {', '.join(METHODS)}")
    return name


def wrap(trainer: Any, name: str, fn: Callable[..., Any], *args: Any) -> bool:
    """Make ``trainer.<name>`` ``fn(*args, original, *call_args)`` on this instance only.

    Args:
        trainer: The trainer (an instance; its class is left alone).
        name (str): A method of `METHODS`.
        fn: The wrapper; it receives ``args``, then the method it wraps, then the call's own arguments.
        *args: Bound before the original (usually the trainer).

    Returns:
        (bool): False where the trainer has no such method (this release): nothing is wrapped.

    Raises:
        ValueError: For a name outside `METHODS`.

    Examples:
        >>> class T:
        ...     def validate(self): return 1
        >>> t = T(); wrap(t, "validate", lambda original: original() + 1), t.validate()
        (True, 2)
    """
    original = getattr(trainer, _method(name), None)
    if original is None:
        return False
    setattr(trainer, name, functools.partial(fn, *args, original))
    return True


def replace(trainer: Any, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """Make ``trainer.<name>`` ``fn`` on this instance; return the one it replaced (to put it back).

    Raises:
        ValueError: For a name outside `METHODS`.
        AttributeError: Where the trainer has no such method.
    """
    original = getattr(trainer, _method(name))
    setattr(trainer, name, fn)
    return original


def wrapper(trainer: Any, name: str) -> Callable[..., Any] | None:
    """The function a `wrap` put in front of ``trainer.<name>``, or None (the class's own, or none at all)."""
    return getattr(vars(trainer).get(_method(name)), "func", None) if hasattr(trainer, "__dict__") else None
