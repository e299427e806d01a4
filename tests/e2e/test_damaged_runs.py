"""Damaged files in real runs (issue 21): `yolo train`, `yolo-batch plan`, `cache`, `compare`, `sweep` and a resume.

Each damage here crashed its command on the code before `yolo_batch.core.readback`; each now gives one line naming
the file, and the run goes on (or, for sweep.yaml, is refused before anything is written). The property tests of
`tests/test_damaged_files.py` damage the same files every way, calling the readers directly.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ultralytics import YOLO

from tests.conftest import run_yolo, train_in_process, yolo_train
from yolo_batch import AutoPlus
from yolo_batch.core.readback import read_csv, read_yaml
from yolo_batch.decide import lawcache
from yolo_batch.record import effect, records

pytestmark = pytest.mark.slow
TOOL = str(Path(sys.executable).with_name("yolo-batch"))


def tool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([TOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False)


def lines_naming(path: Path, text: str) -> list[str]:
    return [line for line in text.splitlines() if str(path) in line]


def test_a_damaged_law_cache_entry_is_one_line_in_train_plan_and_cache(tiny_data, tmp_path):
    from yolo_batch.tools.plan import plan

    r = yolo_train(tiny_data, tmp_path, "auto-plus")  # saves this set-up's law
    assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path / "run"
    [entry] = lawcache.folder().glob("*.json")
    # a real run's files read back whole
    lawcache.read_entry(entry), records.read_decision(run / "batch_decision.json")
    effect.read_effect(run / "batch_effect.csv"), read_csv(run / "results.csv"), read_yaml(run / "args.yaml", dict)
    real = json.loads(entry.read_text())

    entry.write_text("null")  # issue 21: AttributeError: 'NoneType' object has no attribute 'get'
    r = tool("cache", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.splitlines()[0].startswith("0 cached law(s)")
    assert lines_naming(entry, r.stdout) == [f"{entry} is damaged: the file is null, not a mapping; left out (a "
                                             "decision replaces it; `yolo-batch cache clear` removes it)"]  # fmt: skip

    entry.write_text("[1, 2]")  # issue 21: TypeError: 'list' object is not a mapping
    record, _ = plan(
        ["model=yolo11n.yaml", f"data={tiny_data}", "batch=auto-plus", "imgsz=64", "amp=False", "workers=0"]
    )
    assert record["cache"]["detail"].startswith("the entry was damaged (the file is [1, 2], not a mapping)")
    assert lawcache.read_entry(entry)["pick"] == record["batch"]  # the decision replaced it

    entry.write_text(json.dumps({k: v for k, v in real.items() if k != "check"}))  # issue 21: KeyError: 'check'
    r = run_yolo(*yolo_train_args(tiny_data, tmp_path, "again"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    [line] = lines_naming(entry, r.stdout + r.stderr)
    assert "is damaged: check is missing; the probe decides and replaces it" in line
    assert (tmp_path / "again" / "weights" / "last.pt").is_file()
    assert "check" in lawcache.read_entry(entry)


def yolo_train_args(data: Path, tmp_path: Path, name: str) -> list[str]:
    fast = ["imgsz=64", "epochs=1", "amp=False", "plots=False", "workers=0", "seed=0"]
    return [
        "train",
        "model=yolo11n.yaml",
        f"data={data}",
        "batch=auto-plus",
        *fast,
        f"project={tmp_path}",
        f"name={name}",
    ]


class _Stop(Exception):
    pass


def test_a_resume_with_a_damaged_batch_decision_json_goes_on_from_its_checkpoint(tiny_data, tmp_path, caplog):
    def stop(trainer):
        if trainer.epoch == 1:
            raise _Stop  # at the start of epoch 2: epoch 1 is saved and logged, as by a kill

    model = AutoPlus(candidates=[8]).register(YOLO("yolo11n.yaml"))
    model.add_callback("on_train_epoch_start", stop)
    with pytest.raises(_Stop):
        train_in_process(model, tiny_data, tmp_path, epochs=2)
    run = tmp_path / "run"
    decision = run / "batch_decision.json"
    data = json.loads(decision.read_text())
    data["history"][0]["from_epoch"] = "1"  # a TypeError at on_train_start before: its hook was skipped
    decision.write_text(json.dumps(data))
    (run / "batch_effect.csv").write_bytes(b"\x80\x81 not text")  # a UnicodeDecodeError before
    assert yaml.safe_load((run / "args.yaml").read_text())["batch"] == "auto-plus"
    caplog.clear()
    YOLO(str(run / "weights" / "last.pt")).train(resume=True)
    # what the user asked for stays in args.yaml (with the history left out, it said the checkpoint's batch: 8)
    assert yaml.safe_load((run / "args.yaml").read_text())["batch"] == "auto-plus"
    log = caplog.text
    assert "skipped" not in log
    [line] = lines_naming(decision, log)
    assert "history[0].from_epoch is '1', not an integer; its earlier choices are left out" in line
    [line] = lines_naming(run / "batch_effect.csv", log)
    assert "not UTF-8 text" in line and "its earlier rows are left out" in line
    assert "resuming at batch=8 from the checkpoint" in log
    assert [r["epoch"] for r in effect.read_effect(run / "batch_effect.csv")] == ["2", "final"]


def test_compare_reports_a_run_with_a_damaged_batch_effect_csv_with_one_line(tiny_data, tmp_path):
    r = yolo_train(tiny_data, tmp_path, "auto-plus:fit")
    assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path / "run"
    (run / "batch_effect.csv").write_text("epoch,batch\n1,32,extra\n")  # AttributeError: 'NoneType' ... 'strip'
    r = tool("compare", str(run), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr.splitlines() == [
        f"{run / 'batch_effect.csv'} is damaged: line 2 has more cells than the header; left out"
    ]
    assert (tmp_path / "comparison.csv").is_file()
    (run / "results.csv").write_bytes(b"\xff\xfe")  # a UnicodeDecodeError before
    (tmp_path / "comparison.csv").unlink()
    r = tool("compare", str(run), cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr == (
        f"yolo-batch: error: compare: {run / 'results.csv'} is damaged: not UTF-8 text (byte 0); nothing to report "
        "for this run\n"
    )
    assert not (tmp_path / "comparison.csv").exists()


def test_a_sweep_with_a_damaged_sweep_yaml_is_refused_in_one_line(tiny_data, tmp_path):
    from yolo_batch.tools.sweep import plan
    from yolo_batch.tools.sweep_state import write_record

    project = tmp_path / "sweep"
    words = ["model=yolo11n.yaml", f"data={tiny_data}", "batches=8", "epochs=1", f"project={project}"]
    recipe, batches, _ = plan(words)
    write_record(project, recipe, batches)  # the sweep's own record, then edited: a TypeError before
    text = (project / "sweep.yaml").read_text()
    (project / "sweep.yaml").write_text(text.split("batches:")[0] + "batches: 16\n")
    r = tool("sweep", *words, cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr == (
        f"yolo-batch: error: sweep: {project / 'sweep.yaml'} is damaged: batches is 16, not a list of items; "
        "remove it or use a new project=\n"
    )
    assert [p.name for p in project.iterdir()] == ["sweep.yaml"]
