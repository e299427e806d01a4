"""The startup hook and the Ultralytics patch points.

The installed ``yolo_batch.pth`` imports this package at Python start. All that costs is this module (the
standard library's ``os`` and ``sys``, already loaded): a finder on ``sys.meta_path`` waits for Ultralytics
to be imported and then patches, narrowly,

- ``ultralytics.engine.trainer.BaseTrainer.__init__``: a run whose batch value starts with ``auto-plus``
  (or that registered `AutoPlus`, or added ``yolo_batch.callbacks``) gets the plugin's callbacks and its
  own ``auto_batch``; every other run goes straight to the original, untouched;
- ``ultralytics.cfg.entrypoint``: the ``yolo`` command checks an auto-plus value before building the model
  and turns the plugin's errors into one line and exit status 2;
- ``ultralytics.cfg.check_cfg`` (which ``get_cfg`` calls for every trainer, validator, predictor, exporter
  and tuner): an auto-plus value is refused in one line outside training (``model.val(batch="auto-plus")``)
  and let through for ``model.tune``, whose trials are ``yolo train`` runs that each choose their batch;
  any other value goes straight to the original.

On a release outside `SUPPORTED` (the range ``make compat`` proves) only the last two are wrapped, to refuse an
auto-plus value in one line; any other run goes to Ultralytics untouched, after one line saying the plugin is off.

``YOLO_BATCH_DISABLE=1`` turns all of it off (`env_switch` reads every on/off variable by one rule).
"""

from __future__ import annotations

import os
import sys

# The Ultralytics releases `make compat` proves (tests/compat/releases.txt): from the first, below the second.
# setup.cfg's requirement, the README's "Ultralytics releases" table and the tests say the same (test_packaging).
SUPPORTED = ((8, 3, 196), (8, 5))
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


def observing() -> bool:
    """True when ``YOLO_BATCH_OBSERVE`` is on: every training run is measured and logged (``sweep`` sets it)."""
    return env_switch("YOLO_BATCH_OBSERVE")


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

    warned = False  # the unsupported-release warning was printed

    def find_spec(self, name: str, path=None, target=None):
        if name not in _TARGETS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    # duck-typed (create_module, exec_module): importlib.abc would cost every Python start-up
                    spec.loader = _PatchingLoader(spec.loader, name)  # type: ignore[assignment]
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


def supported_range() -> str:
    """`SUPPORTED` as a pip specifier, the words of setup.cfg's requirement: ``>=8.3.196,<8.5``."""
    low, high = SUPPORTED
    return f">={'.'.join(map(str, low))},<{'.'.join(map(str, high))}"


def release(version: str) -> tuple[int, ...]:
    """The leading numbers of a release string: ``8.4.190`` -> (8, 4, 190), ``8.4.0.dev1`` -> (8, 4, 0).

    Examples:
        >>> release("8.3.196"), release("8.4.0rc1"), release("")
        ((8, 3, 196), (8, 4, 0), ())
    """
    numbers = []
    for part in version.split(".")[:3]:
        digits = part[: len(part) - len(part.lstrip("0123456789"))]
        if not digits:
            break
        numbers.append(int(digits))
    return tuple(numbers)


def _supported(warn: bool = True) -> bool:
    """True on a release inside `SUPPORTED`; else False, with one warning line per process (``warn``)."""
    version = str(getattr(sys.modules.get("ultralytics"), "__version__", ""))
    low, high = SUPPORTED
    if low <= release(version) < high:
        return True
    if warn and not getattr(_FINDER, "warned", False):
        _FINDER.warned = True
        print(f"yolo-batch: {unsupported(version)}; auto-plus is off and training is left alone", file=sys.stderr)
    return False


def outside_range() -> str | None:
    """Outside `SUPPORTED`: `unsupported`'s words and the pip command for a supported release; None inside.

    Each caller adds its own other way out (an integer batch, integer sweep batches).
    """
    import ultralytics  # imported already wherever a run or a tool asks; its release is what counts

    if _supported(warn=False):
        return None
    return f"{unsupported(str(ultralytics.__version__))}; pip install 'ultralytics{supported_range()}'"


def unsupported(version: str) -> str:
    """The words for a release outside `SUPPORTED`: it names the release and the range."""
    return f"Ultralytics {version or '?'} is outside the releases yolo-batch supports (ultralytics{supported_range()})"


def _patch(name: str, module) -> None:
    """Apply the patch for ``name`` once; outside `SUPPORTED` only the refusal of an auto-plus value."""
    if getattr(module, _MARK, False):
        return
    if not _supported(warn=False):
        if name == "ultralytics.cfg":
            _patch_entrypoint(module)
            _patch_refusal(module)
    elif name == "ultralytics.engine.trainer":
        _patch_trainer(module)
    elif name == "ultralytics.cfg":
        _patch_entrypoint(module)
        _patch_check_cfg(module)
    setattr(module, _MARK, True)


