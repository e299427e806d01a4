"""The stock ``yolo train ... batch=auto-plus`` command, run as a user runs it (a subprocess)."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import run_yolo, yolo_train
from yolo_batch.record.effect import read_csv

pytestmark = pytest.mark.slow


def test_yolo_train_auto_plus_picks_trains_and_records(tiny_data, tmp_path):
    r = yolo_train(tiny_data, tmp_path, "auto-plus", epochs=2)
    assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path / "run"
    decision = json.loads((run / "batch_decision.json").read_text())
    # 32 training images: 64 is above the training set, 32 fits on any machine that runs this test
    assert decision["batch"] == 32
    assert decision["policy"] == "ladder" and decision["device"] == "cpu"
    assert [c["batch"] for c in decision["candidates"]] == [64, 32, 16]
    for key in (
        "total_bytes",
        "free_bytes",
        "budget_bytes",
        "fixed_bytes",
        "per_image_bytes",
        "predicted_peak_bytes",
        "probe_seconds",
    ):
        assert decision[key] > 0, key
    # verify: auto proves the pick when a step is cheap; far below the budget it may skip it, and says so
    assert (decision["verified_peak_bytes"] is None) == ("not verified" in decision["reason"])
    assert decision["budget_bytes"] == pytest.approx(0.9 * (decision["free_bytes"] + decision["held_bytes"]), rel=1e-6)
    assert "32 fits at" in decision["reason"] and "above the cap" in decision["reason"]
    # the trainer trained at the pick: args, checkpoint and accumulate agree
    ckpt = torch.load(run / "weights" / "last.pt", map_location="cpu", weights_only=False)
    assert ckpt["train_args"]["batch"] == 32
    rows = read_csv(run / "batch_effect.csv")
    assert [r["epoch"] for r in rows] == ["1", "2", "final"]
    assert all(r["batch"] == "32" and r["accumulate"] == "2" for r in rows)  # round(64 / 32)
    assert all(int(r["peak_mem_bytes"]) > 0 for r in rows[:2])
    results = read_csv(run / "results.csv")
    assert [r["epoch"] for r in results] == ["1", "2"]
    assert "AutoPlus: " in r.stdout + r.stderr and "<- pick" in r.stdout + r.stderr


@pytest.mark.parametrize(
    ("value", "expect"),
    [
        pytest.param("auto-plus:fitt", "did you mean 'fit'", id="misspelt-policy"),
        pytest.param("auto-plsu", "did you mean 'auto-plus'", id="misspelt-prefix"),
        pytest.param("auto-plus:1.5", "must be in (0, 1)", id="fraction-out-of-range"),
    ],
)
def test_bad_value_is_one_line_before_anything_is_built(tiny_data, tmp_path, value, expect):
    r = yolo_train(tiny_data, tmp_path, value)
    assert r.returncode == 2
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("yolo-batch: error: ") and expect in lines[0] and value in lines[0]
    assert "Traceback" not in r.stdout + r.stderr
    assert not (tmp_path / "run").exists()
    assert "YOLO11n summary" not in r.stdout  # the model was never built


def test_training_yaml_with_auto_plus_fit(tiny_data, tmp_path):
    cfg = tmp_path / "train.yaml"
    cfg.write_text(
        f"model: yolo11n.yaml\ndata: {tiny_data}\nbatch: auto-plus:fit\nimgsz: 64\nepochs: 1\namp: false\n"
        f"plots: false\nproject: {tmp_path}\nname: run\n"
    )
    plugin = tmp_path / "plugin.yaml"
    plugin.write_text("probe:\n  verify: true\n")
    r = run_yolo("train", f"cfg={cfg}", cwd=tmp_path, env={"YOLO_BATCH_CONFIG": str(plugin)})
    assert r.returncode == 0, r.stderr[-3000:]
    decision = json.loads((tmp_path / "run" / "batch_decision.json").read_text())
    # fit: the largest batch that fits, capped by the 32-image training set, a multiple of 8
    assert decision["policy"] == "fit" and decision["batch"] == 32
    # verify: true proves the pick even with ample memory: a real step's peak, near the prediction
    assert decision["verified_peak_bytes"] == pytest.approx(decision["predicted_peak_bytes"], rel=0.25)


def test_bad_plugin_config_named_by_env_fails_cleanly(tiny_data, tmp_path):
    bad = tmp_path / "plugin.yaml"
    bad.write_text("policy: ladder\nutilisation: 0.8\n")
    r = yolo_train(tiny_data, tmp_path, "auto-plus", env={"YOLO_BATCH_CONFIG": str(bad)})
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0
    assert "utilisation" in r.stderr and "did you mean 'utilization'" in r.stderr and str(bad) in r.stderr
    assert not (tmp_path / "run").exists()


def test_integer_batch_is_stock(tiny_data, tmp_path):
    r = yolo_train(tiny_data, tmp_path, "8")
    assert r.returncode == 0, r.stderr[-3000:]
    assert not (tmp_path / "run" / "batch_decision.json").exists()
    assert not (tmp_path / "run" / "batch_effect.csv").exists()
    assert "AutoPlus" not in r.stdout + r.stderr
