"""Real training steps through the trainer's own model, loss, optimizer, EMA and AMP, at a few batch sizes.

The probe borrows the trainer's model and puts everything back: weights and buffers, gradients, the AMP
scaler, the random-number generators, train/eval mode, and the trainer's optimizer and EMA slots.
"""

from __future__ import annotations

import gc
import math
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from yolo_batch.core.phases import Phases
from yolo_batch.core.spec import AutoPlusError
from yolo_batch.device.memory import is_oom

if TYPE_CHECKING:
    from ultralytics.engine.trainer import BaseTrainer


ITEMS = 16  # distinct training samples the probe loads

# The worst case the probe trains on, per task: what makes one image cost the most memory.
WORST_CASE = {
    "detect": "densest labels: the images with the most boxes",
    "obb": "densest labels: the images with the most oriented boxes",
    "segment": "most instances: the images with the most masks (each mask is rasterised at a fixed size, "
    "so the instance count, not the mask area, sets the memory)",
    "pose": "most instances: the images with the most keypoint sets (a fixed number of keypoints each)",
    "classify": "the configured image size: every image is resized to imgsz, so any image is the worst case",
    "semantic": "the configured image size: one class mask per image at the image's size, so any image is "
    "the worst case",
    "depth": "the configured image size: one depth map per image at the image's size, so any image is the worst case",
}
ANY_IMAGE = {"classify", "semantic", "depth"}  # memory does not depend on the labels: the images in their order
VAL_AT_1X = {"obb", "semantic", "depth"}  # Ultralytics validates these at the training batch, the rest at 2x


def check_task(task: str | None) -> None:
    """Refuse, in one line, a task the probe cannot serve (before anything is built).

    Raises:
        AutoPlusError: For a task outside `WORST_CASE`.
    """
    if task is not None and task not in WORST_CASE:
        raise AutoPlusError(
            f"batch=auto-plus does not serve task={task!r}; it serves {', '.join(WORST_CASE)}. "
            "Pass an integer batch, e.g. batch=16"
        )


@dataclass
class ProbeResult:
    """Measured peaks: ``train`` and ``val`` are ``(batch, peak_bytes)``; ``oom`` the batches that ran out."""

    train: list[tuple[int, int]] = field(default_factory=list)
    val: list[tuple[int, int]] = field(default_factory=list)
    oom: list[int] = field(default_factory=list)
    seconds: float = 0.0
    step_seconds: dict[int, float] = field(default_factory=dict)
    warmup_seconds: float = 0.0  # the first step: lazy buffers, kernels, optimizer state, first CUDA use
    train_seconds: dict[int, float] = field(default_factory=dict)  # batch -> forward, loss, backward (timed apart)
    optimizer_seconds: list[float] = field(default_factory=list)  # each timed step's optimizer step and EMA update
    val_seconds: dict[int, float] = field(default_factory=dict)  # validation batch -> its forward and loss


class _Quiet:
    """Silence Ultralytics' logger while the probe builds its helpers (optimizer and dataset lines)."""

    def __enter__(self):
        from ultralytics.utils import LOGGER

        self.logger, self.level = LOGGER, LOGGER.level
        LOGGER.setLevel(40)

    def __exit__(self, *exc):
        self.logger.setLevel(self.level)


_MODULE_SLOTS = ("_parameters", "_buffers", "_modules")  # restored by value (tensors) or left (the tree)


