"""The thin Ultralytics hooks, in the shape of ``ultralytics/utils/callbacks/*.py``: ``callbacks = {event: fn}``.

This is the one module that reads trainer internals (``batch_size``, ``auto_batch``, ``tloss``, ``metrics``,
``accumulate``), so an Ultralytics release that moves them touches this file alone. The module imports
only the standard library at import time; torch and Ultralytics are imported when a hook runs.

Use it by hand like any Ultralytics integration (with an integer batch the hooks measure and log only):

    >>> from yolo_batch.callbacks import callbacks
    >>> sorted(callbacks)[:2]
    ['on_fit_epoch_end', 'on_pretrain_routine_start']
"""

from __future__ import annotations

import math
import sys
import time
import types
from pathlib import Path
from typing import Any

from yolo_batch.spec import AutoPlusError, BatchSpec, looks_like_auto_plus, resolve_spec

ATTR = "_yolo_batch"  # the per-trainer Session lives in this attribute
DECISION_FILE = "batch_decision.json"
EFFECT_FILE = "batch_effect.csv"
PLOT_FILE = "batch_effect.png"


def _log():
    from ultralytics.utils import LOGGER, colorstr

    return LOGGER, colorstr("AutoPlus: ")


class Session:
    """What the plugin knows about one training run."""

    def __init__(self, spec: BatchSpec, decides: bool, value: str | None) -> None:
        """``decides``: choose the batch (auto-plus); else only measure and log the effect."""
        self.spec, self.decides, self.value = spec, decides, value
        self.backend = None
        self.headroom = None
        self.record: dict[str, Any] | None = None
        self.effect = None
        self.epoch_start = 0.0
        self.train_seconds = 0.0
        self.trained = False  # a training epoch ended since the last on_fit_epoch_end
        self.last_batch: int | None = None
        self.oom_events = 0
        self.noise = None  # GradientNoise, when noise_scale is on
        self.tap = None
        self.stepped = False
        self.train_batch: int | None = None  # the batch training runs at, before an OOM step-down
        self.retries_seen = 0  # Ultralytics' per-epoch OOM counter, as last seen
        self.start_epoch: int | None = None  # trainer.start_epoch, held while an epoch runs
        self.launcher = False  # the DDP launcher: spawns the workers, trains nothing
        self.worker = False  # a DDP worker of an auto-plus launch: decides with the other ranks


def session(trainer) -> Session | None:
    """The trainer's Session, or None for a run that did not ask for the plugin."""
    return getattr(trainer, ATTR, None)


# ---------------------------------------------------------------------------------------------------------
# Trainer construction: decide whether a run is ours, before Ultralytics builds anything or makes a folder.


def _batch_value(cfg: Any, overrides: dict | None) -> tuple[bool, Any]:
    """(given, value) of ``batch`` in the overrides, else in a non-default ``cfg``."""
    if overrides and "batch" in overrides:
        return True, overrides["batch"]
    if isinstance(cfg, (str, Path)):
        from ultralytics.utils import YAML

        cfg = YAML.load(cfg)
    if isinstance(cfg, types.SimpleNamespace):
        cfg = vars(cfg)
    from ultralytics.cfg import DEFAULT_CFG_DICT

    if isinstance(cfg, dict) and "batch" in cfg:  # the default config counts as "not given"
        return cfg["batch"] != DEFAULT_CFG_DICT["batch"] or looks_like_auto_plus(cfg["batch"]), cfg["batch"]
    return False, None


class Hook:
    """A callback carrying one `AutoPlus`'s settings: what ``AutoPlus.register`` adds to a model."""

    def __init__(self, plugin: Any, event: str) -> None:
        """Bind ``event``'s hook to ``plugin`` (an `AutoPlus`)."""
        self.plugin, self.event = plugin, event

    def __call__(self, trainer) -> None:
        """Run the module-level hook; the trainer's Session already holds the plugin's settings."""
        return callbacks[self.event](trainer)


def _observe_env() -> bool:
    """``YOLO_BATCH_OBSERVE=1``: measure and log every training run, whatever its batch (``sweep`` sets it)."""
    from yolo_batch.activate import env_switch

    return env_switch("YOLO_BATCH_OBSERVE")


def _resumes_auto_plus_run(overrides: dict | None) -> bool:
    """``resume=.../weights/last.pt`` of a run that auto-plus decided: keep logging its effect."""
    resume = (overrides or {}).get("resume")
    if not isinstance(resume, (str, Path)) or not str(resume).endswith(".pt"):
        return False
    return (Path(resume).resolve().parent.parent / DECISION_FILE).exists()


