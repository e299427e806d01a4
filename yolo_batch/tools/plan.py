"""``yolo-batch plan``: the auto-plus decision for a training run, without training it.

The run is set up exactly as ``yolo train`` would set it up (the stock entrypoint parses the arguments, the
trainer builds the model, moves it to the device, checks AMP, and calls ``auto_batch``), so the probe sees the
same model, optimizer, augmentation, image size and AMP. Right after the decision the run is stopped: no
dataloader is built and no epoch is trained. The run folder the trainer made lives in a temporary folder and
is removed; with ``project=``/``name=`` the decision is written to that folder as ``batch_decision.json``.

After the decision comes a what-if table: the batch each policy would pick on other memory sizes of the same
device kind, from the measured memory law. It is an extrapolation (same model, image size, AMP and CUDA
context; the law's fixed part counted once), not a measurement.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from yolo_batch.activate import activate, env_switch, outside_range
from yolo_batch.core.decision_record import decision_table
from yolo_batch.core.spec import DISABLE_ENV, AutoPlusError, _closest, looks_like_auto_plus
from yolo_batch.core.spec import POLICIES as ALL_POLICIES
from yolo_batch.core.whatif import what_if, what_if_table
from yolo_batch.decide import decide
from yolo_batch.record.effect import write_json
from yolo_batch.tools.cmdline import boolean, cuda_devices, invalid_value, missing_input

VALUE = f"auto-plus[:{'|'.join(ALL_POLICIES)}][:FRACTION]"
USAGE = f"""usage: yolo-batch plan model=MODEL data=DATA [imgsz=640] [device=0] [batch={VALUE}]
                       [project=DIR name=NAME [exist_ok=False]] [any yolo train key=value ...] [--json]

