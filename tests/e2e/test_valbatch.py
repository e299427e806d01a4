"""A fixed validation batch (``YOLO_BATCH_VAL_BATCH``, set by sweeps) in real training runs, and stock without it."""

from __future__ import annotations

import json

import pytest
from ultralytics import YOLO

from tests.conftest import train_in_process
from yolo_batch import AutoPlusError

pytestmark = pytest.mark.slow


def _val_batches(model) -> tuple[int, int]:
    t = model.trainer
    return t.test_loader.batch_size, t.validator.dataloader.batch_size


def test_measured_run_validates_at_the_fixed_batch(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_BATCH_OBSERVE", "1")
    monkeypatch.setenv("YOLO_BATCH_VAL_BATCH", "6")
    model = YOLO("yolo11n.yaml")
    train_in_process(model, tiny_data, tmp_path, batch=4)
    assert model.trainer.batch_size == 4
    assert _val_batches(model) == (6, 6)  # stock would be 8


def test_auto_plus_run_plans_memory_for_the_fixed_validation_batch(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_BATCH_VAL_BATCH", "6")
    model = YOLO("yolo11n.yaml")
    train_in_process(model, tiny_data, tmp_path, batch="auto-plus")
    d = json.loads((tmp_path / "run" / "batch_decision.json").read_text())
    assert d["settings"]["val_batch"] == 6
    assert _val_batches(model) == (6, 6)


@pytest.mark.parametrize("observe", [None, "1"], ids=["not-seen-by-the-plugin", "measured-without-the-variable"])
def test_runs_that_do_not_ask_validate_as_stock(tiny_data, tmp_path, monkeypatch, observe):
    if observe:
        monkeypatch.setenv("YOLO_BATCH_OBSERVE", observe)
        monkeypatch.delenv("YOLO_BATCH_VAL_BATCH", raising=False)
    else:
        monkeypatch.setenv("YOLO_BATCH_VAL_BATCH", "6")  # set, but the plugin does not see this run
        monkeypatch.delenv("YOLO_BATCH_OBSERVE", raising=False)
    model = YOLO("yolo11n.yaml")
    train_in_process(model, tiny_data, tmp_path, batch=4)
    assert _val_batches(model) == (8, 8)
    assert "get_dataloader" not in vars(model.trainer)  # the class's own method: nothing patched


def test_bad_value_is_one_line_before_the_run_folder(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_BATCH_OBSERVE", "1")
    monkeypatch.setenv("YOLO_BATCH_VAL_BATCH", "lots")
    with pytest.raises(AutoPlusError, match=r"YOLO_BATCH_VAL_BATCH='lots' is invalid; it must be an integer >= 1"):
        train_in_process(YOLO("yolo11n.yaml"), tiny_data, tmp_path, batch=4)
    assert not (tmp_path / "run").exists()
