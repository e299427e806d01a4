"""The GPU path, on a simulated GPU: real CPU training steps, the device's memory law and OOM ceiling simulated.

The law is a real one (YOLOv8s at 640 on a T4, see tests/memory_laws.py): 324 MB + 238 MB per image.
"""

from __future__ import annotations

import json

import pytest
from ultralytics import YOLO

from tests.conftest import needs_84, train_in_process
from tests.memory_laws import H100_GIB, MB, YOLO11S_640_H100, YOLOV8S_640
from tests.simulated import SimulatedGPU
from yolo_batch import AutoPlusError
from yolo_batch.core.policy import Law
from yolo_batch.record.effect import read_csv

pytestmark = pytest.mark.slow
VAL = Law(324 * MB, 60 * MB)  # inference without gradients: a quarter of the training step per image


@pytest.fixture
def gpu(monkeypatch):
    made = []

    def install(**kw):
        device = SimulatedGPU(train=YOLOV8S_640, val=VAL, **kw).install()
        made.append(device)
        monkeypatch.setattr("yolo_batch.device.memory.backend_for", lambda _device: device)
        return device

    yield install
    for d in made:
        d.remove()


def _run(data, tmp_path, batch="auto-plus", **kw):
    model = YOLO("yolo11n.yaml")
    train_in_process(model, data, tmp_path, batch=batch, **kw)
    return model, json.loads((tmp_path / "run" / "batch_decision.json").read_text())


@pytest.mark.parametrize(
    ("gib", "value", "expect"),
    [
        # budget 0.9 x 16 GiB = 15462 MB; 64 needs 324 + 64 x 238 = 15556 MB > budget; 32 needs 7940 MB
        pytest.param(16, "auto-plus", 32, id="16GiB-ladder-32"),
        # 0.9 x 8 GiB = 7730 MB: 32 needs 7940 > budget; 16 needs 4132
        pytest.param(8, "auto-plus", 16, id="8GiB-ladder-16"),
        # 0.9 x 4 GiB = 3865 MB: 16 needs 4132 > budget; auto-fit floor((3865 - 324) / 238) = 14
        pytest.param(4, "auto-plus", 14, id="4GiB-ladder-autofit-14"),
        # fit: 14, not rounded down to 8 below ladder's pick (ladder auto-fits 14)
        pytest.param(4, "auto-plus:fit", 14, id="4GiB-fit-14-not-below-ladder"),
        # 0.9 x 24 GiB = 23193 MB: 64 fits (15556); fit: min(96, 64 images) = 64
        pytest.param(24, "auto-plus:fit", 64, id="24GiB-fit-capped-by-dataset"),
    ],
)
def test_picks_on_simulated_devices(data64, tmp_path, gpu, gib, value, expect):
    device = gpu(total_gib=gib)
    model, d = _run(data64, tmp_path, value)
    assert d["batch"] == expect and model.trainer.batch_size == expect
    assert d["device"] == "cuda:0" and d["memory_source"] == "simulated device"
    assert d["fixed_bytes"] == pytest.approx(324 * MB, rel=1e-3)
    assert d["per_image_bytes"] == pytest.approx(238 * MB, rel=1e-3)
    assert d["verified_peak_bytes"] == pytest.approx(d["predicted_peak_bytes"], rel=1e-3)
    # the probe ran real steps at 2, 4, 8 and validated at 2x; training then ran at the pick
    assert {(2, True), (4, True), (8, True), (4, False), (8, False), (16, False)} <= set(device.seen)
    assert (expect, True) in device.seen


def test_verification_oom_steps_down_the_ladder(data64, tmp_path, gpu):
    # the law promises 64 fits; the device fails above 40 images: training at 64 fails, and at 32 the
    # validation forward at 2 x 32 = 64 fails, so verification settles on 16
    gpu(total_gib=24, ceiling=40)
    model, d = _run(data64, tmp_path)
    assert d["batch"] == 16 and model.trainer.batch_size == 16
    assert d["reason"].endswith(
        "verification at 64 ran out of memory, stepped down to 32; "
        "verification at 32 ran out of memory, stepped down to 16"
    )


def test_probe_oom_backs_off_to_smaller_probes(data64, tmp_path, gpu):
    # forwards above 3 images fail: the validation forward at 2 x 2 = 4 fails first, so the probe runs again
    # at 1 and 2, and verification (a training step and the 2x validation forward) steps down to batch 1
    device = gpu(total_gib=24, ceiling=3)
    model, d = _run(data64, tmp_path)
    assert d["probe_points"]["oom"][0] == 2
    assert {1, 2} <= {b for b, _ in d["probe_points"]["train"]}
    assert d["batch"] == 1 and model.trainer.batch_size == 1
    assert "verification at 2 ran out of memory, stepped down to 1" in d["reason"]
    assert (2, False) in device.seen  # validation at twice the pick ran


