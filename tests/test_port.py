"""`yolo_batch.port`: the one table of replaced methods, and the check of the installed release's lines."""

from __future__ import annotations

import inspect
import linecache
import re
import textwrap
import timeit

import pytest
import ultralytics
from ultralytics.engine.trainer import BaseTrainer
from ultralytics.models.yolo.detect import DetectionTrainer

from tests.conftest import needs_84
from yolo_batch import port
from yolo_batch.activate import supported_range
from yolo_batch.port import fingerprint


def changed(fn, old: str, new: str):
    """``fn`` as a release that changed one of its lines would have it (readable source, Ultralytics' globals)."""
    source = textwrap.dedent(inspect.getsource(fn))
    assert old in source
    source = source.replace(old, new)
    name = f"<changed {fn.__qualname__}>"
    linecache.cache[name] = (len(source), None, source.splitlines(True), name)
    space: dict = {}
    exec(compile(source, name, "exec"), fn.__globals__, space)  # noqa: S102 - Ultralytics' own code, one line changed
    return space[fn.__name__]


def no_restart_cap() -> type:
    """A release whose out-of-memory restart stops at 2, not 3: `rebuild`'s restart is not the tested one."""
    cap = changed(BaseTrainer._do_train, "self._oom_retries >= 3", "self._oom_retries >= 2")
    return type("NoRestartCap", (DetectionTrainer,), {"_do_train": cap})


def no_auto_batch() -> type:
    """A release whose ``_setup_train`` decides the batch itself, as 8.3.0's does."""
    call = "check_train_batch_size(self.model, imgsz=self.args.imgsz, amp=self.amp, batch=self.args.batch)"
    return type(
        "NoAutoBatch",
        (DetectionTrainer,),
        {"_setup_train": changed(BaseTrainer._setup_train, "self.auto_batch()", call)},
    )


@needs_84  # 8.3 has no in-epoch restart (and no _build_train_pipeline)
def test_the_installed_release_is_fully_supported():
    support = port.check(DetectionTrainer)
    assert support == port.Support(ultralytics.__version__, None, None, None)
    assert port.check(DetectionTrainer) is support and port.check(BaseTrainer) == support  # once per class


@needs_84
def test_a_differing_restart_names_the_first_line_missing():
    support = port.check(no_restart_cap())
    assert (support.decides, support.ddp_decides) == (None, None)
    assert support.restarts == (
        "_do_train has no 'if epoch > self.start_epoch or self._oom_retries >= 3 or RANK != -1:' where the plugin "
        "expects it"
    )


def test_a_setup_that_never_asks_auto_batch_is_refused_with_the_release_and_the_range():
    support = port.check(no_auto_batch())
    refusal = support.refusal("auto-plus", supported_range())
    assert refusal == (
        f"batch='auto-plus' cannot decide on Ultralytics {ultralytics.__version__}: its BaseTrainer._setup_train "
        "never asks self.auto_batch(), the moment auto-plus decides at (it calls check_train_batch_size itself); "
        f"pip install 'ultralytics{supported_range()}', or give an integer batch"
    )
    assert (support.refusal("auto-plus", supported_range(), ddp=True) is None) == (support.ddp_decides is None)


def test_the_check_costs_under_a_few_milliseconds_once_per_process():
    def first_check():  # as the first check of a process: trainer.py's lines read again, nothing cached
        linecache.clearcache()
        for cached in (fingerprint._source, fingerprint._check, fingerprint._for_class):
            cached.cache_clear()
        return port.check(DetectionTrainer)

    first = min(timeit.repeat(first_check, number=1, repeat=20))
    again = min(timeit.repeat(lambda: port.check(DetectionTrainer), number=100, repeat=5)) / 100
    assert first < 0.005 and again < 0.0001, (first, again)  # measured 0.5 ms and 0.14 us (2026-12-05)


def test_only_the_methods_of_the_table_are_replaced():
    class T:
        def train(self):
            return "stock"

    t = T()
    with pytest.raises(ValueError, match=re.escape("'fit' is not a trainer method the port replaces")):
        port.replace(t, "fit", print)
    assert port.wrap(t, "train", lambda original: original() + "+") and t.train() == "stock+"
    assert port.wrapper(t, "train") is not None and port.wrapper(T(), "train") is None
    assert not port.wrap(t, "validate", print)  # a release without the method: nothing wrapped
    assert T.train(t) == "stock"  # the class stays stock
