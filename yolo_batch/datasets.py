"""Deterministic synthetic object-detection datasets in Ultralytics YOLO layout.

The generated images show brightly coloured, visually distinct shapes (one shape and colour per class) on a muted,
noisy background, so that even a tiny model trained from scratch learns them within a few epochs. The same
arguments always produce byte-identical images and labels.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import cv2
import numpy as np

__all__ = ["CLASS_NAMES", "count_images", "make_dataset"]

CLASS_NAMES = ("square", "circle", "triangle", "cross", "diamond", "ring", "star", "hexagon")
_COLORS = (
    (40, 40, 230),
    (40, 200, 40),
    (230, 90, 30),
    (20, 220, 240),
    (200, 40, 200),
    (230, 220, 40),
    (20, 140, 255),
    (245, 245, 245),
)  # BGR, one per class
_VERSION = 1  # bump when the drawing changes, so that old datasets are regenerated instead of reused
_PARAMS_KEY = "yolo_batch_params"


def _check(name: str, value, ok: bool, valid: str) -> None:
    """Raise a one-line ValueError naming the argument, the bad value and the valid range unless ``ok``."""
    if not ok:
        raise ValueError(f"{name}={value!r} is invalid, expected {valid}")


def _pair(value, kind: type) -> bool:
    """Return True if ``value`` is a 2-sequence of ints (``kind=int``) or real numbers (``kind=float``)."""
    types = (int, np.integer) if kind is int else (int, float, np.integer, np.floating)
    return (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, types) and not isinstance(v, bool) for v in value)
    )


def _background(rng: np.random.Generator, imgsz: int) -> np.ndarray:
    """Return a muted, low-saturation textured background of shape (imgsz, imgsz, 3), uint8."""
    coarse = rng.uniform(60, 170, size=(6, 6, 1)).astype(np.float32)
    base = cv2.resize(coarse, (imgsz, imgsz), interpolation=cv2.INTER_CUBIC)[..., None]
    tint = rng.uniform(-12, 12, size=(1, 1, 3)).astype(np.float32)
    noise = rng.normal(0, 14, size=(imgsz, imgsz, 3)).astype(np.float32)
    return np.clip(base + tint + noise, 0, 255).astype(np.uint8)


def _draw(img: np.ndarray, cls: int, box: tuple[int, int, int, int], color: tuple[int, ...]) -> tuple[int, ...]:
    """Draw shape ``cls`` filling pixel box (x0, y0, x1, y1) inclusive; return the drawn extent (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    name = CLASS_NAMES[cls]
    if name == "square":
        cv2.rectangle(img, (x0, y0), (x1, y1), color, -1)
        return box
    if name in {"circle", "ring"}:
        center, axes = (round(cx), round(cy)), (max(w // 2, 1), max(h // 2, 1))
        thick = -1 if name == "circle" else max(2, min(w, h) // 5)
        # A thick outline grows outwards by thick/2, so shrink the axes to stay inside the box.
        if thick > 0:
            axes = (max(axes[0] - thick // 2, 1), max(axes[1] - thick // 2, 1))
        cv2.ellipse(img, center, axes, 0, 0, 360, color, thick)
        return box
    if name == "cross":
        t = max(w // 3, 1), max(h // 3, 1)
        cv2.rectangle(img, (x0, round(cy - t[1] / 2)), (x1, round(cy + t[1] / 2)), color, -1)
        cv2.rectangle(img, (round(cx - t[0] / 2), y0), (round(cx + t[0] / 2), y1), color, -1)
        return box
    if name == "triangle":
        pts = [(x0, y1), (x1, y1), (cx, y0)]
    elif name == "diamond":
        pts = [(cx, y0), (x1, cy), (cx, y1), (x0, cy)]
    elif name == "star":
        pts = [
            (
                cx + (w / 2 if k % 2 == 0 else w / 5) * math.sin(k * math.pi / 5),
                cy - (h / 2 if k % 2 == 0 else h / 5) * math.cos(k * math.pi / 5),
            )
            for k in range(10)
        ]
    else:  # hexagon
        pts = [(cx + w / 2 * math.cos(k * math.pi / 3), cy + h / 2 * math.sin(k * math.pi / 3)) for k in range(6)]
    p = np.round(np.array(pts, dtype=np.float64)).astype(np.int32)
    cv2.fillPoly(img, [p], color)
    return int(p[:, 0].min()), int(p[:, 1].min()), int(p[:, 0].max()), int(p[:, 1].max())


def _boxes(rng: np.random.Generator, imgsz: int, n: int, size: tuple[float, float], dense: bool) -> list:
    """Return ``n`` pixel boxes (x0, y0, x1, y1): non-overlapping where possible, on a jittered grid if ``dense``."""
    out = []
    if dense:
        g = math.ceil(math.sqrt(n))
        cell = imgsz / g
        for c in sorted(rng.choice(g * g, size=n, replace=False).tolist()):
            s = max(int(cell * rng.uniform(0.5, 0.9)), 3)
            x0 = int(c % g * cell + rng.uniform(0, cell - s))
            y0 = int(c // g * cell + rng.uniform(0, cell - s))
            out.append((x0, y0, min(x0 + s, imgsz - 1), min(y0 + s, imgsz - 1)))
        return out
    for _ in range(n):
        for _try in range(50):  # rejection sampling; accept an overlapping box after 50 misses
            s = rng.uniform(*size) * imgsz
            w, h = max(int(s * rng.uniform(0.85, 1.15)), 4), max(int(s * rng.uniform(0.85, 1.15)), 4)
            x0, y0 = int(rng.integers(0, imgsz - w)), int(rng.integers(0, imgsz - h))
            b = (x0, y0, x0 + w, y0 + h)
            if all(b[2] + 2 < o[0] or o[2] + 2 < b[0] or b[3] + 2 < o[1] or o[3] + 2 < b[1] for o in out):
                break
        out.append(b)
    return out


def _yaml_params(path: Path) -> dict | None:
    """Return the generator parameters recorded in a data.yaml written by :func:`make_dataset`, else None."""
    try:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith(f"{_PARAMS_KEY}:"):
                return json.loads(line.split(":", 1)[1])
    except (OSError, ValueError):
        pass
    return None


def make_dataset(
    root: str | os.PathLike,
    *,
    n_train: int = 192,
    n_val: int = 48,
    imgsz: int = 320,
    classes: int = 3,
    objects: tuple[int, int] = (1, 4),
    size: tuple[float, float] = (0.08, 0.25),
    dense: bool = False,
    dense_objects: int = 300,
    seed: int = 0,
) -> Path:
    """Write a deterministic synthetic detection dataset under ``root`` and return its data.yaml path.

    Layout: ``root/images/{train,val}/*.jpg``, ``root/labels/{train,val}/*.txt`` (one ``cls x y w h`` line per
    object, normalised xywh) and ``root/data.yaml`` (absolute ``path``, ``train``, ``val``, ``names`` dict). data.yaml
    is written last and atomically, and records the arguments: if it already exists with the same arguments the
    dataset is reused as is; otherwise the image and label folders of ``root`` are deleted and regenerated, so
    ``root`` should be a folder dedicated to this dataset.

    Args:
        root: Output folder, created if missing.
        n_train: Number of training images, >= 1.
        n_val: Number of validation images, >= 1.
        imgsz: Side of the square images in pixels, 32..4096.
        classes: Number of classes, 1..8 (names taken from ``CLASS_NAMES``).
        objects: Inclusive (min, max) number of objects per image, 0 <= min <= max <= 64, max >= 1.
        size: Inclusive (min, max) object side as a fraction of ``imgsz``, 0 < min <= max <= 0.5.
        dense: If True, put exactly ``dense_objects`` small objects on a jittered grid in every image instead.
        dense_objects: Objects per image in dense mode, 1..(imgsz // 6) ** 2 (only checked if ``dense``).
        seed: Non-negative random seed; equal arguments give byte-identical files.

    Returns:
        (Path): Absolute path of the written (or reused) data.yaml.

    Raises:
        ValueError: If an argument is out of range.

    Examples:
        >>> import tempfile
        >>> data = make_dataset(Path(tempfile.mkdtemp()) / "shapes", n_train=16, n_val=4, imgsz=160)
        >>> data.name
        'data.yaml'
    """
    ints = {"n_train": n_train, "n_val": n_val, "imgsz": imgsz, "classes": classes, "dense_objects": dense_objects}
    for k, v in ints.items():
        _check(k, v, isinstance(v, (int, np.integer)) and not isinstance(v, bool), "an int")
    _check("n_train", n_train, n_train >= 1, ">= 1")
    _check("n_val", n_val, n_val >= 1, ">= 1")
    _check("imgsz", imgsz, 32 <= imgsz <= 4096, "32 <= imgsz <= 4096")
    _check("classes", classes, 1 <= classes <= len(CLASS_NAMES), f"1 <= classes <= {len(CLASS_NAMES)}")
    _check(
        "objects",
        objects,
        _pair(objects, int) and 0 <= objects[0] <= objects[1] <= 64 and objects[1] >= 1,
        "(min, max) ints with 0 <= min <= max <= 64 and max >= 1",
    )
    _check("size", size, _pair(size, float) and 0 < size[0] <= size[1] <= 0.5, "(min, max) with 0 < min <= max <= 0.5")
    hi = (imgsz // 6) ** 2 if dense else 10**9  # dense objects sit on a grid of cells >= 6 px
    _check("dense_objects", dense_objects, 1 <= dense_objects <= hi, f"1..{hi}" if dense else ">= 1")
    _check("seed", seed, isinstance(seed, (int, np.integer)) and seed >= 0, "an int >= 0")

    root = Path(root).expanduser().resolve()
    yaml_path = root / "data.yaml"
    params = {
        "version": _VERSION,
        "n_train": int(n_train),
        "n_val": int(n_val),
        "imgsz": int(imgsz),
        "classes": int(classes),
        "objects": [int(v) for v in objects],
        "size": [float(v) for v in size],
        "dense": bool(dense),
        "dense_objects": int(dense_objects),
        "seed": int(seed),
    }
    if yaml_path.is_file() and _yaml_params(yaml_path) == params:
        return yaml_path
    yaml_path.unlink(missing_ok=True)  # from here on the folder is not a finished dataset
    for split, n in (("train", n_train), ("val", n_val)):
        img_dir, lbl_dir = root / "images" / split, root / "labels" / split
        for d in (img_dir, lbl_dir):
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True)
        (root / "labels" / f"{split}.cache").unlink(missing_ok=True)  # stale Ultralytics label cache
        for i in range(n):
            rng = np.random.default_rng([int(seed), 0 if split == "train" else 1, i])
            img = _background(rng, imgsz)
            k = dense_objects if dense else int(rng.integers(objects[0], objects[1] + 1))
            lines = []
            for box in _boxes(rng, imgsz, k, size, dense):
                c = int(rng.integers(classes))
                color = tuple(int(np.clip(v + rng.integers(-20, 21), 0, 255)) for v in _COLORS[c])
                x0, y0, x1, y1 = _draw(img, c, box, color)
                x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1 + 1, imgsz), min(y1 + 1, imgsz)
                xc, yc, w, h = (x0 + x1) / 2 / imgsz, (y0 + y1) / 2 / imgsz, (x1 - x0) / imgsz, (y1 - y0) / imgsz
                lines.append(f"{c} {xc:.6f} {yc:.6f} {w:.6f} {h:.6f}\n")
            cv2.imwrite(str(img_dir / f"{i:06d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
            (lbl_dir / f"{i:06d}.txt").write_text("".join(lines), encoding="utf-8")

    names = "\n".join(f"  {i}: {json.dumps(CLASS_NAMES[i])}" for i in range(classes))
    text = (
        f"# Synthetic shapes dataset written by yolo_batch.datasets.make_dataset\npath: {json.dumps(str(root))}\n"
        f"train: images/train\nval: images/val\nnames:\n{names}\n{_PARAMS_KEY}: {json.dumps(params)}\n"
    )
    tmp = yaml_path.with_name(f".data.yaml.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, yaml_path)
    return yaml_path


def count_images(data_yaml: str | os.PathLike, split: str = "train") -> int:
    """Count the images of one split of a dataset written by :func:`make_dataset`.

    Args:
        data_yaml: Path of the data.yaml returned by :func:`make_dataset`.
        split: Split key in data.yaml, e.g. "train" or "val".

    Returns:
        (int): Number of image files in that split's folder.

    Raises:
        FileNotFoundError: If data_yaml does not exist.
        KeyError: If data.yaml has no such split.

    Examples:
        >>> import tempfile
        >>> count_images(make_dataset(Path(tempfile.mkdtemp()) / "shapes", n_train=16, n_val=4, imgsz=160))
        16
    """
    data_yaml = Path(data_yaml)
    values = {}
    for line in data_yaml.read_text(encoding="utf-8").splitlines():
        key, sep, value = line.partition(":")
        if sep and key and not key[0].isspace() and not key.startswith("#"):
            value = value.strip()
            values[key.strip()] = json.loads(value) if value.startswith('"') else value
    if split not in values:
        raise KeyError(f"split {split!r} not found in {data_yaml}")
    folder = Path(values.get("path") or data_yaml.parent) / values[split]
    suffixes = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
    return sum(1 for p in folder.iterdir() if p.suffix.lower() in suffixes)
