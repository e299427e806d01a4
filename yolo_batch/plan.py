"""``yolo-batch plan``: the auto-plus decision for a training run, without training it.

The run is set up exactly as ``yolo train`` would set it up (the stock entrypoint parses the arguments, the
trainer builds the model, moves it to the device, checks AMP, and calls ``auto_batch``), so the probe sees the
same model, optimizer, augmentation, image size and AMP. Right after the decision the run is stopped: no
dataloader is built and no epoch is trained. The run folder the trainer made lives in a temporary folder and
is removed; with ``project=``/``name=`` the decision is written to that folder as ``batch_decision.json``.

After the decision comes a what-if table: the batch each policy would pick on other memory sizes of the same
device kind, from the measured memory law. It is an extrapolation (same model, image size, AMP and CUDA
context; the law's fixed part counted once), not a measurement.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from yolo_batch.spec import AutoPlusError, looks_like_auto_plus

# Memory sizes for the what-if table, per device kind (GiB): common cards, unified-memory Macs, CPU RAM.
WHAT_IF_GIB = {
    "cuda": (8, 16, 24, 40, 80, 141),
    "mps": (8, 16, 24, 36, 64, 128),
    "cpu": (8, 16, 32, 64, 128, 256),
}
POLICIES = ("ladder", "fit")
USAGE = """usage: yolo-batch plan model=MODEL data=DATA [imgsz=640] [device=0] [batch=auto-plus[:POLICY][:FRACTION]]
                       [project=DIR name=NAME] [any yolo train key=value ...] [--json]

