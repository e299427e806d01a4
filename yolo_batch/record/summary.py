"""End of run: what the batch did, as a short table in the log and as ``batch_effect.png``.

Rows are read for the task that wrote them: `task_of` recognises it from the columns Ultralytics writes
(``metrics/accuracy_top1`` for classify, ``metrics/mAP50-95(M)`` for segment, ...), so a run of any age reads
right without its arguments. Each task's metrics are named as Ultralytics names them, its headline metric
(Ultralytics' ``TASK2METRIC``) first; the train loss is the sum of the task's own ``train/*loss`` columns.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yolo_batch.core.history import chosen, epoch_words, row_spans, spans_words
from yolo_batch.core.pace_record import check_line
from yolo_batch.record.effect import atomic_write_bytes

if TYPE_CHECKING:
    from collections.abc import Iterable


@dataclass(frozen=True)
class Task:
    """How the rows of one Ultralytics task read.

    Attributes:
        name (str): The task, as Ultralytics names it (``detect``, ``segment``, ...).
        marker (str): A column that only this task's rows hold (checked in `TASKS` order).
        metrics (tuple): ``(label, column)`` pairs, the task's headline metric first.
    """

    name: str
    marker: str
    metrics: tuple[tuple[str, str], ...]

    @property
    def headline(self) -> tuple[str, str]:
        """``(label, column)`` of the metric Ultralytics ranks this task's runs by."""
        return self.metrics[0]


def _map(kind: str, tag: str) -> tuple[tuple[str, str], ...]:
    return (f"{kind} mAP50-95", f"metrics/mAP50-95({tag})"), (f"{kind} mAP50", f"metrics/mAP50({tag})")


TOP1, TOP5 = ("top-1 accuracy", "metrics/accuracy_top1"), ("top-5 accuracy", "metrics/accuracy_top5")
DEPTH = (("delta1", "metrics/delta1"), ("abs_rel", "metrics/abs_rel"), ("rmse", "metrics/rmse"))
TASKS = (
    Task("classify", "metrics/accuracy_top1", (TOP1, TOP5)),
    Task("segment", "metrics/mAP50-95(M)", _map("mask", "M") + _map("box", "B")),
    Task("pose", "metrics/mAP50-95(P)", _map("pose", "P") + _map("box", "B")),
    Task("semantic", "metrics/mIoU", (("mIoU", "metrics/mIoU"), ("pixel accuracy", "metrics/pixel_acc"))),
    Task("depth", "metrics/delta1", DEPTH),
    Task("obb", "train/angle_loss", _map("box", "B")),  # Ultralytics 8.4; 8.3's obb rows read as detect's
    Task("detect", "metrics/mAP50-95(B)", _map("box", "B")),
)


def task_of(columns: Iterable[str]) -> Task | None:
    """The task whose rows hold ``columns`` (None when no metric column is there).

    Examples:
        >>> task_of(["epoch", "train/loss", "metrics/accuracy_top1", "metrics/accuracy_top5"]).name
        'classify'
        >>> task_of(["train/box_loss", "metrics/mAP50(B)", "metrics/mAP50-95(B)", "metrics/mAP50-95(M)"]).name
        'segment'
    """
    present = set(columns)
    return next((t for t in TASKS if t.marker in present), None)


def number(v: Any) -> float | None:
    """A CSV cell as a float; None for empty, unparsable or NaN."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def loss_columns(columns: Iterable[str]) -> list[str]:
    """The train-loss columns: ``train/loss`` (classify) or ``train/box_loss``, ``train/cls_loss``, ...

    Examples:
        >>> loss_columns(["epoch", "train/box_loss", "train/cls_loss", "val/box_loss", "lr/pg0"])
        ['train/box_loss', 'train/cls_loss']
    """
    return [k for k in columns if k.startswith("train/") and k.endswith("loss")]


def train_loss(row: dict[str, Any]) -> float | None:
    """Sum of a row's train-loss columns (box + cls + dfl for detect, ``train/loss`` for classify, ...)."""
    parts = [number(row[k]) for k in loss_columns(row)]
    known = [p for p in parts if p is not None]
    return sum(known) if known else None


