"""``benchmarks/time_to_map.py`` in its smoke form: three short runs, the table, the JSON, reuse of finished runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
SMOKE = ["runs=fixed-8,fixed-16,speed", "n_train=32", "n_val=8", "imgsz=64", "epochs=2"]


def bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "time_to_map.py"), f"work={tmp_path / 'work'}", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_smoke_prints_the_table_writes_the_json_and_reuses_finished_runs(tmp_path):
    out = tmp_path / "ttm.json"
    r = bench(tmp_path, *SMOKE, f"out={out}")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    d = json.loads(out.read_text())
    by = {m["run"]: m for m in d["results"]}
    assert list(by) == ["fixed-8", "fixed-16", "speed"]
    assert by["fixed-8"]["batch"] == 8 and by["fixed-16"]["batch"] == 16
    speed = json.loads((tmp_path / "work" / "32img-64px-2ep" / "speed" / "batch_decision.json").read_text())
    assert speed["policy"] == "speed" and by["speed"]["batch"] == speed["batch"] and by["speed"]["decision_s"] > 0
    for m in d["results"]:
        assert [e for e, *_ in m["curve"]] == [1, 2] and m["images_per_s"] > 0 and m["peak_gib"] > 0
        assert m["wall_s"] >= m["curve"][-1][1]
    # the target is 0.9 x the best fixed mAP50-95; each time is the first epoch reaching it, decision included
    top = max(by[n]["best_map"] for n in ("fixed-8", "fixed-16"))
    assert d["derived"]["target"] == pytest.approx(0.9 * top)
    for m in d["results"]:
        first = next(t for _, t, v in m["curve"] if v >= d["derived"]["target"])
        assert m["time_to_target_s"] == pytest.approx(first + m["decision_s"])
    table = r.stdout[r.stdout.index("# time to mAP") :].splitlines()
    assert table[1].startswith("target mAP50-95 ") and table[2].split()[:2] == ["run", "batch"]
    assert [line.split()[0] for line in table[3:6]] == ["fixed-8", "fixed-16", "speed"]
    assert any(line.startswith("speed within 1.05x of the best fixed batch: ") for line in table)
    assert d["table"] == table[: len(d["table"])]
    assert (tmp_path / "ttm.png").read_bytes()[:4] == b"\x89PNG"
    assert f"wrote {out} and {tmp_path / 'ttm.png'}" in r.stdout
    # again: every run is reused (nothing trains), the same figures come back
    again = bench(tmp_path, *SMOKE, f"out={out}")
    assert again.returncode == 0 and json.loads(out.read_text())["results"] == d["results"]


def test_unknown_run_is_one_line(tmp_path):
    r = bench(tmp_path, "runs=fixed-8,nope")
    assert r.returncode != 0 and not (tmp_path / "work").exists()
    assert r.stderr.strip().splitlines() == [
        "error: time_to_map: runs='fixed-8,nope' is invalid: unknown run(s) nope; valid: "
        "fixed-8, fixed-16, fixed-32, fixed-64, fixed-128, ladder, speed, goodput, fixed-64-bn-auto, "
        "fixed-128-bn-auto, speed-bn-auto, goodput-bn-auto"
    ]
