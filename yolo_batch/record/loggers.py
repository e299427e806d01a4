"""The batch figures in every logger turned on in Ultralytics: MLflow, W&B, DVCLive, Comet, ClearML, TensorBoard.

Ultralytics turns its integrations on with ``yolo settings`` (``mlflow=True``, ``wandb=True``...) and each of
its callback modules (``ultralytics/utils/callbacks/*.py``) opens and holds its own run. This module opens
none: for every integration whose callbacks this trainer runs, it finds the run where that module holds it
(``mlflow.active_run()``, ``wb.run``, DVCLive's ``live``, ``comet_ml.get_running_experiment()``, ClearML's
``Task.current_task()``, TensorBoard's ``WRITER``) and adds to it

- per epoch, the ``batch/*`` figures (`FIGURES`) at the step Ultralytics logs that epoch's metrics at;
- once, the decision's main fields (`params`) as parameters / config;
- at the end, ``batch_decision.json`` as an artifact (where the logger has artifacts) and ``batch_effect.png``.

Order within an event: `yolo_batch.callbacks.plan` adds the plugin's hooks to the callbacks the trainer is
built with, and Ultralytics adds the integrations' hooks after them (``add_integration_callbacks`` in
``BaseTrainer.__init__``). So at ``on_fit_epoch_end`` the figures land before DVCLive's ``next_step()`` and
W&B's commit (the same step as the epoch's metrics), and at ``on_train_end`` every run is still open
(MLflow's and DVCLive's ``on_train_end`` close theirs after ours).

A logger that fails is warned about once and left alone for the rest of the run; training goes on. Only the
standard library is imported here; each logger's package is reached through Ultralytics' module.

    >>> params({"batch": 32, "policy": "ladder", "candidates": [{"batch": 32}], "verified_peak_bytes": None})
    {'batch': 32, 'policy': 'ladder'}
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from yolo_batch import port
from yolo_batch.record.records import read_decision

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import ModuleType

    from ultralytics.engine.trainer import BaseTrainer


FIGURES = (
    "batch",
    "accumulate",
    "effective_batch",
    "images_per_s",
    "peak_mem_bytes",
    "mem_utilization",
    "grad_noise_scale",
    "oom_events",
    "epoch_seconds",
)
PREFIX = "batch/"  # the figures' names in every logger: batch/images_per_s...
SECTION = "batch_decision"  # the decision's parameters: batch_decision/batch, batch_decision/policy...
STATE = "_yolo_batch_loggers"  # per-trainer state: the loggers that failed, those that have the decision


def params(record: dict[str, Any] | None) -> dict[str, Any]:
    """The decision's main fields: its scalar values (nested lists and dicts, and empty values, left out)."""
    return {k: v for k, v in (record or {}).items() if isinstance(v, (str, int, float, bool))}


def figures(row: dict[str, Any]) -> dict[str, float]:
    """An epoch row's batch figures as ``batch/<name>: float`` (missing or empty ones left out)."""
    return {PREFIX + k: float(row[k]) for k in FIGURES if row.get(k) is not None}


class Adapter(Protocol):
    """One logger's adapter: where its Ultralytics integration holds the run, and how to send to that run.

    Attributes:
        name (str): The logger's name in the warning of a failure.
        module (str): Its integration module: ``ultralytics.utils.callbacks.<module>``.
    """

    name: str
    module: str

    def run(self, m: ModuleType, trainer: BaseTrainer) -> Any:
        """The open run the integration module ``m`` holds, or None: send nothing."""
        ...

    def figures(self, run: Any, trainer: BaseTrainer, figs: dict[str, float]) -> None:
        """An epoch's ``batch/*`` figures, at the step the integration logs the epoch's metrics at."""
        ...

    def decision(self, run: Any, values: dict[str, Any]) -> None:
        """The decision's main fields, as parameters or config."""
        ...

    def files(self, run: Any, paths: list[Path]) -> None:
        """``batch_decision.json`` and ``batch_effect.png``, where the logger takes them."""
        ...


def _module(trainer: BaseTrainer, name: str) -> ModuleType | None:
    """Ultralytics' callback module ``name`` when its hooks are on for this trainer, else None."""
    module = sys.modules.get(f"ultralytics.utils.callbacks.{name}")
    hooks = getattr(module, "callbacks", None) or {}
    ours = set(map(id, hooks.values()))
    if ours and any(id(f) in ours for fns in getattr(trainer, "callbacks", {}).values() for f in fns):
        return module
    return None


