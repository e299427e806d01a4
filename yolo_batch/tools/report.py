"""Reading finished runs: the decision table and final metrics of one run, and comparisons across runs."""

from __future__ import annotations

import csv
import io
import math
import os
import sys
from pathlib import Path
from typing import Any

from yolo_batch.callbacks import DECISION_FILE, EFFECT_FILE
from yolo_batch.core.decision_record import decision_table
from yolo_batch.core.history import batch_spans, epoch_words, row_spans, spans_words
from yolo_batch.core.readback import Damaged, read_yaml
from yolo_batch.core.spec import AutoPlusError
from yolo_batch.record.effect import atomic_write, atomic_write_bytes, read_csv, read_effect
from yolo_batch.record.records import ARGS_FILE, read_decision
from yolo_batch.record.summary import TASKS, Task, number, task_of, train_loss
from yolo_batch.tools.cmdline import parse_pairs

LOWER_IS_BETTER = {"metrics/abs_rel", "metrics/rmse", "metrics/silog"}  # depth errors: their best is the lowest


def load_run(run: str | Path) -> dict[str, Any]:
    """A run folder's decision (or None), effect rows and results.csv rows.

    A damaged ``batch_decision.json``, ``batch_effect.csv`` or ``args.yaml`` is left out with one line on stderr
    (the run is reported with what its other files tell).

    Raises:
        AutoPlusError: For a damaged results.csv (one line, naming it): the run has no epochs to report.
    """
    run = Path(run)
    decision, effect, results = run / DECISION_FILE, run / EFFECT_FILE, run / "results.csv"
    try:
        rows = read_csv(results) if results.is_file() else []
    except Damaged as e:
        raise AutoPlusError(f"compare: {e}; nothing to report for this run") from None
    if (run / ARGS_FILE).is_file():
        _args(run, say=True)
    return {
        "dir": run,
        "decision": _left_out(read_decision, decision, None),
        "effect": _left_out(read_effect, effect, []),
        "results": rows,
    }


def _left_out(reader, path: Path, default: Any) -> Any:
    """``reader(path)``; ``default`` when the file is absent, and with one line on stderr when it is damaged."""
    if not path.is_file():
        return default
    try:
        return reader(path)
    except Damaged as e:
        print(f"{e}; left out", file=sys.stderr)
        return default


def _args(run: Path, say: bool = False) -> dict[str, Any]:
    """The run's ``args.yaml`` as a dict; empty when absent or damaged (with one line on stderr when ``say``)."""
    path = run / ARGS_FILE
    if not path.is_file():
        return {}
    try:
        return read_yaml(path, dict)
    except Damaged as e:
        if say:
            print(f"{e}; left out", file=sys.stderr)
        return {}


def print_run(run: str | Path) -> None:
    """Print a run's decision table and its final metrics."""
    r = load_run(run)
    if r["decision"]:
        print("\nDecision (batch_decision.json):")
        for line in decision_table(r["decision"]):
            print("  " + line)
    final = next((row for row in r["effect"] if row.get("epoch") == "final"), None)
    last = r["results"][-1] if r["results"] else {}
    source = final or last
    task = task_of([*source, *(r["results"][0] if r["results"] else {})])
    values = [(label, number(source.get(col))) for label, col in (task.metrics if task else ())]
    shown = [f"{label} {v:.3f}" for label, v in values if v is not None]
    if shown:
        print("\nFinal metrics (best.pt on the validation set):" if final else "\nLast epoch metrics:")
        print("  " + "  ".join(shown))
    print(f"\nRun folder: {r['dir']}")


# ---------------------------------------------------------------------------------------------------------
# Across runs: ``yolo-batch compare RUN_DIR... [out=DIR]``.

HEAD = ("run", "task", "batch", "batches", "effective_batch", "policy", "epochs")
TAIL = ("final_train_loss", "images_per_s", "peak_mem_gib", "wall_s", "dir")
CSV_FILE, PNG_FILE = "comparison.csv", "comparison.png"
COMPARE_USAGE = "usage: yolo-batch compare RUN_DIR... [out=DIR]"


