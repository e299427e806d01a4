"""``benchmarks/time_to_map.py`` (v2) in its smoke form: both data shapes, two seeds, fit's plan, reuse of runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNS = ["fixed-16-s0", "fixed-16-s1", "fixed-32-s0", "ladder", "fit"]
SMOKE = [f"runs={','.join(RUNS)}", "n_train=32", "n_val=8", "imgsz=64", "epochs=2"]


def bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "time_to_map.py"), f"work={tmp_path / 'work'}", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


@pytest.mark.slow
def test_smoke_prints_both_shapes_writes_the_json_and_reuses_finished_runs(tmp_path):
    out = tmp_path / "ttm.json"
    r = bench(tmp_path, *SMOKE, f"out={out}")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    d = json.loads(out.read_text())
    assert list(d["shapes"]) == ["sparse", "dense"]
    for shape, s in d["shapes"].items():
        work = tmp_path / "work" / f"{shape}-32img-64px-2ep"
        by = {m["run"]: m for m in s["results"]}
        # fit's pick (at most the 32 images of the set) is a fixed batch: its stock seed-0 run stands for it
        plan = json.loads((work / "fit.plan.json").read_text())
        assert plan["policy"] == "fit" and plan["batch"] == 32 and not (work / "fit").exists()
        assert list(by) == ["fixed-16-s0", "fixed-16-s1", "fixed-32-s0", "ladder"]
        assert s["derived"]["fit_same_as"] == "fixed-32-s0"
        assert [by[n]["seed"] for n in by] == [0, 1, 0, 0] and by["fixed-16-s1"]["batch"] == 16
        ladder = json.loads((work / "ladder" / "batch_decision.json").read_text())
        assert ladder["policy"] == "ladder" and by["ladder"]["batch"] == ladder["batch"] <= 32
        for m in s["results"]:
            assert [e for e, *_ in m["curve"]] == [1, 2] and m["peak_gib"] > 0
            # images/s: the images trained (32 a epoch, the last batch partial at 16+16 or 32) over training seconds
            assert m["images_trained"] == 64 and m["images_per_s"] == pytest.approx(64 / m["train_s"])
        # the target is 0.9 x the best fixed batch's mAP50-95, mean over its seeds; its time is the mean over them
        f16_map = (by["fixed-16-s0"]["best_map"] + by["fixed-16-s1"]["best_map"]) / 2
        top = max(f16_map, by["fixed-32-s0"]["best_map"])
        assert s["derived"]["target"] == pytest.approx(0.9 * top)
        f16 = next(f for f in s["derived"]["fixed"] if f["run"] == "fixed-16")
        assert f16["seeds"] == [0, 1] and f16["times"] == [by["fixed-16-s0"]["time_to_target_s"],
                                                          by["fixed-16-s1"]["time_to_target_s"]]  # fmt: skip
        assert any(c.startswith("ladder <= 1.15x the best fixed batch") for c in s["derived"]["checks"])
        assert any(c.startswith("fit <= 1.05x ladder: ") for c in s["derived"]["checks"])
        assert all(c.endswith((", met", ", missed")) for c in s["derived"]["checks"])
    assert d["shapes"]["dense"]["data"] == "32 images 64x43, 3-20 objects"
    table = r.stdout[r.stdout.index("# time to mAP") :].splitlines()
    assert "(1 iteration an epoch at batch 128, the largest compared" in table[0] and table[1].startswith("## sparse: ")
    assert table[2].startswith("target mAP50-95 ") and table[3].split()[:3] == ["run", "seeds", "batch"]
    assert [line.split()[:2] for line in table[4:7]] == [["fixed-16", "0,1"], ["fixed-32", "0"], ["ladder", "0"]]
    assert table[7].startswith("fit ") and "this is fixed-32-s0, not trained again" in table[7]
    assert any(line.startswith("## dense: ") for line in table) and d["table"] == table[: len(d["table"])]
    assert (tmp_path / "ttm.png").read_bytes()[:4] == b"\x89PNG"
    # again, policies only: the finished fixed runs are read back, nothing trains, the same figures come back
    again = bench(tmp_path, "runs=ladder,fit", *SMOKE[1:], f"out={out}")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "time_to_map: sparse 1/4 fixed-16-s0 in 0s" in again.stdout
    assert json.loads(out.read_text())["shapes"]["dense"]["results"] == d["shapes"]["dense"]["results"]


def test_unknown_run_or_shape_is_one_line(tmp_path):
    r = bench(tmp_path, "runs=fixed,nope")
    assert r.returncode != 0 and not (tmp_path / "work").exists()
    assert r.stderr.strip().splitlines() == [
        "error: time_to_map: runs='fixed,nope' is invalid: unknown run(s) nope; valid: fixed, auto, all, "
        "fixed-16-s0, fixed-16-s1, fixed-32-s0, fixed-32-s1, fixed-64-s0, fixed-64-s1, fixed-128-s0, fixed-128-s1, "
        "ladder, speed, goodput, fit"
    ]
    r = bench(tmp_path, "shapes=round")
    assert r.stderr.strip().splitlines() == [
        "error: time_to_map: shapes='round' is invalid: unknown shape(s) round; valid: sparse, dense"
    ]


def _run(name: str, seed: int, curve: list, decision_s: float = 0.0, batch: int = 32) -> dict:
    maps = [v for *_, v in curve]
    return {"run": name, "seed": seed, "batch": batch, "batches": [batch], "decision_s": decision_s, "curve": curve,
            "best_map": max(maps), "final_map": maps[-1], "images_per_s": 100.0, "peak_gib": 1.0,
            "wall_s": curve[-1][1] + decision_s}  # fmt: skip


def test_table_means_seeds_picks_the_best_fixed_batch_and_checks_each_target():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import time_to_map as ttm
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    measured = [
        _run("fixed-16-s0", 0, [(1, 10, 0.1), (2, 20, 0.5), (3, 30, 0.8)], batch=16),
        _run("fixed-16-s1", 1, [(1, 12, 0.2), (2, 24, 0.75), (3, 36, 0.78)], batch=16),
        _run("fixed-32-s0", 0, [(1, 8, 0.1), (2, 16, 0.6), (3, 24, 0.74)]),
        _run("fixed-32-s1", 1, [(1, 8, 0.1), (2, 16, 0.7), (3, 24, 0.73)]),
        _run("ladder", 0, [(1, 9, 0.2), (2, 18, 0.5), (3, 27, 0.73)], decision_s=1.0),
        _run("speed", 0, [(1, 8, 0.2), (2, 15, 0.5), (3, 22, 0.75)], decision_s=2.0),
        _run("goodput", 0, [(1, 8, 0.2), (2, 15, 0.5), (3, 22, 0.7)], decision_s=2.0),
    ]
    lines, d = ttm.table(measured, 0.9, {"pick": 32, "same_as": "fixed-32-s0"})
    assert d["target"] == pytest.approx(0.9 * 0.79) and d["best_fixed"] == "fixed-32"  # 16: (0.8 + 0.78) / 2
    assert [(f["run"], f["seeds"], f["times"], f["time_to_target_s"]) for f in d["fixed"]] == [
        ("fixed-16", [0, 1], [30, 24], 27), ("fixed-32", [0, 1], [24, 24], 24)]  # fmt: skip
    assert d["seed_noise"] == pytest.approx(6 / 27)
    assert {k: v["time_to_target_s"] for k, v in d["policies"].items()} == {
        "ladder": 28, "speed": 24, "goodput": None, "fit": 24}  # fmt: skip
    assert d["checks"] == [
        "speed <= 1.05x the best fixed batch (fixed-32): 1.00x (24s vs 24s), met",
        "goodput <= 1.05x speed: goodput did not reach the target, speed did, missed",
        "ladder <= 1.15x the best fixed batch (fixed-32): 1.17x (28s vs 24s), missed",
        "speed <= 1.05x ladder: 0.86x (24s vs 28s), met",
        "goodput <= 1.05x ladder: goodput did not reach the target, ladder did, missed",
        "fit <= 1.05x ladder: 0.86x (24s vs 28s), met",
    ]
    assert lines[0].startswith("target mAP50-95 0.711 = 0.9 x 0.790 ") and lines[-7] == (
        "noise: the seeds of a fixed batch differ by up to 22% in time to the target"
    )
    assert lines[2].split()[:6] == ["fixed-16", "0,1", "16", "27", "(24-30)", "1.12"]
    assert lines[-8].startswith("fit ") and lines[-8].endswith("(picks 32: this is fixed-32-s0, not trained again)")
    # no fixed run learned anything: no times, every target missed
    flat = [{**m, "curve": [(e, t, 0.0) for e, t, _ in m["curve"]], "best_map": 0.0} for m in measured]
    lines, d = ttm.table(flat, 0.9, None)
    assert "no fixed run learned: no times" in lines[0] and d["best_fixed"] is None
    assert all(c.endswith("missed") for c in d["checks"])
