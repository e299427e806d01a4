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
        self.last_train_epoch: int | None = None
        self.last_batch: int | None = None
        self.oom_events = 0
        self.noise = None  # GradientNoise, when noise_scale is on
        self.tap = None
        self.stepped = False
        self.train_batch: int | None = None  # the batch training runs at, before an OOM step-down
        self.retries_seen = 0  # Ultralytics' per-epoch OOM counter, as last seen
        self.start_epoch: int | None = None  # trainer.start_epoch, held while an epoch runs


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
    import os

    return os.environ.get("YOLO_BATCH_OBSERVE", "").strip().lower() not in {"", "0", "false", "no"}


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
        raise AutoPlusError(f"the run folder under {path} cannot be written ({e}); set project= to a writable folder") from None


def _ours(fn: Any) -> bool:
    return isinstance(fn, Hook) or fn in callbacks.values()


def plan(cfg: Any, overrides: dict | None, given_callbacks: dict | None):
    """Return ``(overrides, callbacks, Session)`` for a run that asked for the plugin, else None.

    Raises:
        AutoPlusError: For a bad batch value, keyword or config, before anything is built or written.
    """
    given, value = _batch_value(cfg, overrides)
    hooks = [f for fns in (given_callbacks or {}).values() for f in fns if _ours(f)]
    plugin = next((f.plugin for f in hooks if isinstance(f, Hook)), None)
    keywords, config = (plugin.keywords, plugin.config) if plugin else (None, None)
    if given and looks_like_auto_plus(value):
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
    if decides:
        overrides["batch"] = -1  # Ultralytics then calls trainer.auto_batch(), which auto-plus answers
    from ultralytics.utils.callbacks import get_default_callbacks

    merged = {k: [f for f in v if not _ours(f)] for k, v in (given_callbacks or get_default_callbacks()).items()}
    for event, fn in callbacks.items():
        merged.setdefault(event, []).append(fn)
    return overrides, merged, Session(spec, decides, value)


def attach(trainer) -> None:
    """Give a trainer that asked for auto-plus its own ``auto_batch`` and the out-of-memory guards.

    Instance attributes only: the class, and every other trainer, stay stock.
    """
    import functools

    s = session(trainer)
    trainer.train = functools.partial(_guarded_train, trainer, trainer.train)
    if s.decides:
        trainer.auto_batch = functools.partial(auto_batch, trainer)
        trainer._build_train_pipeline = functools.partial(_step_down, trainer, trainer._build_train_pipeline)
        trainer.validate = functools.partial(_guarded_validate, trainer, trainer.validate)


def _guarded_train(trainer, original):
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
            f"out of memory at batch {trainer.batch_size} in {where} after {s.oom_events} step-down(s) "
            f"(oom_retries={s.spec.oom_retries}); {resume}"
        ) from e


def _step_down(trainer, original):
    """Rebuild the data pipeline; after an OOM, at the plugin's next lower batch instead of Ultralytics' half."""
    from yolo_batch import policy

    s = session(trainer)
    retries = getattr(trainer, "_oom_retries", 0)
    if s.train_batch is not None and retries > s.retries_seen:  # Ultralytics caught an OOM mid-epoch
        old, spec = s.train_batch, s.spec
        new = policy.next_lower(old, policy=spec.policy, candidates=spec.candidates, min_batch=spec.min_batch)
        if new == 0:
            raise AutoPlusError(
                f"out of memory at batch {old} and no smaller batch >= min_batch {spec.min_batch} is left; "
                "lower imgsz, use a smaller model, enable AMP, or free device memory"
            )
        s.oom_events += 1
        trainer.args.batch = trainer.batch_size = new
        logger, prefix = _log()
        logger.warning(
            f"{prefix}out of memory at batch {old} in epoch {trainer.epoch + 1}; redoing the epoch at batch {new} "
            f"(step-down {s.oom_events} of at most {spec.oom_retries}; finished epochs are kept)"
        )
    s.retries_seen = retries
    result = original()
    s.train_batch = trainer.batch_size
    return result