class _MLflow:
    """``mlflow``: the run Ultralytics started (or found) at ``on_pretrain_routine_end``; step ``trainer.epoch``."""

    name = "MLflow"
    module = "mlflow"

    def run(self, m: Any, trainer: BaseTrainer) -> Any:
        ok = m.mlflow is not None and port.mlflow_active(trainer)
        return m.mlflow if ok and m.mlflow.active_run() is not None else None  # never let mlflow start a run

    def figures(self, mlflow: Any, trainer: BaseTrainer, figs: dict[str, float]) -> None:
        mlflow.log_metrics(figs, step=trainer.epoch)

    def decision(self, mlflow: Any, values: dict[str, Any]) -> None:
        mlflow.log_params({f"{SECTION}/{k}": v for k, v in values.items()})

    def files(self, mlflow: Any, paths: list[Path]) -> None:
        for p in paths:
            mlflow.log_artifact(str(p))  # batch_effect.png again from Ultralytics' own upload: same name, same file


class _WandB:
    """``wb.run``; the figures go into the epoch's row, with ``epoch`` as their step metric, as Ultralytics does."""

    name = "W&B"
    module = "wb"

    def run(self, m: Any, trainer: BaseTrainer) -> Any:
        return m.wb.run if m.wb is not None else None

    def __init__(self) -> None:
        self.defined: set[str] = set()  # the runs told to plot batch/* against the epoch

    def figures(self, run: Any, trainer: BaseTrainer, figs: dict[str, float]) -> None:
        if run.id not in self.defined:
            run.define_metric(f"{PREFIX}*", step_metric="epoch")
            self.defined.add(run.id)
        run.log({**figs, "epoch": trainer.epoch + 1}, commit=False)  # Ultralytics' on_fit_epoch_end commits

    def decision(self, run: Any, values: dict[str, Any]) -> None:
        run.config.update({SECTION: values}, allow_val_change=True)

    def files(self, run: Any, paths: list[Path]) -> None:
        import wandb

        art = wandb.Artifact(name=f"run_{run.id}_batch", type=SECTION)
        for p in paths:
            art.add_file(str(p))
        run.log_artifact(art)
        for p in paths:
            if p.suffix == ".png":
                run.log({f"{PREFIX}{p.stem}": wandb.Image(str(p))}, commit=False)  # committed by on_train_end


class _DVCLive:
    """DVCLive's ``live``; the figures at ``live.step``, before Ultralytics' ``next_step()`` closes the epoch."""

    name = "DVCLive"
    module = "dvc"

    def run(self, m: Any, trainer: BaseTrainer) -> Any:
        return getattr(m, "live", None)

    def figures(self, live: Any, trainer: BaseTrainer, figs: dict[str, float]) -> None:
        for k, v in figs.items():
            live.log_metric(k, v)

    def decision(self, live: Any, values: dict[str, Any]) -> None:
        live.log_params({SECTION: values})

    def files(self, live: Any, paths: list[Path]) -> None:
        # Outside a DVC repository DVCLive keeps no artifacts, and an image logged with Ultralytics'
        # cache_images=True makes live.end() fail (dvclive 3.49): the figures and params are all it gets there.
        if getattr(live, "_dvc_repo", None) is None:
            return
        for p in paths:
            if p.suffix == ".png":
                live.log_image(p.name, str(p))
            else:
                live.log_artifact(str(p), copy=True)


class _Comet:
    """``comet_ml.get_running_experiment()``; the step and epoch from Ultralytics' own ``_fetch_trainer_metadata``."""

    name = "Comet"
    module = "comet"

    def run(self, m: Any, trainer: BaseTrainer) -> Any:
        return m.comet_ml.get_running_experiment() if m.comet_ml is not None else None

    def figures(self, experiment: Any, trainer: BaseTrainer, figs: dict[str, float]) -> None:
        step, epoch = port.comet_step(trainer)
        experiment.log_metrics(figs, step=step, epoch=epoch)

    def decision(self, experiment: Any, values: dict[str, Any]) -> None:
        experiment.log_parameters(values, prefix=SECTION)

    def files(self, experiment: Any, paths: list[Path]) -> None:
        for p in paths:
            if p.suffix == ".png":
                experiment.log_image(str(p), name=p.stem)
            else:
                experiment.log_asset(str(p))


