"""Tests for yolo_batch.tools.datasets: the deterministic synthetic detection dataset generator."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.conftest import needs_84
from yolo_batch.tools.datasets import CLASS_NAMES, count_images, make_dataset

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


@pytest.mark.parametrize(
    ("aspect", "shape"), [pytest.param(1.6, (60, 96, 3), id="wide"), pytest.param(0.5, (96, 48, 3), id="tall")]
)
def test_aspect_gives_non_square_images_with_true_labels(tmp_path, aspect, shape):
    cv2 = pytest.importorskip("cv2")
    square = make_dataset(tmp_path / "square", n_train=3, n_val=1, imgsz=96, objects=(2, 30))
    shaped = make_dataset(tmp_path / "shaped", n_train=3, n_val=1, imgsz=96, objects=(2, 30), aspect=aspect)
    for p in (tmp_path / "shaped").glob("images/*/*.jpg"):
        assert cv2.imread(str(p)).shape == shape
    # the same drawing, resized: normalised labels are the square set's, and the counts vary (2..30 a image)
    assert _labels(tmp_path / "shaped") == _labels(tmp_path / "square")
    assert len({len(lines) for lines in _labels(tmp_path / "shaped")}) > 1
    assert '"aspect"' not in square.read_text() and f'"aspect": {aspect}' in shaped.read_text()
    assert make_dataset(tmp_path / "shaped", n_train=3, n_val=1, imgsz=96, objects=(2, 30), aspect=aspect) == shaped


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
        (
            {"dense": True, "dense_objects": 10**6},
            r"dense=true puts 1000000 objects .* holds 100; .*dense_objects=100 or",
        ),
        (
            {"dense": True},
            r"^dense=true puts 300 objects in every image, .* imgsz=64 holds 100; use imgsz=108 or more$",
        ),
        ({"seed": -1}, r"seed=-1 .*>= 0"),
        ({"aspect": 5}, r"^aspect=5 is invalid, expected a number \(width / height\) with 0.25 <= aspect <= 4$"),
        ({"aspect": 0.1}, r"aspect=0.1 .*0.25 <= aspect <= 4"),
        ({"aspect": "wide"}, r"aspect='wide' .*a number"),
        ({"aspect": True}, r"aspect=True .*a number"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_dataset(tmp_path, **{**SMALL, **kwargs})
    assert not (tmp_path / "data.yaml").exists()


# ---------------------------------------------------------------------------------------------------------
# The other tasks: segment, pose, obb, classify.

TASK_SMALL = {"n_train": 6, "n_val": 3, "imgsz": 64, "objects": (2, 4)}


def _values(root: Path, split: str = "train") -> list[list[list[float]]]:
    """Every label line of a split as floats, one list of lines per file."""
    return [[[float(v) for v in line.split()] for line in lines] for lines in _labels(root, split)]


@pytest.mark.parametrize(
    ("task", "columns"),
    [
        pytest.param("detect", lambda n: n == 5, id="detect-xywh"),
        pytest.param("segment", lambda n: n >= 7 and n % 2 == 1, id="segment-polygon"),
        pytest.param("pose", lambda n: n == 5 + 4 * 3, id="pose-box-4-keypoints"),
        pytest.param("obb", lambda n: n == 9, id="obb-4-corners"),
        pytest.param("semantic", lambda n: n >= 7 and n % 2 == 1, id="semantic-polygon"),
    ],
)
def test_label_formats(tmp_path, task, columns):
    data = make_dataset(tmp_path, task=task, classes=3, **TASK_SMALL)
    files = _values(tmp_path)
    assert len(files) == 6 and all(2 <= len(lines) <= 4 for lines in files)
    for line in (x for lines in files for x in lines):
        assert columns(len(line)), line
        assert line[0] in (0, 1, 2)
        coords = [v for i, v in enumerate(line) if i and not (task == "pose" and i >= 7 and i % 3 == 1)]
        assert all(0 <= v <= 1 for v in coords), line
        if task == "pose":
            assert line[7::3] == [2.0] * 4  # every keypoint visible
    text = data.read_text()
    assert ("kpt_shape: [4, 3]" in text and "flip_idx: [0, 3, 2, 1]" in text) == (task == "pose")


def test_obb_corners_form_a_turned_square(tmp_path):
    make_dataset(tmp_path, task="obb", **TASK_SMALL)
    for line in (x for lines in _values(tmp_path) for x in lines):
        p = [(line[i], line[i + 1]) for i in range(1, 9, 2)]
        sides = [((p[i][0] - p[i - 1][0]) ** 2 + (p[i][1] - p[i - 1][1]) ** 2) ** 0.5 for i in range(4)]
        assert max(sides) - min(sides) < 1e-4  # 4 equal sides (the points are written to 6 decimals)


def test_classify_layout(tmp_path):
    root = make_dataset(tmp_path / "cls", task="classify", classes=3, **TASK_SMALL)
    assert root == (tmp_path / "cls").resolve() and not (root / "data.yaml").exists()
    for split, n in (("train", 6), ("val", 3)):
        folders = sorted(p.name for p in (root / split).iterdir())
        assert folders == sorted(CLASS_NAMES[:3])
        assert count_images(root, split) == n
        assert all(len(list((root / split / f).glob("*.jpg"))) == n // 3 for f in folders)  # the classes in turn
    with pytest.raises(KeyError, match="split 'test' not found"):
        count_images(root, "test")


def test_depth_maps(tmp_path):
    cv2 = pytest.importorskip("cv2")
    data = make_dataset(tmp_path, task="depth", **TASK_SMALL)
    assert "depth_scale: 1000" in data.read_text() and '  0: "depth"' in data.read_text()
    assert not (tmp_path / "labels").exists()
    for split, n in (("train", 6), ("val", 3)):
        maps = sorted((tmp_path / "depth" / split).glob("*.png"))
        assert [p.stem for p in maps] == [p.stem for p in sorted((tmp_path / "images" / split).glob("*.jpg"))]
        assert len(maps) == n
        for p in maps:
            d = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
            assert d.dtype.name == "uint16" and d.shape == (64, 64)
            assert d.min() >= 800 and d.max() == 5000  # millimetres: the shapes nearer than the background
            assert (d < 1800).any()  # at least two objects per image (objects=(2, 4)) stand out


@pytest.mark.parametrize("task", ["segment", "pose", "obb", "classify", "semantic", "depth"])
def test_tasks_deterministic_and_reused(tmp_path, task):
    a = make_dataset(tmp_path / "a", task=task, seed=3, **TASK_SMALL)
    make_dataset(tmp_path / "b", task=task, seed=3, **TASK_SMALL)
    files = {x for x in (tmp_path / "a").rglob("*") if x.suffix in {".jpg", ".txt", ".png"}}
    assert len(files) == (9 if task == "classify" else 18)
    digest = {str(p.relative_to(tmp_path / "a")): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(files)}
    other = {k: hashlib.sha256((tmp_path / "b" / k).read_bytes()).hexdigest() for k in digest}
    assert digest == other
    marker = sorted(files)[0]
    marker.write_bytes(b"sentinel")  # a finished dataset with the same arguments is reused untouched
    assert make_dataset(tmp_path / "a", task=task, seed=3, **TASK_SMALL) == a
    assert marker.read_bytes() == b"sentinel"
    make_dataset(tmp_path / "a", task=task, seed=4, **TASK_SMALL)  # other arguments regenerate it
    assert marker.read_bytes() != b"sentinel"


def test_task_of_a_folder_changes_with_the_task(tmp_path):
    make_dataset(tmp_path, task="segment", **TASK_SMALL)
    data = make_dataset(tmp_path, task="pose", **TASK_SMALL)  # same folder, other task: regenerated as pose
    assert "kpt_shape" in data.read_text()
    assert all(len(x) == 17 for lines in _values(tmp_path) for x in lines)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"task": "track"}, r"task='track' is invalid, expected one of detect, segment, pose, obb, classify, semantic"),
        ({"task": "classify", "classes": 4, "n_val": 3}, r"n_val=3 is invalid, expected >= classes=4 for classify"),
    ],
)
def test_bad_task_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_dataset(tmp_path, **{**SMALL, **kwargs})
    assert not any(tmp_path.iterdir())


# Ultralytics reads each task's files: the datasets its trainers build, item by item.


def _ultralytics_dataset(data: Path, task: str):  # as the task's trainer builds it
    from ultralytics.cfg import get_cfg
    from ultralytics.data import ClassificationDataset, build_yolo_dataset
    from ultralytics.data.utils import check_cls_dataset, check_det_dataset

    cfg = get_cfg(overrides={"task": task, "imgsz": 64, "cache": False})
    if task == "classify":
        info = check_cls_dataset(str(data))
        return info, ClassificationDataset(str(info["train"]), cfg, augment=True, names=info["names"])
    info = check_det_dataset(str(data))
    return info, build_yolo_dataset(cfg, info["train"], 4, info, mode="train")


@pytest.mark.parametrize(
    "task",
    ["detect", "segment", "pose", "obb", "classify", *(pytest.param(t, marks=needs_84) for t in ("semantic", "depth"))],
)
def test_ultralytics_loads_each_task(tmp_path, task):
    data = make_dataset(tmp_path / task, task=task, classes=3, **TASK_SMALL)
    info, dataset = _ultralytics_dataset(data, task)
    if task == "depth":
        assert info["nc"] == 1 and len(dataset) == 6
        item = dataset[0]
        assert tuple(item["img"].shape) == (3, 64, 64) and item["depth"].shape[-2:] == (64, 64)
        assert float(item["depth"].max()) <= 5.0  # metres (depth_scale 1000)
        return
    nc = 4 if task == "semantic" else 3  # semantic from polygons: Ultralytics adds a background class
    names = [n for n in info["names"].values() if n != "background"]
    assert info["nc"] == nc and sorted(names) == sorted(CLASS_NAMES[:3])  # classify: in folder order
    assert len(dataset) == 6
    item = dataset[0]
    assert tuple(item["img"].shape) == (3, 64, 64)
    if task == "classify":
        assert sorted({cls for _, cls, *_ in dataset.samples}) == [0, 1, 2]
        return
    counts = [len(lb["cls"]) for lb in dataset.labels]
    assert counts == [len(lines) for lines in _labels(tmp_path / task)]  # no label line was dropped
    if task == "segment":
        assert all(len(lb["segments"]) == len(lb["cls"]) for lb in dataset.labels)
        assert item["masks"].shape[-2:] == (16, 16)  # rasterised at imgsz / mask_ratio
    elif task == "pose":
        assert info["kpt_shape"] == [4, 3]
        assert all(lb["keypoints"].shape == (len(lb["cls"]), 4, 3) for lb in dataset.labels)
    elif task == "obb":
        assert item["bboxes"].shape[-1] == 5  # xywh + angle
    elif task == "semantic":
        mask = item["semantic_mask"]
        values = set(mask.unique().tolist())
        assert mask.shape[-2:] == (64, 64) and values <= {0, 1, 2, 3, 255}  # 3 background, 255 ignored (padding)
        assert values & {0, 1, 2}  # the shapes are in the mask
