"""Tests for yolo_batch.datasets: the deterministic synthetic detection dataset generator."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from yolo_batch.datasets import CLASS_NAMES, count_images, make_dataset

SMALL = {"n_train": 6, "n_val": 3, "imgsz": 64}


def _digest(root: Path) -> dict[str, str]:
    """Return {relative path: sha256} for every image and label file under root."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix in {".jpg", ".txt"}
    }


def _labels(root: Path, split: str = "train") -> list[list[str]]:
    """Return the label lines of every label file of a split, one list per file."""
    return [p.read_text().splitlines() for p in sorted((root / "labels" / split).glob("*.txt"))]


def test_layout_and_yaml(tmp_path):
    data = make_dataset(tmp_path / "ds", classes=4, **SMALL)
    root = (tmp_path / "ds").resolve()
    assert data == root / "data.yaml" and data.is_absolute()
    for split, n in (("train", 6), ("val", 3)):
        images = sorted((root / "images" / split).glob("*.jpg"))
        labels = sorted((root / "labels" / split).glob("*.txt"))
        assert len(images) == len(labels) == n
        assert [p.stem for p in images] == [p.stem for p in labels]
        assert count_images(data, split) == n
    text = data.read_text()
    assert f'path: "{root}"' in text and "train: images/train" in text and "val: images/val" in text
    for i in range(4):
        assert f'  {i}: "{CLASS_NAMES[i]}"' in text
    assert f'  4: "{CLASS_NAMES[4]}"' not in text
    yaml = pytest.importorskip("yaml")
    cfg = yaml.safe_load(text)
    assert cfg["names"] == {i: CLASS_NAMES[i] for i in range(4)}
    assert cfg["path"] == str(root)


def test_images_have_requested_size(tmp_path):
    cv2 = pytest.importorskip("cv2")
    make_dataset(tmp_path, n_train=2, n_val=1, imgsz=96)
    for p in tmp_path.glob("images/*/*.jpg"):
        assert cv2.imread(str(p)).shape == (96, 96, 3)


def test_deterministic(tmp_path):
    make_dataset(tmp_path / "a", seed=3, **SMALL)
    make_dataset(tmp_path / "b", seed=3, **SMALL)
    make_dataset(tmp_path / "c", seed=4, **SMALL)
    a, b, c = (_digest(tmp_path / x) for x in "abc")
    assert len(a) == 2 * (6 + 3)
    assert a == b
    assert a != c


def test_labels_valid(tmp_path):
    make_dataset(tmp_path, n_train=20, n_val=4, imgsz=64, classes=5, objects=(2, 5))
    counts = []
    for split in ("train", "val"):
        for lines in _labels(tmp_path, split):
            counts.append(len(lines))
            for line in lines:
                c, x, y, w, h = line.split()
                x, y, w, h = map(float, (x, y, w, h))
                assert 0 <= int(c) < 5
                assert 0 < w <= 1 and 0 < h <= 1
                assert -1e-6 <= x - w / 2 and x + w / 2 <= 1 + 1e-6
                assert -1e-6 <= y - h / 2 and y + h / 2 <= 1 + 1e-6
    assert min(counts) >= 2 and max(counts) <= 5


def test_dense_object_counts(tmp_path):
    make_dataset(tmp_path, n_train=2, n_val=1, imgsz=128, dense=True, dense_objects=120)
    for split in ("train", "val"):
        for lines in _labels(tmp_path, split):
            assert len(lines) == 120
            assert all(0 < float(v) <= 1 for line in lines for v in line.split()[1:])


def test_reuse_and_regenerate(tmp_path):
    data = make_dataset(tmp_path, **SMALL)
    marker = tmp_path / "images" / "train" / "000000.jpg"
    mtime = marker.stat().st_mtime_ns
    marker.write_bytes(b"sentinel")  # a reused dataset is returned untouched
    assert make_dataset(tmp_path, **SMALL) == data
    assert marker.read_bytes() == b"sentinel"
    data2 = make_dataset(tmp_path, **{**SMALL, "n_train": 4})  # other parameters regenerate the dataset
    assert data2 == data
    assert marker.read_bytes() != b"sentinel" and marker.stat().st_mtime_ns >= mtime
    assert count_images(data2) == 4
    assert not (tmp_path / "images" / "train" / "000005.jpg").exists()


def test_unfinished_dataset_is_regenerated(tmp_path):
    data = make_dataset(tmp_path, **SMALL)
    digest = _digest(tmp_path)
    data.unlink()  # simulate a run interrupted before data.yaml was written
    (tmp_path / "labels" / "train" / "000000.txt").write_text("garbage\n")
    assert make_dataset(tmp_path, **SMALL) == data
    assert _digest(tmp_path) == digest


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_train": 0}, r"n_train=0 .*>= 1"),
        ({"n_val": 0}, r"n_val=0 .*>= 1"),
        ({"imgsz": 16}, r"imgsz=16 .*32"),
        ({"imgsz": 64.0}, r"imgsz=64.0 .*int"),
        ({"classes": 0}, r"classes=0 .*1 <= classes <= 8"),
        ({"classes": 9}, r"classes=9 .*1 <= classes <= 8"),
        ({"objects": (3, 2)}, r"objects=\(3, 2\) .*min <= max"),
        ({"objects": (-1, 2)}, r"objects=\(-1, 2\)"),
        ({"objects": (0, 0)}, r"objects=\(0, 0\) .*max >= 1"),
        ({"objects": 3}, r"objects=3 "),
        ({"size": (0.3, 0.1)}, r"size=\(0.3, 0.1\)"),
        ({"dense": True, "dense_objects": 10**6}, r"dense_objects=1000000 .*1\.\.100"),
        ({"seed": -1}, r"seed=-1 .*>= 0"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_dataset(tmp_path, **{**SMALL, **kwargs})
    assert not (tmp_path / "data.yaml").exists()
