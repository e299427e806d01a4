"""The end-of-run summary and ``batch_effect.png`` for every task, on rows of real tiny runs."""

from __future__ import annotations

import math

import pytest

from tests.task_runs import MODELS, all_task_runs
from yolo_batch.record import summary
from yolo_batch.record.effect import read_csv
from yolo_batch.record.summary import TASKS, effect_figure, plot_effect, summarize, task_of

# What each task's summary must call its metrics (as Ultralytics names them), and its train-loss parts.
EXPECT = {
    "detect": ("box mAP50-95", "train loss (box + cls + dfl)"),
    "segment": ("mask mAP50-95", "train loss (box + seg + cls + dfl"),
    "pose": ("pose mAP50-95", "train loss (box + pose + kobj + cls + dfl)"),
    "obb": ("box mAP50-95", "train loss (box + cls + dfl + angle)"),
    "classify": ("top-1 accuracy", "train loss "),
    "semantic": ("mIoU", "train loss (ce + dice + aux)"),
    "depth": ("delta1", "train loss (dlog + dgrad)"),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return all_task_runs(tmp_path_factory)


def test_every_task_is_named_and_ranked_as_ultralytics_does():
    from ultralytics.cfg import TASK2METRIC

    trained = set(MODELS) & set(TASK2METRIC)
    assert {t.name for t in TASKS} >= trained
    for t in TASKS:
        if t.name in TASK2METRIC:
            assert t.headline[1] == TASK2METRIC[t.name], t.name


def test_the_metric_columns_are_ultralytics_own():
    """Each task's columns are those its Ultralytics metrics object names (a renamed column fails here)."""
    from ultralytics.utils import metrics

    keys = {
        "detect": metrics.DetMetrics().keys,
        "segment": metrics.SegmentMetrics().keys,
        "pose": metrics.PoseMetrics().keys,
        "obb": metrics.OBBMetrics().keys,
        "classify": metrics.ClassifyMetrics().keys,
    }
    for name, columns in keys.items():
        task = next(t for t in TASKS if t.name == name)
        assert {col for _, col in task.metrics} <= set(columns), name
        if name != "obb":  # obb and detect share their metric columns; obb is told by its angle loss
            assert task_of(columns).name == name


@pytest.mark.slow
@pytest.mark.parametrize("task", list(EXPECT))
def test_summary_of_a_real_run(runs, task):
    if task not in runs:
        pytest.skip(f"{task} needs Ultralytics 8.4")
    rows = read_csv(runs[task] / "batch_effect.csv")
    assert task_of(rows[0]).name == task
    lines = summarize(rows, None)
    metric, loss = EXPECT[task]
    (metrics,) = [line for line in lines if line.startswith("best model: ")]
    final = rows[-1]
    t = task_of(rows[0])
    assert metrics == "best model: " + ", ".join(f"{label} {float(final[col]):.3f}" for label, col in t.metrics)
    assert metrics.startswith(f"best model: {metric} ")
    assert "mAP" not in metrics or task not in {"classify", "semantic", "depth"}
    (losses,) = [line for line in lines if line.startswith("train loss")]
    first, last = summary.train_loss(rows[0]), summary.train_loss(rows[1])
    assert losses.startswith(loss) and losses.endswith(f"{first:.3f} (epoch 1) -> {last:.3f} (epoch 2)")
    assert first == pytest.approx(sum(float(rows[0][c]) for c in summary.loss_columns(rows[0])))


@pytest.mark.slow
@pytest.mark.parametrize("task", ["classify", "segment"])
def test_best_epoch_without_a_final_row(runs, task):
    """A run stopped before its final evaluation: the best epoch by the headline metric, named."""
    rows = [r for r in read_csv(runs[task] / "batch_effect.csv") if r["epoch"] != "final"]
    t = task_of(rows[0])
    best = max(rows, key=lambda r: float(r[t.headline[1]]))
    line = summary.metric_line(rows)
    assert line.startswith(f"best epoch {best['epoch']} by {t.headline[0]}: {t.headline[0]} ")


@pytest.mark.slow
def test_one_epoch_reads_plainly(runs):
    rows = read_csv(runs["detect"] / "batch_effect.csv")[:1]
    (line,) = [x for x in summarize(rows, None) if x.startswith("train loss")]
    assert line == f"train loss (box + cls + dfl) {summary.train_loss(rows[0]):.3f} (one epoch)"
    assert "->" not in line
    (speed,) = [x for x in summarize(rows, None) if x.startswith("speed")]
    assert speed == f"speed {float(rows[0]['images_per_s']):.1f} images/s (training only, one epoch)"


def _finite(ax) -> bool:
    return any(any(math.isfinite(y) for y in line.get_ydata()) for line in ax.lines)


@pytest.mark.slow
@pytest.mark.parametrize("task", list(EXPECT))
def test_plot_of_a_real_run_draws_loss_and_metrics(runs, task):
    if task not in runs:
        pytest.skip(f"{task} needs Ultralytics 8.4")
    rows = read_csv(runs[task] / "batch_effect.csv")
    fig = effect_figure(rows, None)
    loss_ax, metric_ax = fig.axes[:2]
    assert _finite(loss_ax) and loss_ax.get_title().startswith(EXPECT[task][1].rstrip())
    assert _finite(metric_ax) and metric_ax.get_title() == f"{task} metrics (validation)"
    labels = [t.get_text() for t in metric_ax.get_legend().get_texts()]
    assert labels == [label for label, _ in task_of(rows[0]).metrics]


def _rows(epochs: int, noise: bool) -> list[dict]:
    return [
        {"epoch": e, "batch": 16, "accumulate": 4, "effective_batch": 64, "nbs": 64, "train/box_loss": 3.0 / e,
         "metrics/mAP50(B)": 0.1 * e, "metrics/mAP50-95(B)": 0.05 * e, "images_per_s": 100.0 + e,
         "peak_mem_bytes": 2**30, "grad_noise_scale": 50.0 * e if noise else None}
        for e in range(1, epochs + 1)
    ]  # fmt: skip


def test_long_reason_stays_inside_the_figure_and_ticks_are_whole_epochs():
    reason = "; ".join(f"{b} needs {b / 10:.2f} GiB > budget 3.60 GiB" for b in (512, 256, 128, 64, 32)) * 2
    fig = effect_figure(_rows(3, noise=True), {"policy": "ladder", "reason": reason})
    renderer = fig.canvas.get_renderer()
    title = fig._suptitle
    assert "\n" in title.get_text()  # wrapped
    box, frame = title.get_window_extent(renderer), fig.bbox
    assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and box.y1 <= frame.y1
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ax.get_title()


def test_panel_without_a_value_says_so_over_the_same_epochs():
    fig = effect_figure(_rows(4, noise=False), None)
    noise = fig.axes[5]
    assert noise.get_title() == "gradient-noise scale" and not noise.lines
    assert [t.get_text() for t in noise.texts] == ["no reading"]
    assert len({ax.get_xlim() for ax in fig.axes}) == 1  # one epoch range for every panel
    assert fig.axes[0].get_xlim()[0] <= 1 and fig.axes[0].get_xlim()[1] >= 4


def test_plots_false_writes_no_png(tmp_path):
    assert plot_effect(_rows(2, noise=True), None, tmp_path / "a.png", plots=False) is None
    assert not (tmp_path / "a.png").exists()
    assert plot_effect(_rows(2, noise=True), None, tmp_path / "b.png") == tmp_path / "b.png"
    assert (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_a_real_run_with_plots_false_writes_no_png(tiny_data, tmp_path):
    from ultralytics import YOLO

    from tests.conftest import train_in_process

    train_in_process(YOLO("yolo11n.yaml"), tiny_data, tmp_path, batch="auto-plus", plots=False)
    run = tmp_path / "run"
    assert (run / "batch_effect.csv").is_file() and (run / "batch_decision.json").is_file()
    assert not (run / "batch_effect.png").exists()


def test_title_of_a_run_whose_batch_changed_names_each_batch_and_how_it_came():
    rows = [
        {"epoch": e, "batch": b, "accumulate": 1, "effective_batch": b, "nbs": 8, "train/loss": 1.0}
        for e, b in ((1, 8), (2, 32), (3, 32))
    ]
    history = [
        {"source": "auto-plus", "batch": 8, "policy": "goodput", "from_epoch": 1},
        {"source": "goodput", "batch": 32, "from_epoch": 2},
    ]
    decision = {**history[0], "reason": "the speed pick", "history": history}
    title = effect_figure(rows, decision)._suptitle.get_text().replace("\n", " ")
    assert title == (
        "batch 8 (1), 32 (2-3); effective 8 (1), 32 (2-3) (8 from epoch 1, picked by auto-plus (goodput); "
        "32 from epoch 2, switched by goodput)"
    )  # each epoch's own effective batch, not the last epoch's for all
    one = effect_figure(rows[:1], {**decision, "history": history[:1]})._suptitle.get_text()
    assert one == "batch 8, effective 8 — auto-plus goodput: the speed pick"


def test_each_epoch_states_its_own_effective_batch():
    """Epoch 1 at 40 (accumulate 2: 80 images a step), then goodput's 64 (one step of 64): issue 21."""
    rows = [
        {"epoch": e, "batch": b, "accumulate": a, "effective_batch": b * a, "nbs": 64, "train/box_loss": 3.0 / e}
        for e, b, a in ((1, 40, 2), (2, 64, 1), (3, 64, 1))
    ]
    history = [
        {"source": "auto-plus", "batch": 40, "policy": "goodput", "from_epoch": 1},
        {"source": "goodput", "batch": 64, "from_epoch": 2},
    ]
    decision = {**history[0], "reason": "the speed pick", "history": history}
    title = effect_figure(rows, decision)._suptitle.get_text().replace("\n", " ")
    assert title.startswith("batch 40 (1), 64 (2-3); effective 80 (1), 64 (2-3) (40 from epoch 1, ")
    line = summarize(rows, decision)[1]
    assert line.endswith("; accumulate 2 (1), 1 (2-3); effective batch 80 (1), 64 (2-3) (nbs 64)"), line
    same = [{**r, "batch": 16, "accumulate": 4, "effective_batch": 64} for r in rows]
    assert summarize(same, None)[1] == "batch 16 as given; accumulate 4, effective batch 64 (nbs 64)"
