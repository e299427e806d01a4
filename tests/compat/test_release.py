"""One Ultralytics release, as a user has it: what the README's "Ultralytics releases" table says of it holds.

``make compat`` runs this module once per release of ``releases.txt``, with ``YOLO_BATCH_COMPAT=VERSION`` and the
release installed in ``.compat/VERSION`` ahead of the environment's own (``target.py``); ``make test`` leaves it
out (``conftest.py``). Inside `SUPPORTED`: ``batch=auto-plus`` (ladder), ``auto-plus:speed`` and
``auto-plus:goodput`` each decide and their pick trains, ``yolo-batch plan`` prints a decision, and a stock run is
the same with the plugin on and off. Below it: ``batch=auto-plus`` is refused in one line, exit 2, and nothing
trains. The table's restart column says whether the ``_do_train`` lines `rebuild` steers are there.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import ultralytics

from tests.compat.releases import readme_rows
from tests.conftest import run_yolo, yolo_train
from tests.e2e.test_equality import STOCK_ENV, _results, _tensors, _train
from yolo_batch import port
from yolo_batch.activate import SUPPORTED, release, supported_range, unsupported

pytestmark = pytest.mark.slow

RELEASE = os.environ.get("YOLO_BATCH_COMPAT", "")
LOW, HIGH = SUPPORTED
INSIDE = LOW <= release(RELEASE) < HIGH
inside = pytest.mark.skipif(not INSIDE, reason=f"Ultralytics {RELEASE} is outside the supported range")
below = pytest.mark.skipif(INSIDE, reason=f"Ultralytics {RELEASE} is inside the supported range")
PLUGIN_ENV = {"YOLO_BATCH_DISABLE": None, "YOLO_BATCH_CONFIG": None, "YOLO_BATCH_OBSERVE": None}


def _restart_lines() -> str | None:
    """Why this release's out-of-memory restart is not the one `rebuild` steers (`port.check`), or None."""
    from ultralytics.models.yolo.detect import DetectionTrainer

    return port.check(DetectionTrainer).restarts


def _subprocess_release() -> str:
    code = "import sys, ultralytics; print(ultralytics.__version__, 'yolo_batch.activate' in sys.modules)"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_the_release_on_the_path_is_the_one_under_test():
    assert RELEASE and ultralytics.__version__ == RELEASE, f"{ultralytics.__file__} is {ultralytics.__version__}"
    assert _subprocess_release() == f"{RELEASE} True"  # the yolo processes too, with the startup hook


@inside
@pytest.mark.parametrize("value", ["auto-plus", "auto-plus:speed", "auto-plus:goodput"])
def test_auto_plus_decides_and_its_pick_trains(tiny_data, tmp_path, value):
    r = yolo_train(tiny_data, tmp_path, value, env=PLUGIN_ENV, epochs=2)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert "AutoBatch" not in out  # Ultralytics' own AutoBatch never ran
    decision = json.loads((tmp_path / "run" / "batch_decision.json").read_text(encoding="utf-8"))
    assert decision["value"] == value and decision["versions"]["ultralytics"] == RELEASE
    with open(tmp_path / "run" / "batch_effect.csv", newline="") as f:
        batches = [row["batch"] for row in csv.DictReader(f) if row["epoch"].isdigit()]
    assert batches == [str(decision["batch"])] * 2  # both epochs trained at the pick
    # where the port finds other restart lines (8.3, 8.4 before 8.4.183), one line says what is off, and why
    off = "out-of-memory step-downs after the first epoch are off: "
    assert (off in out) == (_restart_lines() is not None), out[-3000:]


@inside
def test_plan_prints_a_decision(tiny_data, tmp_path):
    tool = str(Path(sys.executable).with_name("yolo-batch"))
    args = [tool, "plan", "model=yolo11n.yaml", f"data={tiny_data}", "imgsz=64", "amp=False", "workers=0"]
    r = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert any(line.startswith("batch=") and " (ladder): " in line for line in r.stdout.splitlines()), r.stdout
    assert list(tmp_path.iterdir()) == []  # no run folder