def _check_writable(project: Any) -> None:
    """Fail before training when the run folder cannot be written (it would lose the run's records)."""
    import tempfile

    from ultralytics.utils import SETTINGS

    path = Path(str(project)) if project and Path(str(project)).is_absolute() else Path(SETTINGS["runs_dir"])
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    try:
        if not probe.is_dir():
            raise NotADirectoryError(f"{probe} is not a folder")
        tempfile.TemporaryFile(dir=probe).close()
    except OSError as e:
        raise AutoPlusError(
            f"the run folder under {path} cannot be written ({e}); set project= to a writable folder"
        ) from None


def _ours(fn: Any) -> bool:
    return isinstance(fn, Hook) or fn in callbacks.values()


def plan(cfg: Any, overrides: dict | None, given_callbacks: dict | None):
    """Return ``(overrides, callbacks, Session)`` for a run that asked for the plugin, else None.

    Raises:
        AutoPlusError: For a bad batch value, keyword or config, before anything is built or written.
    """
    from yolo_batch import ddp

    given, value = _batch_value(cfg, overrides)
    hooks = [f for fns in (given_callbacks or {}).values() for f in fns if _ours(f)]
    plugin = next((f.plugin for f in hooks if isinstance(f, Hook)), None)
    keywords, config = (plugin.keywords, plugin.config) if plugin else (None, None)
    worker = ddp.worker_value()
    if worker is not None:  # a DDP worker of an auto-plus launch: keeps the launcher's placeholder batch
        value = worker
        spec, decides = ddp.worker_spec() or resolve_spec(value, keywords, config), True
    elif given and looks_like_auto_plus(value):
        spec, decides = resolve_spec(value, keywords, config), True
    elif plugin and not given:
        value = "auto-plus"
        spec, decides = resolve_spec(value, keywords, config), True
    elif hooks or _observe_env() or _resumes_auto_plus_run(overrides):
        spec, decides, value = resolve_spec(None, keywords, config), False, None
    else:
        return None
    overrides = dict(overrides or {})
    _check_writable(overrides.get("project"))
    launcher = False
    if decides and worker is None:
        device = overrides.get("device")
        if ddp.world_size(device) > 1:  # the DDP launcher: Ultralytics refuses batch < 1 here and probes nothing
            overrides, launcher = ddp.launcher_overrides(value, device, overrides, spec), True
        else:
            overrides["batch"] = -1  # Ultralytics then calls trainer.auto_batch(), which auto-plus answers
    from ultralytics.utils.callbacks import get_default_callbacks

    merged = {k: [f for f in v if not _ours(f)] for k, v in (given_callbacks or get_default_callbacks()).items()}
    for event, fn in callbacks.items():
        merged.setdefault(event, []).append(fn)
    s = Session(spec, decides, value)
    s.launcher, s.worker = launcher, worker is not None
    return overrides, merged, s


def attach(trainer) -> None:
    """Give a trainer that asked for auto-plus its own ``auto_batch`` and the out-of-memory guards.

    Instance attributes only: the class, and every other trainer, stay stock.
    """
    import functools

    from yolo_batch import ddp, decide, recovery

    s = session(trainer)
    if s.launcher:  # spawns the DDP workers (which inherit YOLO_BATCH_DDP), then forgets the value
        trainer.train = functools.partial(ddp.launched, trainer.train)
        return
    trainer.train = functools.partial(recovery.guarded_train, trainer, trainer.train)
    if s.decides:
        trainer.auto_batch = functools.partial(decide.auto_batch, trainer)
        if hasattr(trainer, "_build_train_pipeline"):  # Ultralytics 8.4; 8.3 has no OOM step-down to steer
            trainer._build_train_pipeline = functools.partial(
                recovery.step_down, trainer, trainer._build_train_pipeline
            )
        if not s.worker:  # DDP validate() broadcasts the EMA: a retry on one rank would desynchronise the ranks
            trainer.validate = functools.partial(recovery.guarded_validate, trainer, trainer.validate)


# ---------------------------------------------------------------------------------------------------------
# Per-epoch hooks. A logging problem never stops training: each hook warns and carries on.


def _safe(fn):
    def hook(trainer):
        s = session(trainer)
        if s is None:
            return None
        try:
            return fn(trainer, s)
        except AutoPlusError:
            raise
        except Exception as e:  # noqa: BLE001 - logging must never crash training
            logger, prefix = _log()
            logger.warning(f"{prefix}{fn.__name__} skipped: {type(e).__name__}: {e}")
            return None

    hook.__name__ = hook.__qualname__ = fn.__name__
    hook.__doc__ = fn.__doc__
    return hook


