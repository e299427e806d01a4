"""Tests for yolo_batch.core.goodput: the ``goodput`` policy's choice at an epoch's end, on recorded laws.

The H100 law is the one `tests/test_throughput.py` records (yolo11s at 640, AMP, 8 workers: 221.6 images/s at
batch 16, 404.1 at 32, the loader's ceiling 510.5 images/s). The CPU law is this machine's yolo11n at 96 px
(README, Speed: 24 ms per image from batches 2-8 with a 0.1 s fixed cost). ``BENCH`` is the time-to-mAP
benchmark's run as `yolo-batch plan` measured it here (2560 synthetic images at 96 px, AdamW lr0=0.004,
workers=0, 2 busy cores): the speed pick was 152. Expected picks are worked out by hand in each test.
"""

from __future__ import annotations

import math

import pytest

from tests.test_throughput import h100_pace
from yolo_batch.core.goodput import (
    SETTLE,
    Recipe,
    choose,
    effective,
    efficiency,
    gain_ratio,
    lr_factor,
    settled,
    sizes,
)
from yolo_batch.core.spec import AutoPlusError, resolve_spec
from yolo_batch.core.throughput import Pace, TimeLaw

CPU = Pace(TimeLaw(0.1, 0.024))  # images/s: 8 -> 27.0, 16 -> 32.8, 32 -> 36.8, 64 -> 39.2
# yolo-batch plan model=yolo11n.yaml data=<2560 images> batch=auto-plus:goodput imgsz=96 optimizer=AdamW lr0=0.004
# warmup_epochs=0 mosaic=0.0 amp=False device=cpu epochs=40 (the speed record's time law and loader)
BENCH = Pace(TimeLaw(0.149256, 0.0298803, 0.058631, nbs=64), 423.8, overlapped=False, workers=0, cpus=2)
ADAMW = Recipe("AdamW", dataset_size=2560)  # the benchmark's recipe: no lr_scaling, bn_momentum keep


def linear_lf(epoch: int, epochs: int = 40, lrf: float = 0.01) -> float:
    """Ultralytics' linear schedule (``BaseTrainer._setup_scheduler``): the lr of ``epoch`` over lr0."""
    return max(1 - epoch / epochs, 0) * (1.0 - lrf) + lrf


def test_effective_batch_follows_ultralytics_accumulation():
    assert [effective(b, 64) for b in (1, 8, 16, 24, 32, 40, 48, 64, 96, 200)] == [
        64,
        64,
        64,
        72,
        64,
        80,
        48,
        64,
        96,
        200,
    ]


@pytest.mark.parametrize("noise", [0.0, 100.0, 1e6, math.inf])
def test_efficiency_is_one_at_or_below_nbs_whatever_the_recipe(noise):
    # at or below nbs goodput behaves as speed: 24 (x 3 = 72) and 40 (x 2 = 80) too
    for recipe in (Recipe(), Recipe("SGD"), Recipe(lr_scaling="linear"), ADAMW):
        assert {efficiency(b, 64, noise, recipe) for b in (1, 16, 24, 40, 48, 64)} == {1.0}


@pytest.mark.parametrize("noise", [0.0, 100.0, 1e6, math.inf])
def test_adam_without_lr_scaling_pays_the_update_count(noise):
    # a step at b moves as far as a step at nbs: an epoch makes b / nbs times less progress, at any noise scale
    assert efficiency(128, 64, noise) == 0.5
    assert efficiency(256, 64, noise) == 0.25
    assert efficiency(96, 64, noise, Recipe("MuSGD")) == pytest.approx(64 / 96)  # Muon's update is normalised


def test_with_a_step_that_grows_the_noise_scale_decides_as_pollux():
    # SGD (the loss sums over the images) or the square-root rule for Adam: (phi + nbs) / (phi + B)
    for recipe in (Recipe("SGD"), Recipe("AdamW", "sqrt"), Recipe("Adam", "linear")):
        assert efficiency(256, 64, 100.0, recipe) == pytest.approx(164 / 356)
        assert efficiency(256, 64, math.inf, recipe) == 1.0
    # sqrt scaling for SGD makes the step 4 x 2 = 8 nbs steps, still capped by the gain ratio
    assert efficiency(256, 64, 100.0, Recipe("SGD", "sqrt")) == pytest.approx(164 / 356)
    # Adam with sqrt scaling at 256: a step worth 2 ** 2 = 4; linear for SGD at 256: 4 x 4 = 16
    assert Recipe("AdamW", "sqrt").worth(256, 64) == 4.0 and Recipe("SGD", "linear").worth(256, 64) == 16.0
    # lr scaling between: Adam with sqrt scaling at 256 and phi = 1e6: min(4, 3.999) / 4
    assert efficiency(256, 64, 1e6, Recipe("AdamW", "sqrt")) == pytest.approx(gain_ratio(256, 64, 1e6) / 4)