@inside
def test_a_stock_run_is_the_same_with_the_plugin_on_and_off(task_data, tmp_path):
    on, off = tmp_path / "on", tmp_path / "off"
    on.mkdir(), off.mkdir()
    a = _train(task_data("detect"), "detect", "yolo11n.yaml", on, 4, {}, PLUGIN_ENV)
    b = _train(task_data("detect"), "detect", "yolo11n.yaml", off, 4, {}, STOCK_ENV)
    assert _results(a) == _results(b)
    ta, tb = _tensors(a), _tensors(b)
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    assert not (a / "batch_decision.json").exists()


@inside
def test_the_readme_row_of_this_release_says_what_holds():
    """Each feature column says yes (the tests above prove it); the restart column, whether `rebuild`'s lines hold
    (`port.check`, the same check a run makes at attach time)."""
    row = readme_rows()[RELEASE]
    holds = _restart_lines() is None
    assert row[:3] == ["yes", "yes", "yes"], row
    assert row[3].startswith("yes" if holds else "no"), f"the restart lines {'hold' if holds else 'differ'}: {row}"


@below
def test_auto_plus_is_refused_in_one_line_and_nothing_trains(tiny_data, tmp_path):
    r = yolo_train(tiny_data, tmp_path, "auto-plus", env=PLUGIN_ENV)
    lines = [line for line in (r.stdout + r.stderr).splitlines() if line.strip()]
    assert r.returncode == 2, "\n".join(lines[-30:])
    assert len(lines) == 1 and f"Ultralytics {RELEASE}" in lines[0] and supported_range() in lines[0], lines
    assert list(tmp_path.iterdir()) == []  # no run folder, no AutoBatch


@below
def test_plan_is_refused_in_the_same_line(tiny_data, tmp_path):
    tool = str(Path(sys.executable).with_name("yolo-batch"))
    args = [tool, "plan", "model=yolo11n.yaml", f"data={tiny_data}", "imgsz=64", "workers=0"]
    r = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    lines = [line for line in (r.stdout + r.stderr).splitlines() if line.strip()]
    assert r.returncode == 2 and len(lines) == 1 and f"Ultralytics {RELEASE} is outside" in lines[0], lines
    assert list(tmp_path.iterdir()) == []


@below
def test_a_sweep_with_an_auto_plus_value_is_refused_before_any_run_trains(tiny_data, tmp_path):
    """Found by make compat's first run on merged main: plan printed the plugin-off line before its refusal, and
    a sweep trained its integer runs before its auto-plus run was refused."""
    tool = str(Path(sys.executable).with_name("yolo-batch"))
    args = [tool, "sweep", "model=yolo11n.yaml", f"data={tiny_data}", "imgsz=64", "batches=4,auto-plus", "epochs=1",
            f"project={tmp_path / 'sweep'}"]  # fmt: skip
    r = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    lines = [line for line in (r.stdout + r.stderr).splitlines() if line.strip()]
    assert r.returncode == 2 and len(lines) == 1 and f"Ultralytics {RELEASE} is outside" in lines[0], lines
    assert "sweep integer batches only" in lines[0] and list(tmp_path.iterdir()) == []


@below
def test_a_stock_run_is_left_alone_with_one_warning_line(tiny_data, tmp_path):
    r = run_yolo("train", "model=yolo11n.yaml", f"data={tiny_data}", "batch=4", "imgsz=64", "epochs=1", "workers=0",
                 "plots=False", f"project={tmp_path}", "name=run", cwd=tmp_path, env=PLUGIN_ENV)  # fmt: skip
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert [line for line in r.stderr.splitlines() if line.startswith("yolo-batch")] == [
        f"yolo-batch: {unsupported(RELEASE)}; auto-plus is off and training is left alone"
    ]
    assert (tmp_path / "run" / "results.csv").is_file() and not (tmp_path / "run" / "batch_decision.json").exists()
