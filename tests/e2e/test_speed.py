"""The ``speed`` policy end to end, through the three ways in, and the dataloader measurement's clean-up."""

from __future__ import annotations

import json

import psutil
import pytest
from ultralytics import YOLO

from tests.conftest import FAST, train_in_process, yolo_train
from yolo_batch import AutoPlus
from yolo_batch.policy import Law, MemoryModel, decide
from yolo_batch.throughput import pace_from_record

pytestmark = pytest.mark.slow


def _record(run) -> dict:
    return json.loads((run / "batch_decision.json").read_text())


def _assert_speed_record(d: dict, threshold: float = 0.97) -> None:
    """Both laws recorded, images/s per candidate, and the pick is what the pure policy makes of the record."""
    assert d["policy"] == "speed" and d["settings"]["speed_threshold"] == threshold
    law, loader = d["speed"]["time_law"], d["speed"]["loader"]
    assert law["per_image_seconds"] > 0 and law["fixed_seconds"] >= 0 and law["optimizer_seconds"] > 0
    assert loader["images_per_s"] > 0 and loader["images"] >= 16 and loader["workers"] == 0  # Ultralytics: CPU
    assert loader["overlapped"] is False  # on a CPU the loader's time adds to the step's
    assert len(d["speed"]["points"]["law"]) >= 2
    assert all(c["predicted_images_per_s"] > 0 for c in d["candidates"])
    pace = pace_from_record(d)
    assert d["predicted_images_per_s"] == pytest.approx(pace.images_per_s(d["batch"]), abs=0.06)
    val = Law(d["val_fixed_bytes"], d["val_per_image_bytes"]) if d["val_per_image_bytes"] is not None else None
    model = MemoryModel(Law(d["fixed_bytes"], d["per_image_bytes"]), val)
    s = d["settings"]
    again = decide(
        model,
        d["budget_bytes"],
        policy="speed",
        pace=pace,
        speed_threshold=threshold,
        candidates=tuple(s["candidates"]),
        min_batch=s["min_batch"],
        max_batch=s["max_batch"],
        dataset_size=d["dataset_size"],
    )
    assert again.batch == d["batch"]
    assert d["reason"].startswith(again.reason.split(" fits at ")[0])


def test_cli_speed_records_both_laws_and_checks_them_against_the_epochs(tiny_data, tmp_path):
    r = yolo_train(tiny_data, tmp_path, "auto-plus:speed", epochs=2)
    assert r.returncode == 0, r.stderr[-3000:]
    d = _record(tmp_path / "run")
    _assert_speed_record(d)
    log = r.stdout + r.stderr
    assert "time law " in log and " ms/image per step" in log and "images/s" in log and "<- pick" in log
    # the summary compares the prediction at the pick with the steady epoch (the second)
    assert f"speed: predicted {d['predicted_images_per_s']:.1f} images/s at batch {d['batch']}, measured " in log
    assert "over 1 steady epoch (" in log


def test_python_keywords_speed_with_a_threshold(tiny_data, tmp_path):
    model = AutoPlus(policy="speed", speed_threshold=0.5).register(YOLO("yolo11n.yaml"))
    train_in_process(model, tiny_data, tmp_path)
    d = _record(tmp_path / "run")
    _assert_speed_record(d, threshold=0.5)
    assert model.trainer.batch_size == d["batch"]


def test_plugin_yaml_speed_and_ladder_pays_no_timing(tiny_data, tmp_path, monkeypatch):
    cfg = tmp_path / "plugin.yaml"
    cfg.write_text("policy: speed\nspeed_threshold: 0.9\n")
    monkeypatch.setenv("YOLO_BATCH_CONFIG", str(cfg))
    train_in_process(YOLO("yolo11n.yaml"), tiny_data, tmp_path, batch="auto-plus")
    _assert_speed_record(_record(tmp_path / "run"), threshold=0.9)
    monkeypatch.delenv("YOLO_BATCH_CONFIG")
    train_in_process(YOLO("yolo11n.yaml"), tiny_data, tmp_path / "ladder", batch="auto-plus")
    d = _record(tmp_path / "ladder" / "run")
    assert d["policy"] == "ladder" and d["batch"] == 32  # memory alone, as before
    # ladder and fit take no timing steps and build no loader (they would cost every decision seconds)
    assert not d.get("speed") and not any(c.get("predicted_images_per_s") for c in d["candidates"])


def test_dataloader_measurement_leaves_no_worker_behind(tiny_data, tmp_path, monkeypatch):
    import ultralytics.data.build
    from ultralytics.data import build_yolo_dataset
    from ultralytics.models.yolo.detect import DetectionTrainer

    from yolo_batch.loader import measure

    trainer = DetectionTrainer(
        overrides={**FAST, "model": "yolo11n.yaml", "data": str(tiny_data), "project": str(tmp_path), "name": "t"}
    )
    trainer.args.workers = 2  # Ultralytics sets 0 on a CPU; the measurement builds what it is given
    dataset = build_yolo_dataset(trainer.args, trainer.data["train"], 16, trainer.data, mode="train", stride=32)
    built, real = [], ultralytics.data.build.build_dataloader
    monkeypatch.setattr(
        ultralytics.data.build, "build_dataloader", lambda *a, **k: built.append(real(*a, **k)) or built[-1]
    )
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    rate = measure(trainer, dataset, seconds=3.0, batch=8)  # `built` keeps the loader alive: no __del__ to help
    after = {p.pid for p in psutil.Process().children(recursive=True) if p.is_running()}
    assert rate.workers == 2 and rate.images_per_s > 0 and rate.images >= 8 * 4
    assert rate.seconds <= 3.0 + 1.0 and rate.start_seconds > 0
    assert after <= before, f"dataloader workers left running: {after - before}"
