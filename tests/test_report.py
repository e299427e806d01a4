"""``report.compare`` and ``yolo-batch compare`` on hand-written run folders (no training)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from yolo_batch.record.effect import read_csv
from yolo_batch.tools import cli, report
from yolo_batch.tools.report import columns, compare

# Ultralytics pads results.csv's header names; read_csv strips them.
RESULTS_HEAD = (
    "epoch",
    "time",
    "train/box_loss",
    "train/cls_loss",
    "train/dfl_loss",
    "metrics/precision(B)",
    "metrics/recall(B)",
    "metrics/mAP50(B)",
    "metrics/mAP50-95(B)",
    "val/box_loss",
    "lr/pg0",
)
EFFECT_HEAD = (
    "epoch",
    "batch",
    "accumulate",
    "effective_batch",
    "nbs",
    "train/box_loss",
    "metrics/mAP50(B)",
    "metrics/mAP50-95(B)",
    "epoch_seconds",
    "images_per_s",
    "peak_mem_bytes",
    "mem_utilization",
    "oom_events",
)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_results(run: Path, rows: list[tuple]) -> None:
    """rows: (epoch, time, box, cls, dfl, mAP50, mAP50-95)."""
    run.mkdir(parents=True, exist_ok=True)
    lines = [",".join(f"{h:>20}" for h in RESULTS_HEAD)]
    for epoch, t, box, cls, dfl, m50, m in rows:
        lines.append(",".join(f"{v:>20}" for v in (epoch, t, box, cls, dfl, 0.5, 0.5, m50, m, 1.0, 0.01)))
    (run / "results.csv").write_text("\n".join(lines) + "\n")


def write_effect(run: Path, rows: list[tuple]) -> None:
    """rows: (epoch, batch, effective_batch, images_per_s, peak_mem_bytes); then a ``final`` row."""
    lines = [",".join(EFFECT_HEAD)]
    for epoch, batch, eff, speed, peak in rows:
        lines.append(",".join(map(str, (epoch, batch, 2, eff, 64, 1.0, 0.1, 0.05, 3.0, speed, peak, 0.1, 0))))
    lines.append(",".join(["final", str(rows[-1][1]), "2", str(rows[-1][2]), "64"] + [""] * 8))
    (run / "batch_effect.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture()
def runs(tmp_path) -> dict[str, Path]:
    """``ours``: an auto-plus run at batch 32 with batch_effect.csv; ``stock``: batch 8, results.csv only."""
    ours, stock = tmp_path / "runs" / "ours", tmp_path / "runs" / "stock"
    write_results(ours, [(1, 10.0, 1.0, 2.0, 3.0, 0.50, 0.30), (2, 20.0, 0.5, 0.5, 0.5, 0.40, 0.35)])
    write_effect(ours, [(1, 32, 64, 100.0, 2**30), (2, 32, 64, 200.0, 2**31)])
    (ours / "args.yaml").write_text("batch: -1\nepochs: 2\n")
    (ours / "batch_decision.json").write_text(json.dumps({"batch": 32, "policy": "ladder"}))
    write_results(stock, [(1, 4.0, 1.0, 1.0, 1.0, 0.10, 0.05), (2, 9.0, 0.25, 0.25, 0.25, 0.20, 0.10)])
    (stock / "args.yaml").write_text("batch: 8\nepochs: 2\n")
    return {"ours": ours, "stock": stock}


def test_compare_rows_csv_and_png(runs, tmp_path):
    rows = compare([runs["ours"], runs["stock"]])
    ours, stock = rows
    assert ours["run"] == "ours" and stock["run"] == "stock"
    assert ours["task"] == stock["task"] == "detect"
    assert (ours["batch"], ours["effective_batch"], ours["policy"], ours["epochs"]) == (32, 64, "ladder", 2)
    assert ours["best_mAP50(B)"] == pytest.approx(0.50) and ours["final_mAP50(B)"] == pytest.approx(0.40)
    assert ours["best_mAP50-95(B)"] == pytest.approx(0.35) and ours["final_mAP50-95(B)"] == pytest.approx(0.35)
    assert ours["final_train_loss"] == pytest.approx(1.5)  # 0.5 + 0.5 + 0.5, the last epoch's train/*_loss
    assert ours["images_per_s"] == pytest.approx(150.0)  # mean of the epoch rows, not the final row
    assert ours["peak_mem_gib"] == pytest.approx(2.0)
    assert ours["wall_s"] == pytest.approx(20.0)
    # a stock run: batch from args.yaml, speed and memory unknown
    assert (stock["batch"], stock["effective_batch"], stock["policy"]) == (8, None, None)
    assert (ours["batches"], stock["batches"]) == ("32 (1-2)", None)
    assert stock["images_per_s"] is None and stock["peak_mem_gib"] is None
    assert stock["final_train_loss"] == pytest.approx(0.75) and stock["wall_s"] == pytest.approx(9.0)
    # files land in the runs' common parent, whole
    out = tmp_path / "runs"
    with open(out / "comparison.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert (
        tuple(table[0])
        == columns(rows)
        == (
            *("run", "task", "batch", "batches", "effective_batch", "policy", "epochs"),
            *("best_mAP50-95(B)", "final_mAP50-95(B)", "best_mAP50(B)", "final_mAP50(B)"),
            *("final_train_loss", "images_per_s", "peak_mem_gib", "wall_s", "dir"),
        )
    )
    assert [r["run"] for r in table] == ["ours", "stock"]
    assert table[0]["peak_mem_gib"] == "2" and table[1]["images_per_s"] == "" and table[1]["batch"] == "8"
    png = (out / "comparison.png").read_bytes()
    assert png[:8] == PNG_MAGIC
    import matplotlib.image

    assert matplotlib.image.imread(out / "comparison.png").shape[:2] == (800, 1100)
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def test_compare_cli_prints_table_and_writes_to_out(runs, tmp_path, capsys):
    out = tmp_path / "elsewhere" / "cmp"
    assert cli.main(["compare", str(runs["ours"]), str(runs["stock"]), f"out={out}"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == (
        "run batch eff epochs box mAP50-95 best final box mAP50 best final train loss img/s peak GiB wall s".split()
    )
    assert lines[1].split() == "ours 32 64 2 0.350 0.350 0.500 0.400 1.500 150.0 2.00 20.0".split()
    assert lines[2].split() == "stock 8 - 2 0.100 0.100 0.200 0.200 0.750 - - 9.0".split()
    assert (out / "comparison.csv").is_file() and (out / "comparison.png").read_bytes()[:8] == PNG_MAGIC
    assert not (tmp_path / "runs" / "comparison.csv").exists()


def test_compare_counts_a_redone_epoch_once_and_shows_each_batch_with_its_epochs(tmp_path, capsys):
    """A goodput run (8, then 32 from epoch 2), stopped after epoch 2's row but before its checkpoint, resumed.

    Ultralytics' results.csv then holds epoch 2 twice (the redone epoch's row last); the history holds each batch.
    """
    run = tmp_path / "runs" / "switched"
    write_results(
        run,
        [
            (1, 10.0, 1.0, 1.0, 1.0, 0.10, 0.05),
            (2, 20.0, 0.9, 0.9, 0.9, 0.20, 0.10),  # then killed: no checkpoint of epoch 2
            (2, 9.0, 0.8, 0.8, 0.8, 0.30, 0.15),  # redone after the resume
            (3, 18.0, 0.5, 0.5, 0.5, 0.40, 0.20),
        ],
    )
    write_effect(run, [(1, 8, 64, 50.0, 2**30), (2, 32, 64, 100.0, 2**31), (3, 32, 64, 100.0, 2**31)])
    history = [
        {"source": "auto-plus", "batch": 8, "policy": "goodput", "from_epoch": 1},
        {"source": "goodput", "batch": 32, "previous_batch": 8, "from_epoch": 2},
    ]
    (run / "batch_decision.json").write_text(json.dumps({**history[0], "reason": "r", "history": history}))
    (row,) = compare([run])
    assert (row["epochs"], row["batch"], row["batches"]) == (3, 32, "8 (1), 32 (2-3)")
    assert row["best_mAP50(B)"] == pytest.approx(0.40) and row["final_mAP50(B)"] == pytest.approx(0.40)
    assert row["wall_s"] == pytest.approx(38.0)  # 20 s before the resume, 18 s after: every second that ran
    assert cli.main(["compare", str(run)]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[:7] == "switched 8 (1), 32 (2-3) 64 3".split()


@pytest.mark.parametrize(
    ("source", "expect"),
    [
        pytest.param("effect", 32, id="batch_effect.csv"),
        pytest.param("decision", 24, id="batch_decision.json"),
        pytest.param("checkpoint", 12, id="last.pt-train_args"),
        pytest.param("args", 6, id="args.yaml"),
        pytest.param("auto", None, id="args.yaml-auto-only"),
    ],
)
def test_batch_source_order(tmp_path, source, expect):
    run = tmp_path / "run"
    write_results(run, [(1, 1.0, 1.0, 1.0, 1.0, 0.1, 0.1)])
    (run / "args.yaml").write_text(f"batch: {-1 if source in {'auto', 'checkpoint', 'decision'} else 6}\n")
    if source == "effect":
        write_effect(run, [(1, 32, 64, 10.0, 2**20)])
        (run / "batch_decision.json").write_text(json.dumps({"batch": 24}))
    if source == "decision":
        (run / "batch_decision.json").write_text(json.dumps({"batch": 24}))
    if source == "checkpoint":
        import torch

        (run / "weights").mkdir()
        torch.save({"epoch": -1, "train_args": {"batch": 12}}, run / "weights" / "last.pt")
    (row,) = compare([run])
    assert row["batch"] == expect
    assert (tmp_path / "comparison.csv").is_file()  # one run: its parent


def test_resumed_run_adds_time_segments(tmp_path):
    run = tmp_path / "run"
    write_results(run, [(1, 10.0, 1, 1, 1, 0.1, 0.1), (2, 20.0, 1, 1, 1, 0.1, 0.1), (3, 6.0, 1, 1, 1, 0.1, 0.1)])
    (row,) = compare([run])
    assert row["wall_s"] == pytest.approx(26.0)  # results.csv's time restarts at 0 when a run is resumed


def _effect_with_segments(run: Path, rows: list[tuple]) -> None:
    """rows: (epoch, batch, accumulate, segment_start), as the plugin writes them; then a ``final`` row."""
    lines = ["epoch,batch,accumulate,effective_batch,nbs,images_per_s,segment_start"]
    lines += [f"{e},{b},{a},{b * a},64,100.0,{seg}" for e, b, a, seg in rows]
    (run / "batch_effect.csv").write_text("\n".join([*lines, f"final,{rows[-1][1]},{rows[-1][2]},,64,,"]) + "\n")


def test_a_resumed_stretch_longer_than_the_one_before_is_counted(tmp_path):
    """issue 21: a stock epoch 1 (1.0 s), killed in epoch 2, resumed with auto-plus for 2.05 s: 3.05 s ran.

    results.csv's time never falls (1.0, 1.5, 2.05); the effect log names epoch 2 as a stretch's first.
    """
    run = tmp_path / "run"
    write_results(run, [(1, 1.0, 1, 1, 1, 0.1, 0.1), (2, 1.5, 1, 1, 1, 0.1, 0.1), (3, 2.05, 1, 1, 1, 0.1, 0.1)])
    _effect_with_segments(run, [(1, 8, 8, ""), (2, 64, 1, 2), (3, 64, 1, 2)])
    (row,) = compare([run])
    assert row["wall_s"] == pytest.approx(3.05)
    from yolo_batch.tools.report import wall_seconds

    assert wall_seconds(read_csv(run / "results.csv")) == pytest.approx(2.05)  # from time alone: what was missed
    # a plain run of three epochs in one stretch: nothing added
    _effect_with_segments(run, [(1, 8, 8, 1), (2, 8, 8, 1), (3, 8, 8, 1)])
    assert compare([run])[0]["wall_s"] == pytest.approx(2.05)


def test_the_legend_states_each_epochs_batch_and_effective_batch(tmp_path):
    """issue 21: epoch 1 at 40 (accumulate 2: effective 80), epochs 2-3 at 64: the legend says both, not "batch 64"."""
    from yolo_batch.tools.report import _summarise, comparison_figure

    run, one = tmp_path / "runs" / "switched", tmp_path / "runs" / "one"
    for r in (run, one):
        write_results(r, [(e, float(e), 1, 1, 1, 0.1, 0.1) for e in (1, 2, 3)])
    _effect_with_segments(run, [(1, 40, 2, 1), (2, 64, 1, 1), (3, 64, 1, 1)])
    _effect_with_segments(one, [(e, 16, 4, 1) for e in (1, 2, 3)])
    loaded = [_summarise(r, r.name) for r in (run, one)]
    loss_ax = comparison_figure(loaded).axes[0]
    assert [t.get_text() for t in loss_ax.get_legend().get_texts()] == [
        "switched (batch 40 (1), 64 (2-3); effective 80 (1), 64 (2-3))",
        "one (batch 16, effective 64)",
    ]


def test_nested_runs_are_named_from_the_common_parent(tmp_path):
    a, b = tmp_path / "x" / "train", tmp_path / "y" / "train"
    for run in (a, b):
        write_results(run, [(1, 1.0, 1, 1, 1, 0.1, 0.1)])
    assert [r["run"] for r in compare([a, b])] == ["x/train", "y/train"]
    assert (tmp_path / "comparison.png").is_file()


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        pytest.param([], "no run folders given; usage: yolo-batch compare RUN_DIR", id="no-runs"),
        pytest.param(["{tmp}/nope"], "compare: '{tmp}/nope' does not exist; pass run folders", id="missing-folder"),
        pytest.param(["{tmp}/file"], "compare: '{tmp}/file' is a file; pass run folders", id="a-file"),
        pytest.param(["{tmp}/empty"], "'{tmp}/empty' is not a run folder (no results.csv)", id="no-results"),
        pytest.param(["{tmp}/header"], "has no finished epoch in results.csv yet", id="header-only"),
        pytest.param(["{tmp}/ok", "outt={tmp}/o"], "unknown argument 'outt' (did you mean 'out'?)", id="misspelt"),
        pytest.param(["{tmp}/ok", "out={tmp}/file"], "is a file; pass a folder", id="out-is-a-file"),
        pytest.param(["out={tmp}/o"], "no run folders given", id="only-options"),
    ],
)
def test_compare_errors_are_one_line(tmp_path, capsys, args, expect):
    (tmp_path / "empty").mkdir()
    (tmp_path / "header").mkdir()
    (tmp_path / "header" / "results.csv").write_text(",".join(RESULTS_HEAD) + "\n")
    write_results(tmp_path / "ok", [(1, 1.0, 1, 1, 1, 0.1, 0.1)])
    (tmp_path / "file").write_text("x")
    rc = cli.main(["compare", *(a.format(tmp=tmp_path) for a in args)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("yolo-batch: error: compare: ")
    assert expect.format(tmp=tmp_path) in err[0]
    assert not (tmp_path / "comparison.csv").exists() and not (tmp_path / "o").exists()


def test_compare_refuses_in_python_too(tmp_path):
    with pytest.raises(report.AutoPlusError, match="no run folders given"):
        compare([])
    with pytest.raises(report.AutoPlusError, match=r"is not a run folder \(no results.csv\)") as info:
        compare([tmp_path])
    assert str(tmp_path) in str(info.value)


def test_load_run_and_print_run_still_work(runs, capsys):
    r = report.load_run(runs["ours"])
    assert [row["epoch"] for row in r["effect"]] == ["1", "2", "final"] and r["decision"]["batch"] == 32
    report.print_run(runs["stock"])
    out = capsys.readouterr().out
    assert "Last epoch metrics:" in out and "mAP50-95 0.100" in out


def test_comparison_labels_stay_inside_the_figure(tmp_path):
    """The rightmost point's label (the largest batch, typically auto-plus) is drawn inside its axes."""
    runs = []
    for name, batch, speed in (("8", 8, 110.0), ("16", 16, 150.0), ("auto-plus", 64, 176.0)):
        run = tmp_path / name
        write_results(run, [(1, 1.0, 1, 1, 1, 0.1, 0.1)])
        write_effect(run, [(1, batch, 64, speed, batch * 2**24)])
        runs.append(run)
    loaded = [report._summarise(run, run.name) for run in runs]
    fig = report.comparison_figure(loaded)
    renderer = fig.canvas.get_renderer()
    names = []
    for ax in fig.axes[2:]:
        for text in ax.texts:
            names.append(text.get_text())
            box = text.get_window_extent(renderer)
            assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1, (ax.get_title(), text.get_text())
            assert ax.bbox.x0 <= box.x0 and box.x1 <= ax.bbox.x1, (ax.get_title(), text.get_text())
            assert box.y1 <= ax.bbox.y1, (ax.get_title(), text.get_text())
    assert sorted(names) == sorted(["8", "16", "auto-plus"] * 2)


