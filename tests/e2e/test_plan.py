"""``yolo-batch plan``: the decision in the trainer's own set-up, then a stop before the first epoch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import fast_args

TOOL = str(Path(sys.executable).with_name("yolo-batch"))


def plan(*args: str, cwd: Path, tmp: Path, **env_over: str) -> subprocess.CompletedProcess:
    """Run ``yolo-batch plan`` with its temporary files kept under ``tmp`` (so the test sees what is left)."""
    env = {**os.environ, "TMPDIR": str(tmp), **env_over}
    return subprocess.run([TOOL, "plan", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def dirs(tmp_path):
    cwd, tmp = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    tmp.mkdir()
    return cwd, tmp


def ours(tmp: Path) -> list[Path]:
    """What yolo-batch left in the temporary folder (torch may keep its own caches there)."""
    return [p for p in tmp.iterdir() if p.name.startswith("yolo-batch")]


def _train_words(data) -> list[str]:
    return ["model=yolo11n.yaml", f"data={data}", *[a for a in fast_args() if not a.startswith("epochs")]]


def test_plan_prints_the_decision_and_the_what_if_table_and_leaves_nothing(tiny_data, dirs):
    cwd, tmp = dirs
    r = plan(*_train_words(tiny_data), "batch=auto-plus:fit", cwd=cwd, tmp=tmp)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout.splitlines()
    assert out[0].startswith("cpu usable ") and "memory law" in out[0]
    assert any(line.startswith("batch=32 (fit): largest that fits is 32 (capped by the training set") for line in out)
    i = next(i for i, line in enumerate(out) if line.startswith("what if: other cpu memory sizes, extrapolated"))
    assert out[i + 1].split() == ["memory", "budget", "ladder", "fit"]
    assert [line.split()[0] for line in out[i + 2 : i + 8]] == ["8", "16", "32", "64", "128", "256"]
    assert out[i + 8 :] == [
        "* decided by the training set, 32 images, not by memory: memory would allow a larger batch"
    ]
    assert "Epoch" not in r.stdout + r.stderr  # no epoch started
    assert list(cwd.iterdir()) == [] and ours(tmp) == []  # no run folder, no temporary folder left


def test_plan_json_and_project_name_write_the_record(tiny_data, dirs):
    cwd, tmp = dirs
    out = cwd / "plans"
    r = plan(*_train_words(tiny_data), f"project={out}", "name=first", "--json", cwd=cwd, tmp=tmp)
    assert r.returncode == 0, r.stderr[-2000:]
    record = json.loads(r.stdout)  # stdout holds the JSON alone
    assert record["batch"] == 32 and record["policy"] == "ladder" and record["value"] == "auto-plus"
    assert [row["total_gib"] for row in record["what_if"]] == [8, 16, 32, 64, 128, 256]
    assert sorted(p.name for p in (out / "first").iterdir()) == ["batch_decision.json"]
    assert json.loads((out / "first" / "batch_decision.json").read_text()) == record
    assert ours(tmp) == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        pytest.param(["batch=16"], "plan: batch=16 is not an auto-plus value", id="integer-batch"),
        pytest.param(["batch=auto-plus:fitt"], "unknown policy 'fitt' (did you mean 'fit'?)", id="bad-policy"),
        pytest.param(["device=0,1"], "plan: device=0,1 names several devices", id="several-devices"),
        pytest.param(["resume=True"], "plan: resume= does not apply", id="resume"),
        pytest.param(["--yaml"], "unrecognized arguments: --yaml", id="bad-option"),
        pytest.param(["epochs"], "plan: argument 'epochs' must be key=value", id="no-equals"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tiny_data, dirs, extra, message):
    cwd, tmp = dirs
    r = plan(*_train_words(tiny_data), *extra, cwd=cwd, tmp=tmp)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("yolo-batch: error: ")
    assert message in r.stderr and "Traceback" not in r.stderr
    assert list(cwd.iterdir()) == [] and ours(tmp) == []


def test_plan_needs_a_model(dirs):
    cwd, tmp = dirs
    r = plan("data=x.yaml", cwd=cwd, tmp=tmp)
    assert r.returncode == 2 and "plan: model= is required" in r.stderr


def test_plan_help(dirs):
    r = plan("--help", cwd=dirs[0], tmp=dirs[1])
    assert r.returncode == 0 and r.stdout.startswith("usage: yolo-batch plan model=... data=...")
    assert "--json" in r.stdout and "batch=auto-plus" in r.stdout


def test_plan_opens_no_logger_run(tiny_data, dirs, loggers_on_path):
    """Ultralytics' fresh settings turn the integrations on (DVCLive, MLflow...): a plan must not log a run."""
    cwd, tmp = dirs
    fresh = tmp / "fresh-settings"  # Ultralytics' defaults, as a new user has them
    r = plan(*_train_words(tiny_data), cwd=cwd, tmp=tmp, YOLO_CONFIG_DIR=str(fresh))
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((fresh / "Ultralytics" / "settings.json").read_text())["dvc"] is True
    assert list(cwd.iterdir()) == []  # no dvclive/, mlruns/, wandb/ ... left by a logger


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_plan_aimed_at_an_existing_run_leaves_it_byte_identical(tiny_data, dirs):
    """issue 14: plan project=P name=N where N holds a run: a numbered sibling as yolo train, never the run's files."""
    from tests.conftest import yolo_train

    cwd, tmp = dirs
    r = yolo_train(tiny_data, cwd, "8")  # a stock run in cwd/run: weights/, results.csv, args.yaml
    assert r.returncode == 0, r.stderr[-2000:]
    run = cwd / "run"
    before = _tree(run)
    assert {"args.yaml", "results.csv", "weights/last.pt"} <= set(before)
    words = _train_words(tiny_data)
    r = plan(*words, f"project={cwd}", "name=run", cwd=cwd, tmp=tmp)
    assert r.returncode == 0, r.stderr[-2000:]
    (sibling,) = set(cwd.iterdir()) - {run}  # Ultralytics' own numbering of a taken name (8.4: run-2)
    assert sibling.name.startswith("run") and sibling.name != "run"
    assert r.stdout.splitlines()[-1] == f"wrote {sibling / 'batch_decision.json'}"
    assert sorted(p.name for p in sibling.iterdir()) == ["batch_decision.json"]
    r = plan(*words, f"project={cwd}", "name=run", "exist_ok=True", cwd=cwd, tmp=tmp)
    assert r.returncode == 2 and r.stderr.splitlines() == [
        f"yolo-batch: error: plan: {run} holds a training run (weights, results.csv, args.yaml); plan never writes "
        "into another run's folder: leave exist_ok out (plan then numbers a new folder, as yolo train does) or "
        "choose another name="
    ]
    assert _tree(run) == before  # byte-identical: no batch_decision.json of a policy the run never used


@pytest.mark.slow
def test_min_batch_above_the_training_set_names_the_training_set(tiny_data, dirs):
    """Before: "batch 100 needs 1.02 GiB > budget 21.00 GiB" and advice about memory."""
    cwd, tmp = dirs
    config = tmp / "plugin.yaml"
    config.write_text("min_batch: 100\n")
    r = plan(*_train_words(tiny_data), cwd=cwd, tmp=tmp, YOLO_BATCH_CONFIG=str(config))
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.splitlines()[-1] == (
        "yolo-batch: error: no batch fits: min_batch 100 is above the training set, 32 images: no batch can be "
        "picked; lower min_batch to 32 or less, or train on more images"
    )
    assert "Traceback" not in r.stderr and list(cwd.iterdir()) == []