def test_nothing_fits_is_a_clear_error(data64, tmp_path, gpu):
    gpu(total_gib=24, ceiling=0)
    with pytest.raises(AutoPlusError, match=r"out of memory while probing batch 1 at imgsz=64; lower imgsz"):
        _run(data64, tmp_path)


def test_effect_log_reports_device_utilization(data64, tmp_path, gpu):
    gpu(total_gib=16)
    _run(data64, tmp_path, epochs=1)
    row = read_csv(tmp_path / "run" / "batch_effect.csv")[0]
    assert float(row["mem_utilization"]) == pytest.approx(int(row["peak_mem_bytes"]) / (16 * 2**30), rel=1e-3)


def _on(model, event, epoch_index, fn):
    model.add_callback(event, lambda t: fn() if getattr(t, "epoch", 0) == epoch_index else None)


@needs_84
def test_oom_in_a_later_epoch_steps_down_and_training_goes_on(data64, tmp_path, gpu):
    device = gpu(total_gib=24)  # picks 64
    model = YOLO("yolo11n.yaml")
    _on(model, "on_train_epoch_start", 1, lambda: setattr(device, "ceiling", 40))  # another process takes memory
    train_in_process(model, data64, tmp_path, batch="auto-plus", epochs=3)
    run = tmp_path / "run"
    assert [r["epoch"] for r in read_csv(run / "results.csv")] == ["1", "2", "3"]  # every epoch once
    rows = [r for r in read_csv(run / "batch_effect.csv") if r["epoch"] != "final"]
    assert [(r["batch"], r["oom_events"]) for r in rows] == [("64", "0"), ("32", "1"), ("32", "1")]
    assert model.trainer.batch_size == 32 and model.trainer.args.batch == 32
    import torch

    assert torch.load(run / "weights" / "last.pt", weights_only=False)["train_args"]["batch"] == 32


@pytest.fixture(scope="module")
def data_val32(tmp_path_factory):
    from yolo_batch.tools.datasets import make_dataset

    return make_dataset(tmp_path_factory.mktemp("v32"), n_train=32, n_val=32, imgsz=64, seed=3)


def test_oom_in_validation_halves_the_validation_batch(data_val32, tmp_path, gpu):
    device = gpu(total_gib=24)
    # picks 32 (the training set); validation would run at 64, which Ultralytics caps at the 32 images of the set
    model = YOLO("yolo11n.yaml")
    model.add_callback("on_train_start", lambda t: setattr(device, "val_ceiling", 20))
    train_in_process(model, data_val32, tmp_path, batch="auto-plus")
    assert model.trainer.batch_size == 32 and model.trainer.test_loader.batch_size == 16
    row = read_csv(tmp_path / "run" / "batch_effect.csv")[0]
    assert row["oom_events"] == "1"  # 32 -> 16
    assert float(row["metrics/mAP50-95(B)"]) >= 0


@needs_84
def test_out_of_retries_stops_with_a_resumable_checkpoint(data64, tmp_path, gpu, monkeypatch):
    monkeypatch.setenv("YOLO_BATCH_CONFIG", str(_write(tmp_path / "p.yaml", "oom_retries: 2\n")))
    device = gpu(total_gib=24)
    model = YOLO("yolo11n.yaml")
    _on(model, "on_train_epoch_start", 1, lambda: setattr(device, "ceiling", 0))
    with pytest.raises(
        AutoPlusError,
        match=r"out of memory at batch 16 in epoch 2 after 2 step-down\(s\) "
        r"\(oom_retries=2\); the last finished epoch is saved: yolo train resume",
    ):
        train_in_process(model, data64, tmp_path, batch="auto-plus", epochs=3)
    assert (tmp_path / "run" / "weights" / "last.pt").exists()
    assert [r["epoch"] for r in read_csv(tmp_path / "run" / "results.csv")] == ["1"]


def _write(path, text):
    path.write_text(text)
    return path


@needs_84
def test_ultralytics_own_halving_is_recorded_when_only_measuring(data64, tmp_path, gpu):
    """An integer batch with the plugin registered: Ultralytics halves on OOM in epoch 1; the effect log shows it."""
    from yolo_batch import AutoPlus

    gpu(total_gib=24, ceiling=10)
    model = AutoPlus().register(YOLO("yolo11n.yaml"))
    train_in_process(model, data64, tmp_path, batch=32)
    row = read_csv(tmp_path / "run" / "batch_effect.csv")[0]
    assert (row["batch"], row["oom_events"]) == ("8", "2")  # 32 -> 16 -> 8
    assert not (tmp_path / "run" / "batch_decision.json").exists()


def test_verify_auto_skips_an_expensive_proof_far_below_the_budget(data64, tmp_path, gpu, monkeypatch):
    from yolo_batch.decide import retime

    gpu(total_gib=80)  # 64 needs 15.6 GB of 77 GB usable: under half the budget
    monkeypatch.setattr(retime, "VERIFY_CHEAP_S", 0.0)  # every step counts as expensive
    _, d = _run(data64, tmp_path)
    assert d["batch"] == 64 and d["verified_peak_bytes"] is None
    assert "not verified: the predicted peak is under 50% of the budget and a step at 64 would take" in d["reason"]


