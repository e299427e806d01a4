"""Where a sweep's project and each of its runs stand: ``project/sweep.yaml`` and the run states.

The members of a sweep (`parse_batches`: values that train the same run are one member) and their folders
(`label`). ``sweep.yaml`` records the recipe and every batch the project has run: a different recipe in the same project
is refused, so that every run of a project trains the same recipe. A run is ``new``, ``finished`` (reused),
``interrupted`` (resumed from its ``weights/last.pt``) or ``partial`` (started over). Every engine of
`yolo_batch.tools.sweep` reads the project through these functions, on the machine that starts the sweep and, for
``engine=ray``, on each node before its run (`yolo_batch.tools.sweep_ray`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from yolo_batch.core.readback import INT, Damaged, ListOf, Maybe, OneOf, Opt, read_yaml
from yolo_batch.core.spec import AutoPlusError, looks_like_auto_plus, parse_batch_value, resolve_spec
from yolo_batch.record.effect import atomic_write, read_csv

SWEEP_FILE = "sweep.yaml"
FORMS = "an integer >= 1 or an auto-plus value (auto-plus, auto-plus:fit, auto-plus:0.8, auto-plus:fit:0.8)"


def label(value: str) -> str:
    """The run folder name of a batch value: ``16``, ``auto-plus``, ``auto-plus_fit_0.8``.

    Args:
        value (str): A batch value from `parse_batches`.

    Returns:
        (str): The value with ``:`` replaced by ``_``.
    """
    return value.replace(":", "_")


def parse_batches(raw: str) -> list[str]:
    """Split and check ``batches=``: each an integer >= 1 or an auto-plus value; no label twice.

    Args:
        raw (str): The comma-separated list as typed, e.g. ``"16,32,auto-plus:fit"``.

    Returns:
        (list[str]): The batch values, integers as digits and auto-plus values in lower case.

    Raises:
        ValueError: For an empty list or item, a bad item, or a run listed twice (one line each): values that
            train the same run count as one, as ``auto-plus`` and ``auto-plus:ladder`` with the shipped settings.

    Examples:
        >>> parse_batches("16, 32,Auto-Plus:fit:0.80")
        ['16', '32', 'auto-plus:fit:0.8']
    """
    items = [x.strip() for x in str(raw).split(",")]
    if not any(items):
        raise ValueError(f"no batches given; each must be {FORMS}")
    values: list[str] = []
    for item in items:
        if not item:
            raise ValueError(f"an empty item in the list; each must be {FORMS}")
        if re.fullmatch(r"[+-]?\d+", item):
            if int(item) < 1:
                raise ValueError(f"{item} is not a batch; each must be {FORMS}")
            value = str(int(item))
        elif looks_like_auto_plus(item):
            parse_batch_value(item)  # raises a one-line AutoPlusError (a ValueError) naming the valid forms
            value = _canonical(item.lower())
        else:
            raise ValueError(f"{item!r} is not a batch; each must be {FORMS}")
        twin = next((v for v in values if _same_run(v, value)), None)
        if twin == value == item.lower():
            raise ValueError(f"batch {value} is listed twice")
        if twin is not None:
            raise ValueError(f"{twin} and {item} are the same run ({_meaning(value)}); list it once")
        values.append(value)
    return values


def _canonical(value: str) -> str:
    """An auto-plus value with its fraction written one way (``0.80`` as ``0.8``); digits as they are.

    Examples:
        >>> _canonical("auto-plus:fit:0.80"), _canonical("16")
        ('auto-plus:fit:0.8', '16')
    """
    head, *parts = value.split(":")
    return ":".join([head, *(f"{float(p):g}" if re.fullmatch(r"[0-9.]+", p) else p for p in parts)])


def _meaning(value: str) -> str:
    """What a batch value trains with: ``"batch 16"`` or ``"policy ladder, utilization 0.9"``."""
    if value.isdigit():
        return f"batch {value}"
    spec = resolve_spec(value)  # the defaults and the user's YOLO_BATCH_CONFIG, as every run reads them
    return f"policy {spec.policy}, utilization {spec.utilization:g}"


def _same_run(a: str, b: str) -> bool:
    """Two batch values that train the same run: equal, or auto-plus values naming the same policy and share."""
    return a == b or (not a.isdigit() and not b.isdigit() and _meaning(a) == _meaning(b))


def _key(k: Any) -> str:
    """A recipe key as a one-line message names it: as written when a plain name, quoted otherwise."""
    return k if isinstance(k, str) and k.isidentifier() else repr(k)


def check_record(project: Path, recipe: dict[str, Any], batches: list[str]) -> list[str]:
    """Refuse a project trained with another recipe; return the batch values ``sweep.yaml`` should list.

    Args:
        project (Path): The sweep's folder.
        recipe (dict): This sweep's recipe, from `yolo_batch.tools.sweep.plan`.
        batches (list[str]): This sweep's batch values.

    Returns:
        (list[str]): The batches ``sweep.yaml`` lists already, then this sweep's new ones.

    Raises:
        AutoPlusError: When ``sweep.yaml`` holds another recipe or is unreadable, or when run folders exist
            without a ``sweep.yaml`` (their recipe is unknown).
    """
    record = project / SWEEP_FILE
    if not record.is_file():
        found = [label(b) for b in batches if (project / label(b)).exists()]
        if found:
            raise AutoPlusError(
                f"sweep: project={project} already holds {', '.join(f + '/' for f in found)} but no {SWEEP_FILE}, so "
                "their recipe is unknown; use a new project= or remove those folders"
            )
        return batches
    data = read_record(record)
    old = data["recipe"]
    if old != recipe:
        diffs = [
            f"{_key(k)}: {old.get(k, 'unset')!r} there, {recipe.get(k, 'unset')!r} here"
            for k in sorted(set(old) | set(recipe), key=str)
            if old.get(k) != recipe.get(k)
        ]
        raise AutoPlusError(
            f"sweep: project={project} holds a sweep of another recipe ({'; '.join(diffs)}); repeat its recipe "
            "to reuse its runs, or use a new project="
        )
    listed = [str(b) for b in data.get("batches") or []]
    return listed + [b for b in batches if b not in listed]


def read_record(path: Path) -> dict[str, Any]:
    """A project's ``sweep.yaml``: its ``recipe`` (a mapping) and ``batches`` (a list of batch values).

    Raises:
        AutoPlusError: One line naming the file and what is wrong, for a damaged file (cut off, emptied, bytes,
            another shape): the sweep is refused before anything is written.
    """
    try:
        return read_yaml(path, {"recipe": dict, "batches": Opt(Maybe(ListOf(OneOf(str, INT))))})
    except Damaged as e:
        raise AutoPlusError(f"sweep: {e}; remove it or use a new project=") from None


def write_record(project: Path, recipe: dict[str, Any], batches: list[str]) -> None:
    """Write ``project/sweep.yaml`` (atomically): the recipe and every batch the project has run.

    Args:
        project (Path): The sweep's folder (created if missing).
        recipe (dict): The recipe, from `yolo_batch.tools.sweep.plan`.
        batches (list[str]): Every batch value of the project, from `check_record`.
    """
    import yaml

    project.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump({"recipe": recipe, "batches": batches}, sort_keys=False)
    atomic_write(project / SWEEP_FILE, "# yolo-batch sweep: every run in this folder trains this recipe\n" + text)


def run_state(run: Path, epochs: int) -> tuple[str, int | None]:
    """Where one run stands: ``finished``, ``interrupted`` (with its last saved epoch, 1-based), ``partial``, ``new``.

    Finished: ``weights/last.pt`` was finalised by Ultralytics (also after an early stop) or holds the last
    epoch; without a ``last.pt``, ``results.csv`` reaches ``epochs`` and ``best.pt`` exists. Interrupted:
    ``last.pt`` holds an earlier epoch's training state (``results.csv`` may be one row ahead of it).
    Partial: anything else in the folder, to start over.

    Args:
        run (Path): The run folder.
        epochs (int): The recipe's epochs.

    Returns:
        (tuple[str, int | None]): The state, and for ``interrupted`` the epoch ``last.pt`` holds.
    """
    if not run.exists():
        return "new", None
    last = run / "weights" / "last.pt"
    if not last.is_file():
        done = _epochs(run / "results.csv")
        finished = done and max(done) >= epochs and (run / "weights" / "best.pt").is_file()
        return ("finished" if finished else "partial"), None
    saved = _checkpoint_epoch(last)
    if saved is None:
        return "partial", None
    if saved == -1 or saved + 1 >= epochs:  # -1: strip_optimizer ran, training completed
        return "finished", None
    return "interrupted", saved + 1


def _epochs(results: Path) -> list[int]:
    if not results.is_file():
        return []
    try:
        return [int(float(r["epoch"])) for r in read_csv(results) if r.get("epoch")]
    except (ValueError, KeyError, OSError):
        return []


def _checkpoint_epoch(path: Path) -> int | None:
    """The 0-based epoch saved in an Ultralytics checkpoint (-1 once finalised), or None if unreadable."""
    try:
        import torch

        epoch = torch.load(path, map_location="cpu", weights_only=False).get("epoch")
    except Exception:  # noqa: BLE001 - a torn or foreign file means: start over
        return None
    return epoch if isinstance(epoch, int) else None


def _trim_results(run: Path, saved: int) -> None:
    """Drop results.csv rows past the checkpoint's epoch, which the resumed run trains (and writes) again."""
    path = run / "results.csv"
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    keep = lines[:1] + [x for x in lines[1:] if (m := re.match(r"\s*(\d+)", x)) and int(m[1]) <= saved]
    if len(keep) != len(lines):
        atomic_write(path, "".join(keep))
