"""A run's records: args.yaml's batch, the decision history in order, the start-up line, the summary's order."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from yolo_batch.core.spec import AutoPlusError, BatchSpec
from yolo_batch.record import records
from yolo_batch.record.summary import summarize
from yolo_batch.session import DECISION_FILE, Session

PACKAGE = Path(__file__).resolve().parents[1] / "yolo_batch"


def trainer(tmp_path, resume=False, start_epoch=0, batch=8):
    return SimpleNamespace(
        save_dir=tmp_path, resume=resume, start_epoch=start_epoch, batch_size=batch, args=SimpleNamespace(batch=batch)
    )


def stock_args_yaml(folder: Path, batch) -> dict:
    """args.yaml as BaseTrainer.__init__ writes it: every key of the default config, through Ultralytics' YAML."""
    from ultralytics.cfg import get_cfg
    from ultralytics.utils import YAML

    args = vars(get_cfg(overrides={"batch": batch, "data": "data.yaml", "model": "yolo11n.yaml"}))
    args["save_dir"] = str(folder)
    YAML.save(folder / "args.yaml", args)
    return yaml.safe_load((folder / "args.yaml").read_text())


@pytest.mark.parametrize("value", ["auto-plus", "auto-plus:fit", "auto-plus:0.8", "auto-plus:ladder:0.8"])
def test_args_yaml_holds_the_auto_plus_value_and_only_that_line_changes(tmp_path, value):
    before_text = (tmp_path / "args.yaml").read_text() if stock_args_yaml(tmp_path, -1) else ""
    records.write_args(trainer(tmp_path), Session(BatchSpec(), decides=True, value=value))
    after = yaml.safe_load((tmp_path / "args.yaml").read_text())
    assert after["batch"] == value
    old, new = before_text.splitlines(), (tmp_path / "args.yaml").read_text().splitlines()
    assert [(a, b) for a, b in zip(old, new) if a != b] == [("batch: -1", f"batch: {value}")]
    assert len(old) == len(new)


def test_args_yaml_of_a_measured_run_is_left_as_ultralytics_wrote_it(tmp_path):
    stock_args_yaml(tmp_path, 16)
    before = (tmp_path / "args.yaml").read_bytes()
    records.write_args(trainer(tmp_path), Session(BatchSpec(), decides=False, value=None))
    assert (tmp_path / "args.yaml").read_bytes() == before


@pytest.mark.parametrize(
    ("history", "expected"),
    [
        pytest.param(
            [{"batch": 96, "value": "auto-plus:speed", "policy": "speed", "reason": "r", "from_epoch": 1}],
            "auto-plus:speed",
            id="speed",
        ),
        pytest.param(
            [
                {
                    "source": "auto-plus",
                    "batch": 8,
                    "value": "auto-plus:goodput",
                    "policy": "goodput",
                    "reason": "r",
                    "from_epoch": 1,
                },
                {"source": "goodput", "batch": 40, "from_epoch": 2},
            ],
            "auto-plus:goodput",
            id="goodput-after-a-switch",
        ),
        pytest.param(
            [
                {
                    "source": "auto-plus",
                    "batch": 8,
                    "value": "auto-plus",
                    "policy": "ladder",
                    "reason": "r",
                    "from_epoch": 1,
                },
                {"source": "given", "batch": 16, "value": 16, "from_epoch": 3},
            ],
            16,
            id="after-a-resume-given-16",
        ),
    ],
)
def test_a_plain_resume_keeps_the_value_asked_for_in_args_yaml(tmp_path, history, expected):
    """Ultralytics rewrites args.yaml with the checkpoint's batch (96, 40, 16): the value asked for goes back."""
    stock_args_yaml(tmp_path, history[-1]["batch"])
    (tmp_path / DECISION_FILE).write_text(json.dumps({**history[0], "history": history}))
    s = Session(BatchSpec(), decides=False, value=None)
    records.note_start(trainer(tmp_path, resume=True, start_epoch=2), s)
    assert yaml.safe_load((tmp_path / "args.yaml").read_text())["batch"] == expected


