"""``yolo train ... batch=auto-plus`` for every task Ultralytics trains: a pick and its records, or a refusal."""

from __future__ import annotations

import json

import pytest

from tests.conftest import TASK_MODELS, TASKS_84, fast_args, needs_84, run_yolo
from yolo_batch.core.spec import AutoPlusError
from yolo_batch.decide.probe import ANY_IMAGE, VAL_AT_1X, WORST_CASE
from yolo_batch.record.effect import read_csv

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("task", [pytest.param(t, marks=[needs_84] if t in TASKS_84 else []) for t in TASK_MODELS])
def test_auto_plus_serves_the_task(task_data, tmp_path, task):
    args = [f"model={TASK_MODELS[task]}", f"task={task}", f"data={task_data(task)}", "batch=auto-plus"]
    r = run_yolo("train", *args, *fast_args(), f"project={tmp_path}", "name=run", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path / "run"
    d = json.loads((run / "batch_decision.json").read_text())
    assert d["batch"] == 16  # 16 training images: 32 and 64 are above the training set, 16 fits anywhere
    assert d["task"] == task and d["worst_case"] == WORST_CASE[task]
    assert d["val_batch_factor"] == (1 if task in VAL_AT_1X else 2)  # as Ultralytics sizes its validation loader
    train, val = d["probe_points"]["train"], d["probe_points"]["val"]
    assert [b for b, _ in val] == [b * d["val_batch_factor"] for b, _ in train]
    if task in ANY_IMAGE:
        assert d["max_labels_per_image"] is None  # labels do not set the memory: any image is the worst case
    else:
        assert d["max_labels_per_image"] == 4  # objects=(1, 4): the densest training image was found
    rows = read_csv(run / "batch_effect.csv")
    assert [row["epoch"] for row in rows] == ["1", "final"] and rows[0]["batch"] == "16"
    assert int(rows[0]["peak_mem_bytes"]) > 0
    assert (run / "weights" / "last.pt").exists()


def test_a_task_the_probe_does_not_know_is_one_line(task_data, tmp_path):
    from ultralytics.models.yolo.detect import DetectionTrainer

    overrides = {"model": "yolo11n.yaml", "data": str(task_data("detect")), "batch": "auto-plus", "task": "future"}
    with pytest.raises(AutoPlusError, match=r"^batch=auto-plus does not serve task='future'; it serves detect, obb, "):
        DetectionTrainer(overrides={**overrides, "project": str(tmp_path), "name": "run"})
    assert not (tmp_path / "run").exists()  # refused before the trainer made its folder
