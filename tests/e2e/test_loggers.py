"""The batch figures in the loggers Ultralytics opened: each logger's real package, offline, read back.

Each test turns one integration on in a fresh Ultralytics settings file and trains two tiny epochs with
``yolo train ... batch=auto-plus`` in a subprocess, as a user would: Ultralytics switches every integration
off while it sees pytest (``TESTS_RUNNING``), so the subprocess runs without ``PYTEST_CURRENT_TEST``. Then the
test reads back what the logger stored, with the logger's own reader where it has one, and checks the
figures against ``batch_effect.csv``, their steps against Ultralytics' own metrics in the same run, the
decision against ``batch_decision.json``, and that Ultralytics' run is the only one.
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

import pytest

from tests.conftest import train_in_process, yolo_train
from yolo_batch.record.effect import read_csv
from yolo_batch.record.loggers import FIGURES, params

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("loggers_on_path")]  # the packages: .loggers (conftest)

INTEGRATIONS = ("clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard", "wandb")


def _settings(tmp_path: Path, **on: bool) -> Path:
    """A YOLO_CONFIG_DIR whose settings turn on only the integrations named."""
    from ultralytics.utils import SETTINGS

    folder = tmp_path / "config"
    (folder / "Ultralytics").mkdir(parents=True)
    values = {**SETTINGS, **dict.fromkeys(INTEGRATIONS, False), **on}
    (folder / "Ultralytics" / "settings.json").write_text(json.dumps(values), encoding="utf-8")
    return folder


def _train(data: Path, tmp_path: Path, env: dict | None = None, ok: str | None = None, plots=True, **on: bool):
    """Two epochs of ``yolo train ... batch=auto-plus`` with the integrations ``on``: (run folder, output, rows).

    ``plots``: as Ultralytics' ``plots=`` (batch_effect.png is drawn only with it). ``ok``: an error of the
    logger's own Ultralytics callback that the run may end with (see its test).
    """
    env = {"YOLO_CONFIG_DIR": str(_settings(tmp_path, **on)), "PYTEST_CURRENT_TEST": None, **(env or {})}
    r = yolo_train(data, tmp_path, "auto-plus", env=env, epochs=2, plots=plots)
    out = r.stdout + r.stderr
    assert r.returncode == 0 or (ok and ok in out), out[-3000:]
    assert "batch figures not sent" not in out, out[-3000:]
    run = tmp_path / "run"
    rows = [r for r in read_csv(run / "batch_effect.csv") if r["epoch"] != "final"]
    assert len(rows) == 2
    return run, out, rows


def _expected(rows: list[dict]) -> list[dict[str, float]]:
    """Each epoch's figures, as batch_effect.csv has them."""
    return [{f"batch/{k}": float(r[k]) for k in FIGURES if r.get(k)} for r in rows]


def _decision(run: Path) -> dict:
    return params(json.loads((run / "batch_decision.json").read_text(encoding="utf-8")))


