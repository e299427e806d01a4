"""The batch value and the plugin config: one frozen `BatchSpec`, and every user-facing error.

Grammar of the batch value: ``auto-plus[:POLICY][:FRACTION]``, e.g. ``auto-plus``, ``auto-plus:fit``,
``auto-plus:0.8``, ``auto-plus:fit:0.8``. Precedence when the same setting comes from several places:
the batch value > Python keywords (``AutoPlus(...)``) > the user's YAML (``YOLO_BATCH_CONFIG`` or
``config=``) > the shipped defaults (``cfg/auto_plus.yaml``, mirrored by `BatchSpec`'s field defaults).

This module imports only the standard library and the pure `policy` (its table of rules names the policies) at
import time (``yaml`` is imported when a file is read), so the startup hook can use it without slowing Python down.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from yolo_batch.core.policy import RULES

PREFIX = "auto-plus"
POLICIES = tuple(RULES)  # one source of the policy names: one rule each in `policy.RULES`
LR_SCALINGS = ("none", "linear", "sqrt")
BN_MOMENTA = ("keep", "auto")
CONFIG_ENV = "YOLO_BATCH_CONFIG"
DISABLE_ENV = "YOLO_BATCH_DISABLE"


def printable(text: str) -> str:
    r"""``text`` with each unprintable character (a line break, a control byte) written as its escape.

    Examples:
        >>> printable("unknown key 'probe.\n\x1e'")
        "unknown key 'probe.\\n\\x1e'"
    """
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class AutoPlusError(ValueError):
    """A bad batch value, keyword or config entry; the message is one line, fit to show a user as is.

    What a user wrote is quoted as written; a line break or control byte in it is shown escaped (`printable`).
    """

    def __init__(self, message: str) -> None:
        """``message``: what was wrong and what is valid."""
        super().__init__(printable(str(message)))


def _closest(word: str, valid: tuple[str, ...] | list[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest valid name, or an empty string."""
    import difflib  # only on the error path

    match = difflib.get_close_matches(str(word), list(valid), n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


@dataclass(frozen=True)
class BatchSpec:
    """Everything auto-plus needs to choose a batch, validated; build it with `resolve_spec`.

    Attributes:
        policy (str): ``ladder`` takes the largest of ``candidates`` that fits, else auto-fits; ``fit`` takes
            the largest batch that fits, rounded down to a multiple of 8 when >= 8; ``speed`` the smallest batch
            that fits and reaches ``speed_threshold`` of the best predicted training images/s; ``goodput`` starts at
            the ``speed`` pick and re-chooses at each epoch's end by images/s x statistical efficiency (`goodput`).
        utilization (float): Share of the free memory (plus what this process already holds) to plan for.
        candidates (tuple[int, ...]): The ladder's rungs.
        min_batch (int): Smallest batch auto-plus may pick; a smaller fit is an error.
        max_batch (int): Largest batch auto-plus may pick (also never above the training-set size).
        probe_batches (tuple[int, ...]): Batch sizes of the real training steps that measure the memory law.
        probe_val (bool): Also measure the validation forward at twice the batch.
        probe_cache (bool): Use the law cache (`lawcache`): a repeat run on the same set-up checks the cached law
            with one verified step at the pick instead of probing; ``false`` always probes and saves nothing.
        verify (bool | str): Prove the pick with one real training step (and the validation forward at 2x):
            ``auto`` when its predicted peak is above half the budget (where a misprediction could matter) or
            the step is cheap (at most 1 s, estimated from the probe),
            ``true`` always, ``false`` never.
        lr_scaling (str): ``none``, ``linear`` or ``sqrt`` scaling of lr0 above the nominal batch (nbs).
        speed_threshold (float): ``speed``: the share of the best predicted images/s the pick must reach, in (0, 1].
        speed_gain (float): ``speed``/``goodput``: the predicted images/s gain a batch above ``nbs`` needs over the
            fastest at or below it (>= 0, e.g. 0.10); a pick above ``nbs`` applies the large-batch recipe (`recipe`).
        speed_min_steps (int): ``speed``/``goodput``: a batch above ``nbs`` only where the run still makes at least
            this many optimizer steps at it (``ceil(images / batch) x epochs``; >= 0, 0: no floor).
        goodput_gain (float): ``goodput``: the predicted goodput gain a switch needs, in (0, 1), e.g. 0.05.
        bn_momentum (str): ``keep`` Ultralytics' BatchNorm momentum; ``auto`` scales it with the batch so the running
            statistics average over as many images as at batch 16 (`batchnorm`).
        noise_scale (bool): Estimate the gradient-noise scale each epoch (``goodput`` needs it).
        oom_retries (int): How often training may step the batch down after running out of memory.
        config (str | None): The user YAML these settings were read from, if any.

    Examples:
        >>> BatchSpec().policy, BatchSpec().candidates
        ('ladder', (16, 32, 64))
    """

    policy: str = "ladder"
    utilization: float = 0.90
    candidates: tuple[int, ...] = (16, 32, 64)
    min_batch: int = 1
    max_batch: int = 512
    probe_batches: tuple[int, ...] = (2, 4, 8)
    probe_val: bool = True
    probe_cache: bool = True
    verify: bool | str = "auto"
    lr_scaling: str = "none"
    speed_threshold: float = 0.97
    speed_gain: float = 0.10
    speed_min_steps: int = 10000
    goodput_gain: float = 0.05
    bn_momentum: str = "keep"
    noise_scale: bool = True
    oom_retries: int = 3
    config: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        """Validate every field; raise `AutoPlusError` naming the key, the value and what is valid."""
        where = f" in {self.config}" if self.config else ""
        for f in fields(self):
            if f.name != "config":
                object.__setattr__(self, f.name, _check(f.name, getattr(self, f.name), where))
        if self.min_batch > self.max_batch:
            raise AutoPlusError(f"min_batch={self.min_batch} is above max_batch={self.max_batch}{where}")
        if self.policy == "goodput" and not self.noise_scale:
            raise AutoPlusError(
                f"policy=goodput needs noise_scale=true{where}: it weighs each batch by the gradient-noise scale"
            )

    def as_dict(self) -> dict[str, Any]:
        """Return the settings as plain YAML/JSON types."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}


KEYS = tuple(f.name for f in fields(BatchSpec) if f.name != "config")
# Settings people look for in the plugin YAML that live elsewhere, with where to set them.
ELSEWHERE = {
    "val_batch": "the validation batch is set with `yolo-batch sweep ... val_batch=N` (every run of a sweep) or "
    "the environment variable YOLO_BATCH_VAL_BATCH=N (one run)",
}
PROBE_KEYS = {"batches": "probe_batches", "val": "probe_val", "verify": "verify", "cache": "probe_cache"}  # probe:


def _check(key: str, value: Any, where: str = "", nested: str | None = None) -> Any:
    """Validate and normalise one setting; raise a one-line `AutoPlusError` when it is wrong.

    ``nested``: the key as written inside the YAML's ``probe:`` block (``cache`` for ``probe_cache``), which the
    message then names as written: ``probe: {cache: 'maybe'}``.
    """

    def bad(valid: str) -> AutoPlusError:
        shown = list(value) if isinstance(value, tuple) else value
        given, name = (f"{key}={shown!r}", key) if nested is None else (f"probe: {{{nested}: {shown!r}}}", nested)
        return AutoPlusError(f"{given}{where} is invalid; {name} must be {valid}")

    if key == "policy":
        if value not in POLICIES:
            raise AutoPlusError(
                f"policy={value!r}{where} is not a policy; valid: {', '.join(POLICIES)}{_closest(value, POLICIES)}"
            )
    elif key == "lr_scaling":
        if value not in LR_SCALINGS:
            raise AutoPlusError(
                f"lr_scaling={value!r}{where} is invalid; valid: {', '.join(LR_SCALINGS)}{_closest(value, LR_SCALINGS)}"
            )
    elif key == "bn_momentum":
        if value not in BN_MOMENTA:
            raise AutoPlusError(
                f"bn_momentum={value!r}{where} is invalid; valid: {', '.join(BN_MOMENTA)}{_closest(value, BN_MOMENTA)}"
            )
    elif key == "speed_threshold":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
            raise bad("a fraction in (0, 1], e.g. 0.97")
        value = float(value)
    elif key == "speed_gain":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
            raise bad("a fraction >= 0, e.g. 0.10 (a batch above nbs must be predicted 10% faster)")
        value = float(value)
    elif key == "speed_min_steps":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise bad("a whole number of optimizer steps >= 0, e.g. 10000 (0: no floor)")
    elif key == "goodput_gain":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise bad("a fraction in (0, 1), e.g. 0.05")
        value = float(value)
    elif key == "utilization":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise bad("a fraction in (0, 1), e.g. 0.9")
        value = float(value)
    elif key in {"candidates", "probe_batches"}:
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise bad("a list of positive integers, e.g. [16, 32, 64]")
        value = tuple(value)
        if not value:
            raise bad("a non-empty list of positive integers, e.g. [16, 32, 64]")
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value):
            raise bad("a list of positive integers, e.g. [16, 32, 64]")
        if key == "probe_batches" and len(set(value)) < 2:
            raise bad("at least two different batch sizes, e.g. [2, 4, 8]")
        value = tuple(sorted(set(value)))
    elif key in {"min_batch", "max_batch", "oom_retries"}:
        low = 0 if key == "oom_retries" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise bad(f"an integer >= {low}")
    elif key == "verify":
        if value not in (True, False, "auto") or not isinstance(value, (bool, str)):
            raise bad("auto, true or false")
    elif key in {"probe_val", "probe_cache", "noise_scale"}:
        if not isinstance(value, bool):
            raise bad("true or false")
    return value


def parse_batch_value(value: str) -> dict[str, Any]:
    """Parse ``auto-plus[:POLICY][:FRACTION]`` into the settings it names.

    Args:
        value (str): The batch value as the user typed it.

    Returns:
        (dict): ``policy`` and/or ``utilization`` when given, else empty.

    Raises:
        AutoPlusError: For anything else, naming the valid forms.

    Examples:
        >>> parse_batch_value("auto-plus:fit:0.8")
        {'policy': 'fit', 'utilization': 0.8}
        >>> parse_batch_value("auto-plus")
        {}
    """
    forms = "valid: auto-plus, auto-plus:fit, auto-plus:speed, auto-plus:goodput, auto-plus:0.8, auto-plus:ladder:0.8"
    text = str(value).strip()
    head, *parts = text.split(":")
    if head.lower() != PREFIX:
        raise AutoPlusError(f"batch={value!r} is not an auto-plus value{_closest(head, [PREFIX])}; {forms}")
    out: dict[str, Any] = {}
    if len(parts) > 2:
        raise AutoPlusError(f"batch={value!r} has too many ':' parts; {forms}")
    for i, part in enumerate(parts):
        part = part.strip().lower()
        try:
            number = float(part)
        except ValueError:
            number = None
        if number is not None:
            if not 0 < number < 1:
                raise AutoPlusError(f"batch={value!r}: fraction {part} must be in (0, 1), e.g. 0.8; {forms}")
            if i != len(parts) - 1 or "utilization" in out:
                raise AutoPlusError(f"batch={value!r}: the fraction comes last; {forms}")
            out["utilization"] = number
        elif part in POLICIES and "policy" in out:
            raise AutoPlusError(f"batch={value!r} names two policies; give one of {', '.join(POLICIES)}; {forms}")
        elif part in POLICIES and i == 0:
            out["policy"] = part
        else:
            hint = _closest(part, POLICIES)
            raise AutoPlusError(
                f"batch={value!r}: unknown policy {part!r}{hint}; policies: {', '.join(POLICIES)}; {forms}"
            )
    return out


def looks_like_auto_plus(value: Any) -> bool:
    """Return True for a string batch value meant for this plugin (also a misspelt one, to explain it).

    Examples:
        >>> looks_like_auto_plus("auto-plus:fit"), looks_like_auto_plus("autoplus"), looks_like_auto_plus(16)
        (True, True, False)
    """
    if not isinstance(value, str):
        return False
    head = value.strip().split(":")[0].lower()
    return head.startswith("auto") or bool(_closest(head, [PREFIX]))


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read a user's plugin YAML; every problem becomes one line naming the file (and line or key)."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise AutoPlusError(
            f"config file {str(path)!r} is a folder; {CONFIG_ENV} and config= name a YAML file of plugin settings "
            "(`yolo-batch defaults` prints one)"
        )
    if not p.is_file():
        raise AutoPlusError(f"config file {str(path)!r} not found (set by {CONFIG_ENV} or config=)")
    import yaml  # lazily: not at Python start

    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or type(e).__name__
        raise AutoPlusError(f"config file {p}{line}: YAML syntax error: {problem}") from None
    except (OSError, ValueError, OverflowError) as e:  # not UTF-8; a date YAML reads that does not exist
        raise AutoPlusError(f"config file {p} cannot be read: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise AutoPlusError(f"config file {p} must hold a mapping of settings, got {type(data).__name__}")
    return _flatten(data, f" in {p}")


def _flatten(data: dict[str, Any], where: str = "") -> dict[str, Any]:
    """Accept ``probe: {batches, val, verify, cache}`` as a nested block; refuse unknown keys by name."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key == "probe" and not isinstance(value, dict):
            raise AutoPlusError(
                f"probe: {value!r}{where} must be a mapping, e.g. probe: {{batches: [2, 4, 8], val: true, "
                "verify: true, cache: true}"
            )
        if key == "probe":
            for sub, v in value.items():
                name = PROBE_KEYS.get(sub)
                if name is None:
                    raise AutoPlusError(
                        f"unknown key 'probe.{sub}'{where}; valid: probe.batches, probe.val, probe.verify, probe.cache"
                        f"{_closest(sub, list(PROBE_KEYS))}"
                    )
                out[name] = _check(name, v, where, nested=sub)  # its error names the key as written
        elif key in KEYS:
            out[key] = value
        elif key in ELSEWHERE:
            raise AutoPlusError(f"{key!r}{where} is not a plugin setting: {ELSEWHERE[key]}")
        else:
            raise AutoPlusError(f"unknown key {key!r}{where}; valid: {', '.join(KEYS)}{_closest(key, KEYS)}")
    return out


def resolve_spec(
    value: str | None = None, keywords: dict[str, Any] | None = None, config: str | os.PathLike | None = None
) -> BatchSpec:
    """Merge the batch value, Python keywords, user YAML and defaults into one validated `BatchSpec`.

    Args:
        value (str | None): The batch value, e.g. ``"auto-plus:fit:0.8"``; None when only observing.
        keywords (dict | None): Settings given in Python, e.g. ``{"policy": "fit"}``.
        config (str | PathLike | None): User YAML; defaults to the ``YOLO_BATCH_CONFIG`` environment variable.

    Returns:
        (BatchSpec): The frozen, validated settings.

    Raises:
        AutoPlusError: For any bad value, key, type or file, before anything is trained or written.

    Examples:
        >>> resolve_spec("auto-plus:0.8", {"policy": "fit", "utilization": 0.5}).utilization
        0.8
    """
    config = config if config is not None else os.environ.get(CONFIG_ENV) or None
    merged: dict[str, Any] = load_config(config) if config else {}
    merged.update(_flatten(dict(keywords or {}), " in AutoPlus(...) keywords"))
    if value is not None:
        merged.update(parse_batch_value(value))
    return BatchSpec(**merged, config=str(config) if config else None)


def with_overrides(spec: BatchSpec, **changes: Any) -> BatchSpec:
    """Return a copy of ``spec`` with ``changes`` applied and validated."""
    return replace(spec, **changes)
