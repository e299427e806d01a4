"""``yolo-batch sweep``: one training recipe at several batches, one run after another, then a comparison.

Each run is the stock ``yolo train`` with the same recipe and seed, into ``project/<batch label>/`` (``16``,
``auto-plus``, ``auto-plus_fit_0.8``). Every run validates at the same batch, ``val_batch`` (32 unless given;
stock training validates at twice its batch, and letterboxed rect batches pad by the batch, which moves mAP a
little), through ``YOLO_BATCH_VAL_BATCH`` (`valbatch`). ``project/sweep.yaml`` records the recipe, the validation
batch included: running the same sweep again reuses finished runs, resumes an interrupted one from its
``weights/last.pt`` and starts over a run that left no checkpoint; a different recipe in the same project is
refused (`yolo_batch.tools.sweep_state`). At the end `yolo_batch.tools.report.compare` writes ``project/comparison.csv``
and ``project/comparison.png``. ``engine=ray`` runs the same commands as Ray tasks, side by side
(`yolo_batch.tools.sweep_ray`; the engine's keys are checked in `yolo_batch.tools.sweep_engine`).
"""

from __future__ import annotations

import shlex
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from yolo_batch.activate import env_switch, outside_range
from yolo_batch.core.spec import DISABLE_ENV, AutoPlusError, _closest
from yolo_batch.tools.cmdline import missing_input, parse_pairs, positive, run_child, run_env, yolo_command
from yolo_batch.tools.report import compare, format_table
from yolo_batch.tools.sweep_state import _trim_results, check_record, label, parse_batches, run_state, write_record
from yolo_batch.train.valbatch import ENV

USAGE = (
    "usage: yolo-batch sweep model=... data=... batches=16,32,64,auto-plus epochs=N [project=runs/sweep] "
    "[seed=0] [val_batch=32] [engine=local|ray] [any yolo train key=value]"
)
VAL_BATCH = 32  # every run's validation batch unless val_batch= says: stock training's at its default batch 16
REQUIRED = ("model", "data", "batches", "epochs")
# Keys the sweep sets itself, with what to do instead.
SET_BY_SWEEP = {
    "batch": "list the batches in batches=, e.g. batches=16,32,auto-plus",
    "name": "each run is named after its batch, in project=",
    "exist_ok": "the sweep reuses its own run folders",
    "resume": "run the same sweep again to resume an interrupted run",
    "mode": "a sweep trains",
    "time": "a sweep compares runs of equal epochs; use epochs=",
}


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

    own: dict[str, Callable[[str], Any]] = {
        "model": str,
        "data": str,
        "batches": parse_batches,
        "epochs": positive,
        "project": str,
        "seed": int,
        "val_batch": positive,
    }
    valid: dict[str, Callable[[str], Any]] = {**{k: str for k in DEFAULT_CFG_DICT if k not in SET_BY_SWEEP}, **own}
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
    outside = outside_range()  # before any run trains: each auto-plus run would be refused on its own
    if outside and any(not b.isdigit() for b in batches):
        raise AutoPlusError(
            f"sweep: batches={','.join(batches)} has auto-plus values, and {outside}, or sweep integer batches only"
        )
    _check_inputs(opts, batches)
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


def _check_inputs(opts: dict[str, Any], batches: list[str]) -> None:
    """Refuse a missing model or dataset file, and auto-plus runs with the plugin off, before anything is written."""
    for key in ("model", "data"):
        problem = missing_input(key, opts[key])
        if problem:
            raise AutoPlusError(f"sweep: {problem}")
    auto = [b for b in batches if not b.isdigit()]
    if auto and env_switch(DISABLE_ENV):
        raise AutoPlusError(
            f"sweep: {DISABLE_ENV} is on, which turns yolo-batch off, so batches={','.join(auto)} cannot run; unset "
            f"{DISABLE_ENV}, or list integer batches only"
        )


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
    return {**run_env(), "YOLO_BATCH_OBSERVE": "1", ENV: str(recipe.get("val_batch", VAL_BATCH))}


def _word(v: Any) -> str:
    """A recipe value as a ``yolo`` command-line value (lists without spaces)."""
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_word(x) for x in v) + "]"
    return str(v)


