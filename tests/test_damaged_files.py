"""Every file the plugin reads back, damaged every way (Hypothesis): a miss with one line, or a one-line refusal.

The files start as the real files of a real run (``tests/data/readback``: a ``yolo train ... batch=auto-plus:speed``
run's args.yaml, batch_decision.json, batch_effect.csv and results.csv, and its law-cache entry; sweep.yaml is written
by the sweep's own `plan` and `write_record`). Each example damages one: a wrong type at any key path, a key
removed or added, the bytes cut off at any point, emptied, random bytes, or valid JSON/YAML of another type. Each
reader is called directly (no training) and must give one of its outcomes, never another exception.
`tests/e2e/test_damaged_runs.py` checks the same files through real runs.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from yolo_batch.core.readback import Damaged
from yolo_batch.core.spec import AutoPlusError, BatchSpec
from yolo_batch.decide import lawcache
from yolo_batch.record import effect, records

DATA = Path(__file__).parent / "data" / "readback"
SETTINGS = settings(  # YOLO_BATCH_DAMAGE_EXAMPLES=3000 searches harder (CI draws 150 fresh ones each run)
    max_examples=int(os.environ.get("YOLO_BATCH_DAMAGE_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    database=None,
)
SLOW_EXAMPLES = settings(SETTINGS, max_examples=20, phases=[Phase.explicit, Phase.generate])  # compare draws a figure

# --------------------------------------------------------------------------------------------------------------
# Damage, as strategies


def _paths(tree: Any, at: tuple = ()) -> list[tuple]:
    """Every key path of a JSON/YAML tree (the root included)."""
    out = [at]
    if isinstance(tree, dict):
        for k, v in tree.items():
            out += _paths(v, (*at, k))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            out += _paths(v, (*at, i))
    return out


OTHER = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(-3, 3), max_size=2),
)


@st.composite
def damaged_tree(draw, tree: Any) -> Any:
    """``tree`` with one key path given a value of another type, removed, or beside an extra key."""
    tree = copy.deepcopy(tree)
    path = draw(st.sampled_from(_paths(tree)))
    op = draw(st.sampled_from(["replace", "remove", "extra"]))
    if not path:
        return draw(OTHER) if op == "replace" else tree
    parent = tree
    for k in path[:-1]:
        parent = parent[k]
    key = path[-1]
    if op == "replace":
        parent[key] = draw(OTHER)
    elif op == "remove":
        del parent[key]
    elif isinstance(parent, dict):
        parent[draw(st.text(min_size=1, max_size=6))] = draw(OTHER)
    else:
        parent.append(draw(OTHER))
    return tree


def damaged_bytes(raw: bytes) -> st.SearchStrategy[bytes]:
    """The file cut off at any byte, emptied, random bytes, a byte changed, or JSON of another type."""
    return st.one_of(
        st.integers(0, len(raw)).map(lambda n: raw[:n]),
        st.just(b""),
        st.binary(max_size=64),
        st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 255)).map(
            lambda p: raw[: p[0]] + bytes([p[1]]) + raw[p[0] + 1 :]
        ),
        st.sampled_from([b"null", b"[]", b"[1, 2]", b"3", b'"text"', b"true", b"{}", b"\xff\xfe\x00"]),
    )


def damaged_json(raw: bytes) -> st.SearchStrategy[bytes]:
    tree = json.loads(raw)
    return st.one_of(damaged_bytes(raw), damaged_tree(tree).map(lambda t: json.dumps(t).encode()))


def damaged_yaml(raw: bytes) -> st.SearchStrategy[bytes]:
    tree = yaml.safe_load(raw)
    return st.one_of(
        damaged_bytes(raw),
        damaged_tree(tree).map(lambda t: yaml.safe_dump(t, allow_unicode=True).encode()),
        st.sampled_from([b"a: [", b"- 1\n- 2\n", b"day: 2020-02-30\n", b"!!python/object:os.system {}\n"]),
    )


@st.composite
def damaged_csv(draw, raw: bytes) -> bytes:
    """A CSV with a cell changed, a cell removed or added, a column dropped, or its bytes damaged."""
    lines = raw.decode().splitlines()
    op = draw(st.sampled_from(["bytes", "cell", "fewer", "more", "column"]))
    if op == "bytes":
        return draw(damaged_bytes(raw))
    i = draw(st.integers(0, len(lines) - 1))
    cells = lines[i].split(",")
    j = draw(st.integers(0, len(cells) - 1))
    if op == "cell":
        cells[j] = draw(st.text(alphabet="ab1.-x ", max_size=4))
    elif op == "fewer":
        del cells[j]
    elif op == "more":
        cells.insert(j, draw(st.text(alphabet="ab1.-x", max_size=3)))
    else:
        lines = [",".join(c for k, c in enumerate(line.split(",")) if k != j) for line in lines]
        return ("\n".join(lines) + "\n").encode()
    lines[i] = ",".join(cells)
    return ("\n".join(lines) + "\n").encode()


def one_line(text: str, path: Path) -> None:
    """A message of one line that names the file."""
    assert "\n" not in text.strip() and str(path) in text, text


# --------------------------------------------------------------------------------------------------------------
# The law cache: `yolo train`/`plan` (lookup) and `yolo-batch cache` (list)

ENTRY = (DATA / "law_entry.json").read_bytes()


@pytest.fixture
def entry_lookup(monkeypatch):
    """``lawcache.lookup`` for the real entry's set-up (no trainer: its key is the entry's)."""
    setup = json.loads(ENTRY)["setup"]
    monkeypatch.setattr(lawcache, "setup_of", lambda *a: setup)
    spec = SimpleNamespace(probe_cache=True)
    found = lawcache.Lookup(setup)
    return lambda: lawcache.lookup(None, spec, None, {}), lawcache.folder() / f"{found.key}.json"


def _consume(entry: dict) -> None:
    """What `lawcache.cached_pick` builds from an entry it was handed."""
    from yolo_batch.core import policy
    from yolo_batch.core.throughput import pace_from_record

    law = entry["law"]
    val = policy.Law(*law["val"]) if law["val"] else None
    model = policy.MemoryModel(policy.Law(*law["train"]), val, law["val_factor"], law["val_batch"])
    model.train.at(8), policy.Law(*entry["probe_law"]).at(8)
    pace = pace_from_record(entry)
    if pace is not None:
        pace.images_per_s(8)
    points = entry["probe_points"]
    [tuple(p) for p in points["train"] + points["val"]], list(points["oom"]), bool(entry.get("flat"))
    assert entry["check"] == entry["check"] and isinstance(entry["saved"], str)


def test_the_real_entry_is_a_hit_candidate(entry_lookup):
    lookup, path = entry_lookup
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(ENTRY)
    found = lookup()
    assert found.status == "found" and found.entry is not None
    _consume(found.entry)


@SETTINGS
@given(raw=damaged_json(ENTRY))
def test_a_damaged_law_cache_entry_is_a_miss_with_one_line(entry_lookup, caplog, raw):
    lookup, path = entry_lookup
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        found = lookup()
    assert found.status in ("found", "miss")
    if found.status == "found":
        assert found.entry is not None
        _consume(found.entry)
        assert not caplog.records
    elif found.detail.startswith("the entry was damaged"):
        [line] = [r.getMessage() for r in caplog.records]
        one_line(line, path)
        assert "the probe decides and replaces it" in line
    else:
        assert found.detail == "the entry's set-up differs" and not caplog.records


@SETTINGS
@given(raw=damaged_json(ENTRY))
def test_yolo_batch_cache_lists_around_a_damaged_entry(capsys, raw):
    folder = lawcache.folder()
    folder.mkdir(parents=True, exist_ok=True)
    for p in folder.glob("*.json"):
        p.unlink()
    (folder / "0000good.json").write_bytes(ENTRY)
    (folder / "1111damaged.json").write_bytes(raw)
    capsys.readouterr()
    assert lawcache.cache_cli([]) == 0
    out = capsys.readouterr().out.splitlines()
    listed = int(out[0].split()[0])
    assert listed in (1, 2)
    damaged = [x for x in out if "1111damaged.json" in x]
    assert len(damaged) == (listed == 1)  # a damaged entry: one line naming it
    assert len(out) == 1 + listed + len(damaged)
    assert lawcache.cache_cli(["clear"]) == 0 and not list(folder.glob("*.json"))


# --------------------------------------------------------------------------------------------------------------
# batch_decision.json: a resume reads it back (records, adapt, lrscale), and so do compare and the loggers

DECISION = (DATA / "batch_decision.json").read_bytes()


def _resumed(tmp_path: Path, raw: bytes, caplog) -> tuple[Any, Any, list[str]]:
    """A resume's reading of ``raw`` as its batch_decision.json: the trainer, the session, the lines logged."""
    from yolo_batch.session import Session

    (tmp_path / "batch_decision.json").write_bytes(raw)
    args = SimpleNamespace(batch=16, optimizer="SGD", nbs=64)
    trainer = SimpleNamespace(save_dir=tmp_path, resume=True, start_epoch=1, batch_size=16, args=args)
    s = Session(BatchSpec(), decides=False, value=None)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        records.load_history(trainer, s)
    return trainer, s, [r.getMessage() for r in caplog.records]


