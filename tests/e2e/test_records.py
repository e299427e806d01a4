"""A run's records tell the truth: ``cfg=args.yaml`` runs auto-plus again, a resume at another batch keeps every
decision in order, and the log says how each batch was chosen."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from ultralytics import YOLO

from tests.conftest import run_yolo, train_in_process, yolo_train
from yolo_batch import AutoPlus
from yolo_batch.record.effect import read_csv

pytestmark = pytest.mark.slow


def _without_time(path) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "time"} for row in read_csv(path)]


def test_cfg_args_yaml_reruns_auto_plus_into_a_new_folder(tiny_data, tmp_path):
    r = yolo_train(tiny_data, tmp_path, "auto-plus:fit", epochs=1)
    assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path / "run"
    args = yaml.safe_load((run / "args.yaml").read_text())
    assert args["batch"] == "auto-plus:fit"  # what the user asked for, not the -1 Ultralytics was handed
    ckpt = torch.load(run / "weights" / "last.pt", map_location="cpu", weights_only=False)
    assert ckpt["train_args"]["batch"] == 32  # what the run trains at: a resume continues with it
    first = {n: (run / n).read_bytes() for n in ("batch_decision.json", "batch_effect.csv", "results.csv", "args.yaml")}

    r = run_yolo("train", f"cfg={run / 'args.yaml'}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert {n: (run / n).read_bytes() for n in first} == first  # the first run's records are untouched
    (rerun,) = [p for p in tmp_path.iterdir() if p.is_dir() and p != run and (p / "args.yaml").exists()]
    assert f"{run} holds an earlier run" in r.stdout + r.stderr
    again = yaml.safe_load((rerun / "args.yaml").read_text())
    assert again["batch"] == "auto-plus:fit" and again["save_dir"] == str(rerun)
    d1, d2 = (json.loads((p / "batch_decision.json").read_text()) for p in (run, rerun))
    assert (
        (d2["value"], d2["policy"], d2["batch"])
        == (d1["value"], d1["policy"], d1["batch"])
        == ("auto-plus:fit", "fit", 32)
    )
    assert _without_time(rerun / "results.csv") == _without_time(run / "results.csv")  # the same run again


class _Stop(Exception):
    pass


def _stop_at(epoch_index: int):
    def stop(trainer):
        if trainer.epoch == epoch_index:
            raise _Stop  # at the start of that epoch: the epochs before it are saved and logged, as by a kill

    return stop


def _history(run) -> list[tuple]:
    data = json.loads((run / "batch_decision.json").read_text())
    return [(h["batch"], h["from_epoch"], h["source"]) for h in data["history"]]


def test_resumes_at_other_batches_keep_every_decision_in_order(tiny_data, tmp_path, caplog):
    run, epochs = tmp_path / "run", 4
    # epoch 1: auto-plus picks 8 (the only candidate), then the run is stopped
    model = AutoPlus(candidates=[8]).register(YOLO("yolo11n.yaml"))
    model.add_callback("on_train_epoch_start", _stop_at(1))
    with pytest.raises(_Stop):
        train_in_process(model, tiny_data, tmp_path, epochs=epochs)
    assert _history(run) == [(8, 1, "auto-plus")]
    last = run / "weights" / "last.pt"
    caplog.clear()

    # epoch 2: resumed as it was; the plugin says the batch came from the checkpoint, which auto-plus picked
    model = YOLO(str(last))
    model.add_callback("on_train_epoch_start", _stop_at(2))
    with pytest.raises(_Stop):
        model.train(resume=True)
    log, _ = caplog.text, caplog.clear()
    assert "resuming at batch=8 from the checkpoint; auto-plus picked 8 (ladder) from epoch 1" in log
    assert "measuring only" not in log and "as given" not in log
    assert _history(run) == [(8, 1, "auto-plus")]  # no new decision

    # epoch 3: resumed with batch=16 given
    model = YOLO(str(last))
    model.add_callback("on_train_epoch_start", _stop_at(3))
    with pytest.raises(_Stop):
        model.train(resume=True, batch=16)
    assert "batch=16 given on resume; auto-plus picked 8 (ladder) from epoch 1" in caplog.text
    assert _history(run) == [(8, 1, "auto-plus"), (16, 3, "given")]

    # epoch 4: resumed through the stock CLI with batch=auto-plus: auto-plus chooses again, at 32
    r = run_yolo("train", "resume", f"model={last}", "batch=auto-plus", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    log = r.stdout + r.stderr
    assert "batch=auto-plus given on resume: auto-plus chooses the batch again; auto-plus picked 8" in log
    assert _history(run) == [(8, 1, "auto-plus"), (16, 3, "given"), (32, 4, "auto-plus")]
    decision = json.loads((run / "batch_decision.json").read_text())
    assert (decision["batch"], decision["from_epoch"], decision["value"]) == (32, 4, "auto-plus")
    rows = read_csv(run / "batch_effect.csv")
    assert [(r["epoch"], r["batch"]) for r in rows] == [
        ("1", "8"),
        ("2", "8"),
        ("3", "16"),
        ("4", "32"),
        ("final", "32"),
    ]
    assert [r["epoch"] for r in read_csv(run / "results.csv")] == ["1", "2", "3", "4"]
    assert (
        "batch 8 -> 16 -> 32 (8 from epoch 1, picked by auto-plus (ladder); 16 from epoch 3, given on resume; "
        "32 from epoch 4, picked by auto-plus (ladder)); accumulate 8 (1-2), 4 (3), 2 (4); effective batch 64 (nbs 64)"
        in log  # each epoch's own accumulate (the last epoch's 2 alone said 2 for all)
    )
    assert yaml.safe_load((run / "args.yaml").read_text())["batch"] == "auto-plus"
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    assert ckpt["train_args"]["batch"] == 32


def _lrs(trainer) -> tuple:
    """(args.lr0, the scheduler's base lrs, each group's initial_lr): what the run's epochs train with."""
    return trainer.args.lr0, trainer.scheduler.base_lrs, [g["initial_lr"] for g in trainer.optimizer.param_groups]


