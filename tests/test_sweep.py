"""``yolo-batch sweep``: argument errors, the run states, reuse/resume/restart with a fake ``yolo train``, and
two short real sweeps (marked slow)."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import FAST, running
from yolo_batch.core.spec import AutoPlusError
from yolo_batch.record.effect import read_csv
from yolo_batch.tools import cli, sweep, sweep_command, sweep_state

HEAD = "epoch,time,train/box_loss,train/cls_loss,train/dfl_loss,metrics/mAP50(B),metrics/mAP50-95(B)\n"


def results(run: Path, epochs: range) -> None:
    run.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"{e},{e * 2.0},1,1,1,0.1,0.05\n" for e in epochs)
    (run / "results.csv").write_text(HEAD + rows)


def checkpoint(run: Path, epoch: int | None, name: str = "last.pt") -> None:
    """A stand-in for an Ultralytics checkpoint: only ``epoch`` (0-based; -1 once finalised); None: torn."""
    import torch

    (run / "weights").mkdir(parents=True, exist_ok=True)
    if epoch is None:
        (run / "weights" / name).write_bytes(b"torn")
    else:
        torch.save({"epoch": epoch, "train_args": {"batch": 4}}, run / "weights" / name)


class FakeYolo:
    """Stands in for ``run_child`` of ``yolo train``: records each command and writes a finished run."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.calls: list[list[str]] = []
        self.envs: list[dict[str, str]] = []
        self.fail_at = fail_at
        self.seen_before: list[bool] = []  # did the run folder exist when training started?

    def __call__(self, cmd, env):
        self.calls.append(list(cmd))
        self.envs.append(env)
        assert env["YOLO_OFFLINE"] == "1"
        if self.fail_at == len(self.calls):
            return 1
        words = dict(w.split("=", 1) for w in cmd if "=" in w)
        if "resume" in cmd:
            run = Path(words["model"]).parents[1]
            start = sweep_state._checkpoint_epoch(Path(words["model"])) + 2  # as Ultralytics: the epoch after last.pt's
            self.seen_before.append(True)
            with open(run / "results.csv", "a") as f:  # appends, as Ultralytics does on resume
                f.writelines(f"{e},1.0,1,1,1,0.1,0.05\n" for e in range(start, 3))
            return 0
        run = Path(words["project"]) / words["name"]
        self.seen_before.append(run.exists())
        results(run, range(1, int(words["epochs"]) + 1))
        checkpoint(run, -1)
        (run / "args.yaml").write_text(f"batch: {words['batch'] if words['batch'].isdigit() else -1}\n")
        return 0


def base(project: Path, **over) -> list[str]:
    args = {
        "model": "yolo11n.yaml",
        "data": "coco8.yaml",  # among the files Ultralytics ships: a missing data= is refused
        "batches": "4,8",
        "epochs": 2,
        "imgsz": 64,
        "project": project,
        **over,
    }
    return [f"{k}={v}" for k, v in args.items() if v is not None]


@pytest.fixture()
def fake(monkeypatch) -> FakeYolo:
    f = FakeYolo()
    monkeypatch.setattr(sweep, "run_child", f)
    return f


