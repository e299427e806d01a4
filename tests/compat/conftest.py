"""`make compat` only: ``test_release.py`` runs with ``YOLO_BATCH_COMPAT=VERSION`` and that release on the path."""

from __future__ import annotations

import os

collect_ignore = [] if os.environ.get("YOLO_BATCH_COMPAT") else ["test_release.py"]