def _loss_label(columns: Iterable[str]) -> str:
    """``train loss`` and, when it is a sum, its parts: ``train loss (box + cls + dfl)``."""
    names = [k[len("train/") :].removesuffix("_loss") for k in loss_columns(columns)]
    return "train loss" if names in ([], ["loss"]) else f"train loss ({' + '.join(names)})"


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(k for r in rows for k in r))


def metric_line(rows: list[dict[str, Any]]) -> str | None:
    """The task's metrics: of the best model (the ``final`` row), else of the best epoch by the headline metric.

    Examples:
        >>> metric_line([{"epoch": 1, "metrics/accuracy_top1": 0.5, "metrics/accuracy_top5": 1.0},
        ...              {"epoch": 2, "metrics/accuracy_top1": 0.625, "metrics/accuracy_top5": 1.0}])
        'best epoch 2 by top-1 accuracy: top-1 accuracy 0.625, top-5 accuracy 1.000'
    """
    task = task_of(_columns(rows))
    if task is None:
        return None
    head = task.headline[1]
    final = next((r for r in rows if str(r.get("epoch")) == "final"), None)
    epochs = [r for r in rows if str(r.get("epoch")) != "final" and number(r.get(head)) is not None]
    if final is not None and number(final.get(head)) is not None:
        row, lead = final, "best model"
    elif epochs:
        row = max(epochs, key=lambda r: number(r[head]) or 0.0)  # each has a number (epochs above)
        lead = f"best epoch {row['epoch']} by {task.headline[0]}"
    else:
        return None
    shown = [f"{label} {v:.3f}" for label, col in task.metrics if (v := number(row.get(col))) is not None]
    return f"{lead}: {', '.join(shown)}"


def summarize(rows: list[dict[str, Any]], decision: dict | None, noise: float | None = None) -> list[str]:
    """Log lines summarising a run from its effect rows (epochs, then ``final``) and its decision."""
    epochs = [r for r in rows if str(r.get("epoch")) != "final"]
    if not epochs:
        return []
    last = epochs[-1]
    batches = [b for b, _ in groupby(int(r["batch"]) for r in epochs)]  # in the epochs' order
    how = chosen(decision, int(epochs[0]["batch"]) if str(epochs[0]["epoch"]) == "1" else None)
    speeds = [v for r in epochs if (v := number(r.get("images_per_s"))) is not None]
    peaks = [v for r in epochs if (v := number(r.get("peak_mem_bytes"))) is not None]
    utils = [v for r in epochs if (v := number(r.get("mem_utilization"))) is not None]
    first_loss, last_loss = train_loss(epochs[0]), train_loss(last)
    acc, eff = epoch_words(epochs, "accumulate"), epoch_words(epochs, "effective_batch")  # each epoch's own
    lines = [
        "summary " + "-" * 60,
        f"batch {' -> '.join(map(str, batches))} {how}; accumulate {acc}{'; ' if ',' in acc + eff else ', '}"
        f"effective batch {eff} (nbs {last['nbs']})",
    ]
    if speeds:
        over = "one epoch" if len(speeds) == 1 else f"mean of {len(speeds)} epochs"
        lines.append(f"speed {sum(speeds) / len(speeds):.1f} images/s (training only, {over})")
        check = check_line(rows, decision)
        if check:
            lines.append(check)
    if peaks:
        util = f" ({max(utils) * 100:.1f}% of the device)" if utils else ""
        lines.append(f"peak memory {max(peaks) / 2**30:.2f} GiB{util}")
    metrics = metric_line(rows)
    if metrics:
        lines.append(metrics)
    if first_loss is not None and last_loss is not None:
        label = _loss_label(_columns(epochs))
        if len(epochs) == 1:
            lines.append(f"{label} {last_loss:.3f} (one epoch)")
        else:
            lines.append(
                f"{label} {first_loss:.3f} (epoch {epochs[0]['epoch']}) -> {last_loss:.3f} (epoch {last['epoch']})"
            )
    if noise:
        lines.append(f"gradient-noise scale ~{noise:.0f} images at the end (training batch {batches[-1]})")
    sum_oom = int(number(last.get("oom_events")) or 0)
    if sum_oom:
        lines.append(f"out-of-memory events survived: {sum_oom}")
    return lines