class _Snapshot:
    """Everything of the trainer that a probe step can change, to put back exactly.

    - the trainer's own attributes (``optimizer``, ``ema``, ``loss``, ``tloss``...): the same objects put back,
      attributes the probe added removed;
    - ``trainer.args`` field by field (``build_optimizer`` with ``optimizer=auto`` rewrites ``optimizer``,
      ``lr0`` and ``warmup_bias_lr``; the probe sets ``multi_scale`` and ``cache``);
    - every module's plain attributes (``training``, the lazily built ``criterion`` and its counters, head
      caches such as anchors and shapes), attributes added by the probe removed;
    - every parameter and buffer, persistent or not, by value into the same tensor objects; gradients cleared;
    - the AMP scaler, the random, numpy, torch and CUDA generators, and torch's global switches.
    """

    def __init__(self, trainer: BaseTrainer) -> None:
        """Take the snapshot (one CPU copy of the weights)."""
        self.trainer = trainer
        model: torch.nn.Module = trainer.model  # type: ignore[assignment]  # Ultralytics types model str | Path
        self.attrs = dict(vars(trainer))
        self.args = dict(vars(trainer.args))
        self.modules = []
        for m in model.modules():
            plain = {k: v for k, v in vars(m).items() if k not in _MODULE_SLOTS}
            self.modules.append((m, plain, dict(m._parameters), dict(m._buffers)))
        self.values = {id(t): t.detach().to("cpu", copy=True) for m in model.modules() for t in _tensors(m)}
        scaler = getattr(trainer, "scaler", None)
        self.scaler = scaler.state_dict() if scaler is not None else None
        self.rng = (random.getstate(), np.random.get_state(), torch.get_rng_state())
        cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
        self.cuda_rng = torch.cuda.get_rng_state_all() if cuda else None
        self.switches = _switches()

    def restore(self) -> None:
        """Put everything back."""
        t = self.trainer
        for k in set(vars(t)) - set(self.attrs):
            delattr(t, k)
        for k, v in self.attrs.items():
            if getattr(t, k, None) is not v:
                setattr(t, k, v)
        args = vars(t.args)
        for k in set(args) - set(self.args):
            del args[k]
        args.update(self.args)
        with torch.no_grad():
            for m, plain, params, buffers in self.modules:
                for k in [k for k in vars(m) if k not in _MODULE_SLOTS and k not in plain]:
                    delattr(m, k)
                vars(m).update(plain)
                for slot, saved in (("_parameters", params), ("_buffers", buffers)):
                    live = getattr(m, slot)
                    live.clear()
                    live.update(saved)
                for x in _tensors(m):
                    x.copy_(self.values[id(x)])
                    if isinstance(x, torch.nn.Parameter):
                        x.grad = None
        if self.scaler is not None:
            t.scaler.load_state_dict(self.scaler)
        random.setstate(self.rng[0])
        np.random.set_state(self.rng[1])
        torch.set_rng_state(self.rng[2])
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state_all(self.cuda_rng)
        _set_switches(self.switches)


def _tensors(module) -> list:
    """The module's own parameters and buffers (not its children's), None entries left out."""
    return [x for x in (*module._parameters.values(), *module._buffers.values()) if x is not None]


def _switches() -> tuple:
    """The torch global settings that change results: threads, deterministic mode, cuDNN flags, grad mode."""
    return (
        torch.get_num_threads(),
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
        torch.is_grad_enabled(),
    )


def _set_switches(s: tuple) -> None:
    threads, det, warn, bench, cudnn_det, grad = s
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(det, warn_only=warn)
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = bench, cudnn_det
    torch.set_grad_enabled(grad)


@contextmanager
def borrowed(trainer: BaseTrainer, phases=None):
    """Lend the trainer to the probe; afterwards the trainer is as it was (see `_Snapshot`), bit for bit.

    Inside, the objects that existed before are frozen out of Python's garbage collector (`frozen_gc`), so the
    collection before each measured step sees only what the probe made. ``phases`` (a `phases.Phases`) times
    the snapshot and the restore.
    """
    phases = phases or Phases()
    with phases("snapshot"):
        snapshot = _Snapshot(trainer)
    try:
        with frozen_gc(phases):
            yield
    finally:
        with phases("restore"):
            snapshot.restore()