@SETTINGS
@given(raw=damaged_json(DECISION))
def test_a_damaged_batch_decision_json_is_left_out_of_a_resume_with_one_line(tmp_path, caplog, raw):
    from yolo_batch.core.history import batch_spans, chosen
    from yolo_batch.core.throughput import pace_from_record
    from yolo_batch.train import adapt, lrscale

    path = tmp_path / "batch_decision.json"
    trainer, s, lines = _resumed(tmp_path, raw, caplog)
    try:
        records.read_resumable(path)
    except Damaged as e:
        one_line(str(e), path)
        [line] = lines
        one_line(line, path)
        assert s.history == [] and s.record is None
    else:
        assert lines == []
    # what a resume then does with what it read
    records.started(trainer, s)
    records.start_line(trainer, s)
    lrscale.from_record(trainer, s, records.latest(s.history))
    pace_from_record(s.record or {})
    chosen(records.decision(s)), batch_spans(s.history, 3)
    (tmp_path / "weights").mkdir(exist_ok=True)
    adapt.resumed_spec(tmp_path / "weights" / "last.pt")


def test_a_damaged_batch_decision_json_failed_before(tmp_path, caplog):
    """One example the old reader let through to a traceback at on_train_start: a from_epoch of another type."""
    data = json.loads(DECISION)
    data["history"][0]["from_epoch"] = "1"
    trainer, s, lines = _resumed(tmp_path, json.dumps(data).encode(), caplog)
    records.started(trainer, s)
    assert s.history == [] and len(lines) == 1 and "history[0].from_epoch is '1', not an integer" in lines[0]


