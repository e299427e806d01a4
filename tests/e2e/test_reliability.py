"""Reliability: stock runs untouched, unsupported releases left alone, awkward data, files never torn."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import YOLO, fast_args, run_yolo, yolo_train
from yolo_batch.activate import supported_range
from yolo_batch.record.effect import read_csv

pytestmark = pytest.mark.slow


def test_stock_run_trains_bit_for_bit_as_without_the_plugin(tiny_data, tmp_path):
    """batch=8 with the plugin installed == with YOLO_BATCH_DISABLE=1 (seed, deterministic): same results.csv."""
    args = ["train", "model=yolo11n.yaml", f"data={tiny_data}", "batch=8", *fast_args(epochs=2, deterministic=True)]
    on = run_yolo(*args, f"project={tmp_path}", "name=on", cwd=tmp_path)
    off = run_yolo(*args, f"project={tmp_path}", "name=off", cwd=tmp_path, env={"YOLO_BATCH_DISABLE": "1"})
    assert on.returncode == off.returncode == 0, on.stderr[-2000:] + off.stderr[-2000:]
    strip = lambda rows: [{k: v for k, v in r.items() if k != "time"} for r in rows]  # noqa: E731
    assert strip(read_csv(tmp_path / "on" / "results.csv")) == strip(read_csv(tmp_path / "off" / "results.csv"))
    assert sorted(os.listdir(tmp_path / "on")) == sorted(os.listdir(tmp_path / "off"))  # no plugin files
    assert "AutoPlus" not in on.stdout + on.stderr


def test_unsupported_ultralytics_release_is_left_alone():
    """Outside the range the trainer is untouched; the first run's configuration check says so once, in one line."""
    code = (
        "import ultralytics; ultralytics.__version__ = '9.0.0'; import ultralytics.engine.trainer as t;"
        "from ultralytics.cfg import check_cfg; check_cfg({'batch': 16}); check_cfg({'batch': 8});"
        "print(hasattr(t.BaseTrainer.__init__, '__wrapped_by__'))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.stdout.splitlines()[-1] == "False"
    words = f"Ultralytics 9.0.0 is outside the releases yolo-batch supports (ultralytics{supported_range()})"
    assert r.stderr.count(f"yolo-batch: {words}") == 1


def test_dense_images_with_hundreds_of_labels(tmp_path):
    from yolo_batch.tools.datasets import make_dataset

    data = make_dataset(tmp_path / "dense", n_train=16, n_val=4, imgsz=128, dense=True, dense_objects=300, seed=4)
    r = yolo_train(data, tmp_path, "auto-plus", imgsz=128)
    assert r.returncode == 0, r.stderr[-2000:]
    d = json.loads((tmp_path / "run" / "batch_decision.json").read_text())
    assert d["max_labels_per_image"] >= 250 and d["batch"] == 16  # capped by the 16-image training set


def test_unwritable_run_folder_is_a_clear_error(tiny_data, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    r = run_yolo(
        "train",
        "model=yolo11n.yaml",
        f"data={tiny_data}",
        "batch=auto-plus",
        f"project={blocker / 'runs'}",
        "name=run",
        cwd=tmp_path,
    )
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"yolo-batch: error: the run folder under {blocker / 'runs'} cannot be written ({blocker} is not a folder); "
        "set project= to a writable folder"
    ]


def test_batch_above_the_training_set_is_clamped(tiny_data, tmp_path):
    r = yolo_train(tiny_data, tmp_path, "auto-plus:fit")
    d = json.loads((tmp_path / "run" / "batch_decision.json").read_text())
    assert r.returncode == 0 and d["batch"] == 32 == d["dataset_size"]
    assert "capped by the training set of 32 images" in d["reason"]


def test_killed_run_leaves_readable_files(tiny_data, tmp_path):
    cmd = [
        YOLO,
        "train",
        "model=yolo11n.yaml",
        f"data={tiny_data}",
        "batch=auto-plus",
        *fast_args(epochs=200),
        f"project={tmp_path}",
        "name=run",
    ]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    effect = tmp_path / "run" / "batch_effect.csv"
    deadline = time.time() + 240
    try:
        while time.time() < deadline and not (effect.exists() and len(read_csv(effect)) >= 3):
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert json.loads((tmp_path / "run" / "batch_decision.json").read_text())["batch"] == 32
    with open(effect, newline="") as f:
        rows = list(csv.reader(f))
    assert len(rows) >= 4 and all(len(r) == len(rows[0]) for r in rows)  # header + whole rows only
    assert [r[0] for r in rows[1:]] == [str(i) for i in range(1, len(rows))]


def test_empty_training_set_is_a_clear_error(tiny_data, tmp_path):
    import shutil

    data = tmp_path / "empty"
    shutil.copytree(tiny_data.parent, data)
    for f in (data / "images" / "train").iterdir():
        f.unlink()
    (data / "data.yaml").write_text((data / "data.yaml").read_text().replace(str(tiny_data.parent), str(data)))
    r = yolo_train(data / "data.yaml", tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    train, yaml_path = data / "images" / "train", data / "data.yaml"
    assert r.stderr.strip().splitlines()[-1] == (
        f"yolo-batch: error: the training set {train} has no images; check data={yaml_path}"
    )
