"""auto-plus over several GPUs (DDP): each rank probes its own GPU; all train at the smallest per-GPU fit.

Ultralytics refuses ``batch < 1`` with several GPUs and runs no callback in the launcher, which only starts
``torch.distributed.run`` workers that rebuild the trainer from ``vars(trainer.args)``. So:

- **Launcher** (``world_size(device) > 1``, no ``RANK``): `launcher_overrides` sets ``batch`` to a placeholder
  Ultralytics accepts (one image per GPU) and leaves the value and settings in ``YOLO_BATCH_DDP*`` for the
  workers, which inherit the environment. It probes nothing; `launched` clears them after ``train()``.
- **Worker** (`worker_value` set): ``wiring.plan`` keeps the placeholder and decides; the first
  ``_build_train_pipeline`` call probes this rank's GPU on the bare model (`unwrapped`: no probe step runs a
  collective, so an out-of-memory on one rank leaves no other waiting), picks with the core's everyday decision
  (`policy.choose`: the training set and ``max_batch`` split over the GPUs) and verifies alone; only then `agree`
  runs one all-gather: all ranks take the smallest pick (a rank that failed gives 0 and all stop), and
  ``batch = per_gpu x world`` (Ultralytics feeds each GPU ``batch // world``). Rank 0 writes
  ``batch_decision.json`` with `record_fields` (every rank's pick, the minimum, the global batch).

Only real GPUs can check NCCL (tensors on each rank's device), per-GPU budgets from ``mem_get_info``, the
probe on ``model.module`` of a CUDA DDP model (also with ``compile``), and ``yolo train ... device=0,1
batch=auto-plus`` end to end; ``tests/test_ddp.py`` checks the rest on CPU with two ``gloo`` processes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from yolo_batch.core.policy import Law, MemoryModel
from yolo_batch.core.spec import AutoPlusError, BatchSpec, parse_batch_value

if TYPE_CHECKING:
    import torch
    from ultralytics.engine.trainer import BaseTrainer


ENV = "YOLO_BATCH_DDP"  # the auto-plus value, from the launcher to its workers
SPEC_ENV = "YOLO_BATCH_DDP_SPEC"  # the launcher's resolved settings (Python keywords, config), as JSON
_ACCELERATORS = {"nccl": "cuda", "xccl": "xpu", "hccl": "npu"}  # backends that reduce on the device


def world_size(device: Any) -> int:
    """Devices a training run spreads over, as Ultralytics counts them: 0 for cpu/mps, else the GPU count.

    Examples:
        >>> [world_size(d) for d in ("0,1", "cuda:0,1", [0, 1], "cpu", "mps", "", None, 0, "npu:0,1,2", "-1,-1")]
        [2, 2, 2, 0, 0, 1, 1, 1, 3, 2]
    """
    kind = getattr(device, "type", None)  # a torch.device
    if kind is not None:
        return 0 if kind in {"cpu", "mps"} else 1
    text = str(device if device is not None else "").lower()
    for junk in ("cuda:", "npu:", "xpu:", "none", "(", ")", "[", "]", "'", " "):
        text = text.replace(junk, "")
    return 0 if text.split(":")[0] in {"cpu", "mps"} else max(len([x for x in text.split(",") if x]), 1)


def launcher_overrides(value: str, device: Any, overrides: dict | None, spec: BatchSpec | None = None) -> dict:
    """The DDP launcher's overrides: a placeholder ``batch`` Ultralytics accepts, the value in ``YOLO_BATCH_DDP``.

    ``spec``, the launcher's resolved settings, goes to ``YOLO_BATCH_DDP_SPEC``: the workers rebuild their
    callbacks from the module, so ``AutoPlus(...)`` keywords would not reach them otherwise.

    Returns:
        (dict): A copy of ``overrides`` with ``batch`` = one image per GPU (an int >= 1, a multiple of the GPUs).

    Raises:
        AutoPlusError: For a bad value, or a device of fewer than two GPUs.
    """
    parse_batch_value(value)  # never hand the workers a value they would refuse
    world = world_size(device)
    if world < 2:
        raise AutoPlusError(f"device={device!r} names {world} GPU(s); the DDP launcher needs two or more")
    forget()
    os.environ[ENV] = str(value)
    if spec is not None:
        os.environ[SPEC_ENV] = json.dumps(spec.as_dict())
    return {**(overrides or {}), "batch": world}


def forget() -> None:
    """Clear ``YOLO_BATCH_DDP*`` so a later run in the same process is not taken for auto-plus."""
    os.environ.pop(ENV, None)
    os.environ.pop(SPEC_ENV, None)


def launched(original: Callable[[], Any]) -> Any:
    """Run the launcher's ``train()`` (which spawns the workers), then `forget` the value."""
    try:
        return original()
    finally:
        forget()


def in_worker() -> bool:
    """True in a process that ``torch.distributed.run`` started (``RANK`` or ``LOCAL_RANK`` >= 0)."""
    return any(int(os.environ.get(k) or -1) >= 0 for k in ("RANK", "LOCAL_RANK"))


