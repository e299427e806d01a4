"""The law cache: a repeat decision on the same set-up checks the cached memory law with one step at the pick.

A decision that probed saves its laws (memory, and time when measured) to one JSON file per set-up in
``<Ultralytics settings folder>/yolo_batch_laws/`` (the folder of ``settings.json``, ``YOLO_CONFIG_DIR`` when
set). The set-up is what the memory law depends on, in two parts:

- ``setup`` (the file's name is its hash): the model definition, imgsz and multi_scale, task, AMP, optimizer,
  compile and deterministic, the device's name and total memory, the probe settings, the validation batch,
  and the torch, Ultralytics and yolo-batch versions;
- ``check`` (needs the training set): the worst-case batch (the densest images' label counts) and the
  optimizer Ultralytics built (``optimizer=auto`` picks by the training set's size).

A hit checks the pick by one verified step exactly where a fresh decision would verify it (`retime.checked`,
from the probe's step seconds saved in the entry), so it never costs more than the decision it replaces. If the
step runs out of memory or its peak is more than `TOLERANCE` off the cached law (on a CPU: above it; see
`_disagreement`), or anything above differs, the full probe runs (and saves). ``probe.cache: false`` turns the
cache off.
``yolo-batch cache`` lists the entries and ``yolo-batch cache clear`` removes them.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yolo_batch.core import policy
from yolo_batch.core.pace_record import SPEED
from yolo_batch.core.readback import INT, NUMBER, Damaged, ListOf, Maybe, Opt, read_json
from yolo_batch.core.spec import AutoPlusError, printable
from yolo_batch.core.throughput import pace_from_record
from yolo_batch.decide import retime
from yolo_batch.decide.probe import ProbeResult
from yolo_batch.record.effect import write_json
from yolo_batch.session import log
from yolo_batch.train import valbatch

if TYPE_CHECKING:
    from ultralytics.engine.trainer import BaseTrainer


FOLDER = "yolo_batch_laws"
FORMAT = 1
TOLERANCE = 0.05  # a verified step further than this from the cached law runs the full probe
ONE_SIDED = {"cpu"}  # meters whose peak carries the process's history: only a peak above the law disagrees


@dataclass
class Picked:
    """What a decision path (the full probe, or the cache) hands the record."""

    batch: int
    model: Any  # policy.MemoryModel, refitted through the verified step when it was
    probe_law: Any
    result: Any  # probe.ProbeResult (the cache's stored points, no seconds, on a hit)
    used: list
    flat: bool
    pace: Any
    decision: Any
    head: Any
    budget: float
    verified: int | None
    notes: list[str] = field(default_factory=list)
    lead: list[str] = field(default_factory=list)
    verify_seconds: float = 0.0
    peaks: tuple | None = None  # the verified step's (training, validation) peaks at the pick
    time_refit: dict | None = None  # the time law refitted through a step timed at a far pick (`decide`)


def folder() -> Path:
    """The cache's folder: ``yolo_batch_laws`` beside Ultralytics' ``settings.json``."""
    from ultralytics.utils import USER_CONFIG_DIR

    return Path(USER_CONFIG_DIR) / FOLDER


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def setup_of(trainer: BaseTrainer, spec, backend, versions: dict[str, str]) -> dict[str, Any] | None:
    """The set-up part of the key (no dataset needed); None when the model has no definition to hash."""
    import torch

    model = trainer.model.module if hasattr(trainer.model, "module") else trainer.model
    definition = getattr(model, "yaml", None)
    if not isinstance(definition, dict):
        return None
    a, device = trainer.args, trainer.device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    return {
        "model": _digest(definition),
        "model_name": str(definition.get("yaml_file") or a.model),
        "imgsz": a.imgsz,
        "multi_scale": float(a.multi_scale),
        "task": a.task,
        "amp": [bool(trainer.amp), str(a.amp)],
        "optimizer": str(a.optimizer),
        "compile": str(a.compile),
        "deterministic": bool(a.deterministic),
        "device": name,
        "total_bytes": int(backend.headroom().total_bytes),
        "probe_batches": list(spec.probe_batches),
        "probe_val": spec.probe_val,
        "val_batch": valbatch.wanted(),
        "versions": versions,
    }


def check_of(prober) -> dict[str, Any]:
    """The part of the key that needs the training set: the worst-case batch and the optimizer built."""
    labels = getattr(prober.dataset, "labels", None) if prober.max_labels is not None else None
    densest = [len(labels[i]["cls"]) for i in prober.order[:16]] if labels is not None else []
    return {"densest_labels": densest, "optimizer_built": type(prober.optimizer).__name__}


@dataclass
class Lookup:
    """One decision's cache state: the key, the entry found (if any) and what happened, for the record."""

    setup: dict[str, Any] | None
    entry: dict[str, Any] | None = None
    status: str = "off"
    detail: str = ""
    saved: str | None = None  # when `save` wrote this decision's entry: the record's ``saved``, not the old entry's

    @property
    def key(self) -> str | None:
        """The set-up's hash (the entry's file name), or None when not cacheable."""
        return _digest(self.setup) if self.setup else None

    def record(self) -> dict[str, Any]:
        """``batch_decision.json``'s ``cache`` field."""
        out = {"used": self.status == "hit", "status": self.status, "key": self.key, "detail": self.detail}
        if self.saved is not None or self.entry is not None:
            out["saved"] = self.saved or (self.entry or {}).get("saved")
        return out


