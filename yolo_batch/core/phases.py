"""Where a decision's seconds go: named phases, timed with ``perf_counter``, for ``batch_decision.json``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class Phases:
    """Seconds per named phase of one decision; a phase entered twice adds up.

    Examples:
        >>> p = Phases()
        >>> with p("probe"):
        ...     pass
        >>> p.add("probe", 1.0)
        >>> record = p.record()
        >>> sorted(record), record["probe"] >= 1.0, record["other"] >= 0
        (['other', 'probe'], True, True)
    """

    def __init__(self) -> None:
        """Start the clock of the whole decision."""
        self.start = time.perf_counter()
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        """Time the ``with`` block as phase ``name``."""
        t = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t)

    def add(self, name: str, seconds: float) -> None:
        """Add ``seconds`` to phase ``name``."""
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def total(self) -> float:
        """Seconds since the decision started."""
        return time.perf_counter() - self.start

    def record(self, total: float | None = None) -> dict[str, float]:
        """The phases in the order they first ran, rounded to ms, and ``other``: the rest of ``total``."""
        total = self.total() if total is None else total
        out = {k: round(v, 3) for k, v in self.seconds.items()}
        out["other"] = round(max(total - sum(self.seconds.values()), 0.0), 3)
        return out