Runs the auto-plus probe, policy and verification in the trainer's own set-up, prints the decision and a
what-if table for other memory sizes, and stops before the first epoch. Nothing is written unless project=
or name= is given (then batch_decision.json, with the what-if table, goes to that run folder; a folder that
exists already gets a numbered sibling, as with yolo train, unless exist_ok=True; a folder holding a training
run, or inside one, is never written to), but the law cache, as by any decision (yolo-batch cache). --json prints
the record instead of the tables.
"""


def _split(args: list[str]) -> tuple[list[str], dict[str, str], bool]:
    """(training words, plan's own project/name/exist_ok, --json) from the command line; one-line errors."""
    json_out = False
    words: list[str] = []
    own: dict[str, Any] = {}
    for a in args:
        if a == "--json":
            json_out = True
        elif a in {"-h", "--help"}:
            raise _Help
        elif a.startswith("-"):
            raise AutoPlusError(f"plan: unknown option {a!r}; valid: --json, --help")
        elif "=" not in a:
            raise AutoPlusError(f"plan: argument {a!r} must be key=value (as with yolo train)")
        else:
            key, _, value = a.partition("=")
            if key in {"project", "name", "exist_ok"}:
                own[key] = value
            elif key in {"mode", "resume"}:
                raise AutoPlusError(f"plan: {key}= does not apply: plan sets up a new training run and stops")
            else:
                words.append(a)
    if "exist_ok" in own:
        try:
            own["exist_ok"] = boolean(own["exist_ok"])
        except ValueError:
            raise AutoPlusError(f"plan: exist_ok={own['exist_ok']!r} is invalid: expected true or false") from None
    pairs = dict(w.split("=", 1) for w in words)
    batch = pairs.get("batch", "auto-plus")
    if not looks_like_auto_plus(batch):
        raise AutoPlusError(f"plan: batch={batch} is not an auto-plus value; use batch={VALUE}")
    if "," in pairs.get("device", "") or pairs.get("device", "").strip() in {"-1", "cuda:-1"}:
        raise AutoPlusError(
            f"plan: device={pairs['device']} names several devices; plan measures one: pass one device (device=0)"
        )
    if "batch" not in pairs:
        words.append("batch=auto-plus")
    if "model" not in pairs:
        raise AutoPlusError("plan: model= is required (for example model=yolo11n.yaml or model=yolo11n.pt)")
    if "data" not in pairs and not _cfg_sets(pairs.get("cfg"), "data"):  # else Ultralytics falls back to coco8
        raise AutoPlusError("plan: data= is required (for example data=path/to/data.yaml)")
    return words, own, json_out


def _cfg_sets(cfg: str | None, key: str) -> bool:
    """Whether a ``cfg=`` file sets ``key``; True when it cannot be read here (Ultralytics then says why)."""
    if not cfg:
        return False
    import yaml

    try:
        loaded = yaml.safe_load(Path(cfg).expanduser().read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return True
    return isinstance(loaded, dict) and loaded.get(key) is not None


def _check(pairs: dict[str, str]) -> None:
    """Refuse in one line what would stop the set-up with a traceback.

    That is: the plugin off, a key ``yolo`` does not know, a missing model or dataset file, a device that torch
    does not see here.
    """
    if env_switch(DISABLE_ENV):
        raise AutoPlusError(
            f"plan: {DISABLE_ENV}={os.environ.get(DISABLE_ENV)} turns yolo-batch off, so there is no auto-plus "
            f"decision to plan; unset {DISABLE_ENV} (or set it to 0)"
        )
    from ultralytics.cfg import DEFAULT_CFG_DICT

    outside = outside_range()  # before Ultralytics' own checks print the plugin-off line
    if outside:
        raise AutoPlusError(f"plan: {outside}")
    for key in pairs:
        if key not in DEFAULT_CFG_DICT:
            raise AutoPlusError(
                f"plan: unknown argument {key!r}{_closest(key, list(DEFAULT_CFG_DICT))}; valid: project, name, "
                "exist_ok, --json and any yolo train key (`yolo cfg` lists them)"
            )
    for key in ("model", "data"):
        problem = missing_input(key, pairs[key]) if key in pairs else None
        if problem:
            raise AutoPlusError(f"plan: {problem}")
    problem = invalid_value(pairs)  # what the trainer's own checks would refuse with a traceback (epochs=-1)
    if problem:
        raise AutoPlusError(f"plan: {problem}")
    _check_device(pairs.get("device"))


def _check_device(raw: str | None) -> None:
    """A CUDA or MPS ``device=`` that torch does not see here: one line."""
    import torch

    cuda = cuda_devices(raw)
    mps = torch.backends.mps.is_available()
    other = "device=cpu" + (" or device=mps" if mps else "")
    if cuda:
        count = torch.cuda.device_count()
        if count == 0:
            raise AutoPlusError(f"plan: device={raw} asks for a CUDA GPU, but torch sees none here; use {other}")
        if max(cuda) >= count:
            raise AutoPlusError(
                f"plan: device={raw} asks for CUDA GPU {max(cuda)}, but torch sees {count} here (0..{count - 1})"
            )
    elif cuda == [] and str(raw).strip().lower().startswith("mps") and not mps:
        raise AutoPlusError(f"plan: device={raw} asks for Apple's MPS, which torch does not see here; use device=cpu")


class _Help(Exception):
    pass


def plan(words: list[str]) -> tuple[dict[str, Any], str]:
    """Set up the training run of ``yolo train WORDS`` in a temporary folder, decide, stop; (record, task)."""
    import ultralytics.cfg

    activate()
    tmp = tempfile.mkdtemp(prefix="yolo-batch-plan-")
    argv = list(sys.argv)  # Ultralytics keeps sys.argv itself as ARGV: edit the list in place
    sys.argv[:] = ["yolo", "train", *words, f"project={tmp}", "name=plan", "exist_ok=True", "plots=False"]
    # a plan is no training run: no MLflow/W&B/DVC/... run is opened for it (`decide.no_loggers_in_a_plan`)
    try:
        with decide.planning():  # auto_batch raises Planned once the decision is made: nothing trains
            ultralytics.cfg.entrypoint()
    except decide.Planned as done:
        return done.record, done.task
    except (FileNotFoundError, ConnectionError, SyntaxError) as e:  # what _check could not foresee, as one line
        raise AutoPlusError(f"plan: {_line(e)}") from None
    except RuntimeError as e:
        if not str(e).startswith("Dataset "):
            raise
        raise AutoPlusError(f"plan: {_line(e)}") from None
    finally:
        sys.argv[:] = argv
        shutil.rmtree(tmp, ignore_errors=True)
    raise AutoPlusError("plan: the run did not reach the batch decision (is batch an auto-plus value?)")


def _line(e: BaseException) -> str:
    """An Ultralytics error as one line: its first non-empty line, without emoji."""
    lines = [x.strip() for x in str(e).splitlines() if x.strip()] or [type(e).__name__]
    return " ".join(w for w in lines[0].split() if w.isascii())


RUN_FILES = ("weights", "results.csv", "args.yaml")  # what marks a training run's folder
RUN_MARKS = ("weights", "results.csv", "batch_decision.json")  # beside args.yaml: a run's folder above the output


def _run_above(folder: Path) -> tuple[Path, list[str]] | None:
    """The training run's folder that ``folder`` would lie inside (and what marks it), or None.

    A folder above counts as a run's when it holds Ultralytics' ``args.yaml`` and one more mark of a run (``weights``,
    ``results.csv``, ``batch_decision.json``): a project's own ``weights`` folder of downloaded models is no run.
    """
    for parent in folder.resolve().parents:
        held = [f for f in ("args.yaml", *RUN_MARKS) if (parent / f).exists()]
        if "args.yaml" in held and len(held) > 1:
            return parent, held
    return None


def _out_dir(own: dict, pairs: dict[str, str]) -> Path:
    """The folder for ``batch_decision.json``: ``yolo train``'s for the same project/name, never in another run's.

    As with ``yolo train``, a folder that exists gets a numbered sibling (``name-2`` on 8.4) unless ``exist_ok``; a
    folder that holds a training run is refused even then, and so is any folder inside a run's (``project=RUN
    name=weights``), one line before the probe runs.
    """
    from types import SimpleNamespace

    from ultralytics.cfg import get_save_dir
    from ultralytics.nn.tasks import guess_model_task, yaml_model_load

    model = pairs["model"]
    if pairs.get("task") or own.get("project"):  # the project's own folder: the task does not enter the path
        task = pairs.get("task") or "detect"
    elif model.lower().endswith((".yaml", ".yml")):
        task = guess_model_task(yaml_model_load(model))  # from the model's head, without a warning on stdout
    else:
        task = _quiet(guess_model_task, model)
    ns = SimpleNamespace(project=own.get("project"), name=own.get("name") or "plan", task=task, mode="train")
    ns.exist_ok = own.get("exist_ok", False)
    folder = Path(get_save_dir(ns))
    held = [f for f in RUN_FILES if (folder / f).exists()]
    if held:
        raise AutoPlusError(
            f"plan: {folder} holds a training run ({', '.join(held)}); plan never writes into another run's folder: "
            "leave exist_ok out (plan then numbers a new folder, as yolo train does) or choose another name="
        )
    above = _run_above(folder)
    if above:
        raise AutoPlusError(
            f"plan: {folder} is inside the training run {above[0]} ({', '.join(above[1])}); plan never writes into "
            "another run's folder: choose a project= outside it"
        )
    return folder


def cmd_plan(args: list[str]) -> int:
    """``yolo-batch plan``: print the decision and the what-if table (or ``--json``); 0 on success."""
    try:
        words, own, json_out = _split(args)
    except _Help:
        print(USAGE, end="")
        return 0
    pairs = dict(w.split("=", 1) for w in words)
    _check(pairs)
    folder = _out_dir(own, pairs) if own.keys() & {"project", "name"} else None
    import contextlib

    # Ultralytics logs to stdout: with --json, stdout holds the JSON alone
    with contextlib.redirect_stdout(sys.stderr) if json_out else contextlib.nullcontext():
        record, task = _quiet(plan, words)
    record = {**record, "what_if": what_if(record)}
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / "batch_decision.json", record)
    if json_out:
        print(json.dumps(record, indent=2))
        return 0

    for line in [*decision_table(record), "", *what_if_table(record, record["what_if"])]:
        print(line)
    if folder is not None:
        print(f"\nwrote {folder / 'batch_decision.json'}")
    return 0


def _quiet(fn, *args):
    """Run ``fn`` with Ultralytics' info lines off (warnings and errors still show, on stderr)."""
    import logging

    from ultralytics.utils import LOGGER

    level, streams = LOGGER.level, [(h, getattr(h, "stream", None)) for h in LOGGER.handlers]
    LOGGER.setLevel(logging.WARNING)
    for h, _ in streams:
        if isinstance(h, logging.StreamHandler):
            h.setStream(sys.stderr)
    try:
        return fn(*args)
    finally:
        LOGGER.setLevel(level)
        for h, stream in streams:
            if stream is not None:
                h.setStream(stream)
