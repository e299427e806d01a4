"""Policy ``goodput`` end to end on the CPU: real training that switches the batch between epochs.

Whether a switch pays depends on the noise scale, which a few steps of a tiny model do not settle. The tests
that need a switch therefore feed `goodput.choose` (the real rule) a recorded time law and noise scale:
``RECORDED``, a step dominated by its fixed cost (1 s + 1 ms per image, as a GPU at small batches), a noise
scale of 5000 images, so the largest batch that fits has the best goodput, and a training set of ``IMAGES``
(2560, the time-to-mAP benchmark's) for goodput's BatchNorm guard: on the 32 images trained here BatchNorm's
running statistics would halve over more than an epoch at any batch above 1, which keeps every batch above
``nbs`` out. Everything else is real: the probe, the speed pick, the recipe read from the trainer (optimizer,
lr_scaling, the schedule's lr left), the rebuild through Ultralytics' restart, training, validation and the files.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
import yaml
from ultralytics import YOLO

from tests.conftest import FAST, run_yolo, train_in_process, yolo_train
from tests.memory_laws import YOLOV8S_640
from tests.simulated import SimulatedGPU
from yolo_batch import AutoPlus
from yolo_batch.core import goodput
from yolo_batch.core.policy import Law
from yolo_batch.core.throughput import Pace, TimeLaw
from yolo_batch.record.effect import read_csv

pytestmark = pytest.mark.slow
RECORDED = Pace(TimeLaw(1.0, 0.001))
NOISE = [5000.0, 5000.0]
IMAGES = 2560
START = {"min_batch": 8, "speed_threshold": 0.01}  # the speed pick is then min_batch: 8


@pytest.fixture
def recorded(monkeypatch):
    """`goodput.choose` on the recorded law, noise scale and training set; returns the calls' keyword arguments."""
    real, calls = goodput.choose, []

    def choose(pace, **kw):
        calls.append(kw)
        return real(RECORDED, **{**kw, "readings": NOISE, "recipe": replace(kw["recipe"], dataset_size=IMAGES)})

    monkeypatch.setattr(goodput, "choose", choose)
    return calls


def _rows(run):
    return [r for r in read_csv(run / "batch_effect.csv") if r["epoch"] != "final"]


def _assert_effect_matches_results(run):
    results, effect = read_csv(run / "results.csv"), _rows(run)
    assert [r["epoch"] for r in results] == [r["epoch"] for r in effect]  # every epoch once, the switch's too
    shared = [c for c in results[0] if c in effect[0] and c != "epoch"]
    assert len(shared) >= 13, shared
    for res, eff in zip(results, effect):
        for c in shared:
            assert float(res[c]) == pytest.approx(float(eff[c]), rel=1e-5, abs=1e-9), (res["epoch"], c)