def test_a_choice_without_its_policy_is_damaged_for_a_resume_and_the_reader_says_so(tmp_path, caplog):
    """The case CI's hypothesis run found: the resume's oracle must be the reader the resume uses."""
    data = json.loads(DECISION)
    del data["history"][0]["policy"]
    raw = json.dumps(data).encode()
    trainer, s, lines = _resumed(tmp_path, raw, caplog)
    with pytest.raises(Damaged, match=r"history\[0\]\.policy is missing"):
        records.read_resumable(tmp_path / "batch_decision.json")
    assert s.history == [] and len(lines) == 1 and "history[0].policy is missing" in lines[0]


# --------------------------------------------------------------------------------------------------------------
# batch_effect.csv (a resume's effect log; compare) and results.csv (compare)

EFFECT = (DATA / "batch_effect.csv").read_bytes()
RESULTS = (DATA / "results.csv").read_bytes()


@SETTINGS
@given(raw=damaged_csv(EFFECT))
def test_a_damaged_batch_effect_csv_starts_a_resumed_log_again_with_one_line(tmp_path, caplog, raw):
    from yolo_batch.core.history import row_spans

    path = tmp_path / "batch_effect.csv"
    path.write_bytes(raw)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        log = effect.EffectLog(path, keep_until=2)
    lines = [r.getMessage() for r in caplog.records]
    if lines:
        [line] = lines
        one_line(line, path)
        assert log.rows == []
    row_spans(log.rows)
    log.add({"epoch": 3, "batch": 16})
    assert effect.read_effect(path)[-1]["epoch"] == "3"