def _decision(batch: int, policy: str = "ladder") -> dict:
    return {"batch": batch, "value": f"auto-plus:{policy}", "policy": policy, "reason": f"{batch} fits"}


def test_every_choice_is_kept_in_order_across_resumes(tmp_path):
    # session 1: auto-plus picks 8 at the start
    s1 = Session(BatchSpec(), decides=True, value="auto-plus")
    records.decided(trainer(tmp_path), s1, _decision(8))
    first = json.loads((tmp_path / DECISION_FILE).read_text())
    assert first["batch"] == 8 and first["from_epoch"] == 1 and first["source"] == "auto-plus"
    assert [(h["batch"], h["from_epoch"]) for h in first["history"]] == [(8, 1)]

    # session 2: resumed after epoch 2 with batch=16 given
    t2 = trainer(tmp_path, resume=True, batch=16)
    s2 = Session(BatchSpec(), decides=False, value=None, given=16)
    records.load_history(t2, s2)
    assert records.start_line(t2, s2) == "batch=16 given on resume; auto-plus picked 8 (ladder) from epoch 1"
    t2.start_epoch = 2  # resume_training, before on_train_start
    records.started(t2, s2)
    assert len(json.loads((tmp_path / DECISION_FILE).read_text())["history"]) == 1  # not yet: no epoch at 16
    records.epoch_end(t2, s2)

    # session 3: resumed after epoch 3 with batch=auto-plus:fit: decided before the epoch is known, written at start
    t3 = trainer(tmp_path, resume=True, batch=-1)
    s3 = Session(BatchSpec(policy="fit"), decides=True, value="auto-plus:fit")
    records.load_history(t3, s3)
    records.decided(t3, s3, _decision(32, "fit"))
    assert len(json.loads((tmp_path / DECISION_FILE).read_text())["history"]) == 2  # not yet: epoch unknown
    t3.start_epoch, t3.batch_size = 3, 32
    records.started(t3, s3)
    assert len(json.loads((tmp_path / DECISION_FILE).read_text())["history"]) == 2  # not yet: epoch 4 runs
    records.epoch_end(t3, s3)

    data = json.loads((tmp_path / DECISION_FILE).read_text())
    assert [(h["batch"], h["from_epoch"], h["source"]) for h in data["history"]] == [
        (8, 1, "auto-plus"),
        (16, 3, "given"),
        (32, 4, "auto-plus"),
    ]
    assert data["batch"] == 32 and data["policy"] == "fit" and data["from_epoch"] == 4  # the latest decision on top
    rows = [
        {"epoch": e, "batch": b, "accumulate": 2, "effective_batch": 64, "nbs": 64}
        for e, b in enumerate([8, 8, 16, 32], 1)
    ]
    line = summarize(rows, records.decision(s3))[1]
    assert line.startswith(
        "batch 8 -> 16 -> 32 (8 from epoch 1, picked by auto-plus (ladder); 16 from epoch 3, given on resume; "
        "32 from epoch 4, picked by auto-plus (fit)); "
    )