def worker_value() -> str | None:
    """The launcher's auto-plus value in a DDP worker, else None."""
    value = os.environ.get(ENV, "").strip()
    return value if value and in_worker() else None


def worker_spec() -> BatchSpec | None:
    """The launcher's resolved settings in a DDP worker, else None (then resolve `worker_value` as usual)."""
    raw = os.environ.get(SPEC_ENV) if worker_value() is not None else None
    return BatchSpec(**json.loads(raw)) if raw else None


def rank() -> int:
    """The global rank of this process: from the default process group, else ``RANK``, else -1."""
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else int(os.environ.get("RANK") or -1)


def plan_global_batch(picks: Sequence[int]) -> tuple[int, int]:
    """``(per_gpu, global)``: the smallest rank's pick, times the ranks; `AutoPlusError` when a pick is 0.

    Examples:
        >>> plan_global_batch([32, 16])
        (16, 32)
    """
    failed = [r for r, p in enumerate(picks) if p < 1]
    if not picks or failed:
        raise AutoPlusError(f"rank(s) {failed} found no per-GPU batch that fits (see their log); no rank trains")
    per_gpu = min(int(p) for p in picks)
    return per_gpu, per_gpu * len(picks)


def collective_device(backend: str) -> str:
    """Where a collective's tensor must live: ``cpu`` for gloo (and mixed groups), else the accelerator type."""
    backend = str(backend).lower()
    return "cpu" if "gloo" in backend or "mpi" in backend else _ACCELERATORS.get(backend, "cpu")


def _tensor(value: int, world: int) -> torch.Tensor | None:
    """``value`` as a tensor where the default group's backend reduces it; None when ``world`` is one rank."""
    if world <= 1:
        return None
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise AutoPlusError(f"agreeing on a batch over {world} GPUs needs the DDP process group, which is not set up")
    if dist.get_world_size() != world:
        raise AutoPlusError(f"the process group has {dist.get_world_size()} ranks, the device names {world}")
    kind = collective_device(dist.get_backend())
    device = torch.device("cpu") if kind == "cpu" else torch.device(kind, getattr(torch, kind).current_device())
    return torch.tensor([int(value)], dtype=torch.int64, device=device)


def reduce_batch(local_batch: int, world: int) -> int:
    """All-reduce MIN of each rank's per-GPU batch over the default process group (gloo on CPU, nccl on GPU)."""
    t = _tensor(local_batch, world)
    if t is None:
        return int(local_batch)
    import torch.distributed as dist

    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def gather_batches(local_batch: int, world: int) -> list[int]:
    """Every rank's per-GPU batch, in rank order, on every rank (one all-gather)."""
    t = _tensor(local_batch, world)
    if t is None:
        return [int(local_batch)]
    import torch.distributed as dist

    out = [t.clone() for _ in range(world)]
    dist.all_gather(out, t)
    return [int(x.item()) for x in out]


def agree(local_pick: Callable[[], int], world: int) -> tuple[int, list[int]]:
    """Run this rank's pick, then agree with the others; a failing rank never leaves the others waiting.

    Every rank joins the one all-gather (a rank whose pick raised gives 0, then re-raises; the others raise
    `AutoPlusError` naming it). Returns the per-GPU batch every rank trains at, and each rank's own pick.
    """
    error: Exception | None = None
    try:
        local = int(local_pick())
    except Exception as e:  # noqa: BLE001 - re-raised below, after the collective every rank must join
        local, error = 0, e
    picks = gather_batches(local, world)
    if error is not None:
        raise error
    return plan_global_batch(picks)[0], picks


@contextmanager
def unwrapped(trainer: BaseTrainer) -> Iterator[Any]:
    """Lend the trainer the bare module of its DDP model, so probe steps run no gradient all-reduce."""
    import torch

    model = trainer.model
    trainer.model = bare = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
    try:
        yield bare
    finally:
        trainer.model = model


def record_fields(record: dict, picks: Sequence[int], rank_index: int = 0) -> dict:
    """The DDP entries of ``batch_decision.json``; ``predicted``/``verified_peak_bytes`` stay at ``local_batch``.

    Examples:
        >>> r = record_fields({"fixed_bytes": 100, "per_image_bytes": 10}, [32, 16])
        >>> r["batch"], r["per_gpu_batch"], r["rank_batches"], r["per_gpu_predicted_peak_bytes"]
        (32, 16, [32, 16], 260)
    """
    per_gpu, total = plan_global_batch(picks)
    val = record.get("val_fixed_bytes") is not None and Law(record["val_fixed_bytes"], record["val_per_image_bytes"])
    law = Law(record["fixed_bytes"], record["per_image_bytes"])
    model = MemoryModel(law, val or None, record.get("val_batch_factor", 2))
    return {
        "batch": total,
        "per_gpu_batch": per_gpu,
        "world_size": len(picks),
        "rank_batches": [int(p) for p in picks],
        "local_batch": int(picks[rank_index]),
        "per_gpu_predicted_peak_bytes": int(model.peak(per_gpu)),
        "ddp_reason": f"DDP over {len(picks)} GPUs: per-GPU picks {list(picks)}; all train at the smallest, "
        f"{per_gpu} per GPU: batch={total}",
    }
