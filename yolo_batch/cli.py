"""The ``yolo-batch`` command: ``demo``, ``make-data``, ``compare``, ``sweep`` and ``defaults``.

Arguments are ``key=value`` pairs, as with ``yolo``; a bad one gets one line naming it and what is valid.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

from yolo_batch.spec import AutoPlusError, _closest

USAGE = """usage: yolo-batch COMMAND [key=value ...]

commands:
  demo       make the synthetic set, train yolo11n.yaml with batch=auto-plus through the stock `yolo` command,
             print the decision and the final metrics      (out=runs/demo epochs=30 imgsz=160)
  make-data  write the synthetic detection set             (out=datasets/synthetic n_train=192 n_val=48
                                                            imgsz=320 classes=3 dense=false seed=0)
  compare    table and plots of several runs               (RUN_DIR ... [out=DIR])
  sweep      train one recipe at several batches           (model=... data=... batches=16,32,64,auto-plus ...)
  plan       the auto-plus decision without training, and what other memory sizes would pick
                                                           (model=... data=... [any yolo train key=value] [--json])
  defaults   print the shipped auto-plus settings (cfg/auto_plus.yaml)
"""

# The demo's recipe, measured on 2 CPU cores: see README "Demo".
DEMO_DATA = {
    "n_train": 256,
    "n_val": 64,
    "imgsz": 160,
    "classes": 3,
    "objects": (1, 4),
    "size": (0.15, 0.35),
    "seed": 0,
}
DEMO_TRAIN = {
    "epochs": 30,
    "imgsz": 160,
    "close_mosaic": 5,
    "optimizer": "AdamW",
    "lr0": 0.003,
    "warmup_epochs": 1,
    "seed": 0,
}


def parse_pairs(args: list[str], valid: dict[str, Callable[[str], Any]], command: str) -> dict[str, Any]:
    """Parse ``key=value`` arguments against ``valid`` (name -> converter); one-line errors.

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


def _bool(raw: str) -> bool:
    low = raw.strip().lower()
    if low in {"true", "1", "yes"}:
        return True
    if low in {"false", "0", "no"}:
        return False
    raise ValueError("expected true or false")


def _positive(raw: str) -> int:
    v = int(raw)
    if v < 1:
        raise ValueError("expected a positive integer")
    return v


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


def cmd_make_data(args: list[str]) -> int:
    """``yolo-batch make-data``: write the synthetic set and print its data.yaml path."""
    from yolo_batch.datasets import make_dataset

    valid = {"out": str, "n_train": _positive, "n_val": _positive, "imgsz": _positive, "classes": _positive}
    valid.update({"dense": _bool, "seed": int})
    opts = parse_pairs(args, valid, "make-data")
    out = opts.pop("out", "datasets/synthetic")
    try:
        print(make_dataset(out, **opts))
    except ValueError as e:
        raise AutoPlusError(f"make-data: {e}") from None
    return 0


def cmd_demo(args: list[str]) -> int:
    """``yolo-batch demo``: the quick start, end to end through the stock ``yolo train``."""
    from yolo_batch.datasets import make_dataset
    from yolo_batch.report import print_run

    opts = parse_pairs(args, {"out": str, "epochs": _positive, "imgsz": _positive, "batch": str}, "demo")
    out = Path(opts.get("out", "runs/demo")).resolve()
    train = {**DEMO_TRAIN, **{k: opts[k] for k in ("epochs", "imgsz") if k in opts}}
    data = make_dataset(out / "data", **{**DEMO_DATA, "imgsz": train["imgsz"]})
    cmd = [*yolo_command(), "train", "model=yolo11n.yaml", f"data={data}", f"batch={opts.get('batch', 'auto-plus')}"]
    cmd += [f"{k}={v}" for k, v in train.items()]
    cmd += ["amp=False", "plots=False", f"project={out}", "name=train", "exist_ok=True"]
    print("$ " + " ".join(cmd), flush=True)
    rc = subprocess.call(cmd, env=run_env())
    if rc:
        print(f"yolo-batch: error: demo training failed (exit status {rc})", file=sys.stderr)
        return rc
    print_run(out / "train")
    return 0


def cmd_defaults(args: list[str]) -> int:
    """``yolo-batch defaults``: the shipped settings as YAML."""
    import yaml

    from yolo_batch.spec import BatchSpec

    d = BatchSpec().as_dict()
    d.pop("config")
    d["probe"] = {"batches": d.pop("probe_batches"), "val": d.pop("probe_val"), "verify": d.pop("verify")}
    print(yaml.safe_dump(d, sort_keys=False), end="")
    return 0


def cmd_compare(args: list[str]) -> int:
    """``yolo-batch compare RUN_DIR...``."""
    from yolo_batch.report import compare_cli

    return compare_cli(args)


def cmd_plan(args: list[str]) -> int:
    """``yolo-batch plan model=... data=... [key=value ...] [--json]``."""
    from yolo_batch.plan import cmd_plan as run

    return run(args)


def cmd_sweep(args: list[str]) -> int:
    """``yolo-batch sweep model=... data=... batches=...``."""
    from yolo_batch.sweep import sweep_cli

    return sweep_cli(args)


COMMANDS = {
    "demo": cmd_demo,
    "make-data": cmd_make_data,
    "compare": cmd_compare,
    "sweep": cmd_sweep,
    "plan": cmd_plan,
    "defaults": cmd_defaults,
}


def main(argv: list[str] | None = None) -> int:
    """Run the command line; errors are one line on stderr and exit status 2."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(USAGE, end="")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(
            f"yolo-batch: error: unknown command {name!r}{_closest(name, list(COMMANDS))}; "
            f"valid: {', '.join(COMMANDS)}",
            file=sys.stderr,
        )
        return 2
    try:
        return COMMANDS[name](rest)
    except AutoPlusError as e:
        print(f"yolo-batch: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
