"""Files read back (the law cache, a run's records, args.yaml, sweep.yaml): typed loaders and one error class.

A file the plugin wrote, or a user edits, may be damaged: cut off, emptied, overwritten with bytes, or valid
JSON/YAML of another shape. Each reader loads it through `read_json`, `read_yaml` or `read_csv` with the shape
its code relies on, and gets the parsed data or `Damaged`, one line naming the file and what is wrong. The reader
then decides: a miss with that line (the run goes on), or a refusal in that line before anything is written.

A shape is a Python type (``str``, ``bool``, ``dict``, ``list``), `INT` or `NUMBER` (never a bool, a number
finite), `Maybe`, `ListOf`, `Opt` (a key that may be absent) or a dict of shapes (those keys required, others
allowed).

Examples:
    >>> check({"batch": 8, "law": [1.0, 2]}, {"batch": INT, "law": ListOf(NUMBER, 2)})
    {'batch': 8, 'law': [1.0, 2]}
    >>> check({"batch": "8"}, {"batch": INT})
    Traceback (most recent call last):
    ...
    yolo_batch.core.readback.Shape: batch is '8', not an integer
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yolo_batch.core.spec import printable


class Damaged(ValueError):
    """A file read back is damaged: ``str(e)`` is one line, the file and what is wrong with it."""

    def __init__(self, path: str | os.PathLike, what: str) -> None:
        """``path``: the file; ``what``: what is wrong with it, in a few words."""
        super().__init__(printable(f"{path} is damaged: {what}"))
        self.path, self.what = str(path), what


class Shape(ValueError):
    """Data of another shape than its reader's: what is wrong, at which key (`check`)."""


@dataclass(frozen=True)
class _Kind:
    name: str
    ok: Any

    def __repr__(self) -> str:
        return self.name


INT = _Kind("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool))
NUMBER = _Kind(
    "a number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))
)


@dataclass(frozen=True)
class Maybe:
    """``shape``, or None (null)."""

    shape: Any


@dataclass(frozen=True)
class Opt:
    """A key that may be absent (when present: ``shape``)."""

    shape: Any


@dataclass(frozen=True)
class ListOf:
    """A list of ``shape`` (of ``length`` items when given)."""

    shape: Any
    length: int | None = None


@dataclass(frozen=True)
class OneOf:
    """Any of ``shapes``."""

    shapes: tuple

    def __init__(self, *shapes: Any) -> None:
        """``OneOf(str, INT)``: a string or an integer."""
        object.__setattr__(self, "shapes", shapes)


_NAMES = {str: "a string", bool: "true or false", dict: "a mapping", list: "a list"}


def _what(v: Any) -> str:
    text = "null" if v is None else str(v).lower() if isinstance(v, bool) else repr(v)  # as JSON and YAML write them
    return text if len(text) <= 40 else text[:37] + "..."


def _name(shape: Any) -> str:
    return shape.name if isinstance(shape, _Kind) else _NAMES.get(shape, getattr(shape, "__name__", "of its shape"))


def check(value: Any, shape: Any, where: str = "") -> Any:
    """``value`` when it has ``shape``; else `Shape`, one line naming the key path (e.g. ``law.train[1]``)."""
    at = where or "the file"
    if isinstance(shape, Maybe):
        return value if value is None else check(value, shape.shape, where)
    if isinstance(shape, OneOf):
        for one in shape.shapes:
            try:
                return check(value, one, where)
            except Shape:
                continue
        raise Shape(f"{at} is {_what(value)}, not {' or '.join(_name(one) for one in shape.shapes)}")
    if isinstance(shape, _Kind):
        if not shape.ok(value):
            raise Shape(f"{at} is {_what(value)}, not {shape.name}")
        return value
    if isinstance(shape, ListOf):
        if not isinstance(value, list) or (shape.length is not None and len(value) != shape.length):
            size = f"{shape.length} items" if shape.length is not None else "items"
            raise Shape(f"{at} is {_what(value)}, not a list of {size}")
        for i, item in enumerate(value):
            check(item, shape.shape, f"{where}[{i}]")
        return value
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            raise Shape(f"{at} is {_what(value)}, not a mapping")
        for key, inner in shape.items():
            path = f"{where}.{key}" if where else key
            if isinstance(inner, Opt):
                if key in value:
                    check(value[key], inner.shape, path)
            elif key not in value:
                raise Shape(f"{path} is missing")
            else:
                check(value[key], inner, path)
        return value
    if not isinstance(value, shape) or (shape is not bool and isinstance(value, bool)):
        raise Shape(f"{at} is {_what(value)}, not {_name(shape)}")
    return value


def read_text(path: str | os.PathLike) -> str:
    """The file's text (UTF-8); `Damaged` when it cannot be read or is not UTF-8 text."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise Damaged(path, f"cannot be read ({e.strerror or type(e).__name__})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Damaged(path, f"not UTF-8 text (byte {e.start})") from None


def read_json(path: str | os.PathLike, shape: Any) -> Any:
    """The file's JSON, of ``shape``; else `Damaged` (unreadable, cut off, empty, another shape)."""
    text = read_text(path)
    if not text.strip():
        raise Damaged(path, "empty")
    try:
        data = json.loads(text)
    except ValueError as e:
        raise Damaged(path, f"not JSON ({getattr(e, 'msg', e)} at line {getattr(e, 'lineno', '?')})") from None
    except RecursionError:
        raise Damaged(path, "not JSON (nested too deep)") from None
    return shaped(path, data, shape)


def read_yaml(path: str | os.PathLike, shape: Any) -> Any:
    """The file's YAML (``yaml.safe_load``), of ``shape``; else `Damaged`."""
    import yaml

    text = read_text(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise Damaged(path, f"not YAML ({getattr(e, 'problem', None) or type(e).__name__}{line})") from None
    except (ValueError, OverflowError, RecursionError) as e:  # e.g. a date YAML reads that does not exist
        raise Damaged(path, f"not YAML ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    return shaped(path, data, shape)


def shaped(path: str | os.PathLike, data: Any, shape: Any, where: str = "") -> Any:
    """``data`` read from ``path`` when it has ``shape`` (at ``where``); else `Damaged` naming the file."""
    try:
        return check(data, shape, where)
    except Shape as e:
        raise Damaged(path, str(e)) from None


def read_csv(path: str | os.PathLike, columns: dict[str, Any] | None = None) -> list[dict[str, str]]:
    """A CSV file's rows as dicts of strings (header names and cells stripped, as results.csv pads them).

    ``columns``: the columns every row needs, each with a test of its cell (e.g. `int_cell`), or None. `Damaged`
    for a file that is not UTF-8 CSV, a row with more cells than the header, or a required column missing or bad.
    """
    text = read_text(path)
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        raw = list(reader)
    except csv.Error as e:
        raise Damaged(path, f"not CSV ({e})") from None
    rows = []
    for n, r in enumerate(raw, start=2):
        if None in r:
            raise Damaged(path, f"line {n} has more cells than the header")
        rows.append({str(k).strip(): (v or "").strip() for k, v in r.items()})
    for key, ok in (columns or {}).items():
        if rows and key not in rows[0]:
            raise Damaged(path, f"no {key} column")
        bad = next((i for i, r in enumerate(rows) if not ok(r.get(key, ""))), None)
        if bad is not None:
            raise Damaged(path, f"{key} {rows[bad].get(key)!r} in row {bad + 1}")
    return rows


def int_cell(v: str) -> bool:
    """A cell holding an integer written in digits."""
    return v.isascii() and v.isdigit()
