"""yolo-batch: choose the training batch from measured memory and log what it does, for Ultralytics YOLO.

``import yolo_batch`` activates the plugin (the installed startup hook does the same at Python start), so
``model.train(batch="auto-plus")`` and ``yolo train ... batch=auto-plus`` work. Set ``YOLO_BATCH_DISABLE=1``
to turn it off. Start-up cost is kept to a few imports of the standard library: everything else is loaded
on first use.
"""

from __future__ import annotations

from yolo_batch.activate import activate
from yolo_batch.version import __version__

__all__ = ("AutoPlus", "AutoPlusError", "BatchSpec", "activate", "callbacks", "resolve_spec", "__version__")

TYPE_CHECKING = False  # typing itself is not imported: it would cost start-up time
if TYPE_CHECKING:
    from yolo_batch import callbacks
    from yolo_batch.core.spec import AutoPlusError, BatchSpec, resolve_spec
    from yolo_batch.plugin import AutoPlus

_LAZY = {
    "AutoPlus": "yolo_batch.plugin",
    "AutoPlusError": "yolo_batch.core.spec",
    "BatchSpec": "yolo_batch.core.spec",
    "resolve_spec": "yolo_batch.core.spec",
}


def __getattr__(name: str) -> object:
    """Load the public API on first access (Python start-up pays for none of it)."""
    import importlib

    if name == "callbacks":
        return importlib.import_module("yolo_batch.callbacks")
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'yolo_batch' has no attribute {name!r}")


activate()
