"""The one owner of Ultralytics' training-pipeline rebuild, for the three reasons an auto-plus run rebuilds.

Ultralytics 8.4's ``BaseTrainer._do_train`` builds the dataloaders, ``accumulate`` and weight decay in
``_build_train_pipeline``, once in ``_setup_train`` and again in its out-of-memory branch, which also recomputes
the loop's own state (batches per epoch ``nb``, warm-up iterations ``nw``, the nominal accumulation ``acc0``,
the optimizer-step cadence, the mosaic gate), hands the validator the new loader, resets the scheduler's epoch
and restarts the epoch. `attach` wraps ``_build_train_pipeline`` on one trainer, and each build has one reason:

- the first build of a DDP worker: the ranks agree on the batch (``first``, `decide.ddp_auto_batch`);
- a goodput switch (``switch``, `adapt.switch`): `request` put a one-iteration stand-in loader in place at the
  epoch's start, whose batch raises `BatchSwitch` inside Ultralytics' forward guard; its text names "out of
  memory" (the only words that branch accepts) and says that no memory ran out;
- an out-of-memory error in any epoch (``step_down``, `recovery.step_down`): the policy's next lower batch in
  place of Ultralytics' half.

Ultralytics restarts after an out-of-memory error only while ``epoch == start_epoch`` and at most 3 times an
epoch: `open_epoch` holds ``start_epoch`` and sets it to the epoch that runs, `close_epoch` puts it back before
anything else reads it (checkpoints, resume). Why no seam without that branch exists: ``docs/architecture.md``.
Ultralytics' attributes are read and written through `yolo_batch.port` alone. The one guard is the port's check of
the installed release's lines (`yolo_batch.port.fingerprint`, at attach time): where they differ nothing here
steers the restart (``unsteered`` says why; Ultralytics' own first-epoch halving stays, goodput does not switch).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from yolo_batch import port
from yolo_batch.device.memory import NotOutOfMemory
from yolo_batch.session import Session, log, session


class BatchSwitch(NotOutOfMemory):
    """Raised by the stand-in batch to enter Ultralytics' restart path; its text names that path (no OOM: `is_oom`)."""


class _SwitchBatch(dict):
    """A batch whose first use raises `BatchSwitch` (inside Ultralytics' ``try`` around the forward)."""

    def __init__(self, old: int, new: int) -> None:
        super().__init__()
        self.message = (
            f"yolo-batch goodput switches the batch from {old} to {new} through Ultralytics' out of memory restart "
            "(no memory ran out)"
        )

    def _raise(self, *args: Any, **kwargs: Any):
        raise BatchSwitch(self.message)

    __getitem__ = get = items = keys = values = __iter__ = __contains__ = _raise


class _StandIn:
    """The training loader for one iteration: one `_SwitchBatch`, then the real loader is closed and rebuilt."""

    def __init__(self, loader, old: int, new: int) -> None:
        self.loader, self.old, self.new = loader, old, new
        self.dataset = None  # closing mosaic on the stand-in does nothing; the rebuilt loader closes it again

    def __iter__(self):
        yield _SwitchBatch(self.old, self.new)

    def __len__(self) -> int:
        return 1

    def reset(self) -> None:
        pass

    def close(self) -> None:
        if hasattr(self.loader, "close"):
            self.loader.close()