def test_a_change_joins_the_history_once_its_epoch_finished_and_a_resume_drops_what_ran_ahead(tmp_path):
    s = Session(BatchSpec(policy="goodput"), decides=True, value="auto-plus:goodput")
    records.decided(trainer(tmp_path), s, _decision(8, "goodput"))
    t = trainer(tmp_path, batch=32)
    switch = {"source": "goodput", "batch": 32, "previous_batch": 8, "reason": "faster", "from_epoch": 2}
    records.changed(t, s, switch, "goodput: faster")

    def on_disk():
        return [
            (h["source"], h["batch"], h["from_epoch"])
            for h in json.loads((tmp_path / DECISION_FILE).read_text())["history"]
        ]

    assert on_disk() == [("auto-plus", 8, 1)]  # epoch 2 runs at 32: not in the records yet
    step = {"source": "oom", "batch": 24, "previous_batch": 32, "reason": "out of memory at 32", "from_epoch": 2}
    records.changed(t, s, step, "out of memory at 32")  # the same epoch: only 24 trains it
    assert records.epoch_end(t, s) == (8, 24, "goodput: faster; then out of memory at 32")
    assert on_disk() == [("auto-plus", 8, 1), ("oom", 24, 2)]
    assert s.history[-1]["previous_batch"] == 8 and s.history[-1]["reason"] == "faster; then out of memory at 32"
    assert records.epoch_end(t, s) is None  # the next epoch changed nothing

    # a history written ahead of the checkpoint (an older release, or a kill between the two): a resume after
    # epoch 1 (start_epoch 1) keeps what finished by then
    s2 = Session(BatchSpec(), decides=False, value=None)
    t2 = trainer(tmp_path, resume=True, start_epoch=1, batch=8)
    records.load_history(t2, s2)
    records.started(t2, s2)
    assert on_disk() == [("auto-plus", 8, 1)]


def test_a_decision_file_without_history_reads_as_one_decision_from_epoch_1(tmp_path):
    (tmp_path / DECISION_FILE).write_text(json.dumps(_decision(16)))
    s = Session(BatchSpec(), decides=False, value=None)
    records.load_history(trainer(tmp_path, resume=True), s)
    assert [(h["batch"], h["from_epoch"], h["source"]) for h in s.history] == [(16, 1, "auto-plus")]


@pytest.mark.parametrize(
    ("resume", "decides", "given", "history", "expected"),
    [
        pytest.param(False, True, None, [], "batch=auto-plus", id="new-auto-plus"),
        pytest.param(False, False, None, [], "batch=8 (measuring only)", id="new-measured"),
        pytest.param(
            True,
            False,
            None,
            [{"batch": 8, "policy": "ladder", "from_epoch": 1}],
            "resuming at batch=8 from the checkpoint; auto-plus picked 8 (ladder) from epoch 1",
            id="resume-auto-plus-run",
        ),
        pytest.param(
            True, False, None, [], "resuming at batch=8 from the checkpoint (measuring only)", id="resume-measured"
        ),
        pytest.param(
            True,
            True,
            None,
            [{"batch": 8, "policy": "ladder", "from_epoch": 1}],
            "batch=auto-plus given on resume: auto-plus chooses the batch again; "
            "auto-plus picked 8 (ladder) from epoch 1",
            id="resume-with-auto-plus",
        ),
    ],
)
def test_start_line_says_what_is_true(tmp_path, resume, decides, given, history, expected):
    s = Session(BatchSpec(), decides=decides, value="auto-plus" if decides else None, given=given)
    s.history = history
    assert records.start_line(trainer(tmp_path, resume=resume), s) == expected


@pytest.mark.parametrize(
    ("batches", "decision", "expected"),
    [
        pytest.param([8, 8, 64], None, "batch 8 -> 64 as given", id="up-as-given"),
        pytest.param([64, 32, 32], _decision(64), "batch 64 -> 32 picked by auto-plus (ladder)", id="oom-step-down"),
        pytest.param([16, 64, 16], None, "batch 16 -> 64 -> 16 as given", id="down-and-up"),
    ],
)
def test_summary_lists_batches_in_the_epochs_order(batches, decision, expected):
    rows = [
        {"epoch": e, "batch": b, "accumulate": 1, "effective_batch": b, "nbs": 64} for e, b in enumerate(batches, 1)
    ]
    assert summarize(rows, decision)[1].startswith(expected + ";")


# ---------------------------------------------------------------------------------------------------------
# plan(): what a run records and where it writes


