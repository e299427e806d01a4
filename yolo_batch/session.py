"""What the integration layer shares about one run: the `Session` on its trainer, the file names, the log prefix.

`callbacks`, `decide`, `recovery`, `records`, `rebuild` and `ddp` stand on this module; it imports only the
standard library and `spec`, so none of them needs another for the per-run state, and no import cycle runs
through it.

    >>> from yolo_batch.session import Session, session
    >>> from yolo_batch.core.spec import BatchSpec
    >>> class Trainer: ...
    >>> t = Trainer()
    >>> session(t) is None
    True
    >>> setattr(t, ATTR, Session(BatchSpec(), decides=True, value="auto-plus"))
    >>> session(t).value
    'auto-plus'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from yolo_batch.core.spec import BatchSpec

if TYPE_CHECKING:
    import logging


ATTR = "_yolo_batch"  # the per-trainer Session lives in this attribute
DECISION_FILE = "batch_decision.json"
EFFECT_FILE = "batch_effect.csv"
PLOT_FILE = "batch_effect.png"


def log() -> tuple[logging.Logger, str]:
    """Ultralytics' ``LOGGER`` and the coloured ``AutoPlus: `` prefix every plugin line starts with."""
    from ultralytics.utils import LOGGER, colorstr

    return LOGGER, colorstr("AutoPlus: ")


@dataclass
class LrScale:
    """``lr_scaling`` of the run, written by `yolo_batch.train.lrscale` alone.

    Attributes:
        scaling (str): ``none``, ``linear`` or ``sqrt``.
        applies (bool): Scaling is on and the optimizer uses lr0 (not ``optimizer=auto``), or the large-batch
            recipe scales the lr ``optimizer=auto`` picks.
        factor (float): The factor applied now.
        base_lrs (list[float] | None): The scheduler's ``base_lrs`` at factor 1 (from the base lr0), once known.
        warmup_floor (int): The large-batch recipe's warm-up floor in iterations (0: Ultralytics' warm-up).
        bn_auto (bool): The large-batch recipe turns ``bn_momentum`` auto on (`batchnorm` reads it).
    """

    scaling: str = "none"
    applies: bool = False
    factor: float = 1.0
    base_lrs: list[float] | None = None
    warmup_floor: int = 0
    bn_auto: bool = False


@dataclass
class OomState:
    """Out-of-memory recovery, written by `yolo_batch.train.recovery` alone.

    Attributes:
        events (int): Out-of-memory events absorbed so far (step-downs, validation halvings, Ultralytics' own).
    """

    events: int = 0


@dataclass
class RebuildState:
    """Ultralytics' pipeline rebuild and its restart, written by `yolo_batch.train.rebuild` alone.

    Attributes:
        built_at (int | None): The batch the training pipeline was last built at (None before the first build).
        retries_seen (int): Ultralytics' per-epoch restart counter (``_oom_retries``), as last seen.
        start_epoch (int | None): Ultralytics' ``start_epoch``, held while an epoch runs.
        saved (tuple | None): The optimizer's lr and momentum, and ``accumulate``, before a switch's stand-in iteration.
        log_filter (logging.Filter | None): Hides Ultralytics' restart warning of that switch.
        unsteered (str | None): Why the restart is not steered (the release's lines differ, or nothing attached);
            None while `rebuild` steers it.
    """

    built_at: int | None = None
    retries_seen: int = 0
    start_epoch: int | None = None
    saved: Any = None
    log_filter: Any = None
    unsteered: str | None = "nothing is attached"


@dataclass
class DeviceMeter:
    """The memory meter of the device that trains, written by `yolo_batch.device.memory` alone (`bind`, `measure`).

    Attributes:
        backend (memory.CUDAMemory | memory.MPSMemory | memory.CPUMemory | None): The meter.
        device (Any): The device it meters.
        headroom (memory.Headroom | None): The free and total memory when the run started.
    """

    backend: Any = None
    device: Any = None
    headroom: Any = None


@dataclass
class EpochMeter:
    """The epoch's measurement, written by `yolo_batch.callbacks` alone.

    Attributes:
        effect (effect.EffectLog | None): ``batch_effect.csv``.
        started (float): ``perf_counter`` at the epoch's start.
        train_seconds (float): The training part of the epoch.
        trained (bool): A training epoch ended since the last ``on_fit_epoch_end``.
        last_batch (int | None): The batch of the last epoch logged.
        segment_start (int): The first epoch this process trains (1, or the epoch after a resume's checkpoint).
        noise (effect.GradientNoise | None): The gradient-noise estimate, when ``noise_scale`` is on.
        tap (effect.GradientTap | None): What feeds it.
        stepped (bool): The optimizer stepped in this iteration.
    """

    effect: Any = None
    started: float = 0.0
    train_seconds: float = 0.0
    trained: bool = False
    last_batch: int | None = None
    segment_start: int = 1
    noise: Any = None
    tap: Any = None
    stepped: bool = False


@dataclass
class SwitchState:
    """Policy ``goodput`` during training, written by `yolo_batch.train.adapt` alone.

    Attributes:
        on (bool): The run's batch is goodput's to change.
        pace (throughput.Pace | None): Predicted images/s per batch.
        fit_bound (int): The largest batch goodput may switch to.
        readings (list[float | None]): The noise-scale estimate at each epoch's end.
        choice (goodput.Choice | None): The switch decided at an epoch's end, made at the next start.
    """

    on: bool = False
    pace: Any = None
    fit_bound: int = 0
    readings: list[float | None] = field(default_factory=list)
    choice: Any = None