def metric_key(column: str) -> str:
    """A metric's name in comparison columns: Ultralytics' column without ``metrics/``.

    Examples:
        >>> metric_key("metrics/mAP50-95(M)"), metric_key("metrics/accuracy_top1")
        ('mAP50-95(M)', 'accuracy_top1')
    """
    return column.removeprefix("metrics/")


def columns(rows: list[dict[str, Any]]) -> tuple[str, ...]:
    """The comparison's columns: `HEAD`, ``best_`` and ``final_`` of each metric of the runs' tasks, `TAIL`.

    Examples:
        >>> columns([{"task": "classify"}])[7:11]
        ('best_accuracy_top1', 'final_accuracy_top1', 'best_accuracy_top5', 'final_accuracy_top5')
    """
    tasks = {r["task"] for r in rows}
    metrics = dict.fromkeys(metric_key(col) for t in TASKS if t.name in tasks for _, col in t.metrics)
    return HEAD + tuple(f"{k}_{m}" for m in metrics for k in ("best", "final")) + TAIL


def compare(runs: list[Path], out: Path | None = None) -> list[dict[str, Any]]:
    """Summarise several runs side by side; write ``comparison.csv`` and ``comparison.png``.

    A run's batch comes from ``batch_effect.csv``, else ``batch_decision.json``, else ``weights/last.pt``'s
    ``train_args``, else ``args.yaml`` (when it holds a batch >= 1). Its metrics are its task's
    (`yolo_batch.record.summary.task_of` reads the task from results.csv's columns): "best" is the best value any
    epoch reached, per metric (the highest; the lowest for depth's errors), "final" the last epoch's. Runs
    without ``batch_effect.csv`` (stock runs) leave the effective batch, images/s and peak memory empty.
    ``wall_s`` adds up each segment's last ``time`` in ``results.csv`` (`wall_seconds`: it restarts when a run
    is resumed; the effect log's ``segment_start`` names where).

    Args:
        runs (list[Path]): Run folders, each holding the ``results.csv`` Ultralytics writes.
        out (Path | None): Folder for the two files; defaults to the runs' common parent.

    Returns:
        (list[dict]): One row per run, keyed by `columns` (the metrics of other tasks' runs absent); unknown
            values are None.

    Raises:
        AutoPlusError: For no runs, a path that is not a run folder, or a run with no finished epoch.
    """
    if not runs:
        raise AutoPlusError(f"compare: no run folders given; {COMPARE_USAGE}")
    paths = [Path(r) for r in runs]
    for p in paths:
        if not p.exists():
            raise AutoPlusError(f"compare: {str(p)!r} does not exist; pass run folders written by yolo train")
        if not p.is_dir():
            raise AutoPlusError(f"compare: {str(p)!r} is a file; pass run folders written by yolo train")
        if not (p / "results.csv").is_file():
            raise AutoPlusError(
                f"compare: {str(p)!r} is not a run folder (no results.csv); pass folders written by yolo train, "
                "e.g. runs/detect/train"
            )
    parent = Path(os.path.commonpath([str(p.resolve().parent) for p in paths]))
    out = Path(out) if out is not None else parent
    if out.exists() and not out.is_dir():
        raise AutoPlusError(f"compare: out={str(out)!r} is a file; pass a folder for {CSV_FILE} and {PNG_FILE}")
    loaded = [_summarise(p, str(p.resolve().relative_to(parent))) for p in paths]
    rows = [row for row, _ in loaded]
    out.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    names = columns(rows)
    writer = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in names})
    atomic_write(out / CSV_FILE, buf.getvalue())
    png = io.BytesIO()
    comparison_figure(loaded).savefig(png, format="png")
    atomic_write_bytes(out / PNG_FILE, png.getvalue())
    return rows


