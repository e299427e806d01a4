"""The thin Ultralytics hooks, in the shape of ``ultralytics/utils/callbacks/*.py``: ``callbacks = {event: fn}``.

The hooks read the trainer's epoch figures (``batch_size``, ``tloss``, ``metrics``, ``accumulate``) and write
the effect log; `yolo_batch.wiring` decides at trainer construction whether a run is ours and adds them, and
the per-run state lives in `yolo_batch.session`. At import time the module needs only the standard library and
the stdlib-only `session`, `adapt`, `recovery` and `goodput`; torch and Ultralytics are imported when a hook runs.

``callbacks`` is a plain ``{event: fn}`` dict: add it by hand like any Ultralytics integration (with an
integer batch the hooks measure and log only), ``for event, fn in callbacks.items(): model.add_callback(event, fn)``.

    >>> from yolo_batch.callbacks import callbacks
    >>> sorted(callbacks)[:3]
    ['on_fit_epoch_end', 'on_pretrain_routine_end', 'on_pretrain_routine_start']
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yolo_batch import port
from yolo_batch.core.goodput import accumulate
from yolo_batch.core.spec import AutoPlusError
from yolo_batch.decide import decide
from yolo_batch.device import memory
from yolo_batch.device.ddp import rank
from yolo_batch.record import loggers, records
from yolo_batch.record.effect import EffectLog, GradientNoise, GradientTap, earlier_rows, read_csv
from yolo_batch.record.records import decision
from yolo_batch.record.summary import plot_effect, summarize
from yolo_batch.session import ATTR, DECISION_FILE, EFFECT_FILE, PLOT_FILE, Session, log, session
from yolo_batch.train import adapt, batchnorm, lrscale, rebuild, recovery

if TYPE_CHECKING:
    from ultralytics.engine.trainer import BaseTrainer


__all__ = ("ATTR", "DECISION_FILE", "EFFECT_FILE", "PLOT_FILE", "Session", "callbacks", "nominal_accumulate", "session")

# ---------------------------------------------------------------------------------------------------------
# Per-epoch hooks. A logging problem never stops training: each hook warns and carries on.


def _safe(fn):
    def hook(trainer: BaseTrainer):
        s = session(trainer)
        if s is None:
            return None
        try:
            return fn(trainer, s)
        except AutoPlusError:
            raise
        except Exception as e:  # noqa: BLE001 - logging must never crash training
            logger, prefix = log()
            logger.warning(f"{prefix}{fn.__name__} skipped: {type(e).__name__}: {e}")
            return None

    hook.__name__ = hook.__qualname__ = fn.__name__
    hook.__doc__ = fn.__doc__
    return hook


@_safe
def on_pretrain_routine_start(trainer: BaseTrainer, s: Session) -> None:
    """Put the auto-plus value in args.yaml, read a resumed run's earlier choices, log the memory headroom."""
    decide.no_loggers_in_a_plan(trainer)  # yolo-batch plan opens no logger run
    records.note_start(trainer, s)
    if getattr(trainer, "resume", False) and not s.decides:  # lr_scaling goes on as the run's decision set it
        lrscale.from_record(trainer, s, records.latest(s.history))
    if s.adapts:
        adapt.resume(trainer, s)
    memory.measure(s.device, trainer.device)
    logger, prefix = log()
    logger.info(f"{prefix}{records.start_line(trainer, s)}; {s.headroom.line()}")


@_safe
def on_pretrain_routine_end(trainer: BaseTrainer, s: Session) -> None:
    """The optimizer is built and a checkpoint loaded: apply lr_scaling at the batch that trains (`lrscale`)."""
    lrscale.start(trainer, s)


def _grad_scale(trainer: BaseTrainer) -> float:
    scaler = getattr(trainer, "scaler", None)
    return float(scaler.get_scale()) if scaler is not None and scaler.is_enabled() else 1.0


