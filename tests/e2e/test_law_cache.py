"""The law cache in real decisions (``yolo-batch plan``'s code, in process) on the simulated GPU of tests/simulated.py.

The simulated card reports peaks from its law, so a verified step agrees with the cached law exactly unless the
test changes the card; the probe's steps are seen by the card (``device.seen``), so a test knows whether it ran.
"""

from __future__ import annotations

import gc
import json

import pytest

from tests.memory_laws import MB, YOLOV8S_640
from tests.simulated import SimulatedGPU
from yolo_batch.core.policy import Law
from yolo_batch.decide import lawcache

pytestmark = pytest.mark.slow
VAL = Law(324 * MB, 60 * MB)
PROBED = {(2, True), (4, True), (8, True)}


@pytest.fixture
def gpu(monkeypatch):
    made = []

    def install(total_gib=16, train=YOLOV8S_640):
        for d in made:
            d.remove()
        device = SimulatedGPU(total_gib=total_gib, train=train, val=VAL).install()
        made.append(device)
        monkeypatch.setattr("yolo_batch.device.memory.backend_for", lambda _device: device)
        return device

    yield install
    for d in made:
        d.remove()


def decide(data, *words: str, model: str = "yolo11n.yaml") -> dict:
    """The auto-plus decision of ``yolo train`` (no epoch trained: `plan` stops at the decision)."""
    from yolo_batch.tools.plan import plan

    fast = ["imgsz=64", "amp=False", "workers=0", "seed=0", "epochs=1"]
    record, _ = plan([f"model={model}", f"data={data}", "batch=auto-plus", *fast, *words])
    return record


def test_a_repeat_run_checks_the_cached_law_with_one_step_and_picks_the_same(data64, gpu):
    gpu()
    first = decide(data64)
    assert first["cache"]["status"] == "miss" and first["cache"]["used"] is False
    assert first["cache"]["detail"] == "no entry for this set-up; saved this decision's laws"
    assert [p.name for p in lawcache.folder().iterdir()] == [f"{first['cache']['key']}.json"]
    device = gpu()
    second = decide(data64)
    assert second["cache"]["used"] is True and second["cache"]["status"] == "hit"
    assert second["batch"] == first["batch"] == 32
    assert second["verified_peak_bytes"] == first["verified_peak_bytes"]
    assert second["fixed_bytes"] == pytest.approx(first["fixed_bytes"], abs=2)
    assert second["per_image_bytes"] == pytest.approx(first["per_image_bytes"], abs=2)
    assert [x for x in device.seen if x[1]] == [(32, True)]  # one verified training step at the pick, no probe
    assert (64, False) in device.seen  # and its validation forward
    # the allocated peak beside the reserved one, for every probe and verified step (simulated: 0.9 x reserved)
    assert [a[:2] for a in second["allocated_peaks"]] == [[32, "train"], [64, "val"]]
    assert second["allocated_peaks"][0][2] == int(0.9 * YOLOV8S_640.at(32))
    assert [a[:2] for a in first["allocated_peaks"]][:4] == [[2, "train"], [2, "train"], [4, "val"], [4, "train"]]
    assert "probe_steps" not in second["phase_seconds"] and second["phase_seconds"]["verify"] > 0
    assert second["probe_seconds"] == 0.0 and "law from the cache" in second["reason"]
    assert sum(first["phase_seconds"].values()) == pytest.approx(first["decision_seconds"], abs=0.01)
    assert gc.get_freeze_count() == 0  # the probe thawed what it froze out of the garbage collector


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        pytest.param({"words": ["imgsz=96"]}, "no entry for this set-up", id="imgsz"),
        pytest.param({"words": ["optimizer=SGD"]}, "no entry for this set-up", id="optimizer"),
        pytest.param({"model": "yolov8n.yaml"}, "no entry for this set-up", id="model"),
        pytest.param({"total_gib": 24}, "no entry for this set-up", id="device-memory"),
        pytest.param({"versions": True}, "no entry for this set-up", id="versions"),
        pytest.param({"dense": True}, "the worst-case batch or the optimizer differs", id="densest-images"),
    ],
)
def test_every_key_change_runs_the_full_probe(data64, gpu, tmp_path, monkeypatch, change, detail):
    gpu()
    decide(data64)
    device = gpu(total_gib=change.get("total_gib", 16))
    if change.get("versions"):
        from yolo_batch.decide import decide as decide_module

        monkeypatch.setattr(decide_module, "_versions", lambda: {"yolo_batch": "x", "ultralytics": "y", "torch": "z"})
    data = data64
    if change.get("dense"):  # the same images, one label file with more boxes than any other
        import shutil

        data = tmp_path / "dense"
        shutil.copytree(data64.parent, data)
        (data / "data.yaml").write_text(
            (data64.parent / "data.yaml").read_text().replace(str(data64.parent), str(data))
        )
        label = sorted((data / "labels" / "train").glob("*.txt"))[0]
        label.write_text(
            "".join(f"0 {0.05 + 0.1 * (i % 9):.2f} {0.05 + 0.1 * (i // 9):.2f} 0.04 0.04\n" for i in range(40))
        )
        data = data / "data.yaml"
    record = decide(data, *change.get("words", []), model=change.get("model", "yolo11n.yaml"))
    assert record["cache"]["used"] is False and record["cache"]["detail"].startswith(detail)
    assert PROBED <= set(device.seen)


