"""Deterministic synthetic datasets in the Ultralytics layout of every task it trains (`TASKS`).

The generated images show brightly coloured, visually distinct shapes (one shape and colour per class) on a muted,
noisy background (`yolo_batch.tools.shapes`), so that even a tiny model trained from scratch learns them within a few
epochs. The same arguments always produce byte-identical images and labels.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from yolo_batch.record.effect import atomic_write
from yolo_batch.tools.shapes import CLASS_NAMES, COLORS, background, boxes, draw, draw_rotated, outline

__all__ = ["CLASS_NAMES", "TASKS", "count_images", "make_dataset"]

TASKS = ("detect", "segment", "pose", "obb", "classify", "semantic", "depth")
KPT_SHAPE = (4, 3)  # pose: the shape's top, right, bottom and left points, each (x, y, visible)
FLIP_IDX = (0, 3, 2, 1)  # pose: a left-right flip swaps the right and left points
DENSE_OBJECTS = 300  # objects per image with dense=True (make-data takes no other number)
_VERSION = 1  # bump when the drawing changes, so that old datasets are regenerated instead of reused
_PARAMS_KEY = "yolo_batch_params"
_CLS_PARAMS = "dataset.json"  # classify: the folder dataset's record of its arguments (no data.yaml there)
_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def _check(name: str, value: object, ok: bool, valid: str) -> None:
    """Raise a one-line ValueError naming the argument, the bad value and the valid range unless ``ok``."""
    if not ok:
        raise ValueError(f"{name}={value!r} is invalid, expected {valid}")


def _pair(value: object, kind: type) -> bool:
    """Return True if ``value`` is a 2-sequence of ints (``kind=int``) or real numbers (``kind=float``)."""
    types = (int, np.integer) if kind is int else (int, float, np.integer, np.floating)
    return (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, types) and not isinstance(v, bool) for v in value)
    )


def _recorded(root: Path, task: str) -> dict | None:
    """Return the generator parameters that a finished dataset under ``root`` records, else None."""
    try:
        if task == "classify":
            return json.loads((root / _CLS_PARAMS).read_text(encoding="utf-8"))
        for line in (root / "data.yaml").read_text(encoding="utf-8").splitlines():
            if line.startswith(f"{_PARAMS_KEY}:"):
                return json.loads(line.split(":", 1)[1])
    except (OSError, ValueError):
        pass
    return None


def _norm(points: np.ndarray, imgsz: int) -> list[str]:
    """Pixel points (n, 2) as normalised coordinates clipped to the image: [x0, y0, x1, y1, ...] as text."""
    return [f"{v:.6f}" for v in np.clip(np.asarray(points) / imgsz, 0, 1).reshape(-1)]


def _objects(task: str, img: np.ndarray, rng: np.random.Generator, k: int, p: dict, depth: Any = None) -> list[str]:
    """Draw ``k`` objects on ``img`` (and, for depth, on the ``depth`` map); return one label line per object."""
    imgsz, lines = p["imgsz"], []
    for box in boxes(rng, imgsz, k, tuple(p["size"]), p["dense"]):
        c = int(rng.integers(p["classes"]))
        color = tuple(int(np.clip(v + rng.integers(-20, 21), 0, 255)) for v in COLORS[c])
        if task == "obb":  # the 4 corners of the turned box
            corners = draw_rotated(img, c, box, color, float(rng.uniform(0, math.pi)))
            lines.append(" ".join([str(c), *_norm(corners, imgsz)]) + "\n")
            continue
        x0, y0, x1, y1 = draw(img, c, box, color)
        if task == "depth":  # the shape stands nearer than the background, at one depth
            cv2.fillPoly(depth, [np.round(outline(c, box)).astype(np.int32)], int(rng.integers(800, 1800)))
            continue
        if task in {"segment", "semantic"}:  # the outline as a polygon
            lines.append(" ".join([str(c), *_norm(outline(c, box), imgsz)]) + "\n")
            continue
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1 + 1, imgsz), min(y1 + 1, imgsz)
        xc, yc, w, h = (x0 + x1) / 2 / imgsz, (y0 + y1) / 2 / imgsz, (x1 - x0) / imgsz, (y1 - y0) / imgsz
        line = f"{c} {xc:.6f} {yc:.6f} {w:.6f} {h:.6f}"
        if task == "pose":  # the box, then the outline's top, right, bottom and left points, all visible
            pts = outline(c, box)
            xy = _norm(pts[[pts[:, 1].argmin(), pts[:, 0].argmax(), pts[:, 1].argmax(), pts[:, 0].argmin()]], imgsz)
            line += "".join(f" {xy[2 * j]} {xy[2 * j + 1]} 2" for j in range(KPT_SHAPE[0]))
        lines.append(line + "\n")
    return lines


def _reshape(img: np.ndarray, aspect: float) -> np.ndarray:
    """The square ``img`` resized to ``aspect`` (width / height), its long side kept; labels are normalised."""
    side = img.shape[0]
    if aspect == 1:
        return img
    size = (side, max(round(side / aspect), 1)) if aspect > 1 else (max(round(side * aspect), 1), side)
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA if img.dtype == np.uint8 else cv2.INTER_NEAREST)


def _split(root: Path, task: str, split: str, n: int, p: dict) -> None:
    """Write one split: ``images/``+``labels/`` folders (depth: ``depth/``), or (classify) one folder per class."""
    seed, imgsz, classes = p["seed"], p["imgsz"], p["classes"]
    if task == "classify":
        folder = root / split
        shutil.rmtree(folder, ignore_errors=True)
        for c in range(classes):
            (folder / CLASS_NAMES[c]).mkdir(parents=True)
    else:
        img_dir, lbl_dir = root / "images" / split, root / ("depth" if task == "depth" else "labels") / split
        for d in (img_dir, lbl_dir):
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True)
        (root / "labels" / f"{split}.cache").unlink(missing_ok=True)  # stale Ultralytics label cache
    for i in range(n):
        rng = np.random.default_rng([int(seed), 0 if split == "train" else 1, i])
        img = background(rng, imgsz)
        if task == "classify":  # one large shape, the classes in turn
            c = i % classes
            color = tuple(int(np.clip(v + rng.integers(-20, 21), 0, 255)) for v in COLORS[c])
            draw(img, c, boxes(rng, imgsz, 1, (0.3, 0.5), False)[0], color)
            img = _reshape(img, p.get("aspect", 1.0))
            cv2.imwrite(str(folder / CLASS_NAMES[c] / f"{i:06d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
            continue
        k = p["dense_objects"] if p["dense"] else int(rng.integers(p["objects"][0], p["objects"][1] + 1))
        depth = np.repeat(np.linspace(5000, 2000, imgsz, dtype=np.float64)[:, None], imgsz, 1).astype(np.uint16)
        lines = _objects(task, img, rng, k, p, depth)
        img, depth = _reshape(img, p.get("aspect", 1.0)), _reshape(depth, p.get("aspect", 1.0))
        cv2.imwrite(str(img_dir / f"{i:06d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        if task == "depth":
            cv2.imwrite(str(lbl_dir / f"{i:06d}.png"), depth)  # uint16 millimetres: depth_scale 1000
        else:
            (lbl_dir / f"{i:06d}.txt").write_text("".join(lines), encoding="utf-8")


def make_dataset(
    root: str | os.PathLike,
    *,
    task: str = "detect",
    n_train: int = 192,
    n_val: int = 48,
    imgsz: int = 320,
    classes: int = 3,
    objects: tuple[int, int] = (1, 4),
    size: tuple[float, float] = (0.08, 0.25),
    dense: bool = False,
    dense_objects: int = DENSE_OBJECTS,
    aspect: float = 1.0,
    seed: int = 0,
) -> Path:
    """Write a deterministic synthetic dataset for ``task`` under ``root``; return what to pass as ``data=``.

    Layouts, as Ultralytics reads them:

    - ``detect``, ``segment``, ``pose``, ``obb``, ``semantic``: ``root/images/{train,val}/*.jpg``,
      ``root/labels/{train,val}/*.txt`` and ``root/data.yaml`` (absolute ``path``, ``train``, ``val``, ``names``
      dict; pose adds ``kpt_shape: [4, 3]`` and ``flip_idx``). One label line per object: detect ``cls x y w h``
      (normalised xywh); segment ``cls x1 y1 x2 y2 ...`` (the shape's outline); pose the box then 4 keypoints
      ``x y 2`` (the shape's top, right, bottom and left points); obb ``cls x1 y1 ... x4 y4`` (the corners of
      the turned box); semantic as segment (Ultralytics rasterises the polygons into one class mask and adds a
      background class). Returns the data.yaml.
    - ``depth``: ``root/images/{split}/*.jpg`` and ``root/depth/{split}/*.png`` (uint16 millimetres, the shapes
      nearer than a sloping background), data.yaml with ``names: {0: depth}`` and ``depth_scale: 1000``.
      Returns the data.yaml.
    - ``classify``: ``root/{train,val}/<class name>/*.jpg``, one large shape per image, the classes in turn.
      Returns ``root``.

    The record of the arguments (data.yaml, or ``root/dataset.json`` for classify) is written last and atomically:
    if it already holds the same arguments the dataset is reused as is; otherwise the dataset's folders under
    ``root`` are deleted and regenerated, so ``root`` should be a folder dedicated to this dataset.

    Args:
        root: Output folder, created if missing.
        task: One of ``TASKS``: detect, segment, pose, obb, classify, semantic, depth.
        n_train: Number of training images, >= 1 (classify: >= classes, so that every class has an image).
        n_val: Number of validation images, >= 1 (classify: >= classes).
        imgsz: Side of the square images in pixels (the long side if ``aspect`` is not 1), 32..4096.
        classes: Number of classes, 1..8 (names taken from ``CLASS_NAMES``).
        objects: Inclusive (min, max) number of objects per image, 0 <= min <= max <= 64, max >= 1.
        size: Inclusive (min, max) object side as a fraction of ``imgsz``, 0 < min <= max <= 0.5.
        dense: If True, put exactly ``dense_objects`` small objects on a jittered grid in every image instead.
        dense_objects: Objects per image in dense mode, 1..(imgsz // 6) ** 2 (only checked if ``dense``).
        aspect: Width / height of the images, 0.25..4; ``imgsz`` is the long side. Not 1: each image is drawn
            square and then resized to its shape, so the shapes are stretched and the normalised labels stay true.
        seed: Non-negative random seed; equal arguments give byte-identical files.

    Returns:
        (Path): Absolute path of the written (or reused) data.yaml; for classify, of the dataset folder.

    Raises:
        ValueError: If an argument is out of range.

    Examples:
        >>> import tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> data = make_dataset(Path(tmp.name) / "shapes", n_train=16, n_val=4, imgsz=160)
        >>> data.name
        'data.yaml'
        >>> folder = make_dataset(Path(tmp.name) / "cls", task="classify", n_train=6, n_val=3, imgsz=64)
        >>> sorted(p.name for p in (folder / "train").iterdir())
        ['circle', 'square', 'triangle']
        >>> tmp.cleanup()
    """
    _check("task", task, task in TASKS, f"one of {', '.join(TASKS)}")
    ints = {"n_train": n_train, "n_val": n_val, "imgsz": imgsz, "classes": classes, "dense_objects": dense_objects}
    for k, v in ints.items():
        _check(k, v, isinstance(v, (int, np.integer)) and not isinstance(v, bool), "an int")
    _check("n_train", n_train, n_train >= 1, ">= 1")
    _check("n_val", n_val, n_val >= 1, ">= 1")
    _check("imgsz", imgsz, 32 <= imgsz <= 4096, "32 <= imgsz <= 4096")
    _check("classes", classes, 1 <= classes <= len(CLASS_NAMES), f"1 <= classes <= {len(CLASS_NAMES)}")
    if task == "classify":
        _check("n_train", n_train, n_train >= classes, f">= classes={classes} for classify (one image per class)")
        _check("n_val", n_val, n_val >= classes, f">= classes={classes} for classify (one image per class)")
    _check(
        "objects",
        objects,
        _pair(objects, int) and 0 <= objects[0] <= objects[1] <= 64 and objects[1] >= 1,
        "(min, max) ints with 0 <= min <= max <= 64 and max >= 1",
    )
    _check("size", size, _pair(size, float) and 0 < size[0] <= size[1] <= 0.5, "(min, max) with 0 < min <= max <= 0.5")
    hi = (imgsz // 6) ** 2 if dense else 10**9  # dense objects sit on a grid of cells >= 6 px
    _check("dense_objects", dense_objects, dense_objects >= 1, ">= 1")
    if dense and dense_objects > hi:
        need = 6 * math.ceil(math.sqrt(dense_objects))
        raise ValueError(
            f"dense=true puts {dense_objects} objects in every image, on a grid of 6 px cells, and imgsz={imgsz} holds "
            f"{hi}; use imgsz={need} or more"
            + ("" if dense_objects == DENSE_OBJECTS else f", or dense_objects={hi} or fewer")
        )
    _check("seed", seed, isinstance(seed, (int, np.integer)) and seed >= 0, "an int >= 0")
    real = isinstance(aspect, (int, float, np.integer, np.floating)) and not isinstance(aspect, bool)
    _check("aspect", aspect, real and 0.25 <= aspect <= 4, "a number (width / height) with 0.25 <= aspect <= 4")

    root = Path(root).expanduser().resolve()
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
    if aspect != 1:  # square datasets keep the record (and so the reuse) they had before aspect existed
        params["aspect"] = float(aspect)
    if task != "detect":  # detection datasets keep the record (and so the reuse) they had before tasks existed
        params["task"] = task
    record = root / (_CLS_PARAMS if task == "classify" else "data.yaml")
    if _recorded(root, task) == params:
        return root if task == "classify" else record
    for name in ("data.yaml", _CLS_PARAMS):  # from here on the folder is not a finished dataset
        (root / name).unlink(missing_ok=True)
    for split, n in (("train", n_train), ("val", n_val)):
        _split(root, task, split, n, params)
    if task == "classify":
        atomic_write(record, json.dumps(params) + "\n")
        return root
    names = "\n".join(f"  {i}: {json.dumps(CLASS_NAMES[i])}" for i in range(classes))
    extra = f"kpt_shape: {list(KPT_SHAPE)}\nflip_idx: {list(FLIP_IDX)}\n" if task == "pose" else ""
    if task == "depth":
        names, extra = '  0: "depth"', "depth_scale: 1000\n"
    atomic_write(
        record,
        f"# Synthetic shapes dataset written by yolo_batch.tools.datasets.make_dataset\npath: {json.dumps(str(root))}\n"
        f"train: images/train\nval: images/val\nnames:\n{names}\n{extra}{_PARAMS_KEY}: {json.dumps(params)}\n",
    )
    return record


def count_images(data: str | os.PathLike, split: str = "train") -> int:
    """Count the images of one split of a dataset written by :func:`make_dataset`.

    Args:
        data: What :func:`make_dataset` returned: a data.yaml, or a classification dataset's folder.
        split: Split key in data.yaml (or split folder), e.g. "train" or "val".

    Returns:
        (int): Number of image files in that split's folder (for classify, in all its class folders).

    Raises:
        FileNotFoundError: If data does not exist.
        KeyError: If data.yaml (or the folder) has no such split.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     count_images(make_dataset(Path(tmp) / "shapes", n_train=16, n_val=4, imgsz=160))
        16
    """
    data = Path(data)
    if data.is_dir():
        if not (data / split).is_dir():
            raise KeyError(f"split {split!r} not found in {data}")
        return sum(1 for p in (data / split).glob("*/*") if p.suffix.lower() in _SUFFIXES)
    values = {}
    for line in data.read_text(encoding="utf-8").splitlines():
        key, sep, value = line.partition(":")
        if sep and key and not key[0].isspace() and not key.startswith("#"):
            value = value.strip()
            values[key.strip()] = json.loads(value) if value.startswith('"') else value
    if split not in values:
        raise KeyError(f"split {split!r} not found in {data}")
    folder = Path(values.get("path") or data.parent) / values[split]
    return sum(1 for p in folder.iterdir() if p.suffix.lower() in _SUFFIXES)