def lookup(trainer: BaseTrainer, spec, backend, versions: dict[str, str], world: int = 1) -> Lookup:
    """Read the entry of this set-up (no dataset needed); ``status`` ``off``, ``miss`` or ``found``."""
    if not spec.probe_cache:
        return Lookup(None, detail="probe.cache is false")
    if world > 1:
        return Lookup(None, detail="not used with several GPUs")
    setup = setup_of(trainer, spec, backend, versions)
    if setup is None:
        return Lookup(None, detail="the model has no definition to key on")
    found = Lookup(setup, status="miss", detail="no entry for this set-up")
    path = folder() / f"{found.key}.json"
    if not path.is_file():
        return found
    try:
        entry = read_entry(path)
    except Damaged as e:
        logger, prefix = log()
        logger.warning(f"{prefix}law cache: {e}; the probe decides and replaces it")
        found.detail = f"the entry was damaged ({e.what})"
        return found
    if entry["format"] != FORMAT or entry["setup"] != setup:
        found.detail = "the entry's set-up differs"
        return found
    found.entry, found.status, found.detail = entry, "found", ""
    return found


_LAW = ListOf(NUMBER, 2)
_POINTS = ListOf(ListOf(NUMBER, 2))
ENTRY = {  # an entry's shape, as `cached_pick` reads it (more keys are let through)
    "format": INT,
    "key": str,
    "saved": str,
    "setup": dict,
    "check": {"densest_labels": ListOf(INT), "optimizer_built": str},
    "law": {"train": _LAW, "val": Maybe(_LAW), "val_factor": NUMBER, "val_batch": Maybe(INT)},
    "probe_law": _LAW,
    "probe_points": {"train": _POINTS, "val": _POINTS, "used": _POINTS, "oom": ListOf(INT)},
    "flat": Opt(bool),
    "speed": Maybe(SPEED),
    "pick": INT,
    "verified_peak_bytes": Maybe(NUMBER),
}


def read_entry(path: Path) -> dict[str, Any]:
    """One entry of the cache, of `ENTRY`'s shape.

    Raises:
        readback.Damaged: One line naming the file and what is wrong (cut off, empty, bytes, another shape).
    """
    return read_json(path, ENTRY)


