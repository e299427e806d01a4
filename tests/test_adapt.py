"""`adapt` (policy goodput during training) on the fake trainer: the switch noted once its rebuild is made."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.fake_trainer import FakeTrainer
from yolo_batch import adapt, lrscale, rebuild, recovery
from yolo_batch.core.spec import BatchSpec
from yolo_batch.core.throughput import Pace, TimeLaw

PACE = Pace(TimeLaw(0.1, 0.01))  # 16: 61.5 images/s, 64: 86.5, 128: 92.8


@pytest.fixture
def follows(monkeypatch):
    """Every `lrscale.follow`, by the batch it followed; the pipeline rebuild steerable on the fake trainer."""
    calls: list[int] = []
    real = lrscale.follow
    monkeypatch.setattr(lrscale, "follow", lambda t, s: calls.append(t.batch_size) or real(t, s))
    monkeypatch.setattr(rebuild, "supported", lambda trainer: True)
    return calls


def _goodput_run(batch: int = 16, **settings) -> FakeTrainer:
    """A goodput run after its decision: the rebuild attached as `wiring.attach` does, the first build made."""
    t = FakeTrainer(batch, BatchSpec(policy="goodput", **settings))
    s = t.session
    t.lf = lambda epoch: 1.0  # Ultralytics' schedule factor
    s.bn_momenta = {"model.0.bn": 0.03}  # BatchNorm's momentum as `batchnorm` noted it (no model to read)
    adapt.begin(s, PACE, 64)
    lrscale.plan(t, s, s.spec.lr_scaling, batch)
    rebuild.attach(t, None, adapt.switch, recovery.step_down, lrscale.follow)
    t._build_train_pipeline()  # _setup_train's build
    lrscale.start(t, s)  # on_pretrain_routine_end: the optimizer built
    return t


def _epoch_end(t: FakeTrainer, noise: float | None) -> None:
    t.session.meter.noise = SimpleNamespace(value=noise)  # the epoch's estimate (`callbacks` writes it)
    adapt.after_epoch(t, t.session)


def test_a_goodput_switch_writes_the_batch_once_and_follows_the_lr_once(follows):
    t = _goodput_run(16, lr_scaling="linear")
    t.args.nbs = 8  # above nbs: linear scaling changes the lr (x 64 / 8 = 8)
    s = t.session
    s.switching.choice = SimpleNamespace(batch=64, reason="goodput 64: faster")
    assert rebuild.request(t, s, 64) is None  # arm: the stand-in loader in place
    t.batch_writes.clear(), t.args.writes.clear(), follows.clear()
    t.restart(halved_to=8)  # the stand-in's batch entered Ultralytics' restart, which halved and rebuilds
    assert (t.batch_writes, t.args.writes, follows, t.builds[-1]) == ([64], [64], [64], 64)
    assert t.scheduler.base_lrs == [pytest.approx(0.01 * 64 / 8)]  # the base lr0 x 64's factor, set once
    entry = s.waiting[-1]
    assert (entry["source"], entry["previous_batch"], entry["batch"]) == ("goodput", 16, 64)
    assert entry["lr0"] == pytest.approx(0.01 * 64 / 8)  # the record's lr0: the lr the new batch trains at
    assert s.switching.choice is None and s.change == (16, 64, "goodput: goodput 64: faster")
