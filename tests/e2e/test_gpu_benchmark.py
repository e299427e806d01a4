"""``benchmarks/gpu.py`` in its smoke form on the CPU: the same jobs, table and JSON as on a GPU, at tiny sizes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
SMOKE = ["device=cpu", "n_train=24", "n_val=4", "imgsz=64", "iters=3", "models=yolo11n", "focus=yolo11n", "workers=0"]


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


def test_smoke_runs_every_kind_of_job_and_prints_the_table(tmp_path):
    jobs = "yolo11n-auto-plus-fit,yolo11n-autobatch-0.60,yolo11n-auto-plus-ladder,yolo11n-fixed-16"
    r, d = bench(tmp_path, "fixed=16", f"jobs={jobs}", "minutes=8")
    by = {x["job"]: x for x in d["results"]}
    assert list(by) == jobs.split(",")
    fit, stock, ladder, fixed = by.values()
    assert fit["pick"] == 24 and fit["policy"] == "fit" and fit["iters"] == 3 and fit["oom_events"] == 0
    assert fit["peak_reserved"] > 0 and fit["images_per_s"] > 0 and fit["hook"] in {"startup .pth", "explicit import"}
    assert stock["pick"] == 16 and stock["decision_s"] >= 0 and "iters" not in stock  # AutoBatch's CPU default
    assert ladder["pick"] == 16 and ladder["policy"] == "ladder"  # through plan's code: 32 and 64 are above 24 images
    assert fixed["trained_batch"] == 16 and fixed["iters"] == 3 and fixed["images_per_s"] > 0
    table = r.stdout[r.stdout.index("run ") :].splitlines()
    assert table[0].split()[:3] == ["run", "pick", "dec."]
    assert [line.split()[0] for line in table[1:5]] == jobs.split(",")
    # the verification note is there exactly when a verification step ran (CPU RSS noise may add a MISSED line)
    verified_note = "yolo11n-auto-plus-fit: prediction" in r.stdout.replace("MISSED yolo11n-auto-plus-fit", "")
    assert verified_note == bool(fit.get("verified_peak") and fit.get("predicted_peak"))
    assert verified_note == ("of the verification step's peak" in r.stdout)
    assert d["table"] == table[: len(d["table"])]


def test_time_guard_skips_what_does_not_fit_and_still_prints_the_table(tmp_path):
    r, d = bench(tmp_path, "minutes=0.01")
    assert d["results"] and all("skipped" in x for x in d["results"])
    assert "skipped yolo11n-auto-plus-fit:" in r.stdout and "(no derived figures: nothing measured)" in r.stdout


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