def _patch_trainer(module) -> None:
    import functools

    original = module.BaseTrainer.__init__
    default_cfg = module.DEFAULT_CFG

    @functools.wraps(original)
    def __init__(self, cfg=default_cfg, overrides=None, _callbacks=None):
        from yolo_batch import wiring
        from yolo_batch.session import ATTR

        planned = wiring.plan(
            cfg, overrides, _callbacks, observe=observing(), kind=type(self), supported=supported_range()
        )
        if planned is None:  # not ours: the stock trainer, untouched
            return original(self, cfg, overrides, _callbacks)
        overrides, _callbacks, session = planned
        setattr(self, ATTR, session)
        original(self, cfg, overrides, _callbacks)
        wiring.attach(self)

    __init__.__wrapped_by__ = "yolo_batch"  # type: ignore[attr-defined]  # a marker; typeshed declares none
    module.BaseTrainer.__init__ = __init__


def _patch_entrypoint(module) -> None:
    import functools

    original = module.entrypoint

    @functools.wraps(original)
    def entrypoint(debug: str = ""):
        from yolo_batch.core.spec import AutoPlusError

        try:
            _check_cli(module, debug.split(" ") if debug else sys.argv[1:])
            return original(debug)
        except AutoPlusError as e:
            print(f"yolo-batch: error: {e}", file=sys.stderr)
            raise SystemExit(2) from None

    module.entrypoint = entrypoint


def _patch_check_cfg(module) -> None:
    import functools

    original = module.check_cfg

    @functools.wraps(original)
    def check_cfg(cfg, hard=True):
        batch = cfg.get("batch") if isinstance(cfg, dict) else None
        if not isinstance(batch, str):  # every stock value: the original, untouched
            return original(cfg, hard)
        from yolo_batch.core.spec import looks_like_auto_plus, resolve_spec

        if not looks_like_auto_plus(batch):
            return original(cfg, hard)
        refuse_outside_training(batch, cfg.get("mode"))
        resolve_spec(batch)  # a bad value fails here, in one line
        rest = {k: v for k, v in cfg.items() if k != "batch"}
        original(rest, hard)  # hard=False converts values in place: carry them over
        cfg.update(rest)
        return None

    module.check_cfg = check_cfg


def _patch_refusal(module) -> None:
    """Outside `SUPPORTED`: ``check_cfg`` refuses an auto-plus value in one line; others get the warning line."""
    import functools

    original = module.check_cfg

    @functools.wraps(original)
    def check_cfg(cfg, hard=True):
        from yolo_batch.core.spec import AutoPlusError, looks_like_auto_plus

        batch = cfg.get("batch") if isinstance(cfg, dict) else None
        if looks_like_auto_plus(batch):
            raise AutoPlusError(f"batch={batch!r}: {outside_range()}, or give an integer batch")
        _supported()  # the one warning line: the plugin is off on this release
        return original(cfg, hard)

    module.check_cfg = check_cfg


def refuse_outside_training(value, mode, where: str = "") -> None:
    """Raise `AutoPlusError` for an auto-plus batch outside training: it chooses the training batch only.

    Examples:
        >>> refuse_outside_training("auto-plus", "train")
        >>> try:
        ...     refuse_outside_training("auto-plus:fit", "predict")
        ... except ValueError as e:
        ...     print(str(e).split("; ")[1])
        predict takes an integer batch: give one, e.g. batch=1, or leave batch out (Ultralytics' default 1)
    """
    if mode in (None, "train"):
        return
    from yolo_batch.core.spec import AutoPlusError

    default = 16 if mode == "val" else 1  # Ultralytics' defaults: val 16; predict, track, export 1
    instead = f"add one, e.g. batch={default}" if where else f"give one, e.g. batch={default}, or leave batch out"
    raise AutoPlusError(
        f"batch={value!r}{where} chooses the training batch (yolo train, model.train, model.tune); {mode} takes an "
        f"integer batch: {instead} (Ultralytics' default {default})"
    )


def _check_cli(module, args: list[str]) -> None:
    """Validate an auto-plus batch value on the ``yolo`` command line before Ultralytics builds the model.

    The value (given, or from ``cfg=``) is checked for training and refused in one line for any other mode.
    """
    from yolo_batch.core.spec import looks_like_auto_plus, resolve_spec

    words = module.merge_equals_args(args)
    pairs = dict(a.split("=", 1) for a in words if "=" in a)
    modes = [a for a in words if a in module.MODES] + ([pairs["mode"]] if "mode" in pairs else [])
    value, where, data = pairs.get("batch"), "", None
    if pairs.get("cfg"):
        from pathlib import Path

        from yolo_batch.core.readback import Damaged, read_yaml

        path = Path(pairs["cfg"])
        try:
            data = read_yaml(path, dict) if path.is_file() else {}
        except Damaged:
            data = {}  # Ultralytics says what is wrong with the file
        if value is None:
            value, where = data.get("batch"), f" (from cfg={pairs['cfg']})"
    if not looks_like_auto_plus(value):
        return
    mode = modes[-1] if modes else (data or {}).get("mode") or module.DEFAULT_CFG.mode
    refuse_outside_training(value, mode, where)
    resolve_spec(value)
