"""An auto-plus run that picks N trains exactly as the stock ``batch=N`` run: every task, verified or not.

Each run is a fresh ``yolo train`` process, as a user runs it, with ``seed=0 deterministic=True`` on CPU. The
plugin's ``candidates: [8]`` makes auto-plus pick 8; the stock run is ``batch=8`` with the plugin switched off.
Two epochs, the first with mosaic and warm-up, an optimizer step every batch (``nbs=8``), so that the data
pipeline's random streams, the optimizer Ultralytics builds after the decision (``optimizer=auto`` by
default), the warm-up and the loss's epoch-end update all count.
Compared: every column of results.csv but ``time``, as written; every tensor of last.pt with ``torch.equal``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from tests.conftest import TASK_MODELS, TASKS_84, fast_args, needs_84, run_yolo

pytestmark = pytest.mark.slow

PICK = 8
# nbs=8: an optimizer step every batch (2 per epoch on 16 images); one warm-up epoch, mosaic in the first epoch
RUN = {"epochs": 2, "close_mosaic": 1, "nbs": PICK, "warmup_epochs": 1, "deterministic": True}
STOCK_ENV = {"YOLO_BATCH_DISABLE": "1", "YOLO_BATCH_CONFIG": None, "YOLO_BATCH_OBSERVE": None}

CASES = [
    pytest.param(task, model, {}, id=task, marks=[needs_84] if task in TASKS_84 else [])
    for task, model in TASK_MODELS.items()
] + [
    pytest.param("detect", "yolo26n.yaml", {}, id="detect-yolo26", marks=needs_84),  # end-to-end loss, MuSGD-era
    pytest.param("detect", "yolo11n.yaml", {"multi_scale": 0.25, "optimizer": "SGD"}, id="detect-multiscale-sgd"),
]


def _train(data: Path, task: str, model: str, folder: Path, batch, extra: dict, env: dict) -> Path:
    args = fast_args(**RUN, **extra)
    r = run_yolo(
        "train", f"task={task}", f"model={model}", f"data={data}", f"batch={batch}", *args,
        f"project={folder}", "name=run", cwd=folder, env=env,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    return folder / "run"


@pytest.fixture(scope="module")
def stock_run(task_data, tmp_path_factory):
    """``stock_run(task, model, extra)``: the stock ``batch=8`` run's folder, trained once per case."""
    runs: dict[tuple, Path] = {}

    def get(task: str, model: str, extra: dict) -> Path:
        key = (task, model, tuple(sorted(extra.items())))
        if key not in runs:
            folder = tmp_path_factory.mktemp(f"stock-{task}")
            runs[key] = _train(task_data(task), task, model, folder, PICK, extra, STOCK_ENV)
        return runs[key]

    return get


def _results(run: Path) -> list[dict[str, str]]:
    with open(run / "results.csv", newline="") as f:
        rows = [{k.strip(): v.strip() for k, v in row.items() if k.strip() != "time"} for row in csv.DictReader(f)]
    assert len(rows) == RUN["epochs"]
    return rows


def _tensors(run: Path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(run / "weights" / "last.pt", map_location="cpu", weights_only=False)
    out = {}
    for part in ("model", "ema"):  # a finished run keeps the EMA as "model"; a resumable one keeps both
        if ckpt.get(part) is not None:
            out.update({f"{part}.{k}": v for k, v in ckpt[part].state_dict().items()})
    assert out, "last.pt holds no weights"
    return out


@pytest.mark.parametrize("verify", [True, False], ids=["verified", "unverified"])
@pytest.mark.parametrize(("task", "model", "extra"), CASES)
def test_auto_plus_run_is_the_stock_run_at_its_pick(task_data, stock_run, tmp_path, task, model, extra, verify):
    plugin = tmp_path / "plugin.yaml"
    plugin.write_text(f"candidates: [{PICK}]\nprobe:\n  verify: {str(verify).lower()}\n")
    env = {"YOLO_BATCH_CONFIG": str(plugin), "YOLO_BATCH_DISABLE": None, "YOLO_BATCH_OBSERVE": None}
    run = _train(task_data(task), task, model, tmp_path, "auto-plus", extra, env)
    decision = json.loads((run / "batch_decision.json").read_text())
    assert (decision["batch"], decision["task"]) == (PICK, task)
    assert (decision["verified_peak_bytes"] is not None) is verify  # the verification step ran, or did not
    stock = stock_run(task, model, extra)

    ours, theirs = _results(run), _results(stock)
    assert list(ours[0]) == list(theirs[0])
    for epoch, (a, b) in enumerate(zip(ours, theirs), 1):
        assert a == b, f"epoch {epoch}: " + ", ".join(f"{k} {a[k]} != {b[k]}" for k in a if a[k] != b[k])

    a, b = _tensors(run), _tensors(stock)
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"{len(differ)} of {len(a)} tensors of last.pt differ, first {differ[:3]}"