def test_lr_scaling_starts_from_the_base_lr0_once_and_follows_the_batch_that_trains(tiny_data, tmp_path, monkeypatch):
    cfg = tmp_path / "plugin.yaml"
    cfg.write_text("lr_scaling: linear\ncandidates: [32]\n")
    monkeypatch.setenv("YOLO_BATCH_CONFIG", str(cfg))
    run, last = tmp_path / "run", tmp_path / "run" / "weights" / "last.pt"
    # nbs 16: batch 32 steps alone (effective 32): lr0 0.01 x 2; batch 8 accumulates 2 (effective 16): x 1
    model = YOLO("yolo11n.yaml")
    model.add_callback("on_train_epoch_start", _stop_at(1))
    with pytest.raises(_Stop):
        train_in_process(model, tiny_data, tmp_path, batch="auto-plus", epochs=4, nbs=16, optimizer="SGD", lr0=0.01)
    assert _lrs(model.trainer) == (0.01, [0.02] * 3, [0.02] * 3)
    decision = json.loads((run / "batch_decision.json").read_text())
    assert (decision["batch"], decision["lr0"], decision["lr0_scaled"]) == (32, 0.01, 0.02)
    assert torch.load(last, map_location="cpu", weights_only=False)["train_args"]["lr0"] == 0.01

    # resumed with batch=auto-plus: decided again at 32, scaled once from the base (not 0.04)
    model = YOLO(str(last))
    model.add_callback("on_train_epoch_start", _stop_at(2))
    with pytest.raises(_Stop):
        model.train(resume=True, batch="auto-plus")
    assert model.trainer.batch_size == 32
    assert _lrs(model.trainer) == (0.01, [0.02] * 3, [0.02] * 3)
    assert yaml.safe_load((run / "args.yaml").read_text())["lr0"] == 0.01

    # a rerun of that args.yaml (exist_ok=True in it) gets a new folder and starts from the base lr0 again
    rerun_args = (f"cfg={run / 'args.yaml'}", "resume=False", "epochs=1")  # its args.yaml names the resume
    r = run_yolo("train", *rerun_args, cwd=tmp_path, env={"YOLO_BATCH_CONFIG": str(cfg)})
    assert r.returncode == 0, r.stderr[-3000:]
    (rerun,) = [p for p in tmp_path.iterdir() if p.is_dir() and p != run and (p / "args.yaml").exists()]
    again = json.loads((rerun / "batch_decision.json").read_text())
    assert (again["batch"], again["lr0"], again["lr0_scaled"]) == (32, 0.01, 0.02)

    # resumed with batch=8 given: the factor follows the batch that trains (x 1), from the same base
    model = YOLO(str(last))
    model.train(resume=True, batch=8)
    assert model.trainer.batch_size == 8
    assert _lrs(model.trainer) == (0.01, [0.01] * 3, [0.01] * 3)
    assert yaml.safe_load((run / "args.yaml").read_text())["lr0"] == 0.01