@_safe
def on_train_start(trainer: BaseTrainer, s: Session) -> None:
    """Note the starting batch and record a resumed run's new choice; start the gradient-noise tap.

    The tap reads ``.grad`` only, around the optimizer step.
    """
    s.meter.last_batch = trainer.batch_size
    s.meter.segment_start = trainer.start_epoch + 1  # each epoch row names the stretch that trained it (`compare`)
    records.started(trainer, s)
    if not s.spec.noise_scale:
        return

    s.meter.noise = GradientNoise()
    s.meter.tap = GradientTap(trainer.model.parameters(), s.meter.noise)  # type: ignore[union-attr]  # Ultralytics types model str | Path

    def optimizer_step():
        try:
            s.meter.tap.before_step(trainer.batch_size, _grad_scale(trainer))
        except Exception as e:  # noqa: BLE001 - measuring must never stop training
            log()[0].warning(f"{log()[1]}gradient-noise estimate off: {type(e).__name__}: {e}")
            s.meter.tap = None
            port.replace(trainer, "optimizer_step", original)  # back to Ultralytics' own
        s.meter.stepped = True
        return original()

    original = port.replace(trainer, "optimizer_step", optimizer_step)  # this trainer only


@_safe
def on_train_epoch_start(trainer: BaseTrainer, s: Session) -> None:
    """Start the epoch's peak-memory and time measurement."""
    batchnorm.apply(trainer, s)  # bn_momentum: auto scales BatchNorm momentum to this epoch's batch
    memory.bind(s.device, trainer.device).reset_peak()
    s.meter.started = time.perf_counter()
    if s.decides or s.adapts:
        rebuild.open_epoch(trainer, s, recovery.restarts_left(s))  # every epoch may step down after an OOM
        adapt.arm(trainer, s)  # goodput: a switch decided at the last epoch's end


@_safe
def on_train_batch_end(trainer: BaseTrainer, s: Session) -> None:
    """Sample memory where the device keeps no peak counter (MPS); feed the gradient-noise tap."""
    if s.backend is not None and hasattr(s.backend, "sample"):
        s.backend.sample()
    if s.meter.tap is not None:
        s.meter.tap.after_backward(s.meter.stepped, trainer.batch_size, _grad_scale(trainer))
    s.meter.stepped = False


@_safe
def on_train_epoch_end(trainer: BaseTrainer, s: Session) -> None:
    """Close the training part of the epoch (validation excluded from images/s)."""
    s.meter.train_seconds = time.perf_counter() - s.meter.started
    s.meter.trained = True
    rebuild.close_epoch(trainer, s)


@_safe
def on_fit_epoch_end(trainer: BaseTrainer, s: Session) -> None:
    """Write the epoch's row of batch_effect.csv, or the ``final`` row after the best-model evaluation."""
    if s.worker and rank() > 0:  # DDP: rank 0 alone writes the effect log
        return

    if s.meter.effect is None:
        s.meter.effect = EffectLog(Path(trainer.save_dir) / EFFECT_FILE, keep_until=trainer.start_epoch)
        _fill_earlier(trainer, s)
    final = not s.meter.trained  # final_eval runs this hook with no training epoch before it (8.4: at epoch + 1)
    s.meter.trained = False
    row: dict[str, Any] = {"epoch": "final" if final else trainer.epoch + 1, "batch": trainer.batch_size}
    row["accumulate"] = accumulate = nominal_accumulate(trainer)
    row["effective_batch"] = trainer.batch_size * accumulate
    row["nbs"] = trainer.args.nbs
    if not final:
        row.update(getattr(trainer, "lr", {}) or {})
        row.update(trainer.label_loss_items(trainer.tloss) if trainer.tloss is not None else {})
    metrics: dict[str, Any] = trainer.metrics or {}  # Ultralytics types it None
    row.update({k: float(v) for k, v in metrics.items()})
    if not final:
        assert s.backend is not None  # on_train_epoch_start set it
        peak = s.backend.peak_bytes()
        total = s.headroom.total_bytes if s.headroom else 0
        images = len(trainer.train_loader.dataset)
        row["epoch_seconds"] = round(time.perf_counter() - s.meter.started, 3)
        row["images_per_s"] = round(images / s.meter.train_seconds, 3) if s.meter.train_seconds else None
        row["peak_mem_bytes"] = peak
        row["mem_utilization"] = round(peak / total, 4) if total else None
        row["grad_noise_scale"] = round(s.meter.noise.value, 2) if s.meter.noise and s.meter.noise.value else None
        change = records.epoch_end(trainer, s)  # the epoch finished: its batch changes join the history
        last = s.meter.last_batch
        if last is not None and last != trainer.batch_size and change is None:  # a change no one logged
            if not (s.decides or s.adapts) and trainer.batch_size < last:  # Ultralytics' own halving
                recovery.halved(s, last, trainer.batch_size)
            logger, prefix = log()
            logger.warning(
                f"{prefix}batch changed from {last} to {trainer.batch_size} this epoch "
                f"(out-of-memory events so far: {s.oom.events})"
            )
        row["oom_events"] = s.oom.events
        row["segment_start"] = s.meter.segment_start
        if s.switching.on or change:  # goodput runs have the columns from the first epoch on
            row["batch_change"] = f"{change[0]} -> {change[1]}" if change else None
            row["change_reason"] = change[2] if change else None
        s.meter.last_batch = trainer.batch_size
    s.meter.effect.add(row)
    if not final:
        adapt.after_epoch(trainer, s)
        if s.meter.noise is not None:
            logger, prefix = log()
            logger.info(f"{prefix}{s.meter.noise.reading(trainer.batch_size, len(trainer.train_loader.dataset))}")
        _to_loggers(trainer, row, s.record)


