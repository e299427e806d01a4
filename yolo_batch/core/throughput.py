"""Speed from numbers alone: seconds per training step against the batch, the dataloader's ceiling, images/s.

Pure and without torch, as `policy`. The probe times its real training steps (`probe.ProbeResult`: forward, loss
and backward in ``train_seconds``, the optimizer step with the EMA update apart in ``optimizer_seconds``, the
warm-up step left out, the validation forward timed apart); `loader.measure` times the training dataloader
as Ultralytics builds it. `Pace` turns both into predicted training images/s at any batch:

- one iteration at batch ``b`` takes ``fixed + per_image x b`` seconds, plus the optimizer step once per
  ``accumulate = round(nbs / b)`` iterations (Ultralytics steps the optimizer on ``nbs`` images); an epoch of
  ``n`` images is ``ceil(n / b)`` iterations, the last one partial, so on a small training set a batch that
  leaves a small remainder pays a whole iteration's fixed cost for it;
- the dataloader delivers ``loader`` images/s. Where its workers run beside the step (a GPU with
  ``workers > 0``) the slower of the two sets the pace: ``min(b / step(b), loader)``. Where they share the
  step's cores (a CPU) or run in the training process (``workers=0``) their times add:
  ``1 / (step(b) / b + 1 / loader)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from yolo_batch.core.goodput import accumulate as nominal_accumulate

LOADER_SHARE_NOTE = 0.25  # serial pipeline: say so when loading takes at least this share of the time per image
LOADER_DECIMALS = 1  # the dataloader's images/s is kept to 0.1, once: the live decision and its record say one figure


@dataclass(frozen=True)
class TimeLaw:
    """Seconds of one training iteration: ``fixed + per_image x batch``, plus the optimizer's share.

    Attributes:
        fixed_seconds (float): Per-iteration cost that does not grow with the batch (kernel launches, Python).
        per_image_seconds (float): Cost of each image in forward, loss and backward.
        optimizer_seconds (float): One optimizer step with the EMA update.
        nbs (int): Ultralytics' nominal batch: the optimizer steps once per ``round(nbs / batch)`` iterations.

    Examples:
        >>> law = TimeLaw(0.1, 0.01, 0.05, nbs=64)
        >>> round(law.step_seconds(16), 4), round(law.step_seconds(64), 4)  # 16: the optimizer every 4th batch
        (0.2725, 0.79)
    """

    fixed_seconds: float
    per_image_seconds: float
    optimizer_seconds: float = 0.0
    nbs: int = 64
    knee: int = 0
    beyond_per_image_seconds: float = 0.0

    def work_seconds(self, batch: float) -> float:
        """Forward, loss and backward of ``batch`` images; above ``knee`` each image costs ``beyond_per_image_seconds``.

        Examples:
            >>> refitted = TimeLaw(0.1, 0.01, knee=32, beyond_per_image_seconds=0.02)  # `refit_time_law`
            >>> [round(t, 6) for t in (TimeLaw(0.1, 0.01).work_seconds(32), *map(refitted.work_seconds, (32, 64)))]
            [0.42, 0.42, 1.06]
        """
        if not self.knee or batch <= self.knee:
            return self.fixed_seconds + self.per_image_seconds * batch
        return (
            self.fixed_seconds
            + self.per_image_seconds * self.knee
            + self.beyond_per_image_seconds * (batch - self.knee)
        )

    def step_seconds(self, batch: int) -> float:
        """Seconds per iteration at ``batch``, the optimizer step spread over the iterations it serves."""
        accumulate = nominal_accumulate(batch, self.nbs)
        return self.work_seconds(batch) + self.optimizer_seconds / accumulate

    def as_record(self) -> dict[str, Any]:
        """The law as plain JSON types (``knee`` and ``beyond_per_image_seconds`` only after a refit)."""
        out = {
            "fixed_seconds": round(self.fixed_seconds, 6),
            "per_image_seconds": round(self.per_image_seconds, 7),
            "optimizer_seconds": round(self.optimizer_seconds, 6),
            "nbs": self.nbs,
        }
        if self.knee:
            out |= {"knee": self.knee, "beyond_per_image_seconds": round(self.beyond_per_image_seconds, 7)}
        return out

    def images_per_s(self, batch: int) -> float:
        """Training images per second the step alone allows at ``batch``."""
        return batch / self.step_seconds(batch)


def fit_time_law(points: list[tuple[int, float]], optimizer_seconds: float = 0.0, nbs: int = 64) -> TimeLaw:
    """Least-squares ``seconds = fixed + per_image x batch`` through the probe's timed steps.

    A negative fixed part (timing noise) refits through the origin; a falling line (the device was not busy
    at the probed sizes) becomes flat at the mean: neither the fixed nor the per-image part is ever negative.

    Args:
        points (list[tuple[int, float]]): ``(batch, seconds)`` of forward, loss and backward.
        optimizer_seconds (float): One optimizer step with the EMA update.
        nbs (int): The run's nominal batch.

    Returns:
        (TimeLaw): The law.

    Raises:
        ValueError: With fewer than two different batch sizes.

    Examples:
        >>> law = fit_time_law([(2, 0.14), (4, 0.18), (8, 0.26)])
        >>> round(law.fixed_seconds, 3), round(law.per_image_seconds, 3)
        (0.1, 0.02)
    """
    pts = [(int(b), float(s)) for b, s in points]
    if len({b for b, _ in pts}) < 2:
        raise ValueError(f"need steps at two different batch sizes to fit a time law, got {points}")
    n = len(pts)
    mx, my = sum(b for b, _ in pts) / n, sum(s for _, s in pts) / n
    slope = sum((b - mx) * (s - my) for b, s in pts) / sum((b - mx) ** 2 for b, _ in pts)
    fixed = my - slope * mx
    if slope <= 0:
        slope, fixed = 0.0, my
    elif fixed < 0:
        slope, fixed = sum(b * s for b, s in pts) / sum(b * b for b, _ in pts), 0.0
    return TimeLaw(fixed, slope, max(float(optimizer_seconds), 0.0), int(nbs))


def refit_time_law(law: TimeLaw, points: list[tuple[int, float]], batch: int, seconds: float) -> TimeLaw | None:
    """The time law kept where it was fitted, and above its largest timed batch the line to a step timed at ``batch``.

    As the memory law is refitted through the verified step (`decide.refit_law`): small batches mislead about a
    large one (the law from batches 2-32 predicted 6-35 % too many images/s at 128-256 on a CPU). Above the knee
    (the largest timed batch) each image costs what the timed step says, from the law's own time at the knee (so
    the law stays continuous), never less than nothing; the sizes the law was fitted on keep it. None when
    ``batch`` is not above the timed sizes.

    Examples:
        >>> new = refit_time_law(TimeLaw(0.1, 0.01, 0.02, 64), [(8, 0.18), (32, 0.42)], 256, 3.0)
        >>> new.knee, round(new.beyond_per_image_seconds, 6), round(new.work_seconds(256), 6), new.work_seconds(8)
        (32, 0.011518, 3.0, 0.18)
    """
    if not points or seconds <= 0:
        return None
    top = max(b for b, _ in points)
    if batch <= top:
        return None
    base = TimeLaw(law.fixed_seconds, law.per_image_seconds, law.optimizer_seconds, law.nbs)  # the fitted law
    beyond = max((seconds - base.work_seconds(top)) / (batch - top), 0.0)
    return TimeLaw(law.fixed_seconds, law.per_image_seconds, law.optimizer_seconds, law.nbs, top, beyond)


@dataclass(frozen=True)
class Pace:
    """Predicted training images/s per batch: the step's time law and the dataloader's rate.

    Attributes:
        law (TimeLaw): The training step's time law.
        loader_images_per_s (float | None): The training dataloader's images/s (None: not measured).
        overlapped (bool): The loader's workers run beside the step (a GPU with workers); else the times add.
        workers (int): The loader's worker processes.
        cpus (int): CPU cores of the machine, for the advice.
        cache (str): The run's ``cache=`` (``False``, ``ram`` or ``disk``), for the advice.
        loader_images (int): Images the loader's rate was measured on.
        loader_seconds (float): Seconds it was measured over (after its first batch).
        loader_start_seconds (float): Seconds to build the loader and get its first batch (workers' start).
        points (tuple): The ``(batch, seconds)`` steps the law was fitted on.
        dataset_size (int | None): Training images per epoch (None: an endless stream, no partial batch).
        epochs (int | None): The run's epochs (None: not known).
        loader_skipped (int): Batches the loader's measurement skipped as its warm-up (the first, the prefetched).

    Examples:
        >>> pace = Pace(TimeLaw(0.05, 0.002), loader_images_per_s=400, overlapped=True, workers=8, cpus=16)
        >>> round(pace.images_per_s(16)), round(pace.images_per_s(128)), pace.loader_bound(128)
        (195, 400, True)
    """

    law: TimeLaw
    loader_images_per_s: float | None = None
    overlapped: bool = True
    workers: int = 0
    cpus: int = 1
    cache: str = "False"
    loader_images: int = 0
    loader_seconds: float = 0.0
    loader_start_seconds: float = 0.0
    points: tuple = ()
    dataset_size: int | None = None
    epochs: int | None = None  # the run's epochs (the optimizer steps a batch makes: `policy`'s short-run floor)
    loader_skipped: int = 0

    def __post_init__(self) -> None:
        """Keep the dataloader's rate at the precision the record holds, so a Pace read back from a record is this one.

        Rounded once here, never again: the decision's words, its tables and the ones printed from the record all
        say the same figure (1238.52 images/s was said as 1239 in the decision's words, 1238 from the record's 1238.5).
        """
        if self.loader_images_per_s is not None:
            object.__setattr__(self, "loader_images_per_s", round(float(self.loader_images_per_s), LOADER_DECIMALS))

    def step_images_per_s(self, batch: int) -> float:
        """Images/s the training step allows at ``batch``, over an epoch of ``dataset_size`` images if known.

        Examples:
            >>> pace = Pace(TimeLaw(0.1, 0.01), dataset_size=128)  # 64 and 88: both 2 iterations, the same time
            >>> [round(pace.step_images_per_s(b), 1) for b in (64, 88, 128)]
            [86.5, 86.5, 92.8]
            >>> round(TimeLaw(0.1, 0.01).images_per_s(88), 1)  # an endless stream of full batches
            89.8
        """
        n, law = self.dataset_size, self.law
        if not n:
            return law.images_per_s(batch)
        full, rest = divmod(n, batch)  # the last, partial batch pays a whole iteration's fixed cost
        optimizer = law.step_seconds(batch) - law.work_seconds(batch)
        last = law.work_seconds(rest) + optimizer if rest else 0.0
        return n / (full * law.step_seconds(batch) + last)

    def images_per_s(self, batch: int) -> float:
        """Predicted training images/s at ``batch``."""
        step = self.step_images_per_s(batch)
        loader = self.loader_images_per_s
        if not loader:
            return step
        return min(step, loader) if self.overlapped else 1 / (1 / step + 1 / loader)

    def loader_bound(self, batch: int) -> bool:
        """True when the dataloader, not the step, sets the pace at ``batch`` (overlapped pipelines only)."""
        loader = self.loader_images_per_s
        return bool(self.overlapped and loader and loader < self.step_images_per_s(batch))

    def loader_share(self, batch: int) -> float:
        """Share of the time per image spent loading, where the times add (0 when overlapped or unmeasured)."""
        loader = self.loader_images_per_s
        if self.overlapped or not loader:
            return 0.0
        return (1 / loader) / (1 / self.step_images_per_s(batch) + 1 / loader)

    def advice(self) -> str:
        """What raises the dataloader's ceiling on this machine."""
        tips = []
        if self.overlapped and self.workers < self.cpus:
            tips.append(f"more workers= (now {self.workers}, the machine has {self.cpus} CPU cores)")
        if str(self.cache) in {"False", "false", "None", ""}:
            tips.append("cache=ram (or cache=disk) to skip image decoding")
        if self.overlapped:
            tips.append("a lighter augmentation (mosaic) costs less per image")
        else:
            tips.append("on a CPU, loading and training share the cores")
        return "; ".join(tips)

    def binding(self, batch: int) -> str:
        """The ceiling that binds at ``batch``: ``data`` (the dataloader) or ``step`` (the training step).

        Overlapped (a GPU with workers): the slower of the two. Serial (a CPU, ``workers=0``): the larger share of
        the time per image. An untimed loader leaves the step.

        Examples:
            >>> Pace(TimeLaw(0.1, 0.01), 60.0, overlapped=True).binding(8), Pace(TimeLaw(0.1, 0.01), 30.0).binding(8)
            ('step', 'data')
        """
        if self.overlapped:
            return "data" if self.loader_bound(batch) else "step"
        return "data" if self.loader_share(batch) >= 0.5 else "step"

    def binding_words(self, batch: int) -> str:
        r"""The reason's words about the ceiling that binds at ``batch``, with the advice that helps.

        Examples:
            >>> print(Pace(TimeLaw(0.05, 0.001), 500.0, True, 8, 8, "ram").binding_words(128).replace(": ", ":\n"))
            data-bound at 500 images/s (a lighter augmentation (mosaic) costs less per image):
            a larger batch would not be faster
            >>> print(Pace(TimeLaw(0.1, 0.01), 900.0, True, 8, 8).binding_words(64).replace(": ", ":\n"))
            step-bound at 86 images/s (the dataloader gives 900):
            more workers= or cache= would not help; a smaller imgsz or model, or AMP on a GPU, makes each step cheaper
        """
        loader, step = self.loader_images_per_s, self.step_images_per_s(batch)
        if self.binding(batch) == "data":
            if self.overlapped:
                return f"data-bound at {loader:.0f} images/s ({self.advice()}): a larger batch would not be faster"
            return (
                f"data-bound: loading takes {self.loader_share(batch):.0%} of the time per image (dataloader "
                f"{loader:.0f} images/s, workers={self.workers}; {self.advice()}): a larger batch shortens only the "
                "step's share"
            )
        if not loader:
            return f"step-bound at {step:.0f} images/s (the dataloader not timed)"
        given = f"the dataloader gives {loader:.0f}"
        share = self.loader_share(batch)
        if share >= LOADER_SHARE_NOTE:
            given += f", {share:.0%} of the time per image; {self.advice()}"
            return f"step-bound at {step:.0f} images/s ({given})"
        return (
            f"step-bound at {step:.0f} images/s ({given}): more workers= or cache= would not help; a smaller imgsz "
            "or model, or AMP on a GPU, makes each step cheaper"
        )

    def ceilings(self, batch: int) -> dict[str, Any]:
        """Both ceilings, measured apart, and the one that binds at ``batch``: ``batch_decision.json``'s ``ceilings``.

        ``step_images_per_s``: images/s of the training step at each timed size (``batch / seconds``, no loader);
        ``dataloader_images_per_s``: the loader's, with the run's workers, augmentation and imgsz, after its start.
        """
        loader = self.loader_images_per_s
        return {
            "step_images_per_s": [[b, round(b / v, 1)] for b, v in self.points if v > 0],
            "step_at_pick": round(self.step_images_per_s(batch), 1),
            "dataloader_images_per_s": loader or None,
            "binding": self.binding(batch),
            "words": self.binding_words(batch),
        }

    def as_record(self) -> dict[str, Any]:
        """The laws as plain JSON types, for ``batch_decision.json``."""
        law = self.law
        return {
            "time_law": law.as_record(),
            "dataset_size": self.dataset_size,
            "epochs": self.epochs,
            "loader": {
                "images_per_s": self.loader_images_per_s or None,  # kept at LOADER_DECIMALS since construction
                "workers": self.workers,
                "overlapped": self.overlapped,
                "cpus": self.cpus,
                "cache": str(self.cache),
                "images": self.loader_images,
                "seconds": round(self.loader_seconds, 3),
                "start_seconds": round(self.loader_start_seconds, 3),
                "skipped_batches": self.loader_skipped,
            },
        }


def pace_from_record(record: dict[str, Any]) -> Pace | None:
    """The `Pace` a ``batch_decision.json`` record holds, or None for a record without one.

    Examples:
        >>> r = Pace(TimeLaw(0.05, 0.002, 0.01), 300.0, True, 4, 8).as_record()
        >>> round(pace_from_record({"speed": r}).images_per_s(64))
        300
    """
    speed = record.get("speed") or {}
    law, loader = speed.get("time_law"), speed.get("loader") or {}
    if not law:
        return None
    return Pace(
        TimeLaw(
            law["fixed_seconds"],
            law["per_image_seconds"],
            law.get("optimizer_seconds", 0.0),
            law.get("nbs", 64),
            law.get("knee", 0),
            law.get("beyond_per_image_seconds", 0.0),
        ),
        loader.get("images_per_s"),
        bool(loader.get("overlapped", True)),
        int(loader.get("workers", 0)),
        int(loader.get("cpus", 1)),
        str(loader.get("cache", "False")),
        points=tuple((int(b), float(v)) for b, v in (speed.get("points") or {}).get("law") or ()),
        dataset_size=speed.get("dataset_size"),
        epochs=speed.get("epochs"),
    )