def plot_effect(rows: list[dict[str, Any]], decision: dict | None, path: str | Path, plots: bool = True) -> Path | None:
    """Save `effect_figure` as a PNG (atomically), unless the run's ``plots`` is False, as Ultralytics does.

    Args:
        rows (list[dict]): The effect rows (epochs, then ``final``).
        decision (dict | None): The batch decision, whose reason heads the figure.
        path (str | Path): Where the PNG goes.
        plots (bool): The run's ``plots`` argument: False draws nothing.

    Returns:
        (Path | None): ``path``, or None when nothing was drawn.
    """
    if not plots or not any(str(r.get("epoch")) != "final" for r in rows):
        return None
    import io

    buf = io.BytesIO()
    effect_figure(rows, decision).savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def effect_figure(rows: list[dict[str, Any]], decision: dict | None):
    """The run's curves under its batch facts: train loss, the task's metrics, batch, speed, memory, noise.

    Six panels over one shared epoch axis (integer ticks); a panel without a value says "no reading".

    Returns:
        (matplotlib.figure.Figure): On its own Agg canvas (pyplot's global state is never touched).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [r for r in rows if str(r.get("epoch")) != "final"]
    columns = _columns(epochs)
    task = task_of(columns)
    x = [int(r["epoch"]) for r in epochs]
    fig = Figure(figsize=(12, 7.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 3, sharex=True)
    metric = {label: [number(r.get(col)) for r in epochs] for label, col in (task.metrics if task else ())}
    panels = [
        (_loss_label(columns), {"": [train_loss(r) for r in epochs]}),
        (f"{task.name} metrics (validation)" if task else "metrics (validation)", metric),
        ("batch", {"": [number(r.get("batch")) for r in epochs]}),
        ("images/s (training)", {"": [number(r.get("images_per_s")) for r in epochs]}),
        ("peak memory (GiB)", {"": [_scaled(r.get("peak_mem_bytes"), 2**30) for r in epochs]}),
        ("gradient-noise scale", {"": [number(r.get("grad_noise_scale")) for r in epochs]}),
    ]
    for i, (ax, (title, series)) in enumerate(zip(axes.flat, panels)):
        ax.set_title(title, fontsize=10)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if i >= 3:
            ax.set_xlabel("epoch")
        drawn = [(label, ys) for label, ys in series.items() if any(y is not None for y in ys)]
        if not drawn:
            ax.text(0.5, 0.5, "no reading", ha="center", va="center", color="0.5", transform=ax.transAxes)
            ax.set_yticks([])
            continue
        ax.grid(alpha=0.3)
        for label, ys in drawn:
            ax.plot(x, [math.nan if y is None else y for y in ys], "o-", label=label or None)
        if len(drawn) > 1:
            ax.legend(fontsize=8)
    facts = _facts(epochs, decision)
    fig.suptitle(textwrap.fill(facts, 150), fontsize=10)
    return fig


def _facts(epochs: list[dict[str, Any]], decision: dict | None) -> str:
    """The figure's title: each batch with its epochs and how it was chosen, or the one batch and its reason."""
    if not epochs:
        return ""
    spans = row_spans(epochs)
    facts = f"batch {spans_words(spans) if len(spans) > 1 else epochs[-1]['batch']}"
    effective = epoch_words(epochs, "effective_batch")
    facts += f"{'; ' if len(spans) > 1 or ',' in effective else ', '}effective {effective}"
    first = int(epochs[0]["batch"]) if str(epochs[0]["epoch"]) == "1" else None
    how = chosen(decision, first)
    if how.startswith("("):  # more than one batch, or epochs before the history: each batch and how it came
        return f"{facts} {how}"
    if decision:
        facts += f" — auto-plus {decision['policy']}: {decision['reason']}"
    return facts


def _scaled(v: Any, unit: float) -> float | None:
    x = number(v)
    return None if x is None else x / unit
