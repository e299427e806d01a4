"""Tests for yolo_batch.goodput: the ``goodput`` policy's choice at an epoch's end, on recorded laws.

The H100 law is the one `tests/test_throughput.py` records (yolo11s at 640, AMP, 8 workers: 221.6 images/s at
batch 16, 404.1 at 32, the loader's ceiling 510.5 images/s). The CPU law is this machine's yolo11n at 96 px
(README, Speed: 24 ms per image from batches 2-8 with a 0.1 s fixed cost). Expected picks are worked out by
hand in each test.
"""

from __future__ import annotations

import pytest

from tests.test_throughput import h100_pace
from yolo_batch.goodput import SETTLE, choose, effective, efficiency, lr_factor, settled, sizes
from yolo_batch.spec import AutoPlusError, resolve_spec
from yolo_batch.throughput import Pace, TimeLaw

CPU = Pace(TimeLaw(0.1, 0.024))  # images/s: 8 -> 27.0, 16 -> 32.8, 32 -> 36.8, 64 -> 39.2


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


def test_efficiency_is_one_at_or_below_nbs_and_falls_above():
    assert efficiency(16, 64, 10.0) == efficiency(64, 64, 10.0) == efficiency(48, 64, 10.0) == 1.0
    # (phi + nbs) / (phi + B): phi = 100, B = 256 -> 164 / 356
    assert efficiency(256, 64, 100.0) == pytest.approx(164 / 356)
    # a larger noise scale makes large batches efficient again
    assert efficiency(256, 64, 1e5) > 0.99 > efficiency(256, 64, 1e3) > efficiency(256, 64, 100.0)


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
    # CPU law, noise scale far below nbs: every batch up to 64 trains at an effective batch <= 64 (16 x 4, 32 x 2,
    # 64 x 1; 40 x 2 = 80 and 56 x 1 = 56 aside), so efficiency is 1 and the fastest, 64, wins: 39.2 vs 27.0 at 8
    c = choose(CPU, current=8, low=1, high=64, nbs=64, readings=[5.0, 5.2])
    assert c.batch == 64
    assert c.gain == pytest.approx(64 / (0.1 + 0.024 * 64) / (8 / (0.1 + 0.024 * 8)) - 1)
    assert "efficiency 1.00" in c.reason and "> goodput_gain 5%" in c.reason


def test_above_nbs_efficiency_falls_and_a_small_noise_scale_keeps_the_batch_small():
    # H100 law: from 43 on the loader's 510.5 images/s is the ceiling, so 256 is no faster than 48, and with
    # phi = 50 its effective batch of 256 has efficiency (50 + 64) / (50 + 256): 48 (effective 48, efficiency 1)
    # is the smallest batch with the best goodput
    pace = h100_pace()
    c = choose(pace, current=256, low=1, high=256, nbs=64, readings=[48.0, 50.0])
    assert c.batch == 48
    assert c.gain == pytest.approx(306 / 114 - 1)


def test_a_large_noise_scale_lets_goodput_grow_the_batch():
    # the H100 step alone (no loader ceiling): 64 -> 687 images/s, 256 -> 1446; with phi = 9500 (later in
    # training) large batches keep most of their efficiency ((9500 + 64) / (9500 + 256) = 0.98 at 256)
    pace = Pace(h100_pace().law)
    up = choose(pace, current=64, low=1, high=256, nbs=64, readings=[9000.0, 9500.0])
    best = max(sizes(1, 256, 64), key=lambda b: pace.images_per_s(b) * efficiency(b, 64, 9500.0))
    assert up.batch == best > 128
    assert up.batch == 256  # 1446 x 0.98 = 1418 against 687 at 64
    # the same law with phi = 50: 256 pays (50 + 256) / (50 + 64) = 2.7x the images; the best, 88 (effective 88,
    # efficiency 0.83: 849 x 0.83 = 701), is 2 % above 64's 687: below goodput_gain, the batch stays
    held = choose(pace, current=64, low=1, high=256, nbs=64, readings=[48.0, 50.0])
    assert held.batch is None
    assert "goodput 88: 849 images/s x efficiency 0.83 = 701 against 64: 687 x 1.00 = 687 (+2%, not" in held.reason


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
    code = f"import sys, yolo_batch.goodput; print(sorted(m for m in {heavy} if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"


def test_the_switch_batch_enters_ultralytics_restart_and_only_that_warning_is_hidden():
    import logging

    from yolo_batch.rebuild import BatchSwitch, _QuietRestart, _StandIn, _SwitchBatch

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