NAMES = {n.replace(".", "_"): n for n in ("args.yaml", "batch_decision.json", "batch_effect.csv", "results.csv")}


def _run(tmp_path: Path, **files: bytes) -> Path:
    """A run folder of the real run's files, ``files`` (``batch_effect_csv=`` bytes...) in place of some."""
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    for key, name in NAMES.items():
        (run / name).write_bytes(files.get(key, (DATA / name).read_bytes()))
    return run


@SLOW_EXAMPLES
@given(
    which=st.sampled_from(["batch_effect_csv", "batch_decision_json", "args_yaml"]),
    effect_raw=damaged_csv(EFFECT),
    decision_raw=damaged_json(DECISION),
    args_raw=damaged_yaml((DATA / "args.yaml").read_bytes()),
)
def test_compare_reports_a_run_with_a_damaged_file_with_one_line(
    tmp_path, capsys, which, effect_raw, decision_raw, args_raw
):
    from yolo_batch.tools.report import compare

    raw = {"batch_effect_csv": effect_raw, "batch_decision_json": decision_raw, "args_yaml": args_raw}[which]
    run = _run(tmp_path, **{which: raw})
    capsys.readouterr()
    [row] = compare([run], tmp_path / "out")
    err = capsys.readouterr().err.splitlines()
    assert len(err) <= 1 and row["epochs"] == 2
    if err:
        one_line(err[0], run / NAMES[which])


@SLOW_EXAMPLES
@given(raw=damaged_csv(RESULTS))
def test_compare_refuses_a_damaged_results_csv_in_one_line(tmp_path, raw):
    from yolo_batch.tools.report import compare

    run = _run(tmp_path, results_csv=raw)
    out = tmp_path / "out"
    shutil.rmtree(out, ignore_errors=True)  # tmp_path is shared by the examples
    try:
        rows = compare([run], out)
    except AutoPlusError as e:
        assert "\n" not in str(e)
        assert "results.csv" in str(e)
        assert not (out / "comparison.csv").exists()  # refused before anything is written
    else:
        assert len(rows) == 1


# --------------------------------------------------------------------------------------------------------------
# args.yaml: `yolo train cfg=args.yaml` (the start-up check) and compare (above)

ARGS = (DATA / "args.yaml").read_bytes()


@SETTINGS
@given(raw=damaged_yaml(ARGS))
def test_a_damaged_args_yaml_never_stops_the_start_up_check(tmp_path, raw):
    from ultralytics import cfg as module

    from yolo_batch.activate import _check_cli

    path = tmp_path / "args.yaml"
    path.write_bytes(raw)
    try:
        _check_cli(module, ["train", f"cfg={path}"])
    except AutoPlusError as e:  # a bad auto-plus value in it: one line, as on the command line
        assert "\n" not in str(e)


# --------------------------------------------------------------------------------------------------------------
# sweep.yaml: a damaged one is refused in one line before anything is written


