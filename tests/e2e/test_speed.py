"""The ``speed`` policy end to end, through the three ways in, and the dataloader measurement's clean-up."""

from __future__ import annotations

import json

import psutil
import pytest
from ultralytics import YOLO

from tests.conftest import FAST, run_yolo, train_in_process, yolo_train
from yolo_batch import AutoPlus
from yolo_batch.core.policy import Law, MemoryModel, decide
from yolo_batch.core.throughput import pace_from_record

pytestmark = pytest.mark.slow


def _record(run) -> dict:
    return json.loads((run / "batch_decision.json").read_text())


def _assert_speed_record(d: dict, threshold: float = 0.97) -> None:
    """Both laws recorded, images/s per candidate, and the pick is what the pure policy makes of the record."""
    assert d["policy"] == "speed" and d["settings"]["speed_threshold"] == threshold
    law, loader = d["speed"]["time_law"], d["speed"]["loader"]
    assert law["per_image_seconds"] > 0 and law["fixed_seconds"] >= 0 and law["optimizer_seconds"] > 0
    assert loader["images_per_s"] > 0 and loader["images"] >= 16 and loader["workers"] == 0  # Ultralytics: CPU
    assert loader["overlapped"] is False  # on a CPU the loader's time adds to the step's
    assert len(d["speed"]["points"]["law"]) >= 2
    assert all(c["predicted_images_per_s"] > 0 for c in d["candidates"])
    pace = pace_from_record(d)
    assert d["predicted_images_per_s"] == pytest.approx(pace.images_per_s(d["batch"]), abs=0.06)
    val = Law(d["val_fixed_bytes"], d["val_per_image_bytes"]) if d["val_per_image_bytes"] is not None else None
    model = MemoryModel(Law(d["fixed_bytes"], d["per_image_bytes"]), val)
    s = d["settings"]
    again = decide(
        model,
        d["budget_bytes"],
        policy="speed",
        pace=pace,
        speed_threshold=threshold,
        candidates=tuple(s["candidates"]),
        min_batch=s["min_batch"],
        max_batch=s["max_batch"],
        dataset_size=d["dataset_size"],
    )
    assert again.batch == d["batch"]
    # the binding ceiling's words lead (the record rounds the loader's rate, so they are compared as recorded)
    assert d["reason"].startswith(d["ceilings"]["words"] + "; ")
    assert d["reason"].split("; ", 1)[1].startswith(again.reason.split("; ", 1)[1].split(" fits at ")[0])


def test_cli_speed_records_both_laws_and_checks_them_against_the_epochs(tiny_data, tmp_path):
    r = yolo_train(tiny_data, tmp_path, "auto-plus:speed", epochs=2)
    assert r.returncode == 0, r.stderr[-3000:]
    d = _record(tmp_path / "run")
    _assert_speed_record(d)
    log = r.stdout + r.stderr
    assert "time law " in log and " ms/image per step" in log and "images/s" in log and "<- pick" in log
    # the summary compares the prediction at the pick with the steady epoch (the second)
    assert f"speed: predicted {d['predicted_images_per_s']:.1f} images/s at batch {d['batch']}, measured " in log
    assert "over 1 steady epoch (" in log


def test_python_keywords_speed_with_a_threshold(tiny_data, tmp_path):
    model = AutoPlus(policy="speed", speed_threshold=0.5).register(YOLO("yolo11n.yaml"))
    train_in_process(model, tiny_data, tmp_path)
    d = _record(tmp_path / "run")
    _assert_speed_record(d, threshold=0.5)
    assert model.trainer.batch_size == d["batch"]


def test_plugin_yaml_speed_and_ladder_pays_no_timing(tiny_data, tmp_path, monkeypatch):
    cfg = tmp_path / "plugin.yaml"
    cfg.write_text("policy: speed\nspeed_threshold: 0.9\n")
    monkeypatch.setenv("YOLO_BATCH_CONFIG", str(cfg))
    train_in_process(YOLO("yolo11n.yaml"), tiny_data, tmp_path, batch="auto-plus")
    _assert_speed_record(_record(tmp_path / "run"), threshold=0.9)
    monkeypatch.delenv("YOLO_BATCH_CONFIG")
    train_in_process(YOLO("yolo11n.yaml"), tiny_data, tmp_path / "ladder", batch="auto-plus")
    d = _record(tmp_path / "ladder" / "run")
    assert d["policy"] == "ladder" and d["batch"] == 32  # memory alone, as before
    # ladder and fit take no timing steps and build no loader (they would cost every decision seconds)
    assert not d.get("speed") and not any(c.get("predicted_images_per_s") for c in d["candidates"])


