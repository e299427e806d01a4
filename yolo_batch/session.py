"""What the integration layer shares about one run: the `Session` on its trainer, the file names, the log prefix.

`callbacks`, `decide`, `recovery`, `records` and `ddp` stand on this module; it imports only the standard
library and `spec`, so none of them needs another for the per-run state, and no import cycle runs through it.

    >>> from yolo_batch.session import Session, session
    >>> from yolo_batch.spec import BatchSpec
    >>> class Trainer: ...
    >>> t = Trainer()
    >>> session(t) is None
    True
    >>> setattr(t, ATTR, Session(BatchSpec(), decides=True, value="auto-plus"))
    >>> session(t).value
    'auto-plus'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from yolo_batch.spec import BatchSpec

ATTR = "_yolo_batch"  # the per-trainer Session lives in this attribute
DECISION_FILE = "batch_decision.json"
EFFECT_FILE = "batch_effect.csv"
PLOT_FILE = "batch_effect.png"


def log():
    """Ultralytics' ``LOGGER`` and the coloured ``AutoPlus: `` prefix every plugin line starts with."""
    from ultralytics.utils import LOGGER, colorstr

    return LOGGER, colorstr("AutoPlus: ")


@dataclass
class LrScale:
    """``lr_scaling`` of the run, written by `yolo_batch.lrscale` alone.

    Attributes:
        scaling (str): ``none``, ``linear`` or ``sqrt``.
        applies (bool): Scaling is on and the optimizer uses lr0 (not ``optimizer=auto``).
        factor (float): The factor applied now.
        base_lrs (list[float] | None): The scheduler's ``base_lrs`` at factor 1 (from the base lr0), once known.
    """

    scaling: str = "none"
    applies: bool = False
    factor: float = 1.0
    base_lrs: list[float] | None = None


class Session:
    """What the plugin knows about one training run."""

    def __init__(self, spec: BatchSpec, decides: bool, value: str | None) -> None:
        """``decides``: choose the batch (auto-plus); else only measure and log the effect."""
        self.spec, self.decides, self.value = spec, decides, value
        self.backend = None
        self.headroom = None
        self.record: dict[str, Any] | None = None  # the latest auto-plus decision (batch_decision.json)
        self.history: list[dict[str, Any]] = []  # every batch choice of the run, oldest first
        self.pending = False  # a decision made on resume, queued once its first epoch is known
        self.waiting: list[dict[str, Any]] = []  # history entries whose first epoch has not finished (`records`)
        self.given: Any = None  # the batch given with a resume, when one was
        self.earlier_run: str | None = None  # the run folder a rerun of its args.yaml did not write into
        self.effect = None
        self.epoch_start = 0.0
        self.train_seconds = 0.0
        self.trained = False  # a training epoch ended since the last on_fit_epoch_end
        self.last_batch: int | None = None
        self.oom_events = 0
        self.noise = None  # GradientNoise, when noise_scale is on
        self.tap = None
        self.stepped = False
        self.train_batch: int | None = None  # the batch training runs at, before an OOM step-down
        self.retries_seen = 0  # Ultralytics' per-epoch OOM counter, as last seen
        self.start_epoch: int | None = None  # trainer.start_epoch, held while an epoch runs
        self.launcher = False  # the DDP launcher: spawns the workers, trains nothing
        self.worker = False  # a DDP worker of an auto-plus launch: decides with the other ranks
        self.val_batch: int | None = None  # the fixed validation batch (YOLO_BATCH_VAL_BATCH), when asked for
        self.bn_momenta: dict[str, float] | None = None  # bn_momentum auto: each BatchNorm's own momentum
        self.bn_batch: int | None = None  # bn_momentum auto: the batch the momenta were last scaled to
        self.adapts = False  # a plain resume of a goodput run: no new decision, goodput goes on switching
        self.goodput: dict[str, Any] | None = None  # policy goodput: the pace and the fit bound (`adapt`)
        self.noise_readings: list[float | None] = []  # the noise-scale estimate at each epoch's end
        self.switch: Any = None  # goodput: the batch switch decided at an epoch's end, made at the next start
        self.switch_filter: Any = None  # the log filter that hides Ultralytics' restart warning of a switch
        self.switch_state: Any = None  # the optimizer's lr and momentum before the switch's stand-in iteration
        self.change: tuple[int, int, str] | None = None  # the batch change of this epoch: (old, new, reason)
        self.lr = LrScale()  # lr_scaling's factor on the optimizer (`lrscale`)


def session(trainer) -> Session | None:
    """The trainer's Session, or None for a run that did not ask for the plugin."""
    return getattr(trainer, ATTR, None)