def test_a_verified_step_that_disagrees_runs_the_full_probe_and_saves_the_new_law(data64, gpu):
    gpu()
    first = decide(data64)
    device = gpu(train=Law(YOLOV8S_640.fixed_bytes, YOLOV8S_640.per_image_bytes * 1.1))  # 10 % more per image
    second = decide(data64)
    assert second["cache"]["used"] is False and second["cache"]["status"] == "miss"
    assert second["cache"]["detail"].startswith("the cached training law was -8.8% off")
    assert "off the verified step at 32 (tolerance 5%); saved this decision's laws" in second["cache"]["detail"]
    assert PROBED <= set(device.seen) and second["verified_peak_bytes"] is not None
    assert "law cache not used: the cached training law was" in second["reason"]
    saved = json.loads((lawcache.folder() / f"{first['cache']['key']}.json").read_text())
    assert saved["law"]["train"][1] == pytest.approx(YOLOV8S_640.per_image_bytes * 1.1, rel=1e-3)


def test_probe_cache_false_always_probes_and_saves_nothing(data64, gpu, tmp_path, monkeypatch):
    cfg = tmp_path / "p.yaml"
    cfg.write_text("probe:\n  cache: false\n")
    monkeypatch.setenv("YOLO_BATCH_CONFIG", str(cfg))
    for _ in range(2):
        device = gpu()
        record = decide(data64)
        assert record["cache"] == {"used": False, "status": "off", "key": None, "detail": "probe.cache is false"}
        assert PROBED <= set(device.seen)
    assert not lawcache.folder().exists() or not list(lawcache.folder().iterdir())


def test_a_cached_decision_trains_as_the_stock_run_at_its_pick(data64, gpu, tmp_path):
    import csv

    import torch
    from ultralytics import YOLO

    from tests.conftest import train_in_process

    def train(batch, folder):
        model = YOLO("yolo11n.yaml")
        train_in_process(model, data64, tmp_path / folder, batch=batch, deterministic=True, nbs=32)
        run = tmp_path / folder / "run"
        with open(run / "results.csv", newline="") as f:
            rows = [{k.strip(): v.strip() for k, v in r.items() if k.strip() != "time"} for r in csv.DictReader(f)]
        ckpt = torch.load(run / "weights" / "last.pt", map_location="cpu", weights_only=False)
        return run, rows, {k: v for k, v in ckpt["model"].state_dict().items()}

    gpu()
    train("auto-plus", "first")
    gpu()
    run, ours, weights = train("auto-plus", "cached")
    decision = json.loads((run / "batch_decision.json").read_text())
    assert decision["cache"]["used"] is True and decision["batch"] == 32
    _, theirs, stock = train(32, "stock")
    assert ours == theirs
    assert weights.keys() == stock.keys() and all(torch.equal(weights[k], stock[k]) for k in weights)


def test_a_cached_speed_pick_far_from_the_timed_sizes_is_timed_and_the_law_refitted(data64, gpu, tmp_path, monkeypatch):
    """``speed`` from the cache: the cached time law was fitted on steps up to 8; a later run allowed a larger batch
    (``max_batch`` is not part of the key) picks far above them, so that pick is timed and the law refitted through
    it before it is kept, as on the probe's path."""
    from yolo_batch.decide import loader

    monkeypatch.setattr(loader, "EXTEND_SECONDS", 0.0)  # the timed sizes stay the probe's 2-8
    config = tmp_path / "plugin.yaml"
    monkeypatch.setenv("YOLO_BATCH_CONFIG", str(config))
    config.write_text("policy: speed\nspeed_gain: 0.0\nspeed_min_steps: 0\nmax_batch: 16\n")
    gpu()
    first = decide(data64, "nbs=8")
    assert first["cache"]["status"] == "miss" and first["batch"] <= 16 and first["time_refit"] is None
    assert max(b for b, _ in first["speed"]["points"]["law"]) == 8
    config.write_text("policy: speed\nspeed_gain: 0.0\nspeed_min_steps: 0\nmax_batch: 48\n")
    device = gpu()
    second = decide(data64, "nbs=8")
    assert second["cache"]["status"] == "hit", second["cache"]
    refit = second["time_refit"]
    assert refit is not None and refit["largest_timed"] == 8 and refit["batch_before"] > 16, second["reason"]
    assert second["batch"] == refit["batch_after"] <= refit["batch_before"]
    assert [x for x in device.seen if x[1]] == [(refit["batch_before"], True)] * 2  # verified, then timed: no probe
    assert "time law refitted through it" in second["reason"] and "law from the cache" in second["reason"]
    assert second["speed"]["time_law"] == refit["after"]


