"""``lrscale``: lr_scaling from the base lr0, once, at the batch that trains (a stand-in optimizer, no training)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from yolo_batch.core.spec import BatchSpec
from yolo_batch.session import Session
from yolo_batch.train import lrscale


def _trainer(batch: int, initial_lr: float = 0.01):
    """A trainer after ``_setup_train``: three groups; the scheduler's base from the base lr0 0.01, nbs 16."""
    groups = [{"lr": 0.01, "initial_lr": initial_lr} for _ in range(3)]
    return SimpleNamespace(
        batch_size=batch,
        args=SimpleNamespace(nbs=16, lr0=0.01, optimizer="SGD"),
        optimizer=SimpleNamespace(param_groups=groups),
        scheduler=SimpleNamespace(base_lrs=[0.01] * 3),
    )


def _lrs(t) -> tuple:
    return t.args.lr0, t.scheduler.base_lrs, [g["initial_lr"] for g in t.optimizer.param_groups]


def test_the_factor_follows_each_batch_from_the_base_and_args_keep_it():
    t, s = _trainer(32), Session(BatchSpec(lr_scaling="linear"), decides=True, value="auto-plus")
    assert lrscale.plan(t, s, "linear", 32)["lr0_scaled"] == 0.02
    lrscale.start(t, s)
    assert _lrs(t) == (0.01, [0.02] * 3, [0.02] * 3)
    t.batch_size = 8  # an out-of-memory step-down: 8 accumulates 2 (effective 16): x 1
    assert lrscale.follow(t, s) == ", lr_scaling linear: x0.5"
    assert _lrs(t) == (0.01, [0.01] * 3, [0.01] * 3)
    t.batch_size = 64  # a goodput switch up: x 4, from the base, not from the last value
    lrscale.follow(t, s)
    assert _lrs(t) == (0.01, [0.04] * 3, [0.04] * 3)


def test_a_resume_takes_the_runs_scaling_and_replaces_the_checkpoints_factor():
    t = _trainer(8, initial_lr=0.02)  # the checkpoint's groups were at batch 32's factor
    s = Session(BatchSpec(), decides=False, value=None)
    lrscale.from_record(t, s, {"lr_scaling": "linear", "batch": 32})
    lrscale.start(t, s)
    assert _lrs(t) == (0.01, [0.01] * 3, [0.01] * 3)


@pytest.mark.parametrize("record", [None, {"lr_scaling": "none"}], ids=["no-decision", "none"])
def test_no_scaling_touches_nothing(record):
    t = _trainer(32, initial_lr=0.02)
    s = Session(BatchSpec(), decides=False, value=None)
    lrscale.from_record(t, s, record)
    lrscale.start(t, s)
    assert _lrs(t) == (0.01, [0.01] * 3, [0.02] * 3)