def test_dataloader_measurement_leaves_no_worker_behind(tiny_data, tmp_path, monkeypatch):
    import ultralytics.data.build
    from ultralytics.data import build_yolo_dataset
    from ultralytics.models.yolo.detect import DetectionTrainer

    from yolo_batch.decide.loader import measure

    trainer = DetectionTrainer(
        overrides={**FAST, "model": "yolo11n.yaml", "data": str(tiny_data), "project": str(tmp_path), "name": "t"}
    )
    trainer.args.workers = 2  # Ultralytics sets 0 on a CPU; the measurement builds what it is given
    dataset = build_yolo_dataset(trainer.args, trainer.data["train"], 16, trainer.data, mode="train", stride=32)
    built, real = [], ultralytics.data.build.build_dataloader
    monkeypatch.setattr(
        ultralytics.data.build, "build_dataloader", lambda *a, **k: built.append(real(*a, **k)) or built[-1]
    )
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    rate = measure(trainer, dataset, seconds=3.0, batch=8)  # `built` keeps the loader alive: no __del__ to help
    after = {p.pid for p in psutil.Process().children(recursive=True) if p.is_running()}
    assert rate.workers == 2 and rate.images_per_s > 0 and rate.images >= 8 * 4
    assert rate.seconds <= 3.0 + 1.0 and rate.start_seconds > 0
    assert after <= before, f"dataloader workers left running: {after - before}"


# --------------------------------------------------------------------------------------------------------------------
# speed v2: within nbs first, the large-batch recipe above it, the refit of a far time law


def _assert_ceilings(d: dict) -> None:
    """Both ceilings recorded apart, the binding one named in the record and said in the reason."""
    c = d["ceilings"]
    timed = [b for b, _ in d["speed"]["points"]["law"]]
    assert [b for b, _ in c["step_images_per_s"]] == timed and all(v > 0 for _, v in c["step_images_per_s"])
    assert c["dataloader_images_per_s"] == d["speed"]["loader"]["images_per_s"] > 0
    assert c["binding"] in {"data", "step"} and c["words"].startswith(f"{c['binding']}-bound")
    assert d["reason"].startswith(c["words"]) or c["words"] in d["reason"]
    assert d["speed"]["loader"]["skipped_batches"] >= 1  # workers=0 on a CPU: the first batch


def test_a_short_run_stays_within_nbs_and_says_why(tiny_data, tmp_path):
    """The same run as below, with the default speed_min_steps: 3 epochs of 32 images make a few optimizer steps at
    any batch above nbs=8, so speed stays within Ultralytics' recipe, applies no recipe and says why."""
    model = AutoPlus(policy="speed", speed_gain=0.0).register(YOLO("yolo11n.yaml"))
    train_in_process(model, tiny_data, tmp_path, nbs=8, epochs=3, warmup_epochs=0.5, optimizer="AdamW", lr0=0.001)
    d = _record(tmp_path / "run")
    assert d["batch"] <= 8 and d["recipe"] is None and d["settings"]["speed_min_steps"] == 10000
    assert "fewer than speed_min_steps 10000 (a short run is update-bound)" in d["reason"]
    assert model.trainer.batch_size == d["batch"]