def _guarded_validate(trainer, original):
    """Validate; on out-of-memory (detect validates at 2x the batch) halve the validation batch and retry."""
    from yolo_batch.memory import is_oom

    s = session(trainer)
    while True:
        try:
            return original()
        except RuntimeError as e:
            loader = trainer.test_loader
            if not is_oom(e) or loader.batch_size <= 1 or s.oom_events >= s.spec.oom_retries:
                raise
        s.oom_events += 1
        s.backend.empty_cache() if s.backend else None
        new = max(loader.batch_size // 2, 1)
        split = trainer.data.get(trainer.args.split) or trainer.data.get("val")
        trainer.test_loader = trainer.get_dataloader(split, batch_size=new, rank=-1, mode="val")
        trainer.validator.dataloader = trainer.test_loader
        logger, prefix = _log()
        logger.warning(
            f"{prefix}out of memory validating at batch {loader.batch_size}; validating at {new} "
            f"(step-down {s.oom_events} of at most {s.spec.oom_retries})"
        )


# ---------------------------------------------------------------------------------------------------------
# The model-aware moment: Ultralytics' _setup_train calls trainer.auto_batch() when batch < 1.


def auto_batch(trainer) -> int:
    """Probe, decide, verify and report; return the batch the run trains at."""
    from yolo_batch import policy
    from yolo_batch.effect import write_json
    from yolo_batch.memory import backend_for
    from yolo_batch.probe import Prober, borrowed

    s, (logger, prefix) = session(trainer), _log()
    spec = s.spec
    s.backend = s.backend or backend_for(trainer.device)
    t0 = time.perf_counter()
    logger.info(f"{prefix}probing real training steps at batch {', '.join(map(str, spec.probe_batches))}...")
    with borrowed(trainer):
        prober = Prober(trainer, s.backend)
        result = prober.run(spec.probe_batches, spec.probe_val)
        if len(result.train) < 2 and result.oom:  # the device is small: probe again at the smallest sizes
            result = prober.run((1, 2), spec.probe_val, result)
        if len(result.train) < 2:
            raise AutoPlusError(
                f"out of memory while probing batch {min(result.oom or [1])} at imgsz={trainer.args.imgsz}; "
                "lower imgsz, use a smaller model, enable AMP, or free device memory"
            )
        train_law, used, flat = _fit(prober, result, spec)
        val_law = _fit_val(result)
        model = policy.MemoryModel(train_law, val_law)
        s.backend.empty_cache()
        head = s.backend.headroom()
        budget = head.budget(spec.utilization)
        decision = policy.decide(
            model,
            budget,
            policy=spec.policy,
            candidates=spec.candidates,
            min_batch=spec.min_batch,
            max_batch=spec.max_batch,
            dataset_size=prober.dataset_size,
        )
        if decision.batch == 0:
            raise AutoPlusError(f"no batch fits: {decision.reason}")
        batch, verified, notes = decision.batch, None, []
        while spec.verify:
            verified = prober.verify(batch, spec.probe_val)
            if verified is not None:
                break
            lower = policy.next_lower(batch, policy=spec.policy, candidates=spec.candidates, min_batch=spec.min_batch)
            notes.append(f"verification at {batch} ran out of memory, stepped down to {lower}")
            if lower == 0:
                raise AutoPlusError(
                    f"batch {spec.min_batch} runs out of memory at imgsz={trainer.args.imgsz}; lower imgsz, use a "
                    "smaller model, enable AMP, or free device memory"
                )
            batch = lower
    lr = _scale_lr(trainer, spec, batch)
    seconds = time.perf_counter() - t0
    if flat:
        notes.insert(0, "memory grew below the meter's resolution between probe sizes: per-image memory taken as 0")
    reason = "; ".join([decision.reason, *notes])
    s.record = {
        "batch": batch,
        "value": s.value,
        "policy": spec.policy,
        "utilization": spec.utilization,
        "device": head.device,
        "total_bytes": head.total_bytes,
        "free_bytes": head.free_bytes,
        "held_bytes": head.held_bytes,
        "other_bytes": head.other_bytes,
        "memory_source": head.source,
        "budget_bytes": int(budget),
        "fixed_bytes": int(train_law.fixed_bytes),
        "per_image_bytes": int(train_law.per_image_bytes),
        "val_fixed_bytes": int(val_law.fixed_bytes) if val_law else None,
        "val_per_image_bytes": int(val_law.per_image_bytes) if val_law else None,
        "candidates": [
            {"batch": c.batch, "predicted_peak_bytes": int(c.predicted_peak_bytes), "fits": c.fits}
            for c in decision.candidates
        ],
        "predicted_peak_bytes": int(model.peak(batch)),
        "verified_peak_bytes": verified,
        "reason": reason,
        "probe_seconds": round(result.seconds, 3),
        "decision_seconds": round(seconds, 3),
        "probe_points": {"train": result.train, "val": result.val, "used": used, "oom": result.oom},
        "dataset_size": prober.dataset_size,
        "max_labels_per_image": prober.max_labels,
        "imgsz": prober.max_size,
        "amp": bool(trainer.amp),
        "config": spec.config,
        **lr,
        "versions": _versions(),
    }
    write_json(Path(trainer.save_dir) / DECISION_FILE, s.record)
    for line in decision_table(s.record):
        logger.info(f"{prefix}{line}")
    return batch


def _scale_lr(trainer, spec: BatchSpec, batch: int) -> dict[str, Any]:
    """Apply ``lr_scaling`` above the nominal batch: lr0 x (effective / nbs) or its square root."""
    nbs, lr0 = trainer.args.nbs, trainer.args.lr0
    effective = batch * max(round(nbs / batch), 1)
    factor = 1.0
    if spec.lr_scaling != "none" and effective > nbs:
        factor = effective / nbs if spec.lr_scaling == "linear" else (effective / nbs) ** 0.5
        if trainer.args.optimizer == "auto":
            logger, prefix = _log()
            logger.warning(
                f"{prefix}lr_scaling={spec.lr_scaling} has no effect with optimizer=auto, which picks its own lr; "
                "set optimizer=SGD or AdamW and lr0"
            )
            factor = 1.0
        trainer.args.lr0 = lr0 * factor
    return {"lr_scaling": spec.lr_scaling, "lr0": lr0, "lr0_scaled": lr0 * factor, "effective_batch": effective}


def _fit(prober, result, spec):
    """Fit the training law; if the peaks did not grow, probe larger batches once, then accept a flat law."""
    from yolo_batch import policy

    try:
        return (*policy.fit_law(result.train), False)
    except ValueError:
        top = max(b for b, _ in result.train)
        larger = tuple(b for b in (top * 2, top * 4) if b <= min(prober.dataset_size, spec.max_batch))
        if larger and not result.oom:
            prober.run((top, *larger), val=False, result=result)
            try:
                return (*policy.fit_law(result.train), False)
            except ValueError:
                pass
    peak = max(p for _, p in result.train)
    return policy.Law(peak, 0.0), [(b, float(p)) for b, p in result.train], True


def _fit_val(result):
    from yolo_batch import policy

    try:
        return policy.fit_law(result.val)[0] if len(result.val) >= 2 else None
    except ValueError:
        return None


def decision_table(r: dict[str, Any]) -> list[str]:
    """The decision as log lines: headroom, one row per candidate, the pick and why."""
    from yolo_batch.policy import gib

    lines = [
        f"{r['device']} usable {gib(r['free_bytes'] + r['held_bytes'])} "
        f"x utilization {r['utilization']:.2f} = budget {gib(r['budget_bytes'])}; "
        f"memory law {gib(r['fixed_bytes'])} + {r['per_image_bytes'] / 2**20:.1f} MiB/image",
        f"{'batch':>7} {'predicted peak':>15} {'fits':>5}",
    ]
    for c in r["candidates"]:
        mark = "  <- pick" if c["batch"] == r["batch"] else ""
        lines.append(f"{c['batch']:>7} {gib(c['predicted_peak_bytes']):>15} {'yes' if c['fits'] else 'no':>5}{mark}")
    if r["batch"] not in [c["batch"] for c in r["candidates"]]:
        lines.append(f"{r['batch']:>7} {gib(r['predicted_peak_bytes']):>15} {'yes':>5}  <- pick")
    verified = r["verified_peak_bytes"]
    check = ""
    if verified:
        err = (r["predicted_peak_bytes"] - verified) / verified * 100
        check = f"; verified peak {gib(verified)} (prediction {err:+.1f}%)"
    lines.append(
        f"batch={r['batch']} ({r['policy']}): {r['reason']}{check}; decided in {r['decision_seconds']:.1f}s"
    )
    return lines


def _versions() -> dict[str, str]:
    import torch
    import ultralytics

    from yolo_batch import __version__

    return {"yolo_batch": __version__, "ultralytics": ultralytics.__version__, "torch": torch.__version__}


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
    """Start the gradient-noise tap: read-only on ``.grad``, around the trainer's own optimizer step."""
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
    s.last_train_epoch = trainer.epoch
    if s.start_epoch is not None:
        trainer.start_epoch, s.start_epoch = s.start_epoch, None


@_safe
def on_fit_epoch_end(trainer, s: Session) -> None:
    """Write the epoch's row of batch_effect.csv, or the ``final`` row after the best-model evaluation."""
    from yolo_batch.effect import EffectLog

    if s.effect is None:
        s.effect = EffectLog(Path(trainer.save_dir) / EFFECT_FILE, keep_until=trainer.start_epoch)
    final = s.last_train_epoch != trainer.epoch  # final_eval runs this hook with epoch + 1 and no training
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
        row["oom_events"] = s.oom_events
        if s.last_batch is not None and s.last_batch != trainer.batch_size:
            logger, prefix = _log()
            logger.warning(f"{prefix}batch changed from {s.last_batch} to {trainer.batch_size} this epoch")
        s.last_batch = trainer.batch_size
    s.effect.add(row)
    if not final:
        if s.noise is not None:
            logger, prefix = _log()
            logger.info(f"{prefix}{s.noise.reading(trainer.batch_size)}")
        _to_loggers(row, trainer.epoch + 1)


def _to_loggers(row: dict[str, Any], step: int) -> None:
    """The batch figures as ``batch/...`` scalars to the loggers the user turned on (TensorBoard)."""
    from ultralytics.utils.callbacks import tensorboard

    writer = getattr(tensorboard, "WRITER", None)
    if writer is None:
        return
    keys = ("batch", "accumulate", "effective_batch", "images_per_s", "peak_mem_bytes", "mem_utilization",
            "grad_noise_scale", "oom_events", "epoch_seconds")
    for k in keys:
        if row.get(k) is not None:
            writer.add_scalar(f"batch/{k}", float(row[k]), step)
    writer.flush()


def nominal_accumulate(trainer) -> int:
    """Batches per optimizer step once warm-up is over, as Ultralytics sets it: ``round(nbs / batch)``."""
    acc = max(round(trainer.args.nbs / trainer.batch_size), 1)
    if not trainer.args.time and getattr(trainer, "train_loader", None) is not None:
        acc = min(acc, len(trainer.train_loader) * trainer.epochs)
    return acc


@_safe
def on_train_end(trainer, s: Session) -> None:
    """The end-of-run summary table in the log, and ``batch_effect.png``."""
    from yolo_batch.summary import plot_effect, summarize

    logger, prefix = _log()
    rows = s.effect.rows if s.effect else []
    for line in summarize(rows, s.record, s.noise.value if s.noise else None):
        logger.info(f"{prefix}{line}")
    if rows:
        plot_effect(rows, s.record, Path(trainer.save_dir) / PLOT_FILE)
    files = [n for n in (DECISION_FILE, EFFECT_FILE, PLOT_FILE) if (Path(trainer.save_dir) / n).exists()]
    logger.info(f"{prefix}wrote {', '.join(files)} to {trainer.save_dir}")


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
