"""Tests for yolo_batch.core.policy on simulated 4-80 GiB devices, with memory laws fitted to real AutoBatch logs.

The laws and their sources are in tests/memory_laws.py. Expected picks are worked out by hand from the laws:
a batch ``b`` fits when ``fixed + per_image * b <= budget``, i.e. the largest batch that fits is
``floor((budget - fixed) / per_image)``, with ``budget = device GiB * utilization * 2**30`` bytes. The arithmetic is in
MB (1e6 bytes) below; 1 GiB = 1073.74 MB.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from tests.memory_laws import (
    DEVICES_GIB,
    GB,
    LAWS,
    MB,
    SERIES,
    VAL_HEAVY,
    YOLOV5M_416,
    YOLOV5M_416_GTX1080_ANOMALY_SERIES,
    YOLOV8L_SEG_640,
    YOLOV8N_480,
    YOLOV8S_640,
    budget,
)
from yolo_batch.core.policy import GIB, RULES, Law, MemoryModel, choose, decide, fit_law, next_lower
from yolo_batch.core.spec import POLICIES, BatchSpec
from yolo_batch.core.throughput import Pace, TimeLaw

YOLOV8S_SERIES = SERIES["yolov8s-640"]
ADVICE = "lower imgsz, use a smaller model, enable AMP, or free device memory"


def gib_text(n_bytes: float) -> str:
    """How a reason prints bytes, e.g. '14.49 GiB'."""
    return f"{n_bytes / GIB:.2f} GiB"


# --------------------------------------------------------------------------------------------------------------------
# fit_law on the real series


@pytest.mark.parametrize("name", list(SERIES), ids=list(SERIES))
def test_fit_law_reproduces_the_named_law(name):
    points = SERIES[name]
    law, used = fit_law(points)
    assert used == points  # every real series here grows with the batch: nothing is dropped
    # an independent least-squares line through the same points
    slope, intercept = np.polyfit([b for b, _ in points], [p for _, p in points], 1)
    assert law.per_image_bytes == pytest.approx(slope, rel=1e-9)
    assert law.fixed_bytes == pytest.approx(intercept, rel=1e-9)
    # the named constant is that line rounded to whole MB
    assert abs(law.fixed_bytes - LAWS[name].fixed_bytes) <= 0.5 * MB
    assert abs(law.per_image_bytes - LAWS[name].per_image_bytes) <= 0.5 * MB


def test_fit_law_drops_the_anomalous_tail():
    # yolov5#9287 (GTX 1080, 2.53 GiB already reserved): 2.816, 2.852, 2.842, 2.772, 2.741 GB at batch 1..16.
    # Only 1 -> 2 grows; 4, 8 and 16 are not above 2.852 and are dropped. The line through the two kept points:
    # per_image = (2852 - 2816) MB / (2 - 1) = 36 MB; fixed = 2816 - 36 = 2780 MB.
    law, used = fit_law(YOLOV5M_416_GTX1080_ANOMALY_SERIES)
    assert used == [(1, 2.816 * GB), (2, 2.852 * GB)]
    assert law.per_image_bytes == pytest.approx(36 * MB)
    assert law.fixed_bytes == pytest.approx(2780 * MB)


def test_fit_law_drops_points_below_any_smaller_batch_not_just_the_previous_one():
    # 250 at batch 8 is above 200 at batch 4, but not above 300 at batch 2: both 4 and 8 go.
    law, used = fit_law([(1, 100.0), (2, 300.0), (4, 200.0), (8, 250.0), (16, 400.0)])
    assert used == [(1, 100.0), (2, 300.0), (16, 400.0)]
    assert law.per_image_bytes > 0


def test_fit_law_drops_a_flat_point():
    # equal peaks are not growth: (4, 140) after (2, 140) is dropped; the line through (2, 140), (8, 200) is 120 + 10 b
    law, used = fit_law([(2, 140.0), (4, 140.0), (8, 200.0)])
    assert used == [(2, 140.0), (8, 200.0)]
    assert (law.fixed_bytes, law.per_image_bytes) == pytest.approx((120.0, 10.0))


def test_fit_law_keeps_the_first_of_a_repeated_batch():
    law, used = fit_law([(4, 140.0), (4, 150.0), (8, 180.0)])
    assert used == [(4, 140.0), (8, 180.0)]
    assert (law.fixed_bytes, law.per_image_bytes) == pytest.approx((100.0, 10.0))


def test_fit_law_sorts_its_input():
    shuffled = [YOLOV8S_SERIES[i] for i in (3, 0, 4, 2, 1)]
    assert fit_law(shuffled) == fit_law(YOLOV8S_SERIES)


@pytest.mark.parametrize(
    "points",
    [
        pytest.param([], id="no-points"),
        pytest.param([(8, 2.208 * GB)], id="one-point"),
        pytest.param([(8, 2.0 * GB), (8, 2.5 * GB)], id="one-batch-size-twice"),
        pytest.param([(4, 2.0 * GB), (8, 2.0 * GB)], id="flat"),
        pytest.param(YOLOV5M_416_GTX1080_ANOMALY_SERIES[1:], id="real-anomaly-shrinking-from-batch-2"),
    ],
)
def test_fit_law_needs_two_growing_points(points):
    with pytest.raises(ValueError, match="need two batch sizes whose peaks grow with the batch") as err:
        fit_law(points)
    assert str(points) in str(err.value)  # the message shows what was measured


# --------------------------------------------------------------------------------------------------------------------
# The pick on simulated devices


def case(policy, law_name, device, util, expected, note=""):
    return pytest.param(
        policy, LAWS[law_name], device, util, expected, id=f"{policy}-{law_name}-{device}GiB-{util}-{note or expected}"
    )


# Budgets in MB: 4 GiB x 0.9 = 3865, 8 x 0.9 = 7731, 16 x 0.9 = 15462, 24 x 0.9 = 23193, 40 x 0.9 = 38655,
# 80 x 0.9 = 77309, 8 x 0.6 = 5154, 24 x 0.6 = 15462, 4 x 0.6 = 2577, 4 x 0.7 = 3006.
PICKS = [
    # ---- ladder (16, 32, 64): the largest rung that fits, else auto-fit
    # yolov8s 324 + 238 b: 64 -> 324 + 15232 = 15556 <= 23193, fits.
    case("ladder", "yolov8s-640", 24, 0.9, 64),
    case("ladder", "yolov8s-640", 80, 0.9, 64, "never-above-top-rung"),
    # 64 -> 15556 > 15462 (misses by 94 MB); 32 -> 324 + 7616 = 7940 <= 15462.
    case("ladder", "yolov8s-640", 16, 0.9, 32),
    case("ladder", "yolov8s-640", 24, 0.6, 32, "same-budget-as-16GiB-0.9"),
    # 32 -> 7940 > 7731; 16 -> 324 + 3808 = 4132 <= 7731.
    case("ladder", "yolov8s-640", 8, 0.9, 16),
    # 16 -> 4132 > 3865: no rung fits; auto-fit floor((3865 - 324) / 238) = floor(14.88) = 14.
    case("ladder", "yolov8s-640", 4, 0.9, 14, "auto-fit"),
    # yolov8l-seg 580 + 1191 b, the big model: floor((3865 - 580) / 1191) = floor(2.76) = 2.
    case("ladder", "yolov8l-seg-640", 4, 0.9, 2, "auto-fit"),
    case("ladder", "yolov8l-seg-640", 8, 0.6, 3, "auto-fit"),  # floor((5154 - 580) / 1191) = floor(3.84)
    case("ladder", "yolov8l-seg-640", 16, 0.9, 12, "auto-fit"),  # floor((15462 - 580) / 1191) = floor(12.50)
    case("ladder", "yolov8l-seg-640", 24, 0.9, 16),  # 16 -> 580 + 19056 = 19636 <= 23193; 32 -> 38692 > 23193
    case("ladder", "yolov8l-seg-640", 40, 0.9, 16, "32-misses-by-37MB"),  # 32 -> 38692 > 38655
    case("ladder", "yolov8l-seg-640", 80, 0.9, 64),  # 64 -> 580 + 76224 = 76804 <= 77309
    # yolov5s 171 + 196 b
    case("ladder", "yolov5s-640", 4, 0.9, 16),  # 16 -> 3307 <= 3865; 32 -> 6443 > 3865
    case("ladder", "yolov5s-640", 8, 0.9, 32),  # 32 -> 6443 <= 7731; 64 -> 12715 > 7731
    case("ladder", "yolov5s-640", 16, 0.9, 64),  # 64 -> 12715 <= 15462
    # yolov8n at 480 px, 263 + 58 b: 64 -> 263 + 3712 = 3975 > 3865; 32 -> 2119 <= 3865.
    case("ladder", "yolov8n-480", 4, 0.9, 32),
    case("ladder", "yolov8n-480", 8, 0.6, 64),  # 64 -> 3975 <= 5154
    # yolov5m at 416 px, 227 + 134 b: 16 -> 2371 <= 2577; 32 -> 4515 > 2577.
    case("ladder", "yolov5m-416", 4, 0.6, 16),
    # ---- fit: the largest batch that fits, rounded down to a multiple of 8 when >= 8
    case("fit", "yolov8s-640", 4, 0.9, 14, "14-not-rounded-below-ladder"),  # floor(14.88) = 14: ladder auto-fits 14
    case("fit", "yolov8s-640", 8, 0.9, 24, "31-rounded-to-24"),  # floor((7731 - 324) / 238) = floor(31.12)
    case("fit", "yolov8s-640", 16, 0.9, 56, "63-rounded-to-56"),  # floor((15462 - 324) / 238) = floor(63.61)
    case("fit", "yolov8s-640", 24, 0.9, 96, "96-already-a-multiple"),  # floor((23193 - 324) / 238) = floor(96.09)
    case("fit", "yolov8s-640", 80, 0.9, 320, "323-rounded-to-320"),  # floor((77309 - 324) / 238) = floor(323.47)
    case("fit", "yolov8l-seg-640", 4, 0.9, 2, "2-not-rounded"),
    case("fit", "yolov8l-seg-640", 8, 0.6, 3, "3-not-rounded"),
    case("fit", "yolov8l-seg-640", 16, 0.9, 12, "12-not-rounded-below-ladder"),
    case("fit", "yolov8l-seg-640", 24, 0.9, 16, "18-rounded-to-16"),  # floor((23193 - 580) / 1191) = floor(18.99)
    case("fit", "yolov8l-seg-640", 40, 0.9, 24, "31-rounded-to-24"),  # floor((38655 - 580) / 1191) = floor(31.97)
    case("fit", "yolov8l-seg-640", 80, 0.9, 64, "64-already-a-multiple"),  # floor(64.42)
    case("fit", "yolov5s-640", 40, 0.9, 192, "196-rounded-to-192"),  # floor((38655 - 171) / 196) = floor(196.35)
    case("fit", "yolov5m-416", 4, 0.7, 16, "20-rounded-to-16"),  # floor((3006 - 227) / 134) = floor(20.74)
    case("fit", "yolov8n-480", 40, 0.9, 512, "661-capped-at-max-batch"),  # floor((38655 - 263) / 58) = 661
]


@pytest.mark.parametrize(("policy", "law", "device", "util", "expected"), PICKS)
def test_pick(policy, law, device, util, expected):
    model = MemoryModel(law)
    d = decide(model, budget(device, util), policy=policy)
    assert d.batch == expected
    assert d.policy == policy
    assert d.predicted_peak_bytes == pytest.approx(law.at(expected))
    assert d.predicted_peak_bytes <= budget(device, util)


def test_reason_when_64_does_not_fit_and_32_does():
    # yolov8s on 16 GiB at 0.9: 64 needs 15556 MB = 14.49 GiB > 14.40 GiB; 32 needs 7940 MB = 7.39 GiB.
    d = decide(MemoryModel(YOLOV8S_640), budget(16, 0.9))
    assert d.batch == 32
    assert d.reason == "64 needs 14.49 GiB > budget 14.40 GiB; 32 fits at 7.39 GiB"


def test_reason_when_the_top_rung_fits():
    # yolov8s on 24 GiB at 0.9: 64 needs 15556 MB = 14.49 GiB
    d = decide(MemoryModel(YOLOV8S_640), budget(24, 0.9))
    assert d.reason == "64 fits at 14.49 GiB"


def test_reason_of_ladder_auto_fit():
    # yolov8s on 4 GiB at 0.9 (3.60 GiB): 16 needs 4132 MB = 3.85 GiB; 14 needs 324 + 3332 = 3656 MB = 3.40 GiB.
    d = decide(MemoryModel(YOLOV8S_640), budget(4, 0.9))
    assert d.batch == 14
    assert d.reason == (
        "64 needs 14.49 GiB > budget 3.60 GiB; 32 needs 7.39 GiB > budget 3.60 GiB; "
        "16 needs 3.85 GiB > budget 3.60 GiB; no candidate fits, auto-fit 14 at 3.40 GiB"
    )


def test_reason_of_fit_rounding():
    # yolov8s on 16 GiB at 0.9: 63 fits, 64 would need 14.49 GiB; 56 needs 324 + 13328 = 13652 MB = 12.71 GiB.
    d = decide(MemoryModel(YOLOV8S_640), budget(16, 0.9), policy="fit")
    assert d.reason == "largest that fits is 63 (64 would need 14.49 GiB), rounded down to 56; 56 fits at 12.71 GiB"


def test_reason_of_fit_without_rounding():
    # yolov8l-seg on 4 GiB at 0.9: 2 fits (580 + 2382 = 2962 MB = 2.76 GiB); 3 would need 4153 MB = 3.87 GiB.
    d = decide(MemoryModel(YOLOV8L_SEG_640), budget(4, 0.9), policy="fit")
    assert d.reason == "largest that fits is 2 (3 would need 3.87 GiB); 2 fits at 2.76 GiB"
    assert "rounded" not in d.reason


def test_candidates_report_every_rung_largest_first():
    d = decide(MemoryModel(YOLOV8S_640), budget(16, 0.9))
    assert [(c.batch, c.fits) for c in d.candidates] == [(64, False), (32, True), (16, True)]
    assert [c.predicted_peak_bytes for c in d.candidates] == pytest.approx([15556 * MB, 7940 * MB, 4132 * MB])
    assert d.budget_bytes == budget(16, 0.9)


@pytest.mark.parametrize(
    ("candidates", "expected"),
    [
        pytest.param((8, 24, 48), 48, id="custom-rungs-48-fits"),  # 48 -> 324 + 11424 = 11748 <= 15462
        pytest.param((48, 8, 24, 48), 48, id="unsorted-duplicated-rungs"),
        pytest.param((96, 128), 63, id="no-rung-fits-auto-fit"),  # floor(63.61)
    ],
)
def test_ladder_with_custom_candidates(candidates, expected):
    d = decide(MemoryModel(YOLOV8S_640), budget(16, 0.9), candidates=candidates)
    assert d.batch == expected


# --------------------------------------------------------------------------------------------------------------------
# Caps: the training-set size and max_batch


@pytest.mark.parametrize(
    ("policy", "dataset_size", "expected", "reason"),
    [
        # on 80 GiB yolov8s fits 323; with 20 images 64 and 32 are above the cap and 16 is the largest rung under it
        pytest.param(
            "ladder",
            20,
            16,
            "64, 32 above the cap (capped by the training set of 20 images); 16 fits at 3.85 GiB",
            id="ladder-20-images-takes-rung-16",
        ),
        # with 12 images every rung is above the cap: auto-fit the whole set, 12 -> 324 + 2856 = 3180 MB = 2.96 GiB
        pytest.param(
            "ladder",
            12,
            12,
            "every candidate is above the cap (capped by the training set of 12 images); "
            "the cap decides: 12 fits at 2.96 GiB",
            id="ladder-12-images-auto-fits-12",
        ),
        pytest.param(
            "fit",
            20,
            16,
            "largest that fits is 20 (capped by the training set of 20 images), rounded down to 16; "
            "16 fits at 3.85 GiB",
            id="fit-20-images-rounds-to-16",
        ),
        pytest.param("fit", 5, 5, None, id="fit-5-images-takes-5"),
        pytest.param("ladder", 1, 1, None, id="ladder-1-image"),
        pytest.param("fit", 1000, 320, None, id="fit-set-larger-than-memory"),  # memory binds: 323 -> 320
        pytest.param("ladder", 1000, 64, None, id="ladder-set-larger-than-rungs"),
    ],
)
def test_cap_at_dataset_size(policy, dataset_size, expected, reason):
    d = decide(MemoryModel(YOLOV8S_640), budget(80, 0.9), policy=policy, dataset_size=dataset_size)
    assert d.batch == expected
    assert d.batch <= dataset_size
    if reason:
        assert d.reason == reason


@pytest.mark.parametrize(
    ("policy", "reason"),
    [
        pytest.param(
            "ladder",
            "every candidate is above the cap (capped by the training set of 8 images after fraction=0.25); "
            "the cap decides: 8 fits at 2.07 GiB",
            id="ladder",
        ),
        pytest.param(
            "fit",
            "largest that fits is 8 (capped by the training set of 8 images after fraction=0.25); 8 fits at 2.07 GiB",
            id="fit",
        ),
    ],
)
def test_fraction_names_the_training_set_as_the_limit(policy, reason):
    # 32 images at fraction=0.25 leave 8; on 80 GiB memory would allow 323: 8 -> 324 + 1904 = 2228 MB = 2.07 GiB
    d = decide(MemoryModel(YOLOV8S_640), budget(80, 0.9), policy=policy, dataset_size=8, fraction=0.25)
    assert d.batch == 8
    assert d.reason == reason
    assert "no candidate fits" not in d.reason


def test_ladder_memory_decides_under_the_cap():
    # every rung is above 15 images; on 4 GiB at 0.9 memory allows 14 (15 needs 324 + 3570 = 3894 MB = 3.63 GiB)
    d = decide(MemoryModel(YOLOV8S_640), budget(4, 0.9), dataset_size=15)
    assert d.batch == 14
    assert d.reason == (
        "every candidate is above the cap (capped by the training set of 15 images); "
        "auto-fit 14 at 3.40 GiB (15 would need 3.63 GiB)"
    )


def test_ladder_max_batch_below_every_rung_decides():
    d = decide(MemoryModel(YOLOV8S_640), budget(80, 0.9), max_batch=8)
    assert d.batch == 8
    assert d.reason == "every candidate is above the cap (capped by max_batch 8); the cap decides: 8 fits at 2.07 GiB"


@pytest.mark.slow
def test_real_run_at_a_fraction_says_the_training_set_decided(tiny_data, tmp_path):
    """``yolo train ... batch=auto-plus fraction=0.25`` on 32 images: 8 are loaded, and the reason says so."""
    import json

    from tests.conftest import yolo_train

    r = yolo_train(tiny_data, tmp_path, "auto-plus", "fraction=0.25")
    assert r.returncode == 0, r.stderr[-3000:]
    decision = json.loads((tmp_path / "run" / "batch_decision.json").read_text())
    assert decision["batch"] == 8 and decision["dataset_size"] == 8
    assert "training set of 8 images after fraction=0.25" in decision["reason"]
    assert "the cap decides: 8 fits" in decision["reason"] and "no candidate fits" not in decision["reason"]


def test_ladder_cap_at_max_batch():
    d = decide(MemoryModel(YOLOV8S_640), budget(80, 0.9), max_batch=32)
    assert d.batch == 32
    assert d.reason == "64 above the cap (capped by max_batch 32); 32 fits at 7.39 GiB"


@pytest.mark.parametrize(
    ("max_batch", "expected"),
    [
        pytest.param(512, 320, id="default-max-not-binding"),  # memory: 323 -> 320
        pytest.param(100, 96, id="max-100-rounded-to-96"),
        pytest.param(64, 64, id="max-64"),
        pytest.param(12, 12, id="max-12-not-rounded-below-ladder"),  # no rung under the cap: ladder takes 12
        pytest.param(6, 6, id="max-6-below-8-not-rounded"),
    ],
)
def test_fit_cap_at_max_batch(max_batch, expected):
    d = decide(MemoryModel(YOLOV8S_640), budget(80, 0.9), policy="fit", max_batch=max_batch)
    assert d.batch == expected


def test_fit_reason_names_max_batch_cap():
    # yolov8n at 480 px on 80 GiB fits 1328; capped at 512: 263 + 29696 = 29959 MB = 27.90 GiB
    d = decide(MemoryModel(YOLOV8N_480), budget(80, 0.9), policy="fit")
    assert d.batch == 512
    assert d.reason == "largest that fits is 512 (capped by max_batch 512); 512 fits at 27.90 GiB"


def test_dataset_larger_than_max_batch_reports_max_batch():
    d = decide(MemoryModel(YOLOV8N_480), budget(80, 0.9), policy="fit", max_batch=256, dataset_size=10_000)
    assert d.batch == 256
    assert "capped by max_batch 256" in d.reason and "training set" not in d.reason


# --------------------------------------------------------------------------------------------------------------------
# min_batch


@pytest.mark.parametrize("policy", ["ladder", "fit"])
def test_min_batch_not_fitting_gives_zero_and_advice(policy):
    # yolov8l-seg on 4 GiB at 0.9: only 2 fits; batch 4 needs 580 + 4764 = 5344 MB = 4.98 GiB > 3.60 GiB.
    d = decide(MemoryModel(YOLOV8L_SEG_640), budget(4, 0.9), policy=policy, min_batch=4)
    assert d.batch == 0
    assert d.predicted_peak_bytes == pytest.approx(5344 * MB)
    assert d.reason == f"batch 4 needs 4.98 GiB > budget 3.60 GiB; {ADVICE}"


@pytest.mark.parametrize("policy", ["ladder", "fit"])
def test_not_even_one_image_fits(policy):
    # fixed memory alone (580 MB) is above a 0.5 GB budget
    d = decide(MemoryModel(YOLOV8L_SEG_640), 0.5 * GB, policy=policy)
    assert d.batch == 0
    assert d.reason.startswith("batch 1 needs 1.65 GiB > budget 0.47 GiB")  # 580 + 1191 = 1771 MB
    assert ADVICE in d.reason


@pytest.mark.parametrize(
    ("policy", "min_batch", "expected"),
    [
        pytest.param("ladder", 8, 12, id="ladder-auto-fit-above-min"),  # 12 fits on 16 GiB
        pytest.param("ladder", 12, 12, id="ladder-auto-fit-equal-min"),
        pytest.param("fit", 8, 12, id="fit-not-rounded-below-ladder"),
        pytest.param("ladder", 13, 0, id="ladder-min-13-does-not-fit"),  # 13 -> 580 + 15483 = 16063 > 15462
    ],
)
def test_min_batch_that_fits(policy, min_batch, expected):
    d = decide(MemoryModel(YOLOV8L_SEG_640), budget(16, 0.9), policy=policy, min_batch=min_batch)
    assert d.batch == expected


def test_ladder_skips_rungs_below_min_batch():
    # yolov8s on 8 GiB: 32 does not fit, 16 fits but is below min_batch 20: auto-fit floor(31.12) = 31
    d = decide(MemoryModel(YOLOV8S_640), budget(8, 0.9), min_batch=20)
    assert d.batch == 31


def test_ladder_reason_does_not_claim_a_fitting_rung_is_too_big():
    d = decide(MemoryModel(YOLOV8S_640), budget(8, 0.9), min_batch=20)
    assert "16 needs 3.85 GiB > budget 7.20 GiB" not in d.reason
    assert "16 is below min_batch 20" in d.reason


def test_fit_does_not_round_below_min_batch():
    # yolov8l-seg on 16 GiB at 0.9: 10, 11 and 12 all fit (12 -> 580 + 14292 = 14872 MB <= 15462)
    d = decide(MemoryModel(YOLOV8L_SEG_640), budget(16, 0.9), policy="fit", min_batch=10)
    assert 10 <= d.batch <= 12


# --------------------------------------------------------------------------------------------------------------------
# Validation at twice the batch


def test_validation_at_2x_is_the_binding_constraint_for_ladder():
    # 24 GiB at 0.7 = 18039 MB. Training alone: 64 -> 15556 MB fits.
    # Validating 128 images: 324 + 150 * 128 = 19524 MB = 18.18 GiB > 16.80 GiB, so 64 does not fit;
    # 32: max(7940, 324 + 150 * 64 = 9924) = 9924 MB = 9.24 GiB fits.
    train_only = decide(MemoryModel(YOLOV8S_640), budget(24, 0.7))
    with_val = decide(MemoryModel(YOLOV8S_640, VAL_HEAVY), budget(24, 0.7))
    assert train_only.batch == 64
    assert with_val.batch == 32
    assert with_val.reason == "64 needs 18.18 GiB > budget 16.80 GiB; 32 fits at 9.24 GiB"
    assert with_val.predicted_peak_bytes == pytest.approx(9924 * MB)


def test_validation_at_2x_is_the_binding_constraint_for_fit():
    # training alone: floor((18039 - 324) / 238) = floor(74.43) = 74 -> 72
    # validation:     floor((18039 - 324) / (2 * 150)) = floor(59.05) = 59 -> 56
    assert decide(MemoryModel(YOLOV8S_640), budget(24, 0.7), policy="fit").batch == 72
    assert decide(MemoryModel(YOLOV8S_640, VAL_HEAVY), budget(24, 0.7), policy="fit").batch == 56


def test_validation_factor_is_used():
    # with the validation batch equal to the training batch (factor 1), validation costs 150 < 238 MB per image
    model = MemoryModel(YOLOV8S_640, VAL_HEAVY, val_factor=1)
    assert decide(model, budget(24, 0.7), policy="fit").batch == 72


def test_light_validation_does_not_bind():
    light = Law(fixed_bytes=324 * MB, per_image_bytes=100 * MB)  # 200 MB per training image < 238
    for device, policy in itertools.product(DEVICES_GIB, ("ladder", "fit")):
        with_val = decide(MemoryModel(YOLOV8S_640, light), budget(device, 0.9), policy=policy)
        train_only = decide(MemoryModel(YOLOV8S_640), budget(device, 0.9), policy=policy)
        assert with_val.batch == train_only.batch


def test_memory_model_peak_takes_the_larger_step():
    model = MemoryModel(YOLOV8S_640, VAL_HEAVY)
    assert model.peak(10) == pytest.approx(max(324 + 2380, 324 + 3000) * MB)  # validation at 20 images
    assert MemoryModel(YOLOV8S_640).peak(10) == pytest.approx(2704 * MB)


# --------------------------------------------------------------------------------------------------------------------
# Properties over every device, law, utilization and policy

GRID = list(itertools.product(DEVICES_GIB, LAWS, (0.6, 0.75, 0.9), ("ladder", "fit")))


@pytest.mark.parametrize(
    ("device", "law_name", "util", "policy"), GRID, ids=[f"{p}-{n}-{d}GiB-{u}" for d, n, u, p in GRID]
)
def test_pick_fits_and_is_largest_allowed(device, law_name, util, policy):
    law, bud = LAWS[law_name], budget(device, util)
    d = decide(MemoryModel(law), bud, policy=policy)
    assert d.batch >= 1  # every real law fits at least one image on 4 GiB
    assert law.at(d.batch) <= bud
    largest = min(math.floor((bud - law.fixed_bytes) / law.per_image_bytes), 512)
    rungs = [c for c in (64, 32, 16) if c <= largest]
    ladder = rungs[0] if rungs else largest
    if policy == "fit":  # a multiple of 8, but never below ladder's pick
        assert d.batch == max(largest - largest % 8 if largest >= 8 else largest, ladder)
    else:
        assert d.batch == ladder


@pytest.mark.parametrize("policy", ["ladder", "fit"])
@pytest.mark.parametrize("law_name", list(LAWS))
def test_pick_grows_with_the_device(law_name, policy):
    picks = [decide(MemoryModel(LAWS[law_name]), budget(g, 0.9), policy=policy).batch for g in DEVICES_GIB]
    assert picks == sorted(picks)


@pytest.mark.parametrize("policy", ["ladder", "fit"])
@pytest.mark.parametrize("law_name", list(LAWS))
def test_pick_grows_with_utilization(law_name, policy):
    picks = [decide(MemoryModel(LAWS[law_name]), budget(16, u), policy=policy).batch for u in (0.5, 0.6, 0.7, 0.8, 0.9)]
    assert picks == sorted(picks)


# --------------------------------------------------------------------------------------------------------------------
# Law and MemoryModel edges


def test_max_batch_at_an_exact_float_edge():
    # yolov8l-seg on 80 GiB at 0.7: budget 60129.54 MB; 50 needs 580 + 59550 = 60130 MB, just over: 49
    assert MemoryModel(YOLOV8L_SEG_640).max_batch(budget(80, 0.7)) == 49


def test_max_batch_when_the_budget_is_exactly_met():
    law = Law(fixed_bytes=100.0, per_image_bytes=10.0)
    assert MemoryModel(law).max_batch(200.0) == 10  # 100 + 10 * 10 == 200 fits


def test_max_batch_never_returns_a_batch_that_is_over_budget():
    # (200 - 5e-9 - 100) / 10 = 9.9999999995: within the 1e-9 rounding slack of 10, but 10 needs 200 > budget
    law = Law(fixed_bytes=100.0, per_image_bytes=10.0)
    assert MemoryModel(law).max_batch(200.0 - 5e-9) == 9


@pytest.mark.parametrize(
    ("law", "budget_bytes", "expected"),
    [
        pytest.param(Law(1 * GB, 0.0), 2 * GB, 2**31 - 1, id="flat-law-fits-any-batch"),
        pytest.param(Law(3 * GB, 0.0), 2 * GB, 0, id="flat-law-above-budget"),
        pytest.param(Law(3 * GB, 0.1 * GB), 2 * GB, 0, id="fixed-above-budget"),
    ],
)
def test_max_batch_edges(law, budget_bytes, expected):
    assert MemoryModel(law).max_batch(budget_bytes) == expected


def test_the_policy_names_come_from_the_table_of_rules():
    """One rule per policy in `policy.RULES`; `spec.POLICIES` (what the value, the YAML and the CLI accept) reads it."""
    assert POLICIES == tuple(RULES) == ("ladder", "fit", "speed", "goodput")
    pace = Pace(TimeLaw(0.1, 0.01))
    for name, rule in RULES.items():
        d = decide(MemoryModel(YOLOV8S_640), budget(16, 0.9), policy=name, pace=pace)
        assert (d.policy, d.batch > 0, rule.__name__) == (name, True, "_speed" if name == "goodput" else f"_{name}")


def test_choose_is_the_everyday_decision_and_shares_the_training_set_and_max_batch_over_gpus():
    model, spec = MemoryModel(YOLOV8S_640), BatchSpec(policy="fit")
    d = choose(model, budget(16, 0.9), spec)  # one device: decide() with the run's settings, nothing else
    expected = decide(model, budget(16, 0.9), policy="fit", candidates=spec.candidates, max_batch=spec.max_batch)
    assert (d, d.batch) == (expected, 56)
    d = choose(model, budget(16, 0.9), spec, world=2, dataset_size=40)
    assert d.batch == 16 and d.reason.startswith("per GPU of 2: ")  # 40 images / 2 GPUs = 20, rounded down to 16
    assert choose(model, budget(16, 0.9), BatchSpec(max_batch=64), world=4).batch == 16  # 64 / 4
    assert choose(model, budget(16, 0.9), BatchSpec(), world=2, dataset_size=1).batch == 1  # never 0
    assert choose(model, 0.1 * GIB, BatchSpec(), world=2).batch == 0  # nothing fits: this rank says 0


def test_unknown_policy():
    with pytest.raises(ValueError, match="policy must be 'ladder', 'fit', 'speed' or 'goodput', got 'greedy'"):
        decide(MemoryModel(YOLOV5M_416), budget(16, 0.9), policy="greedy")


@pytest.mark.parametrize(
    ("name", "autobatch_budget_gb", "autobatch_pick"),
    [
        # yolov5#5092: 39.4G free x 0.9 (the fraction then), printed "Using batch-size 179"
        pytest.param("yolov5s-640", 0.9 * 39.4, 179, id="yolov5s-A100-40GB-179"),
        # ultralytics#1451: 23.71G free x 0.7, printed "Using batch-size 281 ... (70%)"
        pytest.param("yolov8n-480", 0.7 * 23.71, 281, id="yolov8n-RTX4090-281"),
    ],
)
def test_fitted_law_reproduces_the_autobatch_pick_printed_in_the_issue(name, autobatch_budget_gb, autobatch_pick):
    # AutoBatch solved (free GiB * fraction - intercept) / slope with intercept and slope in the GB of its table,
    # i.e. it treated its GiB budget as GB; with the same budget number our law and max_batch give its answer:
    # yolov5s: (35.46 - 0.1713) / 0.1965 = 179.6 -> 179; yolov8n: (16.597 - 0.2632) / 0.05806 = 281.3 -> 281.
    law, _ = fit_law(SERIES[name])
    assert MemoryModel(law).max_batch(autobatch_budget_gb * GB) == autobatch_pick


# --------------------------------------------------------------------------------------------------------------------
# next_lower: where to go after running out of memory


@pytest.mark.parametrize(
    ("batch", "policy", "candidates", "min_batch", "expected"),
    [
        pytest.param(64, "ladder", (16, 32, 64), 1, 32, id="ladder-64-to-rung-32"),
        pytest.param(32, "ladder", (16, 32, 64), 1, 16, id="ladder-32-to-rung-16"),
        pytest.param(16, "ladder", (16, 32, 64), 1, 8, id="ladder-16-halves-to-8"),
        pytest.param(48, "ladder", (16, 32, 64), 1, 32, id="ladder-off-rung-48-to-32"),
        pytest.param(14, "ladder", (16, 32, 64), 1, 7, id="ladder-auto-fit-14-halves"),
        pytest.param(1, "ladder", (16, 32, 64), 1, 0, id="ladder-1-nothing-left"),
        pytest.param(64, "ladder", (16, 32, 64), 32, 32, id="ladder-to-rung-equal-min"),
        pytest.param(32, "ladder", (16, 32, 64), 32, 0, id="ladder-below-min-gives-0"),
        pytest.param(64, "ladder", (16, 32, 64), 20, 32, id="ladder-min-20-to-32"),
        pytest.param(128, "ladder", (64, 16, 32), 1, 64, id="ladder-unsorted-rungs"),
        pytest.param(64, "ladder", (8, 64), 24, 32, id="ladder-rung-below-min-skipped-halves"),
        pytest.param(64, "fit", (16, 32, 64), 1, 48, id="fit-64-to-48"),
        pytest.param(56, "fit", (16, 32, 64), 1, 40, id="fit-56-to-42-rounded-40"),
        pytest.param(40, "fit", (16, 32, 64), 1, 24, id="fit-40-to-30-rounded-24"),
        pytest.param(320, "fit", (16, 32, 64), 1, 240, id="fit-320-to-240"),
        pytest.param(11, "fit", (16, 32, 64), 1, 8, id="fit-11-to-8"),
        pytest.param(8, "fit", (16, 32, 64), 1, 6, id="fit-8-to-6-not-rounded"),
        pytest.param(10, "fit", (16, 32, 64), 1, 7, id="fit-10-to-7"),
        pytest.param(2, "fit", (16, 32, 64), 1, 1, id="fit-2-to-1"),
        pytest.param(1, "fit", (16, 32, 64), 1, 0, id="fit-1-nothing-left"),
        pytest.param(10, "fit", (16, 32, 64), 8, 0, id="fit-below-min-gives-0"),
    ],
)
def test_next_lower(batch, policy, candidates, min_batch, expected):
    assert next_lower(batch, policy=policy, candidates=candidates, min_batch=min_batch) == expected


@pytest.mark.parametrize("policy", ["ladder", "fit"])
@pytest.mark.parametrize("start", [512, 320, 64, 37, 16, 3])
def test_next_lower_always_steps_down_and_ends(policy, start):
    seen, b = [], start
    while b:
        nxt = next_lower(b, policy=policy, candidates=(16, 32, 64))
        assert nxt < b
        seen.append(nxt)
        b = nxt
    assert seen[-1] == 0 and len(seen) <= 40


@pytest.mark.parametrize("law_name", list(LAWS))
@pytest.mark.parametrize("gib_", [2, 4, 6, 8, 12, 16, 24, 40, 80])
@pytest.mark.parametrize("candidates", [(16, 32, 64), (10, 20), (24,)], ids=["16-32-64", "10-20", "24"])
def test_fit_is_never_below_ladder(law_name, gib_, candidates):
    """fit is "the largest that fits": its rounding to a multiple of 8 never takes it below ladder's pick."""
    model, bud = MemoryModel(LAWS[law_name]), budget(gib_, 0.9)
    ladder = decide(model, bud, policy="ladder", candidates=candidates)
    fit = decide(model, bud, policy="fit", candidates=candidates)
    assert fit.batch >= ladder.batch
    if fit.batch > ladder.batch == 0:
        pytest.fail("fit picked where ladder found nothing")


