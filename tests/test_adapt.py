"""`adapt` (policy goodput during training) on the fake trainer: the epoch-end decision, the switch asked of
`rebuild` at the next start, the switch noted once its rebuild is made, the settle rule; no training."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.fake_trainer import FakeTrainer
from yolo_batch.core.spec import BatchSpec
from yolo_batch.core.throughput import Pace, TimeLaw
from yolo_batch.train import adapt, lrscale, rebuild, recovery

PACE = Pace(TimeLaw(0.1, 0.01))  # 16: 61.5 images/s, 64: 86.5, 128: 92.8


@pytest.fixture
def follows(monkeypatch):
    """Every `lrscale.follow`, by the batch it followed; the pipeline rebuild attached as on a steerable release."""
    calls: list[int] = []
    real = lrscale.follow
    monkeypatch.setattr(lrscale, "follow", lambda t, s: calls.append(t.batch_size) or real(t, s))
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


def test_epoch_end_decides_arm_asks_rebuild_and_the_switch_is_noted_in_its_rebuild(follows, caplog):
    t = _goodput_run(16)
    s = t.session
    _epoch_end(t, 500.0)  # one reading: the noise scale has not settled, no switch
    assert s.switching.choice is None and s.switching.readings == [500.0]
    t.epoch = 1
    _epoch_end(t, 520.0)  # +4%: settled, 64 wins by +41%
    assert s.switching.choice.batch == 64 and "goodput after epoch 2: switching 16 -> 64" in caplog.text
    t.epoch = 2
    adapt.arm(t, s)
    assert isinstance(t.train_loader, rebuild._StandIn) and t.builds == [16]  # nothing rebuilt yet
    t.restart(halved_to=8)
    assert (t.batch_size, t.args.batch, t.builds) == (64, 64, [16, 64])
    assert s.waiting[-1]["from_epoch"] == 3 and not s.history  # joins the history once epoch 3 finished
    assert "goodput: batch 16 -> 64 from epoch 3 (effective batch 64" in caplog.text


@pytest.mark.parametrize(
    ("readings", "switches"),
    [
        pytest.param([500.0, 520.0], True, id="settled"),
        pytest.param([500.0, 700.0], False, id="moved-40%"),
        pytest.param([None, 520.0], False, id="one-estimate"),
    ],
)
def test_goodput_switches_only_once_the_noise_scale_settled(follows, readings, switches):
    t = _goodput_run(16)
    for epoch, noise in enumerate(readings):
        t.epoch = epoch
        _epoch_end(t, noise)
    assert (t.session.switching.choice is not None) == switches


def test_no_decision_after_the_last_epoch_nor_for_a_ddp_worker_nor_a_stopped_run(follows):
    t = _goodput_run(16)
    t.epoch = t.epochs - 1
    _epoch_end(t, 500.0)
    _epoch_end(t, 520.0)
    assert t.session.switching.choice is None and len(t.session.switching.readings) == 2
    w = FakeTrainer(16, BatchSpec(policy="goodput"), worker=True)
    adapt.begin(w.session, PACE, 64)
    w.session.switching.readings.append(500.0)
    _epoch_end(w, 520.0)
    assert w.session.switching.choice is None


def test_arm_without_a_rebuild_to_steer_says_why_and_drops_the_choice(caplog):
    t = FakeTrainer(16, BatchSpec(policy="goodput"))  # nothing attached (as on a release whose restart differs)
    t.session.switching.choice = SimpleNamespace(batch=64, reason="faster")
    adapt.arm(t, t.session)
    assert t.session.switching.choice is None and "goodput: no switch to 64: nothing is attached" in caplog.text


def test_after_an_oom_goodput_never_switches_above_the_lower_batch():
    t = FakeTrainer(64, BatchSpec(policy="goodput"))
    adapt.begin(t.session, PACE, 128)
    t.session.switching.choice = SimpleNamespace(batch=128, reason="faster")
    adapt.after_oom(t.session, 48)
    assert (t.session.switching.fit_bound, t.session.switching.choice) == (48, None)
