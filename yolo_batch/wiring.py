"""Which training runs are ours, and how an auto-plus trainer is wired, at ``BaseTrainer.__init__``.

`plan` runs before Ultralytics builds anything or makes a run folder: it reads the batch value (or a
registered `AutoPlus`, an added ``callbacks`` dict, ``YOLO_BATCH_OBSERVE``, the resume of an auto-plus run),
validates the settings, hands Ultralytics ``batch=-1`` so that it calls ``trainer.auto_batch``, adds the hooks
and makes the `Session`. `attach` then gives that one trainer its own ``auto_batch``, pipeline build,
validation and ``train`` (instance attributes: the class and every other trainer stay stock).
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yolo_batch import port
from yolo_batch.callbacks import callbacks
from yolo_batch.core.policy import SPEEDS
from yolo_batch.core.spec import AutoPlusError, looks_like_auto_plus, resolve_spec
from yolo_batch.decide import decide
from yolo_batch.decide.probe import check_task
from yolo_batch.device import ddp
from yolo_batch.record import records
from yolo_batch.session import DECISION_FILE, Session, log, session
from yolo_batch.train import adapt, lrscale, rebuild, recovery, valbatch

if TYPE_CHECKING:
    from ultralytics.engine.trainer import BaseTrainer


def _batch_value(cfg: Any, overrides: dict | None) -> tuple[bool, Any]:
    """(given, value) of ``batch`` in the overrides, else in a non-default ``cfg``."""
    if overrides and "batch" in overrides:
        return True, overrides["batch"]
    if isinstance(cfg, (str, Path)):
        from ultralytics.utils import YAML

        cfg = YAML.load(cfg)
    if isinstance(cfg, types.SimpleNamespace):
        cfg = vars(cfg)
    from ultralytics.cfg import DEFAULT_CFG_DICT

    if isinstance(cfg, dict) and "batch" in cfg:  # the default config counts as "not given"
        return cfg["batch"] != DEFAULT_CFG_DICT["batch"] or looks_like_auto_plus(cfg["batch"]), cfg["batch"]
    return False, None


class Hook:
    """A callback carrying one `AutoPlus`'s settings: what ``AutoPlus.register`` adds to a model."""

    def __init__(self, plugin: Any, event: str) -> None:
        """Bind ``event``'s hook to ``plugin`` (an `AutoPlus`)."""
        self.plugin, self.event = plugin, event

    def __call__(self, trainer: BaseTrainer) -> None:
        """Run the module-level hook; the trainer's Session already holds the plugin's settings."""
        return callbacks[self.event](trainer)


def _resumes_auto_plus_run(overrides: dict | None) -> bool:
    """``resume=.../weights/last.pt`` of a run that auto-plus decided: keep logging its effect."""
    resume = (overrides or {}).get("resume")
    if not isinstance(resume, (str, Path)) or not str(resume).endswith(".pt"):
        return False
    return (Path(resume).resolve().parent.parent / DECISION_FILE).exists()


def _check_writable(project: Any) -> None:
    """Fail before training when the run folder cannot be written (it would lose the run's records)."""
    import tempfile

    from ultralytics.utils import SETTINGS

    path = Path(str(project)) if project and Path(str(project)).is_absolute() else Path(SETTINGS["runs_dir"])
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    try:
        if not probe.is_dir():
            raise NotADirectoryError(f"{probe} is not a folder")
        tempfile.TemporaryFile(dir=probe).close()
    except OSError as e:
        raise AutoPlusError(
            f"the run folder under {path} cannot be written ({e}); set project= to a writable folder"
        ) from None


def _ours(fn: Any) -> bool:
    return isinstance(fn, Hook) or fn in callbacks.values()


def _check_release(kind: type, supported: str, value: Any, ddp_run: bool) -> None:
    """Refuse ``batch=value`` in one line where this release (or trainer class) never reaches the decision moment.

    Raises:
        AutoPlusError: Naming the release and the supported ones (`port.check`, `port.Support.refusal`).
    """
    refusal = port.check(kind).refusal(value, supported, ddp=ddp_run)
    if refusal is not None:
        raise AutoPlusError(refusal)