def test_registered_keywords_are_recorded_as_the_value_they_mean():
    from ultralytics.cfg import DEFAULT_CFG

    from yolo_batch import AutoPlus
    from yolo_batch.callbacks import callbacks
    from yolo_batch.wiring import Hook, plan

    for plugin, value in [(AutoPlus(), "auto-plus"), (AutoPlus(policy="fit", utilization=0.8), "auto-plus:fit:0.8")]:
        hooks = {event: [Hook(plugin, event)] for event in callbacks}
        overrides, _, s = plan(DEFAULT_CFG, {"data": "x.yaml"}, hooks)
        assert (overrides["batch"], s.value, s.decides) == (-1, value, True)
        assert (s.spec.policy, s.spec.utilization) == (plugin.spec.policy, plugin.spec.utilization)


def test_a_rerun_of_args_yaml_gets_a_new_folder_and_a_resume_keeps_its_own(tmp_path):
    from ultralytics.cfg import DEFAULT_CFG

    from yolo_batch.wiring import plan

    run = tmp_path / "run"
    run.mkdir()
    (run / "args.yaml").write_text("batch: auto-plus\n")
    overrides, _, s = plan(DEFAULT_CFG, {"batch": "auto-plus", "save_dir": str(run), "name": "run"}, None)
    assert "save_dir" not in overrides and s.earlier_run == str(run)
    fresh = tmp_path / "fresh"
    fresh.mkdir()  # a folder made for the run (MultiTrainer, tune trials): used as named
    assert plan(DEFAULT_CFG, {"batch": "auto-plus", "save_dir": str(fresh)}, None)[0]["save_dir"] == str(fresh)


def test_a_resume_with_a_given_batch_is_noted(tmp_path):
    from ultralytics.cfg import DEFAULT_CFG

    from yolo_batch.wiring import plan

    last = tmp_path / "run" / "weights" / "last.pt"
    last.parent.mkdir(parents=True)
    (tmp_path / "run" / DECISION_FILE).write_text(json.dumps(_decision(8)))
    _, _, s = plan(DEFAULT_CFG, {"resume": str(last), "batch": 16}, None)
    assert (s.decides, s.given) == (False, 16)
    _, _, s = plan(DEFAULT_CFG, {"resume": str(last)}, None)
    assert (s.decides, s.given) == (False, None)


# ---------------------------------------------------------------------------------------------------------
# get_cfg: auto-plus outside training


@pytest.mark.parametrize("mode", ["val", "predict", "export", "track", "benchmark"])
def test_get_cfg_refuses_auto_plus_outside_training_in_one_line(mode):
    from ultralytics.cfg import get_cfg

    with pytest.raises(
        AutoPlusError, match=rf"^batch='auto-plus:fit' chooses the training batch .*; {mode} takes an integer batch"
    ):
        get_cfg(overrides={"batch": "auto-plus:fit", "mode": mode})


def test_get_cfg_lets_auto_plus_through_for_training_and_leaves_stock_values_alone():
    from ultralytics.cfg import get_cfg

    assert get_cfg(overrides={"batch": "auto-plus:fit", "mode": "train", "epochs": 3}).batch == "auto-plus:fit"
    with pytest.raises(AutoPlusError, match="unknown policy 'fitt'"):
        get_cfg(overrides={"batch": "auto-plus:fitt", "mode": "train"})
    with pytest.raises(TypeError, match="'batch=sixteen' is of invalid type str"):  # Ultralytics' own check
        get_cfg(overrides={"batch": "sixteen", "mode": "val"})
    assert get_cfg(overrides={"batch": 16, "mode": "val"}).batch == 16


def test_settings_a_rerun_of_args_yaml_would_miss_are_named():
    from yolo_batch.core.spec import resolve_spec

    s = Session(
        resolve_spec("auto-plus:fit", {"candidates": [8], "policy": "fit"}), decides=True, value="auto-plus:fit"
    )
    assert records.unrecorded(s) == ["candidates=[8]"]
    s = Session(resolve_spec("auto-plus:fit:0.8"), decides=True, value="auto-plus:fit:0.8")
    assert records.unrecorded(s) == []