@_safe
def on_pretrain_routine_start(trainer, s: Session) -> None:
    """Measure and log the memory headroom at startup."""
    from yolo_batch.memory import backend_for

    s.backend = backend_for(trainer.device)
    s.headroom = s.backend.headroom()
    logger, prefix = _log()
    mode = f"batch={s.value}" if s.decides else f"batch={trainer.args.batch} (measuring only)"
    logger.info(f"{prefix}{mode}; {s.headroom.line()}")


def _grad_scale(trainer) -> float:
    scaler = getattr(trainer, "scaler", None)
    return float(scaler.get_scale()) if scaler is not None and scaler.is_enabled() else 1.0


@_safe
def on_train_start(trainer, s: Session) -> None:
    """Note the starting batch; start the gradient-noise tap (read-only on ``.grad``, around the optimizer step)."""
    s.last_batch = trainer.batch_size
    if not s.spec.noise_scale:
        return
    from yolo_batch.effect import GradientNoise, GradientTap

    s.noise = GradientNoise()
    s.tap = GradientTap(trainer.model.parameters(), s.noise)
    original = trainer.optimizer_step

    def optimizer_step():
        try:
            s.tap.before_step(trainer.batch_size, _grad_scale(trainer))
        except Exception as e:  # noqa: BLE001 - measuring must never stop training
            _log()[0].warning(f"{_log()[1]}gradient-noise estimate off: {type(e).__name__}: {e}")
            s.tap = None
            trainer.optimizer_step = original
        s.stepped = True
        return original()

    trainer.optimizer_step = optimizer_step


@_safe
def on_train_epoch_start(trainer, s: Session) -> None:
    """Start the epoch's peak-memory and time measurement."""
    if s.backend is None:
        from yolo_batch.memory import backend_for

        s.backend = backend_for(trainer.device)
    s.backend.reset_peak()
    s.epoch_start = time.perf_counter()
    if s.decides:
        # Ultralytics recovers from OOM only while epoch == start_epoch: make every epoch eligible while it
        # runs (restored at on_train_epoch_end, before anything else reads start_epoch), within oom_retries.
        if s.start_epoch is None:
            s.start_epoch = trainer.start_epoch
        trainer.start_epoch = trainer.epoch
        s.retries_seen = getattr(trainer, "_oom_retries", 0)
        if s.oom_events >= s.spec.oom_retries:
            trainer._oom_retries = 3  # Ultralytics' own cap: the next OOM is raised (and explained)


@_safe
def on_train_batch_end(trainer, s: Session) -> None:
    """Sample memory where the device keeps no peak counter (MPS); feed the gradient-noise tap."""
    if hasattr(s.backend, "sample"):
        s.backend.sample()
    if s.tap is not None:
        s.tap.after_backward(s.stepped, trainer.batch_size, _grad_scale(trainer))
    s.stepped = False


@_safe
def on_train_epoch_end(trainer, s: Session) -> None:
    """Close the training part of the epoch (validation excluded from images/s)."""
    s.train_seconds = time.perf_counter() - s.epoch_start
    s.trained = True
    if s.start_epoch is not None:
        trainer.start_epoch, s.start_epoch = s.start_epoch, None


