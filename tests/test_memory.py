"""Memory backends on fake /proc and cgroup trees, and the one out-of-memory predicate."""

from __future__ import annotations

import pytest
import torch

from yolo_batch.device.memory import CPUMemory, Headroom, backend_for, is_oom

GIB = 2**30


def fake_tree(tmp_path, *, total_kb=32 * 2**20, available_kb=20 * 2**20, rss_kb=2**20, cgroup=None):
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "meminfo").write_text(f"MemTotal:       {total_kb} kB\nMemFree:  1 kB\nMemAvailable:   {available_kb} kB\n")
    (proc / "self" / "status").write_text(f"Name:\tpython\nVmHWM:\t {rss_kb * 2} kB\nVmRSS:\t {rss_kb} kB\n")
    (proc / "self" / "clear_refs").write_text("")
    cg = tmp_path / "cgroup"
    cg.mkdir()
    if cgroup == "v2":
        (cg / "memory.max").write_text(str(8 * GIB))
        (cg / "memory.current").write_text(str(3 * GIB))
        (cg / "memory.stat").write_text(f"anon 1\ninactive_file {1 * GIB}\n")
    elif cgroup == "v2-unlimited":
        (cg / "memory.max").write_text("max")
        (cg / "memory.current").write_text(str(3 * GIB))
    elif cgroup == "v1":
        (cg / "memory").mkdir()
        (cg / "memory" / "memory.limit_in_bytes").write_text(str(4 * GIB))
        (cg / "memory" / "memory.usage_in_bytes").write_text(str(1 * GIB))
        (cg / "memory" / "memory.stat").write_text("total_inactive_file 0\n")
    return CPUMemory(proc=proc, cgroup=cg)


@pytest.mark.parametrize(
    ("cgroup", "total", "free", "source"),
    [
        pytest.param(None, 32 * GIB, 20 * GIB, "MemAvailable", id="no-cgroup"),
        pytest.param("v2-unlimited", 32 * GIB, 20 * GIB, "MemAvailable", id="v2-unlimited"),
        # 8 GiB limit, 3 GiB used of which 1 GiB reclaimable page cache: 6 GiB free
        pytest.param("v2", 8 * GIB, 6 * GIB, "cgroup v2 limit", id="v2-limit"),
        pytest.param("v1", 4 * GIB, 3 * GIB, "cgroup v1 limit", id="v1-limit"),
    ],
)
def test_cpu_headroom_honours_container_limits(tmp_path, cgroup, total, free, source):
    h = fake_tree(tmp_path, cgroup=cgroup).headroom()
    assert (h.total_bytes, h.free_bytes, h.held_bytes, h.source) == (total, free, GIB, source)
    assert h.budget(0.5) == pytest.approx(0.5 * (free + GIB))
    assert h.line().startswith("cpu total ") and source in h.line()


def test_cpu_peak_reads_vmhwm_and_resets_through_clear_refs(tmp_path):
    mem = fake_tree(tmp_path, rss_kb=1000)
    assert mem.peak_bytes() == 2000 * 1024
    mem.reset_peak()
    assert (tmp_path / "proc" / "self" / "clear_refs").read_text() == "5" and mem.resettable


def test_real_process_peak_grows_with_an_allocation():
    mem = backend_for(torch.device("cpu"))
    mem.reset_peak()
    before = mem.peak_bytes()
    block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
    grown = mem.peak_bytes() - before
    del block
    assert grown > 48 * 2**20


def test_headroom_line_mentions_other_processes_only_when_known():
    h = Headroom("cuda:0", 80 * GIB, 70 * GIB, GIB, 2 * GIB, "cudaMemGetInfo")
    assert "other processes and contexts 2.00 GiB" in h.line() and h.usable_bytes == 71 * GIB


def test_unknown_device_kind_is_refused():
    with pytest.raises(ValueError, match="auto-plus measures memory on cuda, mps and cpu devices, not 'meta'"):
        backend_for(torch.device("meta"))


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        pytest.param(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True, id="cuda"),
        pytest.param(RuntimeError("HIP out of memory. Tried to allocate"), True, id="hip"),
        pytest.param(RuntimeError("XPU out of memory"), True, id="xpu"),
        pytest.param(
            RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling cublasCreate"), True, id="cublas"
        ),
        pytest.param(RuntimeError("cuDNN error: CUDNN_STATUS_INTERNAL_ERROR"), True, id="cudnn"),
        pytest.param(
            RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"),
            True,
            id="cpu",
        ),
        pytest.param(MemoryError(), True, id="python-memoryerror"),
        pytest.param(RuntimeError("mat1 and mat2 shapes cannot be multiplied"), False, id="shape-error"),
        pytest.param(ValueError("out of memory"), False, id="not-a-runtime-error"),
        pytest.param(KeyError("img"), False, id="keyerror"),
    ],
)
def test_one_oom_predicate(error, expected):
    assert is_oom(error) is expected


def test_a_runs_device_meter_has_one_writer_and_follows_the_device(monkeypatch):
    """`memory.bind` makes the meter once per device (a DDP rank's GPU replaces the one of construction)."""
    from yolo_batch.core.spec import BatchSpec
    from yolo_batch.device import memory
    from yolo_batch.session import Session

    made = []
    monkeypatch.setattr(memory, "backend_for", lambda device: made.append(str(device)) or CPUMemory())
    s = Session(BatchSpec(), decides=True, value="auto-plus")
    first = memory.bind(s.device, torch.device("cpu"))
    assert memory.bind(s.device, torch.device("cpu")) is first is s.backend  # the same device: the same meter
    head = memory.measure(s.device, torch.device("cpu"))
    assert s.headroom is head and head.total_bytes > 0 and made == ["cpu"]
    memory.bind(s.device, "cuda:1")  # _setup_ddp moved this rank to its own GPU
    assert made == ["cpu", "cuda:1"] and s.device.device == "cuda:1"
    with pytest.raises(AttributeError):
        s.backend = CPUMemory()  # read-only on the session: memory writes it


def test_a_goodput_switch_is_never_an_out_of_memory_error(tmp_path):
    """issue 21: is_oom(BatchSwitch(...)) was True, so a switch that escaped was reported as "out of memory at batch N".
    Its text still names "out of memory" (the only words Ultralytics' restart branch takes); the predicate says no."""
    from types import SimpleNamespace

    from yolo_batch.core.spec import BatchSpec
    from yolo_batch.session import ATTR, Session
    from yolo_batch.train import recovery
    from yolo_batch.train.rebuild import BatchSwitch, _SwitchBatch

    switch = BatchSwitch(_SwitchBatch(8, 32).message)
    assert isinstance(switch, RuntimeError) and "out of memory" in str(switch).lower()  # Ultralytics' restart test
    assert is_oom(switch) is False
    trainer = SimpleNamespace(last=tmp_path / "last.pt", epoch=1, batch_size=8)
    setattr(trainer, ATTR, Session(BatchSpec(policy="goodput", noise_scale=True), decides=True, value="auto-plus"))

    def escaped():
        raise switch

    with pytest.raises(BatchSwitch) as err:  # propagates untouched, not as "out of memory at batch 8 ..."
        recovery.guarded_train(trainer, escaped)
    assert err.value is switch
