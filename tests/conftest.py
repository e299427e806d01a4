"""Shared set-up: offline Ultralytics with its settings in a temporary folder, and a tiny synthetic set."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# Before anything imports Ultralytics: never touch the user's settings, never download.
_CONFIG_DIR = tempfile.mkdtemp(prefix="yolo-batch-tests-")
os.environ["YOLO_CONFIG_DIR"] = _CONFIG_DIR
os.environ["YOLO_OFFLINE"] = "1"
# `make test` runs the suite on pytest-xdist workers, one per core: each worker's torch gets its share of the 2 cores.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
os.environ.setdefault("OMP_NUM_THREADS", str(max(1, 2 // _WORKERS)))
os.environ.pop("YOLO_BATCH_CONFIG", None)
os.environ.pop("YOLO_BATCH_DISABLE", None)

import pytest  # noqa: E402
from ultralytics.utils import SETTINGS  # noqa: E402  (reads the temporary settings folder above)

# Ultralytics' logger integrations off, as on a machine without their packages (they are in [dev]; importing
# mlflow alone costs seconds in every training subprocess). tests/e2e/test_loggers.py turns each on in its own.
SETTINGS.update(dict.fromkeys(("clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard", "wandb"), False))

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
YOLO = str(BIN / "yolo")
# The [loggers] extra, outside the environment's path (`make install` builds it: tests/loggers_target.py). Only the
# logger tests put it on their path (`loggers_on_path`): installed, DVCLive, Comet, ClearML and MLflow act in every
# stock `yolo train`, so the project's .venv does not hold them.
LOGGERS = Path(os.environ.get("YOLO_BATCH_TEST_LOGGERS") or ROOT / ".loggers")
LOGGER_PACKAGES = ("mlflow", "wandb", "dvclive", "comet_ml", "clearml", "tensorboard")


@pytest.fixture()
def loggers_on_path(monkeypatch) -> Path | None:
    """Put ``LOGGERS`` on this test's path and its subprocesses' (``PYTHONPATH``); fail if the packages are nowhere.

    Returns:
        (Path | None): The folder, or None when the environment holds the packages itself (an older .venv).
    """
    import importlib.util

    if not LOGGERS.is_dir():
        missing = [p for p in LOGGER_PACKAGES if importlib.util.find_spec(p) is None]
        if missing:
            pytest.fail(f"the logger packages ({', '.join(missing)}) are in {LOGGERS}, which `make install` builds")
        return None
    monkeypatch.syspath_prepend(str(LOGGERS))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(LOGGERS), os.environ.get("PYTHONPATH")])))
    return LOGGERS


# The longest tests (minutes each on 2 cores), scheduled first so that no worker starts one at the end of the run.
LONGEST = (
    "tests/test_cli.py::test_demo_trains_to_a_useful_map",
    "tests/test_notebook.py::test_notebook_runs",
    "tests/e2e/test_sweep_ray.py",
)


def pytest_collection_modifyitems(config, items):
    """Put ``LONGEST`` first; every other test keeps its place (the sort is stable)."""
    items.sort(key=lambda item: next((i for i, p in enumerate(LONGEST) if item.nodeid.startswith(p)), len(LONGEST)))


def pytest_sessionfinish(session, exitstatus):
    """Leave no temporary settings folder behind."""
    shutil.rmtree(_CONFIG_DIR, ignore_errors=True)


@pytest.fixture(autouse=True)
def _fresh_law_cache():
    """Every test starts with an empty law cache (it lives in the session's settings folder, shared by all tests)."""
    from ultralytics.utils import USER_CONFIG_DIR

    shutil.rmtree(Path(USER_CONFIG_DIR) / "yolo_batch_laws", ignore_errors=True)


def ultralytics_84() -> bool:
    """True on Ultralytics 8.4 (YOLO26 models, the in-epoch OOM handler that auto-plus extends)."""
    import ultralytics

    return ultralytics.__version__.startswith("8.4.")


needs_84 = pytest.mark.skipif(not ultralytics_84(), reason="needs Ultralytics 8.4 (YOLO26, in-epoch OOM handling)")


# Training arguments that keep an end-to-end run to seconds on CPU.
FAST = {"imgsz": 64, "epochs": 1, "amp": False, "plots": False, "workers": 0, "val": True, "seed": 0}


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """32 training and 8 validation images at 64 px: data.yaml path."""
    from yolo_batch.tools.datasets import make_dataset

    return make_dataset(tmp_path_factory.mktemp("tiny"), n_train=32, n_val=8, imgsz=64, seed=1)


@pytest.fixture(scope="module")
def data64(tmp_path_factory) -> Path:
    """64 training and 8 validation images at 64 px, made once per module (the simulated-card tests): data.yaml."""
    from yolo_batch.tools.datasets import make_dataset

    return make_dataset(tmp_path_factory.mktemp("d64"), n_train=64, n_val=8, imgsz=64, seed=2)


# The tiny model of each task that auto-plus serves (every task Ultralytics trains).
TASK_MODELS = {
    "detect": "yolo11n.yaml",
    "segment": "yolo11n-seg.yaml",
    "pose": "yolo11n-pose.yaml",
    "obb": "yolo11n-obb.yaml",
    "classify": "yolo11n-cls.yaml",
    "semantic": "yolo26n-sem.yaml",  # Ultralytics 8.4 only, as depth
    "depth": "yolo26n-depth.yaml",
}
TASKS_84 = ("semantic", "depth")


@pytest.fixture(scope="session")
def task_data(tmp_path_factory):
    """``task_data(task)``: that task's tiny synthetic set (16 training, 4 validation images at 64 px), made once.

    What to pass as ``data=``: a data.yaml, or for classify the dataset folder.
    """
    from yolo_batch.tools.datasets import make_dataset

    made: dict[str, Path] = {}

    def get(task: str) -> Path:
        if task not in made:
            root = tmp_path_factory.mktemp(f"tiny-{task}")
            made[task] = make_dataset(root, task=task, n_train=16, n_val=4, imgsz=64, seed=1)
        return made[task]

    return get


def run_yolo(*args: str, cwd: Path, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run the stock ``yolo`` command of this environment, as a user would (``env`` value None: unset it)."""
    full_env = {k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None}
    return subprocess.run(
        [YOLO, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout, check=False
    )


def train_in_process(model, data: Path, tmp_path: Path, **kw):
    """``model.train(...)`` with ``FAST`` settings into ``tmp_path/run``; ``kw`` overrides (batch, epochs...)."""
    return model.train(data=str(data), project=str(tmp_path), name="run", exist_ok=True, **{**FAST, **kw})


def yolo_train(data: Path, tmp_path: Path, batch: str = "auto-plus", *extra: str, env: dict | None = None, **fast):
    """``yolo train model=yolo11n.yaml data=... batch=...`` with ``FAST`` settings into ``tmp_path/run``."""
    args = ["train", "model=yolo11n.yaml", f"data={data}", f"batch={batch}", *fast_args(**fast), *extra]
    return run_yolo(*args, f"project={tmp_path}", "name=run", cwd=tmp_path, env=env)


def fast_args(**over) -> list[str]:
    """``FAST`` as ``key=value`` words, with overrides."""
    return [f"{k}={v}" for k, v in {**FAST, **over}.items()]


def running(pid: int) -> bool:
    """A process that runs (not gone, not a zombie waiting to be reaped), from Linux's /proc."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False
