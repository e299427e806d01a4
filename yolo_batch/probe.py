"""Real training steps through the trainer's own model, loss, optimizer, EMA and AMP, at a few batch sizes.

The probe borrows the trainer's model and puts everything back: weights and buffers, gradients, the AMP
scaler, the random-number generators, train/eval mode, and the trainer's optimizer and EMA slots.
"""

from __future__ import annotations

import math
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from yolo_batch.memory import is_oom

ITEMS = 16  # distinct training samples the probe loads


@dataclass
class ProbeResult:
    """Measured peaks: ``train`` and ``val`` are ``(batch, peak_bytes)``; ``oom`` the batches that ran out."""

    train: list[tuple[int, int]] = field(default_factory=list)
    val: list[tuple[int, int]] = field(default_factory=list)
    oom: list[int] = field(default_factory=list)
    seconds: float = 0.0
    step_seconds: dict[int, float] = field(default_factory=dict)
    warmup_seconds: float = 0.0  # the first step: lazy buffers, kernels, optimizer state, first CUDA use


class _Quiet:
    """Silence Ultralytics' logger while the probe builds its helpers (optimizer and dataset lines)."""

    def __enter__(self):
        from ultralytics.utils import LOGGER

        self.logger, self.level = LOGGER, LOGGER.level
        LOGGER.setLevel(40)

    def __exit__(self, *exc):
        self.logger.setLevel(self.level)


@contextmanager
def borrowed(trainer):
    """Lend the trainer's model to the probe, restoring every piece of state it may touch."""
    model = trainer.model
    saved = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    scaler = trainer.scaler.state_dict() if getattr(trainer, "scaler", None) is not None else None
    rng = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    slots = {k: getattr(trainer, k, None) for k in ("optimizer", "ema", "loss", "loss_items", "tloss")}
    multi_scale, mode = trainer.args.multi_scale, model.training
    try:
        yield
    finally:
        trainer.args.multi_scale = multi_scale
        for k, v in slots.items():
            setattr(trainer, k, v)
        model.load_state_dict(saved)
        model.zero_grad(set_to_none=True)
        model.train(mode)
        if scaler is not None:
            trainer.scaler.load_state_dict(scaler)
        random.setstate(rng[0])
        np.random.set_state(rng[1])
        torch.set_rng_state(rng[2])
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


class Prober:
    """Runs real steps on the densest images of the training set; use inside `borrowed`."""

    def __init__(self, trainer, backend) -> None:
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
                from yolo_batch.spec import AutoPlusError

                raise AutoPlusError(f"the training set {trainer.data['train']} has no images; check data={args.data}")
            counts = [len(lb["cls"]) for lb in self.dataset.labels]
            self.order = sorted(range(len(counts)), key=lambda i: -counts[i])  # densest first: the worst case
            self.max_labels = max(counts) if counts else 0
            iterations = math.ceil(len(self.dataset) / args.nbs) * args.epochs
            self.optimizer = trainer.build_optimizer(
                model=trainer.model,
                name=args.optimizer,
                lr=args.lr0,
                momentum=args.momentum,
                decay=args.weight_decay,
                iterations=iterations,
            )
        trainer.optimizer, trainer.ema = self.optimizer, ModelEMA(trainer.model)
        self._items: list = []

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
        batch = self.trainer.preprocess_batch(self.dataset.collate_fn(items))  # collate_fn edits batch_idx
        if batch["img"].shape[-1] != self.max_size:
            batch["img"] = torch.nn.functional.interpolate(
                batch["img"], size=(self.max_size, self.max_size), mode="bilinear", align_corners=False
            )
        return batch

    def _autocast(self):
        from ultralytics.utils.torch_utils import autocast

        t = self.trainer
        return autocast(torch.bfloat16 if t.args.amp == "bf16" else t.amp, device=t.device.type)

    def train_step(self, n: int) -> int:
        """One real training step (forward, loss, backward, optimizer step, EMA update); return its peak."""
        t = self.trainer
        self.backend.reset_peak()
        batch = self._batch(n)
        t.model.train()
        with self._autocast():
            loss, _ = t.model(batch)
            loss = loss.sum()
        t.scaler.scale(loss).backward()
        t.optimizer_step()
        del loss, batch
        return self.backend.peak_bytes()

    def val_step(self, n: int) -> int:
        """The validation forward on the EMA model (half precision on CUDA with AMP, as the validator runs it)."""
        t = self.trainer
        ema = t.ema.ema
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
                if val:
                    result.val.append((b * 2, self.val_step(b * 2)))
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
        """One real training step at ``batch`` (and the validation forward at 2x).

        Returns:
            ``(train_peak, val_peak)`` (``val_peak`` None when ``val`` is off), or None on out-of-memory.
        """
        try:
            peak = self.train_step(batch)
            return peak, (self.val_step(batch * 2) if val else None)
        except RuntimeError as e:
            if not is_oom(e):
                raise
            self.trainer.optimizer.zero_grad(set_to_none=True)
            self.backend.empty_cache()
            return None
