"""A run's records say what happened: what the user asked for, and every batch the run chose, in order.

- ``args.yaml``: Ultralytics writes it in ``BaseTrainer.__init__``, before the batch is known, with the -1
  (or the DDP placeholder) auto-plus hands it, which would mean AutoBatch to anyone reusing the file.
  `write_args` puts the auto-plus value back, so ``yolo train cfg=runs/.../args.yaml`` runs auto-plus again;
  `fresh_save_dir` gives such a rerun a new run folder instead of the one named by the file's ``save_dir``.
- ``batch_decision.json``: the latest auto-plus decision at the top level and ``history``, every batch
  choice of the run oldest first (each auto-plus decision, each batch given with a resume, each goodput
  switch and out-of-memory step-down), with ``from_epoch``, the first epoch trained at it. A choice enters
  the history once an epoch at that batch has finished (`epoch_end`); a resume reads it back
  (`load_history`), drops what ran past the checkpoint (`started`) and appends.
- ``weights/last.pt``: Ultralytics' ``train_args`` hold the batch the run trains at (the pick, or its
  step-down), which is what a resume continues with; nothing here changes them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from yolo_batch.core.pace_record import SPEED
from yolo_batch.core.readback import INT, Damaged, ListOf, Maybe, Opt, read_json, shaped
from yolo_batch.core.spec import AutoPlusError, parse_batch_value, resolve_spec
from yolo_batch.device.ddp import rank
from yolo_batch.record.effect import atomic_write, write_json
from yolo_batch.session import DECISION_FILE, Session, log

if TYPE_CHECKING:
    from ultralytics.engine.trainer import BaseTrainer


ARGS_FILE = "args.yaml"
_ENTRY = {  # one choice of batch_decision.json's history (and its top level), as the readers of a resume use it
    "batch": INT,
    "from_epoch": Opt(INT),
    "source": Opt(str),
    "policy": Opt(Maybe(str)),
    "reason": Opt(str),
    "lr_scaling": Opt(Maybe(str)),
    "recipe": Opt(Maybe({"warmup_floor": Opt(Maybe(INT))})),
    "speed": Opt(Maybe(SPEED)),
    "settings": Opt(Maybe(dict)),
    "goodput": Opt(Maybe({"fit_bound": Opt(Maybe(INT))})),
}
DECISION = {**_ENTRY, "history": Opt(ListOf(_ENTRY))}


def fresh_save_dir(overrides: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    r"""Drop a ``save_dir`` that already holds a run (``cfg=`` of a run's own args.yaml names its folder).

    Ultralytics then names the new folder from ``project`` and ``name`` as for any new run (``run`` ->
    ``run2``), with ``exist_ok`` off: a file whose run had ``exist_ok=True`` would otherwise name its own folder
    again. A resume keeps its folder.

    Returns:
        (tuple): The overrides (a copy without ``save_dir`` when dropped) and the folder not written into, or None.

    Examples:
        >>> import tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> folder = Path(tmp.name)
        >>> fresh_save_dir({"save_dir": str(folder), "epochs": 3})[1] is None  # an empty folder is used as named
        True
        >>> _ = (folder / "args.yaml").write_text("batch: auto-plus\n")
        >>> fresh_save_dir({"save_dir": str(folder), "epochs": 3}) == ({"epochs": 3, "exist_ok": False}, str(folder))
        True
        >>> fresh_save_dir({"save_dir": str(folder), "resume": "last.pt"})[1] is None
        True
        >>> tmp.cleanup()
    """
    folder = overrides.get("save_dir")
    if not folder or overrides.get("resume") or not (Path(str(folder)) / ARGS_FILE).is_file():
        return overrides, None
    return {**{k: v for k, v in overrides.items() if k != "save_dir"}, "exist_ok": False}, str(folder)


def write_args(trainer: BaseTrainer, s: Session) -> None:
    """Put the auto-plus value (`asked`) where Ultralytics wrote the batch in ``args.yaml``.

    That is ``batch: -1`` (or the DDP placeholder), or on a plain resume the checkpoint's integer batch. Only the
    ``batch`` line changes; the rest of the file stays as Ultralytics wrote it.
    """
    import re

    import yaml

    path = Path(trainer.save_dir) / ARGS_FILE
    value = asked(trainer, s)
    if not (value and path.is_file()):
        return
    text = path.read_text(encoding="utf-8")
    line = yaml.safe_dump({"batch": str(value)}, allow_unicode=True).strip()
    new, n = re.subn(r"(?m)^batch:.*$", lambda _: line, text, count=1)
    if n and new != text:
        atomic_write(path, new)


def asked(trainer: BaseTrainer, s: Session) -> str | None:
    """The auto-plus value the run's args.yaml records: this run's, or on a plain resume the one its decision kept.

    A plain resume (no batch given) hands Ultralytics no batch: it rewrites args.yaml with the checkpoint's integer
    batch, the pick. The value the user asked for is the latest decision's ``value``; with no choice in the
    history (a damaged ``batch_decision.json`` was left out), the one args.yaml held before the resume. A resume
    given an integer batch records that integer (what the user asked for then), and so does a plain resume after it.
    """
    if s.decides:
        return s.value
    if not getattr(trainer, "resume", False) or s.given is not None:
        return None
    asked_for = [h for h in s.history if h.get("source", "auto-plus") in ("auto-plus", "given")]
    if not asked_for:  # the history was left out (a damaged batch_decision.json): args.yaml before the resume
        return s.asked_before
    if asked_for[-1].get("source", "auto-plus") != "auto-plus":
        return None
    value = asked_for[-1].get("value")
    return value if isinstance(value, str) and value else None


def before_resume(overrides: dict[str, Any]) -> tuple[int | None, str | None]:
    r"""On a resume: the run's args.yaml before Ultralytics rewrites it, read once: ``(batch, asked)``.

    ``batch`` is the integer batch the epochs so far trained at; ``asked`` the auto-plus value the run asked for
    (only a valid one), which `asked` falls back on when the decision history is left out (a damaged
    ``batch_decision.json``), so the resumed run's args.yaml still says it, not the checkpoint's integer batch.
    Read at ``wiring.plan``, before the trainer is built; what a resume changes (``batch=auto-plus`` on a stock
    run) is known only after. The checkpoint's ``train_args`` hold the same batch (Ultralytics writes args.yaml
    from them at every start), so a missing or unreadable args.yaml leaves both unknown (None).

    Examples:
        >>> import tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> run = Path(tmp.name)
        >>> resume = {"resume": str(run / "weights" / "last.pt")}
        >>> _ = (run / "args.yaml").write_text("batch: 8\n")
        >>> before_resume(resume), before_resume({"batch": 8})
        ((8, None), (None, None))
        >>> _ = (run / "args.yaml").write_text("batch: auto-plus:fit\n")
        >>> before_resume(resume)
        (None, 'auto-plus:fit')
        >>> _ = (run / "args.yaml").write_text("batch: auto-plus:nope\n")
        >>> before_resume(resume)
        (None, None)
        >>> tmp.cleanup()
    """
    value = _args_batch(overrides)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value, None
    if not isinstance(value, str):
        return None, None
    try:
        parse_batch_value(value)
    except AutoPlusError:
        return None, None
    return None, value.strip()


def _args_batch(overrides: dict[str, Any]) -> Any:
    """On a resume (``resume=.../weights/last.pt``): the ``batch`` of the run's args.yaml as written, else None."""
    import yaml

    resume = overrides.get("resume")
    if not isinstance(resume, (str, Path)) or not str(resume).endswith(".pt"):
        return None
    try:
        args = yaml.safe_load((Path(resume).resolve().parent.parent / ARGS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return None
    return args.get("batch") if isinstance(args, dict) else None


def load_history(trainer: BaseTrainer, s: Session) -> None:
    """On resume: read the run's earlier choices back from ``batch_decision.json``.

    A file without ``history`` (written before there was one) holds one decision, from epoch 1. A damaged file
    is left out with one line: the run goes on from its checkpoint, and its history starts again.
    """
    path = Path(trainer.save_dir) / DECISION_FILE
    if not path.is_file():
        return
    try:
        data = read_resumable(path)
    except Damaged as e:
        logger, prefix = log()
        logger.warning(f"{prefix}{e}; its earlier choices are left out, the run goes on from its checkpoint")
        return
    history = data.get("history") or [{**data, "source": "auto-plus", "from_epoch": data.get("from_epoch", 1)}]
    s.history = list(history)
    s.record = latest(s.history)


def read_decision(path: str | Path) -> dict[str, Any]:
    """A run's ``batch_decision.json``, of the shape its readers rely on (`DECISION`).

    Raises:
        readback.Damaged: One line naming the file and what is wrong (cut off, empty, bytes, another shape).
    """
    return read_json(path, DECISION)


def read_resumable(path: str | Path) -> dict[str, Any]:
    """A run's ``batch_decision.json`` as a resume needs it: `read_decision`, each auto-plus choice with its reason.

    The summary states each choice's policy and why, so a choice without them is damage.

    Raises:
        readback.Damaged: One line naming the file and what is wrong.
    """
    data = read_decision(path)
    for i, h in enumerate(data.get("history") or [data]):
        if h.get("source", "auto-plus") == "auto-plus":
            shaped(path, h, {"policy": str, "reason": str}, f"history[{i}]" if "history" in data else "")
    return data


def latest(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The latest auto-plus decision of a history, or None.

    Examples:
        >>> latest([{"source": "auto-plus", "batch": 8}, {"source": "given", "batch": 4}])
        {'source': 'auto-plus', 'batch': 8}
    """
    return next((h for h in reversed(history) if h.get("source", "auto-plus") == "auto-plus"), None)


def decision(s: Session) -> dict[str, Any] | None:
    """What ``batch_decision.json`` holds: the latest auto-plus decision and the run's ``history``; None if none."""
    top = latest(s.history) if s.history else s.record
    return {**top, "history": s.history or [top]} if top else None


def proposed(s: Session, record: dict[str, Any]) -> None:
    """A DDP rank's own decision, kept until the ranks agree (`decided` then writes it with their agreement)."""
    s.record = record


def decided(trainer, s: Session, record: dict[str, Any], fields: dict[str, Any] | None = None) -> None:
    """Keep the decision just made (``record``, with ``fields``: a DDP launch's agreement and lr scaling).

    A new run's joins the history from epoch 1 now, a resumed run's once it trained.

    A fresh run writes it at once (there is no checkpoint it could run ahead of); on resume ``trainer.auto_batch``
    runs before Ultralytics reads the checkpoint's epoch, so `started` queues it with its first epoch.
    """
    s.record = {**record, **(fields or {})}
    s.pending = True
    if not getattr(trainer, "resume", False):
        s.pending = False
        s.record = {**s.record, "source": "auto-plus", "from_epoch": 1}
        s.history.append(s.record)
        write(trainer, s)


def started(trainer: BaseTrainer, s: Session) -> None:
    """At ``on_train_start`` (the checkpoint's epoch is known): trim the history to it, queue a resume's choice.

    A resume continues after the checkpoint's last epoch: an entry from a later epoch never finished an epoch
    (the run was stopped inside it) and is dropped. A decision made on resume, or a batch given with it, waits
    for its first epoch to finish (`epoch_end`).
    """
    if not getattr(trainer, "resume", False):
        return
    kept = [h for h in s.history if h.get("from_epoch", 1) <= trainer.start_epoch]
    if len(kept) != len(s.history):
        s.history = kept
        write(trainer, s)
    first = trainer.start_epoch + 1
    if s.pending:
        s.pending = False
        assert s.record is not None  # pending: decided() kept it
        s.record = {**s.record, "source": "auto-plus", "from_epoch": first}
        s.waiting.append(s.record)
    elif s.given is not None and s.history:
        s.waiting.append({"source": "given", "batch": trainer.batch_size, "value": s.given, "from_epoch": first})


def changed(trainer: BaseTrainer, s: Session, entry: dict[str, Any], words: str) -> None:
    """A batch change inside the epoch now running (a goodput switch, an out-of-memory step-down).

    It waits for the epoch to finish (`epoch_end`). A second change in the same epoch (a switch that then ran
    out of memory) replaces the first: only the batch that finishes the epoch trained; the words keep both.
    """
    before = next((h for h in s.waiting if h.get("from_epoch") == entry["from_epoch"] and "previous_batch" in h), None)
    if before is not None:
        s.waiting.remove(before)
        entry = {
            **entry,
            "previous_batch": before["previous_batch"],
            "reason": f"{before['reason']}; then {entry['reason']}",
        }
    first = s.change[0] if s.change else entry["previous_batch"]
    s.change = (first, entry["batch"], f"{s.change[2]}; then {words}" if s.change else words)
    s.waiting.append(entry)


def epoch_end(trainer: BaseTrainer, s: Session) -> tuple[int, int, str] | None:
    """An epoch finished (its checkpoint saved): its waiting entries join the history; the epoch's change, if any."""
    change, s.change = s.change, None
    if s.waiting:
        s.history.extend(s.waiting)
        s.waiting = []
        write(trainer, s)
    return change


def write(trainer: BaseTrainer, s: Session) -> None:
    """Write ``batch_decision.json`` now (rank 0 alone), e.g. after a goodput switch joined the history."""
    data = decision(s)
    if data is None or (s.worker and rank() > 0):  # DDP: rank 0 alone writes
        return
    write_json(Path(trainer.save_dir) / DECISION_FILE, data)


def start_line(trainer: BaseTrainer, s: Session) -> str:
    """What the start-up line says about the batch: asked for, measured only, or resumed (and how it was chosen)."""
    batch = trainer.args.batch
    if not getattr(trainer, "resume", False):
        return f"batch={s.value}" if s.decides else f"batch={batch} (measuring only)"
    top = latest(s.history)
    earlier = ""
    if top:
        earlier = f"; auto-plus picked {top['batch']} ({top.get('policy')}) from epoch {top.get('from_epoch', 1)}"
        switched = [h for h in s.history if h.get("source") == "goodput"]
        if switched:
            earlier += f", goodput switched to {switched[-1]['batch']} from epoch {switched[-1].get('from_epoch')}"
    if s.decides:
        return f"batch={s.value} given on resume: auto-plus chooses the batch again{earlier}"
    if s.given is not None:
        return f"batch={batch} given on resume{earlier}"
    if s.adapts:
        return f"resuming at batch={batch} from the checkpoint{earlier}; goodput goes on choosing at each epoch's end"
    return f"resuming at batch={batch} from the checkpoint{earlier or ' (measuring only)'}"


def rerun_line(trainer: BaseTrainer, s: Session) -> str | None:
    """The note for a rerun of a run's args.yaml that got a new folder."""
    if not s.earlier_run:
        return None
    return f"{s.earlier_run} holds an earlier run (save_dir of its args.yaml); this run writes to {trainer.save_dir}"


def unrecorded(s: Session) -> list[str]:
    """Settings of this run that its args.yaml value does not carry, as ``key=value`` words.

    These are ``AutoPlus(...)`` keywords other than the policy and fraction: a rerun from args.yaml would take
    them from ``YOLO_BATCH_CONFIG`` or the defaults.
    """
    if not (s.decides and s.value) or s.worker:
        return []
    rerun = resolve_spec(s.value).as_dict()
    return [f"{k}={v}" for k, v in s.spec.as_dict().items() if k != "config" and rerun.get(k) != v]


def note_start(trainer: BaseTrainer, s: Session) -> None:
    """At ``on_pretrain_routine_start``: read a resumed run's history, fix args.yaml, say what a rerun would miss."""
    if getattr(trainer, "resume", False):
        load_history(trainer, s)
    write_args(trainer, s)
    logger, prefix = log()
    line = rerun_line(trainer, s)
    if line:
        logger.info(f"{prefix}{line}")
    extra = unrecorded(s)
    if extra:
        logger.warning(
            f"{prefix}args.yaml records batch={s.value}; {', '.join(extra)} (AutoPlus keywords) are not in it: "
            "a rerun with cfg=args.yaml takes them from YOLO_BATCH_CONFIG or the defaults "
            f"(batch_decision.json records every setting)"
        )