def test_a_stock_run_resumed_with_auto_plus_states_its_first_epochs_and_every_second(tiny_data, tmp_path, caplog):
    """Stock ``batch=8``, stopped in epoch 2, resumed with ``batch=auto-plus`` for a longer stretch (issue 21).

    The batch before auto-plus comes from the run's args.yaml before the resume (the checkpoint's ``train_args``
    hold the same 8); the summary, the plot and `compare` state it, and each epoch's own effective batch. The
    resumed stretch runs longer than epoch 1, so results.csv's ``time`` never falls: `compare` finds the stretch
    from the effect log's ``segment_start`` and adds both.
    """
    import time

    from yolo_batch.record.summary import effect_figure
    from yolo_batch.tools.report import compare

    run, last = tmp_path / "run", tmp_path / "run" / "weights" / "last.pt"
    ran: list[list[float]] = []  # each stretch: its on_train_start, then the end of each validation

    def clock(model):  # the validation's end: just before Ultralytics writes the epoch's time, before its checkpoint
        model.add_callback("on_train_start", lambda t: ran.append([time.time()]))
        model.add_callback("on_val_end", lambda v: ran[-1].append(time.time()))

    stock = YOLO("yolo11n.yaml")  # the plugin is not asked for: epoch 1 at 8, nothing of ours written
    clock(stock)
    stock.add_callback("on_train_epoch_start", _stop_at(1))
    with pytest.raises(_Stop):
        train_in_process(stock, tiny_data, tmp_path, batch=8, epochs=3)
    assert not (run / "batch_effect.csv").exists()
    caplog.clear()
    model = YOLO(str(last))
    clock(model)
    model.add_callback("on_train_epoch_end", lambda t: time.sleep(1.5))  # the resumed stretch runs longer
    model.train(resume=True, batch="auto-plus")
    log = caplog.text
    assert _history(run) == [(32, 2, "auto-plus")]  # the plugin chose from epoch 2 on; epoch 1 is the stock run's
    assert "32 from epoch 1" not in log and "a batch it did not log" not in log
    assert (
        "batch 8 -> 32 (8 from epoch 1, as given; 32 from epoch 2, picked by auto-plus (" in log
        and "; accumulate 8 (1), 2 (2-3); effective batch 64 (nbs 64)" in log
    )
    rows = read_csv(run / "batch_effect.csv")
    assert [(r["epoch"], r["batch"], r["effective_batch"], r["segment_start"]) for r in rows] == [
        ("1", "8", "64", ""),  # results.csv's epoch 1 at the batch it trained at; nothing of ours measured it
        ("2", "32", "64", "2"),
        ("3", "32", "64", "2"),
        ("final", "32", "64", ""),
    ]
    results = read_csv(run / "results.csv")
    assert rows[0]["train/box_loss"] == results[0]["train/box_loss"] and rows[0]["images_per_s"] == ""
    first, loss = float(results[0]["time"]), sum(float(results[0][f"train/{k}_loss"]) for k in ("box", "cls", "dfl"))
    assert f"train loss (box + cls + dfl) {loss:.3f} (epoch 1) -> " in log
    decision = json.loads((run / "batch_decision.json").read_text())
    title = effect_figure(rows, decision)._suptitle.get_text().replace("\n", " ")
    assert title.startswith("batch 8 (1), 32 (2-3); effective 64 (8 from epoch 1, as given; 32 from epoch 2")
    (row,) = compare([run])
    assert (row["epochs"], row["batch"], row["batches"]) == (3, 32, "8 (1), 32 (2-3)")
    assert float(results[1]["time"]) > first  # time never fell: only the effect log tells the stretches apart
    assert row["wall_s"] == pytest.approx(first + float(results[-1]["time"]))
    assert [len(stretch) for stretch in ran] == [2, 4]  # epoch 1; epochs 2, 3 and the final evaluation
    trained = (ran[0][1] - ran[0][0]) + (ran[1][2] - ran[1][0])  # each stretch's start to its last epoch's end
    assert row["wall_s"] == pytest.approx(trained, rel=0.1)