@pytest.fixture(scope="module")
def task_runs(tmp_path_factory):
    from tests.task_runs import all_task_runs

    return all_task_runs(tmp_path_factory)


@pytest.mark.slow
def test_compare_runs_of_every_task(task_runs, tmp_path, capsys):
    from yolo_batch.record.summary import TASKS

    names = list(task_runs)
    rows = compare([task_runs[t] for t in names], tmp_path / "cmp")
    assert [r["task"] for r in rows] == names
    for task, row in zip(names, rows):
        results = read_csv(task_runs[task] / "results.csv")
        metrics = next(t for t in TASKS if t.name == task).metrics
        for _, col in metrics:
            key = col.removeprefix("metrics/")
            values = [float(r[col]) for r in results]
            best = min(values) if col in report.LOWER_IS_BETTER else max(values)
            assert row[f"best_{key}"] == pytest.approx(best) and row[f"final_{key}"] == pytest.approx(values[-1])
        other = {c.removeprefix("metrics/") for t in TASKS if t.name != task for _, c in t.metrics}
        other -= {c.removeprefix("metrics/") for _, c in metrics}
        assert not [k for k in row if k.removeprefix("best_") in other]  # no other task's metric
        assert row["final_train_loss"] > 0 and row["images_per_s"] > 0 and row["batch"] == 4
    with open(tmp_path / "cmp" / "comparison.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert "best_accuracy_top1" in table[0] and "best_mAP50-95(M)" in table[0] and "best_mAP50-95(P)" in table[0]
    by_task = {r["task"]: r for r in table}
    assert by_task["classify"]["best_mAP50-95(B)"] == "" and by_task["detect"]["best_accuracy_top1"] == ""
    lines = report.format_table(rows)
    assert lines[0].split()[:3] == ["run", "task", "batch"]  # mixed tasks: a task column
    assert "top-1 accuracy best" in lines[0] and "mask mAP50-95 best" in lines[0]
    fig_titles = [
        ax.get_title()
        for ax in report.comparison_figure(
            [report._summarise(p, p.name) for p in (task_runs["classify"], task_runs["pose"])]
        ).axes
    ]
    assert fig_titles[1] == "each run's headline metric vs epoch"


@pytest.mark.slow
def test_one_task_compare_names_its_metric(task_runs, tmp_path):
    (row,) = compare([task_runs["classify"]], tmp_path / "cmp")
    lines = report.format_table([row])
    assert lines[0].split()[:8] == ["run", "batch", "eff", "epochs", "top-1", "accuracy", "best", "final"]
    fig = report.comparison_figure([report._summarise(task_runs["classify"], "classify")])
    assert fig.axes[1].get_title() == "top-1 accuracy vs epoch"


@pytest.mark.slow
def test_obb_of_ultralytics_83_is_told_by_its_args(task_runs, tmp_path):
    """8.3's obb rows have no angle loss, so they read as detect's; args.yaml's task names them obb."""
    import shutil

    run = tmp_path / "obb83"
    shutil.copytree(task_runs["obb"], run)
    lines = (run / "results.csv").read_text().splitlines()
    head = [h.strip() for h in lines[0].split(",")]
    keep = [i for i, h in enumerate(head) if "angle" not in h]
    (run / "results.csv").write_text("\n".join(",".join(line.split(",")[i] for i in keep) for line in lines) + "\n")
    assert compare([run])[0]["task"] == "obb"
    (run / "args.yaml").write_text("task: detect\n")
    assert compare([run])[0]["task"] == "detect"