class _QuietRestart(logging.Filter):
    """Drops Ultralytics' "out of memory ... Reducing to batch=" warning of the one restart a switch causes."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("Reducing to batch=" in message and "retrying" in message)


def attach(
    trainer,
    first: Callable[[Any], int] | None,
    switch: Callable[[Any, Session, int, int, str], None],
    step_down: Callable[[Any, Session, int], int],
    after: Callable[[Any, Session], str],
    unsteered: str | None = None,
) -> bool:
    """Own the trainer's pipeline build (an instance attribute); False where nothing is attached.

    Args:
        trainer: The auto-plus trainer.
        first: Returns the batch of a DDP worker's first build, or None for a single process.
        switch: Notes a goodput switch from the old batch to the new one, after its rebuild (the batch written
            and the lr followed here), with the lr's words.
        step_down: Returns the batch after an out-of-memory error at the given batch (before the rebuild).
        after: Runs after every rebuild (lr scaling follows the batch); returns the words for the log.
        unsteered (str | None): Why the release's restart cannot be steered (`port.check`'s words), or None. Then
            no restart is steered, and the build is attached only for a DDP worker's first build.
    """
    s = session(trainer)
    assert s is not None  # wiring attaches auto-plus trainers only
    s.rebuild.unsteered = unsteered
    if unsteered is not None and first is None:
        return False
    port.wrap(trainer, "_build_train_pipeline", _build, trainer, first, switch, step_down, after)
    return True


def _build(trainer, first, switch, step_down, after, original):
    """One build of the pipeline, for its reason (see the module's docstring)."""
    s = session(trainer)
    assert s is not None  # install() ran for a trainer with a session
    state = s.rebuild
    if state.built_at is None and first is not None:  # DDP worker, first build: agree on the batch with the ranks
        trainer.args.batch = trainer.batch_size = first(trainer)
    retries = port.oom_retries(trainer)
    switched_from = None
    if state.unsteered is None and state.built_at is not None and retries > state.retries_seen:  # a restart
        old = state.built_at  # Ultralytics halved the batch: the reason gives the one to build at
        loader = getattr(trainer, "train_loader", None)
        if isinstance(loader, _StandIn):
            _end_switch(trainer, state)
            new, switched_from = loader.new, old
        else:
            new = step_down(trainer, s, old)
        trainer.args.batch = trainer.batch_size = new  # the one write of the batch a restart gives
    state.retries_seen = retries
    result = original()
    state.built_at = trainer.batch_size
    words = after(trainer, s)  # the lr follows the batch that trains, once a build
    if switched_from is not None:
        switch(trainer, s, switched_from, trainer.batch_size, words)
    return result


def open_epoch(trainer, s: Session, restarts: bool) -> None:
    """At an epoch's start: this epoch may restart (after an OOM, or for a switch); ``restarts`` False: no more.

    Ultralytics restarts only while ``epoch == start_epoch``: ``start_epoch`` is held here and set to this epoch
    while it runs (`close_epoch` puts it back). Without ``restarts`` Ultralytics' own cap of 3 makes the next
    out-of-memory error raise. Nothing where the restart is not steered (stock).
    """
    state = s.rebuild
    if state.unsteered is not None:
        return
    held = port.open_restart(trainer)
    if state.start_epoch is None:
        state.start_epoch = held
    state.retries_seen = port.oom_retries(trainer)
    if not restarts:
        port.end_restarts(trainer)


def close_epoch(trainer, s: Session) -> None:
    """At an epoch's training end: Ultralytics' ``start_epoch`` back as it was."""
    if s.rebuild.start_epoch is not None:
        port.close_restart(trainer, s.rebuild.start_epoch)
        s.rebuild.start_epoch = None


def request(trainer, s: Session, new: int) -> str | None:
    """At an epoch's start, before its loader is iterated: rebuild at ``new`` through the restart (a switch).

    Returns None when the stand-in is in place, else why no switch can be made this epoch.
    """
    if isinstance(trainer.train_loader, _StandIn):
        return None
    if s.rebuild.unsteered is not None or port.wrapper(trainer, "_build_train_pipeline") is not _build:
        return s.rebuild.unsteered or "nothing steers the pipeline rebuild"
    if port.oom_retries(trainer) >= port.RESTART_CAP:
        return "the out-of-memory restarts are used up"
    state = s.rebuild
    state.log_filter = _QuietRestart()
    log()[0].addFilter(state.log_filter)
    # the loop's warm-up step runs once for the stand-in's iteration: `_end_switch` puts back what it set
    groups = [(g.get("lr"), g.get("momentum")) for g in trainer.optimizer.param_groups]
    state.saved = (groups, port.accumulate(trainer))
    port.swap_train_loader(trainer, _StandIn(trainer.train_loader, trainer.batch_size, new))
    return None


def _end_switch(trainer, state) -> None:
    """Inside the switch's restart: the log filter off, the optimizer's lr and momentum and ``accumulate`` back."""
    if state.log_filter is not None:
        log()[0].removeFilter(state.log_filter)
        state.log_filter = None
    groups, accumulate = state.saved
    port.set_accumulate(trainer, accumulate)
    state.saved = None
    for group, (lr, momentum) in zip(trainer.optimizer.param_groups, groups):
        group["lr"] = lr
        if momentum is not None:
            group["momentum"] = momentum
