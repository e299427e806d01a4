"""``yolo-batch sweep``: one training recipe at several batches, one run after another, then a comparison.

Each run is the stock ``yolo train`` with the same recipe and seed, into ``project/<batch label>/`` (``16``,
``auto-plus``, ``auto-plus_fit_0.8``). Every run validates at the same batch, ``val_batch`` (32 unless given;
stock training validates at twice its batch, and letterboxed rect batches pad by the batch, which moves mAP a
little), through ``YOLO_BATCH_VAL_BATCH`` (`valbatch`). ``project/sweep.yaml`` records the recipe, the validation
batch included: running the same sweep again reuses finished runs, resumes an interrupted one from its
``weights/last.pt`` and starts over a run that left no checkpoint; a different recipe in the same project is
refused. At the end `yolo_batch.report.compare` writes
``project/comparison.csv`` and ``project/comparison.png``.
"""

from __future__ import annotations

import re
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from yolo_batch.cmdline import parse_pairs, positive, run_child, run_env, yolo_command
from yolo_batch.effect import atomic_write, read_csv
from yolo_batch.spec import AutoPlusError, _closest, looks_like_auto_plus, parse_batch_value

SWEEP_FILE = "sweep.yaml"
USAGE = (
    "usage: yolo-batch sweep model=... data=... batches=16,32,64,auto-plus epochs=N [project=runs/sweep] "
    "[seed=0] [val_batch=32] [any yolo train key=value]"
)
VAL_BATCH = 32  # every run's validation batch unless val_batch= says: stock training's at its default batch 16
REQUIRED = ("model", "data", "batches", "epochs")
FORMS = "an integer >= 1 or an auto-plus value (auto-plus, auto-plus:fit, auto-plus:0.8, auto-plus:fit:0.8)"
# Keys the sweep sets itself, with what to do instead.
SET_BY_SWEEP = {
    "batch": "list the batches in batches=, e.g. batches=16,32,auto-plus",
    "name": "each run is named after its batch, in project=",
    "exist_ok": "the sweep reuses its own run folders",
    "resume": "run the same sweep again to resume an interrupted run",
    "mode": "a sweep trains",
    "time": "a sweep compares runs of equal epochs; use epochs=",
}


