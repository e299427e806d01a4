"""The ``yolo-batch`` command: usage, one-line errors, make-data, defaults, and the demo end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from yolo_batch.effect import read_csv
from yolo_batch.spec import BatchSpec

TOOL = str(Path(sys.executable).with_name("yolo-batch"))


def run(*args: str, cwd: Path | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([TOOL, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout, check=False)


def test_usage_lists_the_commands():
    r = run()
    assert r.returncode == 0
    for command in ("demo", "make-data", "compare", "sweep", "defaults"):
        assert f"\n  {command} " in r.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["swep"], "unknown command 'swep' (did you mean 'sweep'?)", id="misspelt-command"),
        pytest.param(["make-data", "n_trian=5"], "unknown argument 'n_trian' (did you mean 'n_train'?)", id="bad-key"),
        pytest.param(["make-data", "imgsz=big"], "make-data: imgsz='big' is invalid", id="bad-int"),
        pytest.param(["make-data", "dense=maybe"], "dense='maybe' is invalid: expected true or false", id="bad-bool"),
        pytest.param(["make-data", "classes=12"], "classes=12 is invalid", id="out-of-range"),
        pytest.param(["demo", "epochs"], "argument 'epochs' must be key=value", id="no-equals"),
    ],
)
def test_bad_arguments_get_one_line(tmp_path, args, message):
    r = run(*args, cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("yolo-batch: error: ")
    assert message in r.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_make_data_writes_a_yolo_dataset(tmp_path):
    r = run("make-data", f"out={tmp_path / 'd'}", "n_train=4", "n_val=2", "imgsz=64", "seed=3")
    assert r.returncode == 0, r.stderr
    data = Path(r.stdout.strip())
    assert data == tmp_path / "d" / "data.yaml" and yaml.safe_load(data.read_text())["train"] == "images/train"
    assert len(list((tmp_path / "d" / "images" / "train").iterdir())) == 4


def test_defaults_print_the_shipped_settings():
    r = run("defaults")
    printed = yaml.safe_load(r.stdout)
    shipped = yaml.safe_load((Path(__file__).parents[1] / "cfg" / "auto_plus.yaml").read_text())
    assert printed == shipped
    assert printed["policy"] == BatchSpec().policy and printed["probe"]["batches"] == list(BatchSpec().probe_batches)


@pytest.mark.slow
def test_demo_trains_to_a_useful_map(tmp_path):
    r = run("demo", f"out={tmp_path / 'demo'}", cwd=tmp_path, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    final = read_csv(tmp_path / "demo" / "train" / "batch_effect.csv")[-1]
    assert final["epoch"] == "final" and float(final["metrics/mAP50(B)"]) > 0.2
    assert "<- pick" in r.stdout and "Final metrics (best.pt on the validation set):" in r.stdout
    assert " train model=yolo11n.yaml " in r.stdout and "batch=auto-plus" in r.stdout  # the stock yolo command
