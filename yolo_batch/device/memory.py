"""Memory headroom and peak meters per device kind: CUDA, MPS, and CPU RAM including container limits.

Every backend answers the same four questions: how much memory is there (`headroom`), start a peak
measurement (`reset_peak`), what was the peak since (`peak_bytes`), and give cached memory back
(`empty_cache`). Tests substitute a simulated GPU with the same interface (see ``tests/simulated.py``).
"""

from __future__ import annotations

import gc
import sys
from dataclasses import dataclass
from pathlib import Path

from yolo_batch.core.policy import gib


@dataclass(frozen=True)
class Headroom:
    """Memory facts of one device at one moment.

    Attributes:
        device (str): ``cuda:0``, ``mps`` or ``cpu``.
        total_bytes (int): Memory of the device (for the CPU: RAM, or the container limit when lower).
        free_bytes (int): Memory nobody holds now.
        held_bytes (int): Memory this process already holds (torch's reserved pool, or the CPU RSS).
        other_bytes (int): Device memory outside this process's torch pool: other processes and CUDA
            contexts (CUDA only; 0 elsewhere).
        source (str): Where the numbers come from, e.g. ``cgroup v2 limit``.
    """

    device: str
    total_bytes: int
    free_bytes: int
    held_bytes: int
    other_bytes: int
    source: str

    @property
    def usable_bytes(self) -> int:
        """Memory this process can reach at its peak: what is free plus what it already holds."""
        return self.free_bytes + self.held_bytes

    def budget(self, utilization: float) -> float:
        """Bytes to plan for at ``utilization`` of the usable memory."""
        return utilization * self.usable_bytes

    def line(self) -> str:
        """One log line, e.g. ``cuda:0 total 79.19 GiB, free 78.60 GiB, held by this process 0.20 GiB``."""
        other = f", other processes and contexts {gib(self.other_bytes)}" if self.other_bytes else ""
        return (
            f"{self.device} total {gib(self.total_bytes)}, free {gib(self.free_bytes)}, "
            f"held by this process {gib(self.held_bytes)}{other} ({self.source})"
        )


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


_LIBC = _libc()


