"""``yolo-batch sweep ... engine=ray``: the runs of a sweep as Ray tasks, side by side.

Each run that is not finished becomes one Ray task asking for ``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs.
The task runs, on its node, the very command and environment the local engine runs
(`yolo_batch.tools.sweep.member_command`, `yolo_batch.tools.sweep.sweep_env`): the stock ``yolo train`` into
``project/<batch>/``, so every file of a run is the one the local engine writes; its output goes to
``project/logs/<batch>.log``. Reuse, resume and the recipe check are the local engine's
(`yolo_batch.tools.sweep_state`). Without ``address=`` the sweep starts a local Ray and stops it at the end; with
``address=auto`` (or ``HOST:PORT``) it joins a running cluster, whose nodes must see the dataset and
``project=`` at the same absolute paths (shared storage): checked on this machine before anything starts,
and by each task on its node before its run (`yolo_batch.tools.sweep_engine`). The driver prints one line per
change of a run's state, a table of the runs, then the comparison. Ctrl-C cancels the tasks; each stops its
``yolo train`` as the local engine does (`yolo_batch.tools.cmdline.run_child`), and the same command resumes. Ray
is imported only here, only when ``engine=ray`` runs (``pip install "yolo-batch[ray]"``).
"""

from __future__ import annotations

import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

from yolo_batch.core.spec import AutoPlusError
from yolo_batch.tools.cmdline import STOP_SECONDS, run_child
from yolo_batch.tools.sweep import finish, member_command, plan, prepare, stopped, sweep_env
from yolo_batch.tools.sweep_engine import SHARED, check_address, check_shared, resources, unseen
from yolo_batch.tools.sweep_state import check_record, label, run_state

INSTALL = 'pip install "yolo-batch[ray]"'
LOG_DIR = "logs"  # project/logs/<batch>.log: each Ray run's yolo train output (the local engine prints it)


def run_member(recipe: dict[str, Any], value: str, project: str, state: str, saved: int | None, events) -> dict:
    """One Ray task: check what the node sees, then train or resume one run as the local engine does.

    Returns:
        (dict): ``ok``, ``node``, ``seconds`` and, when not ok, ``error`` (one line).
    """
    node, t0, folder = platform.node(), time.monotonic(), Path(project)
    missing = unseen(recipe, folder)
    if missing:
        return {"ok": False, "node": node, "seconds": 0.0, "error": f"node {node} does not see {missing}; {SHARED}"}
    cmd = member_command(recipe, value, folder, state, saved)
    events.put((value, "resuming" if state == "interrupted" else "running", node, saved))
    log = folder / LOG_DIR / f"{label(value)}.log"
    rc = run_child(cmd, sweep_env(recipe), log=log)
    out = {"ok": rc == 0, "node": node, "seconds": time.monotonic() - t0}
    if rc:
        out["error"] = f"yolo train exited with status {rc} on node {node}; its output is in {log}"
    return out


def ray_sweep(args: list[str], rest: list[str], opts: dict[str, Any]) -> int:
    """``yolo-batch sweep ... engine=ray``: check, start or join Ray, run the runs as tasks, then compare.

    Args:
        args (list[str]): The sweep's words as typed (for the line that says how to resume).
        rest (list[str]): The words without the engine's keys, from `split_engine`.
        opts (dict): The engine's keys, from `split_engine`.

    Returns:
        (int): 0 once every run is finished and compared; 130 after Ctrl-C.

    Raises:
        AutoPlusError: For a bad argument, Ray missing or unreachable (before anything is written or trained),
            or failed runs (after the others ended; finished runs are kept).
    """
    recipe, batches, project = plan(rest)
    need = resources(opts, recipe, batches)
    if "address" in opts:
        check_shared(rest, recipe)
    check_record(project, recipe, batches)  # refused before Ray starts; prepare() checks again and records
    check_address(opts.get("address"))
    try:
        import ray
    except ImportError:
        raise AutoPlusError(f"sweep: engine=ray needs Ray, which is not installed; {INSTALL}") from None
    if all(run_state(project / label(b), recipe["epochs"])[0] == "finished" for b in batches):
        runs = prepare(recipe, batches, project)  # nothing to train: no Ray to start
        return _drive(ray, recipe, project, runs, need, args) or finish(project, [r[1] for r in runs])
    started = _connect(ray, opts.get("address"))
    try:
        need = _fit(ray, need)
        runs = prepare(recipe, batches, project)
        rc = _drive(ray, recipe, project, runs, need, args)
    finally:
        if started:
            ray.shutdown()
    return rc or finish(project, [r[1] for r in runs])


