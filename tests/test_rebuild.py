"""`rebuild`: the one owner of Ultralytics' pipeline rebuild, and the lines of Ultralytics it relies on."""

from __future__ import annotations

import inspect
import textwrap
from types import SimpleNamespace

import pytest
import ultralytics
from ultralytics.engine.trainer import BaseTrainer

from yolo_batch import rebuild
from yolo_batch.core.spec import BatchSpec
from yolo_batch.session import ATTR, Session

# What `rebuild` relies on in BaseTrainer._do_train, in this order. An Ultralytics release that changes one of
# them fails here: check `rebuild` (and docs/architecture.md's seam note) against the new loop, then update both.
_DO_TRAIN = (
    "nb = len(self.train_loader)",  # the loop's state, computed before the epoch loop ...
    "nw = self._get_warmup_iterations(nb)",
    "acc0 = self.accumulate",
    'self.run_callbacks("on_train_epoch_start")',  # open_epoch / request run here, before the loader is iterated
    "pbar = enumerate(self.train_loader)",
    "batch = self.preprocess_batch(batch)",  # inside the try: the stand-in's batch raises here
    'is_oom = "out of memory" in str(e).lower()',  # the only words the restart branch accepts
    "if epoch > self.start_epoch or self._oom_retries >= 3 or RANK != -1:",  # open_epoch's start_epoch, the cap
    "self._oom_retries += 1",  # how _build tells a restart from a first build
    "self.args.batch = self.batch_size = max(self.batch_size // 2, 1)",  # replaced before the rebuild
    "self.train_loader.close()",  # the stand-in's close closes the real loader
    "self._build_train_pipeline()",  # ... and recomputed only after this rebuild
    "self.validator.dataloader = self.test_loader",
    "self.scheduler.last_epoch = self.start_epoch - 1",
    "nb = len(self.train_loader)",
    "nw = self._get_warmup_iterations(nb)",
    "acc0 = self.accumulate",
    "break  # restart epoch loop",
    "self._oom_retries = 0  # reset OOM counter",
    'self.run_callbacks("on_train_epoch_end")',  # close_epoch: start_epoch back before the checkpoint
    "self.save_model()",
)
_BUILD = (
    "self.train_loader = self.get_dataloader(",
    "self.test_loader = self.get_dataloader(",
    "self.accumulate = max(round(self.args.nbs / self.batch_size), 1)",
    "if self.optimizer is None:",  # a rebuild keeps the optimizer (and its state)
)


def _in_order(source: str, lines: tuple[str, ...]) -> None:
    at = 0
    for line in lines:
        found = source.find(line, at)
        assert found >= 0, (
            f"Ultralytics {ultralytics.__version__}: {line!r} is gone from where yolo_batch.rebuild expects it; "
            "check rebuild against the new BaseTrainer._do_train"
        )
        at = found + len(line)


def test_the_ultralytics_code_the_rebuild_relies_on_is_unchanged():
    assert ultralytics.__version__.startswith(rebuild.RELEASES), (
        f"Ultralytics {ultralytics.__version__} is outside rebuild.RELEASES {rebuild.RELEASES}: pin it here first"
    )
    _in_order(textwrap.dedent(inspect.getsource(BaseTrainer._do_train)), _DO_TRAIN)
    _in_order(textwrap.dedent(inspect.getsource(BaseTrainer._build_train_pipeline)), _BUILD)


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


def _attached(first=None):
    calls = []
    trainer = _Trainer(16)
    rebuild.attach(
        trainer,
        first,
        switch=lambda t, s, old, new, lr: calls.append(("switch", old, new, lr)),
        step_down=lambda t, s, old: calls.append(("oom", old)) or old - 4,
        after=lambda t, s: calls.append(("after", t.batch_size)) or f"lr at {t.batch_size}",
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


@pytest.mark.parametrize("release", [pytest.param("8.3.200", id="8.3"), pytest.param("9.0.0", id="9.0")])
def test_one_version_guard_leaves_other_releases_alone(monkeypatch, release):
    monkeypatch.setattr(ultralytics, "__version__", release)
    trainer, calls = _attached()
    assert "_build_train_pipeline" not in vars(trainer)  # the class's own build: nothing attached
    assert rebuild.request(trainer, trainer._yolo_batch, 32).startswith(f"Ultralytics {release} has no pipeline")
