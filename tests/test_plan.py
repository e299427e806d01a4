"""The what-if arithmetic of ``yolo-batch plan``, on a measured law (pure: no trainer)."""

from __future__ import annotations

import pytest

from tests.memory_laws import MB, YOLOV8S_640
from yolo_batch.core.policy import GIB
from yolo_batch.core.whatif import others_bytes, what_if, what_if_table


def record(**over):
    r = {
        "device": "cuda:0",
        "other_bytes": int(0.5 * GIB),  # the CUDA context on this device
        "utilization": 0.9,
        "fixed_bytes": YOLOV8S_640.fixed_bytes,
        "per_image_bytes": YOLOV8S_640.per_image_bytes,
        "val_fixed_bytes": None,
        "val_per_image_bytes": None,
        "dataset_size": 100_000,
        "settings": {"candidates": [16, 32, 64], "min_batch": 1, "max_batch": 512},
    }
    return {**r, **over}


def test_what_if_counts_the_fixed_part_once_and_keeps_the_context():
    rows = what_if(record())
    assert [r["total_gib"] for r in rows] == [8, 16, 24, 40, 80, 141]
    for r in rows:
        budget = 0.9 * (r["total_gib"] * GIB - 0.5 * GIB)
        assert r["budget_bytes"] == int(budget)
        fits = int((budget - 324 * MB) // (238 * MB))  # the largest batch whose predicted peak fits
        ladder = max((c for c in (16, 32, 64) if c <= fits), default=fits)
        assert r["picks"]["ladder"] == ladder
        assert r["picks"]["fit"] == min(max(fits - fits % 8 if fits >= 8 else fits, ladder), 512)


def test_what_if_applies_the_validation_law_and_the_caps():
    val = {"val_fixed_bytes": 324 * MB, "val_per_image_bytes": 200 * MB}  # validation at 2x binds first
    rows = {r["total_gib"]: r["picks"] for r in what_if(record(**val, dataset_size=300), (16, 141))}
    fits16 = int((0.9 * 15.5 * GIB - 324 * MB) // (400 * MB))
    assert rows[16]["fit"] == fits16 - fits16 % 8
    assert rows[141] == {"ladder": 64, "fit": 296}  # the training set of 300 caps fit (rounded to 8)


def test_what_if_sizes_follow_the_device_kind_and_the_table_says_extrapolated():
    cpu = record(device="cpu", other_bytes=0)
    rows = what_if(cpu)
    assert [r["total_gib"] for r in rows] == [8, 16, 32, 64, 128, 256]
    lines = what_if_table(cpu, rows)
    assert lines[0].startswith("what if: other cpu memory sizes, extrapolated from this device's law")
    assert len(lines) == 2 + len(rows) + 1  # the rows, then the line naming the cap of the starred picks
    assert lines[-1] == "* decided by max_batch 512, not by memory: memory would allow a larger batch"


def test_what_if_marks_sizes_where_nothing_fits():
    rows = what_if(record(fixed_bytes=10 * GIB), (8, 16))
    assert rows[0]["picks"] == {"ladder": 0, "fit": 0}
    assert what_if_table(record(fixed_bytes=10 * GIB), rows)[2].split()[-2:] == ["-", "-"]
    assert rows[1]["picks"]["fit"] > 0


@pytest.mark.parametrize("kind", ["mps", "xpu"])
def test_what_if_other_kinds(kind):
    assert len(what_if(record(device=f"{kind}:0" if kind == "xpu" else kind))) == 6


def test_what_if_subtracts_what_other_processes_hold():
    """On CPU other_bytes is 0: what is neither free nor this process's is held by others, on every size too."""
    GB = GIB
    cpu = record(device="cpu", other_bytes=0, total_bytes=32 * GB, free_bytes=20 * GB, held_bytes=2 * GB)
    assert others_bytes(cpu) == 10 * GB
    rows = what_if(cpu, (8, 64))
    assert [r["budget_bytes"] for r in rows] == [int(0.9 * (8 - 10) * GB * 0), int(0.9 * (64 - 10) * GB)]
    assert rows[0]["picks"] == {"ladder": 0, "fit": 0}  # 8 GiB with 10 GiB held by others: nothing
    assert "each size less the 10.00 GiB other processes hold here" in what_if_table(cpu, rows)[0]


def test_what_if_labels_the_training_set_cap():
    """A set of 32 images caps every size: the rows say so instead of looking like memory's answer."""
    small = record(dataset_size=32)
    rows = what_if(small)
    assert {r["total_gib"]: r["picks"]["fit"] for r in rows} == {8: 24, **dict.fromkeys([16, 24, 40, 80, 141], 32)}
    # 8 GiB: 24 fits (memory decides); 16 GiB: ladder's 32 is memory's too (64 does not fit), fit's is the cap's
    assert [r["capped"] for r in rows] == [[], ["fit"], *[["ladder", "fit"]] * 4]
    lines = what_if_table(small, rows)
    assert "training set 32 images" in lines[0]
    assert lines[3].split() == ["16", "GiB", "13.95", "GiB", "32", "32*"]
    assert lines[4].split()[-2:] == ["32*", "32*"]
    assert lines[-1] == "* decided by the training set, 32 images, not by memory: memory would allow a larger batch"


def test_what_if_fit_is_never_below_ladder():
    """With no rung fitting, ladder auto-fits (unrounded); fit keeps that instead of rounding below it."""
    rows = what_if(record(), tuple(range(2, 24)))
    assert all(r["picks"]["fit"] >= r["picks"]["ladder"] for r in rows)
    assert any(r["picks"]["ladder"] % 8 for r in rows)  # sizes where ladder auto-fits between rungs exist


# ---------------------------------------------------------------------------------------------------------
# Bad input: one line, exit 2, before the set-up starts (so in process and in milliseconds).


def _plan_error(capsys, *words: str) -> str:
    from yolo_batch.tools import cli

    assert cli.main(["plan", *words]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("yolo-batch: error: plan: "), err
    return err[0].removeprefix("yolo-batch: error: ")


@pytest.mark.parametrize(
    ("words", "line"),
    [
        pytest.param(
            ["model=nope11n.yaml"],
            "plan: model=nope11n.yaml is neither a file here nor one Ultralytics ships",
            id="model",
        ),
        pytest.param(["model=/nowhere/m.pt"], "plan: model=/nowhere/m.pt does not exist", id="model-path"),
        pytest.param(["data=/nowhere/d.yaml"], "plan: data=/nowhere/d.yaml does not exist", id="data-path"),
        pytest.param(
            ["data=nope.yaml"], "plan: data=nope.yaml is neither a file here nor one Ultralytics ships", id="data"
        ),
        pytest.param(
            ["lr00=0.1"],
            "plan: unknown argument 'lr00' (did you mean 'lr0'?); valid: project, name, exist_ok, --json and any yolo "
            "train key (`yolo cfg` lists them)",
            id="unknown-key",
        ),
        pytest.param(["exist_ok=maybe"], "plan: exist_ok='maybe' is invalid: expected true or false", id="exist-ok"),
    ],
)
def test_plan_bad_input_is_one_line(tmp_path, capsys, monkeypatch, tiny_data, words, line):
    monkeypatch.chdir(tmp_path)
    given = dict(w.split("=", 1) for w in words)
    base = {"model": "yolo11n.yaml", "data": str(tiny_data), "imgsz": "64"}
    assert _plan_error(capsys, *(f"{k}={v}" for k, v in {**base, **given}.items())) == line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_plan_cuda_device_without_cuda_is_one_line(capsys, tiny_data):
    line = _plan_error(capsys, "model=yolo11n.yaml", f"data={tiny_data}", "device=0")
    mps = __import__("torch").backends.mps.is_available()
    assert line == "plan: device=0 asks for a CUDA GPU, but torch sees none here; use device=cpu" + (
        " or device=mps" if mps else ""
    )


def test_plan_says_the_plugin_is_disabled(capsys, monkeypatch, tiny_data):
    """Before: a TypeError traceback from Ultralytics' check of batch=auto-plus."""
    monkeypatch.setenv("YOLO_BATCH_DISABLE", "1")
    assert _plan_error(capsys, "model=yolo11n.yaml", f"data={tiny_data}") == (
        "plan: YOLO_BATCH_DISABLE=1 turns yolo-batch off, so there is no auto-plus decision to plan; unset "
        "YOLO_BATCH_DISABLE (or set it to 0)"
    )


def test_plan_help_lists_every_policy(capsys):
    from yolo_batch.core.spec import POLICIES
    from yolo_batch.tools import cli

    assert cli.main(["plan", "--help"]) == 0
    out = capsys.readouterr().out
    assert "auto-plus[:ladder|fit|speed|goodput][:FRACTION]" in out
    assert all(p in out for p in POLICIES)


@pytest.mark.parametrize("held", ["args.yaml", "results.csv", "weights"])
def test_plan_refuses_a_run_folder_even_with_exist_ok(tmp_path, capsys, tiny_data, held):
    run = tmp_path / "runs" / "exp"
    run.mkdir(parents=True)
    (run / held).mkdir() if held == "weights" else (run / held).write_text("x\n")
    words = ["model=yolo11n.yaml", f"data={tiny_data}", f"project={tmp_path / 'runs'}", "name=exp", "exist_ok=True"]
    assert _plan_error(capsys, *words) == (
        f"plan: {run} holds a training run ({held}); plan never writes into another run's folder: leave exist_ok out "
        "(plan then numbers a new folder, as yolo train does) or choose another name="
    )
    assert sorted(p.name for p in run.iterdir()) == [held]


@pytest.mark.parametrize(
    "where",
    [
        pytest.param(("{run}", "weights", True), id="name=weights in a run, exist_ok"),
        pytest.param(("{run}", "weights", False), id="name=weights in a run: its numbered sibling too"),
        pytest.param(("{run}", "new", False), id="a new name in a run"),
        pytest.param(("{run}/weights", "plans", False), id="a project inside a run's weights"),
        pytest.param(("{run}/../exp/sub", "x", False), id="reached through .."),
    ],
)
def test_plan_writes_nothing_inside_another_run(tmp_path, capsys, tiny_data, where):
    """issue 21: project=RUN name=weights exist_ok=True wrote RUN/weights/batch_decision.json."""
    run = tmp_path / "runs" / "exp"
    (run / "weights").mkdir(parents=True)
    (run / "args.yaml").write_text("batch: auto-plus\n")
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    project, name, exist_ok = where
    words = ["model=yolo11n.yaml", f"data={tiny_data}", f"project={project.format(run=run)}", f"name={name}"]
    line = _plan_error(capsys, *words, *(["exist_ok=True"] if exist_ok else []))
    assert line.startswith("plan: ") and f" is inside the training run {run} (args.yaml, weights); " in line
    assert line.endswith("plan never writes into another run's folder: choose a project= outside it")
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_a_folder_above_with_weights_alone_is_no_run(tmp_path, monkeypatch):
    """A project's own weights/ folder of downloaded models (no args.yaml beside it) does not make it a run."""
    from yolo_batch.tools import plan

    (tmp_path / "weights").mkdir()
    (tmp_path / "results.csv").write_text("x\n")
    monkeypatch.chdir(tmp_path)
    own = {"project": str(tmp_path / "runs"), "name": "p"}
    assert plan._out_dir(own, {"model": "yolo11n.yaml"}) == tmp_path / "runs" / "p"


@pytest.mark.parametrize(
    ("words", "line"),
    [
        pytest.param(
            ["imgsz=abc"],
            "plan: 'imgsz=abc' is not a valid image size. Valid imgsz values are int i.e. 'imgsz=640' or list i.e. "
            "'imgsz=[640,640]'",
            id="imgsz=abc",
        ),
        pytest.param(["epochs=-1"], "plan: 'epochs=-1' is an invalid value. 'epochs' must be >= 1.", id="epochs=-1"),
        pytest.param(
            ["lr0=abc"],
            "plan: 'lr0=abc' is of invalid type str. Valid 'lr0' types are int (i.e. 'lr0=0') or float (i.e. "
            "'lr0=0.5')",
            id="lr0=abc",
        ),
        pytest.param(
            ["amp=maybe"],
            "plan: 'amp=maybe' is invalid. Valid 'amp' values are True, False, 'fp16', 'bf16', or 'fp32'.",
            id="amp=maybe",
        ),
        pytest.param(
            ["imgsz=['a']"], "plan: imgsz=['a'] is not a valid image size: expected imgsz=640", id="imgsz list"
        ),
        pytest.param(["data="], "plan: data= has no value", id="empty value"),
    ],
)
def test_plan_refuses_what_ultralytics_checks_refuse_in_one_line(tmp_path, capsys, monkeypatch, tiny_data, words, line):
    """issue 21: imgsz=abc and epochs=-1 ended in 39- and 42-line tracebacks with exit 1, after the set-up began."""
    monkeypatch.chdir(tmp_path)
    given = dict(w.split("=", 1) for w in words)
    base = {"model": "yolo11n.yaml", "data": str(tiny_data), "imgsz": "64"}
    assert _plan_error(capsys, *(f"{k}={v}" for k, v in {**base, **given}.items())) == line
    assert list(tmp_path.iterdir()) == []


def test_plan_needs_data(tmp_path, capsys, monkeypatch, tiny_data):
    """issue 21: without data= the run fell back to coco8 and ended in "Download failure"; a cfg= with data is fine."""
    monkeypatch.chdir(tmp_path)
    assert _plan_error(capsys, "model=yolo11n.yaml", "imgsz=64") == (
        "plan: data= is required (for example data=path/to/data.yaml)"
    )
    (tmp_path / "cfg.yaml").write_text("imgsz: 64\n")
    assert _plan_error(capsys, "model=yolo11n.yaml", "cfg=cfg.yaml") == (
        "plan: data= is required (for example data=path/to/data.yaml)"
    )
    (tmp_path / "cfg.yaml").write_text("data: /nowhere/d.yaml\n")  # then Ultralytics reads data from the cfg file
    from yolo_batch.tools.plan import _split

    assert _split(["model=yolo11n.yaml", "cfg=cfg.yaml"])[0] == [
        "model=yolo11n.yaml",
        "cfg=cfg.yaml",
        "batch=auto-plus",
    ]


def test_the_decision_table_names_the_cap_instead_of_marking_a_fit():
    """issue 14: a table never marks a batch above a cap as fitting; it names the cap."""
    from yolo_batch.core.decision_record import decision_table
    from yolo_batch.core.policy import Law, MemoryModel, decide

    d = decide(MemoryModel(Law(2**30, 2**20)), 20 * GIB, dataset_size=32)
    r = {
        "device": "cpu",
        "free_bytes": 20 * GIB,
        "held_bytes": 0,
        "utilization": 0.9,
        "budget_bytes": 20 * GIB,
        "fixed_bytes": 2**30,
        "per_image_bytes": 2**20,
        "batch": d.batch,
        "policy": d.policy,
        "reason": d.reason,
        "predicted_peak_bytes": d.predicted_peak_bytes,
        "verified_peak_bytes": None,
        "decision_seconds": 1.0,
        "candidates": [
            {"batch": c.batch, "predicted_peak_bytes": c.predicted_peak_bytes, "fits": c.fits, "cap": c.cap}
            for c in d.candidates
        ],
    }
    rows = decision_table(r)[2:5]
    assert [row.split()[:4] for row in rows] == [
        ["64", "1.06", "GiB", "no"],
        ["32", "1.03", "GiB", "yes"],
        ["16", "1.02", "GiB", "yes"],
    ]
    assert rows[0].endswith("no  above the training set, 32 images") and rows[1].endswith("<- pick")