def test_gain_ratio_is_adascale_between_1_and_s():
    assert gain_ratio(128, 64, 0.0) == 1.0 and gain_ratio(128, 64, math.inf) == 2.0
    assert gain_ratio(256, 64, 100.0) == pytest.approx(4 * 164 / 356)
    assert gain_ratio(48, 64, 1e6) == gain_ratio(64, 64, 1e6) == 1.0
    # variance sigma^2 (at nbs) and |G|^2: r = (sigma^2 + |G|^2) / (sigma^2 / S + |G|^2), with phi = nbs sigma^2 / |G|^2
    sigma2, g2, s = 3.0, 2.0, 4
    assert gain_ratio(64 * s, 64, 64 * sigma2 / g2) == pytest.approx((sigma2 + g2) / (sigma2 / s + g2))


def test_sgd_grows_the_batch_only_as_the_lr_decays():
    # Smith et al. 2018: SGD's step at 128 is twice the step at nbs; with Ultralytics' linear schedule over 40
    # epochs (lrf 0.01) the lr falls to half of lr0 at epoch 20.2: 128 is compared from epoch 21 on
    sgd = [Recipe("SGD", lr_left=linear_lf(e)) for e in range(41)]
    assert [e for e, r in enumerate(sgd) if r.excluded(128, 64) is None] == list(range(21, 41))
    assert [e for e, r in enumerate(sgd) if r.excluded(256, 64) is None][0] == 31  # a quarter of lr0 at 30.3
    assert sgd[0].excluded(64, 64) is None  # never a batch at or below nbs
    # Adam without scaling keeps lr0's step at any batch; with sqrt scaling, 256's step is 2x: from half the lr
    assert Recipe(lr_left=1.0).excluded(512, 64) is None
    assert Recipe(lr_scaling="sqrt", lr_left=0.51).excluded(256, 64) is not None
    assert Recipe(lr_scaling="sqrt", lr_left=0.5).excluded(256, 64) is None


def test_batchnorm_statistics_must_halve_within_an_epoch():
    # momentum 0.03 per update: a batch's statistics halve over b x 22.76 images; 112 -> 2549, 120 -> 2731
    assert ADAMW.excluded(112, 64) is None
    assert (
        ADAMW.excluded(120, 64) == "BatchNorm's running statistics would halve over more than an epoch of 2560 images"
    )
    auto = Recipe(dataset_size=2560, bn_momentum="auto")  # 364 images at any batch
    assert auto.excluded(512, 64) is None and Recipe(dataset_size=256, bn_momentum="auto").excluded(72, 64)
    assert Recipe().excluded(4096, 64) is None  # without the training set's size: no guard


def test_the_benchmark_run_never_trains_above_nbs():
    # The time-to-mAP run (AdamW lr0 0.004, no lr_scaling, bn_momentum keep, 2560 images, 40 epochs): the speed
    # pick 152 predicts 29.8 images/s, 64 28.2. A step at 152 moves as far as one at 64 (AdamW's lr is unchanged),
    # so 152 has efficiency 64 / 152 = 0.42: 12.5 against 28.2. After epoch 1, with one noise reading, 64 wins at
    # every noise scale and goodput leaves at once.
    first = choose(BENCH, current=152, low=1, high=512, nbs=64, readings=[18000.0], recipe=ADAMW)
    assert first.batch == 64 and first.gain == pytest.approx(28.18 / (29.76 * 64 / 152) - 1, rel=1e-3)
    assert first.reason.startswith(
        "goodput 64: 28 images/s x efficiency 1.00 = 28 against 152: 30 x 0.42 = 13 (+125% > goodput_gain 5% at any "
        "noise scale); 152: 2.38x fewer steps an epoch, each worth 1.00 at nbs 64 (by its size 1.00: AdamW lr0 x1; "
        "by the gain ratio 2.38, its most, at any noise scale); noise scale not settled"
    )
    assert "not compared: 120-512 (BatchNorm's running statistics would halve over more than an epoch" in first.reason
    # from 64, at every epoch and noise scale the run saw (18 000 early, under 500 late), with bn_momentum keep or
    # auto, nothing above nbs beats 64: the best above, 512 at 30.6 images/s, is worth 30.6 / 8 = 3.8
    for epoch in range(1, 40):
        for noise in (300.0, 2000.0, 18000.0):
            for bn in ("keep", "auto"):
                recipe = Recipe("AdamW", lr_left=linear_lf(epoch), dataset_size=2560, bn_momentum=bn)
                c = choose(BENCH, current=64, low=1, high=512, nbs=64, readings=[noise, noise], recipe=recipe)
                assert c.batch is None, (epoch, noise, bn, c.reason)