Runs the auto-plus probe, policy and verification in the trainer's own set-up, prints the decision and a
what-if table for other memory sizes, and stops before the first epoch. Nothing is written unless project=
or name= is given (then batch_decision.json, with the what-if table, goes to that run folder). --json prints
the record instead of the tables.
"""


def what_if(record: dict[str, Any], sizes_gib: tuple[float, ...] | None = None) -> list[dict[str, Any]]:
    """The pick of each policy on other memory sizes of the same device kind, from the measured law.

    A device of ``size`` GiB is assumed to lose what this one loses outside the process's torch pool (the
    CUDA context and other processes, ``other_bytes``); the rest is usable, and the budget is ``utilization``
    of it. The law's fixed part (weights, optimizer state, workspaces) is part of the predicted peak, so it is
    counted once. The training-set cap and the settings of the run (candidates, min/max batch) still apply.

    Args:
        record (dict): A ``batch_decision.json`` record (with ``settings``, as ``plan`` and training write it).
        sizes_gib (tuple[float, ...] | None): Memory sizes; default: ``WHAT_IF_GIB`` for the device kind.

    Returns:
        (list[dict]): One row per size: ``total_gib``, ``budget_bytes`` and ``{policy: batch}`` picks (0: none fits).

    Examples:
        >>> r = {"device": "cuda:0", "other_bytes": 0, "utilization": 0.5, "fixed_bytes": 2**30,
        ...      "per_image_bytes": 2**28, "val_fixed_bytes": None, "val_per_image_bytes": None,
        ...      "dataset_size": 10000, "settings": {"candidates": [16, 32, 64], "min_batch": 1, "max_batch": 512}}
        >>> [(row["total_gib"], row["picks"]) for row in what_if(r, (8, 40))]
        [(8, {'ladder': 12, 'fit': 8}), (40, {'ladder': 64, 'fit': 72})]
    """
    from yolo_batch.policy import GIB, Law, MemoryModel, decide

    kind = str(record["device"]).split(":")[0]
    sizes = sizes_gib or WHAT_IF_GIB.get(kind, WHAT_IF_GIB["cuda"])
    val = None
    if record.get("val_per_image_bytes") is not None:
        val = Law(record["val_fixed_bytes"], record["val_per_image_bytes"])
    model = MemoryModel(Law(record["fixed_bytes"], record["per_image_bytes"]), val, record.get("val_batch_factor", 2))
    s = record["settings"]
    rows = []
    for size in sizes:
        budget = record["utilization"] * max(size * GIB - record["other_bytes"], 0)
        picks = {
            p: decide(
                model,
                budget,
                policy=p,
                candidates=tuple(s["candidates"]),
                min_batch=s["min_batch"],
                max_batch=s["max_batch"],
                dataset_size=record.get("dataset_size"),
            ).batch
            for p in POLICIES
        }
        rows.append({"total_gib": size, "budget_bytes": int(budget), "picks": picks})
    return rows


def what_if_table(record: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    """The what-if rows as text lines, labelled as an extrapolation."""
    from yolo_batch.policy import gib

    kind = str(record["device"]).split(":")[0]
    lines = [
        f"what if: other {kind} memory sizes, extrapolated from this device's law "
        f"({gib(record['fixed_bytes'])} + {record['per_image_bytes'] / 2**20:.1f} MiB/image, "
        f"utilization {record['utilization']:.2f}, training set {record.get('dataset_size')} images)",
        f"{'memory':>8} {'budget':>11} " + " ".join(f"{p:>7}" for p in POLICIES),
    ]
    for row in rows:
        picks = " ".join(f"{row['picks'][p] or '-':>7}" for p in POLICIES)
        lines.append(f"{row['total_gib']:>4} GiB {gib(row['budget_bytes']):>11} {picks}")
    return lines


def _split(args: list[str]) -> tuple[list[str], dict[str, str], bool]:
    """(training words, plan's own project/name, --json) from the command line; one-line errors."""
    json_out = False
    words, own = [], {}
    for a in args:
        if a == "--json":
            json_out = True
        elif a in {"-h", "--help"}:
            raise _Help
        elif a.startswith("-"):
            raise AutoPlusError(f"plan: unknown option {a!r}; valid: --json, --help")
        elif "=" not in a:
            raise AutoPlusError(f"plan: argument {a!r} must be key=value (as with yolo train)")
        else:
            key, _, value = a.partition("=")
            if key in {"project", "name"}:
                own[key] = value
            elif key in {"mode", "resume", "exist_ok"}:
                raise AutoPlusError(f"plan: {key}= does not apply: plan sets up a new training run and stops")
            else:
                words.append(a)
    pairs = dict(w.split("=", 1) for w in words)
    batch = pairs.get("batch", "auto-plus")
    if not looks_like_auto_plus(batch):
        raise AutoPlusError(f"plan: batch={batch} is not an auto-plus value; use batch=auto-plus[:POLICY][:FRACTION]")
    if "," in pairs.get("device", "") or pairs.get("device", "").strip() in {"-1", "cuda:-1"}:
        raise AutoPlusError(
            f"plan: device={pairs['device']} names several devices; plan measures one: pass one device (device=0)"
        )
    if "batch" not in pairs:
        words.append("batch=auto-plus")
    if "model" not in pairs:
        raise AutoPlusError("plan: model= is required (for example model=yolo11n.yaml or model=yolo11n.pt)")
    return words, own, json_out


class _Help(Exception):
    pass


def plan(words: list[str]) -> tuple[dict[str, Any], str]:
    """Set up the training run of ``yolo train WORDS`` in a temporary folder, decide, stop; (record, task)."""
    import ultralytics.cfg
    import ultralytics.utils.callbacks as integrations

    import yolo_batch
    from yolo_batch import decide

    yolo_batch.activate()
    tmp = tempfile.mkdtemp(prefix="yolo-batch-plan-")
    argv = list(sys.argv)  # Ultralytics keeps sys.argv itself as ARGV: edit the list in place
    sys.argv[:] = ["yolo", "train", *words, f"project={tmp}", "name=plan", "exist_ok=True", "plots=False"]
    # a plan is no training run: no MLflow/W&B/DVC/... run is opened for it (DVCLive would leave dvclive/ behind)
    add_integrations, integrations.add_integration_callbacks = integrations.add_integration_callbacks, _no_loggers
    try:
        with decide.planning():  # auto_batch raises Planned once the decision is made: nothing trains
            ultralytics.cfg.entrypoint()
    except decide.Planned as done:
        return done.record, done.task
    finally:
        integrations.add_integration_callbacks = add_integrations
        sys.argv[:] = argv
        shutil.rmtree(tmp, ignore_errors=True)
    raise AutoPlusError("plan: the run did not reach the batch decision (is batch an auto-plus value?)")


def _no_loggers(instance) -> None:
    """Stands in for Ultralytics' ``add_integration_callbacks`` while a plan runs."""


def _out_dir(own: dict[str, str], task: str) -> Path:
    """The run folder ``yolo train project=... name=...`` would use (without numbering a new one)."""
    from types import SimpleNamespace

    from ultralytics.cfg import get_save_dir

    ns = SimpleNamespace(project=own.get("project"), name=own.get("name") or "plan", task=task, mode="train")
    ns.exist_ok = True
    return Path(get_save_dir(ns))


def cmd_plan(args: list[str]) -> int:
    """``yolo-batch plan``: print the decision and the what-if table (or ``--json``); 0 on success."""
    try:
        words, own, json_out = _split(args)
    except _Help:
        print(USAGE, end="")
        return 0
    out = sys.stdout
    if json_out:  # Ultralytics logs to stdout: keep stdout for the JSON alone
        sys.stdout = sys.stderr
    try:
        record, task = _quiet(plan, words)
    finally:
        sys.stdout = out
    record = {**record, "what_if": what_if(record)}
    if own:
        from yolo_batch.effect import write_json

        folder = _out_dir(own, task)
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / "batch_decision.json", record)
    if json_out:
        print(json.dumps(record, indent=2))
        return 0
    from yolo_batch.decide import decision_table

    for line in [*decision_table(record), "", *what_if_table(record, record["what_if"])]:
        print(line)
    if own:
        print(f"\nwrote {folder / 'batch_decision.json'}")
    return 0


def _quiet(fn, *args):
    """Run ``fn`` with Ultralytics' info lines off (warnings and errors still show, on stderr)."""
    import logging

    from ultralytics.utils import LOGGER

    level, streams = LOGGER.level, [(h, getattr(h, "stream", None)) for h in LOGGER.handlers]
    LOGGER.setLevel(logging.WARNING)
    for h, _ in streams:
        if isinstance(h, logging.StreamHandler):
            h.setStream(sys.stderr)
    try:
        return fn(*args)
    finally:
        LOGGER.setLevel(level)
        for h, stream in streams:
            if stream is not None:
                h.setStream(stream)