def cached_pick(trainer: BaseTrainer, prober, spec, backend, found: Lookup, phases) -> Picked | None:
    """The pick from the cached law, proven by one verified step; None (and ``found`` says why) to probe."""
    entry = found.entry
    assert entry is not None  # decide asks only for a found entry
    if entry["check"] != check_of(prober):
        found.status, found.detail = "miss", "the worst-case batch or the optimizer differs"
        return None
    pace = pace_from_record(entry) if spec.policy in policy.SPEEDS else None
    pace = pace and replace(pace, epochs=trainer.epochs)  # this run's epochs, not the cached run's
    if spec.policy in policy.SPEEDS and pace is None:
        found.status, found.detail = "miss", "no time law cached for this policy"
        return None
    law = entry["law"]
    val = policy.Law(*law["val"]) if law["val"] else None
    model = policy.MemoryModel(policy.Law(*law["train"]), val, law["val_factor"], law["val_batch"])
    backend.empty_cache()
    head = backend.headroom()
    budget = head.budget(spec.utilization)
    decision = policy.choose(
        model, budget, spec, world=1, dataset_size=prober.dataset_size, fraction=trainer.args.fraction, pace=pace
    )
    if decision.batch == 0:
        found.status, found.detail = "miss", "no batch fits the cached law"
        return None
    steps = _step_seconds(entry)
    skipped = retime.checked(spec, model, decision.batch, budget, steps, pace) if steps else None  # none: verify
    peaks = None
    if skipped is None:
        with phases("verify"):
            peaks = prober.verify(decision.batch, spec.probe_val)
        off = _disagreement(model, decision.batch, peaks, backend.kind)
        if off is not None:
            found.status, found.detail = "miss", off
            return None
    points = entry["probe_points"]
    result = ProbeResult(train=[tuple(p) for p in points["train"]], val=[tuple(p) for p in points["val"]])
    result.oom, result.step_seconds = list(points["oom"]), steps
    found.status = "hit"
    if skipped is None:
        how, note = f"checked by one verified step at {decision.batch}", f"verified at {decision.batch}"
    else:  # a fresh decision would not verify this pick either: the hit runs no step
        how, note = "no step run: a fresh decision would not verify this pick", skipped
    found.detail = f"the cached law (saved {entry['saved']}), {how}"
    notes = [f"law from the cache ({found.key}), {note}"]
    lead: list[str] = []
    with phases("verify"):  # a pick far from the cached time law's timed sizes is timed, as on the probe's path
        pace, decision, batch, peaks, refit = retime.settle(
            prober, spec, 1, model, budget, pace, decision, decision.batch, peaks, notes, lead
        )
    picked = Picked(
        batch,
        model,
        policy.MemoryModel(policy.Law(*entry["probe_law"])),
        result,
        points["used"],
        bool(entry.get("flat")),
        pace,
        decision,
        head,
        budget,
        max(p for p in peaks if p is not None) if peaks is not None else None,
        notes=notes,
        lead=lead,
        verify_seconds=phases.seconds.get("verify", 0.0),
    )
    picked.peaks, picked.time_refit = peaks, refit
    return picked


def _step_seconds(entry: dict[str, Any]) -> dict[int, float]:
    """The probe's step seconds by batch saved in ``entry``; ``{}`` (verify, as before they were saved) if unreadable.

    Examples:
        >>> _step_seconds({"step_seconds": {"2": 0.1, "8": 0.3}}), _step_seconds({"step_seconds": {"x": 1}})
        ({2: 0.1, 8: 0.3}, {})
    """
    try:
        return {int(b): float(s) for b, s in entry.get("step_seconds", {}).items()}
    except (AttributeError, TypeError, ValueError):
        return {}


def _disagreement(model, batch: int, peaks, kind: str = "cuda") -> str | None:
    """Why the verified step does not confirm the cached law (out of memory, or more than `TOLERANCE` off).

    On a `ONE_SIDED` meter (``kind``: the CPU's RSS) only a peak above the law disagrees: the RSS carries what the
    process kept from earlier steps, so the saved law, verified after the probe's steps, is above a repeat's step
    (1013 MB against 974-977 MB, yolo11n at imgsz 64, batch 32); a peak below it is a safe pick.

    Examples:
        >>> from yolo_batch.core.policy import Law, MemoryModel
        >>> m = MemoryModel(Law(1000, 10))
        >>> _disagreement(m, 10, (1000, None), "cpu") is None, _disagreement(m, 10, (1200, None), "cpu")[:27]
        (True, 'the cached training law was')
        >>> _disagreement(m, 10, (1000, None), "cuda")
        'the cached training law was +10.0% off the verified step at 10 (tolerance 5%)'
    """
    if peaks is None:
        return f"the verified step at {batch} ran out of memory"
    laws = [(model.train, batch, peaks[0], "training")]
    if model.val is not None and peaks[1] is not None:
        images = model.val_batch or batch * model.val_factor
        laws.append((model.val, images, peaks[1], "validation"))
    for law, images, peak, what in laws:
        err = law.at(images) / peak - 1
        if err < -TOLERANCE or (err > TOLERANCE and kind not in ONE_SIDED):
            below = " below the verified step" if kind in ONE_SIDED else ""
            return (
                f"the cached {what} law was {err:+.1%} off the verified step at {batch} "
                f"(tolerance {TOLERANCE:.0%}{below})"
            )
    return None