def test_with_lr_scaling_large_batches_pay_only_late_and_with_a_large_noise_scale():
    # the same run with lr_scaling sqrt and bn_momentum auto. At epoch 30 (lr at 26 % of lr0, so a step may grow
    # 3.9x: every batch up to 512 is compared) and phi = 18000, 344 (step 5.38, gain ratio 5.29: efficiency 0.98)
    # makes 30.0 against 64's 28.2: +6.4 % > 5 %. At phi = 2000 the best, 112 (efficiency 0.98), is +2 %: the run
    # stays. Early (lr at 98 % of lr0) nothing above nbs is compared.
    late = Recipe("AdamW", "sqrt", lr_left=linear_lf(30), dataset_size=2560, bn_momentum="auto")
    up = choose(BENCH, current=64, low=1, high=512, nbs=64, readings=[18000.0, 18000.0], recipe=late)
    best = max(sizes(1, 512, 64), key=lambda b: BENCH.images_per_s(b) * efficiency(b, 64, 18000.0, late))
    assert up.batch == best == 344 and up.gain == pytest.approx(0.064, abs=0.001)
    held = choose(BENCH, current=64, low=1, high=512, nbs=64, readings=[2000.0, 2000.0], recipe=late)
    assert held.batch is None and held.reason.startswith("stays at 64: goodput 112: 29 images/s x efficiency 0.98")
    early = Recipe("AdamW", "sqrt", lr_left=linear_lf(1), dataset_size=2560, bn_momentum="auto")
    held = choose(BENCH, current=64, low=1, high=512, nbs=64, readings=[18000.0, 18000.0], recipe=early)
    assert held.batch is None
    assert held.reason.endswith("not compared: 72-512 (a step that large needs the lr decayed further than 98% of lr0)")


@pytest.mark.parametrize(
    ("readings", "ok"),
    [
        pytest.param([], False, id="none"),
        pytest.param([120.0], False, id="one-epoch"),
        pytest.param([None, 120.0], False, id="first-missing"),
        pytest.param([100.0, None], False, id="last-missing"),
        pytest.param([100.0, 119.0], True, id="moved-19pc"),
        pytest.param([100.0, 120.0], False, id="moved-20pc"),
        pytest.param([100.0, 81.0], True, id="fell-19pc"),
        pytest.param([30.0, 300.0, 310.0], True, id="settles-later"),
    ],
)
def test_settle_rule(readings, ok):
    assert SETTLE == 0.20
    assert settled(readings)[0] is ok


def test_sizes_are_multiples_of_8_the_bound_and_the_current_batch():
    assert sizes(8, 40, 12) == [8, 12, 16, 24, 32, 40]
    assert sizes(16, 30, 16) == [16, 24, 30]
    assert sizes(1, 5, 3) == [1, 2, 3, 4, 5]


def test_below_nbs_throughput_decides():
    # CPU law: every batch up to 64 has efficiency 1 (goodput is speed there) and the fastest, 64, wins: 39.2 vs 27.0
    c = choose(CPU, current=8, low=1, high=64, nbs=64, readings=[5.0, 5.2])
    assert c.batch == 64
    assert c.gain == pytest.approx(64 / (0.1 + 0.024 * 64) / (8 / (0.1 + 0.024 * 8)) - 1)
    assert "efficiency 1.00" in c.reason and "> goodput_gain 5%" in c.reason


