"""Tests for yolo_batch.core.throughput and the ``speed`` policy: time laws, the dataloader's ceiling, the pick.

The recorded numbers come from the H100 run in ``docs/gpu/h100-2026-11-26-3.json`` (yolo11s at 640, AMP, 8
dataloader workers with mosaic, 2048 busy images): 221.6 images/s at batch 16, 404.1 at 32, 510.5 at 180
(AutoBatch's pick), and the memory law auto-plus refitted there (381157376 + 336396288 bytes per image,
budget 75843049881 bytes). Expected picks are worked out by hand in each test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from yolo_batch.core.pace_record import check_line, law_line, record_fields, steady_images_per_s
from yolo_batch.core.policy import Law, MemoryModel, decide
from yolo_batch.core.throughput import Pace, TimeLaw, fit_time_law, pace_from_record

# H100, yolo11s at 640: the time law through the measured stretches at 16 and 32 (seconds per iteration =
# batch / images/s: 16 / 221.6 = 0.072202, 32 / 404.1 = 0.079188), the loader's ceiling at 180's 510.5 images/s.
H100_S16, H100_S32, H100_LOADER = 16 / 221.6, 32 / 404.1, 510.5
H100_MEMORY = MemoryModel(Law(381157376, 336396288))
H100_BUDGET = 75843049881


def h100_pace(**kw) -> Pace:
    law = fit_time_law([(16, H100_S16), (32, H100_S32)])
    return Pace(law, H100_LOADER, overlapped=True, workers=8, cpus=16, **kw)


# --------------------------------------------------------------------------------------------------------------------
# fit_time_law


def test_fit_time_law_is_least_squares():
    points = [(2, 0.061), (4, 0.086), (8, 0.139), (16, 0.22), (32, 0.40)]
    law = fit_time_law(points, optimizer_seconds=0.02, nbs=64)
    slope, intercept = np.polyfit([b for b, _ in points], [s for _, s in points], 1)
    assert law.per_image_seconds == pytest.approx(slope, rel=1e-9)
    assert law.fixed_seconds == pytest.approx(intercept, rel=1e-9)
    assert (law.optimizer_seconds, law.nbs) == (0.02, 64)


def test_fit_time_law_negative_fixed_part_goes_through_the_origin():
    # the line through (2, 0.02) and (8, 0.14) crosses at -0.02 s; through the origin: sum(b s) / sum(b^2)
    # = (2 * 0.02 + 8 * 0.14) / (4 + 64) = 1.16 / 68
    law = fit_time_law([(2, 0.02), (8, 0.14)])
    assert law.fixed_seconds == 0.0
    assert law.per_image_seconds == pytest.approx(1.16 / 68)


def test_fit_time_law_falling_times_give_a_flat_law():
    law = fit_time_law([(2, 0.05), (4, 0.04), (8, 0.045)])  # a GPU idling at small batches: noise, no growth
    assert law.per_image_seconds == 0.0
    assert law.fixed_seconds == pytest.approx(0.045)


@pytest.mark.parametrize("points", [[], [(8, 0.1)], [(8, 0.1), (8, 0.2)]], ids=["none", "one", "one-size-twice"])
def test_fit_time_law_needs_two_sizes(points):
    with pytest.raises(ValueError, match=r"need steps at two different batch sizes to fit a time law"):
        fit_time_law(points)


def test_step_seconds_spreads_the_optimizer_step_over_accumulate():
    law = TimeLaw(0.05, 0.01, optimizer_seconds=0.08, nbs=64)
    # batch 8: accumulate round(64 / 8) = 8, so 0.08 / 8 per iteration; batch 100: accumulate 1
    assert law.step_seconds(8) == pytest.approx(0.05 + 0.08 + 0.01)
    assert law.step_seconds(100) == pytest.approx(0.05 + 1.0 + 0.08)
    assert law.images_per_s(8) == pytest.approx(8 / 0.14)


# --------------------------------------------------------------------------------------------------------------------
# Pace: the step and the loader together


def test_overlapped_pipeline_takes_the_slower_of_step_and_loader():
    pace = Pace(TimeLaw(0.1, 0.01), loader_images_per_s=60.0, overlapped=True, workers=4, cpus=8)
    assert pace.images_per_s(8) == pytest.approx(8 / 0.18)  # 44.4: the step is slower than the loader
    assert not pace.loader_bound(8)
    assert pace.images_per_s(64) == 60.0  # the step would allow 86.5
    assert pace.loader_bound(64)
    assert pace.loader_share(64) == 0.0


def test_serial_pipeline_adds_the_times():
    # workers=0 or a CPU: 1 / (step(b) / b + 1 / loader); at 64: 0.74 / 64 + 1 / 100 = 0.0215625 s per image
    pace = Pace(TimeLaw(0.1, 0.01), loader_images_per_s=100.0, overlapped=False)
    assert pace.images_per_s(64) == pytest.approx(1 / 0.0215625)
    assert not pace.loader_bound(64)
    assert pace.loader_share(64) == pytest.approx(0.01 / 0.0215625)  # 46 %
    # 46 % loading: the step binds, and the words give the loader's share and the advice
    assert pace.binding(64) == "step"
    words = pace.binding_words(64)
    assert words.startswith("step-bound at 86 images/s (the dataloader gives 100, 46% of the time per image; ")
    assert "cache=ram" in words and "share the cores" in words
    slow = Pace(TimeLaw(0.1, 0.01), loader_images_per_s=50.0, overlapped=False)  # 1/50 = 0.02 s > 0.74/64 s per image
    assert slow.binding(64) == "data"
    assert slow.binding_words(64).startswith("data-bound: loading takes 63% of the time per image (dataloader 50 ")
    assert slow.binding_words(64).endswith("a larger batch shortens only the step's share")


def test_unmeasured_loader_leaves_the_step_alone():
    pace = Pace(TimeLaw(0.1, 0.01))
    assert pace.images_per_s(64) == pytest.approx(64 / 0.74)
    assert pace.binding(64) == "step"
    assert pace.binding_words(64) == "step-bound at 86 images/s (the dataloader not timed)"


@pytest.mark.parametrize(
    ("workers", "cpus", "cache", "says", "not_says"),
    [
        pytest.param(
            8, 16, "False", ["more workers= (now 8, the machine has 16 CPU cores)", "cache=ram"], [], id="both"
        ),
        pytest.param(16, 16, "False", ["cache=ram"], ["more workers"], id="all-cores-used"),
        pytest.param(8, 16, "ram", ["more workers="], ["cache=ram"], id="cached-already"),
    ],
)
def test_loader_bound_note_gives_the_advice_that_helps(workers, cpus, cache, says, not_says):
    pace = Pace(
        TimeLaw(0.05, 0.001), loader_images_per_s=500.0, overlapped=True, workers=workers, cpus=cpus, cache=cache
    )
    note = pace.binding_words(128)
    assert note.startswith("data-bound at 500 images/s (")
    assert note.endswith("): a larger batch would not be faster")
    assert all(s in note for s in says), note
    assert not any(s in note for s in not_says), note


# --------------------------------------------------------------------------------------------------------------------
# The speed policy on the H100's recorded numbers


def test_speed_on_the_h100_is_dataloader_bound_and_picks_48():
    pace = h100_pace()
    # per_image = (0.079188 - 0.072202) / 16 = 0.00043663 s, fixed = 0.072202 - 16 * 0.00043663 = 0.065216 s.
    assert pace.law.per_image_seconds == pytest.approx((H100_S32 - H100_S16) / 16)
    # Batches that fit: (75843049881 - 381157376) / 336396288 = 224.3 -> 1..224 (225: 76070322176 bytes = 70.85 GiB);
    # the best is the loader's 510.5.
    # 0.97 x 510.5 = 495.185; b / (0.065216 + 0.00043663 b) >= 495.185 <=> b >= 495.185 x 0.065216 /
    # (1 - 495.185 x 0.00043663) = 41.2 -> 42, rounded up to a multiple of 8: 48.
    d = decide(H100_MEMORY, H100_BUDGET, policy="speed", pace=pace, max_batch=512, dataset_size=2048)
    assert d.batch == 48
    assert d.predicted_peak_bytes == pytest.approx(381157376 + 48 * 336396288)
    assert d.reason.startswith("data-bound at 510 images/s (more workers= (now 8, the machine has 16 CPU cores)")
    assert "a larger batch would not be faster; " in d.reason
    # within nbs first: 48 reaches the best at or below 64 (510.5); above nbs nothing is faster (+0 %)
    assert "48 reaches 510 images/s, 100% of the best 510 (at 64) with speed_threshold 0.97" in d.reason
    assert "within nbs=64 (Ultralytics' recipe): the fastest above it, 72 at 510 images/s, gains +0%" in d.reason
    assert "(the largest that fits is 224: 225 would need 70.85 GiB)" in d.reason
    # the table shows the rungs and the largest that fits, each with its predicted images/s
    assert [c.batch for c in d.candidates] == [224, 64, 32, 16]
    assert [round(c.images_per_s, 1) for c in d.candidates] == [510.5, 510.5, 404.1, 221.6]
    fit = decide(H100_MEMORY, H100_BUDGET, policy="fit", pace=pace, max_batch=512, dataset_size=2048)
    assert fit.batch == 224  # memory alone: the largest that fits, which trained at 421 images/s on the H100


@pytest.mark.parametrize(
    ("threshold", "expected"),
    [
        # b / (0.065216 + 0.00043663 b) >= t x 510.5: b >= t x 510.5 x 0.065216 / (1 - t x 510.5 x 0.00043663)
        pytest.param(0.5, 24, id="0.5: b >= 20.0 -> 21 -> 24"),
        pytest.param(0.9, 40, id="0.9: b >= 36.0 -> 40"),
        pytest.param(1.0, 48, id="1.0: b >= 43.2 -> 44 -> 48"),
    ],
)
def test_speed_threshold_moves_the_pick(threshold, expected):
    d = decide(H100_MEMORY, H100_BUDGET, policy="speed", pace=h100_pace(), speed_threshold=threshold, dataset_size=2048)
    assert d.batch == expected


def test_speed_when_the_step_sets_the_pace():
    # no loader ceiling: images/s = b / (0.1 + 0.01 b) rises to 1 / 0.01 = 100; fits up to (20 - 4) / 0.5 = 32.
    # best 32 / 0.42 = 76.19; 0.97 x 76.19 = 73.90: b / (0.1 + 0.01 b) >= 73.90 <=> b >= 7.39 / 0.261 = 28.3 -> 29,
    # rounded up to 32, which is the best itself.
    model = MemoryModel(Law(4.0, 0.5))
    d = decide(model, 20.0, policy="speed", pace=Pace(TimeLaw(0.1, 0.01)))
    assert d.batch == 32
    assert d.reason.startswith("step-bound at 76 images/s (the dataloader not timed); 32 reaches")
    assert "; 32 reaches 76 images/s, the best of the batches that fit (the largest that fits is 32" in d.reason
    assert "data-bound" not in d.reason


def test_speed_never_rounds_past_what_fits():
    # fits up to (20 - 5) / 0.5 = 30; best 30 / 0.4 = 75; 0.97 x 75 = 72.75: b >= 7.275 / 0.2725 = 26.7 -> 27;
    # 32 does not fit, so 27 stays
    model = MemoryModel(Law(5.0, 0.5))
    d = decide(model, 20.0, policy="speed", pace=Pace(TimeLaw(0.1, 0.01)))
    assert d.batch == 27


def test_speed_respects_min_batch_the_cap_and_memory():
    pace = Pace(TimeLaw(0.1, 0.01), loader_images_per_s=40.0, overlapped=True)  # 40 reached at 7 images
    model = MemoryModel(Law(4.0, 0.5))
    assert decide(model, 20.0, policy="speed", pace=pace).batch == 7
    assert decide(model, 20.0, policy="speed", pace=pace, min_batch=12).batch == 16
    capped = decide(model, 20.0, policy="speed", pace=pace, dataset_size=6)
    assert capped.batch == 6 and "capped by the training set of 6 images" in capped.reason
    none = decide(model, 4.2, policy="speed", pace=pace, min_batch=2)
    assert none.batch == 0 and "batch 2 needs 5.00 GiB" not in none.reason and none.reason.startswith("batch 2 needs")


def test_speed_without_a_pace_is_refused():
    with pytest.raises(ValueError, match=r"policy 'speed' needs the measured pace \(time law and dataloader rate\)"):
        decide(MemoryModel(Law(4.0, 0.5)), 20.0, policy="speed")


def test_unknown_policy_names_all_four():
    with pytest.raises(ValueError, match=r"policy must be 'ladder', 'fit', 'speed' or 'goodput', got 'fast'"):
        decide(MemoryModel(Law(4.0, 0.5)), 20.0, policy="fast")


def test_ladder_and_fit_picks_do_not_change_with_a_pace():
    model = MemoryModel(Law(4.0, 0.5))
    for policy in ("ladder", "fit"):
        without = decide(model, 40.0, policy=policy)
        with_pace = decide(model, 40.0, policy=policy, pace=Pace(TimeLaw(0.1, 0.01)))
        assert (with_pace.batch, with_pace.reason) == (without.batch, without.reason)
        assert all(c.images_per_s is None for c in without.candidates)
        assert all(c.images_per_s > 0 for c in with_pace.candidates)


# --------------------------------------------------------------------------------------------------------------------
# Records, the table line and the check against the measured epochs


def test_record_round_trip_and_table_line():
    pace = h100_pace(
        loader_images=512, loader_seconds=1.0, loader_start_seconds=2.5, points=((16, H100_S16),), loader_skipped=33
    )
    fields = record_fields(pace, 48)
    assert fields["predicted_images_per_s"] == 510.5 and fields["loader_bound"] is True
    assert fields["speed"]["loader"] == {
        "images_per_s": 510.5,
        "workers": 8,
        "overlapped": True,
        "cpus": 16,
        "cache": "False",
        "images": 512,
        "seconds": 1.0,
        "start_seconds": 2.5,
        "skipped_batches": 33,  # the first batch and 8 workers x prefetch_factor 4
    }
    assert fields["speed"]["points"] == {"law": [[16, round(H100_S16, 5)]]}
    again = pace_from_record(fields)
    for b in (8, 48, 224):
        assert again.images_per_s(b) == pytest.approx(pace.images_per_s(b), rel=1e-4)
    assert law_line(fields) == (
        "time law 65.2 ms + 0.44 ms/image per step, optimizer 0.0 ms per 64 images; "
        "dataloader 510 images/s (8 workers); step images/s 222 at 16 (timed); "
        "data-bound at the pick (step 557 images/s)"
    )
    assert law_line({"speed": fields["speed"]}).endswith("dataloader 510 images/s (8 workers)")  # an older record
    assert fields["ceilings"] == {
        "step_images_per_s": [[16, 221.6]],
        "step_at_pick": round(48 / (pace.law.fixed_seconds + 48 * pace.law.per_image_seconds), 1),
        "dataloader_images_per_s": 510.5,
        "binding": "data",
        "words": pace.binding_words(48),
    }
    assert record_fields(None, 48) == {
        "speed": None,
        "predicted_images_per_s": None,
        "loader_bound": None,
        "ceilings": None,
    }
    assert pace_from_record({"speed": None}) is None


def test_steady_epochs_skip_the_first_and_other_batches():
    rows = [
        {"epoch": "1", "batch": "32", "images_per_s": "10.0"},
        {"epoch": "2", "batch": "32", "images_per_s": "20.0"},
        {"epoch": "3", "batch": "16", "images_per_s": "99.0"},  # after an out-of-memory step-down: another batch
        {"epoch": "4", "batch": "32", "images_per_s": ""},
        {"epoch": "5", "batch": "32", "images_per_s": "30.0"},
        {"epoch": "final", "batch": "32"},
    ]
    assert steady_images_per_s(rows, 32) == (25.0, 2)
    assert steady_images_per_s(rows[:1], 32) is None


def test_check_line_compares_the_pick_with_the_steady_epochs():
    record = {"batch": 48, **record_fields(h100_pace(), 48)}
    rows = [{"epoch": e, "batch": 48, "images_per_s": v} for e, v in ((1, 300.0), (2, 480.0), (3, 500.0))]
    line = check_line(rows, record)
    assert line == "speed: predicted 510.5 images/s at batch 48, measured 490.0 over 2 steady epochs (+4.2%)"
    assert check_line(rows, {"batch": 48, "speed": None}) is None
    assert check_line(rows[:1], record) is None
    assert not math.isnan(h100_pace().images_per_s(1))


def test_speed_says_when_the_pick_is_above_nbs():
    model = MemoryModel(Law(4.0, 0.5))
    above = decide(model, 20.0, policy="speed", pace=Pace(TimeLaw(0.1, 0.01, nbs=16)))
    assert above.batch == 32
    # at or below 16 the best is 16 / 0.26 = 61.5 images/s; 32 / 0.42 = 76.2 is +24 % > speed_gain 10 %
    said = "32 above nbs=16 reaches 76 images/s, +24% over 16 (62), the fastest at or below nbs: above speed_gain 10%"
    assert said in above.reason
    assert above.reason.endswith("; above nbs=16 every optimizer step sees 32 images, not 16")
    kept = decide(model, 20.0, policy="speed", pace=Pace(TimeLaw(0.1, 0.01, nbs=16)), speed_gain=0.25)
    assert kept.batch == 16 and "gains +24%, not above speed_gain 25%" in kept.reason
    assert "above nbs" not in decide(model, 20.0, policy="speed", pace=Pace(TimeLaw(0.1, 0.01, nbs=64))).reason


def test_a_small_training_set_counts_the_partial_batch():
    # 128 images, step 0.1 + 0.01 b: 88 takes 2 iterations as 64 does (0.98 + 0.50 = 1.48 s = 2 x 0.74 s), so it is
    # no faster; 128 takes one (1.38 s). Fits up to 128; best 128 / 1.38 = 92.75; 0.97 x 92.75 = 89.97. 64 and 88
    # reach 86.5 only, 100..127 also take 2 iterations (1.48 s): 128 is the smallest to reach it.
    pace = Pace(TimeLaw(0.1, 0.01), dataset_size=128)
    assert pace.images_per_s(88) == pytest.approx(pace.images_per_s(64)) == pytest.approx(128 / 1.48)
    # 128 is above nbs=64 and +7.2 % over 64: below the default speed_gain 10 %, above 5 %
    d = decide(MemoryModel(Law(4.0, 0.5)), 100.0, policy="speed", pace=pace, dataset_size=128, speed_gain=0.05)
    assert d.batch == 128
    within = decide(MemoryModel(Law(4.0, 0.5)), 100.0, policy="speed", pace=pace, dataset_size=128)
    assert within.batch == 64 and "the fastest above it, 128 at 93 images/s, gains +7%, not above speed_gain 10%" in (
        within.reason
    )
    endless = decide(MemoryModel(Law(4.0, 0.5)), 100.0, policy="speed", pace=Pace(TimeLaw(0.1, 0.01)), max_batch=128)
    assert endless.batch < 128  # without the epoch's end, the law alone would stop earlier
    assert pace_from_record({"speed": pace.as_record()}).dataset_size == 128


@pytest.mark.parametrize("rate", [1238.52, 1238.46, 421.25, 510.5])
def test_the_dataloader_figure_is_one_value_live_and_from_the_record(rate):
    """issue 21: one decision said the dataloader at 1239 images/s (its words, from the raw 1238.52) and at 1238 (the
    table, from the record's 1238.5). The rate is kept once, at the record's precision: every line says one figure."""
    import re

    pace = Pace(TimeLaw(0.1, 0.01, 0.02), rate, False, 0, 2, points=((8, 0.18), (16, 0.26)), dataset_size=32)
    record = {"speed": pace.as_record(), "ceilings": pace.ceilings(16)}
    again = pace_from_record(record)
    assert again is not None and again.loader_images_per_s == pace.loader_images_per_s
    assert record["speed"]["loader"]["images_per_s"] == record["ceilings"]["dataloader_images_per_s"]
    said = [pace.binding_words(16), again.binding_words(16), record["ceilings"]["words"], law_line(record)]
    figures = {f for line in said for f in re.findall(r"dataloader (?:gives )?(\d+)", line)}
    assert len(figures) == 1, said
    assert pace.images_per_s(16) == again.images_per_s(16)  # the prediction too, not within 0.06