@dataclass(frozen=True)
class Fixed:
    """What is fixed when the trainer is built (`wiring.plan`), frozen: nothing assigns it afterwards.

    Attributes:
        spec (BatchSpec): The run's settings (a plain resume of a goodput run: its decision's settings).
        decides (bool): auto-plus chooses the batch; else the run is only measured and its effect logged.
        value (str | None): The auto-plus value asked for (None for a measured run).
        given (Any): The batch given with a resume, when one was.
        earlier_run (str | None): The run folder a rerun of its args.yaml did not write into.
        launcher (bool): The DDP launcher: spawns the workers, trains nothing.
        worker (bool): A DDP worker of an auto-plus launch: decides with the other ranks.
        adapts (bool): A plain resume of a goodput run: no new decision, goodput goes on switching.
        batch_before (int | None): On a resume, the batch of the epochs trained so far (their args.yaml).
        asked_before (str | None): On a resume, the auto-plus value the run's args.yaml held (`records.asked`).
    """

    spec: BatchSpec
    decides: bool
    value: str | None
    given: Any = None
    earlier_run: str | None = None
    launcher: bool = False
    worker: bool = False
    adapts: bool = False
    batch_before: int | None = None
    asked_before: str | None = None


class Session:
    """What the plugin knows about one training run.

    ``fixed`` (`Fixed`, frozen) holds what is set when the trainer is built (`wiring`), read through the
    properties of the same names; each piece of state that changes while the run trains has one writing module:
    the decision and its history (``record``, ``history``, ``pending``, ``waiting``, ``change``) `records`,
    ``oom`` `recovery`, ``rebuild`` `rebuild`, ``meter`` `callbacks`, ``switching`` `adapt`, ``lr`` `lrscale`,
    ``bn_momenta``/``bn_batch`` `batchnorm`, ``val_batch`` `valbatch`, ``device`` `memory` (``backend`` and
    ``headroom`` read it). ``tests/test_session.py`` holds each to the writer ``docs/architecture.md`` names.
    """

    def __init__(
        self,
        spec: BatchSpec,
        decides: bool,
        value: str | None,
        *,
        given: Any = None,
        earlier_run: str | None = None,
        launcher: bool = False,
        worker: bool = False,
        adapts: bool = False,
        batch_before: int | None = None,
        asked_before: str | None = None,
    ) -> None:
        """``decides``: choose the batch (auto-plus); else only measure and log the effect. The rest: `Fixed`."""
        self.fixed = Fixed(
            spec, decides, value, given, earlier_run, launcher, worker, adapts, batch_before, asked_before
        )
        self.device = DeviceMeter()  # the memory meter (`memory.bind`, `memory.measure`)
        self.record: dict[str, Any] | None = None  # the latest auto-plus decision (batch_decision.json)
        self.history: list[dict[str, Any]] = []  # every batch choice of the run, oldest first
        self.pending = False  # a decision made on resume, queued once its first epoch is known
        self.waiting: list[dict[str, Any]] = []  # history entries whose first epoch has not finished (`records`)
        self.meter = EpochMeter()  # `callbacks`
        self.oom = OomState()  # `recovery`
        self.rebuild = RebuildState()  # `rebuild`
        self.val_batch: int | None = None  # the fixed validation batch (YOLO_BATCH_VAL_BATCH), when asked (`valbatch`)
        self.bn_momenta: dict[str, float] | None = None  # bn_momentum auto: each BatchNorm's own momentum
        self.bn_batch: int | None = None  # bn_momentum auto: the batch the momenta were last scaled to
        self.switching = SwitchState()  # policy goodput (`adapt`)
        self.change: tuple[int, int, str] | None = (
            None  # the batch change of this epoch: (old, new, reason) (`records`)
        )
        self.lr = LrScale()  # lr_scaling's factor on the optimizer (`lrscale`)

    @property
    def spec(self) -> BatchSpec:
        """The run's settings (`Fixed.spec`)."""
        return self.fixed.spec

    @property
    def decides(self) -> bool:
        """auto-plus chooses the batch (`Fixed.decides`)."""
        return self.fixed.decides

    @property
    def value(self) -> str | None:
        """The auto-plus value (`Fixed.value`)."""
        return self.fixed.value

    @property
    def given(self) -> Any:
        """The batch given with a resume (`Fixed.given`)."""
        return self.fixed.given

    @property
    def earlier_run(self) -> str | None:
        """The run folder a rerun of its args.yaml did not write into (`Fixed.earlier_run`)."""
        return self.fixed.earlier_run

    @property
    def launcher(self) -> bool:
        """The DDP launcher (`Fixed.launcher`)."""
        return self.fixed.launcher

    @property
    def worker(self) -> bool:
        """A DDP worker of an auto-plus launch (`Fixed.worker`)."""
        return self.fixed.worker

    @property
    def adapts(self) -> bool:
        """A plain resume of a goodput run that goes on switching (`Fixed.adapts`)."""
        return self.fixed.adapts

    @property
    def batch_before(self) -> int | None:
        """On a resume, the batch of the epochs trained so far (`Fixed.batch_before`)."""
        return self.fixed.batch_before

    @property
    def asked_before(self) -> str | None:
        """On a resume, the auto-plus value the run's args.yaml held (`Fixed.asked_before`)."""
        return self.fixed.asked_before

    @property
    def backend(self) -> Any:
        """The device's memory meter (read-only: `memory.bind` sets it)."""
        return self.device.backend

    @property
    def headroom(self) -> Any:
        """The headroom when the run started (read-only: `memory.measure` sets it)."""
        return self.device.headroom


def session(trainer: object) -> Session | None:
    """The trainer's Session, or None for a run that did not ask for the plugin."""
    return getattr(trainer, ATTR, None)