def test_on_the_h100_law_adam_leaves_the_loader_bound_large_batch():
    # from 43 on the loader's 510.5 images/s is the ceiling, so 256 is no faster than 48; AdamW's step at 256 is
    # worth one at nbs: efficiency 0.25, 48 (effective 48) is the smallest batch with the best goodput: +300 %
    pace = h100_pace()
    c = choose(pace, current=256, low=1, high=256, nbs=64, readings=[48.0, 50.0])
    assert c.batch == 48 and c.gain == pytest.approx(3.0)
    # with SGD late in training (the summed loss: Pollux's (50 + 64) / (50 + 256)) the same choice, by less
    sgd = choose(pace, current=256, low=1, high=256, nbs=64, readings=[48.0, 50.0], recipe=Recipe("SGD", lr_left=0.2))
    assert sgd.batch == 48 and sgd.gain == pytest.approx(306 / 114 - 1)


def test_a_large_noise_scale_lets_sgd_grow_the_batch_once_the_lr_has_decayed():
    # the H100 step alone (no loader ceiling): 64 -> 687 images/s, 128 -> 1057, 256 -> 1446; with phi = 9500
    # (later in training) SGD's step at 256 is worth 3.92 steps at nbs: efficiency 0.98, 1418 against 687
    pace = Pace(h100_pace().law)
    up = choose(
        pace, current=64, low=1, high=256, nbs=64, readings=[9000.0, 9500.0], recipe=Recipe("SGD", lr_left=0.25)
    )
    best = max(sizes(1, 256, 64), key=lambda b: pace.images_per_s(b) * efficiency(b, 64, 9500.0, Recipe("SGD")))
    assert up.batch == best == 256
    assert "256: 4x fewer steps an epoch, each worth 3.92 at nbs 64 (by its size 4.00: SGD lr0 x1, loss summed" in (
        up.reason
    )
    # at half of lr0 the step may double, not quadruple: 128 (1050 against 687), 136-256 left out
    half = choose(
        pace, current=64, low=1, high=256, nbs=64, readings=[9000.0, 9500.0], recipe=Recipe("SGD", lr_left=0.5)
    )
    assert half.batch == 128
    assert half.reason.endswith(
        "not compared: 136-256 (a step that large needs the lr decayed further than 50% of lr0)"
    )
    # at lr0 nothing above nbs is compared; with AdamW and no scaling nothing above nbs pays (1446 / 4 = 361)
    assert (
        choose(pace, current=64, low=1, high=256, nbs=64, readings=[9000.0, 9500.0], recipe=Recipe("SGD")).batch is None
    )
    assert choose(pace, current=64, low=1, high=256, nbs=64, readings=[9000.0, 9500.0]).batch is None
    # with phi = 50 256 pays (50 + 256) / (50 + 64) = 2.7x the images; the best, 88 (efficiency 0.83), is +2 %
    held = choose(pace, current=64, low=1, high=256, nbs=64, readings=[48.0, 50.0], recipe=Recipe("SGD", lr_left=0.2))
    assert held.batch is None
    assert "goodput 88: 849 images/s x efficiency 0.83 = 701 against 64: 687 x 1.00 = 687 (+2%, not" in held.reason


def test_above_nbs_an_unsettled_noise_scale_waits_when_it_could_change_the_answer():
    # SGD late: at phi = 0 the best is 64 (efficiency 1/4 at 256), at phi = infinity 256 stays: wait
    pace = Pace(h100_pace().law)
    c = choose(pace, current=256, low=1, high=256, nbs=64, readings=[9000.0], recipe=Recipe("SGD", lr_left=0.2))
    assert (
        c.batch is None
        and c.reason == "stays at 256: noise scale not settled (1 of the last 2 epochs have an estimate)"
    )
    # at or below nbs an unsettled noise scale never switches (the speed pick is within 3 % of the best)
    assert choose(CPU, current=8, low=1, high=64, nbs=64, readings=[9000.0]).batch is None


def test_the_gain_threshold_holds_a_near_tie():
    # CPU law: 32 -> 36.9 images/s, 64 -> 39.1: +6.1 %; above 5 %, not above 10 %
    assert choose(CPU, current=32, low=1, high=64, nbs=64, readings=[5.0, 5.0]).batch == 64
    held = choose(CPU, current=32, low=1, high=64, nbs=64, readings=[5.0, 5.0], gain=0.10)
    assert held.batch is None
    assert held.reason.startswith("stays at 32: goodput 64:") and "not above goodput_gain 10%" in held.reason


