"""batch_effect.csv against results.csv, for YOLO11 (dfl loss) and YOLO26 (l1 loss); TensorBoard for real."""

from __future__ import annotations

import pytest
from ultralytics import YOLO

from tests.conftest import needs_84, run_yolo, train_in_process, yolo_train
from yolo_batch.record.effect import read_csv

pytestmark = pytest.mark.slow

COLUMNS = (
    "epoch",
    "batch",
    "accumulate",
    "effective_batch",
    "nbs",
    "lr/pg0",
    "lr/pg1",
    "lr/pg2",
    "metrics/precision(B)",
    "metrics/recall(B)",
    "metrics/mAP50(B)",
    "metrics/mAP50-95(B)",
    "epoch_seconds",
    "images_per_s",
    "peak_mem_bytes",
    "mem_utilization",
    "grad_noise_scale",
    "oom_events",
)


@pytest.mark.parametrize(
    ("model", "third"),
    [
        pytest.param("yolo11n.yaml", "dfl_loss", id="yolo11-dfl"),
        pytest.param("yolo26n.yaml", "l1_loss", id="yolo26-l1", marks=needs_84),
    ],
)
def test_effect_rows_match_results_csv(tiny_data, tmp_path, model, third):
    train_in_process(YOLO(model), tiny_data, tmp_path, batch="auto-plus", epochs=3, plots=True)  # plots: the png
    run = tmp_path / "run"
    results, effect = read_csv(run / "results.csv"), read_csv(run / "batch_effect.csv")
    assert [r["epoch"] for r in effect] == ["1", "2", "3", "final"]
    losses = ["train/box_loss", "train/cls_loss", f"train/{third}", "val/box_loss", "val/cls_loss", f"val/{third}"]
    assert set(COLUMNS) | set(losses) <= set(effect[0])
    shared = [c for c in results[0] if c in effect[0] and c != "epoch"]
    assert len(shared) >= 13, shared  # losses, metrics and lr
    for res, eff in zip(results, effect):
        assert res["epoch"] == eff["epoch"]
        for c in shared:
            assert float(res[c]) == pytest.approx(float(eff[c]), rel=1e-5, abs=1e-9), (c, res[c], eff[c])
    for eff in effect[:3]:
        assert int(eff["batch"]) * int(eff["accumulate"]) == int(eff["effective_batch"])
        assert float(eff["images_per_s"]) > 0 and float(eff["epoch_seconds"]) > 0
        assert 0 < float(eff["mem_utilization"]) < 1 and eff["oom_events"] == "0"
    # one step per epoch: the first epoch has no estimate; later ones are positive or, while |G|^2 is still
    # buried in noise (a few steps of a fresh model), left empty rather than negative
    assert effect[0]["grad_noise_scale"] == ""
    assert all(e["grad_noise_scale"] == "" or float(e["grad_noise_scale"]) > 0 for e in effect)
    final = effect[-1]
    assert float(final["metrics/mAP50-95(B)"]) >= 0 and final["batch"] == effect[0]["batch"]
    assert (run / "batch_effect.png").read_bytes()[:4] == b"\x89PNG"


def test_noise_scale_off(tiny_data, tmp_path, monkeypatch):
    cfg = tmp_path / "p.yaml"
    cfg.write_text("noise_scale: false\n")
    monkeypatch.setenv("YOLO_BATCH_CONFIG", str(cfg))
    train_in_process(YOLO("yolo11n.yaml"), tiny_data, tmp_path, batch="auto-plus", epochs=2)
    rows = read_csv(tmp_path / "run" / "batch_effect.csv")
    assert all(r["grad_noise_scale"] == "" for r in rows)


def test_batch_scalars_reach_tensorboard(tiny_data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # Ultralytics' TensorBoard logger stays off under pytest (PYTEST_CURRENT_TEST): the user's run has no such variable
    env = {"YOLO_CONFIG_DIR": str(tmp_path / "settings"), "PYTEST_CURRENT_TEST": None}
    others = ("mlflow=False", "dvc=False", "comet=False", "clearml=False")  # on by default: their packages are in [dev]
    assert run_yolo("settings", "tensorboard=True", *others, cwd=tmp_path, env=env).returncode == 0
    r = yolo_train(tiny_data, tmp_path, "auto-plus", env=env, epochs=2)
    assert r.returncode == 0, r.stderr[-2000:]
    acc = EventAccumulator(str(tmp_path / "run")).Reload()
    tags = acc.Tags()["scalars"]
    assert {"batch/batch", "batch/effective_batch", "batch/images_per_s", "batch/peak_mem_bytes"} <= set(tags)
    assert [e.value for e in acc.Scalars("batch/batch")] == [32.0, 32.0]
    assert [e.step for e in acc.Scalars("batch/batch")] == [1, 2]