def test_python_api_switches_up_after_the_first_epoch(tiny_data, tmp_path, recorded, caplog):
    model = AutoPlus(policy="goodput", **START).register(YOLO("yolo11n.yaml"))
    train_in_process(model, tiny_data, tmp_path, epochs=3)
    run = tmp_path / "run"
    rows = _rows(run)
    assert [(r["batch"], r["accumulate"], r["effective_batch"]) for r in rows] == [
        ("8", "8", "64"),
        ("32", "2", "64"),
        ("32", "2", "64"),
    ]
    assert [r["batch_change"] for r in rows] == ["", "8 -> 32", ""]
    assert rows[1]["change_reason"].startswith("goodput: goodput 32: 31 images/s x efficiency 1.00 = 31 against 8: 8")
    assert all(r["oom_events"] == "0" for r in rows)
    # decided after epochs 1 and 2 (not after the last), on the fit bound the probe measured: the training set
    assert [(c["current"], c["high"], c["low"]) for c in recorded] == [(8, 32, 8), (32, 32, 8)]
    decision = json.loads((run / "batch_decision.json").read_text())
    assert (decision["policy"], decision["batch"], decision["goodput"]) == (
        "goodput",
        8,
        {"fit_bound": 32, "goodput_gain": 0.05, "lr_scales": False},
    )
    history = [(h["source"], h["batch"], h["from_epoch"]) for h in decision["history"]]
    assert history == [("auto-plus", 8, 1), ("goodput", 32, 2)]
    assert decision["history"][1]["previous_batch"] == 8 and decision["history"][1]["effective_batch"] == 64
    assert model.trainer.batch_size == model.trainer.args.batch == 32
    ckpt = torch.load(run / "weights" / "last.pt", weights_only=False)
    assert ckpt["train_args"]["batch"] == 32  # a resume continues at the batch the run was at
    log = caplog.text
    assert "goodput after epoch 1: switching 8 -> 32" in log
    assert "goodput: batch 8 -> 32 from epoch 2 (effective batch 64, lr0 " in log
    assert ", lr_scaling none: unchanged): goodput 32: 31 images/s" in log
    assert "goodput after epoch 2: stays at 32" in log
    assert "Reducing to batch=" not in log and "batch changed from" not in log  # no out-of-memory story
    assert "batch 8 -> 32 (8 from epoch 1, picked by auto-plus (goodput); 32 from epoch 2, switched by goodput)" in log
    _assert_effect_matches_results(run)


def test_yaml_way_in_scales_lr_with_the_switch(tiny_data, tmp_path, recorded, monkeypatch):
    cfg = tmp_path / "plugin.yaml"
    cfg.write_text("policy: goodput\nmin_batch: 8\nspeed_threshold: 0.01\nlr_scaling: linear\n")
    monkeypatch.setenv("YOLO_BATCH_CONFIG", str(cfg))
    model = YOLO("yolo11n.yaml")
    # nbs 16: batch 8 accumulates 2 (effective 16, lr0 x 1); 24 steps alone (effective 24: lr0 x 1.5), and so would
    # 32 (lr0 x 2), but after epoch 1 of 2 the schedule has left 50.5 % of lr0: AdamW's step at 32 would exceed lr0's
    train_in_process(model, tiny_data, tmp_path, batch="auto-plus", epochs=2, nbs=16, optimizer="AdamW", lr0=0.002)
    run = tmp_path / "run"
    rows = _rows(run)
    assert [(r["batch"], r["effective_batch"], r["batch_change"]) for r in rows] == [
        ("8", "16", ""),
        ("24", "24", "8 -> 24"),
    ]
    assert rows[1]["change_reason"].endswith(
        "not compared: 32 (a step that large needs the lr decayed further than 50% of lr0)"
    )
    entry = json.loads((run / "batch_decision.json").read_text())["history"][1]
    assert (entry["lr0"], entry["lr_scaling"], entry["effective_batch"]) == (pytest.approx(0.003), "linear", 24)
    assert model.trainer.args.lr0 == 0.002  # the base stays in args (last.pt, args.yaml); the optimizer is scaled
    assert [g["initial_lr"] for g in model.trainer.optimizer.param_groups] == pytest.approx([0.003] * 3)
    assert model.trainer.scheduler.base_lrs == pytest.approx([0.003] * 3)
    _assert_effect_matches_results(run)


def test_cli_value_decides_at_each_epoch_end(tiny_data, tmp_path):
    r = yolo_train(tiny_data, tmp_path, "auto-plus:goodput", epochs=2)
    assert r.returncode == 0, r.stderr[-3000:]
    log = r.stdout + r.stderr
    # after epoch 1 the noise scale has at most one reading: no switch; nothing is decided after the last epoch
    assert "goodput after epoch 1: stays at" in log and "noise scale not settled" in log
    assert "goodput after epoch 2" not in log
    run = tmp_path / "run"
    decision = json.loads((run / "batch_decision.json").read_text())
    assert decision["policy"] == "goodput" and decision["speed"] is not None
    assert decision["goodput"]["fit_bound"] == 32
    assert [r["batch_change"] for r in _rows(run)] == ["", ""]


