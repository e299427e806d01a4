"""The shape of the code: layers in folders, imports only downwards, no import cycle, the public paths kept.

- ``yolo_batch/core/``: pure numbers; imports only the standard library, PyYAML and itself (no torch, no
  Ultralytics, no trainer).
- The trainer integration, in folders by when Ultralytics calls it, each importing only its own rank and below
  (`RANKS`): ``port/`` (Ultralytics' internals), ``device/``, ``session``, ``record/``, ``train/``, ``decide/``,
  then the top level that wires them (``wiring``, ``callbacks``, ``plugin``, ``activate``); never the tools.
- ``yolo_batch/tools/``: ``yolo-batch``, the reports, the synthetic data; may stand on all of it.

Imports between the project's own modules stand at the top of each module, so a module's first lines say what
it stands on; only `LAZY` keeps them inside functions (the start-up path and the command line's dispatch).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "yolo_batch"
THIRD_PARTY_IN_CORE = {"yaml"}  # the only non-stdlib package the core may import (spec reads YAML files)


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` but those under ``if TYPE_CHECKING:`` (annotations only, never imported at run time)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if not (
                isinstance(child, ast.If) and isinstance(child.test, ast.Name) and child.test.id == "TYPE_CHECKING"
            ):
                todo.append(child)


def _imports(name: str) -> tuple[set[str], set[str]]:
    """A module's run-time imports of yolo_batch modules and of other top-level packages, at any depth of its code."""
    ours, others = set(), set()
    for node in _runtime_nodes(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] != "yolo_batch":
                others.add(node.module.split(".")[0])
            elif node.module in MODULES and MODULES[node.module].name == "__init__.py":
                subs = {f"{node.module}.{a.name}" for a in node.names}
                ours |= (subs & MODULES.keys()) or {node.module}
            else:
                ours.add(node.module)
        elif isinstance(node, ast.Import):
            for a in node.names:
                (ours if a.name.split(".")[0] == "yolo_batch" else others).add(
                    a.name if a.name.startswith("yolo_batch") else a.name.split(".")[0]
                )
    return {m for m in ours if m in MODULES} - {name}, others


GRAPH = {m: _imports(m)[0] for m in MODULES}


def _layer(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in ("core", "tools") else "integration"


# Each folder (or top-level module) and its rank: a module imports only modules of its rank or below.
RANKS = {
    "core": 0,
    "port": 1,
    "device": 2,
    "session": 3,
    "version": 3,
    "record": 4,
    "train": 5,
    "decide": 6,
    "wiring": 7,
    "callbacks": 7,
    "plugin": 7,
    "activate": 7,
    "": 7,  # the package's __init__
    "tools": 8,
}
LAZY = {"yolo_batch", "yolo_batch.activate", "yolo_batch.tools.cli"}  # Python's start-up path, the CLI's dispatch


def _rank(name: str) -> int:
    parts = name.split(".")
    return RANKS[parts[1] if len(parts) > 1 else ""]


def _reaches(start: str, goal: str) -> bool:
    seen, todo = set(), list(GRAPH[start])
    while todo:
        m = todo.pop()
        if m == goal:
            return True
        if m not in seen:
            seen.add(m)
            todo.extend(GRAPH.get(m, ()))
    return False


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not MODULES[m].name == "__init__.py"))
def test_no_import_cycle_runs_through_any_module(module):
    assert not _reaches(module, module), f"{module} imports itself through {sorted(GRAPH[module])}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m) == "core"))
def test_the_core_imports_only_the_core_and_the_standard_library(module):
    ours, others = _imports(module)
    assert {_layer(m) for m in ours} <= {"core"}, f"{module} imports {sorted(m for m in ours if _layer(m) != 'core')}"
    foreign = {p for p in others if p not in sys.stdlib_module_names and p != "__future__"} - THIRD_PARTY_IN_CORE
    assert not foreign, f"{module} imports {sorted(foreign)}: the core is pure (no torch, no Ultralytics)"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m) == "integration"))
def test_the_trainer_integration_never_imports_the_tools(module):
    tools = sorted(m for m in GRAPH[module] if _layer(m) == "tools")
    assert not tools, f"{module} imports the tools {tools}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_imports_only_its_rank_and_below(module):
    up = sorted(m for m in GRAPH[module] if _rank(m) > _rank(module))
    assert not up, f"{module} (rank {_rank(module)}) imports {up} from above: RANKS in tests/test_layout.py"


def test_every_folder_has_a_rank():
    folders = {
        p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in PACKAGE.iterdir() if p.name != "__pycache__"
    }
    assert folders - {"__init__"} <= RANKS.keys(), sorted(folders - RANKS.keys())


@pytest.mark.parametrize("module", sorted(set(MODULES) - LAZY))
def test_the_projects_own_imports_stand_at_the_top(module):
    """Only torch, Ultralytics and optional packages are imported inside functions (they cost, or may be absent)."""
    inner = [
        f"line {node.lineno}: from {node.module} import ..."
        for fn in ast.walk(ast.parse(MODULES[module].read_text()))
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
        for node in ast.walk(fn)
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "yolo_batch"
    ]
    assert inner == [], f"{module}: hoist to the top: {inner}"


