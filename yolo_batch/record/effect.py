"""Per-epoch records of what the batch did, written whole: ``batch_effect.csv`` is replaced atomically."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from yolo_batch.core import readback
from yolo_batch.session import log


def atomic_write(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename, so readers never see half a file."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the mode open() would
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, data: dict[str, Any]) -> None:
    """Atomically write ``data`` as indented JSON."""
    atomic_write(path, json.dumps(data, indent=2, default=float) + "\n")


class EffectLog:
    """Rows of ``batch_effect.csv``: one per epoch (numbered as results.csv), then ``final``.

    Columns appear in first-seen order; a value missing from a row is left empty. The whole file is
    rewritten atomically after each row, so a run killed at any moment leaves a readable CSV.
    """

    def __init__(self, path: str | os.PathLike, keep_until: int = 0) -> None:
        """Log to ``path``; a resumed run (``keep_until`` = epochs already finished) keeps those rows."""
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = []
        self.columns: list[str] = []
        if keep_until and self.path.exists():
            for row in _kept(self.path):
                if row.get("epoch", "").isdigit() and int(row["epoch"]) <= keep_until:
                    self.rows.append(dict(row))
                    self.columns += [k for k in row if k not in self.columns]

    def fill(self, rows: list[dict[str, Any]]) -> None:
        """Put in the rows of epochs the log lacks (`earlier_rows`), in epoch order; the next `add` writes them."""
        have = {str(r.get("epoch")) for r in self.rows}
        new = [r for r in rows if str(r.get("epoch")) not in have]
        for row in new:
            self.columns += [k for k in row if k not in self.columns]
        self.rows = sorted(self.rows + new, key=lambda r: int(r["epoch"]))

    def add(self, row: dict[str, Any]) -> None:
        """Append (or, for an epoch already logged, replace) one row and rewrite the file."""
        for k in row:
            if k not in self.columns:
                self.columns.append(k)
        self.rows = [r for r in self.rows if str(r.get("epoch")) != str(row.get("epoch"))] + [row]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        for r in self.rows:
            writer.writerow({k: _fmt(r.get(k)) for k in self.columns})
        atomic_write(self.path, buf.getvalue())


def earlier_rows(results: list[dict[str, str]], upto: int, batch: int, accumulate: int, nbs: int) -> list[dict]:
    """Effect rows of epochs 1 to ``upto`` that trained before the plugin logged (a stock run resumed with it).

    Each is results.csv's row of that epoch (its last, as a redone epoch's) without ``time``, with the batch it
    trained at, its ``accumulate``, effective batch and ``nbs``; the plugin's readings (speed, memory, noise,
    ``segment_start``) stay empty: nothing measured them.

    Examples:
        >>> rows = [{"epoch": "1", "time": "3.1", "train/box_loss": "2.5"}, {"epoch": "2", "time": "6"}]
        >>> earlier_rows(rows, 1, 8, 8, 64)
        [{'epoch': 1, 'batch': 8, 'accumulate': 8, 'effective_batch': 64, 'nbs': 64, 'train/box_loss': '2.5'}]
    """
    last = {str(r.get("epoch", "")).strip(): r for r in results}
    out = []
    for epoch in range(1, upto + 1):
        row = last.get(str(epoch))
        if row is None:
            continue
        head = {"epoch": epoch, "batch": batch, "accumulate": accumulate, "effective_batch": batch * accumulate}
        out.append({**head, "nbs": nbs, **{k: v for k, v in row.items() if k not in ("epoch", "time")}})
    return out


def _fmt(v: Any) -> Any:
    """Floats with results.csv's precision (``%.6g``), everything else as is, None as empty."""
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


def read_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of a CSV file as dicts of strings (header names stripped, as results.csv pads them).

    Raises:
        readback.Damaged: One line naming the file, for a file that is not UTF-8 CSV or has a row too long.
    """
    return readback.read_csv(path)


def read_effect(path: str | os.PathLike) -> list[dict[str, str]]:
    """``batch_effect.csv``'s rows: each with its ``epoch`` (a number, or ``final``) and ``batch``.

    Raises:
        readback.Damaged: One line naming the file and what is wrong.
    """
    epoch = lambda v: v == "final" or readback.int_cell(v)  # noqa: E731
    return readback.read_csv(path, {"epoch": epoch, "batch": readback.int_cell})


def _kept(path: Path) -> list[dict[str, str]]:
    """A resumed run's earlier rows; none (with one line) when the file is damaged: the log starts again."""
    try:
        return read_effect(path)
    except readback.Damaged as e:
        logger, prefix = log()
        logger.warning(f"{prefix}{e}; its earlier rows are left out, this run's epochs are logged from here")
        return []