@_safe
def on_fit_epoch_end(trainer, s: Session) -> None:
    """Write the epoch's row of batch_effect.csv, or the ``final`` row after the best-model evaluation."""
    from yolo_batch.ddp import rank
    from yolo_batch.effect import EffectLog

    if s.worker and rank() > 0:  # DDP: rank 0 alone writes the effect log
        return

    if s.effect is None:
        s.effect = EffectLog(Path(trainer.save_dir) / EFFECT_FILE, keep_until=trainer.start_epoch)
    final = not s.trained  # final_eval runs this hook with no training epoch before it (8.4: at epoch + 1)
    s.trained = False
    row: dict[str, Any] = {"epoch": "final" if final else trainer.epoch + 1, "batch": trainer.batch_size}
    row["accumulate"] = accumulate = nominal_accumulate(trainer)
    row["effective_batch"] = trainer.batch_size * accumulate
    row["nbs"] = trainer.args.nbs
    if not final:
        row.update(getattr(trainer, "lr", {}) or {})
        row.update(trainer.label_loss_items(trainer.tloss) if trainer.tloss is not None else {})
    row.update({k: float(v) for k, v in (trainer.metrics or {}).items()})
    if not final:
        peak = s.backend.peak_bytes()
        total = s.headroom.total_bytes if s.headroom else 0
        images = len(trainer.train_loader.dataset)
        row["epoch_seconds"] = round(time.perf_counter() - s.epoch_start, 3)
        row["images_per_s"] = round(images / s.train_seconds, 3) if s.train_seconds else None
        row["peak_mem_bytes"] = peak
        row["mem_utilization"] = round(peak / total, 4) if total else None
        row["grad_noise_scale"] = round(s.noise.value, 2) if s.noise and s.noise.value else None
        if s.last_batch is not None and s.last_batch != trainer.batch_size:
            if not s.decides and trainer.batch_size < s.last_batch:  # Ultralytics' own halving, once per half
                s.oom_events += round(math.log2(s.last_batch / trainer.batch_size))
            logger, prefix = _log()
            logger.warning(
                f"{prefix}batch changed from {s.last_batch} to {trainer.batch_size} this epoch "
                f"(out-of-memory events so far: {s.oom_events})"
            )
        row["oom_events"] = s.oom_events
        s.last_batch = trainer.batch_size
    s.effect.add(row)
    if not final:
        if s.noise is not None:
            logger, prefix = _log()
            logger.info(f"{prefix}{s.noise.reading(trainer.batch_size)}")
        _to_loggers(trainer, row, s.record)


def _to_loggers(trainer, row: dict[str, Any], record: dict[str, Any] | None) -> None:
    """The batch figures and the decision to every logger the user turned on (`yolo_batch.loggers`)."""
    from yolo_batch import loggers

    loggers.epoch_end(trainer, row, record)


def nominal_accumulate(trainer) -> int:
    """Batches per optimizer step once warm-up is over, as Ultralytics sets it: ``round(nbs / batch)``."""
    acc = max(round(trainer.args.nbs / trainer.batch_size), 1)
    if not trainer.args.time and getattr(trainer, "train_loader", None) is not None:
        acc = min(acc, len(trainer.train_loader) * trainer.epochs)
    return acc


@_safe
def on_train_end(trainer, s: Session) -> None:
    """The end-of-run summary table in the log, and ``batch_effect.png``."""
    from yolo_batch.ddp import rank
    from yolo_batch.summary import plot_effect, summarize

    if s.worker and rank() > 0:  # DDP: rank 0 alone logs the summary and draws the plot
        return

    logger, prefix = _log()
    rows = s.effect.rows if s.effect else []
    if rows and str(rows[-1]["epoch"]) != "final" and trainer.best.exists():
        # an Ultralytics whose final_eval fires no on_fit_epoch_end: the best model's metrics are here now
        on_fit_epoch_end(trainer)
        rows = s.effect.rows
    for line in summarize(rows, s.record, s.noise.value if s.noise else None):
        logger.info(f"{prefix}{line}")
    if rows:
        plot_effect(rows, s.record, Path(trainer.save_dir) / PLOT_FILE, plots=trainer.args.plots)
    files = [n for n in (DECISION_FILE, EFFECT_FILE, PLOT_FILE) if (Path(trainer.save_dir) / n).exists()]
    logger.info(f"{prefix}wrote {', '.join(files)} to {trainer.save_dir}")
    from yolo_batch import loggers  # the decision and the plot to the loggers, before their own on_train_end

    loggers.train_end(trainer, s.record, [Path(trainer.save_dir) / n for n in files if n != EFFECT_FILE])


callbacks = {
    "on_pretrain_routine_start": on_pretrain_routine_start,
    "on_train_start": on_train_start,
    "on_train_epoch_start": on_train_epoch_start,
    "on_train_batch_end": on_train_batch_end,
    "on_train_epoch_end": on_train_epoch_end,
    "on_fit_epoch_end": on_fit_epoch_end,
    "on_train_end": on_train_end,
}


class _CallbacksModule(types.ModuleType):
    """Lets ``yolo_batch.callbacks`` itself be used as the ``{event: fn}`` dict (``.items()``, ``[event]``)."""

    def __getitem__(self, event: str):
        return callbacks[event]

    def __iter__(self):
        return iter(callbacks)

    def __len__(self) -> int:
        return len(callbacks)

    def __contains__(self, event: object) -> bool:
        return event in callbacks

    def items(self):
        """As ``dict.items``."""
        return callbacks.items()

    def keys(self):
        """As ``dict.keys``."""
        return callbacks.keys()

    def values(self):
        """As ``dict.values``."""
        return callbacks.values()


sys.modules[__name__].__class__ = _CallbacksModule
