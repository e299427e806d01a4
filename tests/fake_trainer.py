"""A fake Ultralytics trainer for the integration's unit tests: what `rebuild`, `adapt`, `recovery`, `lrscale`
and `records` touch of a trainer, with every write of the batch counted. No torch, no training.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from yolo_batch.core.spec import BatchSpec
from yolo_batch.session import ATTR, Session


class Args(SimpleNamespace):
    """``trainer.args``, noting each write of ``batch``."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "batch" and "writes" in self.__dict__:
            self.writes.append(value)
        super().__setattr__(name, value)


class FakeTrainer:
    """The batch, the restart counter, the loaders, the optimizer and scheduler, the epochs and the run folder.

    ``batch_writes`` and ``args.writes`` list every value written to ``batch_size`` and ``args.batch``;
    ``builds`` the batch of each ``_build_train_pipeline``.
    """

    def __init__(self, batch: int = 16, spec: BatchSpec | None = None, *, save_dir: Path | None = None, **fixed: Any):
        args = Args(batch=batch, nbs=64, lr0=0.01, optimizer="SGD", split="val", imgsz=64)
        object.__setattr__(self, "batch_writes", [])
        args.writes = []
        self.args, self.batch_size, self._oom_retries = args, batch, 0
        self.epoch, self.epochs, self.start_epoch, self.stop = 0, 10, 0, False
        self.train_loader, self.accumulate, self.builds = None, 1, []
        self.optimizer = SimpleNamespace(param_groups=[{"lr": 0.01, "momentum": 0.9, "initial_lr": 0.01}])
        self.scheduler = SimpleNamespace(base_lrs=[0.01])
        self.save_dir = save_dir or Path("/nonexistent-fake-run")
        self.last = self.save_dir / "weights" / "last.pt"
        self.data = {"val": "val-images"}
        self.test_loader = SimpleNamespace(batch_size=2 * batch)
        self.validator = SimpleNamespace(dataloader=self.test_loader)
        setattr(self, ATTR, Session(spec or BatchSpec(), decides=True, value="auto-plus", **fixed))

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "batch_size" and "batch_writes" in self.__dict__ and "batch_size" in self.__dict__:
            self.batch_writes.append(value)
        super().__setattr__(name, value)

    @property
    def session(self) -> Session:
        """The run's Session."""
        return getattr(self, ATTR)

    def _build_train_pipeline(self) -> None:
        self.builds.append(self.batch_size)
        self.train_loader = SimpleNamespace(close=lambda: None, dataset=list(range(100)))

    def get_dataloader(self, split: Any, batch_size: int, rank: int, mode: str) -> SimpleNamespace:
        return SimpleNamespace(batch_size=batch_size, split=split, mode=mode)

    def restart(self, halved_to: int) -> None:
        """Ultralytics' out-of-memory branch: count the retry, halve (its own write, not counted), rebuild."""
        self._oom_retries += 1
        self.__dict__["batch_size"] = self.args.__dict__["batch"] = halved_to
        self._build_train_pipeline()
