"""What does the gradient-noise estimate cost? Its tap work against a real training step, side by side.

For yolo11n (built from YAML) it times, in one process:
  - a real training step (forward, loss, backward, optimizer step) at the given batch and imgsz;
  - the tap's work per step in both modes: with accumulation (read the first micro-batch's gradient norm,
    then the accumulated one) and without (two norms, a dot product and a gradient copy).
Target (issue 3): at most 5 % of step time.

    python benchmarks/noise_overhead.py [batch=16] [imgsz=320] [steps=5] [device=cpu]
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("YOLO_OFFLINE", "1")

import torch  # noqa: E402

from yolo_batch.record.effect import GradientNoise, GradientTap  # noqa: E402
from yolo_batch.tools.cmdline import parse_pairs  # noqa: E402


def main(argv: list[str]) -> None:
    from ultralytics import YOLO
    from ultralytics.utils.loss import v8DetectionLoss  # noqa: F401  (the model's criterion)

    opts = parse_pairs(argv, {"batch": int, "imgsz": int, "steps": int, "device": str}, "noise_overhead.py")
    batch, imgsz, steps, device = (
        opts.get("batch", 16),
        opts.get("imgsz", 320),
        opts.get("steps", 5),
        opts.get("device", "cpu"),
    )
    model = YOLO("yolo11n.yaml").model.to(device).train()
    model.args = __import__("ultralytics").cfg.get_cfg()
    for p in model.parameters():
        p.requires_grad_(True)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    data = {
        "img": torch.rand(batch, 3, imgsz, imgsz, generator=g).to(device),
        "batch_idx": torch.arange(batch).repeat_interleave(3).float().to(device),
        "cls": torch.randint(0, 80, (batch * 3, 1), generator=g).float().to(device),
        "bboxes": (torch.rand(batch * 3, 4, generator=g) * 0.4 + 0.3).to(device),
    }

    def step():
        loss, _ = model(data)
        loss.sum().backward()

    def sync():
        if device != "cpu":
            torch.cuda.synchronize()

    step()
    opt.step()
    opt.zero_grad()
    t = time.perf_counter()
    for _ in range(steps):
        step()
        opt.step()
        opt.zero_grad()
    sync()
    step_s = (time.perf_counter() - t) / steps

    step()  # gradients in place for the tap timings
    tap_acc = GradientTap(model.parameters(), GradientNoise())
    tap_one = GradientTap(model.parameters(), GradientNoise())
    tap_one.before_step(batch, 1.0)  # keeps the previous gradient, as in training
    reps = 20
    t = time.perf_counter()
    for _ in range(reps):
        tap_acc.after_backward(False, batch, 1.0)  # the first micro-batch's norm
        tap_acc.before_step(batch, 1.0)  # the accumulated norm and the update
        tap_acc.after_backward(True, batch, 1.0)
    sync()
    acc_s = (time.perf_counter() - t) / reps
    t = time.perf_counter()
    for _ in range(reps):
        tap_one.before_step(batch, 1.0)
    sync()
    one_s = (time.perf_counter() - t) / reps
    print(f"yolo11n, batch {batch}, imgsz {imgsz}, {device}, torch threads {torch.get_num_threads()}")
    print("what                                   | seconds | share of a step")
    print(f"training step (fwd+loss+bwd+optimizer) | {step_s:.4f} | 100%")
    print(f"tap, with accumulation (per step)      | {acc_s:.4f} | {acc_s / step_s * 100:.2f}%")
    print(f"tap, consecutive steps (per step)      | {one_s:.4f} | {one_s / step_s * 100:.2f}%")


if __name__ == "__main__":
    main(sys.argv[1:])
