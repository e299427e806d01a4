"""auto-plus chooses the training batch: val, predict and export refuse it in one line; each tune trial picks."""

from __future__ import annotations

import json

import pytest
import yaml
from ultralytics import YOLO

from tests.conftest import run_yolo
from yolo_batch import AutoPlusError

CHOOSES = "chooses the training batch (yolo train, model.train, model.tune)"


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "default"), [("val", 16), ("predict", 1), ("export", 1)])
def test_cli_refuses_auto_plus_outside_training_in_one_line(tiny_data, tmp_path, mode, default):
    source = tiny_data.parent / "images" / "val"
    r = run_yolo(mode, "model=yolo11n.yaml", f"data={tiny_data}", f"source={source}", "batch=auto-plus", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == (
        f"yolo-batch: error: batch='auto-plus' {CHOOSES}; {mode} takes an integer batch: give one, "
        f"e.g. batch={default}, or leave batch out (Ultralytics' default {default})"
    )
    assert "Traceback" not in r.stderr and list(tmp_path.iterdir()) == []  # nothing built, nothing written


@pytest.mark.slow
def test_cli_names_the_cfg_file_the_value_came_from(tiny_data, tmp_path):
    cfg = tmp_path / "args.yaml"
    cfg.write_text(yaml.safe_dump({"model": "yolo11n.yaml", "data": str(tiny_data), "batch": "auto-plus:fit"}))
    r = run_yolo("val", f"cfg={cfg}", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"batch='auto-plus:fit' (from cfg={cfg}) {CHOOSES}; val takes an integer batch: add one" in r.stderr
    r = run_yolo("val", f"cfg={cfg}", "batch=4", "imgsz=64", f"project={tmp_path}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]  # an integer batch after cfg= wins, as in Ultralytics


@pytest.mark.parametrize(
    ("method", "mode"), [("val", "val"), ("predict", "predict"), ("export", "export")], ids=["val", "predict", "export"]
)
def test_python_refuses_auto_plus_outside_training(tiny_data, tmp_path, method, mode):
    model = YOLO("yolo11n.yaml")
    kwargs = {"data": str(tiny_data), "imgsz": 64, "project": str(tmp_path), "batch": "auto-plus:0.8"}
    if method == "predict":
        kwargs = {"source": str(tiny_data.parent / "images" / "val"), **kwargs}
        kwargs.pop("data")
    with pytest.raises(AutoPlusError, match=rf"^batch='auto-plus:0.8' chooses the training batch .*; {mode} takes"):
        getattr(model, method)(**kwargs)
    assert list(tmp_path.iterdir()) == []


def test_python_predict_with_a_predictor_already_set_up_refuses_too(tiny_data, tmp_path):
    model = YOLO("yolo11n.yaml")
    source = str(tiny_data.parent / "images" / "val")
    model.predict(source=source, imgsz=64, save=False, verbose=False)
    with pytest.raises(AutoPlusError, match="predict takes an integer batch"):
        model.predict(source=source, imgsz=64, batch="auto-plus")


@pytest.mark.slow
def test_tune_trials_each_pick_their_batch(tiny_data, tmp_path, capfd):
    """model.tune runs each trial as a stock ``yolo train`` subprocess: each one probes and picks."""
    model = YOLO("yolo11n.yaml")
    fast = {"imgsz": 64, "epochs": 1, "amp": False, "plots": False, "workers": 0, "seed": 0}
    model.tune(data=str(tiny_data), batch="auto-plus", iterations=2, project=str(tmp_path), name="tune", **fast)
    out = capfd.readouterr()
    log = out.out + out.err
    assert log.count("batch=32 (ladder): ") == 2  # one decision per trial (32: the training set's size)
    lines = (tmp_path / "tune" / "tune_results.ndjson").read_text().splitlines()
    assert [json.loads(line)["iteration"] for line in lines] == [1, 2]
    kept = [p.parent for p in tmp_path.glob("multitrain*/*/batch_decision.json")]  # the best trial's run is kept
    assert kept and all(yaml.safe_load((p / "args.yaml").read_text())["batch"] == "auto-plus" for p in kept)
