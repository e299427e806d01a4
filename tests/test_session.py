"""The `Session`'s owners: what is fixed when the trainer is built is frozen, each changing part has one writer.

The writers are the ones ``docs/architecture.md`` names ("Run state: one writer each"); an AST scan of every
module of the package finds each write to a session field: an assignment (``s.oom.events += 1``,
``s.record = ...``, ``state.choice = None`` after ``state = s.switching``), a list or dict mutation
(``s.waiting.append(...)``) or a ``setattr``. The session is the name ``s`` or ``session`` (how every module
calls it), or a name bound to ``session(trainer)``; a field handed on as a plain argument is not followed.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest

from yolo_batch.core.spec import BatchSpec
from yolo_batch.session import Fixed, Session

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "yolo_batch"
MUTATORS = {"append", "extend", "insert", "pop", "popitem", "clear", "update", "remove", "setdefault", "add", "sort"}
SESSION_NAMES = {"s", "session"}
FROZEN = {f.name for f in dataclasses.fields(Fixed)} | {"fixed"}


def _writers() -> dict[str, str]:
    """``{field: writer module}`` from the table of ``docs/architecture.md``'s "Run state: one writer each"."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = text.split("## Run state: one writer each", 1)[1].split("\n## ", 1)[0]
    owners = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        writer = re.findall(r"`([^`]+)`", cells[1])[0]
        for name in re.findall(r"`([^`]+)`", cells[0]):
            owners[name.split(":")[0].strip()] = writer
    return owners


WRITERS = _writers()


def _modules() -> dict[str, Path]:
    return {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts): p for p in sorted(PACKAGE.rglob("*.py"))}


