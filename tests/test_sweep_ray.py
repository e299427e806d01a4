"""``yolo-batch sweep ... engine=ray`` without starting Ray: the engine's arguments, each refused in one line before
anything is written, its resources against ``device=``, the shared-storage checks, and that nothing imports Ray
unless ``engine=ray`` runs. The real Ray sweeps are in tests/e2e/test_sweep_ray.py."""

from __future__ import annotations

import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from tests.test_sweep import FakeYolo, base
from yolo_batch.tools import cli, sweep, sweep_command, sweep_engine, sweep_state


@pytest.fixture()
def no_ray(monkeypatch):
    """Ray not installed: an import of it fails (so a check that came after the import would show)."""
    monkeypatch.setitem(sys.modules, "ray", None)


@pytest.fixture()
def fake(monkeypatch) -> FakeYolo:
    f = FakeYolo()
    monkeypatch.setattr(sweep, "run_child", f)
    return f


@pytest.fixture()
def data(tmp_path) -> Path:
    path = tmp_path / "data.yaml"
    path.write_text("path: .\n")
    return path


@pytest.mark.parametrize(
    ("over", "expect"),
    [
        pytest.param({"engine": "dask"}, "unknown engine 'dask'; valid: local, ray", id="unknown-engine"),
        pytest.param({"engine": "rey"}, "unknown engine 'rey' (did you mean 'ray'?); valid: local, ray", id="misspelt"),
        pytest.param({"address": "auto"}, "address= applies only with engine=ray", id="address-without-ray"),
        pytest.param(
            {"engine": "local", "gpus_per_run": 1, "cpus_per_run": 2},
            "gpus_per_run=, cpus_per_run= apply only with engine=ray",
            id="resources-with-local",
        ),
        pytest.param(
            {"engine": "ray", "cpus_per_run": 0}, "cpus_per_run='0' is invalid: expected a positive", id="cpu0"
        ),
        pytest.param(
            {"engine": "ray", "gpus_per_run": -1}, "gpus_per_run='-1' is invalid: expected 0, a fra", id="gpu-"
        ),
        pytest.param({"engine": "ray", "gpus_per_run": 1.5}, "gpus_per_run='1.5' is invalid", id="gpu-1.5"),
        pytest.param({"engine": "ray", "gpus_per_run": "x"}, "gpus_per_run='x' is invalid", id="gpu-word"),
        pytest.param({"engine": "ray", "address": ""}, "address= is empty; address=auto joins", id="empty-address"),
        pytest.param(
            {"engine": "ray", "gpus_per_run": 1, "device": "cpu"},
            "gpus_per_run=1 asks a GPU for each run, but device=cpu trains without one",
            id="gpu-with-cpu-device",
        ),
        pytest.param(
            {"engine": "ray", "gpus_per_run": 0, "device": 0},
            "device=0 trains on a GPU, but gpus_per_run=0 gives each run none",
            id="no-gpu-with-gpu-device",
        ),
        pytest.param(
            {"engine": "ray", "gpus_per_run": 1, "device": "0,1"},
            "device=0,1 needs 2 GPUs per run, but gpus_per_run=1; Ray gives each run its own GPUs, numbered from 0",
            id="too-few-gpus",
        ),
        pytest.param(
            {"engine": "ray", "gpus_per_run": 0.5, "device": 2},
            "device=2 needs 3 GPUs per run, but gpus_per_run=0.5",
            id="index-past-the-runs-gpus",
        ),
        pytest.param(
            {"engine": "ray", "address": "auto", "project": "runs/x"},
            "with address= the dataset, the model file and project= must be on storage every node sees at the same "
            "absolute path; project=runs/x is relative",
            id="relative-project",
        ),
        pytest.param(
            {"engine": "ray", "address": "auto", "data": "data.yaml"}, "data=data.yaml is relative", id="relative-data"
        ),
        pytest.param(
            {"engine": "ray", "address": "auto", "data": "data.yaml", "project": "runs/x"},
            "data=data.yaml, project=runs/x are relative",
            id="relative-data-and-project",
        ),
        pytest.param(
            {"engine": "ray", "address": "auto", "model": "models/m.yaml"},
            "model=models/m.yaml is relative",
            id="relative-model-file",
        ),
        pytest.param(
            {"engine": "ray", "address": "auto", "data": "/nowhere/data.yaml"},
            "data=/nowhere/data.yaml does not exist",
            id="data-not-on-the-head",
        ),
        pytest.param({"engine": "ray", "batch": 8}, "batch= is set by the sweep itself", id="sweep-checks-too"),
        pytest.param(
            {"engine": "ray", "gpus_per_run": 0.5, "batches": "16,auto-plus"},
            "sweep: gpus_per_run=0.5 puts several runs on one GPU, but the auto-plus run(s) auto-plus plan for the "
            "free memory of the GPU they start on, and runs side by side would each plan for the same memory; give "
            "gpus_per_run=1, or list integer batches only",
            id="gpu-share-with-auto-plus",
        ),
        pytest.param(
            {"engine": "ray", "address": "nohost"},
            "sweep: address=nohost is not auto or HOST:PORT (e.g. address=10.0.0.5:6379)",
            id="address-without-port",
        ),
    ],
)
def test_bad_engine_arguments_fail_before_anything_runs(
    tmp_path, monkeypatch, capsys, fake, no_ray, data, over, expect
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "m.yaml").write_text("")  # there, but relative (relative-model-file)
    over = {"project": tmp_path / "sweep", "data": data, **over}
    assert cli.main(["sweep", *base(**over)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("yolo-batch: error: sweep: "), err
    assert expect in err[0]
    assert fake.calls == [] and not (tmp_path / over["project"]).exists()


def test_engine_ray_without_ray_says_how_to_install(tmp_path, capsys, no_ray, data):
    project = tmp_path / "sweep"
    assert cli.main(["sweep", *base(project, data=data), "engine=ray", "cpus_per_run=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        'yolo-batch: error: sweep: engine=ray needs Ray, which is not installed; pip install "yolo-batch[ray]"'
    ]
    assert not project.exists()


def test_another_recipe_is_refused_before_ray_starts(tmp_path, capsys, fake, no_ray, data):
    project = tmp_path / "sweep"
    assert sweep_command.sweep_cli(base(project, data=data)) == 0  # the local engine, with Ray not importable
    assert cli.main(["sweep", *base(project, data=data, epochs=3), "engine=ray"]) == 2
    assert "holds a sweep of another recipe (epochs: 2 there, 3 here)" in capsys.readouterr().err


def test_nothing_imports_ray_unless_engine_ray_runs():
    code = (
        "import sys, yolo_batch, yolo_batch.tools.cli, yolo_batch.tools.sweep, yolo_batch.tools.sweep_engine, "
        "yolo_batch.tools.sweep_ray; "
        "sys.exit('ray' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=60, check=False).returncode == 0


@pytest.mark.parametrize(
    ("opts", "device", "expect"),
    [
        pytest.param({}, None, {"cpus_per_run": 1, "gpus_per_run": None}, id="unset-decided-by-the-cluster"),
        pytest.param({}, "cpu", {"cpus_per_run": 1, "gpus_per_run": 0}, id="cpu"),
        pytest.param({"cpus_per_run": 4}, "mps", {"cpus_per_run": 4, "gpus_per_run": 0}, id="mps"),
        pytest.param({}, 0, {"cpus_per_run": 1, "gpus_per_run": 1}, id="one-gpu"),
        pytest.param({}, "0,1", {"cpus_per_run": 1, "gpus_per_run": 2}, id="two-gpus"),
        pytest.param({}, [0, 1], {"cpus_per_run": 1, "gpus_per_run": 2}, id="a-list"),
        pytest.param({}, "cuda:0", {"cpus_per_run": 1, "gpus_per_run": 1}, id="cuda:0"),
        pytest.param({}, -1, {"cpus_per_run": 1, "gpus_per_run": 1}, id="idlest-gpu"),
        pytest.param({"gpus_per_run": 0.5}, 0, {"cpus_per_run": 1, "gpus_per_run": 0.5}, id="half-a-gpu"),
        pytest.param({"gpus_per_run": 2}, None, {"cpus_per_run": 1, "gpus_per_run": 2}, id="given"),
    ],
)
def test_resources_follow_the_device(opts, device, expect):
    assert sweep_engine.resources(opts, {"device": device} if device is not None else {}) == expect


def test_a_node_sees_the_sweep_only_with_its_data_and_record(tmp_path, data):
    """What each Ray task checks on its node before its run: real files, as a node would see them."""
    project = tmp_path / "sweep"
    recipe, batches, _ = sweep.plan(base(project, data=data))
    assert sweep_engine.unseen(recipe, project) == f"{project / 'sweep.yaml'} with this sweep's recipe"  # not there
    sweep_state.write_record(project, recipe, batches)
    assert sweep_engine.unseen(recipe, project) is None
    assert sweep_engine.unseen({**recipe, "epochs": 9}, project).endswith("sweep.yaml with this sweep's recipe")
    data.unlink()
    assert sweep_engine.unseen(recipe, project) == f"data={data}"


def test_a_gpu_share_is_fine_for_integer_batches():
    assert sweep_engine.resources({"gpus_per_run": 0.5}, {"device": 0}, ["16", "32"])["gpus_per_run"] == 0.5


def test_an_address_where_nothing_listens_is_one_line_within_seconds(tmp_path, capsys, fake, data):
    """Ray would retry a dead address for minutes, a warning every 5 s; the sweep says it in one line."""
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    project = tmp_path / "sweep"
    t0 = time.monotonic()
    args = [*base(project, data=data), "engine=ray", f"address=127.0.0.1:{port}", "gpus_per_run=0"]
    assert cli.main(["sweep", *args]) == 2
    assert time.monotonic() - t0 < 30
    assert capsys.readouterr().err.splitlines() == [
        f"yolo-batch: error: sweep: nothing answers at address=127.0.0.1:{port} (connection refused); start the "
        f"cluster there (ray start --head --port={port}), or use address=auto for the cluster running on this machine"
    ]
    assert not project.exists() and fake.calls == []


def test_a_driver_that_loses_ray_while_waiting_says_so_in_one_line(monkeypatch, tmp_path):
    """``ray.wait`` itself failing (Ray's control store gone) ends the sweep with one line naming the runs it was
    waiting for; a node that dies under the runs is the e2e test of tests/e2e/test_sweep_ray.py."""
    queue = pytest.importorskip("ray.util.queue")
    from ray import exceptions

    from yolo_batch.core.spec import AutoPlusError
    from yolo_batch.tools import sweep_ray

    def wait(refs, **kw):
        raise exceptions.RaySystemError("GetAllNodeInfo failed\nthe control store at 192.0.2.2:6379 is gone")

    task = types.SimpleNamespace(remote=lambda *a: object())
    fake = types.SimpleNamespace(
        remote=lambda f: types.SimpleNamespace(options=lambda **kw: task), wait=wait, exceptions=exceptions
    )
    monkeypatch.setattr(queue, "Queue", lambda **kw: None)
    runs = [(b, tmp_path / b, "new", None) for b in ("4", "8")]
    with pytest.raises(AutoPlusError) as e:
        sweep_ray._drive(fake, {}, tmp_path, runs, {"cpus_per_run": 1, "gpus_per_run": 0}, [])
    assert str(e.value) == (
        "sweep: Ray stopped answering during batch=4, batch=8 (the control store at 192.0.2.2:6379 is gone); "
        "finished runs are kept, and the same sweep resumes the others from their last.pt once Ray runs again"
    )
