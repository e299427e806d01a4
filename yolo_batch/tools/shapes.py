"""Drawing the synthetic shapes: a textured background, one shape per class, their outlines and boxes.

`yolo_batch.tools.datasets` writes them out in the layout of each Ultralytics task.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

CLASS_NAMES = ("square", "circle", "triangle", "cross", "diamond", "ring", "star", "hexagon")
COLORS = (
    (40, 40, 230),
    (40, 200, 40),
    (230, 90, 30),
    (20, 220, 240),
    (200, 40, 200),
    (230, 220, 40),
    (20, 140, 255),
    (245, 245, 245),
)  # BGR, one per class


def background(rng: np.random.Generator, imgsz: int) -> np.ndarray:
    """Return a muted, low-saturation textured background of shape (imgsz, imgsz, 3), uint8."""
    coarse = rng.uniform(60, 170, size=(6, 6, 1)).astype(np.float32)
    base = cv2.resize(coarse, (imgsz, imgsz), interpolation=cv2.INTER_CUBIC)[..., None]
    tint = rng.uniform(-12, 12, size=(1, 1, 3)).astype(np.float32)
    noise = rng.normal(0, 14, size=(imgsz, imgsz, 3)).astype(np.float32)
    return np.clip(base + tint + noise, 0, 255).astype(np.uint8)


def draw(img: np.ndarray, cls: int, box: tuple[int, int, int, int], color: tuple[int, ...]) -> tuple[int, ...]:
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
    p = np.round(outline(cls, box)).astype(np.int32)
    cv2.fillPoly(img, [p], color)
    return int(p[:, 0].min()), int(p[:, 1].min()), int(p[:, 0].max()), int(p[:, 1].max())


def outline(cls: int, box: tuple[float, float, float, float]) -> np.ndarray:
    """The outline of shape ``cls`` filling pixel box (x0, y0, x1, y1): an (n, 2) float array of x, y points.

    Examples:
        >>> outline(0, (0, 0, 10, 20)).tolist()
        [[0.0, 0.0], [10.0, 0.0], [10.0, 20.0], [0.0, 20.0]]
    """
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    name = CLASS_NAMES[cls]
    if name == "square":
        pts = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    elif name in {"circle", "ring"}:
        pts = [(cx + w / 2 * math.cos(k * math.pi / 12), cy + h / 2 * math.sin(k * math.pi / 12)) for k in range(24)]
    elif name == "cross":
        a, b = w / 6, h / 6  # half the bar widths (a third of the box)
        pts = [
            (cx - a, y0), (cx + a, y0), (cx + a, cy - b), (x1, cy - b), (x1, cy + b), (cx + a, cy + b),
            (cx + a, y1), (cx - a, y1), (cx - a, cy + b), (x0, cy + b), (x0, cy - b), (cx - a, cy - b),
        ]  # fmt: skip
    elif name == "triangle":
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
    return np.array(pts, dtype=np.float64)


def draw_rotated(
    img: np.ndarray, cls: int, box: tuple[int, int, int, int], color: tuple[int, ...], angle: float
) -> np.ndarray:
    """Draw shape ``cls`` turned by ``angle`` radians inside pixel box ``box``; return its oriented box's 4 corners.

    The shape fills a square of side min(w, h) / sqrt(2) centred in the box, so that at any angle it stays inside.
    """
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    r = min(x1 - x0, y1 - y0) / 2 / math.sqrt(2)
    inner = (cx - r, cy - r, cx + r, cy + r)
    c, s = math.cos(angle), math.sin(angle)

    def turn(p: np.ndarray) -> np.ndarray:
        d = p - (cx, cy)
        return np.stack([cx + d[:, 0] * c - d[:, 1] * s, cy + d[:, 0] * s + d[:, 1] * c], axis=1)

    shape = np.round(turn(outline(cls, inner))).astype(np.int32)
    if CLASS_NAMES[cls] == "ring":
        cv2.polylines(img, [shape], True, color, max(2, round(r / 2.5)))
    else:
        cv2.fillPoly(img, [shape], color)
    return turn(outline(0, inner))  # the square's corners: the oriented box


def boxes(rng: np.random.Generator, imgsz: int, n: int, size: tuple[float, float], dense: bool) -> list:
    """Return ``n`` pixel boxes (x0, y0, x1, y1): non-overlapping where possible, on a jittered grid if ``dense``."""
    out = []
    if dense:
        g = math.ceil(math.sqrt(n))
        cell = imgsz / g
        for c in sorted(rng.choice(g * g, size=n, replace=False).tolist()):
            side = max(int(cell * rng.uniform(0.5, 0.9)), 3)
            x0 = int(c % g * cell + rng.uniform(0, cell - side))
            y0 = int(c // g * cell + rng.uniform(0, cell - side))
            out.append((x0, y0, min(x0 + side, imgsz - 1), min(y0 + side, imgsz - 1)))
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
