"""The sweep's engine: ``engine=local|ray`` and the Ray keys, checked before anything runs; no Ray imported.

``engine=`` (``local``, the default, or ``ray``), ``address=``, ``gpus_per_run=`` and ``cpus_per_run=`` are the
engine's, not the recipe's: they are taken out of the sweep's words first (`split_engine`), so a project
trained by one engine is reused and resumed by the other. For ``engine=ray``: each run's resources, checked
against the recipe's ``device=`` (`resources`); with a cluster (``address=``), the dataset, a model file and
``project=`` as absolute paths that exist here (`check_shared`); and what each node must see before its run
(`unseen`), which `yolo_batch.tools.sweep_ray` checks in every task.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from yolo_batch.core.spec import AutoPlusError, _closest
from yolo_batch.tools.cmdline import cuda_devices, parse_pairs, positive
from yolo_batch.tools.sweep_state import SWEEP_FILE, check_record

ENGINES = ("local", "ray")
RAY_KEYS = ("address", "gpus_per_run", "cpus_per_run")
SHARED = "the dataset, the model file and project= must be on storage every node sees at the same absolute path"


def gpus(raw: str) -> int | float:
    """``gpus_per_run=``: 0, a fraction of one GPU (runs share it), or a whole number.

    Examples:
        >>> gpus("2"), gpus("0.5")
        (2, 0.5)
    """
    v = float(raw)
    if not 0 <= v < float("inf") or (v > 1 and v != int(v)):
        raise ValueError("expected 0, a fraction of one GPU such as 0.5, or a whole number of GPUs")
    return int(v) if v == int(v) else v


def split_engine(args: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Take ``engine=`` and the Ray keys out of a sweep's words, checked.

    Args:
        args (list[str]): The sweep's ``key=value`` words.

    Returns:
        (tuple): ``{"engine": "local"|"ray", ...the Ray keys given}`` and the other words, in order.

    Raises:
        AutoPlusError: For an unknown engine, a Ray key without ``engine=ray``, or a bad value (one line).
    """
    keys = ("engine", *RAY_KEYS)
    mine = [a for a in args if a.partition("=")[0] in keys]
    rest = [a for a in args if a.partition("=")[0] not in keys]
    opts = parse_pairs(mine, {"engine": str, "address": str, "gpus_per_run": gpus, "cpus_per_run": positive}, "sweep")
    engine = opts.pop("engine", "local").strip().lower()
    if engine not in ENGINES:
        raise AutoPlusError(f"sweep: unknown engine {engine!r}{_closest(engine, list(ENGINES))}; valid: local, ray")
    if engine == "local" and opts:
        given = ", ".join(k + "=" for k in opts)
        verb = "apply" if len(opts) > 1 else "applies"
        raise AutoPlusError(f"sweep: {given} {verb} only with engine=ray; add engine=ray, or leave them out")
    if "address" in opts and not opts["address"].strip():
        raise AutoPlusError("sweep: address= is empty; address=auto joins the running Ray cluster, HOST:PORT another")
    return {"engine": engine, **opts}, rest


