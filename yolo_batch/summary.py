"""End of run: what the batch did, as a short table in the log and as ``batch_effect.png``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

MAP50, MAP = "metrics/mAP50(B)", "metrics/mAP50-95(B)"


def number(v: Any) -> float | None:
    """A CSV cell as a float; None for empty, unparsable or NaN."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def train_loss(row: dict[str, Any]) -> float | None:
    """Sum of a row's ``train/*_loss`` columns (box + cls + dfl, or box + cls + l1 for YOLO26)."""
    parts = [number(v) for k, v in row.items() if k.startswith("train/") and k.endswith("_loss")]
    parts = [p for p in parts if p is not None]
    return sum(parts) if parts else None


def summarize(rows: list[dict[str, Any]], decision: dict | None, noise: float | None = None) -> list[str]:
    """Log lines summarising a run from its effect rows (epochs, then ``final``) and its decision."""
    epochs = [r for r in rows if str(r.get("epoch")) != "final"]
    if not epochs:
        return []
    final = next((r for r in rows if str(r.get("epoch")) == "final"), None)
    last = epochs[-1]
    batches = sorted({int(r["batch"]) for r in epochs}, reverse=True)
    how = f"picked by auto-plus ({decision['policy']})" if decision else "as given"
    speeds = [v for r in epochs if (v := number(r.get("images_per_s"))) is not None]
    peaks = [v for r in epochs if (v := number(r.get("peak_mem_bytes"))) is not None]
    utils = [v for r in epochs if (v := number(r.get("mem_utilization"))) is not None]
    maps = [(number(r.get(MAP50)) or 0.0, number(r.get(MAP)) or 0.0) for r in epochs]
    best50, best = max(m[0] for m in maps), max(m[1] for m in maps)
    first_loss, last_loss = train_loss(epochs[0]), train_loss(last)
    lines = [
        "summary " + "-" * 60,
        f"batch {' -> '.join(map(str, batches))} {how}; accumulate {last['accumulate']}, "
        f"effective batch {last['effective_batch']} (nbs {last['nbs']})",
    ]
    if speeds:
        lines.append(f"speed {sum(speeds) / len(speeds):.1f} images/s (training only, mean of {len(speeds)} epochs)")
    if peaks:
        util = f" ({max(utils) * 100:.1f}% of the device)" if utils else ""
        lines.append(f"peak memory {max(peaks) / 2**30:.2f} GiB{util}")
    if final is not None and number(final.get(MAP50)) is not None:
        lines.append(f"best model mAP50 {number(final.get(MAP50)):.3f}, mAP50-95 {number(final.get(MAP)):.3f}")
    else:
        lines.append(f"best epoch mAP50 {best50:.3f}, mAP50-95 {best:.3f}")
    if first_loss is not None and last_loss is not None:
        lines.append(f"train loss {first_loss:.3f} (epoch 1) -> {last_loss:.3f} (epoch {last['epoch']})")
    if noise:
        lines.append(f"gradient-noise scale ~{noise:.0f} images at the end (training batch {batches[-1]})")
    sum_oom = int(number(last.get("oom_events")) or 0)
    if sum_oom:
        lines.append(f"out-of-memory events survived: {sum_oom}")
    return lines


def plot_effect(rows: list[dict[str, Any]], decision: dict | None, path: str | Path) -> Path:
    """Save the run's curves beside its batch facts: loss, mAP, speed and memory per epoch."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from yolo_batch.effect import atomic_write_bytes

    epochs = [r for r in rows if str(r.get("epoch")) != "final"]
    x = [int(r["epoch"]) for r in epochs]
    fig = Figure(figsize=(12, 7), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 3)
    panels = [
        ("train loss (sum)", [train_loss(r) for r in epochs]),
        ("mAP50 / mAP50-95", None),
        ("batch", [number(r.get("batch")) for r in epochs]),
        ("images/s (training)", [number(r.get("images_per_s")) for r in epochs]),
        ("peak memory (GiB)", [(number(r.get("peak_mem_bytes")) or 0) / 2**30 for r in epochs]),
        ("gradient-noise scale", [number(r.get("grad_noise_scale")) for r in epochs]),
    ]
    for ax, (title, ys) in zip(axes.flat, panels):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ys is None:
            ax.plot(x, [number(r.get(MAP50)) for r in epochs], "o-", label="mAP50")
            ax.plot(x, [number(r.get(MAP)) for r in epochs], "s-", label="mAP50-95")
            ax.legend(fontsize=8)
        elif any(y is not None for y in ys):
            ax.plot(x, [y if y is not None else float("nan") for y in ys], "o-")
    facts = f"batch {epochs[-1]['batch']}, effective {epochs[-1]['effective_batch']}" if epochs else ""
    if decision:
        facts += f" — auto-plus {decision['policy']}: {decision['reason']}"
    fig.suptitle(facts[:160], fontsize=10)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)