def save(found: Lookup, prober, picked: Picked, record: dict[str, Any], model=None) -> None:
    """Write this decision's laws as the set-up's entry (atomically); a failure to write is only logged.

    ``model`` is the memory law to save (default: the pick's), e.g. one refitted through the verified step.
    """
    if found.setup is None:
        return
    m = model or picked.model
    entry = {
        "format": FORMAT,
        "key": found.key,
        "saved": time.strftime("%Y-%m-%d %H:%M:%S"),
        "setup": found.setup,
        "check": check_of(prober),
        "law": {
            "train": [m.train.fixed_bytes, m.train.per_image_bytes],
            "val": [m.val.fixed_bytes, m.val.per_image_bytes] if m.val else None,
            "val_factor": m.val_factor,
            "val_batch": m.val_batch,
        },
        "probe_law": [picked.probe_law.train.fixed_bytes, picked.probe_law.train.per_image_bytes],
        "probe_points": record["probe_points"],
        "step_seconds": {str(b): round(s, 5) for b, s in picked.result.step_seconds.items()},
        "flat": picked.flat,
        "speed": record.get("speed"),
        "pick": picked.batch,
        "verified_peak_bytes": picked.verified,
    }
    try:
        folder().mkdir(parents=True, exist_ok=True)
        write_json(folder() / f"{found.key}.json", entry)
        found.saved = entry["saved"]
        found.detail = (found.detail + "; " if found.detail else "") + "saved this decision's laws"
    except OSError as e:
        logger, prefix = log()
        logger.warning(f"{prefix}law cache not written ({e})")


def entries(damaged: list[str] | None = None) -> list[dict[str, Any]]:
    """The cache's readable entries, oldest first; a damaged file is left out (its line added to ``damaged``)."""
    out = []
    for path in sorted(folder().glob("*.json")) if folder().is_dir() else []:
        try:
            out.append({**read_entry(path), "path": str(path)})
        except Damaged as e:
            if damaged is not None:
                damaged.append(str(e))
    return sorted(out, key=lambda e: e["saved"])


def cache_cli(args: list[str]) -> int:
    """``yolo-batch cache [list|clear]``: list the cached laws, or remove them all."""
    if len(args) > 1 or (args and args[0] not in ("list", "clear")):
        raise AutoPlusError(f"cache: unknown argument {' '.join(args)!r}; valid: list (the default) or clear")
    if args == ["clear"]:
        paths = list(folder().glob("*.json")) if folder().is_dir() else []
        for p in paths:
            p.unlink(missing_ok=True)
        print(f"removed {len(paths)} cached law(s) from {folder()}")
        return 0
    damaged: list[str] = []
    rows = entries(damaged)
    print(f"{len(rows)} cached law(s) in {folder()}")
    for e in rows:
        s, train = e["setup"], e["law"]["train"]
        amp = s.get("amp")
        try:
            total = f"{float(s.get('total_bytes') or 0) / 2**30:.1f} GiB"
        except (TypeError, ValueError):  # the set-up is only compared, never read, by a decision
            total = "? GiB"
        row = (
            f"{e['key']}  {e['saved']}  {s.get('model_name')} {s.get('task')} imgsz={s.get('imgsz')} "
            f"amp={amp[0] if isinstance(amp, list) and amp else amp} {s.get('device')} {total}: "
            f"{train[0] / 2**30:.2f} GiB + {train[1] / 2**20:.1f} MiB/image, pick {e['pick']}"
        )
        print(printable(row))  # one line per entry, whatever an edited set-up holds
    for line in damaged:
        print(f"{line}; left out (a decision replaces it; `yolo-batch cache clear` removes it)")
    return 0