def test_fit_reason_says_it_kept_ladders_pick():
    # yolov8s on 4 GiB at 0.9: 14 fits, no rung does; ladder auto-fits 14, so fit keeps 14 instead of rounding to 8
    d = decide(MemoryModel(YOLOV8S_640), budget(4, 0.9), policy="fit")
    assert d.batch == 14
    assert "(not rounded below ladder's 14)" in d.reason


@pytest.mark.parametrize("policy", ["ladder", "fit", "speed"])
def test_min_batch_above_the_training_set_names_the_training_set(policy):
    """Not memory: the training set holds fewer images than min_batch."""
    from yolo_batch.core.throughput import Pace, TimeLaw

    pace = Pace(TimeLaw(0.1, 0.01)) if policy == "speed" else None
    d = decide(MemoryModel(YOLOV8N_480), budget(24, 0.9), policy=policy, min_batch=100, dataset_size=64, pace=pace)
    assert d.batch == 0
    assert d.reason == (
        "min_batch 100 is above the training set, 64 images: no batch can be picked; lower min_batch to 64 or less, "
        "or train on more images"
    )


def test_candidates_above_a_cap_do_not_fit_and_name_it():
    """A table never marks a batch above a cap as fitting (memory alone would hold all three here)."""
    d = decide(MemoryModel(YOLOV8N_480), budget(80, 0.9), dataset_size=20)
    assert [(c.batch, c.fits, c.cap) for c in d.candidates] == [
        (64, False, "the training set, 20 images"),
        (32, False, "the training set, 20 images"),
        (16, True, None),
    ]
    d = decide(MemoryModel(YOLOV8N_480), budget(80, 0.9), max_batch=40)
    assert [(c.batch, c.fits, c.cap) for c in d.candidates] == [
        (64, False, "max_batch 40"),
        (32, True, None),
        (16, True, None),
    ]


def test_a_training_set_of_one_image_is_one_image():
    d = decide(MemoryModel(YOLOV8N_480), budget(8, 0.9), policy="fit", dataset_size=1)
    assert d.batch == 1 and "the training set of 1 image" in d.reason and "1 images" not in d.reason