class CPUMemory:
    """Process RAM: MemAvailable and the cgroup v2/v1 limit; peak = VmHWM, reset through clear_refs."""

    kind = "cpu"

    def __init__(self, proc: str | Path = "/proc", cgroup: str | Path = "/sys/fs/cgroup") -> None:
        """Read from ``proc`` and ``cgroup`` (parameters so tests can point at fake trees)."""
        self.proc, self.cgroup = Path(proc), Path(cgroup)
        self.resettable = True

    def _meminfo(self) -> dict[str, int]:
        out = {}
        for line in (self.proc / "meminfo").read_text().splitlines():
            k, _, v = line.partition(":")
            parts = v.split()
            if parts:
                out[k] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
        return out

    def _status(self, key: str) -> int:
        for line in (self.proc / "self" / "status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        return 0

    def _cgroup_limit(self) -> tuple[int, int, str] | None:
        """(limit, usage, source) of this process's memory cgroup, or None when unlimited or unknown."""
        candidates = [
            (self.cgroup / "memory.max", self.cgroup / "memory.current", self.cgroup / "memory.stat", "v2"),
            (
                self.cgroup / "memory" / "memory.limit_in_bytes",
                self.cgroup / "memory" / "memory.usage_in_bytes",
                self.cgroup / "memory" / "memory.stat",
                "v1",
            ),
        ]
        for limit_f, usage_f, stat_f, version in candidates:
            try:
                raw = limit_f.read_text().strip()
                usage = int(usage_f.read_text().strip())
            except (OSError, ValueError):
                continue
            if raw == "max" or int(raw) >= 2**60:
                return None
            cache = 0
            try:
                for line in stat_f.read_text().splitlines():
                    k, _, v = line.partition(" ")
                    if k in {"inactive_file", "total_inactive_file"}:
                        cache = int(v)
            except (OSError, ValueError):
                pass
            return int(raw), max(usage - cache, 0), f"cgroup {version} limit"
        return None

    def headroom(self) -> Headroom:
        """RAM facts; the cgroup limit wins when it is below the machine's memory."""
        if not (self.proc / "meminfo").exists():  # not Linux: psutil (an Ultralytics dependency)
            import psutil

            vm, rss = psutil.virtual_memory(), psutil.Process().memory_info().rss
            return Headroom("cpu", vm.total, vm.available, rss, 0, "psutil")
        info = self._meminfo()
        total, free, source = info["MemTotal"], info.get("MemAvailable", info.get("MemFree", 0)), "MemAvailable"
        cg = self._cgroup_limit()
        if cg and cg[0] < total:
            total, free, source = cg[0], min(free, max(cg[0] - cg[1], 0)), cg[2]
        return Headroom("cpu", total, free, self._status("VmRSS"), 0, source)

    def reset_peak(self) -> None:
        """Reset the process's peak RSS (VmHWM) to its current RSS, after handing freed heap back to the OS.

        Without the trim, memory that glibc keeps after an earlier, larger step would hide the growth of
        the next one.
        """
        self.empty_cache()
        try:
            (self.proc / "self" / "clear_refs").write_text("5")
        except OSError:
            self.resettable = False  # peak then covers the whole process life: an upper bound

    def peak_bytes(self) -> int:
        """Peak RSS since the last reset."""
        if (self.proc / "self" / "status").exists():
            return self._status("VmHWM")
        import resource

        scale = 1 if sys.platform == "darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale

    def current_bytes(self) -> int:
        """Current RSS."""
        return self._status("VmRSS")

    def empty_cache(self) -> None:
        """Collect garbage and return free heap pages to the OS (glibc ``malloc_trim``; a no-op elsewhere)."""
        gc.collect()
        if _LIBC is not None:
            _LIBC.malloc_trim(0)


class CUDAMemory:
    """One CUDA device: mem_get_info for free and total, torch's pool for this process, peak = max reserved."""

    kind = "cuda"

    def __init__(self, device) -> None:
        """Bind to a ``torch.device`` of type cuda."""
        import torch

        self.torch, self.device = torch, device
        self.index = device.index if device.index is not None else torch.cuda.current_device()

    def headroom(self) -> Headroom:
        """Free and total from the driver; what this process holds from torch; the rest is other processes."""
        cuda = self.torch.cuda
        free, total = cuda.mem_get_info(self.index)
        held = cuda.memory_reserved(self.index)
        other = max(total - free - held, 0)  # other processes and CUDA contexts, ours included
        return Headroom(f"cuda:{self.index}", total, free, held, other, "cudaMemGetInfo")

    def reset_peak(self) -> None:
        """Empty the cache, then count the peak from here."""
        self.empty_cache()
        self.torch.cuda.reset_peak_memory_stats(self.index)

    def peak_bytes(self) -> int:
        """Peak of torch's reserved pool: max allocated plus the allocator's overhead."""
        return int(self.torch.cuda.max_memory_reserved(self.index))

    def allocated_peak_bytes(self) -> int:
        """Peak of the tensors themselves (max allocated), beside the reserved pool's `peak_bytes`."""
        return int(self.torch.cuda.max_memory_allocated(self.index))

    def current_bytes(self) -> int:
        """Reserved now."""
        return int(self.torch.cuda.memory_reserved(self.index))

    def empty_cache(self) -> None:
        """Collect garbage and give cached blocks back to the driver."""
        gc.collect()
        self.torch.cuda.synchronize(self.index)
        self.torch.cuda.empty_cache()


class MPSMemory:
    """Apple MPS: the recommended working set as total; the driver's allocation, sampled, as the peak."""

    kind = "mps"

    def __init__(self, device) -> None:
        """Bind to the MPS device."""
        import torch

        self.torch, self._peak = torch, 0

    def headroom(self) -> Headroom:
        """Recommended working set minus what the driver holds for us."""
        mps = self.torch.mps
        total = int(mps.recommended_max_memory())
        held = int(mps.driver_allocated_memory())
        return Headroom("mps", total, max(total - held, 0), held, 0, "recommended working set")

    def reset_peak(self) -> None:
        """Empty the cache and restart the sampled peak."""
        self.empty_cache()
        self._peak = int(self.torch.mps.driver_allocated_memory())

    def sample(self) -> None:
        """Fold the current allocation into the peak (MPS keeps no peak counter)."""
        self._peak = max(self._peak, int(self.torch.mps.driver_allocated_memory()))

    def peak_bytes(self) -> int:
        """Largest sampled allocation since the reset."""
        self.sample()
        return self._peak

    def current_bytes(self) -> int:
        """Driver allocation now."""
        return int(self.torch.mps.driver_allocated_memory())

    def empty_cache(self) -> None:
        """Collect garbage and empty the MPS cache."""
        gc.collect()
        self.torch.mps.empty_cache()


def backend_for(device) -> CPUMemory | CUDAMemory | MPSMemory:
    """The memory backend of a ``torch.device``; tests replace this function to simulate a GPU."""
    kind = getattr(device, "type", str(device))
    if kind == "cuda":
        return CUDAMemory(device)
    if kind == "mps":
        return MPSMemory(device)
    if kind == "cpu":
        return CPUMemory()
    raise ValueError(f"auto-plus measures memory on cuda, mps and cpu devices, not {kind!r}")


def bind(meter, device):
    """The meter of ``device`` on a run's `session.DeviceMeter` (its one writer), made once per device.

    A DDP rank's GPU, set by Ultralytics after the trainer was built, replaces the meter of construction.
    """
    if meter.backend is None or str(device) != str(meter.device):
        meter.backend, meter.device = backend_for(device), device
    return meter.backend


def measure(meter, device):
    """The headroom of ``device`` now, kept on the `session.DeviceMeter` as the run's starting headroom."""
    meter.headroom = bind(meter, device).headroom()
    return meter.headroom


class NotOutOfMemory(RuntimeError):
    """An error whose text names "out of memory" for Ultralytics' restart branch, though no memory ran out.

    `rebuild.BatchSwitch` (a goodput switch) is one: `is_oom` is never True for it, so one that escaped is never
    reported as "out of memory at batch N".
    """


def is_oom(error: BaseException) -> bool:
    """The one out-of-memory predicate: CUDA/HIP/XPU/MPS out of memory, cuBLAS/cuDNN allocation failures, CPU.

    Every other error is not an OOM and must propagate untouched, and so is a `NotOutOfMemory` whatever its text.

    Examples:
        >>> is_oom(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")), is_oom(ValueError("x"))
        (True, False)
        >>> is_oom(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes"))
        True
        >>> is_oom(NotOutOfMemory("a switch through Ultralytics' out of memory restart (no memory ran out)"))
        False
    """
    if isinstance(error, NotOutOfMemory):
        return False
    if isinstance(error, MemoryError):
        return True
    if not isinstance(error, RuntimeError):
        return False
    text = str(error)
    return any(
        s in text
        for s in (
            "out of memory",
            "OutOfMemory",
            "CUBLAS_STATUS_ALLOC_FAILED",
            "CUDNN_STATUS_NOT_SUPPORTED",
            "CUDNN_STATUS_INTERNAL_ERROR",
            "unable to find an engine",
            "can't allocate memory",
            "DefaultCPUAllocator: not enough memory",
            "UR_RESULT_ERROR_OUT_OF_DEVICE_MEMORY",
        )
    )
