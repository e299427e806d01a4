"""The what-if rows of ``yolo-batch plan``: each policy's pick on other memory sizes, from a measured law (pure).

A device of another size is assumed to lose what other processes hold on this one; the law's fixed part is
counted once; the training-set cap and the run's settings apply, and a pick that a cap decided (not memory) is
marked. An extrapolation from one device, not a measurement. No torch, no trainer: the record alone.
"""

from __future__ import annotations

from typing import Any

from yolo_batch.core.policy import GIB, Law, MemoryModel, decide, gib, images

# Memory sizes for the what-if table, per device kind (GiB): common cards, unified-memory Macs, CPU RAM.
WHAT_IF_GIB = {
    "cuda": (8, 16, 24, 40, 80, 141),
    "mps": (8, 16, 24, 36, 64, 128),
    "cpu": (8, 16, 32, 64, 128, 256),
}
POLICIES = ("ladder", "fit")


def others_bytes(record: dict[str, Any]) -> int:
    """Memory of the device that neither is free nor this process's: other processes (and, on CUDA, contexts).

    Examples:
        >>> others_bytes({"total_bytes": 100, "free_bytes": 60, "held_bytes": 10, "other_bytes": 0})
        30
        >>> others_bytes({"other_bytes": 5})
        5
    """
    if all(record.get(k) is not None for k in ("total_bytes", "free_bytes", "held_bytes")):
        return max(int(record["total_bytes"] - record["free_bytes"] - record["held_bytes"]), 0)
    return int(record.get("other_bytes") or 0)


def what_if(record: dict[str, Any], sizes_gib: tuple[float, ...] | None = None) -> list[dict[str, Any]]:
    """The pick of each policy on other memory sizes of the same device kind, from the measured law.

    A device of ``size`` GiB is assumed to lose what this one loses to others: memory neither free nor this
    process's (other processes, and on CUDA the contexts; `others_bytes`); the rest is usable, and the budget
    is ``utilization`` of it. The law's fixed part (weights, optimizer state, workspaces) is part of the
    predicted peak, so it is counted once. The training-set cap and the settings of the run (candidates,
    min/max batch) still apply; a pick that a cap decided (memory would allow more) is marked.

    Args:
        record (dict): A ``batch_decision.json`` record (with ``settings``, as ``plan`` and training write it).
        sizes_gib (tuple[float, ...] | None): Memory sizes; default: ``WHAT_IF_GIB`` for the device kind.

    Returns:
        (list[dict]): One row per size: ``total_gib``, ``budget_bytes``, ``{policy: batch}`` picks (0: none fits)
            and ``capped``, the policies whose pick a cap (the training set, ``max_batch``) decided, not memory.

    Examples:
        >>> r = {"device": "cuda:0", "other_bytes": 0, "utilization": 0.5, "fixed_bytes": 2**30,
        ...      "per_image_bytes": 2**28, "val_fixed_bytes": None, "val_per_image_bytes": None,
        ...      "dataset_size": 70, "settings": {"candidates": [16, 32, 64], "min_batch": 1, "max_batch": 512}}
        >>> [(row["total_gib"], row["picks"], row["capped"]) for row in what_if(r, (8, 40))]
        [(8, {'ladder': 12, 'fit': 12}, []), (40, {'ladder': 64, 'fit': 64}, ['fit'])]
    """
    kind = str(record["device"]).split(":")[0]
    sizes = sizes_gib or WHAT_IF_GIB.get(kind, WHAT_IF_GIB["cuda"])
    val = None
    if record.get("val_per_image_bytes") is not None:
        val = Law(record["val_fixed_bytes"], record["val_per_image_bytes"])
    model = MemoryModel(Law(record["fixed_bytes"], record["per_image_bytes"]), val, record.get("val_batch_factor", 2))
    s, n = record["settings"], record.get("dataset_size")
    rows = []
    for size in sizes:
        budget = record["utilization"] * max(size * GIB - others_bytes(record), 0)

        def pick(p: str, budget: float = budget, capped: bool = True) -> int:
            top = s["max_batch"] if capped else 2**31 - 1
            return decide(
                model,
                budget,
                policy=p,
                candidates=tuple(s["candidates"]),
                min_batch=s["min_batch"],
                max_batch=top,
                dataset_size=n if capped else None,
            ).batch

        picks = {p: pick(p) for p in POLICIES}
        capped = [p for p in POLICIES if picks[p] != pick(p, capped=False)]  # the cap, not memory, decided these
        rows.append({"total_gib": size, "budget_bytes": int(budget), "picks": picks, "capped": capped})
    return rows


def what_if_table(record: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    """The what-if rows as text lines, labelled as an extrapolation; a pick a cap decided is marked ``*``."""
    kind = str(record["device"]).split(":")[0]
    others = others_bytes(record)
    lines = [
        f"what if: other {kind} memory sizes, extrapolated from this device's law "
        f"({gib(record['fixed_bytes'])} + {record['per_image_bytes'] / 2**20:.1f} MiB/image, "
        f"utilization {record['utilization']:.2f}, training set {images(record.get('dataset_size'))}; "
        f"each size less the {gib(others)} other processes hold here)",
        f"{'memory':>8} {'budget':>11} " + " ".join(f"{p:>7}" for p in POLICIES),
    ]
    for row in rows:
        marked = [f"{str(row['picks'][p] or '-') + ('*' if p in row.get('capped', ()) else ''):>7}" for p in POLICIES]
        lines.append(f"{row['total_gib']:>4} GiB {gib(row['budget_bytes']):>11} {' '.join(marked)}")
    if any(row.get("capped") for row in rows):
        lines.append(f"* decided by {cap_name(record)}, not by memory: memory would allow a larger batch")
    return lines


def cap_name(record: dict[str, Any]) -> str:
    """The cap of a record's batch: ``the training set, 32 images`` or ``max_batch 512``.

    Examples:
        >>> cap_name({"dataset_size": 1, "settings": {"max_batch": 512}})
        'the training set, 1 image'
    """
    n, top = record.get("dataset_size"), record["settings"]["max_batch"]
    return f"the training set, {images(n)}" if n and n < top else f"max_batch {top}"
