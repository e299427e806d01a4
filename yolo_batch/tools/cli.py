"""The ``yolo-batch`` command: ``demo``, ``make-data``, ``compare``, ``sweep``, ``plan``, ``defaults`` and ``cache``.

The command line follows the standard library's `argparse` (``--help`` and ``--version``, ``COMMAND --help``),
while a command's own arguments are ``key=value`` words, as with ``yolo``; a bad one gets one line naming it and
what is valid, and exit status 2. Each command is one row of `COMMANDS`: its function is imported when it runs,
so ``yolo-batch --help`` loads neither torch nor Ultralytics.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from yolo_batch.core.spec import POLICIES, AutoPlusError, _closest
from yolo_batch.tools.cmdline import boolean, parse_pairs, positive, run_child, run_env, yolo_command

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
MAKE_DATA: dict[str, Any] = {"out": "datasets/synthetic", "task": "detect", "n_train": 192, "n_val": 48}
MAKE_DATA.update(
    {"imgsz": 320, "classes": 3, "objects": (1, 4), "dense": False, "aspect": 1.0, "seed": 0}
)  # make_dataset's defaults (a test keeps them equal)


@dataclass(frozen=True)
class Command:
    """One ``yolo-batch`` command: where its function lives, and its help.

    Attributes:
        target (str): ``module:function``; the function takes the ``key=value`` words and returns the exit status.
        summary (str): One line for ``yolo-batch --help``.
        usage (str): The words after ``yolo-batch NAME``.
        description (str): What it does, for ``yolo-batch NAME --help``.
        keys (tuple): ``(key=default, meaning)`` pairs: the arguments it takes.
    """

    target: str
    summary: str
    usage: str
    description: str
    keys: tuple[tuple[str, str], ...] = ()
    flags: tuple[tuple[str, str], ...] = ()  # (--flag, meaning): on/off options passed on among the words

    def run(self, args: list[str]) -> int:
        """Import the command's function and run it on ``args``."""
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)(args)