def test_mlflow_run_gets_the_figures_the_decision_and_the_files(tiny_data, tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run, _, rows = _train(tiny_data, tmp_path, env={"MLFLOW_TRACKING_URI": uri}, mlflow=True, tensorboard=True)
    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    (only,) = client.search_runs(experiments)  # Ultralytics' run, no second one
    rid = only.info.run_id
    assert only.info.status == "FINISHED"  # Ultralytics ended it after the plugin's on_train_end
    history = {k: client.get_metric_history(rid, k) for k in _expected(rows)[0]}
    own_steps = sorted(m.step for m in client.get_metric_history(rid, "train/box_loss"))
    for name, metrics in history.items():
        assert sorted(m.step for m in metrics) == own_steps == [0, 1]  # MLflow's step is trainer.epoch
        assert [m.value for m in sorted(metrics, key=lambda m: m.step)] == [e[name] for e in _expected(rows)]
    logged = {k.split("/", 1)[1]: v for k, v in only.data.params.items() if k.startswith("batch_decision/")}
    assert logged == {k: str(v) for k, v in _decision(run).items()}
    assert {"batch_decision.json", "batch_effect.png"} <= {a.path for a in client.list_artifacts(rid)}
    copy = client.download_artifacts(rid, "batch_decision.json", str(tmp_path / "back"))
    assert Path(copy).read_bytes() == (run / "batch_decision.json").read_bytes()
    # TensorBoard, on in the same run: the plot as an image, the decision as a text table
    events = _tensorboard(run)
    assert "batch/batch_effect" in events.Tags()["images"]
    assert f"| policy | {_decision(run)['policy']} |" in _tensorboard_text(events)


def _tensorboard(run: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    return EventAccumulator(str(run), size_guidance={"scalars": 0, "images": 0, "tensors": 0}).Reload()


def _tensorboard_text(events) -> str:
    return events.Tensors("batch_decision/text_summary")[0].tensor_proto.string_val[0].decode()


def _wandb_records(path: Path):
    """The records of a W&B run file (``run-<id>.wandb``: LevelDB log blocks of wandb_internal_pb2.Record)."""
    from wandb.proto import wandb_internal_pb2

    data, block, pos, part = path.read_bytes(), 32768, 7, b""
    assert data[:4] == b":W&B", data[:7]
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:
            pos += block - pos % block
            continue
        part, pos = part + data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind in (1, 4):  # FULL, LAST
            record = wandb_internal_pb2.Record()
            record.ParseFromString(part)
            part = b""
            yield record


def test_wandb_offline_run_gets_the_figures_the_decision_and_the_files(tiny_data, tmp_path):
    pytest.importorskip("wandb")
    home = {k: str(tmp_path / "wandb-home") for k in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR")}
    env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", **home}
    run, _, rows = _train(tiny_data, tmp_path, env=env, wandb=True)
    pattern = "wandb/offline-run-*/run-*.wandb"  # in the run folder (Ultralytics 8.4) or the working one (8.3)
    (run_file,) = [*run.glob(pattern), *tmp_path.glob(pattern)]  # Ultralytics' run, no second one
    history, config, artifacts, metrics = [], {}, [], []
    for r in _wandb_records(run_file):
        kind = r.WhichOneof("record_type")
        if kind == "history":
            history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item})
        elif kind == "config":
            config.update({u.key: json.loads(u.value_json) for u in r.config.update})
        elif kind == "artifact":
            artifacts.append(r.artifact)
        elif kind == "metric":
            metrics.append((r.metric.glob_name, r.metric.step_metric))
    epochs = [h for h in history if "batch/batch" in h]
    assert [h["epoch"] for h in epochs] == [1, 2]
    for h, expected in zip(epochs, _expected(rows)):
        assert {k: h[k] for k in expected} == expected
        assert "train/box_loss" in h  # the same row (step) as Ultralytics' own metrics of that epoch
    assert ("batch/*", "epoch") in metrics
    assert config["batch_decision"] == _decision(run)
    (artifact,) = [a for a in artifacts if a.type == "batch_decision"]
    assert sorted(c.path for c in artifact.manifest.contents) == ["batch_decision.json", "batch_effect.png"]
    (image,) = [h for h in history if "batch/batch_effect" in h or "batch/batch_effect/path" in h]
    assert list((run_file.parent / "files" / "media" / "images" / "batch").glob("batch_effect_*.png"))


def _dvc_metric(folder: Path, name: str) -> list[tuple[int, float]]:
    lines = (folder / "plots" / "metrics" / f"{name}.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return [(int(s), float(v)) for s, v in (line.split("\t") for line in lines)]


def test_dvclive_in_a_dvc_repo_gets_the_figures_the_decision_and_the_files(tiny_data, tmp_path):
    pytest.importorskip("dvclive")
    from dvc.repo import Repo

    Repo.init(str(tmp_path), no_scm=True)
    run, _, rows = _train(tiny_data, tmp_path, dvc=True)
    live = tmp_path / "dvclive"  # DVCLive's folder, in the working directory
    own_steps = [s for s, _ in _dvc_metric(live, "train/box_loss")]
    for name in _expected(rows)[0]:
        got = _dvc_metric(live, name)
        assert [s for s, _ in got] == own_steps == [0, 1]
        assert [v for _, v in got] == [e[name] for e in _expected(rows)]
    import yaml

    assert yaml.safe_load((live / "params.yaml").read_text())["batch_decision"] == _decision(run)
    import cv2

    image = cv2.imread(str(live / "plots" / "images" / "batch_effect.png"))  # DVCLive saves it anew
    assert image is not None and image.shape == cv2.imread(str(run / "batch_effect.png")).shape
    assert (live / "artifacts" / "batch_decision.json").read_bytes() == (run / "batch_decision.json").read_bytes()


def test_tensorboard_and_dvclive_outside_a_dvc_repo_without_plots(tiny_data, tmp_path):
    """TensorBoard: scalars and the decision; DVCLive outside a repository: figures and params, and the run ends.

    ``plots=False``: no batch_effect.png is drawn, so none is sent (and Ultralytics' own DVCLive images, which
    fail outside a DVC repository, stay off).
    """
    pytest.importorskip("dvclive")
    pytest.importorskip("tensorboard")
    run, _, rows = _train(tiny_data, tmp_path, plots=False, dvc=True, tensorboard=True)
    assert not (run / "batch_effect.png").exists()
    events = _tensorboard(run)
    own_steps = [e.step for e in events.Scalars("train/box_loss")]
    for name in _expected(rows)[0]:
        got = events.Scalars(name)
        assert [e.step for e in got] == own_steps == [1, 2]
        assert [e.value for e in got] == pytest.approx([e[name] for e in _expected(rows)], rel=1e-6)
    assert events.Tags()["images"] == []
    assert f"| batch | {_decision(run)['batch']} |" in _tensorboard_text(events)
    live = tmp_path / "dvclive"
    assert [v for _, v in _dvc_metric(live, "batch/images_per_s")] == [e["batch/images_per_s"] for e in _expected(rows)]
    import yaml

    assert yaml.safe_load((live / "params.yaml").read_text())["batch_decision"] == _decision(run)
    assert not (live / "plots" / "images").exists()


def test_comet_offline_experiment_gets_the_figures_the_decision_and_the_files(tiny_data, tmp_path):
    pytest.importorskip("comet_ml")
    offline = tmp_path / "comet"
    env = {"COMET_START_ONLINE": "0", "COMET_OFFLINE_DIRECTORY": str(offline), "COMET_API_KEY": None}
    run, _, rows = _train(tiny_data, tmp_path, env=env, comet=True)
    (archive,) = offline.glob("*.zip")  # Ultralytics' experiment, no second one
    with zipfile.ZipFile(archive) as z:
        messages = [json.loads(line) for line in z.read("messages.json").splitlines()]
    metrics = [m["payload"]["metric"] for m in messages if m["type"] == "metric_msg"]
    own = [(m["step"], m["epoch"]) for m in metrics if m["metricName"] == "train/box_loss"]
    for name in _expected(rows)[0]:
        got = [m for m in metrics if m["metricName"] == name]
        assert [(m["step"], m["epoch"]) for m in got] == own and [m["epoch"] for m in got] == [1, 2]
        assert [m["metricValue"] for m in got] == [e[name] for e in _expected(rows)]
    logged = {
        p["paramName"][len("batch_decision_") :]: p["paramValue"]
        for m in messages
        if m["type"] == "parameter_msg" and (p := m["payload"]["param"])["paramName"].startswith("batch_decision_")
    }
    assert logged == _decision(run)
    uploads = {
        m["payload"]["additional_params"].get("fileName") or m["payload"]["additional_params"].get("figName")
        for m in messages
        if m["type"] == "file_upload"
    }
    assert {"batch_decision.json", "batch_effect"} <= uploads


# Ultralytics' own ClearML on_train_end fails in ClearML's offline mode (clearml 2.1.12), after the plugin's
# hook has sent everything: update_output_model needs a server-side model.
CLEARML_OFFLINE_END = "'DummyModel' object has no attribute 'locked'"


def _json_stream(text: str) -> list[dict]:
    """Events from ClearML's offline metrics file: JSON lists (or objects), one after another."""
    decoder, pos, events = json.JSONDecoder(), 0, []
    while (pos := len(text) - len(text[pos:].lstrip())) < len(text):
        value, pos = decoder.raw_decode(text, pos)
        events.extend(value if isinstance(value, list) else [value])
    return events


def test_clearml_offline_task_gets_the_figures_the_decision_and_the_files(tiny_data, tmp_path):
    pytest.importorskip("clearml")
    home = tmp_path / "home"
    env = {"CLEARML_OFFLINE_MODE": "1", "HOME": str(home), "CLEARML_CONFIG_FILE": None}
    run, _, rows = _train(tiny_data, tmp_path, env=env, ok=CLEARML_OFFLINE_END, clearml=True)
    (session,) = [p for p in (home / ".clearml" / "cache" / "offline").iterdir() if p.is_dir()]  # one task
    events = _json_stream((session / "metrics.jsonl").read_text(encoding="utf-8"))
    scalars = [e for e in events if e.get("type") == "training_stats_scalar"]
    own = [e["iter"] for e in scalars if e["metric"] == "train" and e["variant"] == "train/box_loss"]
    for name in _expected(rows)[0]:
        got = [e for e in scalars if e["metric"] == "batch" and e["variant"] == name.split("/", 1)[1]]
        assert [e["iter"] for e in got] == own == [0, 1]  # iteration=trainer.epoch, as Ultralytics reports
        assert [e["value"] for e in got] == [e[name] for e in _expected(rows)]
    assert any(e.get("type") == "training_debug_image" and e["variant"] == "batch_effect" for e in events)
    task = json.loads((session / "task.json").read_text())
    section = task["hyperparams"]["batch_decision"]
    assert {k: v["value"] for k, v in section.items()} == {k: str(v) for k, v in _decision(run).items()}
    assert "batch_decision" in {a["key"] for a in task["execution"]["artifacts"]}


def test_a_failing_logger_is_warned_about_once_and_training_goes_on(tiny_data, tmp_path, monkeypatch, caplog):
    """In-process: a TensorBoard whose writer fails on every call, turned on as Ultralytics turns it on."""
    from ultralytics import YOLO
    from ultralytics.utils.callbacks import tensorboard

    class BrokenWriter:
        calls = 0

        def __getattr__(self, name):
            def fail(*args, **kwargs):
                BrokenWriter.calls += 1
                raise OSError("disk full")

            return fail

    def start(trainer):  # Ultralytics' tensorboard.on_pretrain_routine_start, in effect
        tensorboard.WRITER = BrokenWriter()

    monkeypatch.setattr(tensorboard, "WRITER", None, raising=False)  # absent under pytest (TESTS_RUNNING)
    monkeypatch.setattr(tensorboard, "callbacks", {"on_pretrain_routine_start": start})
    model = YOLO("yolo11n.yaml")
    model.add_callback("on_pretrain_routine_start", start)
    train_in_process(model, tiny_data, tmp_path, batch="auto-plus", epochs=2)
    assert len(read_csv(tmp_path / "run" / "batch_effect.csv")) == 3  # two epochs and final: training went on
    assert caplog.text.count("TensorBoard: batch figures not sent (OSError: disk full)") == 1
    assert BrokenWriter.calls == 1  # left alone after the first failure