@pytest.mark.parametrize(
    ("over", "expect"),
    [
        pytest.param({"model": None}, "missing model=; usage: yolo-batch sweep", id="no-model"),
        pytest.param({"data": None, "epochs": None}, "missing data=, epochs=", id="no-data-no-epochs"),
        pytest.param({"batch": 16}, "batch= is set by the sweep itself; list the batches in batches=", id="batch"),
        pytest.param({"name": "x"}, "name= is set by the sweep itself", id="name"),
        pytest.param({"time": 1}, "time= is set by the sweep itself; a sweep compares runs of equal epochs", id="time"),
        pytest.param({"batches": "16,0"}, "0 is not a batch; each must be an integer >= 1 or an auto-plus", id="zero"),
        pytest.param({"batches": "16,0.5"}, "'0.5' is not a batch", id="fraction"),
        pytest.param({"batches": "16,auto-plsu"}, "did you mean 'auto-plus'", id="misspelt-auto-plus"),
        pytest.param({"batches": "auto-plus:fitt"}, "unknown policy 'fitt' (did you mean 'fit'?)", id="bad-policy"),
        pytest.param({"batches": "16,16"}, "batch 16 is listed twice", id="twice"),
        pytest.param(
            {"batches": "auto-plus,16,auto-plus:ladder"},
            "sweep: batches='auto-plus,16,auto-plus:ladder' is invalid: auto-plus and auto-plus:ladder are the same "
            "run (policy ladder, utilization 0.9); list it once",
            id="default-policy-named",
        ),
        pytest.param(
            {"batches": "auto-plus:fit:0.8,auto-plus:fit:0.80"},
            "auto-plus:fit:0.8 and auto-plus:fit:0.80 are the same run (policy fit, utilization 0.8); list it once",
            id="fraction-written-twice",
        ),
        pytest.param(
            {"batches": "auto-plus:0.9,auto-plus:ladder"},
            "auto-plus:0.9 and auto-plus:ladder are the same run",
            id="default-fraction-named",
        ),
        pytest.param({"data": "/nowhere/data.yaml"}, "sweep: data=/nowhere/data.yaml does not exist", id="data-path"),
        pytest.param(
            {"data": "missing.yaml"},
            "sweep: data=missing.yaml is neither a file here nor one Ultralytics ships",
            id="data",
        ),
        pytest.param({"model": "nope11n.yaml"}, "sweep: model=nope11n.yaml is neither a file here nor", id="model"),
        pytest.param({"batches": "16,,32"}, "an empty item", id="empty-item"),
        pytest.param({"epochs": 0}, "epochs='0' is invalid: expected a positive integer", id="epochs-0"),
        pytest.param({"lr00": 0.1}, "unknown argument 'lr00' (did you mean 'lr0'?)", id="misspelt-key"),
        pytest.param({"lr0": "abc"}, "'lr0=abc' is of invalid type str", id="ultralytics-type"),
        pytest.param({"fliplr": 2}, "fliplr", id="ultralytics-range"),
    ],
)
def test_bad_arguments_fail_before_anything_runs(tmp_path, capsys, fake, over, expect):
    project = tmp_path / "sweep"
    assert cli.main(["sweep", *base(project, **over)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("yolo-batch: error: sweep: "), err
    assert expect in err[0]
    assert fake.calls == [] and not project.exists()


def test_bare_word_is_refused(tmp_path):
    with pytest.raises(AutoPlusError, match="argument 'resume' must be key=value") as info:
        sweep.plan([*base(tmp_path / "p"), "resume"])
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("raw", "values", "labels"),
    [
        pytest.param("16,32,64", ["16", "32", "64"], ["16", "32", "64"], id="ints"),
        pytest.param(" 8 , Auto-Plus ", ["8", "auto-plus"], ["8", "auto-plus"], id="spaces-case"),
        pytest.param("auto-plus:fit:0.8,016", ["auto-plus:fit:0.8", "16"], ["auto-plus_fit_0.8", "16"], id="forms"),
    ],
)
def test_parse_batches_and_labels(raw, values, labels):
    assert sweep.parse_batches(raw) == values
    assert [sweep_state.label(v) for v in values] == labels


def test_recipe_normalises_values_and_resolves_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.yaml").write_text("path: .\n")
    recipe, batches, project = sweep.plan(base(Path("p"), data="data.yaml", amp="false", seed=3))
    assert recipe == {
        "model": "yolo11n.yaml",
        "data": str(tmp_path / "data.yaml"),
        "epochs": 2,
        "seed": 3,
        "val_batch": 32,
        "amp": False,
        "imgsz": 64,
    }
    assert batches == ["4", "8"] and project == tmp_path / "p"
    assert sweep.plan(base(Path("p")))[0]["seed"] == 0  # same seed for every run, 0 unless given


@pytest.mark.parametrize(
    ("make", "state"),
    [
        pytest.param(lambda r: None, ("new", None), id="new"),
        pytest.param(
            lambda r: results(r, range(1, 3)) or checkpoint(r, 1, "best.pt"), ("finished", None), id="finished"
        ),
        pytest.param(lambda r: results(r, range(1, 2)) or checkpoint(r, -1), ("finished", None), id="early-stop"),
        pytest.param(lambda r: results(r, range(1, 3)) or checkpoint(r, 1), ("finished", None), id="last-epoch"),
        pytest.param(lambda r: results(r, range(1, 2)) or checkpoint(r, 0), ("interrupted", 1), id="interrupted"),
        pytest.param(
            lambda r: results(r, range(1, 3)) or checkpoint(r, 0), ("interrupted", 1), id="results-ahead-of-last.pt"
        ),
        pytest.param(lambda r: results(r, range(1, 2)), ("partial", None), id="no-checkpoint"),
        pytest.param(lambda r: results(r, range(1, 2)) or checkpoint(r, None), ("partial", None), id="torn-checkpoint"),
        pytest.param(lambda r: results(r, range(1, 3)), ("partial", None), id="rows-but-no-weights"),
    ],
)
def test_run_state(tmp_path, make, state):
    run = tmp_path / "run"
    make(run)
    assert sweep_state.run_state(run, epochs=2) == state


def test_sweep_trains_each_batch_then_reuses(tmp_path, capsys, fake):
    project = tmp_path / "sweep"
    assert sweep_command.sweep_cli(base(project, batches="4,auto-plus:fit")) == 0
    assert [c[c.index("train") + 1 :] for c in fake.calls] == [
        [
            "model=yolo11n.yaml",
            "data=coco8.yaml",
            "epochs=2",
            "seed=0",
            "imgsz=64",
            f"batch={b}",
            f"project={project}",
            f"name={n}",
            "exist_ok=True",
        ]
        for b, n in (("4", "4"), ("auto-plus:fit", "auto-plus_fit"))
    ]
    # every run validates at the same batch, told by the environment (not a yolo train key)
    assert [(e["YOLO_BATCH_VAL_BATCH"], e["YOLO_BATCH_OBSERVE"]) for e in fake.envs] == [("32", "1"), ("32", "1")]
    out = capsys.readouterr().out
    assert "every run validates at batch 32 (val_batch=)" in out
    assert "sweep: run 1/2 batch=4 (trained) in " in out and "sweep: run 2/2 batch=auto-plus:fit (trained)" in out
    assert out.count("ETA ") == 2 and "ETA 0s" in out
    with open(project / "comparison.csv", newline="") as f:
        assert [(r["run"], r["epochs"]) for r in csv.DictReader(f)] == [("4", "2"), ("auto-plus_fit", "2")]
    record = (project / "sweep.yaml").read_text()
    assert "epochs: 2" in record and "auto-plus:fit" in record and "val_batch: 32" in record
    # again: nothing trains, every run is reused
    assert sweep_command.sweep_cli(base(project, batches="auto-plus:fit,4")) == 0
    assert len(fake.calls) == 2
    out = capsys.readouterr().out
    assert out.count("(reused)") == 2 and "(trained)" not in out


def test_another_recipe_in_the_same_project_is_refused(tmp_path, capsys, fake):
    project = tmp_path / "sweep"
    assert sweep_command.sweep_cli(base(project)) == 0
    record = (project / "sweep.yaml").read_text()
    assert cli.main(["sweep", *base(project, epochs=3, lr0=0.02)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds a sweep of another recipe" in err[0]
    assert "epochs: 2 there, 3 here" in err[0] and "lr0: 'unset' there, 0.02 here" in err[0]
    assert len(fake.calls) == 2 and (project / "sweep.yaml").read_text() == record
    # more batches with the same recipe are welcome: only the new one trains, and the record lists all three
    assert sweep_command.sweep_cli(base(project, batches="8,16")) == 0
    assert len(fake.calls) == 3 and "name=16" in fake.calls[-1]
    assert "- '4'\n- '8'\n- '16'\n" in (project / "sweep.yaml").read_text()


def test_val_batch_is_the_users_and_part_of_the_recipe(tmp_path, capsys, fake):
    project = tmp_path / "sweep"
    assert sweep_command.sweep_cli(base(project, val_batch=16)) == 0
    assert [e["YOLO_BATCH_VAL_BATCH"] for e in fake.envs] == ["16", "16"]
    assert not any(w.startswith("val_batch=") for c in fake.calls for w in c)  # never passed to yolo train
    assert "val_batch: 16" in (project / "sweep.yaml").read_text()
    assert "every run validates at batch 16 (val_batch=)" in capsys.readouterr().out
    # the same project at another validation batch would compare runs validated differently: refused
    assert cli.main(["sweep", *base(project)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "val_batch: 16 there, 32 here" in err[0]
    assert cli.main(["sweep", *base(tmp_path / "other", val_batch=0)]) == 2
    assert "val_batch='0' is invalid: expected a positive integer" in capsys.readouterr().err


def test_a_record_without_val_batch_is_another_recipe(tmp_path, capsys, fake):
    """A sweep recorded before val_batch existed validated each run at twice its batch: not comparable."""
    project = tmp_path / "sweep"
    recipe, batches, _ = sweep.plan(base(project))
    recipe.pop("val_batch")
    sweep_state.write_record(project, recipe, batches)
    assert cli.main(["sweep", *base(project)]) == 2
    assert "val_batch: 'unset' there, 32 here" in capsys.readouterr().err
    assert fake.calls == []


def test_run_folders_without_a_record_are_refused(tmp_path, fake):
    project = tmp_path / "sweep"
    results(project / "8", range(1, 3))
    with pytest.raises(AutoPlusError, match=r"already holds 8/ but no sweep.yaml"):
        sweep_command.sweep_cli(base(project))
    assert fake.calls == [] and not (project / "sweep.yaml").exists()


def test_interrupted_run_resumes_and_partial_run_starts_over(tmp_path, capsys, fake):
    project = tmp_path / "sweep"
    recipe, batches, _ = sweep.plan(base(project))
    sweep_state.write_record(project, recipe, batches)
    # 4: killed after results.csv got epoch 2 but before last.pt did; 8: killed before any checkpoint
    results(project / "4", range(1, 3))
    checkpoint(project / "4", 0)
    results(project / "8", range(1, 2))
    assert sweep_command.sweep_cli(base(project)) == 0
    resume, train = fake.calls
    assert resume[-2:] == ["resume", f"model={project / '4' / 'weights' / 'last.pt'}"]
    assert "name=8" in train and fake.seen_before == [True, False]  # the partial folder was removed first
    assert [r["epoch"] for r in read_csv(project / "4" / "results.csv")] == ["1", "2"]  # epoch 2 once
    out = capsys.readouterr().out
    assert "batch=4 (resumed)" in out and "batch=8 (trained)" in out


def test_failed_run_names_it_and_keeps_finished_runs(tmp_path, capsys, monkeypatch):
    fake = FakeYolo(fail_at=2)
    monkeypatch.setattr(sweep, "run_child", fake)
    project = tmp_path / "sweep"
    assert cli.main(["sweep", *base(project)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "run 2/2 batch=8" in err[0] and "exited with status 1" in err[0]
    assert sweep_state.run_state(project / "4", 2) == ("finished", None)
    assert not (project / "comparison.csv").exists()


def test_ctrl_c_prints_one_line_with_the_same_command(tmp_path, capsys, monkeypatch):
    fake = FakeYolo()

    def interrupted(cmd, env):
        if len(fake.calls) == 1:  # the second run: Ctrl-C while it trains
            raise KeyboardInterrupt
        return fake(cmd, env)

    monkeypatch.setattr(sweep, "run_child", interrupted)
    project = tmp_path / "sweep"
    args = base(project)
    assert cli.main(["sweep", *args]) == 130
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in captured.out
    assert err[0].startswith("sweep: stopped during run 2/2 batch=8; finished runs are kept")
    assert err[0].endswith("the same command resumes: yolo-batch sweep " + " ".join(args))
    assert sweep_state.run_state(project / "4", 2) == ("finished", None)
    assert not (project / "comparison.csv").exists()


# ---------------------------------------------------------------------------------------------------------
# Real training through the stock `yolo train` (seconds each on CPU).


def real(project: Path, data: Path, batches: str, epochs: int) -> list[str]:
    keep = {k: v for k, v in FAST.items() if k not in {"epochs", "seed"}}
    return [
        "model=yolo11n.yaml",
        f"data={data}",
        f"batches={batches}",
        f"epochs={epochs}",
        f"project={project}",
        *(f"{k}={v}" for k, v in keep.items()),
    ]


@pytest.mark.slow
def test_real_sweep_then_all_reused(tiny_data, tmp_path, capsys):
    project = tmp_path / "sweep"
    assert sweep_command.sweep_cli(real(project, tiny_data, "4,8", 1)) == 0
    mtimes = {b: (project / b / "results.csv").stat().st_mtime_ns for b in ("4", "8")}
    with open(project / "comparison.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["run"], r["batch"], r["epochs"]) for r in rows] == [("4", "4", "1"), ("8", "8", "1")]
    assert all(float(r["final_train_loss"]) > 0 and float(r["wall_s"]) > 0 for r in rows)
    # integer batches are measured too (the sweep turns on YOLO_BATCH_OBSERVE): speed and memory compare
    assert all(float(r["images_per_s"]) > 0 and float(r["peak_mem_gib"]) > 0 for r in rows)
    assert (project / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()
    assert sweep_command.sweep_cli(real(project, tiny_data, "4,8", 1)) == 0
    out = capsys.readouterr().out
    assert out.count("(reused)") == 2 and "(trained)" not in out
    assert {b: (project / b / "results.csv").stat().st_mtime_ns for b in ("4", "8")} == mtimes


class _Stop(Exception):
    pass


def _stop_after_first_save(trainer) -> None:
    if trainer.epoch == 0:
        raise _Stop  # after last.pt of epoch 1 is saved: the state a killed run leaves


@pytest.mark.slow
def test_real_interrupted_run_resumes(tiny_data, tmp_path, capsys):
    """The interrupted state: the sweep's own recipe trained in-process, stopped by a callback right after
    epoch 1's checkpoint is written (an exception in ``on_model_save``), so last.pt holds a real training
    state; then the sweep resumes it through ``yolo train resume``."""
    from ultralytics import YOLO

    project = tmp_path / "sweep"
    args = real(project, tiny_data, "4", 2)
    recipe, batches, _ = sweep.plan(args)
    sweep_state.write_record(project, recipe, batches)
    model = YOLO(recipe.pop("model"))
    recipe.pop("val_batch")  # the sweep tells its runs through YOLO_BATCH_VAL_BATCH, not as a yolo train key
    model.add_callback("on_model_save", _stop_after_first_save)
    with pytest.raises(_Stop):
        model.train(**recipe, batch=4, project=str(project), name="4", exist_ok=True)
    assert sweep_state.run_state(project / "4", 2) == ("interrupted", 1)
    capsys.readouterr()
    assert sweep_command.sweep_cli(args) == 0
    assert "batch=4 (resumed)" in capsys.readouterr().out
    assert [r["epoch"] for r in read_csv(project / "4" / "results.csv")] == ["1", "2"]
    assert sweep_state.run_state(project / "4", 2) == ("finished", None)


@pytest.mark.slow
def test_real_ctrl_c_during_training_leaves_a_resumable_run(tiny_data, tmp_path):
    """``yolo-batch sweep`` at a terminal: Ctrl-C (SIGINT to its process group) while ``yolo train`` trains."""
    project = tmp_path / "sweep"
    args = real(project, tiny_data, "4", 50)
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("yolo-batch")), "sweep", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    # Ctrl-C once last.pt holds epoch 2: in training, not while Ultralytics writes last.pt (results.csv gets its
    # row just before; its write_bytes is not atomic, so a Ctrl-C inside it leaves a torn file, as in stock)
    while proc.poll() is None and (sweep_state.run_state(project / "4", 50)[1] or 0) < 2:
        assert time.monotonic() < deadline, "the run did not save two epochs in time"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert err.splitlines()[-1] == (
        f"sweep: stopped during run 1/1 batch=4; finished runs are kept, and the same command resumes: "
        f"yolo-batch sweep {' '.join(args)}"
    )
    state, saved = sweep_state.run_state(project / "4", 50)
    assert state == "interrupted" and saved >= 2


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_a_sweep_killed_with_sigkill_leaves_no_training_behind_and_the_same_command_resumes(tiny_data, tmp_path):
    """``kill -9`` on ``yolo-batch sweep`` (or the OOM killer choosing it) while ``yolo train`` trains: the training
    stops too, so no second writer is left in the run folder, and the same command resumes from last.pt."""
    project = tmp_path / "sweep"
    args = real(project, tiny_data, "4", 6)
    yolo_batch = str(Path(sys.executable).with_name("yolo-batch"))
    proc = subprocess.Popen([yolo_batch, "sweep", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while proc.poll() is None and (sweep_state.run_state(project / "4", 6)[1] or 0) < 2:
        assert time.monotonic() < deadline, "the run did not save two epochs in time"
        time.sleep(0.2)
    if proc.poll() is not None:  # the sweep ended before its run saved two epochs: say how, not a /proc error
        out, err = proc.communicate()
        pytest.fail(f"the sweep exited {proc.returncode} before the kill: {(out + err)[-3000:]}")
    children = [int(x) for x in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
    assert len(children) == 1  # the yolo train of batch 4
    proc.kill()
    proc.communicate(timeout=60)
    deadline = time.monotonic() + 30
    while running(children[0]):
        assert time.monotonic() < deadline, "yolo train trained on after its sweep was killed"
        time.sleep(0.2)
    state, saved = sweep_state.run_state(project / "4", 6)
    assert state == "interrupted" and 2 <= saved < 6, (state, saved)
    r = subprocess.run([yolo_batch, "sweep", *args], capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "batch=4 (resumed)" in r.stdout
    assert [row["epoch"] for row in read_csv(project / "4" / "results.csv")] == [str(e) for e in range(1, 7)]
    assert sweep_state.run_state(project / "4", 6) == ("finished", None)


def test_values_that_name_the_same_run_are_one_member():
    """Fractions are written one way (the run folder's name too); another policy or share is another member."""
    assert sweep.parse_batches("auto-plus:fit:0.80,auto-plus:fit,16") == ["auto-plus:fit:0.8", "auto-plus:fit", "16"]
    assert sweep_state.label("auto-plus:fit:0.8") == "auto-plus_fit_0.8"


def test_the_default_policy_follows_the_users_config(tmp_path, monkeypatch):
    """With policy: fit in YOLO_BATCH_CONFIG (which every run reads), auto-plus is auto-plus:fit, not :ladder."""
    config = tmp_path / "plugin.yaml"
    config.write_text("policy: fit\n")
    monkeypatch.setenv("YOLO_BATCH_CONFIG", str(config))
    assert sweep.parse_batches("auto-plus,auto-plus:ladder") == ["auto-plus", "auto-plus:ladder"]
    with pytest.raises(ValueError, match="auto-plus and auto-plus:fit are the same run"):
        sweep.parse_batches("auto-plus,auto-plus:fit")


@pytest.mark.parametrize("value", ["1", "true"])
def test_plugin_disabled_refuses_auto_plus_members_before_anything(tmp_path, capsys, fake, monkeypatch, value):
    monkeypatch.setenv("YOLO_BATCH_DISABLE", value)
    project = tmp_path / "sweep"
    assert cli.main(["sweep", *base(project, batches="16,auto-plus,auto-plus:fit")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "yolo-batch: error: sweep: YOLO_BATCH_DISABLE is on, which turns yolo-batch off, so "
        "batches=auto-plus,auto-plus:fit cannot run; unset YOLO_BATCH_DISABLE, or list integer batches only"
    ]
    assert fake.calls == [] and not project.exists()
    assert sweep_command.sweep_cli(base(project, batches="4,8")) == 0  # integer batches train stock: nothing to refuse


def test_a_wrong_data_path_writes_nothing_and_the_corrected_command_runs(tmp_path, capsys, fake):
    """Before: sweep.yaml and run folders were written, and the corrected command refused as another recipe."""
    project = tmp_path / "sweep"
    assert cli.main(["sweep", *base(project, data=tmp_path / "dat.yaml")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"yolo-batch: error: sweep: data={tmp_path / 'dat.yaml'} does not exist"
    ]
    assert not project.exists() and fake.calls == []
    (tmp_path / "data.yaml").write_text("path: .\n")
    assert cli.main(["sweep", *base(project, data=tmp_path / "data.yaml")]) == 0
    assert len(fake.calls) == 2