class _ClearML:
    """``Task.current_task()``; scalars at ``iteration=trainer.epoch``, as Ultralytics reports them."""

    name = "ClearML"
    module = "clearml"

    def run(self, m: Any, trainer: BaseTrainer) -> Any:
        return m.Task.current_task() if getattr(m, "clearml", None) is not None else None

    def figures(self, task: Any, trainer: BaseTrainer, figs: dict[str, float]) -> None:
        for k, v in figs.items():
            task.get_logger().report_scalar("batch", k[len(PREFIX) :], v, iteration=trainer.epoch)

    def decision(self, task: Any, values: dict[str, Any]) -> None:
        task.connect(dict(values), name=SECTION)

    def files(self, task: Any, paths: list[Path]) -> None:
        for p in paths:
            if p.suffix == ".png":
                task.get_logger().report_image("batch", p.stem, iteration=0, local_path=str(p))
            else:
                task.upload_artifact(p.stem, artifact_object=str(p))


class _TensorBoard:
    """``tensorboard.WRITER``, at step ``epoch + 1``; no artifacts: the decision as text, the plot as an image."""

    name = "TensorBoard"
    module = "tensorboard"

    def run(self, m: Any, trainer: BaseTrainer) -> Any:
        return getattr(m, "WRITER", None)

    def figures(self, writer: Any, trainer: BaseTrainer, figs: dict[str, float]) -> None:
        for k, v in figs.items():
            writer.add_scalar(k, v, trainer.epoch + 1)
        writer.flush()

    def decision(self, writer: Any, values: dict[str, Any]) -> None:
        table = "\n".join(["| field | value |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in values.items())])
        writer.add_text(SECTION, table, 0)

    def files(self, writer: Any, paths: list[Path]) -> None:
        import cv2

        for p in paths:
            image = cv2.imread(str(p)) if p.suffix == ".png" else None
            if image is not None:
                writer.add_image(f"{PREFIX}{p.stem}", image[..., ::-1].copy(), 0, dataformats="HWC")
        writer.flush()


# Each logger: ``run(module, trainer)`` finds the open run (None: send nothing), ``figures(run, trainer, figs)``,
# ``decision(run, params)`` and ``files(run, paths)`` send to it.
LOGGERS: tuple[Adapter, ...] = (_MLflow(), _WandB(), _DVCLive(), _Comet(), _ClearML(), _TensorBoard())


def _active(trainer: BaseTrainer) -> Iterator[tuple[Adapter, Any, dict[str, set[str]]]]:
    """``(logger, run, state)`` for each integration that is on for ``trainer``, has an open run, and has not failed."""
    state = getattr(trainer, STATE, None)
    if state is None:
        state = {"failed": set(), "decided": set()}
        setattr(trainer, STATE, state)
    for logger in LOGGERS:
        if logger.module in state["failed"]:
            continue
        module = _module(trainer, logger.module)
        if module is None:
            continue
        try:
            run = logger.run(module, trainer)
        except Exception as e:  # noqa: BLE001 - a logger must never stop training
            _failed(state, logger, e)
            continue
        if run is not None:
            yield logger, run, state


def _failed(state: dict[str, set[str]], logger: Adapter, e: Exception) -> None:
    """Warn once, and leave this logger alone for the rest of the run."""
    from ultralytics.utils import LOGGER, colorstr

    state["failed"].add(logger.module)
    why = f"{type(e).__name__}: {e}"
    LOGGER.warning(f"{colorstr('AutoPlus: ')}{logger.name}: batch figures not sent ({why}); training goes on")


def epoch_end(trainer: BaseTrainer, row: dict[str, Any], record: dict[str, Any] | None) -> None:
    """An epoch's figures to every open logger, and the decision (``record``) to those that lack it."""
    figs = figures(row)
    for logger, run, state in _active(trainer):
        try:
            if figs:
                logger.figures(run, trainer, figs)
            if record and logger.module not in state["decided"]:
                logger.decision(run, params(record))
                state["decided"].add(logger.module)
        except Exception as e:  # noqa: BLE001 - a logger must never stop training
            _failed(state, logger, e)


def train_end(trainer: BaseTrainer, record: dict[str, Any] | None, paths: list[Path]) -> None:
    """The decision (where not sent yet) and the run's files (``batch_decision.json``, ``batch_effect.png``)."""
    decision = next((p for p in paths if p.suffix == ".json"), None)
    if record is None and decision is not None and decision.is_file():  # e.g. a resumed run: the decision is on disk
        try:
            record = read_decision(decision)
        except ValueError:  # damaged: `records.load_history` said so at the start
            record = None
    for logger, run, state in _active(trainer):
        try:
            if record and logger.module not in state["decided"]:
                logger.decision(run, params(record))
                state["decided"].add(logger.module)
            if paths:
                logger.files(run, paths)
        except Exception as e:  # noqa: BLE001 - a logger must never stop training
            _failed(state, logger, e)