class GradientNoise:
    """The simple gradient-noise scale ``B_simple = tr(Sigma) / |G|^2`` (McCandlish et al. 2018, appendix A).

    Each update takes the squared norm of the *mean* gradient over a small and a big batch at the same
    parameters. Since ``E|g_B|^2 = |G|^2 + tr(Sigma) / B``, two sizes give unbiased estimates of both terms;
    each is smoothed by an exponential average and the ratio of the averages is the estimate.

    Examples:
        >>> n = GradientNoise(beta=0.0)
        >>> n.update(small_sq=3.0, b_small=1, big_sq=1.5, b_big=4)  # |G|^2 = 1, tr(Sigma) = 2
        >>> n.value
        2.0
    """

    def __init__(self, beta: float = 0.9) -> None:
        """Smooth with weight ``beta`` on the past."""
        self.beta, self.g2, self.trace, self.samples = beta, 0.0, 0.0, 0

    def update(self, small_sq: float, b_small: float, big_sq: float, b_big: float) -> None:
        """Fold in one pair of squared mean-gradient norms at batch sizes ``b_small < b_big``."""
        g2 = (b_big * big_sq - b_small * small_sq) / (b_big - b_small)
        trace = (small_sq - big_sq) / (1 / b_small - 1 / b_big)
        self.g2 = self.beta * self.g2 + (1 - self.beta) * g2
        self.trace = self.beta * self.trace + (1 - self.beta) * trace
        self.samples += 1

    @property
    def value(self) -> float | None:
        """The smoothed noise scale in images, or None before an estimate exists (or when |G|^2 <= 0)."""
        if not self.samples or self.g2 <= 0 or self.trace <= 0:
            return None
        return self.trace / self.g2

    def reading(self, batch: int, dataset_size: int | None = None) -> str:
        """The estimate in words; above the training set it says so, and names no batch the set cannot hold.

        Examples:
            >>> n = GradientNoise(beta=0.0)
            >>> n.update(small_sq=3.0, b_small=1, big_sq=1.5, b_big=4)
            >>> n.reading(16)
            'gradient-noise scale ~2: batches near 2 would use compute best at this stage (training at 16)'
            >>> n.update(small_sq=301.0, b_small=1, big_sq=76.0, b_big=4)
            >>> n.reading(16, dataset_size=160)  # doctest: +NORMALIZE_WHITESPACE
            'gradient-noise scale ~300, above the training set of 160 images: any batch up to the whole set
            would use compute well at this stage (training at 16)'
        """
        v = self.value
        if v is None:
            return "gradient-noise scale not available yet"
        if dataset_size and v > dataset_size:
            return (
                f"gradient-noise scale ~{v:.0f}, above the training set of {dataset_size} image"
                f"{'' if dataset_size == 1 else 's'}: any batch up to the whole set would use compute well at this "
                f"stage (training at {batch})"
            )
        return (
            f"gradient-noise scale ~{v:.0f}: batches near {v:.0f} would use compute best at this stage "
            f"(training at {batch})"
        )


class GradientTap:
    """Feeds `GradientNoise` from a training loop without changing it: it only reads ``.grad``.

    With gradient accumulation (k micro-batches of B per step) the small batch is the first micro-batch's
    gradient and the big one the accumulated gradient just before the step, both at the same parameters.
    Without accumulation it pairs the gradients of two consecutive steps (2B images; the parameters moved by
    one step in between, a small approximation), keeping one copy of the previous gradient.
    """

    def __init__(self, params, noise: GradientNoise) -> None:
        """Watch ``params`` (an iterable of tensors)."""
        self.params, self.noise = [p for p in params if p.requires_grad], noise
        self.micro, self.previous = 0, None
        self.small_sq: float | None = None

    def _flat(self, divisor: float):
        """All gradients as one float vector divided by ``divisor`` (one copy; None without gradients)."""
        import torch

        grads = [p.grad.detach().reshape(-1) for p in self.params if p.grad is not None]
        return torch.cat(grads).float().div_(divisor) if grads else None

    def _sq(self) -> float:
        """Squared norm of the raw gradients, without a copy (fused norms where torch has them)."""
        import torch

        grads = [p.grad.detach() for p in self.params if p.grad is not None]
        if not grads:
            return 0.0
        norms = torch._foreach_norm(grads) if hasattr(torch, "_foreach_norm") else [g.norm() for g in grads]
        return float(torch.stack([n.float() for n in norms]).pow(2).sum())

    def after_backward(self, stepped: bool, batch: int, scale: float) -> None:
        """Call once per micro-batch after its backward; ``stepped``: the optimizer stepped this micro-batch."""
        if stepped:
            self.micro = 0
            return
        self.micro += 1
        if self.micro == 1:
            self.small_sq = self._sq() / (batch * scale) ** 2

    def before_step(self, batch: int, scale: float) -> None:
        """Call just before the optimizer step with the accumulated gradients in place."""
        k = self.micro + 1
        if k >= 2 and self.small_sq is not None:
            big_sq = self._sq() / (k * batch * scale) ** 2
            self.noise.update(self.small_sq, batch, big_sq, k * batch)
            self.previous = None
        elif k == 1:
            current = self._flat(batch * scale)  # the mean gradient of this step's batch
            if current is not None and self.previous is not None and self.previous.numel() == current.numel():
                cur_sq, prev_sq = float(current.dot(current)), float(self.previous.dot(self.previous))
                pair_sq = (cur_sq + prev_sq + 2 * float(current.dot(self.previous))) / 4  # |mean over 2B|^2
                self.noise.update((cur_sq + prev_sq) / 2, batch, pair_sq, 2 * batch)
            self.previous = current
        self.small_sq = None