def check_address(address: str | None, timeout: float = 5.0) -> None:
    """``address=HOST:PORT`` (or ``ray://HOST:PORT``): refuse, in one line, an address where nothing listens.

    Ray itself retries a dead address for minutes, a warning every few seconds; one TCP connection tells first.
    ``auto`` (Ray finds the running cluster, or says in one line that there is none) and no address pass.

    Raises:
        AutoPlusError: For an address that is not HOST:PORT, or one that does not answer within ``timeout``.
    """
    import socket

    if address is None or address.strip().lower() in {"auto", "local"}:
        return
    text = address.strip()
    host, _, port = text.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        raise AutoPlusError(f"sweep: address={text} is not auto or HOST:PORT (e.g. address=10.0.0.5:6379)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        why = "timed out" if isinstance(e, socket.timeout) else (e.strerror or type(e).__name__).lower()
        raise AutoPlusError(
            f"sweep: nothing answers at address={text} ({why}); start the cluster there (ray start --head "
            f"--port={port}), or use address=auto for the cluster running on this machine"
        ) from None


def resources(
    opts: dict[str, Any], recipe: dict[str, Any], batches: tuple[str, ...] | list[str] = ()
) -> dict[str, Any]:
    """Each run's CPUs and GPUs, refusing a contradiction with the recipe's ``device=``.

    ``gpus_per_run`` defaults to 0 for ``device=cpu`` (or mps), to the GPUs ``device=`` names, and, with no
    ``device=``, to None (decided by `_fit`: 1 when a node has a GPU). Ray gives each run its own GPUs,
    numbered from 0, so ``device=`` counts from 0 too.

    A fraction of a GPU with an auto-plus run is refused: runs side by side on one card would each plan for the
    card's whole free memory at once.

    Args:
        opts (dict): From `split_engine`.
        recipe (dict): From `yolo_batch.tools.sweep.plan`.
        batches (list[str]): The batch values, from `yolo_batch.tools.sweep.plan`.

    Returns:
        (dict): ``{"cpus_per_run": int, "gpus_per_run": int | float | None}``.

    Raises:
        AutoPlusError: For GPUs asked with a CPU device, none with a GPU device, fewer than the device needs, or
            a share of a GPU with an auto-plus run.
    """
    auto = [b for b in batches if not str(b).isdigit()]
    share = opts.get("gpus_per_run")
    if auto and share is not None and 0 < share < 1:
        raise AutoPlusError(
            f"sweep: gpus_per_run={share} puts several runs on one GPU, but the auto-plus run(s) {','.join(auto)} plan "
            "for the free memory of the GPU they start on, and runs side by side would each plan for the same memory; "
            "give gpus_per_run=1, or list integer batches only"
        )
    cuda = cuda_devices(recipe.get("device"))
    g = opts.get("gpus_per_run")
    device = recipe.get("device")
    dev = f"device={','.join(map(str, device)) if isinstance(device, (list, tuple)) else device}"
    if cuda == []:
        if g:
            raise AutoPlusError(
                f"sweep: gpus_per_run={g} asks a GPU for each run, but {dev} trains without one; leave "
                "gpus_per_run= out, or give device=0"
            )
        g = 0
    elif cuda:
        need = max(len(cuda), max(cuda) + 1)
        if g == 0:
            raise AutoPlusError(f"sweep: {dev} trains on a GPU, but gpus_per_run=0 gives each run none")
        if g is not None and need > max(g, 1):
            raise AutoPlusError(
                f"sweep: {dev} needs {need} GPUs per run, but gpus_per_run={g}; Ray gives each run its own GPUs, "
                "numbered from 0 (device=0 is the run's first)"
            )
        g = need if g is None else g
    return {"cpus_per_run": opts.get("cpus_per_run", 1), "gpus_per_run": g}


def check_shared(rest: list[str], recipe: dict[str, Any]) -> None:
    """With ``address=``: the dataset, a model file and ``project=`` typed as absolute paths, here.

    Raises:
        AutoPlusError: For a relative path, or a dataset or model file this machine does not see.
    """
    typed = dict(a.partition("=")[::2] for a in rest)
    relative = [f"{k}={typed.get(k, 'runs/sweep')}" for k in ("data", "project") if not _absolute(typed.get(k, ""))]
    model = typed.get("model", "")
    if ("/" in model or os.sep in model or Path(model).exists()) and not _absolute(model):
        relative.append(f"model={model}")
    if relative:
        raise AutoPlusError(
            f"sweep: with address= {SHARED}; {', '.join(relative)} {'are' if len(relative) > 1 else 'is'} relative: "
            "give absolute paths, e.g. "
            "data=/shared/data/coco.yaml project=/shared/sweeps/coco"
        )
    for key in ("data", "model"):
        if _absolute(typed.get(key, "")) and not Path(recipe[key]).exists():
            raise AutoPlusError(f"sweep: {key}={recipe[key]} does not exist on this machine; {SHARED}")


def _absolute(raw: str) -> bool:
    return bool(raw) and Path(raw).expanduser().is_absolute()


def unseen(recipe: dict[str, Any], project: Path) -> str | None:
    """What of the sweep this machine does not see: the dataset or model file, or the project's record.

    Run by each Ray task on its node before its run: ``project/sweep.yaml`` with this recipe shows that the
    node sees the folder the sweep wrote, not a folder of its own at the same path.

    Returns:
        (str | None): What is missing, or None when everything is there.
    """
    for key in ("data", "model"):
        path = Path(str(recipe[key]))
        if path.is_absolute() and not path.exists():
            return f"{key}={path}"
    try:
        if (project / SWEEP_FILE).is_file():
            check_record(project, recipe, [])
            return None
    except AutoPlusError:
        pass
    return f"{project / SWEEP_FILE} with this sweep's recipe"