def compare_cli(args: list[str]) -> int:
    """``yolo-batch compare RUN_DIR... [out=DIR]``: print the table and write the two files.

    Args:
        args (list[str]): Run folders and ``key=value`` options (an existing path is always a run folder).

    Returns:
        (int): 0.

    Raises:
        AutoPlusError: For a bad option, no runs, or a folder that is not a run.
    """
    runs = [a for a in args if "=" not in a or Path(a).exists()]
    opts = parse_pairs([a for a in args if a not in runs], {"out": str}, "compare")
    if not runs:
        raise AutoPlusError(f"compare: no run folders given; {COMPARE_USAGE}")
    out = Path(opts["out"]) if "out" in opts else None
    rows = compare([Path(r) for r in runs], out)
    for line in format_table(rows):
        print(line)
    where = out if out is not None else Path(os.path.commonpath([str(Path(r).resolve().parent) for r in runs]))
    print(f"\nwrote {where / CSV_FILE} and {where / PNG_FILE}")
    return 0


def format_table(rows: list[dict[str, Any]]) -> list[str]:
    """The comparison as aligned text lines, one row per run (``-`` for an unknown value).

    Each task present adds its first two metrics (its headline metric first), best and final.
    """
    tasks = {r["task"] for r in rows}
    table = [("run", "run"), ("batch", "batch"), ("eff", "effective_batch"), ("epochs", "epochs")]
    if len(tasks) > 1:
        table.insert(1, ("task", "task"))
    shown = dict.fromkeys(m for t in TASKS if t.name in tasks for m in t.metrics[:2])
    for label, col in shown:
        table += [(f"{label} best", f"best_{metric_key(col)}"), ("final", f"final_{metric_key(col)}")]
    table += [("train loss", "final_train_loss"), ("img/s", "images_per_s"), ("peak GiB", "peak_mem_gib")]
    table += [("wall s", "wall_s")]
    heads, keys = zip(*table)
    digits = {"images_per_s": 1, "peak_mem_gib": 2, "wall_s": 1}
    shown_rows = [{**r, "batch": r["batches"]} if "," in (r.get("batches") or "") else r for r in rows]
    cells = [[_show(r.get(k), digits.get(k, 3)) for k in keys] for r in shown_rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(heads)]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(heads, widths)))]
    for c in cells:
        lines.append("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(c, widths))))
    return lines


def _summarise(run: Path, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """One run's comparison row and its per-epoch series for the plots."""
    r = load_run(run)
    results = once(r["results"])
    if not results:
        raise AutoPlusError(f"compare: {str(run)!r} has no finished epoch in results.csv yet; compare it later")
    epochs_rows = [e for e in r["effect"] if e.get("epoch") != "final"]
    starts = {n for n in (_int(e.get("segment_start")) for e in epochs_rows) if n is not None}
    wall = wall_seconds(r["results"], starts)  # every segment ran, a redone epoch's too
    last = results[-1]
    losses = [train_loss(row) for row in results]
    speeds = [v for v in (number(e.get("images_per_s")) for e in epochs_rows) if v is not None]
    peaks = [v for v in (number(e.get("peak_mem_bytes")) for e in epochs_rows) if v is not None]
    task = _task(run, results)
    out: dict[str, Any] = {
        "run": name,
        "task": task.name if task else None,
        "batch": _batch(run, epochs_rows, r["decision"]),
        "batches": _batches(epochs_rows, r["decision"], len(results)),
        "effective_batch": _int(epochs_rows[-1].get("effective_batch")) if epochs_rows else None,
        "policy": (r["decision"] or {}).get("policy"),
        "epochs": len(results),
    }
    for _, col in task.metrics if task else ():
        values = [v for v in (number(row.get(col)) for row in results) if v is not None]
        best = min if col in LOWER_IS_BETTER else max
        out[f"best_{metric_key(col)}"] = best(values) if values else None
        out[f"final_{metric_key(col)}"] = number(last.get(col))
    out["final_train_loss"] = losses[-1]
    out["images_per_s"] = sum(speeds) / len(speeds) if speeds else None
    out["peak_mem_gib"] = max(peaks) / 2**30 if peaks else None
    out["wall_s"] = wall
    out["dir"] = str(run)
    head = task.headline[1] if task else ""
    series = {
        "epoch": [_int(row.get("epoch")) for row in results],
        "loss": losses,
        "metric": [number(row.get(head)) for row in results],
        "task": task,
        "effective": epoch_words(epochs_rows, "effective_batch") or None,
    }
    return out, series


def once(results: list[dict[str, str]]) -> list[dict[str, str]]:
    """results.csv's rows with each epoch once: the last row of an epoch redone after a resume.

    Ultralytics appends a row per finished epoch; a run stopped after writing a row but before saving its
    checkpoint redoes that epoch on resume and appends it again.

    Examples:
        >>> rows = [{"epoch": "1", "time": "5"}, {"epoch": "2", "time": "9"}, {"epoch": "2", "time": "4"}]
        >>> [r["time"] for r in once(rows)]
        ['5', '4']
    """
    last = {str(row.get("epoch", "")).strip(): row for row in results}
    return list(last.values())


def _batches(epoch_rows: list[dict[str, str]], decision: dict | None, epochs: int) -> str | None:
    """Each batch with its epochs (``8 (1), 32 (2-3)``): from the decision's history, else from the effect log."""
    history = (decision or {}).get("history")
    if history:
        first = next((_int(e.get("batch")) for e in epoch_rows if str(e.get("epoch")) == "1"), None)
        spans = batch_spans(history, epochs, first)
    else:
        spans = row_spans(epoch_rows)
    return spans_words(spans) or None


def _task(run: Path, results: list[dict[str, str]]) -> Task | None:
    """The run's task from results.csv's columns; ``obb`` too where only args.yaml tells it from detect (8.3)."""
    task = task_of(results[0]) if results else None
    if task is not None and task.name == "detect" and _args(run).get("task") == "obb":
        return next(t for t in TASKS if t.name == "obb")
    return task


def _batch(run: Path, epoch_rows: list[dict[str, str]], decision: dict | None) -> int | None:
    """The batch the run trained at: effect log, decision, checkpoint, then args.yaml."""
    if epoch_rows and _int(epoch_rows[-1].get("batch")):
        return _int(epoch_rows[-1]["batch"])
    if decision and isinstance(decision.get("batch"), int):
        return decision["batch"]
    last = run / "weights" / "last.pt"
    if last.is_file():
        try:
            import torch

            args = torch.load(last, map_location="cpu", weights_only=False).get("train_args") or {}
            if isinstance(args.get("batch"), int) and args["batch"] >= 1:
                return args["batch"]
        except Exception:  # noqa: BLE001 - an unreadable checkpoint only hides the batch
            pass
    batch = _args(run).get("batch")
    if isinstance(batch, int) and not isinstance(batch, bool) and batch >= 1:
        return batch
    return None


def wall_seconds(results: list[dict[str, str]], starts: set[int] | frozenset[int] = frozenset()) -> float | None:
    """Training seconds: the last ``time`` of each segment (a start or a resume) of results.csv, added up.

    Ultralytics' ``time`` counts from the segment's own start. A segment begins at an epoch the effect log names
    as a stretch's first (``segment_start``, in ``starts``: that epoch's last row), at an epoch redone, or where
    ``time`` falls (a run the plugin did not log). A resumed stretch longer than the one before it is found too.

    Examples:
        >>> rows = [{"epoch": "1", "time": "1.0"}, {"epoch": "2", "time": "1.5"}, {"epoch": "3", "time": "2.0"}]
        >>> wall_seconds(rows), wall_seconds(rows, {2})
        (2.0, 3.0)
        >>> wall_seconds(rows + [{"epoch": "3", "time": "0.75"}])  # epoch 3 redone after a resume
        2.75
    """
    last = {str(row.get("epoch", "")).strip(): i for i, row in enumerate(results)}
    total, prev, prev_epoch = 0.0, None, None
    for i, row in enumerate(results):
        t, epoch = number(row.get("time")), _int(row.get("epoch"))
        if t is None:
            continue
        named = epoch in starts and last.get(str(row.get("epoch", "")).strip()) == i
        redone = epoch is not None and prev_epoch is not None and epoch <= prev_epoch
        if prev is not None and (t < prev or named or redone):
            total += prev
        prev, prev_epoch = t, epoch
    return None if prev is None else total + prev


def legend_label(row: dict[str, Any], series: dict[str, Any]) -> str:
    """A run's name in `comparison_figure`'s legends: each epoch's batch and effective batch, as the run trained.

    Examples:
        >>> legend_label({"run": "a", "batch": 64, "batches": "40 (1), 64 (2-3)"}, {"effective": "80 (1), 64 (2-3)"})
        'a (batch 40 (1), 64 (2-3); effective 80 (1), 64 (2-3))'
        >>> legend_label({"run": "b", "batch": 16, "batches": "16 (1-3)"}, {"effective": "64"})
        'b (batch 16, effective 64)'
        >>> legend_label({"run": "stock", "batch": None, "batches": None}, {"effective": None})
        'stock (batch ?)'
    """
    batches = row.get("batches") or ""
    batch = batches if "," in batches else row["batch"] if row["batch"] is not None else "?"
    effective = series.get("effective")
    if not effective:
        return f"{row['run']} (batch {batch})"
    return f"{row['run']} (batch {batch}{'; ' if ',' in f'{batch}{effective}' else ', '}effective {effective})"


def comparison_figure(loaded: list[tuple[dict[str, Any], dict[str, Any]]]):
    """The 2x2 figure of `compare`'s runs: loss and headline metric per epoch, images/s and memory per batch.

    Args:
        loaded (list[tuple]): Each run's row and per-epoch series, as `_summarise` gives them.

    Returns:
        (matplotlib.figure.Figure): On its own Agg canvas (pyplot's global state is never touched).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(11, 8), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    (loss_ax, map_ax), (speed_ax, mem_ax) = fig.subplots(2, 2)
    headlines = {s["task"].headline[0] for _, s in loaded if s["task"]}
    one = len(headlines) == 1
    for row, s in loaded:
        label = legend_label(row, s)
        loss_ax.plot(s["epoch"], [_nan(v) for v in s["loss"]], marker="o", label=label)
        if s["task"]:
            named = label if one else f"{label}: {s['task'].headline[0]}"
            map_ax.plot(s["epoch"], [_nan(v) for v in s["metric"]], marker="o", label=named)
    metric_title = f"{headlines.pop()} vs epoch" if one else "each run's headline metric vs epoch"
    for ax, title in ((loss_ax, "train loss (sum) vs epoch"), (map_ax, metric_title)):
        ax.set(title=title, xlabel="epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.lines:
            ax.legend(fontsize="small")
    for ax, key, title in (
        (speed_ax, "images_per_s", "training images/s vs batch"),
        (mem_ax, "peak_mem_gib", "peak memory (GiB) vs batch"),
    ):
        points = sorted((r["batch"], r[key], r["run"]) for r, _ in loaded if r["batch"] and r[key] is not None)
        ax.set(title=title, xlabel="batch")
        if not points:
            ax.text(0.5, 0.5, "no batch_effect.csv in these runs", ha="center", va="center", transform=ax.transAxes)
            continue
        joined = len({p[0] for p in points}) == len(points)  # a line only through one run per batch
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", linestyle="-" if joined else "")
        ax.set_xscale("log", base=2)
        ax.margins(y=0.12)  # room for the labels above the top point
        ax.set_xticks(sorted({p[0] for p in points}), [str(b) for b in sorted({p[0] for p in points})])
        right = max(p[0] for p in points)
        for b, v, name in points:  # the rightmost labels lean left, inside the axes
            lean = b == right and len(points) > 1
            ax.annotate(
                name, (b, v), textcoords="offset points", xytext=(-5 if lean else 5, 5),
                ha="right" if lean else "left", fontsize="small",
            )  # fmt: skip
    return fig


def _int(v: Any) -> int | None:
    x = number(v)
    return int(x) if x is not None else None


def _max(values) -> float | None:
    nums = [x for x in map(number, values) if x is not None]
    return max(nums) if nums else None


def _nan(v: float | None) -> float:
    return math.nan if v is None else v


def _cell(v: Any) -> Any:
    """CSV cell: floats as ``%.6g`` (as results.csv), None empty."""
    if v is None:
        return ""
    return f"{v:.6g}" if isinstance(v, float) else v


def _show(v: Any, digits: int) -> str:
    if v is None:
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)