class _Scan(ast.NodeVisitor):
    """Every write to a session field in one module: ``(field, line)``."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, int]] = []
        self.aliases: list[dict[str, str | None]] = [{}]  # per function: name -> the field it holds (None: session)

    def _field(self, node: ast.AST) -> str | None:
        """The session field an expression reaches (``s.oom.events`` -> ``oom``), or None."""
        chain = []
        while isinstance(node, (ast.Attribute, ast.Subscript)):
            chain.append(node.attr if isinstance(node, ast.Attribute) else None)
            node = node.value
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "session":
            root: str | None = "session"
        elif isinstance(node, ast.Name):
            root = node.id
        else:
            return None
        scope = self.aliases[-1]
        if root in scope:
            held = scope[root]
            if held is not None:
                return held  # an alias of a field: any write through it writes the field
        elif root not in SESSION_NAMES and root != "session":
            return None
        return chain[-1] if chain and chain[-1] else None

    def _target(self, target: ast.AST, line: int) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            for t in target.elts:
                self._target(t, line)
        elif isinstance(target, (ast.Attribute, ast.Subscript)):
            found = self._field(target)
            if found is not None:
                self.writes.append((found, line))

    def _bind(self, target: ast.AST, value: ast.AST) -> None:
        """Note ``name = s.field`` (and ``a, b = s.x, s.y``) as aliases; ``s = session(trainer)`` as the session."""
        if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple) and len(target.elts) == len(value.elts):
            for t, v in zip(target.elts, value.elts):
                self._bind(t, v)
            return
        if not isinstance(target, ast.Name):
            return
        scope = self.aliases[-1]
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "session":
            scope[target.id] = None
        elif isinstance(value, (ast.Attribute, ast.Subscript)) and (held := self._field(value)) is not None:
            scope[target.id] = held
        else:
            scope.pop(target.id, None)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.aliases.append({})
        self.generic_visit(node)
        self.aliases.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Assign(self, node: ast.Assign) -> None:
        self.generic_visit(node)
        for target in node.targets:
            self._target(target, node.lineno)
            self._bind(target, node.value)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.generic_visit(node)
        self._target(node.target, node.lineno)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self.generic_visit(node)
        self._target(node.target, node.lineno)

    def visit_Call(self, node: ast.Call) -> None:
        self.generic_visit(node)
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in MUTATORS:
            found = self._field(func.value)
            if found is not None:
                self.writes.append((found, node.lineno))
        elif isinstance(func, ast.Name) and func.id in ("setattr", "delattr") and node.args:
            on, name = node.args[0], node.args[1] if len(node.args) > 1 else None
            found = self._field(on)
            if found is None and isinstance(name, ast.Constant) and self._field(ast.Attribute(on, name.value)):
                found = name.value  # setattr(s, "field", ...)
            if found is not None:
                self.writes.append((found, node.lineno))


def _writes() -> dict[str, list[tuple[str, str, int]]]:
    """``{field: [(module, path, line)]}`` for every module of the package but `session`, which builds them."""
    found: dict[str, list[tuple[str, str, int]]] = {}
    for name, path in _modules().items():
        if name == "yolo_batch.session":
            continue
        scan = _Scan()
        scan.visit(ast.parse(path.read_text(encoding="utf-8")))
        for field, line in scan.writes:
            found.setdefault(field, []).append((name.rsplit(".", 1)[-1], str(path.relative_to(ROOT)), line))
    return found


def _session_fields() -> set[str]:
    """The attributes `Session.__init__` sets."""
    tree = ast.parse((PACKAGE / "session.py").read_text(encoding="utf-8"))
    init = next(
        n
        for c in tree.body
        if isinstance(c, ast.ClassDef) and c.name == "Session"
        for n in c.body
        if isinstance(n, ast.FunctionDef) and n.name == "__init__"
    )
    return {
        t.attr
        for node in ast.walk(init)
        for t in (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"
    }


def test_every_session_field_is_frozen_or_has_a_writer_named_in_the_architecture_page():
    fields = _session_fields()
    assert "fixed" in fields and not FROZEN - {"fixed"} & fields  # the fixed part lives in `Fixed` alone
    assert fields - {"fixed"} == set(WRITERS), "docs/architecture.md's owner table and Session.__init__ disagree"
    assert {"oom", "rebuild", "device", "meter", "switching", "lr", "record", "history"} <= set(WRITERS)
    for writer in set(WRITERS.values()):
        found = [n for n in _modules() if n.rsplit(".", 1)[-1] == writer]
        assert len(found) == 1, f"the writer {writer!r} of docs/architecture.md is no one module: {found}"


def test_each_changing_part_of_the_session_is_written_by_its_owner_alone():
    wrong = [
        f"{path}:{line}: {module} writes the session's {field!r}, which {WRITERS[field]} owns"
        for field, places in _writes().items()
        if field in WRITERS
        for module, path, line in places
        if module != WRITERS[field]
    ]
    assert not wrong, "\n".join(wrong)


def test_the_fixed_part_is_never_assigned():
    wrong = [
        f"{path}:{line}: {field}" for field, places in _writes().items() if field in FROZEN for _, path, line in places
    ]
    assert not wrong, "assigned after the trainer was built:\n" + "\n".join(wrong)
    s = Session(BatchSpec(), decides=True, value="auto-plus", adapts=True)
    assert (s.spec, s.decides, s.value, s.adapts, s.worker) == (BatchSpec(), True, "auto-plus", True, False)
    for name in FROZEN - {"fixed"}:
        with pytest.raises(AttributeError):
            setattr(s, name, None)
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(s.fixed, name, None)


def test_the_scan_sees_writes_through_an_alias_a_mutation_and_setattr():
    """The scan itself: each form of write it must catch (else the owner test above could not fail)."""
    source = """
def f(trainer, s):
    state, other = s.switching, 1
    state.choice = None
    s.oom.events += 1
    s.waiting.append(1)
    setattr(s.rebuild, "saved", None)
    setattr(s, "spec", None)
    x = session(trainer)
    x.lr.factor = 2.0
    s.record["batch"] = 3
    s.meter.noise.value  # a read
    other.choice = 1  # not the session
"""
    scan = _Scan()
    scan.visit(ast.parse(source))
    assert sorted(f for f, _ in scan.writes) == sorted(
        ["switching", "oom", "waiting", "rebuild", "spec", "lr", "record"]
    )