@pytest.fixture(scope="module")
def data256(tmp_path_factory):
    from yolo_batch.tools.datasets import make_dataset

    return make_dataset(tmp_path_factory.mktemp("d256"), n_train=256, n_val=4, imgsz=32, seed=4)


def test_the_verified_step_refits_the_law_and_the_pick_grows(data256, tmp_path, monkeypatch):
    """The H100's real curve: the law from batches 2-8 over-predicts a step at 200 by 11 %; one refit corrects it."""
    device = SimulatedGPU(total_gib=H100_GIB, train=YOLO11S_640_H100, val=Law(0, 1 * MB)).install()
    monkeypatch.setattr("yolo_batch.device.memory.backend_for", lambda _device: device)
    try:
        model, d = _run(data256, tmp_path, "auto-plus:fit", imgsz=32)
    finally:
        device.remove()
    budget = 0.9 * H100_GIB * 2**30
    probe_slope = (3072327680 - 790626304) / 6  # the least-squares slope through 2, 4, 8 (evenly weighted here)
    assert d["probe_law"]["per_image_bytes"] == pytest.approx(probe_slope, rel=0.02)
    first = int((budget - d["probe_law"]["fixed_bytes"]) // d["probe_law"]["per_image_bytes"]) // 8 * 8
    assert first == 200  # what the probe's law alone picks, as on the real card
    # refitted through (8, 3.07 GB) and the measured (200, 67.66 GB): the largest that fits, rounded to 8
    slope = (67660414976 - 3072327680) / 192
    assert d["per_image_bytes"] == pytest.approx(slope, rel=1e-6)
    refit = int((budget - (3072327680 - 8 * slope)) // slope) // 8 * 8
    assert d["batch"] == refit == 224 and model.trainer.batch_size == 224
    assert (200, True) in device.seen and (224, True) in device.seen  # both picks were proven by a real step
    assert d["verified_peak_bytes"] == pytest.approx(75539415040, rel=1e-6)
    assert abs(d["predicted_peak_bytes"] / d["verified_peak_bytes"] - 1) < 0.005
    assert d["reason"].startswith("the probe's law put a step at 200 at 69.99 GiB, it measured 63.01 GiB (+11.1%)")


def test_a_refitted_pick_that_runs_out_of_memory_falls_back_to_the_proven_one(data256, tmp_path, monkeypatch):
    device = SimulatedGPU(total_gib=H100_GIB, train=YOLO11S_640_H100, val=Law(0, 1 * MB), oom_at={224}).install()
    monkeypatch.setattr("yolo_batch.device.memory.backend_for", lambda _device: device)
    try:
        model, d = _run(data256, tmp_path, "auto-plus:fit", imgsz=32)
    finally:
        device.remove()
    assert d["batch"] == 200 and model.trainer.batch_size == 200
    assert d["verified_peak_bytes"] == pytest.approx(67660414976, rel=1e-6)
    assert d["reason"].endswith("verification at 224 ran out of memory; back to the verified 200")


def test_plan_on_a_simulated_gpu_gives_the_what_if_rows_of_its_law(data64, tmp_path, gpu):
    """`yolo-batch plan`'s own code, in process, on a 16 GiB simulated card: the decision and the what-if rows."""
    from yolo_batch.tools.plan import plan, what_if

    device = gpu(total_gib=16)
    words = ["model=yolo11n.yaml", f"data={data64}", "imgsz=64", "amp=False", "workers=0", "batch=auto-plus:fit"]
    record, task = plan(words)
    # 0.9 x 16 GiB = 15462 MB: (15462 - 324) // 238 = 63, rounded down to 56; one verification step, no epoch
    assert task == "detect" and record["device"] == "cuda:0" and record["batch"] == 56
    # one verification step at the pick and nothing else above the probe sizes: fit takes no timing steps
    assert [n for n, training in device.seen if training and n > 8] == [56]
    rows = {r["total_gib"]: r["picks"] for r in what_if({**record, "dataset_size": 10_000})}
    for gib, picks in rows.items():
        budget = 0.9 * gib * 2**30  # the simulated card has no context outside the pool
        fits = min(int((budget - 324 * MB) // (238 * MB)), int((budget - VAL.fixed_bytes) // (2 * VAL.per_image_bytes)))
        fits = min(fits, 512)  # max_batch
        ladder = max((c for c in (16, 32, 64) if c <= fits), default=fits)
        assert picks["ladder"] == ladder
        assert picks["fit"] == max(fits - fits % 8 if fits >= 8 else fits, ladder)  # never below ladder
    assert rows[16]["ladder"] == 32 and rows[80]["ladder"] == 64
    assert not list(tmp_path.iterdir())  # nothing written