def plan(
    cfg: Any,
    overrides: dict | None,
    given_callbacks: dict | None,
    observe: bool = False,
    kind: Any = None,
    supported: str = "",
):
    """Return ``(overrides, callbacks, Session)`` for a run that asked for the plugin, else None.

    Args:
        cfg: The trainer's ``cfg`` argument (a dict, namespace or YAML path).
        overrides (dict | None): The trainer's overrides.
        given_callbacks (dict | None): The callbacks handed to the trainer (a model's, with any `Hook`).
        observe (bool): ``YOLO_BATCH_OBSERVE`` is on: measure and log every run, whatever its batch.
        kind (type | None): The trainer's class: an auto-plus run on a release (or class) whose ``_setup_train``
            never reaches the decision moment is refused (`port.check`).
        supported (str): The supported releases as a pip specifier, for that refusal's words
            (``activate.supported_range()``).

    Raises:
        AutoPlusError: For a bad batch value, keyword or config, or a release where auto-plus cannot decide,
            before anything is built or written.
    """
    given, value = _batch_value(cfg, overrides)
    asked = value
    hooks = [f for fns in (given_callbacks or {}).values() for f in fns if _ours(f)]
    plugin = next((f.plugin for f in hooks if isinstance(f, Hook)), None)
    keywords, config = (plugin.keywords, plugin.config) if plugin else (None, None)
    worker = ddp.worker_value()
    if worker is not None:  # a DDP worker of an auto-plus launch: keeps the launcher's placeholder batch
        value = worker
        spec, decides = ddp.worker_spec() or resolve_spec(value, keywords, config), True
    elif given and looks_like_auto_plus(value):
        spec, decides = resolve_spec(value, keywords, config), True
    elif plugin and not given:  # recorded in args.yaml: the policy and fraction the keywords chose
        assert keywords is not None  # the plugin's own
        value = ":".join(["auto-plus", *(str(keywords[k]) for k in ("policy", "utilization") if k in keywords)])
        spec, decides = resolve_spec(value, keywords, config), True
    elif hooks or observe or _resumes_auto_plus_run(overrides):
        spec, decides, value = resolve_spec(None, keywords, config), False, None
    else:
        return None
    valbatch.wanted()  # a bad YOLO_BATCH_VAL_BATCH fails here, before anything is built
    overrides = dict(overrides or {})
    if decides:  # a task the probe cannot serve is refused here, before the trainer builds or writes anything
        check_task(overrides.get("task") or (cfg.get("task") if isinstance(cfg, dict) else None) or "detect")
        if kind is not None:  # never silently Ultralytics' own AutoBatch: the decision moment must be reached
            _check_release(kind, supported, value, worker is not None or ddp.world_size(overrides.get("device")) > 1)
    _check_writable(overrides.get("project"))
    launcher, earlier_run = False, None
    if decides and worker is None:
        overrides, earlier_run = records.fresh_save_dir(overrides)  # cfg= of a run's args.yaml: a new folder
        device = overrides.get("device")
        if ddp.world_size(device) > 1:  # the DDP launcher: Ultralytics refuses batch < 1 here and probes nothing
            overrides, launcher = ddp.launcher_overrides(value, device, overrides, spec), True
        else:
            overrides["batch"] = -1  # Ultralytics then calls trainer.auto_batch(), which auto-plus answers
    from ultralytics.utils.callbacks import get_default_callbacks

    merged = {k: [f for f in v if not _ours(f)] for k, v in (given_callbacks or get_default_callbacks()).items()}
    for event, fn in callbacks.items():
        merged.setdefault(event, []).append(fn)
    resumed = overrides.get("resume") and not decides
    adapts = False
    if resumed and not given:  # a plain resume of a goodput run adapts on, with its decision's settings
        kept = adapt.resumed_spec(overrides["resume"])
        spec, adapts = (kept, kept.policy == "goodput") if kept is not None else (spec, False)
    batch_before, asked_before = records.before_resume(overrides)  # before Ultralytics rewrites the run's args.yaml
    s = Session(
        spec,
        decides,
        value,
        given=asked if resumed and given else None,  # resumed at a batch the user gave
        earlier_run=earlier_run,
        launcher=launcher,
        worker=worker is not None,
        adapts=adapts,
        batch_before=batch_before,
        asked_before=asked_before,
    )
    return overrides, merged, s


def attach(trainer: BaseTrainer) -> None:
    """Give a trainer that asked for auto-plus its own ``auto_batch`` and the out-of-memory guards.

    Instance attributes only, through `yolo_batch.port`: the class, and every other trainer, stay stock. Where the
    installed release's restart lines differ from the tested ones (`port.check`), one line says which features
    are off and why, and the restart is left to Ultralytics.
    """
    import functools

    s = session(trainer)
    assert s is not None  # plan() put it there: this trainer asked for the plugin
    if s.launcher:  # spawns the DDP workers (which inherit YOLO_BATCH_DDP), then forgets the value
        records.write_args(trainer, s)  # no on_pretrain_routine_start runs in the launcher
        port.wrap(trainer, "train", ddp.launched)
        return
    port.wrap(trainer, "train", recovery.guarded_train, trainer)
    valbatch.attach(trainer, s)
    if s.decides:
        port.replace(trainer, "auto_batch", functools.partial(decide.auto_batch, trainer))
    if s.decides and s.spec.policy in SPEEDS or getattr(trainer.args, "resume", False):
        port.wrap(trainer, "_get_warmup_iterations", lrscale.warmup, trainer)  # the recipe's warm-up floor, or stock
    if s.decides or s.adapts:  # a resumed goodput run keeps switching and the out-of-memory recovery
        first = decide.ddp_auto_batch if s.worker else None  # a DDP worker decides at its first pipeline build
        unsteered = _unsteered(trainer, s)
        rebuild.attach(trainer, first, adapt.switch, recovery.step_down, lrscale.follow, unsteered)
        if not s.worker:  # DDP validate() broadcasts the EMA: a retry on one rank would desynchronise the ranks
            port.wrap(trainer, "validate", recovery.guarded_validate, trainer)


def _unsteered(trainer: BaseTrainer, s: Session) -> str | None:
    """Why this release's out-of-memory restart cannot be steered (one log line names the features off), or None."""
    support = port.check(trainer)
    if support.restarts is None:
        return None
    why = f"Ultralytics {support.release}'s out-of-memory restart is not the one yolo-batch steers ({support.restarts})"
    off = ("goodput switches and " if s.spec.policy == "goodput" or s.adapts else "") + "out-of-memory step-downs"
    if not s.worker:
        logger, prefix = log()
        logger.warning(f"{prefix}{off} after the first epoch are off: {why}; training as stock at the decided batch")
    return why
