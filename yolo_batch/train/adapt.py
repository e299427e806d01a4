"""Policy ``goodput`` during training: choose at each epoch's end, switch through `rebuild` at the next start.

At ``on_fit_epoch_end`` (after validation and the checkpoint, not after the last epoch) `after_epoch` notes the
epoch's noise-scale estimate and asks `goodput.choose` whether another batch that fits would train faster per
useful image, given the run's recipe (`goodput.Recipe`: the optimizer's class, ``lr_scaling`` as applied, the
schedule's lr factor for the next epoch from Ultralytics' ``lf``, the training set and BatchNorm's momentum).
A switch is made at the next ``on_train_epoch_start`` (`arm`): `rebuild.request` rebuilds the
pipeline at the new batch through Ultralytics' restart of the epoch (why that restart: `rebuild`), so an upward
switch rebuilds exactly as a step-down does: dataloaders, ``accumulate`` and weight decay as Ultralytics builds
them for that batch, no image drawn from the old loader, and the loop's own state recomputed. After that rebuild
(`rebuild` writes the batch, `lrscale.follow` the lr) `switch` hands the change to `records` (it joins the history
once the epoch finished). The switch uses one of Ultralytics' three restarts of that epoch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from yolo_batch.core import goodput
from yolo_batch.core.goodput import ULTRALYTICS_BN_MOMENTUM, Recipe
from yolo_batch.core.spec import KEYS, BatchSpec
from yolo_batch.core.throughput import pace_from_record
from yolo_batch.record import records
from yolo_batch.record.records import latest, read_decision
from yolo_batch.session import DECISION_FILE, log
from yolo_batch.train import lrscale, rebuild

if TYPE_CHECKING:
    from ultralytics.engine.trainer import BaseTrainer

    from yolo_batch.core.spec import BatchSpec
    from yolo_batch.session import Session


def begin(s, pace, fit_bound: int) -> None:
    """Policy goodput from here: switch at epoch ends on ``pace``, up to ``fit_bound``."""
    s.switching.on, s.switching.pace, s.switching.fit_bound = True, pace, fit_bound


def after_epoch(trainer: BaseTrainer, s: Session) -> None:
    """Note the epoch's noise scale; for ``goodput``, decide the batch of the next epoch (not after the last)."""
    state, noise = s.switching, s.meter.noise
    state.readings.append(noise.value if noise is not None else None)
    if not state.on or state.pace is None or not (s.decides or s.adapts) or s.worker:
        return
    if trainer.stop or trainer.epoch + 1 >= trainer.epochs:
        return

    spec = s.spec
    choice = goodput.choose(
        state.pace,
        current=trainer.batch_size,
        low=spec.min_batch,
        high=state.fit_bound,
        nbs=trainer.args.nbs,
        readings=list(state.readings),
        gain=spec.goodput_gain,
        recipe=_recipe(trainer, s),
    )
    logger, prefix = log()
    if choice.batch is None:
        logger.info(f"{prefix}goodput after epoch {trainer.epoch + 1}: {choice.reason}")
        return
    state.choice = choice
    logger.info(f"{prefix}goodput after epoch {trainer.epoch + 1}: switching {trainer.batch_size} -> {choice.batch}")


def _recipe(trainer, s):
    """The run's `goodput.Recipe` for the next epoch: optimizer, lr_scaling, lr left, training set, BatchNorm."""
    lf = getattr(trainer, "lf", None)  # Ultralytics' schedule: the lr of epoch e is lr0 x lf(e)
    dataset = getattr(getattr(trainer, "train_loader", None), "dataset", None)
    return Recipe(
        optimizer=type(trainer.optimizer).__name__,
        lr_scaling=s.lr.scaling if s.lr.applies else "none",
        lr_left=float(lf(trainer.epoch + 1)) if callable(lf) else 1.0,
        dataset_size=len(dataset) if dataset is not None else None,
        bn_momentum="auto" if s.lr.bn_auto else s.spec.bn_momentum,  # the large-batch recipe turns it on
        bn_base=_bn_base(trainer, s),
    )