def test_compare_after_a_plain_resume_counts_the_redone_epoch_once(tiny_data, tmp_path):
    """issue 14: stopped after epoch 2's results.csv row but before its checkpoint, then resumed as it was.

    Ultralytics' results.csv then holds epoch 2 twice; the summary, the effect log and `compare` count it once.
    """
    from yolo_batch.tools.report import compare

    run, last = tmp_path / "run", tmp_path / "run" / "weights" / "last.pt"

    def no_checkpoint_of_epoch_2(trainer):  # on_train_epoch_end: last.pt keeps epoch 1
        trainer.args.save = trainer.epoch != 1

    def stop_after_its_row(trainer):  # on_fit_epoch_end: epoch 2's row is in results.csv, as by a kill right here
        if trainer.epoch == 1:
            raise _Stop

    model = AutoPlus(candidates=[8]).register(YOLO("yolo11n.yaml"))
    model.add_callback("on_train_epoch_end", no_checkpoint_of_epoch_2)
    model.add_callback("on_fit_epoch_end", stop_after_its_row)
    with pytest.raises(_Stop):
        train_in_process(model, tiny_data, tmp_path, epochs=3)
    assert [r["epoch"] for r in read_csv(run / "results.csv")] == ["1", "2"]
    assert torch.load(last, map_location="cpu", weights_only=False)["epoch"] == 0  # epoch 1's checkpoint

    model = YOLO(str(last))
    model.train(resume=True)  # a plain resume: no batch given, no new decision
    assert [r["epoch"] for r in read_csv(run / "results.csv")] == ["1", "2", "2", "3"]  # Ultralytics' own file
    assert [(r["epoch"], r["batch"]) for r in read_csv(run / "batch_effect.csv")] == [
        ("1", "8"),
        ("2", "8"),
        ("3", "8"),
        ("final", "8"),
    ]
    assert _history(run) == [(8, 1, "auto-plus")]
    (row,) = compare([run])
    assert (row["epochs"], row["batch"], row["batches"]) == (3, 8, "8 (1-3)")
    redone = [r for r in read_csv(run / "results.csv") if r["epoch"] == "2"][-1]
    assert row["final_mAP50(B)"] == pytest.approx(float(read_csv(run / "results.csv")[-1]["metrics/mAP50(B)"]))
    assert float(redone["metrics/mAP50(B)"]) <= row["best_mAP50(B)"]
