"""The large-batch recipe ``speed`` and ``goodput`` apply above ``nbs``, from numbers alone (pure, stdlib only).

At or below ``nbs`` (64) Ultralytics accumulates gradients to ``nbs`` images, so the optimizer sees the same
effective batch whatever the batch: that choice is free and keeps Ultralytics' recipe. Above ``nbs`` the run
makes fewer optimizer steps and fewer BatchNorm updates per epoch, and Ultralytics 8.4.190 changes nothing
else. The policy picks a batch there only when its predicted gain is above ``speed_gain`` (`policy`), and then
applies this recipe, one rule per part:

- **lr, per optimizer family.** Ultralytics' detection loss is a *sum* over the batch's images (the criterion
  returns ``loss * batch_size``), so a batch of ``b > nbs`` images already gives SGD a gradient ``b / nbs`` times
  the one at ``nbs``: that is Goyal et al. (2017)'s linear scaling rule, applied by the loss itself (Ultralytics
  also scales ``weight_decay`` by ``b / nbs``). ``SGD`` therefore keeps lr0 (factor 1): a linear factor on top
  would scale it twice. ``MuSGD`` (what ``optimizer=auto`` picks for long runs) keeps lr0 too: half of its update
  is that SGD step; the Muon half is orthogonalised, so it does not grow, and one factor cannot serve both
  halves. Adam, AdamW, Adamax, NAdam, RAdam and RMSprop divide by the gradient's running RMS, so the loss's
  scale cancels: the step per update is the same at any batch and the run simply makes ``b / nbs`` times fewer
  of them. For these the recipe uses the square-root rule, ``lr0 x sqrt(b / nbs)``, which Malladi et al. (2022,
  "On the SDEs and Scaling Rules for Adaptive Gradient Algorithms") derive for Adam-type methods (the linear
  rule over-shoots there). Gradient clipping (Ultralytics clips the norm at 10) still bounds every step.
- **Warm-up floor.** Since 8.4.150 warm-up is ``round(warmup_epochs x iterations per epoch)`` of the run's own
  batch with no floor, so a large batch on a small set warms up over a handful of steps. The recipe restores
  Ultralytics' long-standing floor of ``WARMUP_FLOOR`` (100) iterations (YOLOv5 and Ultralytics before
  8.4.150: ``max(round(warmup_epochs x nb), 100)``), still leaving the final epoch for regular training as
  8.4.190 does (so a short run warms up for fewer: all the epochs but the last). ``warmup_epochs=0`` keeps no
  warm-up. The decision line and the record state the iterations the run warms up for, and which rule set them.
- **BatchNorm momentum: ``bn_momentum: auto``** (`batchnorm`): the running statistics average over as many
  images as at batch 16 (Hoffer et al. 2017 trace the large-batch gap to too few updates; the running
  statistics are the part of it a momentum can fix).

The rules are applied by their owners: `lrscale` (lr and the warm-up floor), `batchnorm` (momentum).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

WARMUP_FLOOR = 100  # iterations: Ultralytics' floor before 8.4.150 (and YOLOv5's)
AUTO_ITERATIONS = 10000  # optimizer=auto: MuSGD above this many iterations, else AdamW (Ultralytics 8.4.190)
STOCK_BATCH = 16  # Ultralytics' default batch
ADAPTIVE = ("Adam", "Adamax", "AdamW", "NAdam", "RAdam", "RMSprop")  # invariant to the loss's scale
SUMMED = ("SGD", "MuSGD")  # the summed loss already scales their step with the batch


def optimizer_steps(dataset_size: int, batch: int, nbs: int, epochs: int) -> int:
    """Optimizer steps of a whole run: one per ``max(batch, nbs)`` images (Ultralytics accumulates up to ``nbs``).

    The count ``optimizer=auto`` chooses by, and what `policy`'s ``speed_min_steps`` holds a batch above ``nbs`` to.

    Examples:
        >>> optimizer_steps(2560, 112, 64, 5), optimizer_steps(2560, 16, 64, 5)
        (115, 200)
    """
    return math.ceil(dataset_size / max(batch, nbs)) * epochs


def auto_optimizer(dataset_size: int, batch: int, nbs: int, epochs: int) -> tuple[str, int]:
    """What ``optimizer=auto`` builds at ``batch``, and the iterations it counts, as Ultralytics 8.4.190.

    Examples:
        >>> auto_optimizer(118287, 16, 64, 100), auto_optimizer(118287, 256, 64, 100)
        (('MuSGD', 184900), ('MuSGD', 46300))
        >>> auto_optimizer(5000, 16, 64, 200), auto_optimizer(5000, 128, 64, 200)
        (('MuSGD', 15800), ('AdamW', 8000))
    """
    iterations = optimizer_steps(dataset_size, batch, nbs, epochs)
    return ("MuSGD" if iterations > AUTO_ITERATIONS else "AdamW"), iterations


def optimizer_note(optimizer: str, dataset_size: int, batch: int, nbs: int, epochs: int) -> str:
    """Words when ``batch`` makes ``optimizer=auto`` choose otherwise than the stock batch 16; else empty.

    Examples:
        >>> optimizer_note("auto", 5000, 128, 64, 200)
        'optimizer=auto builds AdamW at 128 (8000 iterations <= 10000), not MuSGD as at the stock batch 16 (15800)'
        >>> optimizer_note("auto", 5000, 64, 64, 200), optimizer_note("SGD", 5000, 128, 64, 200)
        ('', '')
    """
    if str(optimizer).lower() != "auto" or not dataset_size:
        return ""
    name, its = auto_optimizer(dataset_size, batch, nbs, epochs)
    stock, stock_its = auto_optimizer(dataset_size, STOCK_BATCH, nbs, epochs)
    if name == stock:
        return ""
    sign = ">" if its > AUTO_ITERATIONS else "<="
    return (
        f"optimizer=auto builds {name} at {batch} ({its} iterations {sign} {AUTO_ITERATIONS}), not {stock} as at "
        f"the stock batch {STOCK_BATCH} ({stock_its})"
    )


def lr_rule(optimizer: str) -> tuple[str, str]:
    """The lr scaling for an optimizer family above nbs, and why (see the module docstring).

    Examples:
        >>> lr_rule("AdamW")[0], lr_rule("SGD")[0], lr_rule("MuSGD")[0]
        ('sqrt', 'none', 'none')
    """
    names = {n.lower(): n for n in (*ADAPTIVE, *SUMMED)}
    name = names.get(str(optimizer).lower(), str(optimizer))
    if name in ADAPTIVE:
        return "sqrt", f"{name} is invariant to the summed loss's scale: lr0 x sqrt(batch / nbs) (Malladi 2022)"
    if name in SUMMED:
        return "none", f"{name}'s step already grows with the summed loss (Goyal's linear rule): lr0 kept"
    return "none", f"no rule for optimizer {name}: lr0 kept"


@dataclass(frozen=True)
class Recipe:
    """The large-batch recipe at one pick above nbs.

    Attributes:
        batch (int): The pick.
        nbs (int): The run's nominal batch.
        optimizer (str): The optimizer the run builds (``optimizer=auto`` resolved as Ultralytics does).
        lr_scaling (str): ``sqrt`` or ``none`` (the family's rule), or the user's own ``lr_scaling``.
        lr_factor (float): lr0's factor at the pick.
        warmup_iterations (int): The iterations the run warms up for at the pick: what Ultralytics' loop uses
            (`warmup_iterations`).
        warmup_ultralytics (int): Ultralytics' own warm-up at the pick (iterations).
        warmup_floor (int): The recipe's floor (iterations), before the final-epoch cap.
        warmup_cap (int): The iterations before the final epoch, the most a warm-up takes.
        why (str): The lr rule's reason.
    """

    batch: int
    nbs: int
    optimizer: str
    lr_scaling: str
    lr_factor: float
    warmup_iterations: int
    warmup_ultralytics: int
    warmup_floor: int
    warmup_cap: int
    why: str

    def words(self) -> str:
        r"""The decision line's words.

        Examples:
            >>> print(large_batch(128, 64, "AdamW", "none", 2560, 30, 3.0).words().replace(", ", "\n"))
            large-batch recipe above nbs=64: AdamW lr0 x1.41 (sqrt)
            warm-up 100 iterations (the recipe's floor; Ultralytics: 60)
            bn_momentum auto
        """
        lr = f"lr0 x{self.lr_factor:.3g} ({self.lr_scaling})" if self.lr_factor != 1 else "lr0 kept"
        warm = warmup_words(self.warmup_iterations, self.warmup_ultralytics, self.warmup_floor, self.warmup_cap)
        return f"large-batch recipe above nbs={self.nbs}: {self.optimizer} {lr}, {warm}, bn_momentum auto"

    def as_record(self) -> dict:
        """The recipe as plain JSON types, for ``batch_decision.json``."""
        return {
            "batch": self.batch,
            "nbs": self.nbs,
            "optimizer": self.optimizer,
            "lr_scaling": self.lr_scaling,
            "lr_factor": round(self.lr_factor, 6),
            "warmup_iterations": self.warmup_iterations,
            "warmup_ultralytics": self.warmup_ultralytics,
            "warmup_floor": self.warmup_floor,
            "warmup_cap": self.warmup_cap,
            "bn_momentum": "auto",
            "why": self.why,
        }


def large_batch(
    batch: int,
    nbs: int,
    optimizer: str,
    lr_scaling: str,
    dataset_size: int,
    epochs: int,
    warmup_epochs: float,
) -> Recipe | None:
    """The recipe at ``batch``, or None at or below ``nbs`` (Ultralytics' own recipe holds there).

    Args:
        batch (int): The pick.
        nbs (int): The run's nominal batch.
        optimizer (str): ``args.optimizer`` (``auto`` is resolved as Ultralytics resolves it at ``batch``).
        lr_scaling (str): The user's ``lr_scaling``: ``none`` takes the family's rule, else the user's rule stands.
        dataset_size (int): Training images.
        epochs (int): The run's epochs.
        warmup_epochs (float): ``args.warmup_epochs``.

    Examples:
        >>> r = large_batch(256, 64, "SGD", "none", 2560, 30, 3.0)
        >>> r.lr_scaling, r.lr_factor, r.warmup_iterations, r.warmup_ultralytics, r.warmup_floor, r.warmup_cap
        ('none', 1.0, 100, 30, 100, 290)
        >>> large_batch(64, 64, "SGD", "none", 2560, 30, 3.0) is None
        True
        >>> large_batch(256, 64, "AdamW", "linear", 2560, 30, 3.0).lr_factor  # the user's own rule stands
        4.0
    """
    if batch <= nbs:
        return None
    name = auto_optimizer(dataset_size, batch, nbs, epochs)[0] if str(optimizer).lower() == "auto" else optimizer
    scaling, why = lr_rule(name)
    if lr_scaling != "none":
        scaling, why = lr_scaling, f"lr_scaling={lr_scaling} as set"
    factor = 1.0 if scaling == "none" else batch / nbs if scaling == "linear" else (batch / nbs) ** 0.5
    warm_epochs = min(warmup_epochs, max(epochs - 1, 0))
    nb = math.ceil(dataset_size / batch)  # len(train_loader): Ultralytics keeps the last, partial batch
    stock = round(warm_epochs * nb) if warm_epochs > 0 else 0  # Ultralytics' _get_warmup_iterations
    floor = WARMUP_FLOOR if warm_epochs > 0 else 0
    run = warmup_iterations(stock, floor, epochs, nb)  # what the loop uses: `lrscale.warmup` computes the same
    return Recipe(batch, nbs, str(name), scaling, factor, run, stock, floor, max(epochs - 1, 0) * nb, why)


def warmup_iterations(stock: int, floor: int, epochs: int, batches_per_epoch: int) -> int:
    """Warm-up iterations under the recipe: at least ``floor``, never into the final epoch; ``stock`` without a floor.

    ``stock`` may round to 0 for a short warm-up at a large batch (``round(0.3 x 1)``); the floor still holds.

    Examples:
        >>> warmup_iterations(60, 100, 30, 20), warmup_iterations(40, 100, 3, 20), warmup_iterations(0, 0, 30, 20)
        (100, 40, 0)
        >>> warmup_iterations(300, 100, 30, 100), warmup_iterations(0, 100, 3, 1)
        (300, 2)
    """
    if not floor:
        return stock
    return max(stock, min(floor, max(epochs - 1, 0) * batches_per_epoch))


def warmup_words(iterations: int, stock: int, floor: int, cap: int) -> str:
    """The warm-up the run does, in words, and why: Ultralytics' own, the recipe's floor, or the floor capped.

    Examples:
        >>> warmup_words(100, 60, 100, 580)
        "warm-up 100 iterations (the recipe's floor; Ultralytics: 60)"
        >>> warmup_words(21, 7, 100, 21)
        "warm-up 21 iterations (the recipe's floor 100, capped at 21 to leave the final epoch; Ultralytics: 7)"
        >>> warmup_words(300, 300, 100, 2900)
        "warm-up 300 iterations (Ultralytics' own, at least the recipe's floor 100)"
    """
    if not floor:
        return "no warm-up (none in this run: warmup_epochs=0, or a single epoch)"
    if stock >= floor:
        return f"warm-up {iterations} iterations (Ultralytics' own, at least the recipe's floor {floor})"
    if iterations < floor:
        return (
            f"warm-up {iterations} iterations (the recipe's floor {floor}, capped at {cap} to leave the final epoch; "
            f"Ultralytics: {stock})"
        )
    return f"warm-up {iterations} iterations (the recipe's floor; Ultralytics: {stock})"


# BatchNorm (`bn_momentum: auto`, applied by `batchnorm`; goodput's BatchNorm guard reads the half-life)
REFERENCE_BATCH = 16  # Ultralytics' default batch, at which its momentum of 0.03 was chosen


def scaled(momentum: float, batch: int, reference: int = REFERENCE_BATCH) -> float:
    """The momentum at ``batch`` whose decay per image equals ``momentum``'s at ``reference``.

    Examples:
        >>> round(scaled(0.03, 64), 4), round(scaled(0.03, 8), 4), scaled(0.03, 16)
        (0.1147, 0.0151, 0.03)
    """
    if batch == reference:
        return momentum
    return 1 - (1 - momentum) ** (batch / reference)


def half_life_images(momentum: float, batch: int) -> float:
    """Images after which a batch's statistics keep half their weight in the running average.

    Examples:
        >>> round(half_life_images(0.03, 16)), round(half_life_images(0.03, 64)), round(half_life_images(0.1147, 64))
        (364, 1456, 364)
    """
    return batch * math.log(0.5) / math.log(1 - momentum)
