"""Install one Ultralytics release into a folder of its own (``.compat/VERSION``), ahead of the environment's.

``make compat`` runs it for each release in ``tests/compat/releases.txt``. As for ``.loggers``
(``tests/loggers_target.py``), pip first resolves ``ultralytics==VERSION`` against this environment without
installing anything; then exactly the packages it would add or change go into the folder, without their
dependencies: the release itself and what it needs that the environment lacks (8.3 needs pandas, scipy, tqdm...),
nothing else. For the environment's own release the folder stays empty and the environment's copy runs.
A folder that already holds the release is left as it is.

Usage: ``python tests/compat/target.py VERSION FOLDER``
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path


def main(version: str, folder: str) -> int:
    """Resolve ``ultralytics==version`` against this environment, install what it lacks into ``folder``."""
    done = Path(folder) / ".installed"
    if done.is_file() and done.read_text(encoding="utf-8") == version:
        return 0
    pip = [sys.executable, "-m", "pip", "install", "--quiet"]
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        rc = subprocess.call([*pip, "--dry-run", "--report", str(report), f"ultralytics=={version}"])
        if rc:
            return rc
        items = json.loads(report.read_text(encoding="utf-8"))["install"]
    pins = [f"{i['metadata']['name']}=={i['metadata']['version']}" for i in items]
    Path(folder).mkdir(parents=True, exist_ok=True)
    print(
        f"compat target: Ultralytics {version}: {' '.join(pins) or 'the environment has it'} into {folder}", flush=True
    )
    rc = subprocess.call([*pip, "--no-deps", "--upgrade", "--target", folder, *pins]) if pins else 0
    if rc == 0:
        done.write_text(version, encoding="utf-8")
    return rc


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python tests/compat/target.py VERSION FOLDER")
    sys.exit(main(sys.argv[1], sys.argv[2]))