def parse_batches(raw: str) -> list[str]:
    """Split and check ``batches=``: each an integer >= 1 or an auto-plus value; no label twice.

    Args:
        raw (str): The comma-separated list as typed, e.g. ``"16,32,auto-plus:fit"``.

    Returns:
        (list[str]): The batch values, integers as digits and auto-plus values in lower case.

    Raises:
        ValueError: For an empty list or item, a bad item, or a batch listed twice (one line each).

    Examples:
        >>> parse_batches("16, 32,Auto-Plus:fit")
        ['16', '32', 'auto-plus:fit']
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
            value = item.lower()
        else:
            raise ValueError(f"{item!r} is not a batch; each must be {FORMS}")
        if label(value) in map(label, values):
            raise ValueError(f"batch {value} is listed twice")
        values.append(value)
    return values


def label(value: str) -> str:
    """The run folder name of a batch value: ``16``, ``auto-plus``, ``auto-plus_fit_0.8``.

    Args:
        value (str): A batch value from `parse_batches`.

    Returns:
        (str): The value with ``:`` replaced by ``_``.
    """
    return value.replace(":", "_")


def plan(args: list[str]) -> tuple[dict[str, Any], list[str], Path]:
    """Validate every argument before anything is trained or written.

    Args:
        args (list[str]): ``key=value`` words: the sweep's own keys and any ``yolo train`` key.

    Returns:
        (tuple): The recipe (model, data, epochs, seed, val_batch and the other ``yolo train`` keys, valued as
            ``yolo`` reads them), the batch values and the project folder (absolute).

    Raises:
        AutoPlusError: For a missing, unknown, refused or invalid argument, in one line.
    """
    from ultralytics.cfg import DEFAULT_CFG_DICT, check_cfg, smart_value

    own = {
        "model": str,
        "data": str,
        "batches": parse_batches,
        "epochs": positive,
        "project": str,
        "seed": int,
        "val_batch": positive,
    }
    valid = {**{k: str for k in DEFAULT_CFG_DICT if k not in SET_BY_SWEEP}, **own}
    for a in args:
        key, eq, _ = a.partition("=")
        if not eq:
            raise AutoPlusError(f"sweep: argument {a!r} must be key=value; {USAGE}")
        if key in SET_BY_SWEEP:
            raise AutoPlusError(f"sweep: {key}= is set by the sweep itself; {SET_BY_SWEEP[key]}")
        if key not in valid:
            raise AutoPlusError(
                f"sweep: unknown argument {key!r}{_closest(key, list(valid))}; valid: {', '.join(own)} and any "
                "yolo train key (`yolo cfg` lists them)"
            )
    opts = parse_pairs(args, valid, "sweep")
    missing = [k for k in REQUIRED if k not in opts]
    if missing:
        raise AutoPlusError(f"sweep: missing {', '.join(k + '=' for k in missing)}; {USAGE}")
    for key in ("model", "data", "project"):
        if key in opts and not opts[key].strip():
            raise AutoPlusError(f"sweep: {key}= is empty; {USAGE}")
    batches = opts.pop("batches")
    project = Path(opts.pop("project", "runs/sweep")).expanduser().resolve()
    others = {k: smart_value(v) for k, v in opts.items() if k not in own}  # as yolo reads them: amp=false == False
    others = {k: list(v) if isinstance(v, tuple) else v for k, v in others.items()}
    try:
        check_cfg(dict(others))
    except (TypeError, ValueError) as e:
        raise AutoPlusError(f"sweep: {' '.join(str(e).split())}") from None
    # an existing file as an absolute path (the runs are the same wherever the sweep starts), else as given
    files = {
        k: str(Path(opts[k]).expanduser().resolve()) if Path(opts[k]).expanduser().exists() else opts[k]
        for k in ("model", "data")
    }
    recipe = {**files, "epochs": opts["epochs"], "seed": opts.get("seed", 0)}
    recipe["val_batch"] = opts.get("val_batch", VAL_BATCH)
    return {**recipe, **dict(sorted(others.items()))}, batches, project


def check_record(project: Path, recipe: dict[str, Any], batches: list[str]) -> list[str]:
    """Refuse a project trained with another recipe; return the batch values ``sweep.yaml`` should list.

    Args:
        project (Path): The sweep's folder.
        recipe (dict): This sweep's recipe, from `plan`.
        batches (list[str]): This sweep's batch values.

    Returns:
        (list[str]): The batches ``sweep.yaml`` lists already, then this sweep's new ones.

    Raises:
        AutoPlusError: When ``sweep.yaml`` holds another recipe or is unreadable, or when run folders exist
            without a ``sweep.yaml`` (their recipe is unknown).
    """
    import yaml

    record = project / SWEEP_FILE
    if not record.is_file():
        found = [label(b) for b in batches if (project / label(b)).exists()]
        if found:
            raise AutoPlusError(
                f"sweep: project={project} already holds {', '.join(f + '/' for f in found)} but no {SWEEP_FILE}, so "
                "their recipe is unknown; use a new project= or remove those folders"
            )
        return batches
    try:
        data = yaml.safe_load(record.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise AutoPlusError(
            f"sweep: {record} cannot be read ({type(e).__name__}); remove it or use a new project="
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("recipe"), dict):
        raise AutoPlusError(f"sweep: {record} holds no recipe; remove it or use a new project=")
    old = data["recipe"]
    if old != recipe:
        diffs = [
            f"{k}: {old.get(k, 'unset')!r} there, {recipe.get(k, 'unset')!r} here"
            for k in sorted(set(old) | set(recipe), key=str)
            if old.get(k) != recipe.get(k)
        ]
        raise AutoPlusError(
            f"sweep: project={project} holds a sweep of another recipe ({'; '.join(diffs)}); repeat its recipe "
            "to reuse its runs, or use a new project="
        )
    listed = [str(b) for b in data.get("batches") or []]
    return listed + [b for b in batches if b not in listed]


def write_record(project: Path, recipe: dict[str, Any], batches: list[str]) -> None:
    """Write ``project/sweep.yaml`` (atomically): the recipe and every batch the project has run.

    Args:
        project (Path): The sweep's folder (created if missing).
        recipe (dict): The recipe, from `plan`.
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


