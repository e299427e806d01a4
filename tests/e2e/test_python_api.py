"""The Python ways in: ``model.train(batch="auto-plus")`` and ``AutoPlus(...).register(model)``."""

from __future__ import annotations

import json

import pytest
import torch
from ultralytics import YOLO

from tests.conftest import train_in_process
from yolo_batch import AutoPlus, AutoPlusError
from yolo_batch.record.effect import read_csv

pytestmark = pytest.mark.slow


def test_train_with_auto_plus_value(tiny_data, tmp_path):
    model = YOLO("yolo11n.yaml")
    train_in_process(model, tiny_data, tmp_path, batch="auto-plus:fit:0.5")
    trainer = model.trainer
    decision = json.loads((tmp_path / "run" / "batch_decision.json").read_text())
    assert decision["policy"] == "fit" and decision["utilization"] == 0.5
    assert trainer.args.batch == trainer.batch_size == decision["batch"] == 32


def test_registered_plugin_makes_auto_plus_the_default(tiny_data, tmp_path):
    model = AutoPlus(candidates=[8, 16], utilization=0.8).register(YOLO("yolo11n.yaml"))
    train_in_process(model, tiny_data, tmp_path)
    decision = json.loads((tmp_path / "run" / "batch_decision.json").read_text())
    assert decision["batch"] == 16 and decision["utilization"] == 0.8
    assert [c["batch"] for c in decision["candidates"]] == [16, 8]
    assert model.trainer.batch_size == 16


def test_registered_plugin_with_explicit_integer_batch_only_measures(tiny_data, tmp_path):
    model = AutoPlus().register(YOLO("yolo11n.yaml"))
    train_in_process(model, tiny_data, tmp_path, batch=4)
    run = tmp_path / "run"
    assert model.trainer.batch_size == 4
    assert not (run / "batch_decision.json").exists()
    rows = read_csv(run / "batch_effect.csv")
    assert rows[0]["batch"] == "4" and int(rows[0]["peak_mem_bytes"]) > 0


def test_callbacks_dict_added_by_hand_measures_a_stock_run(tiny_data, tmp_path):
    """The README's third Python way: the plain ``{event: fn}`` dict, as Ultralytics' own integrations."""
    from yolo_batch.callbacks import callbacks

    model = YOLO("yolo11n.yaml")
    for event, fn in callbacks.items():
        model.add_callback(event, fn)
    train_in_process(model, tiny_data, tmp_path, batch=8)
    run = tmp_path / "run"
    assert model.trainer.batch_size == 8 and not (run / "batch_decision.json").exists()
    assert [(r["epoch"], r["batch"]) for r in read_csv(run / "batch_effect.csv")] == [("1", "8"), ("final", "8")]
    assert "batch: 8\n" in (run / "args.yaml").read_text()


def test_value_beats_keywords_beats_yaml(tiny_data, tmp_path, monkeypatch):
    cfg = tmp_path / "plugin.yaml"
    cfg.write_text("policy: fit\nutilization: 0.6\ncandidates: [8]\n")
    monkeypatch.setenv("YOLO_BATCH_CONFIG", str(cfg))
    model = AutoPlus(utilization=0.7).register(YOLO("yolo11n.yaml"))
    train_in_process(model, tiny_data, tmp_path, batch="auto-plus:ladder")
    d = json.loads((tmp_path / "run" / "batch_decision.json").read_text())
    # policy from the value, utilization from the keyword, candidates from the YAML
    assert (d["policy"], d["utilization"], [c["batch"] for c in d["candidates"]]) == ("ladder", 0.7, [8])
    assert d["config"] == str(cfg)


def test_bad_keyword_fails_at_construction():
    with pytest.raises(
        AutoPlusError,
        match=r"policy='fitt' is not a policy; valid: ladder, fit, speed, goodput \(did you mean 'fit'\?\)",
    ):
        AutoPlus(policy="fitt")


def test_bad_value_in_train_fails_before_run_folder(tiny_data, tmp_path):
    model = YOLO("yolo11n.yaml")
    with pytest.raises(AutoPlusError, match="unknown policy 'fast'"):
        train_in_process(model, tiny_data, tmp_path, batch="auto-plus:fast")
    assert not (tmp_path / "run").exists()


def test_probe_restores_everything_it_touches(tiny_data, tmp_path, monkeypatch):
    """The weights, RNG and trainer slots after the decision are those before it (STYLE rule 8)."""
    from yolo_batch.decide import decide

    seen = {}
    original = decide.auto_batch

    def spy(trainer):
        seen["before"] = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        seen["rng"] = torch.get_rng_state()
        batch = original(trainer)
        seen["after"] = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        seen["rng_after"] = torch.get_rng_state()
        seen["grads"] = [p.grad for p in trainer.model.parameters()]
        seen["slots"] = (trainer.optimizer, trainer.ema, trainer.args.multi_scale, trainer.model.training)
        return batch

    monkeypatch.setattr(decide, "auto_batch", spy)
    import ultralytics

    multi_scale = True if ultralytics.__version__.startswith("8.3.") else 0.25  # 8.3: a bool; 8.4: a fraction
    train_in_process(YOLO("yolo11n.yaml"), tiny_data, tmp_path, batch="auto-plus", multi_scale=multi_scale)
    assert seen["before"].keys() == seen["after"].keys()
    assert all(torch.equal(seen["before"][k], seen["after"][k]) for k in seen["before"])
    assert torch.equal(seen["rng"], seen["rng_after"])
    assert all(g is None for g in seen["grads"])
    assert seen["slots"][:3] == (None, None, multi_scale)
    assert not list(tmp_path.glob("run/*.tmp")) and not list(tmp_path.glob("run/.*.tmp"))
