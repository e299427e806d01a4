"""`yolo_batch.record.loggers` without training: which integrations count as on, and what is sent."""

from __future__ import annotations

import sys
import types
from types import SimpleNamespace

from yolo_batch.record import loggers


def test_figures_are_the_batch_columns_that_have_a_value():
    row = {"epoch": 3, "batch": 16, "accumulate": 4, "images_per_s": 12.5, "grad_noise_scale": None, "lr/pg0": 0.01}
    assert loggers.figures(row) == {"batch/batch": 16.0, "batch/accumulate": 4.0, "batch/images_per_s": 12.5}


def test_params_keep_the_decisions_scalar_fields():
    record = {"batch": 32, "amp": False, "reason": "fits", "candidates": [{"batch": 32}], "versions": {}, "x": None}
    assert loggers.params(record) == {"batch": 32, "amp": False, "reason": "fits"}
    assert loggers.params(None) == {}


def test_an_integration_counts_as_on_only_when_its_hooks_are_on_the_trainer(monkeypatch):
    """Ultralytics adds an integration's hooks per trainer (settings are read then): its module alone is not enough."""
    module = types.ModuleType("ultralytics.utils.callbacks.tensorboard")
    module.callbacks = {"on_fit_epoch_end": lambda trainer: None}
    module.WRITER = object()
    monkeypatch.setitem(sys.modules, module.__name__, module)
    off = SimpleNamespace(callbacks={"on_fit_epoch_end": [lambda trainer: None]})
    on = SimpleNamespace(callbacks={"on_fit_epoch_end": [module.callbacks["on_fit_epoch_end"]]})
    assert loggers._module(off, "tensorboard") is None
    assert loggers._module(on, "tensorboard") is module
    assert [(lg.name, run) for lg, run, _ in loggers._active(on)] == [("TensorBoard", module.WRITER)]


def test_an_integration_without_its_package_is_off(monkeypatch):
    """Ultralytics' module imports without the package and then has ``callbacks = {}``."""
    module = types.ModuleType("ultralytics.utils.callbacks.mlflow")
    module.callbacks, module.mlflow = {}, None
    monkeypatch.setitem(sys.modules, module.__name__, module)
    trainer = SimpleNamespace(callbacks={"on_fit_epoch_end": [print]})
    assert loggers._module(trainer, "mlflow") is None
    assert list(loggers._active(trainer)) == []
