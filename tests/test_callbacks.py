"""The hooks on a hand-built trainer: 8.3-style tensor losses, the final row, nominal accumulate, no-ops."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from yolo_batch import callbacks
from yolo_batch.callbacks import ATTR, Session, nominal_accumulate
from yolo_batch.core.spec import BatchSpec
from yolo_batch.record.effect import read_csv


class FakeBackend:
    def __init__(self):
        self.resets = 0

    def reset_peak(self):
        self.resets += 1

    def peak_bytes(self):
        return 3 * 2**30


def trainer_83(tmp_path, epoch=0):
    """What Ultralytics 8.3 hands a callback: tloss a tensor, label_loss_items zipping loss_names with it."""
    names = ("box_loss", "cls_loss", "dfl_loss")
    t = SimpleNamespace(
        save_dir=tmp_path,
        epoch=epoch,
        start_epoch=0,
        epochs=3,
        batch_size=16,
        args=SimpleNamespace(nbs=64, time=None, batch=16),
        train_loader=SimpleNamespace(dataset=list(range(64)), __len__=None),
        tloss=torch.tensor([1.5, 2.25, 0.75]),
        metrics={"metrics/mAP50(B)": 0.5, "metrics/mAP50-95(B)": 0.25},
        lr={"lr/pg0": 0.01},
        label_loss_items=lambda items=None, prefix="train": {
            f"{prefix}/{n}": round(float(v), 5) for n, v in zip(names, items)
        },
    )
    t.train_loader = type("Loader", (), {"dataset": list(range(64)), "__len__": lambda self: 4})()
    s = Session(BatchSpec(), decides=False, value=None)
    t.device = "cpu"
    s.device.backend, s.device.device = FakeBackend(), t.device
    s.device.headroom = SimpleNamespace(total_bytes=12 * 2**30)
    setattr(t, ATTR, s)
    return t, s


def test_tensor_losses_of_ultralytics_83_and_the_final_row(tmp_path):
    t, s = trainer_83(tmp_path)
    callbacks.on_train_epoch_start(t)
    callbacks.on_train_epoch_end(t)
    callbacks.on_fit_epoch_end(t)
    t.epoch += 1  # final_eval: on_fit_epoch_end again, with epoch + 1 and no training
    t.metrics = {"metrics/mAP50(B)": 0.75, "metrics/mAP50-95(B)": 0.5}
    callbacks.on_fit_epoch_end(t)
    rows = read_csv(tmp_path / "batch_effect.csv")
    assert [r["epoch"] for r in rows] == ["1", "final"]
    assert (rows[0]["train/box_loss"], rows[0]["train/cls_loss"], rows[0]["train/dfl_loss"]) == ("1.5", "2.25", "0.75")
    assert rows[0]["accumulate"] == "4" and rows[0]["effective_batch"] == "64"
    assert rows[0]["peak_mem_bytes"] == str(3 * 2**30) and rows[0]["mem_utilization"] == "0.25"
    assert rows[1]["metrics/mAP50(B)"] == "0.75" and rows[1]["train/box_loss"] == ""
    assert s.backend.resets == 1


@pytest.mark.parametrize(
    ("batch", "batches_per_epoch", "epochs", "expected"),
    [
        pytest.param(16, 100, 10, 4, id="round-64-over-16"),
        pytest.param(24, 100, 10, 3, id="round-2.67"),
        pytest.param(64, 100, 10, 1, id="at-nbs"),
        pytest.param(128, 100, 10, 1, id="above-nbs"),
        pytest.param(8, 2, 1, 2, id="capped-by-total-batches"),
    ],
)
def test_nominal_accumulate_matches_ultralytics(batch, batches_per_epoch, epochs, expected):
    loader = type("Loader", (), {"__len__": lambda self: batches_per_epoch})()
    t = SimpleNamespace(batch_size=batch, epochs=epochs, args=SimpleNamespace(nbs=64, time=None), train_loader=loader)
    assert nominal_accumulate(t) == expected


@pytest.mark.parametrize(
    ("results", "expect"),
    [
        pytest.param(
            "epoch,time,train/box_loss\n1,2.0,3.0\n2,4.0,2.5\n2,1.5,2.25\n",
            [("1", "8", "8", "64", "3.0", ""), ("2", "8", "8", "64", "2.25", ""), ("3", "16", "4", "64", "1.5", "3")],
            id="earlier-epochs-filled",
        ),
        pytest.param(b"\xff\xfe\x00garbage", [("3", "16", "4", "64", "1.5", "3")], id="damaged-results-csv"),
    ],
)
def test_a_stock_run_resumed_gets_its_earlier_epochs_rows(tmp_path, caplog, results, expect):
    """Resumed after epoch 2 of a stock run at 8: results.csv's epochs 1-2 (a redone epoch's last row) at 8."""
    t, s = trainer_83(tmp_path, epoch=2)
    t.start_epoch, t.csv, t.tloss = 2, tmp_path / "results.csv", torch.tensor([1.5, 1.0, 0.5])
    (t.csv.write_text if isinstance(results, str) else t.csv.write_bytes)(results)
    s.fixed, s.meter.segment_start = replace(s.fixed, batch_before=8), 3  # as wiring.plan and on_train_start set them
    callbacks.on_train_epoch_start(t)
    callbacks.on_train_epoch_end(t)
    callbacks.on_fit_epoch_end(t)
    rows = read_csv(tmp_path / "batch_effect.csv")
    cells = ("epoch", "batch", "accumulate", "effective_batch", "train/box_loss", "segment_start")
    assert [tuple(r[k] for k in cells) for r in rows] == expect
    assert ("not logged" in caplog.text) == isinstance(results, bytes)


def test_hooks_are_no_ops_for_a_stock_trainer(tmp_path):
    t = SimpleNamespace(save_dir=tmp_path, epoch=0)
    for fn in callbacks.callbacks.values():
        assert fn(t) is None
    assert list(tmp_path.iterdir()) == []


def test_a_logging_problem_never_stops_training(tmp_path, caplog):
    t, s = trainer_83(tmp_path)
    t.label_loss_items = None  # broken: calling it raises TypeError
    callbacks.on_train_epoch_start(t)
    callbacks.on_train_epoch_end(t)
    callbacks.on_fit_epoch_end(t)  # must not raise
    assert not (tmp_path / "batch_effect.csv").exists()
    assert "on_fit_epoch_end skipped: TypeError" in caplog.text


def test_callbacks_is_a_plain_event_dict_as_in_ultralytics_integrations():
    from ultralytics.utils.callbacks import get_default_callbacks

    from yolo_batch.callbacks import callbacks as hooks

    assert type(hooks) is dict and type(callbacks) is type(pytest)  # a plain dict in a plain module
    assert set(hooks) <= set(get_default_callbacks())  # every key an Ultralytics event
    assert hooks["on_train_end"] is callbacks.on_train_end


@pytest.mark.parametrize(
    "batch", [pytest.param(16, id="int"), pytest.param(-1, id="autobatch"), pytest.param(0.7, id="fraction")]
)
def test_plan_leaves_stock_values_alone(batch):
    from ultralytics.cfg import DEFAULT_CFG

    from yolo_batch.wiring import plan

    assert plan(DEFAULT_CFG, {"batch": batch, "data": "x.yaml"}, None) is None


@pytest.mark.parametrize(
    ("scaling", "batch", "optimizer", "expected"),
    [
        pytest.param("none", 128, "SGD", 0.01, id="none"),
        pytest.param("linear", 128, "SGD", 0.02, id="linear-2x"),
        pytest.param("sqrt", 128, "SGD", 0.01 * 2**0.5, id="sqrt"),
        pytest.param("linear", 64, "SGD", 0.01, id="at-nbs-unchanged"),
        pytest.param("linear", 32, "SGD", 0.01, id="below-nbs-accumulates"),
        pytest.param("linear", 128, "auto", 0.01, id="optimizer-auto-picks-its-own-lr"),
    ],
)
def test_lr_scaling(scaling, batch, optimizer, expected):
    from yolo_batch.session import Session
    from yolo_batch.train import lrscale

    t = SimpleNamespace(args=SimpleNamespace(nbs=64, lr0=0.01, optimizer=optimizer))
    s = Session(BatchSpec(lr_scaling=scaling), decides=True, value="auto-plus")
    record = lrscale.plan(t, s, scaling, batch)
    assert t.args.lr0 == 0.01  # the base stays in args (and so in last.pt and args.yaml)
    assert s.lr.applies == (scaling != "none" and optimizer != "auto")
    assert record == {
        "lr_scaling": scaling,
        "lr0": 0.01,
        "lr0_scaled": pytest.approx(expected),
        "effective_batch": max(batch, 64),
    }
