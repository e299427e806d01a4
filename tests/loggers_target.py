"""Install the ``[loggers]`` extra into a folder of its own (``.loggers``), outside the environment's path.

``make install`` runs it. DVCLive, Comet, ClearML and MLflow act in every ``yolo train`` once installed (a fresh
Ultralytics settings file turns them on), so the project's ``.venv`` does not hold them: only the logger tests
put this folder on their path (``tests/conftest.py``'s ``LOGGERS``). pip first resolves the extra against this
environment without installing anything; then exactly the packages it would add or change go into the folder,
without their dependencies (the environment has the rest), so nothing in the folder shadows a package of the
environment with another version unless the loggers need that version.

Usage: ``python tests/loggers_target.py FOLDER``
"""

from __future__ import annotations

import configparser
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def requirements() -> list[str]:
    """The ``[loggers]`` extra of ``setup.cfg``, one requirement each."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg", encoding="utf-8")
    return [r.strip() for r in cfg["options.extras_require"]["loggers"].splitlines() if r.strip()]


def main(folder: str) -> int:
    """Resolve against this environment, then install what it lacks into ``folder``; pip's exit status."""
    pip = [sys.executable, "-m", "pip", "install", "--quiet"]
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        rc = subprocess.call([*pip, "--dry-run", "--report", str(report), *requirements()])
        if rc:
            return rc
        items = json.loads(report.read_text(encoding="utf-8"))["install"]
    pins = [f"{i['metadata']['name']}=={i['metadata']['version']}" for i in items]
    Path(folder).mkdir(parents=True, exist_ok=True)  # also when nothing is lacking: make touches a file in it
    print(f"loggers_target: {len(pins)} packages into {folder}", flush=True)
    return subprocess.call([*pip, "--no-deps", "--target", folder, *pins]) if pins else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
