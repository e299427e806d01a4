"""The installed release's lines the plugin relies on, checked once per process at attach time.

Two moments of ``BaseTrainer`` matter:

- the decision: ``_setup_train`` asks ``self.auto_batch()`` when ``batch < 1`` (a single process), and builds the
  pipeline with ``self._build_train_pipeline()`` (a DDP worker decides there). Without it ``batch=auto-plus``
  is refused in one line (`Support.decides`), never silently left to Ultralytics' own AutoBatch;
- the restart: the lines of ``_do_train``'s out-of-memory branch and of ``_build_train_pipeline`` that
  `rebuild` steers (`DO_TRAIN`, `BUILD`, in order). Where one differs, goodput switches and out-of-memory
  step-downs after the first epoch are off (`Support.restarts` says why) and the run trains as stock at the
  decided batch.

The source is read from the trainer class's own methods (a subclass that overrides one is checked as it is)
through ``linecache`` and the code object's line table, not ``inspect.getsource`` (about 8 ms for the three; this
costs under 1 ms), once per process and class (`check` is cached). ``tests/test_port.py`` measures it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

# What `rebuild` relies on in BaseTrainer._do_train, in this order (read in 8.4.190). A release that changes one
# turns the restart's features off at run time; tests/test_rebuild.py fails on it for the installed release.
DO_TRAIN = (
    "nb = len(self.train_loader)",  # the loop's state, computed before the epoch loop ...
    "nw = self._get_warmup_iterations(nb)",
    "acc0 = self.accumulate",
    'self.run_callbacks("on_train_epoch_start")',  # open_epoch / request run here, before the loader is iterated
    "pbar = enumerate(self.train_loader)",
    "batch = self.preprocess_batch(batch)",  # inside the try: the stand-in's batch raises here
    'is_oom = "out of memory" in str(e).lower()',  # the only words the restart branch accepts
    "if epoch > self.start_epoch or self._oom_retries >= 3 or RANK != -1:",  # open_epoch's start_epoch, the cap
    "self._oom_retries += 1",  # how _build tells a restart from a first build
    "self.args.batch = self.batch_size = max(self.batch_size // 2, 1)",  # replaced before the rebuild
    "self.train_loader.close()",  # the stand-in's close closes the real loader
    "self._build_train_pipeline()",  # ... and recomputed only after this rebuild
    "self.validator.dataloader = self.test_loader",
    "self.scheduler.last_epoch = self.start_epoch - 1",
    "nb = len(self.train_loader)",
    "nw = self._get_warmup_iterations(nb)",
    "acc0 = self.accumulate",
    "break  # restart epoch loop",
    "self._oom_retries = 0  # reset OOM counter",
    'self.run_callbacks("on_train_epoch_end")',  # close_epoch: start_epoch back before the checkpoint
    "self.save_model()",
)
BUILD = (
    "self.train_loader = self.get_dataloader(",
    "self.test_loader = self.get_dataloader(",
    "self.accumulate = max(round(self.args.nbs / self.batch_size), 1)",
    "if self.optimizer is None:",  # a rebuild keeps the optimizer (and its state)
)
DECIDES = ("if self.batch_size < 1 and RANK == -1:", "self.auto_batch()")  # in _setup_train
FIRST_BUILD = ("self._build_train_pipeline()",)  # in _setup_train: a DDP worker decides at this build


@dataclass(frozen=True)
class Support:
    """What the installed release lets the plugin do; each reason is None where the lines are the tested ones.

    Attributes:
        release (str): Ultralytics' version.
        decides (str | None): Why a single process cannot decide at Ultralytics' AutoBatch moment.
        ddp_decides (str | None): Why a DDP worker cannot decide at its first pipeline build.
        restarts (str | None): Why ``_do_train``'s out-of-memory restart cannot be steered.
    """

    release: str
    decides: str | None
    ddp_decides: str | None
    restarts: str | None

    def refusal(self, value: Any, supported: str, ddp: bool = False) -> str | None:
        """The one line refusing ``batch=value`` where the decision moment is not reached, else None.

        Args:
            value: The auto-plus batch value asked for.
            supported (str): The supported releases as a pip specifier (``activate.supported_range()``, handed in:
                the port never imports `activate`, which imports the integration when a trainer is built).
            ddp (bool): The run trains over several GPUs (a DDP worker decides at its first pipeline build).

        Examples:
            >>> print(Support("8.3.0", "it never asks", None, None).refusal("auto-plus", ">=8.3.196,<8.5"))
            ... # doctest: +NORMALIZE_WHITESPACE
            batch='auto-plus' cannot decide on Ultralytics 8.3.0: it never asks;
            pip install 'ultralytics>=8.3.196,<8.5', or give an integer batch
        """
        why = self.ddp_decides if ddp else self.decides
        if why is None:
            return None
        return (
            f"batch={value!r} cannot decide on Ultralytics {self.release}: {why}; "
            f"pip install 'ultralytics{supported}', or give an integer batch"
        )


def check(trainer: Any) -> Support:
    """The installed release's `Support` for a trainer (or trainer class); cached per process and class.

    Each method is read along the class's MRO as far as ``super().<method>(`` calls reach (``DetectionTrainer``
    extends ``_build_train_pipeline`` and calls BaseTrainer's): the lines must be in one implementation that runs.
    """
    return _for_class(trainer if isinstance(trainer, type) else type(trainer))


@functools.lru_cache(maxsize=16)
def _for_class(cls: type) -> Support:
    return _check(*(_chain(cls, name) for name in ("_setup_train", "_do_train", "_build_train_pipeline")))


def _chain(cls: type, name: str) -> tuple[Any, ...]:
    """The implementations of ``name`` that run for ``cls``: the most derived one, then each its ``super()`` calls."""
    chain = []
    for klass in cls.__mro__:
        fn = vars(klass).get(name)
        if fn is None:
            continue
        chain.append(fn)
        if f"super().{name}(" not in (_source(fn) or ""):
            break
    return tuple(chain)


@functools.lru_cache(maxsize=16)
def _check(setup: tuple[Any, ...], do_train: tuple[Any, ...], build: tuple[Any, ...]) -> Support:
    import ultralytics

    release = str(getattr(ultralytics, "__version__", "?"))
    decides = ddp_decides = None
    if _missing("_setup_train", setup, DECIDES) is not None:
        decides = "its BaseTrainer._setup_train never asks self.auto_batch(), the moment auto-plus decides at"
        if any("check_train_batch_size(" in (_source(fn) or "") for fn in setup):
            decides += " (it calls check_train_batch_size itself)"
    if _missing("_setup_train", setup, FIRST_BUILD) is not None:
        ddp_decides = "its BaseTrainer._setup_train has no self._build_train_pipeline(), where a DDP worker decides"
    restarts = _missing("_do_train", do_train, DO_TRAIN) or _missing("_build_train_pipeline", build, BUILD)
    return Support(release, decides, ddp_decides, restarts)


@functools.lru_cache(maxsize=64)
def _source(fn: Any) -> str | None:
    """The source text of a function, from its file's lines in ``linecache``; None where it cannot be read."""
    import dis
    import linecache

    code = getattr(fn, "__code__", None)
    if code is None:
        return None
    lines = linecache.getlines(code.co_filename)
    end = max((line for _, line in dis.findlinestarts(code) if line), default=0)
    return "".join(lines[code.co_firstlineno - 1 : end]) or None


def _missing(name: str, chain: tuple[Any, ...], lines: tuple[str, ...]) -> str | None:
    """None when one implementation of ``chain`` holds ``lines`` in order, else the first line missing, in words."""
    if not chain:
        return f"BaseTrainer has no {name}"
    sources = [_source(fn) for fn in chain]
    if all(source is None for source in sources):
        return f"the source of {name} cannot be read"
    reported = None  # the line the last (base) implementation misses
    for source in (s for s in sources if s is not None):
        at, missing = 0, None
        for line in lines:
            found = source.find(line, at)
            if found < 0:
                missing = line
                break
            at = found + len(line)
        if missing is None:
            return None
        reported = missing
    return f"{name} has no {reported!r} where the plugin expects it"
