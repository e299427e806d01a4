"""auto-plus under DDP, on CPU: two real ``gloo`` processes on 127.0.0.1 stand in for two GPUs of different sizes.

Both ranks carry the YOLOv8s-640 memory law measured on a T4 (tests/memory_laws.py: 324 MB + 238 MB/image) and
plan at utilization 0.9. Rank 0 plays a 16 GiB GPU, rank 1 an 8 GiB GPU. By hand (MB = 1e6 bytes):

- rank 0: budget 0.9 x 16 GiB = 15461.9 MB; largest fit floor((15461.9 - 324) / 238) = 63
  ladder: 64 needs 15556 MB (no), 32 needs 7940 MB (yes) -> 32; fit: 63 rounded down to a multiple of 8 -> 56
- rank 1: budget 0.9 x 8 GiB = 7730.9 MB; largest fit floor((7730.9 - 324) / 238) = 31
  ladder: 32 needs 7940 MB (no), 16 needs 4132 MB (yes) -> 16; fit: 31 -> 24

So both ranks must train at 16 per GPU (ladder; global 32) or 24 per GPU (fit; global 48).
What needs real GPUs (NCCL, CUDA memory, a YOLO model under CUDA DDP) is listed in yolo_batch/device/ddp.py.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.memory_laws import YOLOV8S_640
from yolo_batch.core import policy
from yolo_batch.core.policy import GIB, MemoryModel
from yolo_batch.core.spec import AutoPlusError, resolve_spec
from yolo_batch.device import ddp

WORLD = 2
MODEL = MemoryModel(YOLOV8S_640)
BUDGETS = (0.9 * 16 * GIB, 0.9 * 8 * GIB)  # rank 0: 16 GiB GPU, rank 1: 8 GiB GPU
EXPECTED = {"ladder": ([32, 16], 16), "fit": ([56, 24], 24)}  # (each rank's own pick, the agreed per-GPU batch)
DATASET = 1000  # training images: caps each GPU at 500, above every pick here
LAUNCHER_SPEC = resolve_spec("auto-plus:fit", {"noise_scale": False})  # the value plus an AutoPlus(...) keyword


@pytest.fixture(autouse=True)
def _no_leftover_launch(monkeypatch):
    """Every test starts without a launcher's variables, and gets the outer environment back afterwards."""
    for k in (ddp.ENV, ddp.SPEC_ENV):
        monkeypatch.delenv(k, raising=False)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _join(rank: int, port: int) -> None:
    """Join the two-rank gloo group on loopback, as a DDP worker that torch.distributed.run started."""
    if sys.platform.startswith("linux"):
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD))
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD, timeout=timedelta(seconds=20)
    )


def _run_ranks(main, out: Path) -> list[dict]:
    """Run ``main(rank, port, out)`` in two processes; their JSON results in rank order.

    On Linux the ranks are forked (no second torch import: about 0.5 s instead of 5 s on two busy cores); the
    parent holds no process group and the ranks run only tiny tensor operations, so forking is safe here.
    """
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    mp.start_processes(main, args=(_free_port(), str(out)), nprocs=WORLD, join=True, start_method=method)
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(WORLD)]


def _rank_main(rank: int, port: int, out_dir: str) -> None:
    """Each rank picks from its own budget, then the ranks agree; rank 1 also fails once on purpose."""
    _join(rank, port)
    try:
        out: dict = {"worker_value": ddp.worker_value(), "rank": ddp.rank(), "spec": ddp.worker_spec().as_dict()}
        for spec in (resolve_spec("auto-plus"), ddp.worker_spec()):  # ladder, then the launcher's auto-plus:fit
            local = policy.choose(MODEL, BUDGETS[rank], spec, world=WORLD, dataset_size=DATASET).batch
            agreed, picks = ddp.agree(lambda local=local: local, WORLD)
            out[spec.policy] = {
                "local": local,
                "reduced": ddp.reduce_batch(local, WORLD),
                "gathered": ddp.gather_batches(local, WORLD),
                "agreed": agreed,
                "picks": picks,
            }

        def failing_pick() -> int:
            if rank == 1:
                raise AutoPlusError("no batch fits: simulated on rank 1")
            return 32

        try:
            ddp.agree(failing_pick, WORLD)
            out["failure"] = None
        except AutoPlusError as e:
            out["failure"] = str(e)

        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(out))
    finally:
        dist.destroy_process_group()


