"""The law cache's settings, folder and ``yolo-batch cache`` command (the decisions themselves: tests/e2e)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from yolo_batch.core.spec import AutoPlusError, resolve_spec
from yolo_batch.decide import lawcache
from yolo_batch.tools.cli import main


def test_on_by_default_and_off_through_yaml_or_keywords(tmp_path):
    cfg = tmp_path / "p.yaml"
    cfg.write_text("probe:\n  cache: false\n")
    assert resolve_spec("auto-plus").probe_cache is True
    assert resolve_spec("auto-plus", config=cfg).probe_cache is False
    assert resolve_spec("auto-plus", {"probe": {"cache": False}}).probe_cache is False
    assert resolve_spec("auto-plus", {"probe_cache": False}).probe_cache is False


@pytest.mark.parametrize("value", ["no", 0, "false"], ids=["word", "zero", "string-false"])
def test_a_bad_cache_value_is_one_line(tmp_path, value):
    cfg = tmp_path / "p.yaml"
    cfg.write_text(f"probe:\n  cache: {json.dumps(value)}\n")
    with pytest.raises(
        AutoPlusError, match=r"^probe: \{cache: .*\} in .*p\.yaml is invalid; cache must be true or false$"
    ):
        resolve_spec("auto-plus", config=cfg)


def test_a_misspelt_probe_key_names_cache_among_the_valid_ones(tmp_path):
    cfg = tmp_path / "p.yaml"
    cfg.write_text("probe:\n  cahce: false\n")
    with pytest.raises(AutoPlusError, match=r"unknown key 'probe.cahce'.*probe\.cache \(did you mean 'cache'\?\)$"):
        resolve_spec("auto-plus", config=cfg)


def test_the_folder_is_beside_ultralytics_settings():
    from ultralytics.utils import USER_CONFIG_DIR

    assert lawcache.folder() == Path(USER_CONFIG_DIR) / "yolo_batch_laws"


def _entry(key: str, saved: str) -> dict:
    setup = {
        "model_name": "yolo11n.yaml",
        "task": "detect",
        "imgsz": 640,
        "amp": [True, "True"],
        "device": "NVIDIA H100",
    }
    setup["total_bytes"] = 80 * 2**30
    law = {"train": [2 * 2**30, 300 * 2**20], "val": None, "val_factor": 2, "val_batch": None}
    points = {"train": [[2, 2.6e9], [4, 3.2e9]], "val": [], "used": [[2, 2.6e9], [4, 3.2e9]], "oom": []}
    return {
        **{"format": 1, "key": key, "saved": saved, "setup": setup, "law": law, "pick": 224},
        **{"check": {"densest_labels": [3, 2], "optimizer_built": "SGD"}, "probe_law": [2 * 2**30, 300 * 2**20]},
        **{"probe_points": points, "flat": False, "speed": None, "verified_peak_bytes": 69e9},
    }


def test_cache_lists_and_clears(capsys):
    assert main(["cache"]) == 0
    assert capsys.readouterr().out == f"0 cached law(s) in {lawcache.folder()}\n"
    lawcache.folder().mkdir(parents=True)
    for key, saved in (("bbbb", "2026-12-02 06:00:00"), ("aaaa", "2026-12-01 06:00:00")):
        (lawcache.folder() / f"{key}.json").write_text(json.dumps(_entry(key, saved)))
    (lawcache.folder() / "broken.json").write_text("{")
    assert main(["cache", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"2 cached law(s) in {lawcache.folder()}"
    assert lines[1] == (
        "aaaa  2026-12-01 06:00:00  yolo11n.yaml detect imgsz=640 amp=True NVIDIA H100 80.0 GiB: "
        "2.00 GiB + 300.0 MiB/image, pick 224"
    )
    assert lines[2].startswith("bbbb  2026-12-02")
    assert lines[3] == (
        f"{lawcache.folder() / 'broken.json'} is damaged: not JSON (Expecting property name enclosed in double "
        "quotes at line 1); left out (a decision replaces it; `yolo-batch cache clear` removes it)"
    )
    assert main(["cache", "clear"]) == 0
    assert capsys.readouterr().out == f"removed 3 cached law(s) from {lawcache.folder()}\n"
    assert list(lawcache.folder().iterdir()) == []


@pytest.mark.parametrize("words", [["drop"], ["list", "clear"], ["clear=1"]], ids=["unknown", "two", "key-value"])
def test_cache_bad_argument_is_one_line_exit_2(capsys, words):
    assert main(["cache", *words]) == 2
    err = capsys.readouterr().err
    assert (
        err == f"yolo-batch: error: cache: unknown argument {' '.join(words)!r}; valid: list (the default) or clear\n"
    )