def test_python_speed_above_nbs_applies_the_large_batch_recipe(tiny_data, tmp_path):
    """nbs=8 and speed_gain 0: a batch above 8 is faster on a CPU, so the recipe applies, through its owners."""
    import math

    import yaml

    from yolo_batch.train.batchnorm import scaled

    used = []  # the warm-up iterations Ultralytics' loop computes (`nw = self._get_warmup_iterations(nb)`)

    def spy(trainer):  # after the decision and the plugin's own hooks, before _do_train computes nw
        inner = trainer._get_warmup_iterations
        trainer._get_warmup_iterations = lambda nb: used.append(inner(nb)) or used[-1]

    model = AutoPlus(policy="speed", speed_gain=0.0, speed_min_steps=0).register(YOLO("yolo11n.yaml"))
    model.add_callback("on_pretrain_routine_end", spy)
    train_in_process(model, tiny_data, tmp_path, nbs=8, epochs=3, warmup_epochs=0.5, optimizer="AdamW", lr0=0.001)
    d, t = _record(tmp_path / "run"), model.trainer
    b = d["batch"]
    _assert_ceilings(d)
    assert b > 8 and d["settings"]["speed_gain"] == 0.0
    nb = math.ceil(32 / b)
    assert d["recipe"] == {
        "batch": b,
        "nbs": 8,
        "optimizer": "AdamW",
        "lr_scaling": "sqrt",
        "lr_factor": round(math.sqrt(b / 8), 6),
        "warmup_iterations": min(100, 2 * nb),  # the floor, capped before the final epoch
        "warmup_ultralytics": round(0.5 * nb),
        "warmup_floor": 100,
        "warmup_cap": 2 * nb,
        "bn_momentum": "auto",
        "why": d["recipe"]["why"],
    }
    # the record and the line state the iterations the loop warmed up for, and why
    assert used == [d["recipe"]["warmup_iterations"]]
    assert f"large-batch recipe above nbs=8: AdamW lr0 x{math.sqrt(b / 8):.3g} (sqrt)" in d["reason"]
    assert (
        f"warm-up {used[0]} iterations (the recipe's floor 100, capped at {2 * nb} to leave the final epoch; "
        f"Ultralytics: {round(0.5 * nb)})"
    ) in d["reason"]
    assert d["lr_scaling"] == "sqrt" and d["lr0"] == 0.001
    # lr: the optimizer's groups at the base x sqrt(b / 8); args (and args.yaml) keep the user's lr0 and warm-up
    assert all(g["initial_lr"] == pytest.approx(0.001 * math.sqrt(b / 8)) for g in t.optimizer.param_groups)
    args = yaml.safe_load((tmp_path / "run" / "args.yaml").read_text())
    assert (t.args.lr0, args["lr0"], t.args.warmup_epochs, args["warmup_epochs"]) == (0.001, 0.001, 0.5, 0.5)
    # warm-up: Ultralytics' round(0.5 x nb), floored at 100 but never into the final epoch: 2 x nb
    assert t._get_warmup_iterations(nb) == min(100, 2 * nb) > round(0.5 * nb)
    # BatchNorm momentum auto on the training model (the EMA keeps Ultralytics' 0.03)
    bns = [m for m in t.model.modules() if type(m).__name__ == "BatchNorm2d"]
    assert bns and all(m.momentum == pytest.approx(scaled(0.03, b)) for m in bns)
    assert all(m.momentum == 0.03 for m in t.ema.ema.modules() if type(m).__name__ == "BatchNorm2d")


def test_cli_yaml_speed_gain_keeps_the_pick_within_nbs(tiny_data, tmp_path):
    """The CLI with a plugin YAML: a speed_gain no batch above nbs=8 can reach keeps Ultralytics' recipe."""
    cfg = tmp_path / "plugin.yaml"
    cfg.write_text("policy: speed\nspeed_gain: 50\n")
    r = yolo_train(tiny_data, tmp_path, "auto-plus", "nbs=8", epochs=1, env={"YOLO_BATCH_CONFIG": str(cfg)})
    assert r.returncode == 0, r.stderr[-3000:]
    d = _record(tmp_path / "run")
    _assert_ceilings(d)
    assert d["batch"] <= 8 and d["recipe"] is None and d["settings"]["speed_gain"] == 50.0
    assert "within nbs=8 (Ultralytics' recipe): the fastest above it, " in d["reason"]
    assert "not above speed_gain 5000%" in d["reason"]
    log = r.stdout + r.stderr
    assert "-bound at the pick (step " in log and "(timed)" in log  # the table's law line shows both ceilings


