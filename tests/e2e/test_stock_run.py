"""The project's own environment leaves a stock ``yolo train`` stock: exit 0 with Ultralytics' default settings.

A fresh settings file turns MLflow, DVC, Comet and ClearML on, and each acts in every run once its package is
installed: DVCLive ended every run outside a git repository with a traceback (exit 1), Comet printed an API-key
error. ``[dev]`` (the project's ``.venv``) holds none of them; their tests get them from ``.loggers`` (conftest).
"""

from __future__ import annotations

import pytest

from tests.conftest import yolo_train

pytestmark = pytest.mark.slow


def test_a_stock_run_in_the_projects_venv_ends_with_exit_0(tiny_data, tmp_path):
    cwd = tmp_path / "work"  # under the temporary folder: outside any git or DVC repository
    cwd.mkdir()
    fresh = tmp_path / "settings"  # Ultralytics writes its defaults here on first use, as for a new user
    env = {"YOLO_CONFIG_DIR": str(fresh), "PYTEST_CURRENT_TEST": None}  # Ultralytics' integrations stay on
    r = yolo_train(tiny_data, cwd, "8", env=env, plots=True)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert "Traceback" not in out and "API key" not in out, out[-3000:]
    assert (fresh / "Ultralytics" / "settings.json").is_file()  # the defaults were in force
    assert sorted(p.name for p in cwd.iterdir()) == ["run"]  # no mlflow.db, dvclive/, wandb/ ... beside the run