def _to_loggers(trainer: BaseTrainer, row: dict[str, Any], record: dict[str, Any] | None) -> None:
    """The batch figures and the decision to every logger the user turned on (`yolo_batch.record.loggers`)."""
    loggers.epoch_end(trainer, row, record)


def nominal_accumulate(trainer: BaseTrainer, batch: int | None = None) -> int:
    """Batches per optimizer step once warm-up is over, as Ultralytics sets it: ``round(nbs / batch)``.

    ``batch``: another batch than the one training now (its loader's length from the training set's size).
    """
    batch = batch or trainer.batch_size
    acc = accumulate(batch, trainer.args.nbs)
    loader = getattr(trainer, "train_loader", None)
    if not trainer.args.time and loader is not None:
        steps = len(loader) if batch == trainer.batch_size else -(-len(loader.dataset) // batch)
        acc = min(acc, steps * trainer.epochs)
    return acc


def _fill_earlier(trainer: BaseTrainer, s: Session) -> None:
    """A resume of a run the plugin did not log (a stock run): its earlier epochs' rows, at the batch they trained."""
    import csv

    if not (trainer.start_epoch and s.batch_before) or s.meter.effect.rows:  # the plugin logged the run before
        return
    try:
        results = read_csv(trainer.csv)
    except (OSError, ValueError, csv.Error, AttributeError) as e:  # a damaged results.csv: those epochs stay unlogged
        logger, prefix = log()
        logger.warning(f"{prefix}epochs 1-{trainer.start_epoch} not logged: {trainer.csv} unreadable ({e})")
        return
    acc = nominal_accumulate(trainer, s.batch_before)
    s.meter.effect.fill(earlier_rows(results, trainer.start_epoch, s.batch_before, acc, trainer.args.nbs))


@_safe
def on_train_end(trainer: BaseTrainer, s: Session) -> None:
    """The end-of-run summary table in the log, and ``batch_effect.png``."""
    if s.worker and rank() > 0:  # DDP: rank 0 alone logs the summary and draws the plot
        return

    logger, prefix = log()
    rows = s.meter.effect.rows if s.meter.effect else []
    if rows and str(rows[-1]["epoch"]) != "final" and trainer.best.exists():
        # an Ultralytics whose final_eval fires no on_fit_epoch_end: the best model's metrics are here now
        on_fit_epoch_end(trainer)
        rows = s.meter.effect.rows
    record = decision(s)  # the latest decision and the run's history
    for line in summarize(rows, record, s.meter.noise.value if s.meter.noise else None):
        logger.info(f"{prefix}{line}")
    if rows:
        plot_effect(rows, record, Path(trainer.save_dir) / PLOT_FILE, plots=trainer.args.plots)
    files = [n for n in (DECISION_FILE, EFFECT_FILE, PLOT_FILE) if (Path(trainer.save_dir) / n).exists()]
    logger.info(f"{prefix}wrote {', '.join(files)} to {trainer.save_dir}")

    loggers.train_end(trainer, s.record, [Path(trainer.save_dir) / n for n in files if n != EFFECT_FILE])


callbacks = {
    "on_pretrain_routine_start": on_pretrain_routine_start,
    "on_pretrain_routine_end": on_pretrain_routine_end,
    "on_train_start": on_train_start,
    "on_train_epoch_start": on_train_epoch_start,
    "on_train_batch_end": on_train_batch_end,
    "on_train_epoch_end": on_train_epoch_end,
    "on_fit_epoch_end": on_fit_epoch_end,
    "on_train_end": on_train_end,
}