def _connect(ray, address: str | None) -> bool:
    """Join the cluster at ``address``, or start a local Ray (quiet, no dashboard); False if already connected."""
    if ray.is_initialized():
        return False
    kw: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
    if address is None:  # a local Ray even when RAY_ADDRESS names a cluster; files in RAY_TMPDIR or Ray's default
        kw.update(address="local", include_dashboard=False)
        if os.environ.get("RAY_TMPDIR"):
            kw["_temp_dir"] = os.environ["RAY_TMPDIR"]
    else:
        kw["address"] = address
    try:
        ray.init(**kw)
    except Exception as e:  # noqa: BLE001 - Ray raises several kinds; each is one line here
        where = f"join the Ray cluster at address={address}" if address else "start a local Ray"
        raise AutoPlusError(f"sweep: cannot {where}: {_line(e)}") from None
    return True


def _fit(ray, need: dict[str, Any]) -> dict[str, Any]:
    """Default ``gpus_per_run`` from the cluster; refuse a run that no node could ever hold."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if need["gpus_per_run"] is None:
        need = {**need, "gpus_per_run": 1 if any(r.get("GPU", 0) >= 1 for r in nodes) else 0}
    c, g = need["cpus_per_run"], need["gpus_per_run"]
    if not any(r.get("CPU", 0) >= c and r.get("GPU", 0) >= g for r in nodes):
        have = ", ".join(f"{r.get('CPU', 0):g} CPU {r.get('GPU', 0):g} GPU" for r in nodes) or "none alive"
        raise AutoPlusError(
            f"sweep: no Ray node has cpus_per_run={c} and gpus_per_run={g} free for a run (nodes: {have}); "
            "ask for less per run, or add a node that has them"
        )
    return need


def _drive(ray, recipe: dict[str, Any], project: Path, runs: list[tuple], need: dict[str, Any], args: list[str]) -> int:
    """Submit the runs to train, print each state change as it comes, then the table of runs; 0 or 130."""
    from ray.util.queue import Queue

    if any(state != "finished" for _, _, state, _ in runs):  # else Ray was not started
        events = Queue(actor_options={"num_cpus": 0})
        task = ray.remote(run_member).options(
            num_cpus=need["cpus_per_run"], num_gpus=need["gpus_per_run"], max_retries=0
        )
    done: dict[str, dict] = {}
    pending: dict[Any, str] = {}
    nodes: dict[str, str] = {}  # where each run said it started
    how = {value: "resumed" if state == "interrupted" else "trained" for value, _, state, _ in runs}
    try:
        for value, _, state, saved in runs:
            if state == "finished":
                done[value] = {"ok": True, "how": "reused", "node": "-", "seconds": None}
                _say(value, "reused (finished before)")
            else:
                pending[task.remote(recipe, value, str(project), state, saved, events)] = value
                _say(value, f"queued ({need['cpus_per_run']} CPU, {need['gpus_per_run']} GPU)")
        while pending:
            try:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            except ray.exceptions.RayError as e:  # the driver lost Ray itself: no task result can come back
                raise AutoPlusError(_lost(pending, e)) from None
            events = _drain(ray, events, nodes)
            for ref in ready:
                value = pending.pop(ref)
                done[value] = {"how": how[value], **_result(ray, ref, nodes.get(value, "?"))}
                r = done[value]
                what = f"finished in {r['seconds']:.0f}s on {r['node']}" if r["ok"] else f"failed: {r['error']}"
                _say(value, f"{what} ({len(done)}/{len(runs)} done)")
    except KeyboardInterrupt:
        names = ", ".join(f"batch={v}" for v in pending.values())
        for ref in pending:
            ray.cancel(ref)  # a KeyboardInterrupt in the task: run_child stops its yolo train, as the local engine
        ray.wait(list(pending), num_returns=len(pending), timeout=STOP_SECONDS + 15)
        return stopped(args, names)
    for line in _table(runs, done):
        print(line)
    failed = [f"batch={v} ({done[v]['error']})" for v, *_ in runs if not done[v]["ok"]]
    if failed:
        raise AutoPlusError(
            f"sweep: {len(failed)} of {len(runs)} run(s) failed: {'; '.join(failed)}; finished runs are kept, run "
            "the same sweep again to go on"
        )
    return 0


def _drain(ray, events, nodes: dict[str, str]):
    """Print the runs' state changes (running, resuming) that reached the queue; the queue, or None once lost.

    Each run's node is noted into ``nodes``. The queue is an actor on the driver's node: if Ray loses it (the
    node died), the runs' own results still say how each ended, so its loss stops only these lines.
    """
    from ray.util.queue import Empty

    while events is not None:
        try:
            value, state, node, saved = events.get_nowait()
        except Empty:
            return events
        except ray.exceptions.RayError:
            return None
        nodes[value] = node
        _say(
            value,
            f"resuming after epoch {saved} (weights/last.pt) on {node}"
            if state == "resuming"
            else f"running on {node}",
        )
    return None


def _lost(pending: dict, e: BaseException) -> str:
    """The one line for a sweep whose driver lost Ray while runs were going."""
    names = ", ".join(f"batch={v}" for v in pending.values())
    return (
        f"sweep: Ray stopped answering during {names} ({_line(e)}); finished runs are kept, and the same sweep "
        "resumes the others from their last.pt once Ray runs again"
    )


def _result(ray, ref, node: str) -> dict:
    """A task's result, or its error as one line (a task that raised, was cancelled, or lost its worker or node).

    ``node`` is where the run said it started (``?`` if it never said): a task whose node or worker died returns
    nothing of its own.
    """
    try:
        return ray.get(ref)
    except ray.exceptions.NodeDiedError:
        error = f"Ray lost node {node}, where it ran"
    except ray.exceptions.WorkerCrashedError:
        error = f"its Ray worker on node {node} died"
    except ray.exceptions.TaskCancelledError:  # this sweep cancels only on Ctrl-C, which reads no result
        error = f"Ray cancelled it on node {node}, not this sweep (its node was lost, or the cluster stopped it)"
    except ray.exceptions.RayError as e:
        error = _line(e)
    return {"ok": False, "node": node, "seconds": None, "error": error}


def _table(runs: list[tuple], done: dict[str, dict]) -> list[str]:
    """The runs: how each ended, on which node, in how many seconds."""
    rows = [("run", "state", "how", "node", "seconds")]
    for value, run, *_ in runs:
        r = done[value]
        secs = "-" if r.get("seconds") is None else f"{r['seconds']:.0f}"
        how = r["how"] if r["ok"] else {"trained": "train", "resumed": "resume"}.get(r["how"], r["how"])
        rows.append((run.name, "finished" if r["ok"] else "failed", how, r["node"], secs))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["", *("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)]


def _say(value: str, what: str) -> None:
    print(f"sweep: batch={value} {what}", flush=True)


def _line(e: BaseException) -> str:
    """An exception as one line: its last non-empty line (a remote traceback ends with the error)."""
    lines = [x.strip() for x in str(e).splitlines() if x.strip()]
    return lines[-1] if lines else type(e).__name__