def test_after_a_miss_that_saves_the_record_s_saved_is_the_new_entry_s(data64, gpu):
    gpu()
    first = decide(data64)
    path = lawcache.folder() / f"{first['cache']['key']}.json"
    old = {**json.loads(path.read_text()), "saved": "2000-01-01 00:00:00"}  # the old entry, older than any run
    path.write_text(json.dumps(old))
    gpu(train=Law(YOLOV8S_640.fixed_bytes, YOLOV8S_640.per_image_bytes * 1.1))  # the check step disagrees
    second = decide(data64)
    assert second["cache"]["status"] == "miss" and second["cache"]["detail"].endswith("saved this decision's laws")
    assert second["cache"]["saved"] == json.loads(path.read_text())["saved"] != "2000-01-01 00:00:00"


@pytest.fixture
def steps(monkeypatch):
    """The verified steps each decision runs (`Prober.verify` counted, still run), on the real CPU meter."""
    from yolo_batch.decide.probe import Prober

    seen: list[int] = []
    real = Prober.verify

    def counted(self, batch, val=True):
        seen.append(batch)
        return real(self, batch, val)

    monkeypatch.setattr(Prober, "verify", counted)
    return seen


@pytest.mark.parametrize(
    "skip",
    [
        pytest.param("verify-false", id="probe.verify-false"),
        pytest.param("expensive", id="auto-with-an-expensive-step"),
    ],
)
def test_a_cpu_hit_runs_no_step_where_the_fresh_decision_skipped_verification(
    data64, steps, tmp_path, monkeypatch, skip
):
    """Issue 21: a fresh CPU decision that skips verification (a step estimated above 1 s, or ``probe.verify:
    false``) was replaced by a hit that ran one verified step: it cost more than the decision, and its 5 % check on
    the RSS meter flipped hit and miss. A hit verifies exactly where the fresh decision would: here, nowhere."""
    from yolo_batch.decide import retime

    if skip == "expensive":
        monkeypatch.setattr(retime, "VERIFY_CHEAP_S", 0.0)  # every step counts as expensive (a larger CPU set-up)
    else:
        (tmp_path / "plugin.yaml").write_text("probe:\n  verify: false\n")
        monkeypatch.setenv("YOLO_BATCH_CONFIG", str(tmp_path / "plugin.yaml"))
    first = decide(data64)
    assert first["cache"]["status"] == "miss" and first["verified_peak_bytes"] is None and steps == []
    for _ in range(3):
        again = decide(data64)
        assert again["cache"]["status"] == "hit", again["cache"]
        assert again["cache"]["detail"].endswith("no step run: a fresh decision would not verify this pick")
        assert again["batch"] == first["batch"] and again["verified_peak_bytes"] is None
    assert steps == []  # not one verified step in three hits
    assert "law from the cache" in again["reason"] and "not verified" in again["reason"]


def test_a_cpu_repeat_that_holds_less_than_the_first_decision_still_hits(data64, steps, tmp_path, monkeypatch):
    """The RSS meter carries the process's history: the decision that saved the law verified its pick after the
    probe's steps (here: while the process held 256 MiB more), a repeat measures less. Below the law the pick is
    safe, so each repeat hits; a step above the law (the process now holds more) still misses."""
    import torch

    (tmp_path / "plugin.yaml").write_text("probe:\n  verify: true\n")  # every decision verifies, fresh or cached
    monkeypatch.setenv("YOLO_BATCH_CONFIG", str(tmp_path / "plugin.yaml"))
    ballast = torch.ones(256 * 2**20, dtype=torch.uint8)  # 256 MiB of touched pages, held through the first decision
    first = decide(data64)
    del ballast
    assert first["cache"]["status"] == "miss" and first["verified_peak_bytes"] is not None
    for _ in range(3):
        again = decide(data64)
        assert again["cache"]["status"] == "hit", again["cache"]
        assert again["verified_peak_bytes"] < 0.9 * first["verified_peak_bytes"]  # >10 % below: a miss before
    ballast = torch.ones(512 * 2**20, dtype=torch.uint8)  # above the law (which holds the first 256 MiB)
    more = decide(data64)
    del ballast
    assert more["cache"]["status"] == "miss", more["cache"]
    assert "below the verified step" in more["cache"]["detail"]
    assert len(steps) == 1 + 3 + 2  # the first decision's, one per hit, the miss's check and its probe's proof