@pytest.fixture(scope="module")
def sweep_yaml(tmp_path_factory) -> tuple[dict, list[str], bytes]:
    from yolo_batch.tools.datasets import make_dataset
    from yolo_batch.tools.sweep import plan
    from yolo_batch.tools.sweep_state import SWEEP_FILE, write_record

    root = tmp_path_factory.mktemp("sweep")
    data = make_dataset(root / "data", n_train=4, n_val=2, imgsz=32, seed=1)
    recipe, batches, project = plan(
        ["model=yolo11n.yaml", f"data={data}", "batches=8,auto-plus", "epochs=1", f"project={root}/p"]
    )
    write_record(project, recipe, batches)
    return recipe, batches, (project / SWEEP_FILE).read_bytes()


@SETTINGS
@given(data=st.data())
def test_a_damaged_sweep_yaml_is_refused_in_one_line(tmp_path, sweep_yaml, data):
    from yolo_batch.tools.sweep_state import check_record

    recipe, batches, real = sweep_yaml
    raw = data.draw(damaged_yaml(real))
    (tmp_path / "sweep.yaml").write_bytes(raw)
    try:
        listed = check_record(tmp_path, recipe, batches)
    except AutoPlusError as e:  # damaged, or a recipe edited into another: one line either way
        if "holds a sweep of another recipe" in str(e):
            one_line(str(e), tmp_path)
        else:
            one_line(str(e), tmp_path / "sweep.yaml")
        assert list(tmp_path.iterdir()) == [tmp_path / "sweep.yaml"]
    else:
        assert all(isinstance(b, str) for b in listed) and set(batches) <= set(listed)


def test_a_recipe_key_with_a_line_break_is_named_on_one_line(tmp_path, sweep_yaml):
    """The case a 2,500-example search found: the refusal quoted the edited key's line breaks raw."""
    from yolo_batch.tools.sweep_state import check_record

    recipe, batches, _ = sweep_yaml
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({"recipe": {"\n\n": "(", **recipe}, "batches": batches}))
    with pytest.raises(AutoPlusError, match="another recipe") as e:
        check_record(tmp_path, recipe, batches)
    one_line(str(e.value), tmp_path)
    assert "'\\n\\n': '(' there, 'unset' here" in str(e.value)


# --------------------------------------------------------------------------------------------------------------
# The plugin YAML (YOLO_BATCH_CONFIG, config=): every problem is spec's one-line AutoPlusError

PLUGIN = (Path(__file__).parents[1] / "cfg" / "auto_plus.yaml").read_bytes()


@SETTINGS
@given(raw=damaged_yaml(PLUGIN))
def test_a_damaged_plugin_yaml_is_one_line(tmp_path, raw):
    from yolo_batch.core.spec import resolve_spec

    path = tmp_path / "plugin.yaml"
    path.write_bytes(raw)
    try:
        resolve_spec("auto-plus", config=path)
    except AutoPlusError as e:
        assert "\n" not in str(e)


def test_a_key_with_a_line_break_in_the_plugin_yaml_is_named_escaped(tmp_path):
    """A 6,000-example search found a nested key's line break quoted raw; every AutoPlusError is one line now."""
    from yolo_batch.core.spec import resolve_spec

    path = tmp_path / "plugin.yaml"
    path.write_text(yaml.safe_dump({"probe": {"ca\nche": True}}))
    with pytest.raises(AutoPlusError, match=r"unknown key 'probe\.ca\\nche'") as e:
        resolve_spec("auto-plus", config=path)
    assert "\n" not in str(e.value)


def test_a_cached_entry_with_a_control_byte_in_its_setup_lists_on_one_line(capsys):
    """The same search found ``amp: "\\x1e"`` (a record separator) splitting the listing's line in two."""
    folder = lawcache.folder()
    folder.mkdir(parents=True, exist_ok=True)
    for p in folder.glob("*.json"):
        p.unlink()
    entry = json.loads(ENTRY)
    entry["setup"]["amp"] = "\x1e"
    (folder / "0000edited.json").write_text(json.dumps(entry))
    capsys.readouterr()
    assert lawcache.cache_cli([]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("1 cached law(s)") and len(out) == 2 and "amp=\\x1e" in out[1]
    lawcache.cache_cli(["clear"])
