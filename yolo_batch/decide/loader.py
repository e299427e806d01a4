"""The training dataloader's images/s, measured for a short, bounded time, as Ultralytics builds the loader.

`measure` builds a loader with Ultralytics' own ``build_dataloader`` on the probe's training dataset (the
run's augmentation: mosaic, mixup, HSV, flips; the run's ``workers`` and imgsz), skips its warm-up, draws
batches until it has seen two rounds of every worker's batches (at least ``MIN_BATCHES``) or ``SECONDS``
have passed, and shuts its workers down before it returns, also when it fails. The warm-up is the first
batch (the workers' start) and ``workers x prefetch_factor`` batches (what the workers loaded while the
first was awaited: they come in a burst, faster than the loader's pace), also bounded by ``SECONDS``.
Run it inside `probe.borrowed` (with ``workers=0`` the loading draws from the global random state).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from yolo_batch.core.throughput import Pace, fit_time_law
from yolo_batch.device.memory import is_oom
from yolo_batch.session import log

if TYPE_CHECKING:
    from ultralytics.engine.trainer import BaseTrainer


SECONDS = 3.0  # the measurement's bound after the first batch
MIN_BATCHES = 8  # batches counted at least (when they come within SECONDS)
BATCH = 16  # images per measured batch: Ultralytics' default batch (per-image work does not depend on it)
EXTEND_SECONDS = 2.0  # `time_law` grows the timed batch sizes while their steps take at most this long in all


@dataclass(frozen=True)
class LoaderRate:
    """The measured rate: ``images_per_s`` over ``images`` images in ``seconds`` after the first batch."""

    images_per_s: float | None
    workers: int
    images: int
    seconds: float
    start_seconds: float  # building the loader and waiting through the batches skipped
    skipped: int = 0  # batches not counted: the first, and every worker's prefetched batches


def measure(trainer: BaseTrainer, dataset, seconds: float = SECONDS, batch: int = BATCH) -> LoaderRate:
    """Time the training dataloader the run would build, on ``dataset`` (the probe's training dataset).

    Args:
        trainer: The Ultralytics trainer (its ``args.workers``, ``args.compile`` and ``device``).
        dataset: The training dataset, built by ``trainer.build_dataset(..., mode="train")``.
        seconds (float): Stop counting after this long.
        batch (int): Images per measured batch (at most the dataset's size).

    Returns:
        (LoaderRate): The rate; ``images_per_s`` None when fewer than two batches came.
    """
    from ultralytics.data.build import build_dataloader

    t0 = time.perf_counter()
    loader = build_dataloader(
        dataset,
        batch=min(batch, len(dataset)),
        workers=trainer.args.workers,
        shuffle=True,
        rank=-1,
        drop_last=bool(trainer.args.compile),
        device=trainer.device,
    )
    workers = loader.num_workers
    skip = 1 + workers * (getattr(loader, "prefetch_factor", None) or 0)  # the first batch, then the prefetched
    wanted = max(2 * workers, MIN_BATCHES)
    images, count, seen = 0, 0, 0
    began: float | None = None
    first: float | None = None
    last: float = 0.0
    try:
        while count < wanted and (first is None or last - first < seconds):
            for b in loader:
                now = time.perf_counter()
                seen += 1
                began = now if began is None else began
                if first is None:
                    if seen >= skip or now - began >= seconds:  # warmed up (or the skip's own bound)
                        first = last = now
                else:
                    images, last, count = images + len(b["img"]), now, count + 1
                if first is not None and (count >= wanted or last - first >= seconds):
                    break
    finally:
        close(loader)
    start = (first or time.perf_counter()) - t0
    span = (last - first) if first is not None else 0.0
    rate = images / span if count and span > 0 else None
    return LoaderRate(rate, workers, images, span, start, seen - count)


def close(loader) -> None:
    """Shut the loader's workers down and wait for them; nothing of it outlives this call."""
    iterator = getattr(loader, "iterator", None)
    workers = list(getattr(iterator, "_workers", ()) or ())
    try:
        loader.close()
    finally:
        for w in workers:
            w.join(timeout=5)
            if w.is_alive():
                w.terminate()
                w.join(timeout=5)
        loader.iterator = None


def cpus() -> int:
    """CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def measure_pace(trainer: BaseTrainer, prober, result, limit: int):
    """The run's `throughput.Pace`: the time law from timed training steps and the measured dataloader.

    See `time_law` for the steps; then `measure` times the dataloader.

    Args:
        trainer: The Ultralytics trainer.
        prober: The `probe.Prober` (inside `probe.borrowed`) whose dataset is the run's training set.
        result: The `probe.ProbeResult` with ``train_seconds`` and ``optimizer_seconds``.
        limit (int): The largest batch the memory law lets a timing step run at (and the training-set cap).

    Returns:
        (Pace | None): None when fewer than two batch sizes were timed.
    """
    if len(result.train_seconds) < 2:
        return None
    law, points = time_law(prober, result, trainer.args.nbs, limit, EXTEND_SECONDS)
    try:
        rate = measure(trainer, prober.dataset)
    except Exception as e:  # noqa: BLE001 - a loader that cannot be timed here still trains; the step's law stands
        logger, prefix = log()
        logger.warning(f"{prefix}dataloader not measured ({type(e).__name__}: {e}); images/s from the step alone")
        rate = LoaderRate(None, 0, 0, 0.0, 0.0)
    overlapped = rate.workers > 0 and trainer.device.type != "cpu"
    return Pace(
        law,
        rate.images_per_s,
        overlapped,
        rate.workers,
        cpus(),
        str(trainer.args.cache),
        rate.images,
        rate.seconds,
        rate.start_seconds,
        tuple(points),
        prober.dataset_size,
        trainer.epochs,
        rate.skipped,
    )


def time_law(prober, result, nbs: int, limit: int, seconds: float = EXTEND_SECONDS):
    """Least squares through steady step times per batch size, growing the timed sizes where that is cheap.

    The probe's steps pay for memory touched for the first time (page faults on a CPU, where the peak
    meter's reset gives freed memory back to the system before each step; fresh allocator blocks on a GPU),
    which training pays once: on 2 CPU cores the first step at 4 took twice as long as the second. So the
    timing steps leave the peak meter alone, and every size is timed as the mean of two steps after a first
    step at that size: the smallest and the largest probe size on two more steps each (training's average
    pace is a mean; on 2 shared cores single steps varied by 30 %). Then, while two steps at twice the size
    fit ``limit`` and the law puts them within ``seconds`` in all, the size doubles: small batches overstate
    the cost per image of a bigger batch (on a CPU at 96 px, 24 ms per image from batches 2-8, 11 ms at 64),
    and the policy's question is where the curve flattens. Out of memory ends the growth.

    Returns:
        (tuple[TimeLaw, list]): The law and the ``(batch, mean seconds)`` points it was fitted on.
    """
    low, high = min(result.train_seconds), max(result.train_seconds)
    samples: dict[int, list[float]] = {}

    def timed(n: int, keep: bool = True) -> None:
        prober.train_step(n, reset=False)
        if keep:
            samples.setdefault(n, []).append(prober.last_seconds[0])
        result.optimizer_seconds.append(prober.last_seconds[1])

    def law():
        points = [(b, sum(v) / len(v)) for b, v in sorted(samples.items())]
        return fit_time_law(points, sum(result.optimizer_seconds) / len(result.optimizer_seconds), nbs)

    for n in (low, low, high, high):
        timed(n)
    spent, n = 0.0, high
    while 2 * n <= limit and spent + 2 * law().step_seconds(2 * n) <= seconds:
        t0 = time.perf_counter()
        try:
            timed(2 * n, keep=False)  # fresh memory: not used
            timed(2 * n)
        except RuntimeError as e:
            if not is_oom(e):
                raise
            samples.pop(2 * n, None)
            prober.trainer.optimizer.zero_grad(set_to_none=True)
            prober.backend.empty_cache()
            break
        spent, n = spent + time.perf_counter() - t0, 2 * n
    return law(), [(b, sum(v) / len(v)) for b, v in sorted(samples.items())]
