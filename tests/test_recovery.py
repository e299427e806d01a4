"""`recovery` on the fake trainer: the next lower batch after an out-of-memory error in any epoch, the restarts
left, the validation batch halved, the resumable stop message; no training."""

from __future__ import annotations

import pytest

from tests.fake_trainer import FakeTrainer
from yolo_batch.core.spec import AutoPlusError, BatchSpec
from yolo_batch.train import adapt, lrscale, rebuild, recovery

OOM = "CUDA out of memory. Tried to allocate 2.00 GiB"


def _run(batch: int, monkeypatch, **settings) -> FakeTrainer:
    """A run after its decision, the rebuild attached as `wiring.attach` does, the first build made."""
    t = FakeTrainer(batch, BatchSpec(**settings))
    rebuild.attach(t, None, adapt.switch, recovery.step_down, lrscale.follow)
    t._build_train_pipeline()
    return t


@pytest.mark.parametrize(
    ("policy", "batch", "lower"),
    [pytest.param("ladder", 64, 32, id="ladder-next-rung"), pytest.param("fit", 64, 48, id="fit-three-quarters")],
)
def test_an_oom_in_a_later_epoch_redoes_it_at_the_policys_next_lower_batch(monkeypatch, caplog, policy, batch, lower):
    t = _run(batch, monkeypatch, policy=policy)
    s = t.session
    t.epoch = 5  # any epoch, not only the first (Ultralytics' own halving stops after it)
    rebuild.open_epoch(t, s, restarts=recovery.restarts_left(s))
    assert t.start_epoch == 5  # Ultralytics restarts while epoch == start_epoch
    t.restart(halved_to=batch // 2)
    assert (t.batch_size, t.args.batch, t.builds) == (lower, lower, [batch, lower])  # not Ultralytics' half
    assert s.oom.events == 1 and not s.history
    entry = s.waiting[-1]
    assert (entry["source"], entry["previous_batch"], entry["batch"], entry["from_epoch"]) == ("oom", batch, lower, 6)
    assert (
        f"out of memory at batch {batch} in epoch 6; redoing the epoch at batch {lower} (step-down 1 of at most 3"
        in (caplog.text)
    )
    rebuild.close_epoch(t, s)
    assert t.start_epoch == 0


def test_no_batch_left_above_min_batch_is_a_one_line_error(monkeypatch):
    t = _run(16, monkeypatch, min_batch=16, candidates=(16,))
    with pytest.raises(AutoPlusError, match=r"out of memory at batch 16 and no smaller batch >= min_batch 16 is left"):
        recovery.step_down(t, t.session, 16)
    assert t.session.oom.events == 0


def test_restarts_left_counts_every_absorbed_oom_against_oom_retries(monkeypatch):
    t = _run(64, monkeypatch, oom_retries=2)
    s = t.session
    assert recovery.restarts_left(s)
    recovery.step_down(t, s, 64)
    assert recovery.restarts_left(s)
    recovery.step_down(t, s, 32)
    assert not recovery.restarts_left(s)
    rebuild.open_epoch(t, s, restarts=recovery.restarts_left(s))
    assert t._oom_retries == 3  # Ultralytics' cap: the next out-of-memory error raises


def _failing(errors: list[BaseException]):
    """Ultralytics' validate: raises each of ``errors`` in turn, then returns the metrics."""

    def validate():
        if errors:
            raise errors.pop(0)
        return "metrics"

    return validate


def test_an_oom_in_validation_halves_the_validation_batch_and_retries(monkeypatch, caplog):
    t = _run(16, monkeypatch)
    s = t.session
    assert recovery.guarded_validate(t, _failing([RuntimeError(OOM), RuntimeError(OOM)])) == "metrics"
    assert (t.test_loader.batch_size, t.validator.dataloader, s.oom.events) == (8, t.test_loader, 2)
    assert t.test_loader.mode == "val" and t.test_loader.split == "val-images"
    assert "out of memory validating at batch 16; validating at 8 (step-down 2 of at most 3)" in caplog.text


def test_a_fixed_validation_batch_steps_down_with_it(monkeypatch):
    t = _run(16, monkeypatch)
    t.session.val_batch = 32  # YOLO_BATCH_VAL_BATCH=32 (`valbatch.attach` sets it)
    recovery.guarded_validate(t, _failing([RuntimeError(OOM)]))
    assert t.session.val_batch == t.test_loader.batch_size == 16


def test_validation_errors_other_than_oom_and_past_oom_retries_propagate(monkeypatch):
    t = _run(16, monkeypatch, oom_retries=1)
    other = RuntimeError("shape mismatch")
    with pytest.raises(RuntimeError, match="shape mismatch") as err:
        recovery.guarded_validate(t, _failing([other]))
    assert err.value is other and t.session.oom.events == 0
    with pytest.raises(RuntimeError, match="CUDA out of memory"):
        recovery.guarded_validate(t, _failing([RuntimeError(OOM), RuntimeError(OOM)]))
    assert t.session.oom.events == 1


def _train_raising(error: BaseException):
    def train():
        raise error

    return train


def test_an_oom_recovery_cannot_absorb_stops_with_one_resumable_line(monkeypatch, tmp_path):
    t = _run(16, monkeypatch)
    t.epoch, t.last = 4, tmp_path / "weights" / "last.pt"
    t.last.parent.mkdir()
    t.last.write_bytes(b"checkpoint")
    with pytest.raises(AutoPlusError) as err:
        recovery.guarded_train(t, _train_raising(RuntimeError(OOM)))
    assert str(err.value) == (
        f"out of memory at batch 16 in epoch 5 after 0 step-down(s) (oom_retries=3); the last finished epoch is "
        f"saved: yolo train resume model={t.last} batch=N"
    )
    assert "\n" not in str(err.value) and isinstance(err.value.__cause__, RuntimeError)
    t.last = tmp_path / "none.pt"
    with pytest.raises(AutoPlusError, match=r"no epoch finished, nothing to resume$"):
        recovery.guarded_train(t, _train_raising(RuntimeError(OOM)))
    with pytest.raises(KeyError):  # not an out-of-memory error: untouched
        recovery.guarded_train(t, _train_raising(KeyError("x")))
