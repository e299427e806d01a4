"""``bn_momentum``: ``keep`` trains bit for bit as stock; ``auto`` scales the training model's BatchNorm momentum."""

from __future__ import annotations

import pytest
import torch
from ultralytics import YOLO

from tests.conftest import train_in_process
from yolo_batch import AutoPlus
from yolo_batch.record.effect import read_csv
from yolo_batch.train.batchnorm import scaled

pytestmark = pytest.mark.slow


def _train(data, tmp_path, name, plugin=None, **kw):
    """Two deterministic epochs at batch 8 (4 iterations each); the BatchNorm momenta seen while training."""
    model = YOLO("yolo11n.yaml")
    if plugin is not None:
        model = plugin.register(model)
    seen = set()

    def look(trainer):
        seen.update(m.momentum for m in trainer.model.modules() if isinstance(m, torch.nn.BatchNorm2d))

    model.add_callback("on_train_batch_end", look)
    train_in_process(model, data, tmp_path / name, epochs=2, deterministic=True, **kw)
    run = tmp_path / name / "run"
    rows = [{k: v for k, v in r.items() if k != "time"} for r in read_csv(run / "results.csv")]
    ckpt = torch.load(run / "weights" / "last.pt", map_location="cpu", weights_only=False)
    return rows, ckpt.get("ema") or ckpt["model"], seen  # the finished checkpoint keeps the EMA under "model"


def test_keep_trains_bit_for_bit_as_stock_and_auto_scales_the_training_model(tiny_data, tmp_path):
    stock_rows, stock_ckpt, stock_seen = _train(tiny_data, tmp_path, "stock", batch=8)
    keep_rows, keep_ckpt, keep_seen = _train(tiny_data, tmp_path, "keep", AutoPlus(candidates=[8], bn_momentum="keep"))
    auto_rows, auto_ckpt, auto_seen = _train(tiny_data, tmp_path, "auto", AutoPlus(candidates=[8], bn_momentum="auto"))
    assert stock_seen == keep_seen == {0.03}
    # an auto-plus run that picks 8 with bn_momentum keep: the same epochs and weights as stock batch=8
    assert keep_rows == stock_rows
    stock_sd, keep_sd = stock_ckpt.state_dict(), keep_ckpt.state_dict()
    assert all(torch.equal(stock_sd[k], keep_sd[k]) for k in stock_sd)
    # auto: 1 - 0.97 ** (8 / 16) = 0.0151 on the training model, while it trains; checkpoints keep 0.03
    assert len(auto_seen) == 1 and auto_seen.pop() == pytest.approx(scaled(0.03, 8))
    assert {m.momentum for m in auto_ckpt.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {0.03}
    auto_sd = auto_ckpt.state_dict()
    assert any(not torch.equal(stock_sd[k], auto_sd[k]) for k in stock_sd if "running_mean" in k)


def test_observe_mode_never_changes_training_even_with_bn_momentum_auto(tiny_data, tmp_path, monkeypatch):
    stock_rows, stock_ckpt, stock_seen = _train(tiny_data, tmp_path, "stock", batch=8)
    cfg = tmp_path / "plugin.yaml"
    cfg.write_text("bn_momentum: auto\n")
    monkeypatch.setenv("YOLO_BATCH_CONFIG", str(cfg))
    monkeypatch.setenv("YOLO_BATCH_OBSERVE", "1")  # measure and log every run (what sweep sets)
    seen_rows, seen_ckpt, seen_seen = _train(tiny_data, tmp_path, "observed", batch=8)
    assert (tmp_path / "observed" / "run" / "batch_effect.csv").is_file()  # measured...
    assert seen_seen == stock_seen == {0.03}  # ...and trained as stock: Ultralytics' momentum
    assert seen_rows == stock_rows
    stock_sd, seen_sd = stock_ckpt.state_dict(), seen_ckpt.state_dict()
    assert all(torch.equal(stock_sd[k], seen_sd[k]) for k in stock_sd)
