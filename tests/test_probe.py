"""`probe.borrowed` puts back everything a probe step can change, on a hand-built trainer (no training)."""

from __future__ import annotations

import random
import types

import numpy as np
import pytest
import torch

from yolo_batch.core.spec import AutoPlusError
from yolo_batch.decide.probe import WORST_CASE, borrowed, check_task


class _Head(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.bn = torch.nn.BatchNorm2d(4)
        self.register_buffer("anchors", torch.zeros(2), persistent=False)  # not in state_dict
        self.shape = None  # a plain cache, as Ultralytics' heads keep


def _trainer():
    model = torch.nn.Sequential(_Head())
    args = types.SimpleNamespace(optimizer="auto", lr0=0.01, warmup_bias_lr=0.1, multi_scale=0.0, cache=False)
    return types.SimpleNamespace(model=model, args=args, optimizer=None, ema=None, scaler=None, loss=None)


def _state(t):
    head = t.model[0]
    return {
        "weights": {k: v.clone() for k, v in t.model.state_dict().items()},
        "anchors": head.anchors.clone(),
        "tensors": [id(x) for x in (*t.model.parameters(), *t.model.buffers())],
        "args": dict(vars(t.args)),
        "trainer": dict(vars(t)),
        "head": {k: v for k, v in vars(head).items() if not k.startswith("_")},
        "rng": (random.getstate(), np.random.get_state()[1].tolist(), torch.get_rng_state()),
        "switches": (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(), torch.is_grad_enabled()),
    }


def test_borrowed_restores_every_piece_of_state():
    t = _trainer()
    t.model.train()
    before = _state(t)
    with borrowed(t):
        head = t.model[0]
        loss = head.bn(head.conv(torch.randn(2, 3, 8, 8))).sum()  # BN running stats and num_batches_tracked move
        loss.backward()
        with torch.no_grad():
            head.conv.weight.add_(1.0)
            head.anchors.add_(5.0)
        head.shape = (8, 8)
        head.criterion = object()  # built lazily by the first loss call
        t.model.eval()
        t.args.optimizer, t.args.lr0, t.args.warmup_bias_lr = "AdamW", 0.001, 0.0  # build_optimizer(name="auto")
        t.args.multi_scale, t.args.extra = 0, 1
        t.optimizer, t.ema, t.tloss = object(), object(), 3.0
        random.random(), np.random.rand(), torch.rand(1)
        torch.set_num_threads(torch.get_num_threads() + 1)
        torch.use_deterministic_algorithms(not before["switches"][1])
    after = _state(t)
    assert all(torch.equal(before["weights"][k], after["weights"][k]) for k in before["weights"])
    assert torch.equal(before["anchors"], after["anchors"]) and before["tensors"] == after["tensors"]
    assert after["args"] == before["args"]
    assert after["trainer"].keys() == before["trainer"].keys()
    assert all(after["trainer"][k] is before["trainer"][k] for k in before["trainer"])
    assert after["head"] == before["head"] and not hasattr(t.model[0], "criterion")
    assert t.model.training and all(p.grad is None for p in t.model.parameters())
    assert after["rng"][0] == before["rng"][0] and after["rng"][1] == before["rng"][1]
    assert torch.equal(after["rng"][2], before["rng"][2])
    assert after["switches"] == before["switches"]


def test_borrowed_restores_after_an_error():
    t = _trainer()
    weights = {k: v.clone() for k, v in t.model.state_dict().items()}
    with pytest.raises(RuntimeError, match="probe failed"), borrowed(t):
        with torch.no_grad():
            t.model[0].conv.weight.zero_()
        t.args.lr0 = 1.0
        raise RuntimeError("probe failed")
    assert t.args.lr0 == 0.01
    assert all(torch.equal(weights[k], v) for k, v in t.model.state_dict().items())


@pytest.mark.parametrize("task", list(WORST_CASE))
def test_served_tasks_pass(task):
    check_task(task)


@pytest.mark.parametrize("task", ["track", "keypoints3d"])
def test_other_tasks_are_refused_in_one_line(task):
    with pytest.raises(AutoPlusError, match=rf"does not serve task='{task}'; it serves detect, obb, .*batch=16$"):
        check_task(task)