@pytest.fixture
def spy(monkeypatch):
    """The real `goodput.choose`, its calls' keyword arguments noted."""
    real, calls = goodput.choose, []

    def choose(pace, **kw):
        calls.append(kw)
        return real(pace, **kw)

    monkeypatch.setattr(goodput, "choose", choose)
    return calls


def test_above_nbs_under_the_large_batch_recipe_goodput_reads_the_recipe_and_stays(tiny_data, tmp_path, spy, caplog):
    """nbs=8 and the speed pick above it: speed's large-batch recipe (AdamW: lr0 x sqrt(b / nbs), bn_momentum auto)
    makes a step at b worth b / nbs steps at nbs, so goodput, reading that recipe from the trainer, has no reason to
    step back while the noise scale is unsettled (at an endless noise scale the larger batch wins).

    Everything is real here: the pace, the noise scale, the recipe and the rule. ``warmup_epochs=0``: the recipe's
    warm-up floor would otherwise cover the whole of these 1-iteration epochs, and no noise reading is taken in
    warm-up. (Without the recipe, AdamW above nbs steps back at once: `tests/test_goodput.py`.)
    """
    settings = {"policy": "goodput", "min_batch": 8, "speed_threshold": 0.999, "speed_min_steps": 0}  # a short run
    model = AutoPlus(**settings).register(YOLO("yolo11n.yaml"))
    train_in_process(model, tiny_data, tmp_path, epochs=2, nbs=8, optimizer="AdamW", lr0=0.001, warmup_epochs=0)
    run, t = tmp_path / "run", model.trainer
    record = json.loads((run / "batch_decision.json").read_text())
    start = record["history"][0]["batch"]
    assert start > 8 and record["recipe"]["lr_scaling"] == "sqrt"
    assert [(r["batch"], r["batch_change"]) for r in _rows(run)] == [(str(start), ""), (str(start), "")]
    assert f"goodput after epoch 1: stays at {start}" in caplog.text
    # the recipe read from the trainer: the optimizer built, the recipe's sqrt scaling as applied, Ultralytics' lf
    # at epoch 2, the 32 training images, BatchNorm's momentum auto (the recipe's) over the base 0.03
    assert [c["recipe"] for c in spy] == [goodput.Recipe("AdamW", "sqrt", t.lf(1), 32, "auto", 0.03)]
    assert (t.batch_size, t.accumulate) == (start, 1)
    _assert_effect_matches_results(run)


@pytest.fixture
def simulated(monkeypatch):
    device = SimulatedGPU(total_gib=24, train=YOLOV8S_640, val=Law(324 * 2**20, 60 * 2**20)).install()
    monkeypatch.setattr("yolo_batch.device.memory.backend_for", lambda _device: device)
    yield device
    device.remove()


def test_out_of_memory_after_an_upward_switch_steps_down(tiny_data, tmp_path, recorded, simulated):
    model = AutoPlus(policy="goodput", **START).register(YOLO("yolo11n.yaml"))

    def squeeze(trainer):  # from epoch 2 on another process holds memory: forwards above 24 images fail
        if trainer.epoch == 1:
            simulated.ceiling = 24

    model.add_callback("on_train_epoch_start", squeeze)
    train_in_process(model, tiny_data, tmp_path, epochs=3)
    run = tmp_path / "run"
    rows = _rows(run)
    # epoch 2: switched 8 -> 32, ran out of memory at 32, stepped down to 24 and redid the epoch
    assert [(r["batch"], r["oom_events"]) for r in rows] == [("8", "0"), ("24", "1"), ("24", "1")]
    assert rows[1]["batch_change"] == "8 -> 24"
    assert rows[1]["change_reason"].endswith("; then out of memory at 32")
    assert rows[2]["batch_change"] == ""
    # after the step-down goodput never goes above 24 again: epoch 2's decision saw the bound at 24
    assert [(c["current"], c["high"]) for c in recorded] == [(8, 32), (24, 24)]
    assert [r["epoch"] for r in read_csv(run / "results.csv")] == ["1", "2", "3"]
    assert torch.load(run / "weights" / "last.pt", weights_only=False)["train_args"]["batch"] == 24
    assert (32, True) in simulated.seen and (24, True) in simulated.seen