def _bn_base(trainer, s) -> float:
    """BatchNorm's momentum before ``bn_momentum: auto`` scaled it (the most common over the layers)."""
    momenta = list((s.bn_momenta or {}).values())
    if not momenta:
        import torch.nn as nn
        from ultralytics.utils.torch_utils import unwrap_model

        bn = nn.modules.batchnorm._BatchNorm
        momenta = [m.momentum for m in unwrap_model(trainer.model).modules() if isinstance(m, bn) and m.momentum]
    return max(set(momenta), key=momenta.count) if momenta else ULTRALYTICS_BN_MOMENTUM


def arm(trainer, s) -> None:
    """At an epoch's start: ask `rebuild` for the switch decided at the last epoch's end."""
    state = s.switching
    if state.choice is None:
        return
    why_not = rebuild.request(trainer, s, state.choice.batch)
    if why_not is not None:
        logger, prefix = log()
        logger.warning(f"{prefix}goodput: no switch to {state.choice.batch}: {why_not}")
        state.choice = None


def switch(trainer, s, old: int, new: int, lr: str) -> None:
    """`rebuild`'s switch, once the pipeline was rebuilt at ``new`` and the lr followed (``lr``: its words).

    `rebuild` alone writes the batch and `lrscale.follow` (its ``after``) alone rescales the lr; this notes the
    switch: the choice is spent, the change handed to `records`, the line logged.
    """
    logger, prefix = log()
    choice, s.switching.choice = s.switching.choice, None
    effective = goodput.effective(new, trainer.args.nbs)
    entry = {
        "source": "goodput",
        "policy": "goodput",
        "batch": new,
        "previous_batch": old,
        "effective_batch": effective,
        "lr0": lrscale.lr0_now(trainer, s),
        "lr_scaling": s.spec.lr_scaling,
        "reason": choice.reason,
        "from_epoch": trainer.epoch + 1,
    }
    records.changed(trainer, s, entry, f"goodput: {choice.reason}")  # joins the history once the epoch finished
    logger.warning(
        f"{prefix}goodput: batch {old} -> {new} from epoch {trainer.epoch + 1} (effective batch {effective}, "
        f"lr0 {lrscale.lr0_now(trainer, s):.6g}{lr}): {choice.reason}"
    )


def resumed_spec(resume) -> BatchSpec | None:
    """At a plain resume (``resume=.../last.pt``, no batch given): the run's goodput settings, else None.

    The settings of the run's latest decision when it is goodput's (``goodput_gain``, ``min_batch``,
    ``oom_retries``...); `wiring.plan` puts them in the session's `Fixed`.
    """
    from pathlib import Path

    if not str(resume).endswith(".pt"):
        return None
    path = Path(str(resume)).resolve().parent.parent / DECISION_FILE
    try:
        data = read_decision(path) if path.is_file() else {}  # damaged: said once, by `records.load_history`
    except ValueError:
        return None
    top = latest(data.get("history") or [data]) if data else None
    if not top or top.get("policy") != "goodput" or not top.get("goodput") or not top.get("speed"):
        return None
    try:
        return BatchSpec(**{k: v for k, v in (top.get("settings") or {}).items() if k in KEYS})
    except (ValueError, TypeError):  # settings another release wrote, or edited: spec's one-line errors
        return None


def resume(trainer: BaseTrainer, s: Session) -> None:
    """A resumed goodput run: the pace and fit bound from its decision (`lrscale` carries its lr_scaling on)."""
    record = s.record or {}
    kept = record.get("goodput") or {}
    begin(s, pace_from_record(record), int(kept.get("fit_bound") or trainer.batch_size))


def after_oom(s: Session, new: int) -> None:
    """After an out-of-memory step-down to ``new``: goodput never switches above it again."""
    state = s.switching
    if state.on:
        state.fit_bound = min(state.fit_bound, new)
    state.choice = None
