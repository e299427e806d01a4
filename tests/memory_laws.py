"""Memory laws of real YOLO training steps, fitted to AutoBatch logs that users posted in GitHub issues.

Each ``*_SERIES`` is a table that Ultralytics' AutoBatch printed (``Params  GFLOPs  GPU_mem (GB) ...``), one row per
batch size 1, 2, 4, 8, 16, copied from the issue cited next to it. In the Ultralytics / YOLOv5 versions that printed
these tables, ``GPU_mem (GB)`` is ``torch.cuda.memory_reserved() / 1E9`` after a forward and backward pass, so the
values are decimal gigabytes (1e9 bytes), not GiB.

Each law is the least-squares line ``fixed + per_image * batch`` through all five points of its series (numpy.polyfit,
degree 1), rounded to whole megabytes (1e6 bytes). The simulated devices are sized in GiB (2**30 bytes), as GPU
memory is, so the two units meet in every budget; the hand arithmetic in tests/test_policy.py works in GB.

The validation law is the one exception: no public log measures the validation forward, so ``VAL_HEAVY`` is a
hypothetical law, chosen so that validating at twice the batch costs more than training at the batch.
"""

from __future__ import annotations

from yolo_batch.core.policy import GIB, Law

GB = 1e9  # the unit of the GPU_mem (GB) column
MB = 1e6
BATCHES = (1, 2, 4, 8, 16)

DEVICES_GIB = (4, 8, 16, 24, 40, 80)


def series(*gb: float) -> list[tuple[int, float]]:
    """``(batch, peak bytes)`` points from a GPU_mem (GB) column measured at batch 1, 2, 4, 8, 16."""
    assert len(gb) == len(BATCHES)
    return [(b, g * GB) for b, g in zip(BATCHES, gb)]


# YOLOv8s (VisDrone, 10 classes: 11,139,470 params), imgsz=640, Tesla T4 (14.75 GiB).
# https://github.com/ultralytics/ultralytics/issues/4679
YOLOV8S_640_T4_SERIES = series(0.654, 0.757, 1.223, 2.208, 4.154)
YOLOV8S_640 = Law(fixed_bytes=324 * MB, per_image_bytes=238 * MB)  # fit: 323.7 MB + 238.0 MB/image

# YOLOv8l-seg (45,954,552 params), imgsz=640, A100-SXM4-80GB.
# https://github.com/ultralytics/ultralytics/issues/1659
YOLOV8L_SEG_640_A100_SERIES = series(1.726, 2.991, 5.352, 10.127, 19.623)
YOLOV8L_SEG_640 = Law(fixed_bytes=580 * MB, per_image_bytes=1191 * MB)  # fit: 579.5 MB + 1191.0 MB/image

# YOLOv5s (7,235,389 params), imgsz=640, A100-SXM4-40GB: the table in the pull request that added AutoBatch.
# https://github.com/ultralytics/yolov5/pull/5092
YOLOV5S_640_A100_SERIES = series(0.296, 0.568, 1.007, 1.797, 3.280)
YOLOV5S_640 = Law(fixed_bytes=171 * MB, per_image_bytes=196 * MB)  # fit: 171.3 MB + 196.5 MB/image

# YOLOv8n (3,011,043 params), imgsz=480, RTX 4090 (23.99 GiB).
# https://github.com/ultralytics/ultralytics/issues/1451
YOLOV8N_480_RTX4090_SERIES = series(0.285, 0.445, 0.470, 0.719, 1.197)
YOLOV8N_480 = Law(fixed_bytes=263 * MB, per_image_bytes=58 * MB)  # fit: 263.2 MB + 58.1 MB/image

# YOLOv5m (20,883,441 params), imgsz=416, RTX 3070 (7.79 GiB), comment by alexk-ede.
# https://github.com/ultralytics/yolov5/issues/9287
YOLOV5M_416_RTX3070_SERIES = series(0.371, 0.482, 0.778, 1.277, 2.374)
YOLOV5M_416 = Law(fixed_bytes=227 * MB, per_image_bytes=134 * MB)  # fit: 227.3 MB + 133.7 MB/image

# A broken measurement: YOLOv5m, imgsz=416, GTX 1080, with 2.53 GiB already reserved by an earlier run, so the
# reserved memory barely moves ("AutoBatch: WARNING: CUDA anomaly detected"), comment by Denizzje.
# https://github.com/ultralytics/yolov5/issues/9287
YOLOV5M_416_GTX1080_ANOMALY_SERIES = series(2.816, 2.852, 2.842, 2.772, 2.741)

# Hypothetical (see the module docstring): the validation forward, which runs at 2x the training batch, at
# 150 MB/image, i.e. 300 MB per training image > YOLOV8S_640's 238 MB, so validation is the binding constraint.
VAL_HEAVY = Law(fixed_bytes=324 * MB, per_image_bytes=150 * MB)

LAWS = {
    "yolov8s-640": YOLOV8S_640,
    "yolov8l-seg-640": YOLOV8L_SEG_640,
    "yolov5s-640": YOLOV5S_640,
    "yolov8n-480": YOLOV8N_480,
    "yolov5m-416": YOLOV5M_416,
}

SERIES = {
    "yolov8s-640": YOLOV8S_640_T4_SERIES,
    "yolov8l-seg-640": YOLOV8L_SEG_640_A100_SERIES,
    "yolov5s-640": YOLOV5S_640_A100_SERIES,
    "yolov8n-480": YOLOV8N_480_RTX4090_SERIES,
    "yolov5m-416": YOLOV5M_416_RTX3070_SERIES,
}


def budget(device_gib: float, utilization: float) -> float:
    """Bytes a run may use on an otherwise empty device of ``device_gib`` GiB at ``utilization``."""
    return device_gib * GIB * utilization


class Curve:
    """A measured, not quite linear, peak-memory curve: piecewise linear through ``points``, extended by its ends.

    Quacks like `Law` for the simulated device (``at``, ``fixed_bytes``).
    """

    def __init__(self, points: list[tuple[int, float]]) -> None:
        self.points = sorted(points)
        self.fixed_bytes = 0.0

    def at(self, images: float) -> float:
        pts = self.points
        i = (
            1
            if images <= pts[0][0]
            else len(pts) - 1
            if images >= pts[-1][0]
            else next(k for k in range(1, len(pts)) if images <= pts[k][0])
        )
        (x0, y0), (x1, y1) = pts[i - 1], pts[i]
        return y0 + (y1 - y0) * (images - x0) / (x1 - x0)


# yolo11s at 640, AMP, an H100 80GB (79.18 GiB), the busy 2048-image set of benchmarks/gpu.py, 2026-11-26: the
# probe's training steps at 2, 4, 8, then the verification steps at 200 and 224 (benchmarks/gpu.py, this repo).
YOLO11S_640_H100 = Curve([(2, 790626304), (4, 1692401664), (8, 3072327680), (200, 67660414976), (224, 75539415040)])
H100_GIB = 79.1787109375