class _Stop(Exception):
    pass


def _stop_at(epoch_index: int):
    def stop(trainer):
        if trainer.epoch == epoch_index:
            raise _Stop  # at that epoch's start: the epochs before it are saved, as by a kill

    return stop


def test_resume_continues_at_the_switched_batch_and_goes_on_choosing(tiny_data, tmp_path, recorded):
    model = AutoPlus(policy="goodput", **START).register(YOLO("yolo11n.yaml"))
    model.add_callback("on_train_epoch_start", _stop_at(2))
    with pytest.raises(_Stop):
        train_in_process(model, tiny_data, tmp_path, epochs=4)
    last = tmp_path / "run" / "weights" / "last.pt"
    r = run_yolo("train", "resume", f"model={last}", cwd=tmp_path)  # the real rule: 1 noise reading, no switch
    assert r.returncode == 0, r.stderr[-3000:]
    log = r.stdout + r.stderr
    assert (
        "resuming at batch=32 from the checkpoint; auto-plus picked 8 (goodput) from epoch 1, goodput switched to 32 "
        "from epoch 2; goodput goes on choosing at each epoch's end" in log
    )
    assert "goodput after epoch 3: stays at 32: noise scale not settled" in log
    assert "goodput after epoch 4" not in log and "probing" not in log  # no decision after the last; no new probe
    rows = _rows(tmp_path / "run")
    assert [r["batch"] for r in rows] == ["8", "32", "32", "32"]
    assert [r["batch_change"] for r in rows] == ["", "8 -> 32", "", ""]
    assert yaml.safe_load((tmp_path / "run" / "args.yaml").read_text())["batch"] == "auto-plus:goodput"  # not 32


def _without_time(path) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "time"} for row in read_csv(path)]


def test_across_a_switch_against_stock_resumed_at_the_new_batch(tiny_data, tmp_path, recorded):
    """Goodput 8 -> 32 after epoch 1 against the stock run at 8, stopped after epoch 1, resumed with ``batch=32``.

    Epoch 1 is the same run, bit for bit. After the switch the learning rates (warm-up and schedule, which
    follow the rebuilt loader's length) equal the resumed run's, bit for bit; the losses do not, and cannot:
    Ultralytics' resume trains on from the checkpoint's EMA weights in half precision (``model: None``), with its
    optimizer state in half precision, reseeded random generators and fresh datasets, where a switch keeps the
    live weights, state and random stream. (A stock run at 8 resumed at 8 differs from the uninterrupted one in
    the same way; measured on this set, train/box_loss 0.00204 against 0.01329 in epoch 2.)
    """
    model = AutoPlus(policy="goodput", **START).register(YOLO("yolo11n.yaml"))
    fast = {**FAST, "epochs": 3, "optimizer": "SGD", "lr0": 0.01}
    model.train(data=str(tiny_data), project=str(tmp_path), name="run", exist_ok=True, **fast)
    stock = YOLO("yolo11n.yaml")
    stock.add_callback("on_train_epoch_start", _stop_at(1))
    with pytest.raises(_Stop):
        stock.train(data=str(tiny_data), project=str(tmp_path), name="stock", exist_ok=True, **{**fast, "batch": 8})
    YOLO(str(tmp_path / "stock" / "weights" / "last.pt")).train(resume=True, batch=32)
    ours, theirs = _without_time(tmp_path / "run" / "results.csv"), _without_time(tmp_path / "stock" / "results.csv")
    assert [r["epoch"] for r in ours] == [r["epoch"] for r in theirs] == ["1", "2", "3"]
    assert ours[0] == theirs[0]  # epoch 1: every loss, metric and lr as the stock run at 8
    lrs = [c for c in ours[0] if c.startswith("lr/")]
    assert len(lrs) == 3 and [[r[c] for c in lrs] for r in ours[1:]] == [[r[c] for c in lrs] for r in theirs[1:]]
    assert [r["batch"] for r in _rows(tmp_path / "run")] == ["8", "32", "32"]
    # the switch rebuilt what Ultralytics builds for 32: loaders, accumulate, weight decay, the validator's loader
    t = model.trainer
    assert (t.batch_size, t.train_loader.batch_size, t.accumulate) == (32, 32, 2)
    assert t.test_loader.batch_size == min(64, len(t.test_loader.dataset))  # 2 x 32, at most the 8 images
    decay = [g["weight_decay"] for g in t.optimizer.param_groups if g.get("param_group") == "weight"]
    assert decay == [pytest.approx(t.args.weight_decay * 32 * 2 / t.args.nbs)]
    assert t.validator.dataloader is t.test_loader