def test_far_pick_refits_the_time_law_through_a_timed_step(tiny_data, tmp_path, monkeypatch):
    """Timed sizes kept to the probe's 2-8: a pick above 16 is timed, the law refitted through it, decided again."""
    from yolo_batch.core.throughput import Pace, TimeLaw
    from yolo_batch.decide import loader

    monkeypatch.setattr(loader, "EXTEND_SECONDS", 0.0)
    model = AutoPlus(policy="speed", speed_gain=0.0, speed_min_steps=0, max_batch=32).register(YOLO("yolo11n.yaml"))
    train_in_process(model, tiny_data, tmp_path, nbs=8, epochs=1)
    d = _record(tmp_path / "run")
    refit = d["time_refit"]
    assert refit is not None and refit["largest_timed"] == 8 and refit["batch_before"] > 16
    assert refit["point"][0] == refit["batch_before"] and d["batch"] == refit["batch_after"] <= refit["batch_before"]
    assert [refit["point"][0], pytest.approx(refit["point"][1], abs=1e-5)] in d["speed"]["points"]["law"]
    law = d["speed"]["time_law"]
    assert law == refit["after"] and law["knee"] == 8 and "knee" not in refit["before"]
    assert {k: law[k] for k in refit["before"]} == refit["before"]  # kept where it was fitted
    assert f"put a step at {refit['batch_before']} at " in d["reason"] and "time law refitted through it" in d["reason"]
    # above the knee: the line from the law's time at 8 to the timed step
    at8 = law["fixed_seconds"] + 8 * law["per_image_seconds"]
    (x1, y1) = refit["point"]
    assert law["beyond_per_image_seconds"] == pytest.approx(max((y1 - at8) / (x1 - 8), 0.0), rel=1e-3, abs=1e-6)
    # the pure policy on the recorded, refitted pace gives the same pick (capped at the timed batch if above it)
    pace = pace_from_record(d)
    assert isinstance(pace, Pace) and isinstance(pace.law, TimeLaw)
    model = MemoryModel(
        Law(d["fixed_bytes"], d["per_image_bytes"]), Law(d["val_fixed_bytes"], d["val_per_image_bytes"])
    )

    def again(top: int) -> int:
        kw = {"policy": "speed", "pace": pace, "speed_gain": 0.0, "dataset_size": d["dataset_size"]}
        return decide(model, d["budget_bytes"], max_batch=top, **kw).batch

    pick = again(32)
    assert d["batch"] == (pick if pick <= refit["batch_before"] else again(refit["batch_before"]))


def test_a_plain_resume_carries_the_recipe_on(tiny_data, tmp_path):
    """Stopped inside the run, resumed plainly: the lr factor, BatchNorm momentum and warm-up floor go on."""
    import math

    import yaml

    from yolo_batch.train.batchnorm import scaled

    class Stop(Exception):
        pass

    def stop(trainer):
        if trainer.epoch == 1:
            raise Stop  # at the start of the second epoch: the first is saved, as by a kill

    model = AutoPlus(policy="speed", speed_gain=0.0, speed_min_steps=0).register(YOLO("yolo11n.yaml"))
    model.add_callback("on_train_epoch_start", stop)
    with pytest.raises(Stop):
        train_in_process(model, tiny_data, tmp_path, nbs=8, epochs=3, warmup_epochs=0.5, optimizer="AdamW", lr0=0.001)
    d = _record(tmp_path / "run")
    b = d["batch"]
    assert b > 8 and d["recipe"]["lr_scaling"] == "sqrt"
    resumed = YOLO(str(tmp_path / "run" / "weights" / "last.pt"))
    resumed.train(resume=True)
    t = resumed.trainer
    assert t.batch_size == b and t.args.lr0 == 0.001
    assert all(g["initial_lr"] == pytest.approx(0.001 * math.sqrt(b / 8)) for g in t.optimizer.param_groups)
    bns = [m for m in t.model.modules() if type(m).__name__ == "BatchNorm2d"]
    assert bns and all(m.momentum == pytest.approx(scaled(0.03, b)) for m in bns)
    nb = math.ceil(32 / b)
    assert t._get_warmup_iterations(nb) == min(100, 2 * nb)
    # args.yaml keeps the value asked for, not the checkpoint's pick Ultralytics rewrote it with (issue 21)
    args = tmp_path / "run" / "args.yaml"
    assert yaml.safe_load(args.read_text())["batch"] == "auto-plus:speed"
    r = run_yolo("train", f"cfg={args}", "resume=False", "epochs=1", cwd=tmp_path)  # its args.yaml names the resume
    assert r.returncode == 0, r.stderr[-3000:]
    (rerun,) = [p for p in tmp_path.iterdir() if p.is_dir() and p.name != "run" and (p / "args.yaml").exists()]
    again = _record(rerun)
    assert (again["value"], again["policy"]) == ("auto-plus:speed", "speed")
