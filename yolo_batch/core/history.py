"""A run's batches as its history tells them: each batch, its epochs and how it came (pure, stdlib only).

Read by the end-of-run summary and plot (`summary`) and by `compare` (`report`), from ``batch_decision.json``'s
``history`` (written by `records`) and the effect log's rows.
"""

from __future__ import annotations

from itertools import groupby
from typing import Any

HOW = {"given": "given on resume", "goodput": "switched by goodput", "oom": "stepped down after out of memory"}


def chosen(decision: dict | None, first: int | None = None) -> str:
    """How the batches were chosen, from ``batch_decision.json`` and its ``history``, in the epochs' order.

    ``first``: the batch of epoch 1 when the effect log holds that epoch. Epochs before the history's first
    entry trained at a batch the plugin did not choose (a stock run resumed with auto-plus): named with it when
    known, never as one of the history's batches.

    Examples:
        >>> chosen(None)
        'as given'
        >>> chosen({"policy": "ladder", "batch": 32})
        'picked by auto-plus (ladder)'
        >>> h = [{"batch": 8, "policy": "fit", "from_epoch": 1}, {"source": "given", "batch": 4, "from_epoch": 3}]
        >>> chosen({"history": h})
        '(8 from epoch 1, picked by auto-plus (fit); 4 from epoch 3, given on resume)'
        >>> chosen({"history": [{"batch": 32, "policy": "fit", "from_epoch": 3}]})
        '(epochs 1-2 before auto-plus, at a batch it did not log; 32 from epoch 3, picked by auto-plus (fit))'
    """
    if not decision:
        return "as given"
    history = decision.get("history") or [decision]
    if len(history) == 1 and history[0].get("from_epoch", 1) == 1:
        return f"picked by auto-plus ({history[0]['policy']})"
    start = history[0].get("from_epoch", 1)
    steps = []
    if start > 1:
        span = "epoch 1" if start == 2 else f"epochs 1-{start - 1}"
        steps.append(
            f"{first} from epoch 1, as given" if first else f"{span} before auto-plus, at a batch it did not log"
        )
    for h in history:
        how = HOW.get(h.get("source")) or f"picked by auto-plus ({h['policy']})"
        steps.append(f"{h['batch']} from epoch {h.get('from_epoch', 1)}, {how}")
    return f"({'; '.join(steps)})"


def batch_spans(history: list[dict[str, Any]], epochs: int, before: int | None = None) -> list[tuple]:
    """Each batch of a run with its first and last epoch, ``(batch, first, last)``, from a decision's history.

    ``epochs``: the run's finished epochs (an entry from a later epoch never trained). ``before``: the batch of
    the epochs before the first entry, when known (a stock run resumed with auto-plus: None).

    Examples:
        >>> batch_spans([{"batch": 8, "from_epoch": 1}, {"batch": 32, "from_epoch": 2}], 3)
        [(8, 1, 1), (32, 2, 3)]
        >>> batch_spans([{"batch": 32, "from_epoch": 3}], 4)
        [(None, 1, 2), (32, 3, 4)]
    """
    entries = sorted((h for h in history if h.get("from_epoch", 1) <= epochs), key=lambda h: h.get("from_epoch", 1))
    if not entries:
        return []
    starts = [h.get("from_epoch", 1) for h in entries]
    spans = [(before, 1, starts[0] - 1)] if starts[0] > 1 else []
    for i, h in enumerate(entries):
        end = starts[i + 1] - 1 if i + 1 < len(entries) else epochs
        if end >= starts[i]:
            spans.append((h["batch"], starts[i], end))
    merged: list[tuple] = []
    for span in spans:  # a given batch equal to the one before it is one span
        if merged and merged[-1][0] == span[0] and span[0] is not None:
            merged[-1] = (span[0], merged[-1][1], span[2])
        else:
            merged.append(span)
    return merged


def row_spans(rows: list[dict[str, Any]]) -> list[tuple]:
    """``(batch, first, last)`` epochs of each batch in the effect rows, in order.

    Examples:
        >>> row_spans([{"epoch": "1", "batch": "8"}, {"epoch": "2", "batch": "32"}, {"epoch": "3", "batch": "32"}])
        [(8, 1, 1), (32, 2, 3)]
    """
    epochs = [r for r in rows if str(r.get("epoch")) != "final"]
    spans: list[tuple] = []
    for batch, group in groupby(epochs, key=lambda r: int(r["batch"])):
        numbers = [int(r["epoch"]) for r in group]
        spans.append((batch, numbers[0], numbers[-1]))
    return spans


def spans_words(spans: list[tuple]) -> str:
    """The spans in a few characters: ``8 (1), 32 (2-3)``; ``?`` for a batch not logged.

    Examples:
        >>> spans_words([(None, 1, 2), (32, 3, 4)]), spans_words([(16, 1, 5)])
        ('? (1-2), 32 (3-4)', '16 (1-5)')
    """
    return ", ".join(f"{'?' if b is None else b} ({a}{f'-{z}' if z != a else ''})" for b, a, z in spans)


def epoch_words(rows: list[dict[str, Any]], key: str) -> str:
    """Each epoch's own ``key`` (``effective_batch``, ``accumulate``) in a few characters.

    The value alone when every epoch had it, else each value with its epochs, in order; an epoch without it is
    left out.

    Examples:
        >>> rows = [{"epoch": e, "effective_batch": v} for e, v in ((1, "80"), (2, 64), (3, 64))]
        >>> epoch_words(rows, "effective_batch"), epoch_words(rows[1:], "effective_batch")
        ('80 (1), 64 (2-3)', '64')
    """
    spans: list[tuple] = []
    for r in rows:
        if str(r.get("epoch")) == "final" or r.get(key) in (None, ""):
            continue
        value, epoch = str(r[key]), int(r["epoch"])
        if spans and spans[-1][0] == value:
            spans[-1] = (value, spans[-1][1], epoch)
        else:
            spans.append((value, epoch, epoch))
    return spans[0][0] if len(spans) == 1 else spans_words(spans)