def train_command(recipe: dict[str, Any], value: str, project: Path) -> list[str]:
    """The stock ``yolo train`` command of one run.

    Args:
        recipe (dict): The recipe, from `plan`.
        value (str): The run's batch value.
        project (Path): The sweep's folder (absolute: ``yolo`` puts a relative one under its runs_dir).

    Returns:
        (list[str]): The command line.
    """
    args = {**recipe, "batch": value, "project": str(project), "name": label(value), "exist_ok": True}
    args.pop("val_batch", None)  # not a yolo train key: the run reads it from YOLO_BATCH_VAL_BATCH (`sweep_env`)
    return [*yolo_command(), "train", *(f"{k}={_word(v)}" for k, v in args.items())]


def sweep_env(recipe: dict[str, Any]) -> dict[str, str]:
    """The environment of every run: measured (``YOLO_BATCH_OBSERVE``), validating at the recipe's ``val_batch``."""
    from yolo_batch.valbatch import ENV

    return {**run_env(), "YOLO_BATCH_OBSERVE": "1", ENV: str(recipe.get("val_batch", VAL_BATCH))}


def _word(v: Any) -> str:
    """A recipe value as a ``yolo`` command-line value (lists without spaces)."""
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_word(x) for x in v) + "]"
    return str(v)


def sweep_cli(args: list[str]) -> int:
    """``yolo-batch sweep``: train the recipe at each batch (reusing and resuming), then compare.

    Args:
        args (list[str]): ``key=value`` words; see `USAGE`.

    Returns:
        (int): 0 once every run is finished and compared; 130 after Ctrl-C (one line says how to resume).

    Raises:
        AutoPlusError: For a bad argument or project (before anything is trained), or a failed run (finished
            runs are kept).
    """
    from yolo_batch.report import compare, format_table

    recipe, batches, project = plan(args)
    listed = check_record(project, recipe, batches)
    runs = [(b, project / label(b)) for b in batches]
    states = [run_state(run, recipe["epochs"]) for _, run in runs]
    write_record(project, recipe, listed)
    todo = sum(s != "finished" for s, _ in states)
    print(
        f"sweep: {len(runs)} run(s) in {project}: {todo} to train or resume, {len(runs) - todo} finished; every run "
        f"validates at batch {recipe['val_batch']} (val_batch=)",
        flush=True,
    )
    spent: list[float] = []
    for i, ((value, run), (state, saved)) in enumerate(zip(runs, states), 1):
        t0 = time.perf_counter()
        if state == "finished":
            how = "reused"
        else:
            if state == "interrupted":
                _trim_results(run, saved)
                cmd, how = [*yolo_command(), "train", "resume", f"model={run / 'weights' / 'last.pt'}"], "resumed"
            else:
                if state == "partial":
                    shutil.rmtree(run)
                cmd, how = train_command(recipe, value, project), "trained"
            env = sweep_env(recipe)  # integer batches get the effect log too, and every run one validation batch
            try:
                rc = run_child(cmd, env)
            except KeyboardInterrupt:
                print(
                    f"sweep: stopped during run {i}/{len(runs)} batch={value}; finished runs are kept, and the same "
                    f"command resumes: yolo-batch sweep {shlex.join(args)}",
                    file=sys.stderr,
                )
                return 130
            if rc != 0:
                raise AutoPlusError(
                    f"sweep: run {i}/{len(runs)} batch={value} ({run}) failed: yolo train exited with status {rc}; "
                    "finished runs are kept, run the same sweep again to go on"
                )
            spent.append(time.perf_counter() - t0)
        left = sum(s != "finished" for s, _ in states[i:])
        eta = f"{sum(spent) / len(spent) * left:.0f}s" if spent else ("0s" if not left else "unknown")
        print(
            f"sweep: run {i}/{len(runs)} batch={value} ({how}) in {time.perf_counter() - t0:.0f}s, ETA {eta}",
            flush=True,
        )
    rows = compare([run for _, run in runs], project)
    print()
    for line in format_table(rows):
        print(line)
    print(f"\nsweep: wrote {project / 'comparison.csv'} and {project / 'comparison.png'}")
    return 0