# A goodput run in its own process, on the recorded law and noise scale (as `recorded`), killed with SIGKILL at
# the first training step after the switch to 32: inside epoch 2, before it finished or was saved.
_KILLED_AFTER_SWITCH = """
import os, signal, sys
from ultralytics import YOLO
from yolo_batch import AutoPlus
from yolo_batch.core import goodput
from yolo_batch.core.throughput import Pace, TimeLaw

real = goodput.choose
goodput.choose = lambda pace, **kw: real(Pace(TimeLaw(1.0, 0.001)), **{**kw, "readings": [5000.0, 5000.0]})


def kill(trainer):
    if trainer.epoch == 1 and trainer.batch_size == 32:
        os.kill(os.getpid(), signal.SIGKILL)


model = AutoPlus(policy="goodput", min_batch=8, speed_threshold=0.01).register(YOLO("yolo11n.yaml"))
model.add_callback("on_train_batch_end", kill)
model.train(data=sys.argv[1], project=sys.argv[2], name="run", exist_ok=True, epochs=3, imgsz=64, amp=False,
            plots=False, workers=0, seed=0)
"""


def test_a_switch_killed_inside_its_first_epoch_never_enters_the_records(tiny_data, tmp_path):
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-c", _KILLED_AFTER_SWITCH, str(tiny_data), str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    run = tmp_path / "run"
    assert r.returncode == -9, r.stderr[-3000:]
    assert "goodput: batch 8 -> 32 from epoch 2" in r.stdout + r.stderr  # the switch was made, then killed
    history = lambda: [(h["source"], h["batch"], h["from_epoch"]) for h in _decision(run)["history"]]  # noqa: E731
    assert history() == [("auto-plus", 8, 1)]  # 32 never finished an epoch
    assert [(r["epoch"], r["batch"]) for r in _rows(run)] == [("1", "8")]

    r = run_yolo("train", "resume", f"model={run / 'weights' / 'last.pt'}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    log = r.stdout + r.stderr
    assert "resuming at batch=8 from the checkpoint; auto-plus picked 8 (goodput) from epoch 1; goodput goes on" in log
    assert history() == [("auto-plus", 8, 1)]  # the resume trained on at 8 (the real rule: not settled)
    assert [(r["epoch"], r["batch"], r["batch_change"]) for r in _rows(run)] == [
        ("1", "8", ""),
        ("2", "8", ""),
        ("3", "8", ""),
    ]
    assert "batch 8 picked by auto-plus (goodput); accumulate 8" in log
    assert "switched" not in log
    assert yaml.safe_load((run / "args.yaml").read_text())["batch"] == "auto-plus:goodput"  # not the checkpoint's 8


def _decision(run) -> dict:
    return json.loads((run / "batch_decision.json").read_text())
