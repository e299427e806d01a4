"""``yolo train ... batch=auto-plus`` for every task Ultralytics trains: a pick, its records, or one clear refusal."""

from __future__ import annotations

import json

import pytest

from tests.conftest import TASK_MODELS, fast_args, needs_84, run_yolo
from yolo_batch.effect import read_csv
from yolo_batch.probe import WORST_CASE

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("task", list(TASK_MODELS))
def test_auto_plus_serves_the_task(task_data, tmp_path, task):
    args = [f"model={TASK_MODELS[task]}", f"task={task}", f"data={task_data(task)}", "batch=auto-plus"]
    r = run_yolo("train", *args, *fast_args(), f"project={tmp_path}", "name=run", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path / "run"
    d = json.loads((run / "batch_decision.json").read_text())
    assert d["batch"] == 16  # 16 training images: 32 and 64 are above the training set, 16 fits anywhere
    assert d["task"] == task and d["worst_case"] == WORST_CASE[task]
    assert d["val_batch_factor"] == (1 if task == "obb" else 2)  # as Ultralytics sizes its validation loader
    assert [b for b, _ in d["probe_points"]["val"]] == [
        b * d["val_batch_factor"] for b, _ in d["probe_points"]["train"]
    ]
    if task == "classify":
        assert d["max_labels_per_image"] is None  # one class per image: no labels to be dense
    else:
        assert d["max_labels_per_image"] == 4  # objects=(1, 4): the densest training image was found
    rows = read_csv(run / "batch_effect.csv")
    assert [row["epoch"] for row in rows] == ["1", "final"] and rows[0]["batch"] == "16"
    assert int(rows[0]["peak_mem_bytes"]) > 0
    assert (run / "weights" / "last.pt").exists()


@needs_84
@pytest.mark.parametrize(("task", "model"), [("semantic", "yolo26n-sem.yaml"), ("depth", "yolo26n-depth.yaml")])
def test_a_task_the_probe_cannot_serve_is_one_line(tmp_path, task, model):
    r = run_yolo("train", f"model={model}", f"data={task}.yaml", "batch=auto-plus", f"project={tmp_path}", cwd=tmp_path)
    assert r.returncode == 2
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert lines == [
        f"yolo-batch: error: batch=auto-plus does not serve task='{task}'; it serves detect, obb, segment, pose, "
        "classify. Pass an integer batch, e.g. batch=16"
    ]
    assert "Traceback" not in r.stdout + r.stderr
    assert not list(tmp_path.iterdir())  # no run folder, no dataset download