def test_an_unsettled_noise_scale_never_switches():
    c = choose(CPU, current=8, low=1, high=64, nbs=64, readings=[5.0, 50.0])
    assert c.batch is None
    assert c.reason == "stays at 8: noise scale 50 (5 -> 50, +900%, not settled: moves by 20% or more)"
    assert choose(CPU, current=8, low=1, high=64, nbs=64, readings=[None]).batch is None


def test_never_above_the_fit_bound():
    c = choose(CPU, current=8, low=1, high=20, nbs=64, readings=[5.0, 5.0])
    assert c.batch == 20  # the bound itself is a candidate; 24 and up are not
    assert choose(CPU, current=20, low=1, high=20, nbs=64, readings=[5.0, 5.0]).batch is None
    # nor above it at any noise scale, from above nbs (after an out-of-memory step-down the bound is lower)
    assert choose(BENCH, current=152, low=1, high=40, nbs=64, readings=[], recipe=ADAMW).batch == 40


def test_lr_factor():
    assert lr_factor("linear", 128, 64) == 2.0
    assert lr_factor("sqrt", 256, 64) == 2.0
    assert lr_factor("linear", 48, 64) == 1.0  # effective 48 <= nbs
    assert lr_factor("none", 512, 64) == 1.0


@pytest.mark.parametrize(
    ("value", "keywords", "yaml", "expected"),
    [
        pytest.param("auto-plus:goodput", None, "", ("goodput", 0.05), id="cli-value"),
        pytest.param(None, {"policy": "goodput", "goodput_gain": 0.1}, "", ("goodput", 0.1), id="python-keywords"),
        pytest.param(None, None, "policy: goodput\ngoodput_gain: 0.02\n", ("goodput", 0.02), id="yaml"),
    ],
)
def test_three_ways_in(tmp_path, value, keywords, yaml, expected):
    path = tmp_path / "p.yaml"
    path.write_text(yaml)
    spec = resolve_spec(value, keywords, path if yaml else None)
    assert (spec.policy, spec.goodput_gain) == expected


@pytest.mark.parametrize(
    ("keywords", "match"),
    [
        pytest.param(
            {"goodput_gain": 0}, r"goodput_gain=0 is invalid; goodput_gain must be a fraction in \(0, 1\)", id="gain-0"
        ),
        pytest.param({"goodput_gain": 1.5}, r"goodput_gain=1\.5 is invalid; .* e\.g\. 0\.05", id="1.5"),
        pytest.param({"goodput_gain": "x"}, r"goodput_gain='x' is invalid; .* a fraction in \(0, 1\)", id="gain-str"),
        pytest.param(
            {"policy": "goodput", "noise_scale": False}, r"policy=goodput needs noise_scale=true", id="no-noise"
        ),
        pytest.param(
            {"policy": "goodputt"}, r"valid: ladder, fit, speed, goodput \(did you mean 'goodput'\?\)", id="typo"
        ),
    ],
)
def test_bad_settings_are_one_line_errors(keywords, match):
    with pytest.raises(AutoPlusError, match=match) as err:
        resolve_spec(None, keywords)
    assert "\n" not in str(err.value)


def test_the_brain_imports_no_torch():
    import subprocess
    import sys

    heavy = "('torch', 'ultralytics', 'numpy')"
    code = f"import sys, yolo_batch.core.goodput; print(sorted(m for m in {heavy} if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"


def test_the_switch_batch_enters_ultralytics_restart_and_only_that_warning_is_hidden():
    import logging

    from yolo_batch.train.rebuild import BatchSwitch, _QuietRestart, _StandIn, _SwitchBatch

    batch = next(iter(_StandIn(loader=None, old=8, new=32)))
    for use in (lambda b: b["img"], lambda b: b.items(), lambda b: b.get("img"), lambda b: list(b)):
        with pytest.raises(BatchSwitch, match=r"from 8 to 32 through Ultralytics' out of memory restart") as err:
            use(batch)
        assert isinstance(err.value, RuntimeError) and "out of memory" in str(err.value).lower()  # Ultralytics' test
    assert isinstance(batch, _SwitchBatch)

    def record(message):
        return logging.LogRecord("ultralytics", logging.WARNING, __file__, 1, message, None, None)

    quiet = _QuietRestart()
    assert not quiet.filter(record("CPU out of memory with batch=8. Reducing to batch=4 and retrying (1/3)."))
    assert quiet.filter(record("AutoPlus: goodput: batch 8 -> 32 from epoch 2"))
