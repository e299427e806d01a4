"""The decision's record (``batch_decision.json``'s top level) from numbers alone: no trainer, no device, no torch.

`decide` measures; `build` lays the measurements out in the order the file shows them; `records` keeps and
writes the result (the one writer of the decision and its history).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from yolo_batch.core.pace_record import law_line
from yolo_batch.core.policy import gib

if TYPE_CHECKING:
    from yolo_batch.core.policy import Candidate, MemoryModel
    from yolo_batch.core.spec import BatchSpec


def build(
    *,
    batch: int,
    value: str | None,
    spec: BatchSpec,
    head: Any,
    budget: float,
    model: MemoryModel,
    probe_law: MemoryModel,
    candidates: tuple[Candidate, ...],
    verified: int | None,
    reason: str,
    seconds: dict[str, float],
    probe_points: dict[str, Any],
    facts: dict[str, Any],
    extra: dict[str, Any],
) -> dict[str, Any]:
    """The decision's record (``batch_decision.json``'s top level), from numbers alone: no trainer, no device.

    Args:
        batch (int): The pick.
        value (str | None): The auto-plus value asked for.
        spec (BatchSpec): The settings.
        head (memory.Headroom): The device's memory at the decision.
        budget (float): Bytes planned for.
        model (policy.MemoryModel): The memory law the pick stands on (refitted through a verified step).
        probe_law (policy.MemoryModel): The law from the probe alone.
        candidates (list[policy.Candidate]): The policy's candidates.
        verified (int | None): The verified peak bytes at the pick, or None when not verified.
        reason (str): Why, in words.
        seconds (dict): ``probe_seconds``, ``probe_setup_seconds``, ``probe_warmup_seconds``, ``verify_seconds``,
            ``decision_seconds``.
        probe_points (dict): The probe's ``train``, ``val``, ``used`` and ``oom`` points.
        facts (dict): What the probe found about the run: ``dataset_size``, ``task``, ``worst_case``, ...
        extra (dict): The speed fields, ``goodput``, the lr_scaling fields and ``versions``, as they are.

    Returns:
        (dict): The record, keys in the order the file shows them.
    """
    val = model.val
    return {
        "batch": batch,
        "value": value,
        "policy": spec.policy,
        "utilization": spec.utilization,
        "device": head.device,
        "total_bytes": head.total_bytes,
        "free_bytes": head.free_bytes,
        "held_bytes": head.held_bytes,
        "other_bytes": head.other_bytes,
        "memory_source": head.source,
        "budget_bytes": int(budget),
        "fixed_bytes": int(model.train.fixed_bytes),
        "per_image_bytes": int(model.train.per_image_bytes),
        "val_fixed_bytes": int(val.fixed_bytes) if val else None,
        "val_per_image_bytes": int(val.per_image_bytes) if val else None,
        "probe_law": {
            "fixed_bytes": int(probe_law.train.fixed_bytes),
            "per_image_bytes": int(probe_law.train.per_image_bytes),
        },
        "candidates": [
            {
                "batch": c.batch,
                "predicted_peak_bytes": int(c.predicted_peak_bytes),
                "fits": c.fits,
                "cap": c.cap,
                "predicted_images_per_s": round(c.images_per_s, 1) if c.images_per_s else None,
            }
            for c in candidates
        ],
        "predicted_peak_bytes": int(model.peak(batch)),
        "verified_peak_bytes": verified,
        "reason": reason,
        **{k: round(v, 3) for k, v in seconds.items()},
        "probe_points": probe_points,
        **facts,
        "config": spec.config,
        "settings": {**spec.as_dict(), "val_batch": model.val_batch},
        **extra,
    }


def decision_table(r: dict[str, Any]) -> list[str]:
    """The decision as log lines: headroom, one row per candidate, the pick and why."""
    speed = any(c.get("predicted_images_per_s") for c in r["candidates"])

    def ips(value: object) -> str:
        return f" {value or '-':>9}" if speed else ""

    lines = [
        f"{r['device']} usable {gib(r['free_bytes'] + r['held_bytes'])} "
        f"x utilization {r['utilization']:.2f} = budget {gib(r['budget_bytes'])}; "
        f"memory law {gib(r['fixed_bytes'])} + {r['per_image_bytes'] / 2**20:.1f} MiB/image",
        *([law_line(r)] if r.get("speed") else []),
        f"{'batch':>7} {'predicted peak':>15} {'fits':>5}" + (f" {'images/s':>9}" if speed else ""),
    ]
    for c in r["candidates"]:
        mark = "  <- pick" if c["batch"] == r["batch"] else f"  above {c['cap']}" if c.get("cap") else ""
        fits = f"{'yes' if c['fits'] else 'no':>5}{ips(c.get('predicted_images_per_s'))}"
        lines.append(f"{c['batch']:>7} {gib(c['predicted_peak_bytes']):>15} {fits}{mark}")
    if r["batch"] not in [c["batch"] for c in r["candidates"]]:
        pick_ips = ips(r.get("predicted_images_per_s"))
        lines.append(f"{r['batch']:>7} {gib(r['predicted_peak_bytes']):>15} {'yes':>5}{pick_ips}  <- pick")
    verified = r["verified_peak_bytes"]
    check = ""
    if verified:
        err = (r["predicted_peak_bytes"] - verified) / verified * 100
        check = f"; verified peak {gib(verified)} (prediction {err:+.1f}%)"
    lines.append(f"batch={r['batch']} ({r['policy']}): {r['reason']}{check}; decided in {r['decision_seconds']:.1f}s")
    return lines
