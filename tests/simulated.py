"""A simulated GPU: a named test double for the memory backend, with a memory law and an out-of-memory ceiling.

Real training steps run on the CPU; a global forward pre-hook sees each forward of the detection model,
records the images it carries (training or validation), and raises a CUDA-style out-of-memory error above
the ceiling. The backend reports peaks from the laws, as a GPU's allocator would. Product code never
pretends the CPU is a GPU: tests swap ``yolo_batch.device.memory.backend_for`` for this double.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from yolo_batch.core.policy import GIB, Law
from yolo_batch.device.memory import Headroom


@dataclass
class SimulatedGPU:
    """``total_gib`` of memory; peak = ``train`` law (training forward) or ``val`` law (no-grad forward)."""

    total_gib: float
    train: Law
    val: Law
    ceiling: int | None = None  # images per forward above which the "device" runs out of memory
    val_ceiling: int | None = None  # the same, for no-grad (validation) forwards only
    oom_at: set[int] = field(default_factory=set)  # extra: batch sizes that fail whatever the ceiling
    kind: str = "cuda"
    allocated_share: float = 0.9  # allocated / reserved peak
    seen: list[tuple[int, bool]] = field(default_factory=list)
    _peak: float = 0.0
    _handle: object = None

    def install(self) -> SimulatedGPU:
        from ultralytics.nn.tasks import DetectionModel

        def hook(module, args):
            if not isinstance(module, DetectionModel) or not args:
                return
            x = args[0]
            images = x["img"].shape[0] if isinstance(x, dict) else x.shape[0]
            training = torch.is_grad_enabled() and module.training
            self.seen.append((images, training))
            limit = (
                self.ceiling if training or self.val_ceiling is None else min(self.val_ceiling, self.ceiling or images)
            )
            if (limit is not None and images > limit) or images in self.oom_at:
                raise torch.cuda.OutOfMemoryError(
                    f"CUDA out of memory (simulated device): tried a forward of {images} images"
                )
            self._peak = max(self._peak, (self.train if training else self.val).at(images))

        self._handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
        return self

    def remove(self) -> None:
        if self._handle is not None:
            self._handle.remove()

    def headroom(self) -> Headroom:
        total = int(self.total_gib * GIB)
        held = int(self.train.fixed_bytes)
        return Headroom("cuda:0", total, total - held, held, 0, "simulated device")

    def reset_peak(self) -> None:
        self._peak = self.train.fixed_bytes

    def peak_bytes(self) -> int:
        return int(self._peak)

    def allocated_peak_bytes(self) -> int:
        """The tensors' peak: a fixed share of the reserved one (``allocated_share``), as a CUDA allocator reports."""
        return int(self._peak * self.allocated_share)

    def current_bytes(self) -> int:
        return int(self.train.fixed_bytes)

    def empty_cache(self) -> None:
        pass
