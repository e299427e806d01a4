"""Per-epoch records of what the batch did, written whole: ``batch_effect.csv`` is replaced atomically."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename, so readers never see half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, data: dict[str, Any]) -> None:
    """Atomically write ``data`` as indented JSON."""
    atomic_write(path, json.dumps(data, indent=2, default=float) + "\n")


class EffectLog:
    """Rows of ``batch_effect.csv``: one per epoch (numbered as results.csv), then ``final``.

    Columns appear in first-seen order; a value missing from a row is left empty. The whole file is
    rewritten atomically after each row, so a run killed at any moment leaves a readable CSV.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        """Log to ``path`` (created on the first row)."""
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = []
        self.columns: list[str] = []

    def add(self, row: dict[str, Any]) -> None:
        """Append (or, for an epoch already logged, replace) one row and rewrite the file."""
        for k in row:
            if k not in self.columns:
                self.columns.append(k)
        self.rows = [r for r in self.rows if str(r.get("epoch")) != str(row.get("epoch"))] + [row]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        for r in self.rows:
            writer.writerow({k: _fmt(r.get(k)) for k in self.columns})
        atomic_write(self.path, buf.getvalue())


def _fmt(v: Any) -> Any:
    """Floats with results.csv's precision (``%.6g``), everything else as is, None as empty."""
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


def read_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of a CSV file as dicts of strings (header names stripped, as results.csv pads them)."""
    with open(path, encoding="utf-8", newline="") as f:
        return [{k.strip(): (v or "").strip() for k, v in r.items()} for r in csv.DictReader(f)]
