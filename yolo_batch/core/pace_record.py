"""``speed``'s words and record fields around a `throughput.Pace` (pure, stdlib only).

`record_fields`: ``batch_decision.json``'s speed keys (the laws, the timed points, both ceilings and the binding
one); `law_line`: the decision table's line; `check_line`: the summary's check of the prediction against the
steady epochs.
"""

from __future__ import annotations

import math
from typing import Any

from yolo_batch.core.readback import INT, NUMBER, ListOf, Maybe, Opt
from yolo_batch.core.throughput import Pace, pace_from_record

SPEED = {  # ``speed``'s shape read back (a law-cache entry, a resumed run's record), as `pace_from_record` reads it
    "time_law": {
        "fixed_seconds": NUMBER,
        "per_image_seconds": NUMBER,
        "optimizer_seconds": NUMBER,
        "nbs": Opt(INT),
        "knee": Opt(INT),
        "beyond_per_image_seconds": Opt(NUMBER),
    },
    "loader": {"images_per_s": Opt(Maybe(NUMBER)), "overlapped": Opt(bool), "workers": Opt(INT), "cpus": Opt(INT)},
    "points": Opt(Maybe({"law": Opt(Maybe(ListOf(ListOf(NUMBER, 2))))})),
    "dataset_size": Opt(Maybe(INT)),
    "epochs": Opt(Maybe(INT)),
}


def record_fields(pace: Pace | None, batch: int, probe: Any = None) -> dict[str, Any]:
    """``batch_decision.json``'s speed fields: both laws, the timed points, predicted images/s at the pick.

    Args:
        pace (Pace | None): The run's pace (None: not measured).
        batch (int): The pick.
        probe: The `probe.ProbeResult` with the timed steps, if any.

    Returns:
        (dict): ``speed`` (laws and points, or None), ``predicted_images_per_s``, ``loader_bound`` and ``ceilings``
        (both ceilings and the binding one, `Pace.ceilings`) at the pick.
    """
    if pace is None:
        return {"speed": None, "predicted_images_per_s": None, "loader_bound": None, "ceilings": None}
    speed = pace.as_record()
    speed["points"] = {"law": [[b, round(v, 5)] for b, v in pace.points]}
    if probe is not None:
        speed["points"] |= {
            "probe_seconds": [[b, round(v, 5)] for b, v in sorted(probe.train_seconds.items())],
            "optimizer_seconds": [round(v, 5) for v in probe.optimizer_seconds],
            "val_seconds": [[b, round(v, 5)] for b, v in sorted(probe.val_seconds.items())],
            "warmup_seconds": round(probe.warmup_seconds, 5),
        }
    return {
        "speed": speed,
        "predicted_images_per_s": round(pace.images_per_s(batch), 1),
        "loader_bound": pace.loader_bound(batch),
        "ceilings": pace.ceilings(batch),
    }


def law_line(record: dict[str, Any]) -> str:
    """The decision table's line about speed: the step's time law and the dataloader's rate.

    Examples:
        >>> from yolo_batch.core.throughput import TimeLaw
        >>> print(law_line({"speed": Pace(TimeLaw(0.05, 0.0021, 0.03), 480.0, True, 8, 16).as_record()}))
        time law 50.0 ms + 2.10 ms/image per step, optimizer 30.0 ms per 64 images; dataloader 480 images/s (8 workers)
    """
    speed = record["speed"]
    law, loader = speed["time_law"], speed["loader"]
    rate = loader.get("images_per_s")
    how = "" if loader.get("overlapped") else ", its time adds to the step's"
    workers = loader.get("workers", 0)
    data = f"dataloader {rate:.0f} images/s ({workers} workers{how})" if rate else "dataloader not timed"
    knee = law.get("knee")
    beyond = f" ({law['beyond_per_image_seconds'] * 1e3:.2f} above {knee}, refitted)" if knee else ""
    line = (
        f"time law {law['fixed_seconds'] * 1e3:.1f} ms + {law['per_image_seconds'] * 1e3:.2f} ms/image{beyond} per "
        f"step, optimizer {law['optimizer_seconds'] * 1e3:.1f} ms per {law.get('nbs', 64)} images; {data}"
    )
    ceilings = record.get("ceilings")
    if not ceilings:
        return line
    steps = ceilings.get("step_images_per_s") or []
    timed = ", ".join(f"{v:.0f} at {b}" for b, v in steps)
    timed = f"step images/s {timed} (timed); " if timed else ""
    return f"{line}; {timed}{ceilings['binding']}-bound at the pick (step {ceilings['step_at_pick']:.0f} images/s)"


def steady_images_per_s(rows: list[dict[str, Any]], batch: int, skip: int = 1) -> tuple[float, int] | None:
    """Mean measured training images/s of the epochs at ``batch`` after the first ``skip`` ones, and their count.

    The first epoch pays the dataloader's start and the first steps' warm-up; later epochs are steady.

    Examples:
        >>> rows = [{"epoch": 1, "batch": 8, "images_per_s": 50.0}, {"epoch": 2, "batch": 8, "images_per_s": 60.0},
        ...         {"epoch": 3, "batch": 8, "images_per_s": 62.0}, {"epoch": "final", "batch": 8}]
        >>> steady_images_per_s(rows, 8)
        (61.0, 2)
    """
    speeds = []
    for r in rows:
        if str(r.get("epoch")) == "final" or str(r.get("batch")) != str(batch):
            continue
        try:
            speeds.append(float(r["images_per_s"]))
        except (KeyError, TypeError, ValueError):
            continue
    speeds = speeds[skip:]
    finite = [v for v in speeds if math.isfinite(v) and v > 0]
    return (sum(finite) / len(finite), len(finite)) if finite else None


def check_line(rows: list[dict[str, Any]], record: dict[str, Any] | None) -> str | None:
    """The summary's check of the time law: predicted images/s at the pick against the steady epochs'.

    Examples:
        >>> from yolo_batch.core.throughput import TimeLaw
        >>> rec = {"batch": 8, "speed": Pace(TimeLaw(0.06, 0.0125)).as_record()}
        >>> rows = [{"epoch": e, "batch": 8, "images_per_s": v} for e, v in ((1, 40.0), (2, 48.0), (3, 52.0))]
        >>> check_line(rows, rec)
        'speed: predicted 50.0 images/s at batch 8, measured 50.0 over 2 steady epochs (+0.0%)'
    """
    pace = pace_from_record(record or {})
    batch = (record or {}).get("batch")
    if pace is None or not batch:
        return None
    steady = steady_images_per_s(rows, batch)
    if steady is None:
        return None
    measured, n = steady
    predicted = pace.images_per_s(int(batch))
    return (
        f"speed: predicted {predicted:.1f} images/s at batch {batch}, measured {measured:.1f} over {n} steady "
        f"epoch{'s' if n != 1 else ''} ({(predicted - measured) / measured:+.1%})"
    )
