"""Command-line helpers that ``cli``, ``report``, ``sweep`` and the benchmarks stand on.

``key=value`` words as ``yolo`` takes them, their converters, the checks of ``model=``, ``data=`` and
``device=`` that the commands make before anything runs, and the stock ``yolo`` command run as a child that
Ctrl-C stops quietly. Standard library only at import time (`missing_input` asks Ultralytics where it would
look for a file name); nothing here imports another ``yolo_batch`` command module, so the commands import this
one and never each other.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

from yolo_batch.core.spec import AutoPlusError, _closest

STOP_SECONDS = 30  # how long a stopped training may take to exit before it is killed


def parse_pairs(args: list[str], valid: dict[str, Callable[[str], Any]], command: str) -> dict[str, Any]:
    """Parse ``key=value`` arguments against ``valid`` (name -> converter); one-line errors.

    Args:
        args (list[str]): The words as typed.
        valid (dict): Each valid key and the converter of its value (raising TypeError or ValueError).
        command (str): The command's name, for the error messages.

    Returns:
        (dict): Each given key's converted value.

    Raises:
        AutoPlusError: For a word without ``=``, an unknown key (with the closest valid one) or a bad value.

    Examples:
        >>> parse_pairs(["epochs=3"], {"epochs": int}, "demo")
        {'epochs': 3}
    """
    out: dict[str, Any] = {}
    for a in args:
        key, eq, raw = a.partition("=")
        if not eq:
            raise AutoPlusError(f"{command}: argument {a!r} must be key=value; valid keys: {', '.join(valid)}")
        if key not in valid:
            raise AutoPlusError(
                f"{command}: unknown argument {key!r}{_closest(key, list(valid))}; valid: {', '.join(valid)}"
            )
        try:
            out[key] = valid[key](raw)
        except (TypeError, ValueError) as e:
            raise AutoPlusError(f"{command}: {key}={raw!r} is invalid: {e}") from None
    return out


def boolean(raw: str) -> bool:
    """``true``/``1``/``yes`` or ``false``/``0``/``no`` (any case) as a bool.

    Examples:
        >>> boolean("Yes"), boolean("0")
        (True, False)
    """
    low = raw.strip().lower()
    if low in {"true", "1", "yes"}:
        return True
    if low in {"false", "0", "no"}:
        return False
    raise ValueError("expected true or false")


def positive(raw: str) -> int:
    """An integer >= 1.

    Examples:
        >>> positive("16")
        16
    """
    v = int(raw)
    if v < 1:
        raise ValueError("expected a positive integer")
    return v


def missing_input(key: str, value: Any) -> str | None:
    """What is wrong with ``model=`` or ``data=`` before Ultralytics reads it: one line, or None when it is found.

    A path (with a folder in it) must exist. A bare ``.yaml`` name must be a file here or one Ultralytics ships
    (``coco8.yaml``, ``yolo11n.yaml``). Anything else (a dataset name such as ``imagenet10``, a URL, a bare
    ``.pt`` name Ultralytics would download) is left to Ultralytics.

    Args:
        key (str): ``model`` or ``data``.
        value (Any): The value as typed.

    Returns:
        (str | None): E.g. ``"data=/x/data.yaml does not exist"``; None when there is nothing to say.

    Examples:
        >>> missing_input("data", "/nowhere/data.yaml")
        'data=/nowhere/data.yaml does not exist'
    """
    text = str(value).strip()
    path = Path(text).expanduser()
    if not text or "://" in text or path.exists():
        return None
    if "/" in text or os.sep in text:
        return f"{key}={text} does not exist"
    if path.suffix.lower() not in {".yaml", ".yml"}:
        return None
    from ultralytics.utils.checks import check_yaml

    names = [text, re.sub(r"(\d+)([nslmx])(.+)?$", r"\1\3", text)] if key == "model" else [text]
    for name in names:  # as Ultralytics resolves a model yaml: yolo11n.yaml is yolo11.yaml at scale n
        try:
            check_yaml(name)
            return None
        except FileNotFoundError:
            continue
    return f"{key}={text} is neither a file here nor one Ultralytics ships"


def invalid_value(pairs: dict[str, str]) -> str | None:
    """What Ultralytics' own checks would refuse in ``yolo train`` words, before anything runs: one line, or None.

    The values are read as ``yolo`` reads them (`ultralytics.cfg.parse_key_value_pair`) and checked by the checks the
    trainer makes: ``check_cfg`` (each typed key's type and range: ``epochs=-1``, ``lr0=abc``, ``amp=maybe``) and
    ``check_imgsz`` (``imgsz=abc``). ``batch`` is left out: an auto-plus value is the plugin's.

    Args:
        pairs (dict[str, str]): Each ``key=value`` word's key and value as typed.

    Returns:
        (str | None): Ultralytics' own message as one line, e.g. ``'epochs=-1' is an invalid value. 'epochs' must
            be >= 1.``; None when the checks pass.

    Examples:
        >>> invalid_value({"epochs": "-1", "batch": "auto-plus"})
        "'epochs=-1' is an invalid value. 'epochs' must be >= 1."
        >>> invalid_value({"epochs": "3", "imgsz": "64", "lr0": "1e-3"}) is None
        True
    """
    import logging

    from ultralytics.cfg import check_cfg, parse_key_value_pair
    from ultralytics.utils import LOGGER
    from ultralytics.utils.checks import check_imgsz

    values = {}
    for key, raw in pairs.items():
        if key == "batch":
            continue
        if not str(raw).strip():
            return f"{key}= has no value"
        values[key] = parse_key_value_pair(f"{key}={raw}")[1]
    try:
        check_cfg(values)
    except (TypeError, ValueError) as e:
        return " ".join(str(e).split())
    if values.get("imgsz") is None:
        return None
    level = LOGGER.level
    LOGGER.setLevel(logging.ERROR)  # the trainer says its own warnings (imgsz rounded to the stride) when it runs
    try:
        check_imgsz(values["imgsz"], stride=32, floor=32, max_dim=1)  # as the trainer checks it
    except (TypeError, ValueError) as e:
        said = " ".join(str(e).split())
        return said if "imgsz" in said else f"imgsz={pairs['imgsz']} is not a valid image size: expected imgsz=640"
    finally:
        LOGGER.setLevel(level)
    return None


def cuda_devices(device: Any) -> list[int] | None:
    """The CUDA devices a ``device=`` value names: None when unset or unknown, [] for cpu and mps.

    Examples:
        >>> cuda_devices("0,1"), cuda_devices("cpu"), cuda_devices(None), cuda_devices("cuda:1")
        ([0, 1], [], None, [1])
    """
    if device is None or str(device).strip() == "":
        return None
    text = ",".join(map(str, device)) if isinstance(device, (list, tuple)) else str(device)
    text = text.lower().replace(" ", "").strip("[]()").replace("cuda:", "")
    if text in {"cpu", "mps"} or text.startswith("mps:"):
        return []
    if text == "cuda":
        return [0]
    parts = text.split(",")
    return [int(p) for p in parts] if all(re.fullmatch(r"-?\d+", p) for p in parts) else None


def yolo_command() -> list[str]:
    """The stock ``yolo`` entrypoint of this Python environment."""
    exe = Path(sys.executable).with_name("yolo")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("yolo")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from ultralytics.cfg import entrypoint; sys.exit(entrypoint())"]


def run_env() -> dict[str, str]:
    """Environment for training subprocesses: offline, and all CPU cores (Ultralytics defaults to 1)."""
    env = dict(os.environ)
    env.setdefault("YOLO_OFFLINE", "1")
    env.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1))
    return env


def run_child(cmd: list[str], env: dict[str, str] | None = None, log: Path | None = None) -> int:
    """Run a training command to its end; Ctrl-C stops it without a second traceback.

    The child runs in its own session, so the terminal's Ctrl-C reaches this process alone. On Ctrl-C (or
    SIGTERM, SIGHUP) the child's whole process group (its dataloader workers too) gets SIGTERM, which ends it
    quietly at the state its last epoch saved, and is killed after `STOP_SECONDS`; then `KeyboardInterrupt`
    is raised here for the caller to say how to go on. On Linux the child is tethered to this process
    (`yolo_batch.tools.tether`): if this process dies without a word (``kill -9``, the OOM killer), the child
    gets the same SIGTERM instead of training on unseen.

    Args:
        cmd (list[str]): The command line.
        env (dict | None): Its environment; None inherits this one.
        log (Path | None): A file to append the child's output to (stdout and stderr); None: this process's.

    Returns:
        (int): The child's exit status.

    Raises:
        KeyboardInterrupt: After the child was stopped.
    """
    out = None
    if log is not None:
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        out = open(log, "ab")  # closed in the finally below, after the child ends
    if sys.platform.startswith("linux"):
        cmd = [sys.executable, "-m", "yolo_batch.tools.tether", str(os.getpid()), *cmd]
    try:
        proc = subprocess.Popen(
            cmd, env=env, start_new_session=True, stdout=out, stderr=subprocess.STDOUT if out else None
        )
    except BaseException:
        if out is not None:
            out.close()
        raise
    old = {}

    def stop(signum, frame):  # noqa: ARG001 - the signal handler's signature
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is None:  # no SIGHUP on Windows
            continue
        try:
            old[sig] = signal.signal(sig, stop)
        except (TypeError, ValueError):  # no such signal here, or not the main thread: Ctrl-C alone
            pass
    try:
        while True:  # in slices: an interrupt raised without a signal (a cancelled Ray task) is seen at once
            try:
                return proc.wait(1.0)
            except subprocess.TimeoutExpired:
                continue
    except KeyboardInterrupt:
        _stop(proc)
        raise
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        if out is not None:
            out.close()


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the child's process group, SIGKILL if it is still there after `STOP_SECONDS`."""
    for sig, wait in ((signal.SIGTERM, STOP_SECONDS), (getattr(signal, "SIGKILL", signal.SIGTERM), None)):
        try:
            if hasattr(os, "killpg"):
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue
