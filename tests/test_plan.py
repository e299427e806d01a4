"""The what-if arithmetic of ``yolo-batch plan``, on a measured law (pure: no trainer)."""

from __future__ import annotations

import pytest

from tests.memory_laws import MB, YOLOV8S_640
from yolo_batch.plan import what_if, what_if_table
from yolo_batch.policy import GIB


def record(**over):
    r = {
        "device": "cuda:0",
        "other_bytes": int(0.5 * GIB),  # the CUDA context on this device
        "utilization": 0.9,
        "fixed_bytes": YOLOV8S_640.fixed_bytes,
        "per_image_bytes": YOLOV8S_640.per_image_bytes,
        "val_fixed_bytes": None,
        "val_per_image_bytes": None,
        "dataset_size": 100_000,
        "settings": {"candidates": [16, 32, 64], "min_batch": 1, "max_batch": 512},
    }
    return {**r, **over}


def test_what_if_counts_the_fixed_part_once_and_keeps_the_context():
    rows = what_if(record())
    assert [r["total_gib"] for r in rows] == [8, 16, 24, 40, 80, 141]
    for r in rows:
        budget = 0.9 * (r["total_gib"] * GIB - 0.5 * GIB)
        assert r["budget_bytes"] == int(budget)
        fits = int((budget - 324 * MB) // (238 * MB))  # the largest batch whose predicted peak fits
        assert r["picks"]["fit"] == min(fits - fits % 8 if fits >= 8 else fits, 512)
        ladder = max((c for c in (16, 32, 64) if c <= fits), default=fits)
        assert r["picks"]["ladder"] == ladder


def test_what_if_applies_the_validation_law_and_the_caps():
    val = {"val_fixed_bytes": 324 * MB, "val_per_image_bytes": 200 * MB}  # validation at 2x binds first
    rows = {r["total_gib"]: r["picks"] for r in what_if(record(**val, dataset_size=300), (16, 141))}
    fits16 = int((0.9 * 15.5 * GIB - 324 * MB) // (400 * MB))
    assert rows[16]["fit"] == fits16 - fits16 % 8
    assert rows[141] == {"ladder": 64, "fit": 296}  # the training set of 300 caps fit (rounded to 8)


def test_what_if_sizes_follow_the_device_kind_and_the_table_says_extrapolated():
    cpu = record(device="cpu", other_bytes=0)
    rows = what_if(cpu)
    assert [r["total_gib"] for r in rows] == [8, 16, 32, 64, 128, 256]
    lines = what_if_table(cpu, rows)
    assert lines[0].startswith("what if: other cpu memory sizes, extrapolated from this device's law")
    assert len(lines) == 2 + len(rows)


def test_what_if_marks_sizes_where_nothing_fits():
    rows = what_if(record(fixed_bytes=10 * GIB), (8, 16))
    assert rows[0]["picks"] == {"ladder": 0, "fit": 0}
    assert what_if_table(record(fixed_bytes=10 * GIB), rows)[2].split()[-2:] == ["-", "-"]
    assert rows[1]["picks"]["fit"] > 0


@pytest.mark.parametrize("kind", ["mps", "xpu"])
def test_what_if_other_kinds(kind):
    assert len(what_if(record(device=f"{kind}:0" if kind == "xpu" else kind))) == 6