def _probe_main(rank: int, port: int, out_dir: str) -> None:
    """Under a real DDP model, rank 1 alone runs the probe's kind of step on the bare module."""
    _join(rank, port)
    try:
        out: dict = {}
        # The probe's steps run on the bare module: rank 1 alone does forward and backward; had that run a
        # gradient all-reduce it would wait for rank 0 (which is already in the next collective) until the timeout.
        torch.manual_seed(0)
        net = torch.nn.Linear(4, 2)
        trainer = SimpleNamespace(model=torch.nn.parallel.DistributedDataParallel(net))
        if rank == 1:
            with ddp.unwrapped(trainer) as bare:
                out["bare_is_module"] = bare is net and trainer.model is net
                bare(torch.randn(8, 4)).sum().backward()
                bare.zero_grad(set_to_none=True)
        out["restored"] = isinstance(trainer.model, torch.nn.parallel.DistributedDataParallel)
        out["after_probe"] = ddp.reduce_batch(rank + 1, WORLD)
        trainer.model(torch.full((2, 4), float(rank + 1))).sum().backward()  # DDP still averages gradients
        out["grad"] = net.weight.grad.flatten().tolist()
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(out))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    """Run the two ranks once, after a launcher set YOLO_BATCH_DDP as it would; their results in rank order."""
    out = tmp_path_factory.mktemp("ddp")
    previous = {k: os.environ.get(k) for k in (ddp.ENV, ddp.SPEC_ENV)}
    try:
        ddp.launcher_overrides("auto-plus:fit", "0,1", {}, LAUNCHER_SPEC)  # the workers inherit the environment
        return _run_ranks(_rank_main, out)
    finally:
        ddp.forget()
        os.environ.update({k: v for k, v in previous.items() if v is not None})


@pytest.mark.parametrize("policy", ["ladder", "fit"])
def test_ranks_agree_on_the_smallest_per_gpu_batch(ranks, policy):
    picks, per_gpu = EXPECTED[policy]
    assert [r[policy]["local"] for r in ranks] == picks  # the two budgets really pick differently
    for r in ranks:
        assert r[policy]["reduced"] == r[policy]["agreed"] == per_gpu == min(picks)
        assert r[policy]["gathered"] == r[policy]["picks"] == picks
    assert ddp.plan_global_batch(picks) == (per_gpu, per_gpu * WORLD)
    assert (per_gpu * WORLD) // WORLD == per_gpu  # what Ultralytics' _build_train_pipeline gives each GPU


def test_workers_see_the_launchers_value_and_settings(ranks):
    assert [r["worker_value"] for r in ranks] == ["auto-plus:fit", "auto-plus:fit"]
    assert [r["spec"] for r in ranks] == [LAUNCHER_SPEC.as_dict()] * WORLD  # keywords travel too
    assert ranks[0]["spec"]["policy"] == "fit" and ranks[0]["spec"]["noise_scale"] is False
    assert [r["rank"] for r in ranks] == [0, 1]


def test_a_failing_rank_stops_every_rank_without_a_hang(ranks):
    assert "rank(s) [1] found no per-GPU batch" in ranks[0]["failure"]
    assert ranks[1]["failure"] == "no batch fits: simulated on rank 1"  # its own error, re-raised


@pytest.mark.slow  # DistributedDataParallel imports torch._dynamo in each process: about 5 s on two CPU cores
def test_probe_on_the_bare_module_runs_no_collective(tmp_path):
    ranks = _run_ranks(_probe_main, tmp_path)
    assert ranks[1]["bare_is_module"] is True
    assert all(r["restored"] for r in ranks)
    assert [r["after_probe"] for r in ranks] == [1, 1]  # rank 1's bare step left no collective pending
    assert ranks[0]["grad"] == pytest.approx(ranks[1]["grad"])  # and the DDP step after it still all-reduces


# --------------------------------------------------------------------------------------------------------------
# Single-process parts: the launcher, the environment, the pure helpers.


@pytest.mark.parametrize(
    "device, n",
    [
        ("0,1", 2),
        ("cuda:0,1", 2),
        ("0, 1, 2, 3", 4),
        ([0, 1], 2),
        ((2, 3), 2),
        ("cuda:0", 1),
        ("0", 1),
        (0, 1),
        ("", 1),
        (None, 1),
        ("cpu", 0),
        ("mps", 0),
        ("-1,-1", 2),
        ("npu:0,1", 2),
        (torch.device("cuda", 1), 1),
        (torch.device("cpu"), 0),
    ],
)
def test_world_size_counts_devices_like_ultralytics(device, n):
    assert ddp.world_size(device) == n


