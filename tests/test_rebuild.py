"""`rebuild`: the one owner of Ultralytics' pipeline rebuild, and the lines of Ultralytics it relies on."""

from __future__ import annotations

from types import SimpleNamespace

import ultralytics
from ultralytics.engine.trainer import BaseTrainer

from yolo_batch import port
from yolo_batch.core.spec import BatchSpec
from yolo_batch.session import ATTR, Session
from yolo_batch.train import rebuild


def test_the_ultralytics_code_the_rebuild_relies_on_is_unchanged():
    """The installed release has every line `port.fingerprint` pins (DO_TRAIN, BUILD, the decision moment).

    A release that changes one fails here with the line's name: check `rebuild` (and docs/architecture.md's seam
    note) against the new loop, then update the port's lines. At run time the same check turns the features off.
    """
    support = port.check(BaseTrainer)
    assert (support.decides, support.ddp_decides, support.restarts) == (None, None, None), (
        f"Ultralytics {ultralytics.__version__}: {support}"
    )


class _Trainer:
    """What `rebuild` touches of a trainer: the batch, the restart counter, the loader, the optimizer."""

    def __init__(self, batch: int) -> None:
        self.args = SimpleNamespace(batch=batch, nbs=64)
        self.batch_size, self._oom_retries, self.epoch, self.start_epoch = batch, 0, 0, 0
        self.train_loader, self.accumulate, self.builds = None, 1, []
        self.optimizer = SimpleNamespace(param_groups=[{"lr": 0.01, "momentum": 0.9}])
        setattr(self, ATTR, Session(BatchSpec(), decides=True, value="auto-plus"))

    def _build_train_pipeline(self) -> None:
        self.builds.append(self.batch_size)
        self.train_loader = SimpleNamespace(close=lambda: None)


def _attached(first=None, unsteered=None):
    calls = []
    trainer = _Trainer(16)
    rebuild.attach(
        trainer,
        first,
        switch=lambda t, s, old, new, lr: calls.append(("switch", old, new, lr)),
        step_down=lambda t, s, old: calls.append(("oom", old)) or old - 4,
        after=lambda t, s: calls.append(("after", t.batch_size)) or f"lr at {t.batch_size}",
        unsteered=unsteered,
    )
    return trainer, calls


def test_each_build_has_one_reason():
    trainer, calls = _attached()
    trainer._build_train_pipeline()  # the first build, in _setup_train
    assert (trainer.builds, calls) == ([16], [("after", 16)])

    trainer._oom_retries, trainer.batch_size = 1, 8  # Ultralytics caught an OOM and halved: the policy decides
    trainer._build_train_pipeline()
    assert trainer.builds[-1] == trainer.batch_size == trainer.args.batch == 12
    assert calls[-2:] == [("oom", 16), ("after", 12)]

    assert rebuild.request(trainer, trainer._yolo_batch, 32) is None  # a switch: the stand-in is in place
    assert isinstance(trainer.train_loader, rebuild._StandIn) and trainer.builds == [16, 12]
    trainer.optimizer.param_groups[0].update(lr=0.0, momentum=0.5)  # the warm-up step of the stand-in iteration
    trainer.accumulate = 7
    trainer._oom_retries, trainer.batch_size = 2, 6
    trainer._build_train_pipeline()
    assert trainer.builds[-1] == trainer.batch_size == 32
    assert calls[-2:] == [("after", 32), ("switch", 12, 32, "lr at 32")]  # noted once built, the lr followed
    assert (trainer.optimizer.param_groups[0], trainer.accumulate) == ({"lr": 0.01, "momentum": 0.9}, 1)
    assert trainer._yolo_batch.rebuild.log_filter is None  # Ultralytics' restart warning shows again


def test_a_ddp_worker_decides_at_its_first_build_only():
    trainer, calls = _attached(first=lambda t: 24)
    trainer._build_train_pipeline()
    trainer._build_train_pipeline()  # e.g. a rebuild with no restart: no second decision
    assert trainer.builds == [24, 24] and calls == [("after", 24), ("after", 24)]


def test_an_epoch_may_restart_while_it_runs_and_start_epoch_is_put_back():
    trainer, _ = _attached()
    s = trainer._yolo_batch
    trainer.epoch, trainer.start_epoch = 3, 1
    rebuild.open_epoch(trainer, s, restarts=True)
    assert (trainer.start_epoch, trainer._oom_retries) == (3, 0)
    rebuild.close_epoch(trainer, s)
    assert trainer.start_epoch == 1
    rebuild.open_epoch(trainer, s, restarts=False)  # oom_retries used up: the next OOM raises
    assert trainer._oom_retries == 3
    assert rebuild.request(trainer, s, 32) == "the out-of-memory restarts are used up"


def test_a_release_whose_restart_differs_is_left_alone():
    why = "Ultralytics 9.0.0's out-of-memory restart is not the one yolo-batch steers (...)"
    trainer, calls = _attached(unsteered=why)
    s = trainer._yolo_batch
    assert "_build_train_pipeline" not in vars(trainer)  # the class's own build: nothing attached
    trainer.epoch, trainer.start_epoch = 3, 1
    rebuild.open_epoch(trainer, s, restarts=True)  # stock: Ultralytics' own gate and counter
    assert (trainer.start_epoch, trainer._oom_retries) == (1, 0)
    assert rebuild.request(trainer, s, 32) == why and trainer.train_loader is None


def test_a_ddp_worker_still_decides_at_its_first_build_where_the_restart_differs():
    trainer, calls = _attached(first=lambda t: 24, unsteered="differs")
    trainer._build_train_pipeline()
    trainer._oom_retries, trainer.batch_size = 1, 12  # Ultralytics' own halving is not replaced
    trainer._build_train_pipeline()
    assert trainer.builds == [24, 12] and calls == [("after", 24), ("after", 12)]