@contextmanager
def frozen_gc(phases=None):
    """Freeze the objects alive now out of the garbage collector's scans, and thaw them afterwards.

    The peak meters collect garbage before each measured step (`memory`'s ``empty_cache``), so that tensors held
    by reference cycles are freed before the peak is counted. A full collection walks every object of the
    process: inside a ``yolo train`` process that took 0.27 s a call, 2.2 s of a 3.4 s decision on the CPU. Objects
    that were alive before the probe cannot be the probe's garbage, so the collection only needs the new ones.
    A process that froze objects itself is left as it is. ``phases`` times the one full collection (``collect``).

    Examples:
        >>> import gc
        >>> with frozen_gc():
        ...     inside = gc.get_freeze_count() > 0
        >>> inside, gc.get_freeze_count()
        (True, 0)
    """
    if gc.get_freeze_count():
        yield
        return

    with (phases or Phases())("collect"):
        gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class Prober:
    """Runs real steps on the task's worst-case images of the training set (`WORST_CASE`); use inside `borrowed`."""

    def __init__(self, trainer: BaseTrainer, backend) -> None:
        """Build the probe's dataset view, optimizer and EMA from the trainer's own settings."""
        from ultralytics.utils import colorstr  # noqa: F401  (import check: ultralytics present)
        from ultralytics.utils.torch_utils import ModelEMA

        self.trainer, self.backend = trainer, backend
        args = trainer.args
        ms = args.multi_scale  # 8.4: a fraction; 8.3: a bool meaning +-50 %
        ms = (0.5 if ms else 0.0) if isinstance(ms, bool) else float(ms)
        self.max_size = math.ceil(args.imgsz * (1 + ms) / trainer.stride) * trainer.stride
        args.multi_scale = type(args.multi_scale)(0)  # probed at the largest multi-scale size instead (see _batch)
        with _Quiet():
            cache, args.cache = args.cache, False
            try:
                self.dataset = trainer.build_dataset(trainer.data["train"], mode="train", batch=16)
            except FileNotFoundError:
                self.dataset = []
            finally:
                args.cache = cache
            if not len(self.dataset):
                raise AutoPlusError(f"the training set {trainer.data['train']} has no images; check data={args.data}")
            self.task = args.task
            self.worst_case = WORST_CASE[self.task]
            self.val_factor = 1 if self.task in VAL_AT_1X else 2
            labels = None if self.task in ANY_IMAGE else self.dataset.labels  # classify has `samples`, no labels
            counts = [len(lb["cls"]) for lb in labels] if labels is not None else [0] * len(self.dataset)
            self.order = sorted(range(len(counts)), key=lambda i: -counts[i])  # densest first: the worst case
            self.max_labels = max(counts) if labels is not None else None
            self.collate = getattr(self.dataset, "collate_fn", None) or torch.utils.data.default_collate
            iterations = math.ceil(len(self.dataset) / args.nbs) * args.epochs
            self.optimizer = trainer.build_optimizer(
                model=trainer.model,
                name=args.optimizer,
                lr=args.lr0,
                momentum=args.momentum,
                decay=args.weight_decay,
                iterations=iterations,
            )
        trainer.optimizer, trainer.ema = self.optimizer, ModelEMA(trainer.model)  # type: ignore[assignment]  # ema: None
        self._items: list = []
        self.allocated: list[tuple[int, str, int]] = []  # (images, "train" or "val", allocated peak) where measured
        self.last_seconds = (0.0, 0.0)  # the last training step: (forward + loss + backward, optimizer + EMA)

    @property
    def dataset_size(self) -> int:
        """Images in the training set."""
        return len(self.dataset)

    def _batch(self, n: int) -> dict:
        """A collated, preprocessed batch of ``n`` samples at the largest size: the densest images, cycled.

        At most ``ITEMS`` samples are loaded (mosaic loading is slow on CPU); larger batches repeat them,
        which keeps the tensor shapes and the densest label count, all that memory depends on.
        """
        while len(self._items) < min(n, ITEMS, len(self.order)):
            self._items.append(self.dataset[self.order[len(self._items)]])
        items = [
            {k: v.clone() if torch.is_tensor(v) else v for k, v in self._items[i % len(self._items)].items()}
            for i in range(n)
        ]
        batch = self.trainer.preprocess_batch(self.collate(items))  # collate_fn edits batch_idx
        if batch["img"].shape[-1] != self.max_size:
            batch["img"] = torch.nn.functional.interpolate(
                batch["img"], size=(self.max_size, self.max_size), mode="bilinear", align_corners=False
            )
        return batch

    def _autocast(self):
        from ultralytics.utils.torch_utils import autocast

        t = self.trainer
        return autocast(torch.bfloat16 if t.args.amp == "bf16" else t.amp, device=t.device.type)

    def _clock(self) -> float:
        """``perf_counter`` once the device has finished its queued work (CUDA and MPS run asynchronously)."""
        kind = self.trainer.device.type
        if kind == "cuda":
            torch.cuda.synchronize(self.trainer.device)
        elif kind == "mps":
            torch.mps.synchronize()
        return time.perf_counter()

    def train_step(self, n: int, reset: bool = True) -> int:
        """One real training step (forward, loss, backward, optimizer step, EMA update); return its peak.

        Its seconds go to ``last_seconds``: the batch's preparation, forward, loss and backward, then the
        optimizer step with the EMA update apart (training pays that once per ``accumulate`` batches).
        ``reset=False`` leaves the peak meter alone: on a CPU its reset gives freed memory back to the system,
        so the step after it pays page faults that training does not (a step timed for speed, not memory).
        """
        t = self.trainer
        if reset:
            self.backend.reset_peak()
        start = self._clock()
        batch = self._batch(n)
        t.model.train()  # type: ignore[union-attr]  # Ultralytics types model str | Path
        with self._autocast():
            loss, _ = t.model(batch)  # type: ignore[operator]  # Ultralytics types model str | Path
            loss = loss.sum()
        t.scaler.scale(loss).backward()
        mid = self._clock()
        t.optimizer_step()
        self.last_seconds = (mid - start, self._clock() - mid)
        del loss, batch
        return self._peak(n, "train") if reset else self.backend.peak_bytes()

    def val_step(self, n: int) -> int:
        """The validation forward and loss on the EMA model, as the validator runs them (for classify a classifier).

        Half precision on CUDA with AMP.
        """
        t = self.trainer
        ema = t.ema.ema  # type: ignore[attr-defined]  # Ultralytics types ema None
        half = t.device.type != "cpu" and t.amp
        self.backend.reset_peak()
        batch = self._batch(n)
        with torch.no_grad():
            model = ema.half() if half else ema.float()
            img = batch["img"].half() if half else batch["img"].float()
            preds = model(img)
            model.loss(batch, preds)
        del preds, batch, img
        ema.float()
        return self._peak(n, "val")

    def _peak(self, n: int, kind: str) -> int:
        """The step's peak (the meter's), noting the allocated peak beside it where the device has one (CUDA)."""
        allocated = getattr(self.backend, "allocated_peak_bytes", None)
        if allocated is not None:
            self.allocated.append((n, kind, allocated()))
        return self.backend.peak_bytes()

    def run(self, batches: tuple[int, ...], val: bool, result: ProbeResult | None = None) -> ProbeResult:
        """Measure each batch size in ascending order after one warm-up step; stop at the first OOM."""
        result = result or ProbeResult()
        t0 = time.perf_counter()
        sizes = sorted(batches)
        try:
            self.train_step(sizes[0])  # warm-up: lazy buffers, kernels, optimizer state
        except RuntimeError as e:
            if not is_oom(e):
                raise
            result.oom.append(sizes[0])
            sizes = []
        result.warmup_seconds += time.perf_counter() - t0
        for b in sizes:
            s = time.perf_counter()
            try:
                result.train.append((b, self.train_step(b)))
                result.train_seconds[b], opt = self.last_seconds
                result.optimizer_seconds.append(opt)
                if val:
                    v = self._clock()
                    result.val.append((b * self.val_factor, self.val_step(b * self.val_factor)))
                    result.val_seconds[b * self.val_factor] = self._clock() - v
            except RuntimeError as e:
                if not is_oom(e):
                    raise
                result.oom.append(b)
                self.backend.empty_cache()
                break
            result.step_seconds[b] = time.perf_counter() - s
        result.seconds += time.perf_counter() - t0
        return result

    def verify(self, batch: int, val: bool = True) -> tuple[int, int | None] | None:
        """One real training step at ``batch`` and the validation forward at its size (`val_factor` x batch).

        Returns:
            ``(train_peak, val_peak)`` (``val_peak`` None when ``val`` is off), or None on out-of-memory.
        """
        try:
            peak = self.train_step(batch)
            return peak, (self.val_step(batch * self.val_factor) if val else None)
        except RuntimeError as e:
            if not is_oom(e):
                raise
            self.trainer.optimizer.zero_grad(set_to_none=True)  # type: ignore[attr-defined]  # Ultralytics types optimizer None
            self.backend.empty_cache()
            return None