COMMANDS = {
    "demo": Command(
        "yolo_batch.tools.cli:cmd_demo",
        "train yolo11n.yaml on a synthetic set with batch=auto-plus (the stock `yolo train`)",
        "[out=runs/demo] [epochs=30] [imgsz=160] [batch=auto-plus]",
        "Make a synthetic detection set, train yolo11n.yaml on it through the stock `yolo train` command, then "
        "print the batch decision and the final metrics. 2 min 33 s in all on 2 idle CPU cores (README: Quick start); "
        "longer on busy cores.",
        (
            ("out=runs/demo", "folder for the data and the run (out/train)"),
            ("epochs=30", "training epochs"),
            ("imgsz=160", "image size of the data and the training"),
            ("batch=auto-plus", "any yolo batch value: auto-plus, auto-plus:fit:0.8, 16, ..."),
        ),
    ),
    "make-data": Command(
        "yolo_batch.tools.cli:cmd_make_data",
        "write a synthetic set for any task and print its data= value",
        "[key=value ...]",
        "Write a deterministic synthetic set in Ultralytics layout (coloured shapes on noise) for any task and "
        "print what to pass as data= (a data.yaml, or the folder for classify). Equal arguments give "
        "byte-identical files.",
        (
            (f"out={MAKE_DATA['out']}", "output folder (a folder dedicated to this set)"),
            (f"task={MAKE_DATA['task']}", "detect, segment, pose, obb, classify, semantic or depth"),
            (f"n_train={MAKE_DATA['n_train']}", "training images"),
            (f"n_val={MAKE_DATA['n_val']}", "validation images"),
            (f"imgsz={MAKE_DATA['imgsz']}", "image side in pixels, 32..4096"),
            (f"classes={MAKE_DATA['classes']}", "number of classes, 1..8"),
            ("objects={},{}".format(*MAKE_DATA["objects"]), "MIN,MAX objects per image (each image draws a count)"),
            (f"dense={str(MAKE_DATA['dense']).lower()}", "true: 300 small objects per image on a grid"),
            (f"aspect={MAKE_DATA['aspect']}", "width / height, 0.25..4 (imgsz is then the long side)"),
            (f"seed={MAKE_DATA['seed']}", "random seed"),
        ),
    ),
    "compare": Command(
        "yolo_batch.tools.report:compare_cli",
        "table and plots of several finished runs",
        "RUN_DIR... [out=DIR]",
        "Print one row per run (batch, effective batch, epochs, the task's metrics best and final, final train "
        "loss, images/s, peak memory, wall time) and write comparison.csv and comparison.png. Stock runs "
        "compare too, with speed and memory left empty.",
        (
            ("RUN_DIR", "run folders written by yolo train (each holds results.csv), e.g. runs/detect/train"),
            ("out=DIR", "folder for comparison.csv and comparison.png (default: the runs' common parent)"),
        ),
    ),
    "sweep": Command(
        "yolo_batch.tools.sweep_command:sweep_cli",
        "train one recipe at several batches, then compare them",
        "model=... data=... batches=16,32,64,auto-plus epochs=N [key=value ...]",
        "Train the recipe at each batch with the same seed through the stock `yolo train`, one run after "
        "another (or side by side as Ray tasks: engine=ray), into project/<batch>/, then compare them into "
        "project/. Running the same command again reuses finished runs and resumes an interrupted one (Ctrl-C "
        "stops a sweep resumably).",
        (
            ("model=PATH", "the model (required), e.g. yolo11n.yaml or yolo11n.pt"),
            ("data=PATH", "the dataset (required), e.g. coco8.yaml"),
            ("batches=LIST", "comma-separated batches (required): integers and auto-plus values"),
            ("epochs=N", "epochs of every run (required)"),
            ("project=runs/sweep", "the sweep's folder"),
            ("seed=0", "the seed of every run"),
            ("val_batch=32", "the validation batch of every run (stock training validates at 2x its batch)"),
            ("engine=local", "local: one run after another here; ray: the runs as Ray tasks, side by side"),
            ("address=", "engine=ray: auto or HOST:PORT joins that cluster (shared absolute paths); else a local Ray"),
            ("gpus_per_run=", "engine=ray: GPUs of each run: 0, 0.5, 1, ... (default: device='s, else 1 if any)"),
            ("cpus_per_run=1", "engine=ray: CPUs of each run"),
            (
                "KEY=VALUE",
                "any other yolo train argument (`yolo cfg` lists them), except batch, name, "
                "exist_ok, resume, mode and time",
            ),
        ),  # fmt: skip
    ),
    "defaults": Command(
        "yolo_batch.tools.cli:cmd_defaults",
        "print the shipped auto-plus settings (cfg/auto_plus.yaml)",
        "",
        "Print the settings auto-plus uses when nothing overrides them, as YAML: a starting point for the file "
        "YOLO_BATCH_CONFIG names.",
    ),
    "plan": Command(
        "yolo_batch.tools.plan:cmd_plan",
        "the auto-plus decision without training, and what other memory sizes would pick",
        "model=... data=... [any yolo train key=value ...] [--json]",
        "Set the run up exactly as `yolo train` would (model, device, AMP, optimizer, augmentation), run the "
        "auto-plus probe, policy and verification, print the decision table and a what-if table for other "
        "memory sizes of the same device kind (an extrapolation from the measured law), then stop: no epoch "
        "is trained and nothing is written unless project= or name= is given (but the law cache, as any decision: "
        "yolo-batch cache).",
        (
            ("model=PATH", "the model (required), e.g. yolo11s.yaml or yolo11s.pt"),
            ("data=PATH", "the dataset, e.g. coco8.yaml"),
            ("batch=auto-plus", f"an auto-plus value: auto-plus[:{'|'.join(POLICIES)}][:FRACTION]"),
            (
                "project=, name=",
                "write batch_decision.json (with the what-if rows) to that folder, as yolo train names it",
            ),
            ("exist_ok=False", "True: write into an existing folder (never one holding a training run)"),
            ("KEY=VALUE", "any other yolo train argument (imgsz, device, amp, ...), except resume and mode"),
        ),
        (("--json", "print the record as JSON instead of the tables"),),
    ),
    "cache": Command(
        "yolo_batch.decide.lawcache:cache_cli",
        "list the law cache (repeat decisions skip the probe), or clear it",
        "[list|clear]",
        "List the memory laws that earlier decisions saved beside Ultralytics' settings (one per set-up: model, "
        "imgsz, task, AMP, optimizer, device and its memory, versions, the densest images), or remove them all. "
        "A repeat run on the same set-up checks the cached law with one verified step at the pick instead of "
        "probing; probe.cache: false turns the cache off.",
        (("list", "the entries, oldest first (the default)"), ("clear", "remove every entry")),
    ),
}