def member_command(recipe: dict[str, Any], value: str, project: Path, state: str, saved: int | None) -> list[str]:
    """Ready one run folder to train and return its ``yolo train`` command (every engine runs this one).

    An interrupted run loses the ``results.csv`` rows past its checkpoint and resumes from ``weights/last.pt``;
    a partial run's folder is removed and the run starts over; a new run starts.

    Args:
        recipe (dict): The recipe, from `plan`.
        value (str): The run's batch value.
        project (Path): The sweep's folder.
        state (str): The run's state from `run_state` (not ``finished``).
        saved (int | None): For ``interrupted``, the epoch ``last.pt`` holds.

    Returns:
        (list[str]): The command line.
    """
    run = project / label(value)
    if state == "interrupted":
        assert saved is not None  # run_state gives the epoch last.pt holds
        _trim_results(run, saved)
        return [*yolo_command(), "train", "resume", f"model={run / 'weights' / 'last.pt'}"]
    if state == "partial":
        shutil.rmtree(run)
    return train_command(recipe, value, project)


def prepare(recipe: dict[str, Any], batches: list[str], project: Path) -> list[tuple[str, Path, str, int | None]]:
    """Check the project against the recipe, record it, print the first line; every run and its state.

    Args:
        recipe (dict): The recipe, from `plan`.
        batches (list[str]): The batch values, from `plan`.
        project (Path): The sweep's folder.

    Returns:
        (list[tuple]): ``(batch value, run folder, state, saved epoch)`` per run, as `run_state` reads it.

    Raises:
        AutoPlusError: From `check_record`, before anything is written.
    """
    listed = check_record(project, recipe, batches)
    runs = [(b, project / label(b), *run_state(project / label(b), recipe["epochs"])) for b in batches]
    write_record(project, recipe, listed)
    todo = sum(r[2] != "finished" for r in runs)
    print(
        f"sweep: {len(runs)} run(s) in {project}: {todo} to train or resume, {len(runs) - todo} finished; every run "
        f"validates at batch {recipe['val_batch']} (val_batch=)",
        flush=True,
    )
    return runs


def finish(project: Path, runs: list[Path]) -> int:
    """Compare the finished runs into ``project/`` and print the table; 0."""
    rows = compare(runs, project)
    print()
    for line in format_table(rows):
        print(line)
    print(f"\nsweep: wrote {project / 'comparison.csv'} and {project / 'comparison.png'}")
    return 0


def stopped(args: list[str], during: str) -> int:
    """Say on one line how to go on after Ctrl-C; 130."""
    print(
        f"sweep: stopped during {during}; finished runs are kept, and the same command resumes: "
        f"yolo-batch sweep {shlex.join(args)}",
        file=sys.stderr,
    )
    return 130


def local_sweep(args: list[str], rest: list[str]) -> int:
    """``yolo-batch sweep`` on this machine (``engine=local``): train the recipe at each batch, then compare.

    One run after another, reusing finished runs and resuming interrupted ones (`yolo_batch.tools.sweep_command`
    dispatches here, or to `yolo_batch.tools.sweep_ray` for ``engine=ray``).

    Args:
        args (list[str]): The command's ``key=value`` words, as given (the resume line repeats them).
        rest (list[str]): The words without the engine's keys (`sweep_engine.split_engine`); see `USAGE`.

    Returns:
        (int): 0 once every run is finished and compared; 130 after Ctrl-C (one line says how to resume).

    Raises:
        AutoPlusError: For a bad argument or project (before anything is trained), or a failed run (finished
            runs are kept).
    """
    recipe, batches, project = plan(rest)
    runs = prepare(recipe, batches, project)
    spent: list[float] = []
    for i, (value, run, state, saved) in enumerate(runs, 1):
        t0 = time.perf_counter()
        how = {"finished": "reused", "interrupted": "resumed"}.get(state, "trained")
        if state != "finished":
            cmd = member_command(recipe, value, project, state, saved)
            try:  # integer batches get the effect log too, and every run one validation batch (sweep_env)
                rc = run_child(cmd, sweep_env(recipe))
            except KeyboardInterrupt:
                return stopped(args, f"run {i}/{len(runs)} batch={value}")
            if rc != 0:
                raise AutoPlusError(
                    f"sweep: run {i}/{len(runs)} batch={value} ({run}) failed: yolo train exited with status {rc}; "
                    "finished runs are kept, run the same sweep again to go on"
                )
            spent.append(time.perf_counter() - t0)
        left = sum(r[2] != "finished" for r in runs[i:])
        eta = f"{sum(spent) / len(spent) * left:.0f}s" if spent else ("0s" if not left else "unknown")
        print(
            f"sweep: run {i}/{len(runs)} batch={value} ({how}) in {time.perf_counter() - t0:.0f}s, ETA {eta}",
            flush=True,
        )
    return finish(project, [r[1] for r in runs])
