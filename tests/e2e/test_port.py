"""The port's check on real runs: a release whose restart differs trains as stock; one that never asks
``auto_batch`` refuses ``batch=auto-plus`` in one line before anything is written (issue 20)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from ultralytics import YOLO

from tests.conftest import FAST, needs_84, train_in_process
from tests.test_port import no_auto_batch, no_restart_cap
from yolo_batch import AutoPlusError, port
from yolo_batch.activate import supported_range

pytestmark = pytest.mark.slow


@needs_84  # on 8.3 (no in-epoch restart) every auto-plus run takes this path
def test_a_release_whose_restart_differs_trains_as_stock_at_the_decided_batch(tiny_data, tmp_path, caplog):
    model = YOLO("yolo11n.yaml")
    gates = []
    model.add_callback("on_train_batch_start", lambda t: gates.append((t.epoch, t.start_epoch)))
    train_in_process(model, tiny_data, tmp_path, batch="auto-plus", epochs=2, trainer=no_restart_cap())
    trainer, run = model.trainer, tmp_path / "run"
    decision = json.loads((run / "batch_decision.json").read_text())
    assert trainer.batch_size == trainer.args.batch == decision["batch"]
    assert set(gates) == {(0, 0), (1, 0)}  # Ultralytics' own gate: the second epoch would not restart (stock)
    assert "_build_train_pipeline" not in vars(trainer)  # nothing steers the restart
    lines = [line for line in caplog.text.splitlines() if "after the first epoch are off" in line]
    assert len(lines) == 1 and lines[0].endswith(
        f"out-of-memory step-downs after the first epoch are off: Ultralytics {port.check(trainer).release}'s "
        "out-of-memory restart is not the one yolo-batch steers (_do_train has no 'if epoch > self.start_epoch or "
        "self._oom_retries >= 3 or RANK != -1:' where the plugin expects it); training as stock at the decided batch"
    )
    assert len((run / "results.csv").read_text().splitlines()) == 3  # both epochs trained


def test_a_release_that_never_asks_auto_batch_refuses_auto_plus_before_the_run_folder(tiny_data, tmp_path):
    model = YOLO("yolo11n.yaml")
    words = re.escape(f"pip install 'ultralytics{supported_range()}'")
    with pytest.raises(
        AutoPlusError, match=r"cannot decide on Ultralytics \S+: its BaseTrainer._setup_train .*" + words
    ):
        train_in_process(model, tiny_data, tmp_path, batch="auto-plus", trainer=no_auto_batch())
    assert not (tmp_path / "run").exists()


def test_the_yolo_command_refuses_it_in_one_line_with_exit_2(tiny_data, tmp_path):
    """``yolo train`` on a release whose ``_setup_train`` never asks ``auto_batch`` (simulated: the port's lines)."""
    args = " ".join(f"{k}={v}" for k, v in {**FAST, "batch": "auto-plus", "project": tmp_path, "name": "run"}.items())
    code = (
        "from yolo_batch.port import fingerprint; fingerprint.DECIDES = ('self.auto_batch_of_another_release()',);"
        f"from ultralytics.cfg import entrypoint; entrypoint('train model=yolo11n.yaml data={tiny_data} {args}')"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=os.environ)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr[-2000:]
    assert lines[0].startswith("yolo-batch: error: batch='auto-plus' cannot decide on Ultralytics ")
    assert f"pip install 'ultralytics{supported_range()}'" in lines[0]
    assert not (tmp_path / "run").exists()
