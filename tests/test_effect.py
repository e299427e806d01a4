"""The effect log's pieces: the gradient-noise estimator on a problem with a known answer, the tap, the CSV."""

from __future__ import annotations

import os

import pytest
import torch

from yolo_batch.record.effect import EffectLog, GradientNoise, GradientTap, atomic_write, read_csv


def least_squares(n=4096, d=8, seed=0):
    """Per-sample gradients of 0.5 (x.w - y)^2 at a fixed w, and the exact tr(Sigma) / |G|^2."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = x @ torch.randn(d, generator=g) + 0.5 * torch.randn(n, generator=g)
    w = torch.zeros(d)
    per_sample = (x @ w - y)[:, None] * x  # (n, d)
    mean = per_sample.mean(0)
    trace = ((per_sample - mean) ** 2).sum(1).mean()
    return x, y, w, per_sample, float(trace / mean.pow(2).sum())


def test_estimator_recovers_the_exact_noise_scale_of_least_squares():
    _, _, _, per_sample, truth = least_squares()
    g = torch.Generator().manual_seed(1)
    noise = GradientNoise(beta=0.995)
    for _ in range(3000):
        small = per_sample[torch.randint(0, len(per_sample), (8,), generator=g)].mean(0)
        big = per_sample[torch.randint(0, len(per_sample), (64,), generator=g)].mean(0)
        noise.update(float(small.pow(2).sum()), 8, float(big.pow(2).sum()), 64)
    assert noise.value == pytest.approx(truth, rel=0.15)
    assert f"~{noise.value:.0f}" in noise.reading(16)


@pytest.mark.parametrize("accumulate", [pytest.param(4, id="accumulated"), pytest.param(1, id="consecutive-steps")])
def test_tap_on_a_real_backward_matches_the_truth(accumulate):
    """Drive the tap as Ultralytics does: loss x batch, k backwards, then the (here frozen: lr 0) step."""
    x, y, _, _, truth = least_squares()
    model = torch.nn.Linear(x.shape[1], 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    noise = GradientNoise(beta=0.995)
    tap = GradientTap(model.parameters(), noise)
    g, batch, stepped = torch.Generator().manual_seed(2), 16, False
    for i in range(4000):
        idx = torch.randint(0, len(x), (batch,), generator=g)
        loss = 0.5 * ((model(x[idx]).squeeze(1) - y[idx]) ** 2).mean() * batch  # Ultralytics: mean loss x batch
        loss.backward()
        stepped = (i + 1) % accumulate == 0
        if stepped:
            tap.before_step(batch, scale=1.0)
            model.zero_grad()  # lr 0: parameters stay where the truth was computed
        tap.after_backward(stepped, batch, scale=1.0)
    assert noise.samples > 500
    assert noise.value == pytest.approx(truth, rel=0.2)


def test_no_estimate_before_data_or_when_unavailable():
    n = GradientNoise()
    assert n.value is None and "not available" in n.reading(64)
    n.update(small_sq=1.0, b_small=8, big_sq=1.0, b_big=16)  # no noise at all: tr(Sigma) = 0
    assert n.value is None


def test_effect_log_rewrites_whole_rows_and_replaces_a_repeated_epoch(tmp_path):
    log = EffectLog(tmp_path / "batch_effect.csv")
    log.add({"epoch": 1, "batch": 64, "metrics/mAP50(B)": 0.1234567})
    log.add({"epoch": 2, "batch": 32, "oom_events": 1})
    log.add({"epoch": 2, "batch": 16, "oom_events": 2})  # the same epoch again (redone): replaced, not doubled
    rows = read_csv(tmp_path / "batch_effect.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert rows[0]["metrics/mAP50(B)"] == "0.123457" and rows[0]["oom_events"] == ""
    assert rows[1]["batch"] == "16" and rows[1]["oom_events"] == "2"
    assert os.listdir(tmp_path) == ["batch_effect.csv"]  # no temporary file left behind


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "f.json"
    atomic_write(target, "old")

    def boom(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, "new")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.json"]
