"""The startup hook and the two Ultralytics patch points.

The installed ``yolo_batch.pth`` imports this package at Python start. All that costs is this module (the
standard library's ``os`` and ``sys``, already loaded): a finder on ``sys.meta_path`` waits for Ultralytics
to be imported and then patches, narrowly,

- ``ultralytics.engine.trainer.BaseTrainer.__init__``: a run whose batch value starts with ``auto-plus``
  (or that registered `AutoPlus`, or added ``yolo_batch.callbacks``) gets the plugin's callbacks and its
  own ``auto_batch``; every other run goes straight to the original, untouched;
- ``ultralytics.cfg.entrypoint``: the ``yolo`` command checks an auto-plus value before building the model
  and turns the plugin's errors into one line and exit status 2.

``YOLO_BATCH_DISABLE=1`` turns all of it off (`env_switch` reads every on/off variable by one rule).
"""

from __future__ import annotations

import os
import sys

SUPPORTED = ("8.3.", "8.4.")  # Ultralytics releases this plugin is tested with
_TARGETS = ("ultralytics.engine.trainer", "ultralytics.cfg")
_MARK = "_yolo_batch_patched"


SWITCH_ON, SWITCH_OFF = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")
_warned: set = set()


def env_switch(name: str) -> bool:
    """Read a yolo-batch on/off environment variable (``YOLO_BATCH_DISABLE``, ``YOLO_BATCH_OBSERVE``).

    One rule for every switch, any case, spaces ignored: ``1``, ``true``, ``yes``, ``on`` turn it on; ``0``,
    ``false``, ``no``, ``off``, empty or unset leave it off. Any other value prints one warning line (once per
    variable and process) and counts as on, as a variable set to something usually means.

    Args:
        name (str): The variable.

    Returns:
        (bool): Whether the switch is on.
    """
    raw = os.environ.get(name, "")
    value = raw.strip().lower()
    if value in SWITCH_ON or value in SWITCH_OFF:
        return value in SWITCH_ON
    if name not in _warned:
        _warned.add(name)
        print(
            f"yolo-batch: {name}={raw!r} is not an on/off value (on: {', '.join(SWITCH_ON)}; off: "
            f"{', '.join(SWITCH_OFF[:-1])} or empty); taking it as on",
            file=sys.stderr,
        )
    return True


def disabled() -> bool:
    """True when ``YOLO_BATCH_DISABLE`` is on (see `env_switch` for the values)."""
    return env_switch("YOLO_BATCH_DISABLE")


class _PatchingLoader:
    """Runs the real loader, then patches the freshly executed module."""

    def __init__(self, loader, name: str) -> None:
        self.loader, self.name = loader, name

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        self.loader.exec_module(module)
        _patch(self.name, module)

    def __getattr__(self, attr: str):
        return getattr(self.loader, attr)


class _Finder:
    """A meta-path finder that only ever answers for the two Ultralytics modules it patches."""

    def find_spec(self, name: str, path=None, target=None):
        if name not in _TARGETS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _PatchingLoader(spec.loader, name)
                return spec
        return None


_FINDER = _Finder()


def activate() -> bool:
    """Make Ultralytics accept ``batch=auto-plus``: patch now if it is imported, else when it is.

    Returns:
        (bool): False when ``YOLO_BATCH_DISABLE`` is set, else True. Calling it again is harmless.
    """
    if disabled():
        return False
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
    for name in _TARGETS:
        if name in sys.modules:
            _patch(name, sys.modules[name])
    return True


def _supported(warn: bool = True) -> bool:
    version = getattr(sys.modules.get("ultralytics"), "__version__", "")
    if version.startswith(SUPPORTED):
        return True
    if warn and not getattr(_FINDER, "warned", False):
        _FINDER.warned = True
        releases = ", ".join(s + "x" for s in SUPPORTED)
        print(
            f"yolo-batch: Ultralytics {version or '?'} is not a supported release ({releases}); "
            "auto-plus is off and training is left alone",
            file=sys.stderr,
        )
    return False


def _patch(name: str, module) -> None:
    """Apply the patch for ``name`` once, on a supported Ultralytics release."""
    if getattr(module, _MARK, False) or not _supported():
        return
    if name == "ultralytics.engine.trainer":
        _patch_trainer(module)
    elif name == "ultralytics.cfg":
        _patch_entrypoint(module)
    setattr(module, _MARK, True)


def _patch_trainer(module) -> None:
    import functools

    original = module.BaseTrainer.__init__
    default_cfg = module.DEFAULT_CFG

    @functools.wraps(original)
    def __init__(self, cfg=default_cfg, overrides=None, _callbacks=None):
        from yolo_batch import callbacks

        planned = callbacks.plan(cfg, overrides, _callbacks)
        if planned is None:  # not ours: the stock trainer, untouched
            return original(self, cfg, overrides, _callbacks)
        overrides, _callbacks, session = planned
        setattr(self, callbacks.ATTR, session)
        original(self, cfg, overrides, _callbacks)
        callbacks.attach(self)

    __init__.__wrapped_by__ = "yolo_batch"
    module.BaseTrainer.__init__ = __init__


def _patch_entrypoint(module) -> None:
    import functools

    original = module.entrypoint

    @functools.wraps(original)
    def entrypoint(debug: str = ""):
        from yolo_batch.spec import AutoPlusError

        try:
            _check_cli(module, debug.split(" ") if debug else sys.argv[1:])
            return original(debug)
        except AutoPlusError as e:
            print(f"yolo-batch: error: {e}", file=sys.stderr)
            raise SystemExit(2) from None

    module.entrypoint = entrypoint


def _check_cli(module, args: list[str]) -> None:
    """Validate an auto-plus batch value on the ``yolo`` command line before Ultralytics builds the model."""
    from yolo_batch.spec import looks_like_auto_plus, resolve_spec

    pairs = dict(a.split("=", 1) for a in module.merge_equals_args(args) if "=" in a)
    value = pairs.get("batch")
    if value is None and pairs.get("cfg"):
        from pathlib import Path

        import yaml

        path = Path(pairs["cfg"])
        data = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
        value = data.get("batch") if isinstance(data, dict) else None
    if looks_like_auto_plus(value) and "train" in args:
        resolve_spec(value)