@pytest.mark.parametrize("device", ["0,1", "cuda:0,1,2", [0, 1, 2, 3]])
def test_launcher_overrides_give_ultralytics_a_valid_batch(monkeypatch, device):
    from ultralytics.cfg import get_cfg

    given = {"batch": "auto-plus:fit", "device": device, "epochs": 3}
    got = ddp.launcher_overrides("auto-plus:fit", device, given)
    n = ddp.world_size(device)
    assert given["batch"] == "auto-plus:fit"  # not changed in place
    assert {k: v for k, v in got.items() if k != "batch"} == {"device": device, "epochs": 3}
    assert isinstance(got["batch"], int) and got["batch"] == n and got["batch"] % n == 0
    args = get_cfg(overrides={**got, "device": str(device)})  # Ultralytics' own type checks accept it
    assert not args.batch < 1.0  # BaseTrainer.train's DDP refusal
    assert os.environ[ddp.ENV] == "auto-plus:fit"


def test_settings_reach_only_workers_and_forget_clears_them(monkeypatch):
    for k in ("RANK", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    spec = resolve_spec("auto-plus", {"candidates": [8, 24], "utilization": 0.7, "lr_scaling": "sqrt"})
    ddp.launcher_overrides("auto-plus", "0,1", {}, spec)
    assert ddp.worker_spec() is None  # the launcher itself
    monkeypatch.setenv("RANK", "0")
    assert ddp.worker_spec() == spec and ddp.worker_spec().candidates == (8, 24)
    ddp.launcher_overrides("auto-plus:fit", "0,1", {})  # a later launch without settings drops the old ones
    assert ddp.worker_spec() is None and ddp.worker_value() == "auto-plus:fit"
    ddp.forget()
    assert ddp.ENV not in os.environ and ddp.SPEC_ENV not in os.environ


def test_launcher_overrides_refuse_bad_values_and_single_devices():
    with pytest.raises(AutoPlusError, match="unknown policy 'fitt'"):
        ddp.launcher_overrides("auto-plus:fitt", "0,1", {})
    with pytest.raises(AutoPlusError, match="names 1 GPU"):
        ddp.launcher_overrides("auto-plus", "0", {})
    assert ddp.ENV not in os.environ


def test_launched_forgets_the_value_even_when_training_fails(monkeypatch):
    monkeypatch.setenv(ddp.ENV, "auto-plus")
    monkeypatch.setenv(ddp.SPEC_ENV, "{}")
    assert ddp.launched(lambda: "done") == "done" and ddp.ENV not in os.environ and ddp.SPEC_ENV not in os.environ
    monkeypatch.setenv(ddp.ENV, "auto-plus")
    with pytest.raises(RuntimeError):
        ddp.launched(lambda: (_ for _ in ()).throw(RuntimeError("worker failed")))
    assert ddp.ENV not in os.environ


def test_worker_value_only_in_a_worker(monkeypatch):
    for k in ("RANK", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv(ddp.ENV, "auto-plus:0.8")
    assert ddp.worker_value() is None  # the launcher itself
    monkeypatch.setenv("LOCAL_RANK", "-1")
    assert ddp.worker_value() is None
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert ddp.worker_value() == "auto-plus:0.8"
    monkeypatch.delenv(ddp.ENV)
    assert ddp.worker_value() is None  # a DDP run that did not ask for auto-plus


def test_plan_global_batch_and_record():
    assert ddp.plan_global_batch([64, 32, 48, 32]) == (32, 128)
    with pytest.raises(AutoPlusError, match=r"rank\(s\) \[1\]"):
        ddp.plan_global_batch([32, 0])
    record = {"fixed_bytes": 324e6, "per_image_bytes": 238e6, "val_fixed_bytes": None, "val_per_image_bytes": None}
    r = ddp.record_fields(record, [32, 16], rank_index=0)
    assert (r["batch"], r["per_gpu_batch"], r["world_size"], r["local_batch"]) == (32, 16, 2, 32)
    assert r["per_gpu_predicted_peak_bytes"] == int(324e6 + 16 * 238e6)
    assert "per-GPU picks [32, 16]" in r["ddp_reason"] and "batch=32" in r["ddp_reason"]


def test_collectives_need_the_process_group_only_above_one_rank():
    assert not dist.is_initialized()
    assert ddp.reduce_batch(24, 1) == 24 and ddp.gather_batches(24, 1) == [24]
    assert ddp.agree(lambda: 24, 1) == (24, [24])
    with pytest.raises(AutoPlusError, match="process group"):
        ddp.reduce_batch(24, 2)
    assert [ddp.collective_device(b) for b in ("gloo", "nccl", "cpu:gloo,cuda:nccl")] == ["cpu", "cuda", "cpu"]


def test_unwrapped_leaves_a_plain_model_alone():
    net = torch.nn.Linear(2, 2)
    trainer = SimpleNamespace(model=net)
    with ddp.unwrapped(trainer) as m:
        assert m is net and trainer.model is net
    assert trainer.model is net