def version() -> str:
    """``yolo-batch X.Y.Z (ultralytics A.B.C, torch T, python P)``, read without importing torch.

    Examples:
        >>> version().startswith("yolo-batch ")
        True
    """
    from importlib import metadata

    from yolo_batch.version import __version__

    def installed(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    python = ".".join(map(str, sys.version_info[:3]))
    releases = f"ultralytics {installed('ultralytics')}, torch {installed('torch')}, python {python}"
    return f"yolo-batch {__version__} ({releases})"


class _Parser(argparse.ArgumentParser):
    """argparse, with every error one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        """Print ``yolo-batch: error: ...`` (one line) and exit 2."""
        command = self.prog.partition(" ")[2]
        print(f"yolo-batch: error: {command + ': ' if command else ''}{message}", file=sys.stderr)
        raise SystemExit(2)


class _Version(argparse.Action):
    """``--version``, computed only when asked for."""

    def __call__(self, parser, namespace, values, option_string=None) -> NoReturn:
        print(version())
        raise SystemExit(0)


def parser() -> argparse.ArgumentParser:
    """The ``yolo-batch`` parser: one subcommand per row of `COMMANDS`."""
    import textwrap

    def wide(prog: str) -> argparse.HelpFormatter:
        return argparse.RawDescriptionHelpFormatter(prog, max_help_position=24, width=110)

    top = _Parser(
        prog="yolo-batch",
        usage="yolo-batch [-h] [--version] COMMAND [key=value ...]",
        formatter_class=wide,
        description="Pick the training batch of Ultralytics YOLO from measured memory and read what the batch "
        "did.\nTraining itself stays with Ultralytics: yolo train ... batch=auto-plus",
        epilog="Arguments after a command are key=value words, as with `yolo`; "
        "`yolo-batch COMMAND --help` lists them\nwith their defaults.",
    )
    top.add_argument(
        "--version", action=_Version, nargs=0, help="print the versions of yolo-batch, ultralytics and torch"
    )
    sub = top.add_subparsers(dest="command", metavar="COMMAND [key=value ...]", title="commands", parser_class=_Parser)
    for name, c in COMMANDS.items():
        width = max((len(k) for k, _ in c.keys), default=0)
        keys = "\n".join(f"  {k.ljust(width)}  {what}" for k, what in c.keys)
        p = sub.add_parser(
            name,
            help=c.summary,
            usage=f"yolo-batch {name} {c.usage}".rstrip(),
            description=textwrap.fill(c.description, 108),
            epilog=f"arguments:\n{keys}" if keys else None,
            formatter_class=wide,
        )
        p.add_argument("words", nargs="*", help=argparse.SUPPRESS)
        for flag, what in c.flags:
            p.add_argument(flag, action="store_true", help=what)
    return top


def main(argv: list[str] | None = None) -> int:
    """Run the command line; errors are one line on stderr and exit status 2, Ctrl-C exit status 130."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["help"]:  # `yolo-batch help [COMMAND]`, as `yolo-batch [COMMAND] --help`
        argv = [*argv[1:2], "--help"]
    if not argv:
        parser().print_help()
        return 0
    if not argv[0].startswith("-") and argv[0] not in COMMANDS:
        return _fail(f"unknown command {argv[0]!r}{_closest(argv[0], list(COMMANDS))}; valid: {', '.join(COMMANDS)}")
    try:
        ns, extra = parser().parse_known_args(argv)
    except SystemExit as e:  # --help, --version, or a parse error already printed
        return int(e.code or 0)
    if extra:
        where = f"{ns.command}: " if ns.command else ""
        return _fail(f"{where}unrecognized arguments: {' '.join(extra)}{_takes(ns.command, extra)}")
    if ns.command is None:
        parser().print_help()
        return 0
    try:
        command = COMMANDS[ns.command]
        flags = [f for f, _ in command.flags if getattr(ns, f.lstrip("-").replace("-", "_"))]
        return command.run([*ns.words, *flags])
    except AutoPlusError as e:
        return _fail(str(e))
    except KeyboardInterrupt:
        print(f"yolo-batch: interrupted; run `yolo-batch {shlex.join(argv)}` to start again", file=sys.stderr)
        return 130


def _takes(name: str | None, extra: list[str]) -> str:
    """What the command ``name`` takes, from its own row of `COMMANDS`: the end of an unrecognized-arguments line.

    Examples:
        >>> _takes("cache", ["--force"]), _takes("demo", ["--epochs=3"])
        ('; cache takes list or clear', '; demo takes key=value words without dashes, e.g. epochs=3')
        >>> _takes("compare", ["-v"])
        '; compare takes RUN_DIR and key=value words, e.g. out=DIR'
    """
    if name is None:
        return f"; valid: --help, --version, or a command: {', '.join(COMMANDS)}"
    c = COMMANDS[name]
    words = [k for k, _ in c.keys if "=" not in k]
    pairs = [k for k, _ in c.keys if "=" in k and not k.endswith("=")]
    dashed = [w.lstrip("-") for w in extra if w.startswith("-") and "=" in w]
    flags = f", and {' '.join(f for f, _ in c.flags)}" if c.flags else ""
    if pairs and dashed:
        return f"; {name} takes key=value words without dashes, e.g. {dashed[0]}{flags}"
    if pairs:
        return f"; {name} takes {words[0] + ' and ' if words else ''}key=value words, e.g. {pairs[0]}{flags}"
    if words:
        return f"; {name} takes {' or '.join(words)}{flags}"
    return f"; {name} takes no arguments{flags.replace(', and ', ' but ')}"


def _fail(message: str) -> int:
    print(f"yolo-batch: error: {message}", file=sys.stderr)
    return 2


# ---------------------------------------------------------------------------------------------------------
# The commands that live here (the others are in report and sweep).


def _int_pair(raw: str) -> tuple[int, int]:
    """``MIN,MAX`` as two ints, e.g. ``objects=2,30``."""
    parts = raw.split(",")
    if len(parts) != 2:
        raise ValueError("expected MIN,MAX, e.g. 2,30")
    return int(parts[0]), int(parts[1])


def cmd_make_data(args: list[str]) -> int:
    """``yolo-batch make-data``: write the synthetic set and print its data.yaml path."""
    from yolo_batch.tools.datasets import make_dataset

    valid: dict[str, Callable[[str], Any]] = {
        "out": str,
        "task": str,
        "n_train": positive,
        "n_val": positive,
        "imgsz": positive,
        "classes": positive,
    }
    valid.update({"objects": _int_pair, "dense": boolean, "aspect": float, "seed": int})
    opts = parse_pairs(args, valid, "make-data")
    out = opts.pop("out", MAKE_DATA["out"])
    try:
        print(make_dataset(out, **opts))
    except ValueError as e:
        raise AutoPlusError(f"make-data: {e}") from None
    return 0


def cmd_demo(args: list[str]) -> int:
    """``yolo-batch demo``: the quick start, end to end through the stock ``yolo train``."""
    from yolo_batch.tools.datasets import make_dataset
    from yolo_batch.tools.report import print_run

    opts = parse_pairs(args, {"out": str, "epochs": positive, "imgsz": positive, "batch": str}, "demo")
    out = Path(opts.get("out", "runs/demo")).resolve()
    train: dict[str, Any] = {**DEMO_TRAIN, **{k: opts[k] for k in ("epochs", "imgsz") if k in opts}}
    data = make_dataset(out / "data", **{**DEMO_DATA, "imgsz": train["imgsz"]})
    cmd = [*yolo_command(), "train", "model=yolo11n.yaml", f"data={data}", f"batch={opts.get('batch', 'auto-plus')}"]
    cmd += [f"{k}={v}" for k, v in train.items()]
    cmd += ["amp=False", "plots=False", f"project={out}", "name=train", "exist_ok=True"]
    print("$ " + " ".join(cmd), flush=True)
    rc = run_child(cmd, run_env())
    if rc:
        print(f"yolo-batch: error: demo training failed (exit status {rc})", file=sys.stderr)
        return rc
    print_run(out / "train")
    return 0


def cmd_defaults(args: list[str]) -> int:
    """``yolo-batch defaults``: the shipped settings as YAML."""
    import yaml

    from yolo_batch.core.spec import BatchSpec

    if args:
        raise AutoPlusError(f"defaults takes no arguments, got {' '.join(args)!r}")
    d = BatchSpec().as_dict()
    d.pop("config")
    d["probe"] = {"batches": d.pop("probe_batches"), "val": d.pop("probe_val"), "verify": d.pop("verify")}
    d["probe"]["cache"] = d.pop("probe_cache")
    print(yaml.safe_dump(d, sort_keys=False), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