def test_the_run_state_stands_on_the_core_only():
    assert {_layer(m) for m in GRAPH["yolo_batch.session"]} <= {"core"}


def test_the_public_paths_stay():
    import yolo_batch
    from yolo_batch.callbacks import callbacks

    assert callable(yolo_batch.AutoPlus)
    assert callbacks and all(callable(f) for f in callbacks.values())  # the hooks dict, as Ultralytics integrations


def test_no_module_assigns_another_modules_attributes():
    """No module patches another at run time (`activate`'s three startup patches take the module as an argument)."""
    modules = {p.stem for p in PACKAGE.rglob("*.py")}
    packages = {_name(p) for p in PACKAGE.rglob("__init__.py")}
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        names = {a.asname or a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {
            a.asname or a.name
            for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom) and (n.module in packages or (n.module or "").startswith("ultralytics"))
            for a in n.names
            if a.name in modules or a.name.islower()
        }
        for node in ast.walk(tree):
            targets = node.targets if isinstance(node, ast.Assign) else []
            targets = [e for t in targets for e in (t.elts if isinstance(t, (ast.Tuple, ast.List)) else [t])]
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setattr" and node.args:
                targets = [ast.Attribute(value=node.args[0], attr="?")]
            for target in targets:
                if (
                    isinstance(target, ast.Attribute)
                    and isinstance(target.value, ast.Name)
                    and target.value.id in names
                ):
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {target.value.id}.{target.attr}")
    assert found == []


# Private attributes of objects that are not Ultralytics' (torch, DVCLive) the integration reads, each with its owner.
NOT_ULTRALYTICS = {
    "_parameters": "torch nn.Module (probe.borrowed snapshots every parameter)",
    "_buffers": "torch nn.Module (probe.borrowed snapshots every buffer)",
    "_BatchNorm": "torch.nn.modules.batchnorm (adapt, batchnorm find the layers)",
    "_foreach_norm": "torch (effect's gradient norms)",
    "_workers": "torch's DataLoader iterator (loader joins its workers)",
    "_dvc_repo": "DVCLive's Live (loggers: a run outside a DVC repository)",
}
LOOP_STATE = {"start_epoch", "accumulate", "train_loader"}  # _do_train's loop state the plugin toggles (rebuild)
TRAINERS = {"trainer", "t"}  # the names a live trainer goes by in the integration


def _trainer_methods() -> set[str]:
    from ultralytics.engine.trainer import BaseTrainer

    return {n for n in dir(BaseTrainer) if not n.startswith("__") and callable(getattr(BaseTrainer, n))}


def _root(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _private(name: object) -> bool:
    return isinstance(name, str) and name.startswith("_") and not name.startswith("__") and name not in NOT_ULTRALYTICS


def _assigned(node: ast.AST, methods: set[str]) -> bool:
    """A trainer method (on any object but ``self``) or the loop state of a trainer, as an assignment target."""
    if not isinstance(node, ast.Attribute) or _root(node) == "self":
        return False
    return node.attr in methods or (node.attr in LOOP_STATE and _root(node) in TRAINERS)


def _touches(tree: ast.AST, methods: set[str]) -> list[tuple[int, str]]:
    """Each private attribute read or written on an object not its own, each trainer method or loop state assigned."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr) and _root(node.value) not in ("self", "cls"):
            found.append((node.lineno, ast.unparse(node)))
        call = getattr(node.func, "id", None) if isinstance(node, ast.Call) else None
        if isinstance(node, ast.Call) and call in ("getattr", "hasattr", "setattr", "delattr") and len(node.args) > 1:
            name = node.args[1].value if isinstance(node.args[1], ast.Constant) else None
            target = ast.Attribute(value=node.args[0], attr=str(name)) if isinstance(name, str) else None
            if _private(name) or (call == "setattr" and target is not None and _assigned(target, methods)):
                found.append((node.lineno, ast.unparse(node)))
        targets = node.targets if isinstance(node, ast.Assign) else []
        targets += [node.target] if isinstance(node, ast.AugAssign) else []
        for target in (e for t in targets for e in (t.elts if isinstance(t, (ast.Tuple, ast.List)) else [t])):
            if _assigned(target, methods):
                found.append((node.lineno, f"{ast.unparse(target)} = ..."))
    return found


def test_only_the_port_touches_ultralytics_internals():
    """Outside ``yolo_batch/port/``: no private attribute of an Ultralytics object, no method or loop state assigned.

    A release that changes an internal then changes the port alone (issue 20). Private attributes of torch and
    DVCLive objects are named in `NOT_ULTRALYTICS`; a module's own (``self._x``) are its own business.
    """
    methods = _trainer_methods()
    found = [
        f"{path.relative_to(PACKAGE)}:{line} {text}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if "port" not in path.relative_to(PACKAGE).parts[:-1]
        for line, text in _touches(ast.parse(path.read_text()), methods)
    ]
    assert found == [], "go through yolo_batch.port:\n" + "\n".join(found)
