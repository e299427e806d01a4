"""Minimal real Ultralytics datasets for every task, and tiny real runs on them (for the records' readers).

Each dataset is a few 32-px images of one filled rectangle on noise, labelled in the task's own format
(boxes, polygons, keypoints, rotated corners, class folders). Good for a few real training steps, not for
learning: the readers under test only need the columns and values real runs write.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

MODELS = {
    "detect": "yolo11n.yaml",
    "segment": "yolo11n-seg.yaml",
    "pose": "yolo11n-pose.yaml",
    "obb": "yolo11n-obb.yaml",
    "classify": "yolo11n-cls.yaml",
    "semantic": "yolo26n-sem.yaml",
    "depth": "yolo26n-depth.yaml",
}
IMGSZ = 32


def _image(rng: np.random.Generator, path: Path, box: tuple[int, int, int, int], cls: int) -> None:
    import cv2

    img = rng.integers(60, 120, size=(IMGSZ, IMGSZ, 3), dtype=np.uint8)
    x0, y0, x1, y1 = box
    img[y0:y1, x0:x1] = (40, 40, 230) if cls == 0 else (40, 200, 40)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)


def make_task_data(root: Path, task: str, n_train: int = 8, n_val: int = 4, seed: int = 0) -> Path:
    """Write a two-class dataset for ``task``; return what ``data=`` takes (a data.yaml, or the folder for classify)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            cls = i % 2
            w, h = (int(v) for v in rng.integers(8, 20, size=2))
            x0, y0 = int(rng.integers(0, IMGSZ - w)), int(rng.integers(0, IMGSZ - h))
            box = (x0, y0, x0 + w, y0 + h)
            if task == "classify":
                _image(rng, root / split / f"c{cls}" / f"{i}.png", box, cls)
                continue
            _image(rng, root / "images" / split / f"{i}.png", box, cls)
            cx, cy, bw, bh = (x0 + w / 2) / IMGSZ, (y0 + h / 2) / IMGSZ, w / IMGSZ, h / IMGSZ
            corners = [x0, y0, x0 + w, y0, x0 + w, y0 + h, x0, y0 + h]
            norm = [c / IMGSZ for c in corners]
            if task == "detect":
                fields = [cx, cy, bw, bh]
            elif task == "depth":
                import cv2

                depth = np.full((IMGSZ, IMGSZ), 3000, np.uint16)  # millimetres: 3 m of wall, the box at 1 m
                depth[y0 : y0 + h, x0 : x0 + w] = 1000
                (root / "depth" / split).mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(root / "depth" / split / f"{i}.png"), depth)
                continue
            elif task in {"segment", "obb", "semantic"}:
                fields = norm
            elif task == "pose":
                fields = [cx, cy, bw, bh] + [v for k in range(4) for v in (norm[2 * k], norm[2 * k + 1], 2)]
            else:
                raise ValueError(f"no test data for task {task!r}")
            label = root / "labels" / split / f"{i}.txt"
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text(f"{cls} " + " ".join(f"{v:.6f}" for v in fields) + "\n")
    if task == "classify":
        return root
    names = "names:\n  0: depth\ndepth_scale: 1000\n" if task == "depth" else "names:\n  0: a\n  1: b\n"
    extra = "kpt_shape: [4, 3]\nflip_idx: [1, 0, 3, 2]\n" if task == "pose" else ""
    data = root / "data.yaml"
    data.write_text(f"path: {root}\ntrain: images/train\nval: images/val\n{names}{extra}")
    return data


def train_task(root: Path, task: str, epochs: int = 2, **kw) -> Path:
    """A real tiny run of ``task`` at batch 4 with the effect log on (``YOLO_BATCH_OBSERVE=1``); its run folder."""
    from ultralytics import YOLO

    data = make_task_data(root / "data", task)
    args = {"imgsz": IMGSZ, "epochs": epochs, "batch": 4, "amp": False, "plots": False, "workers": 0, "seed": 0}
    args.update(kw)
    old = os.environ.get("YOLO_BATCH_OBSERVE")
    os.environ["YOLO_BATCH_OBSERVE"] = "1"
    try:
        YOLO(MODELS[task], task=task).train(
            data=str(data), project=str(root), name="run", exist_ok=True, verbose=False, **args
        )
    finally:
        if old is None:
            os.environ.pop("YOLO_BATCH_OBSERVE")
        else:
            os.environ["YOLO_BATCH_OBSERVE"] = old
    return root / "run"


TASKS_84 = ("semantic", "depth")  # Ultralytics 8.4 (YOLO26) only
_RUNS: dict[str, Path] = {}


def all_task_runs(tmp_path_factory) -> dict[str, Path]:
    """One real two-epoch run per task Ultralytics trains here, made once per test session: task -> run folder."""
    import ultralytics

    if not _RUNS:
        root = tmp_path_factory.mktemp("task-runs")
        for task in MODELS:
            if task in TASKS_84 and not ultralytics.__version__.startswith("8.4."):
                continue
            _RUNS[task] = train_task(root / task, task)
    return _RUNS
