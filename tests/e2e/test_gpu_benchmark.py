"""``benchmarks/gpu.py`` in its smoke form on the CPU: the same jobs, table and JSON as on a GPU, at tiny sizes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
SMOKE = [
    *("device=cpu", "n_train=24", "n_val=4", "imgsz=64", "epochs=1", "warm=1", "loader_seconds=1"),
    *("models=yolo11n", "focus=yolo11n", "workers=0", "fixed=16"),
]


def bench(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "gpu.json"
    r = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu.py"), *SMOKE, f"out={out}", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return r, json.loads(out.read_text())


def test_partial_batches_count_as_the_images_they_hold():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from gpu import images_in_epoch
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    assert images_in_epoch(2048, 224) == [224] * 9 + [32]  # the H100 stretch's partial batch: 32 images, not 224
    assert images_in_epoch(24, 16) == [16, 8] and images_in_epoch(32, 16) == [16, 16]


def test_smoke_runs_the_loader_a_fixed_batch_and_the_cached_repeat_and_prints_the_table(tmp_path):
    jobs = "loader,yolo11n-fixed-16,yolo11n-auto-plus-speed,yolo11n-auto-plus-speed-cached"
    r, d = bench(tmp_path, f"jobs={jobs}", "minutes=8")
    by = {x["job"]: x for x in d["results"]}
    assert list(by) == jobs.split(",")
    loader, fixed, speed, cached = by.values()
    assert loader["loader_images_per_s"] > 0 and loader["batch"] == 16 and loader["workers"] == 0
    # one epoch of 24 images at 16: a full batch and a partial one of 8, counted as 24 images (not 32)
    assert (fixed["trained_batch"], fixed["iters"], fixed["images"], fixed["images_counted"]) == (16, 2, 24, 8)
    assert fixed["images_per_s"] > 0 and fixed["peak_reserved"] > 0 and fixed["oom_events"] == 0
    assert speed["policy"] == "speed" and speed["cache"] == "miss" and speed["images"] == 24
    assert "probe_steps" in speed["phase_s"] and sum(speed["phase_s"].values()) == pytest.approx(
        speed["decision_s"], abs=0.01
    )
    # the repeat reads job 3's cache; on a CPU the peak is the process's RSS, a few percent noisy, so a check may
    # disagree and probe again (the hit itself is pinned on the simulated card: tests/e2e/test_law_cache.py)
    assert cached["cache"] in {"hit", "miss"} and cached["pick"] == speed["pick"]
    assert ("probe_steps" in cached["phase_s"]) == (cached["cache"] == "miss")
    assert speed["allocated_peaks"] is None  # CPU: no allocator peak beside the reserved one
    table = r.stdout[r.stdout.index("run ") :].splitlines()
    assert table[0].split()[:4] == ["run", "pick", "dec.", "s"]
    assert [line.split()[0] for line in table[1:5]] == jobs.split(",")
    assert table[1].startswith("loader") and "dataloader alone:" in table[1]
    assert f"cached pick {cached['pick']} == first pick {speed['pick']}" in r.stdout
    assert d["table"] == table[: len(d["table"])]


def test_time_guard_skips_what_does_not_fit_and_still_prints_the_table(tmp_path):
    r, d = bench(tmp_path, "minutes=0.01")
    assert d["results"] and all("skipped" in x for x in d["results"])
    assert "skipped loader:" in r.stdout and "(no derived figures: nothing measured)" in r.stdout


def test_unknown_job_is_one_line(tmp_path):
    r = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu.py"), *SMOKE, "jobs=nope"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert r.returncode == 1 and "gpu.py: error: unknown job(s) ['nope']" in r.stderr
