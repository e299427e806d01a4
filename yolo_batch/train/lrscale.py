"""``lr_scaling``: the one owner of the learning-rate factor, applied from the user's base lr0 at the batch that trains.

``trainer.args.lr0`` stays the user's base lr0 all run long, so ``last.pt``'s ``train_args``, the ``args.yaml`` a
resume writes and a ``cfg=args.yaml`` rerun all start from it. The factor (`goodput.lr_factor`: effective batch /
nbs, or its square root, above nbs) goes to the optimizer: each group's ``initial_lr`` (warm-up's target) and the
scheduler's ``base_lrs`` (every epoch's lr), computed from the scheduler's own base at factor 1, never from a value
already scaled. It is set once the optimizer is built and a checkpoint loaded (`start`, at
``on_pretrain_routine_end``), and again whenever the batch changes (`follow`: a goodput switch, an out-of-memory
step-down), so it always follows the batch that trains. A resume takes ``lr_scaling`` from the decision it
continues (`from_record`) unless auto-plus decides again. The state is the Session's `LrScale`.

The large-batch recipe (`yolo_batch.core.recipe`) goes through here too: its lr rule as the scaling, and its warm-up
floor on Ultralytics' ``_get_warmup_iterations`` (`warmup`, an instance attribute `wiring.attach` sets), so
``args.warmup_epochs`` keeps the user's value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from yolo_batch.core.goodput import effective, lr_factor
from yolo_batch.core.recipe import warmup_iterations
from yolo_batch.session import LrScale, log, session

if TYPE_CHECKING:
    from collections.abc import Callable

    from ultralytics.engine.trainer import BaseTrainer

    from yolo_batch.core.recipe import Recipe
    from yolo_batch.session import Session


def plan(trainer: BaseTrainer, s: Session, scaling: str, batch: int, recipe: Recipe | None = None) -> dict[str, Any]:
    """At a decision: note the scaling for ``batch``; the record's fields (``lr0`` is the base). Changes no lr yet.

    With ``optimizer=auto`` (which picks its own lr) nothing is scaled, and the log says so. A large-batch
    ``recipe`` (`yolo_batch.core.recipe`, ``speed``/``goodput`` above nbs) brings its own scaling, per optimizer family
    (with ``optimizer=auto`` the family Ultralytics builds, from the lr it picks), its warm-up floor and
    ``bn_momentum`` auto.
    """
    nbs, lr0 = trainer.args.nbs, trainer.args.lr0
    if recipe is not None:
        s.lr = LrScale(recipe.lr_scaling, recipe.lr_scaling != "none", warmup_floor=recipe.warmup_floor, bn_auto=True)
        scaled = None if trainer.args.optimizer == "auto" else lr0 * recipe.lr_factor  # auto: its own lr, scaled
        return {"lr_scaling": recipe.lr_scaling, "lr0": lr0, "lr0_scaled": scaled, "effective_batch": batch}
    applies = scaling != "none" and trainer.args.optimizer != "auto"
    factor = lr_factor(scaling, batch, nbs) if applies else 1.0
    if scaling != "none" and not applies and lr_factor(scaling, batch, nbs) != 1.0:
        logger, prefix = log()
        logger.warning(
            f"{prefix}lr_scaling={scaling} has no effect with optimizer=auto, which picks its own lr; "
            "set optimizer=SGD or AdamW and lr0"
        )
    s.lr = LrScale(scaling=scaling, applies=applies)
    return {"lr_scaling": scaling, "lr0": lr0, "lr0_scaled": lr0 * factor, "effective_batch": effective(batch, nbs)}


def from_record(trainer: BaseTrainer, s: Session, record: dict[str, Any] | None) -> None:
    """A resume that does not decide: the scaling of the decision it continues (none without one)."""
    scaling = str((record or {}).get("lr_scaling") or "none")
    recipe = (record or {}).get("recipe") or {}
    s.lr = LrScale(
        scaling=scaling,
        applies=scaling != "none" and trainer.args.optimizer != "auto",
        warmup_floor=int(recipe.get("warmup_floor") or 0),
        bn_auto=bool(recipe),
    )


def start(trainer: BaseTrainer, s: Session) -> None:
    """Once the optimizer and scheduler are built and a checkpoint loaded: scale to the batch that trains."""
    scheduler = getattr(trainer, "scheduler", None)
    if not s.lr.applies or scheduler is None:
        return
    s.lr.base_lrs = list(scheduler.base_lrs)  # built from args.lr0, the base: factor 1
    s.lr.factor = 1.0
    for group, base in zip(trainer.optimizer.param_groups, s.lr.base_lrs):  # type: ignore[attr-defined]  # Ultralytics types optimizer None
        group["initial_lr"] = base  # a checkpoint's groups hold the factor of the batch it trained at
    follow(trainer, s)


def follow(trainer: BaseTrainer, s: Session) -> str:
    """Set the factor for ``trainer.batch_size`` on the optimizer and scheduler; the words for the log."""
    state = s.lr
    if not state.applies or state.base_lrs is None:
        return f", lr_scaling {state.scaling}: unchanged"
    factor = lr_factor(state.scaling, trainer.batch_size, trainer.args.nbs)
    if factor == state.factor:
        return f", lr_scaling {state.scaling}: unchanged"
    ratio = factor / state.factor
    for group, base in zip(trainer.optimizer.param_groups, state.base_lrs):  # type: ignore[attr-defined]  # Ultralytics types optimizer None
        group["initial_lr"] = base * factor
        group["lr"] *= ratio
    trainer.scheduler.base_lrs = [base * factor for base in state.base_lrs]  # type: ignore[attr-defined]  # None too
    state.factor = factor
    logger, prefix, lr0 = *log(), trainer.args.lr0
    logger.info(
        f"{prefix}lr_scaling {state.scaling}: lr0 {lr0:g} x {factor:.3g} = {lr0 * factor:.6g} "
        f"at batch {trainer.batch_size} (effective {effective(trainer.batch_size, trainer.args.nbs)}, "
        f"nbs {trainer.args.nbs})"
    )
    return f", lr_scaling {state.scaling}: x{ratio:.3g}"


def lr0_now(trainer: BaseTrainer, s: Session) -> float:
    """The lr0 in effect: the base lr0 x the factor applied now."""
    return trainer.args.lr0 * s.lr.factor


def warmup(trainer: BaseTrainer, stock: Callable[[int], int], num_batches: int) -> int:
    """Ultralytics' warm-up iterations (``stock``), raised to the large-batch recipe's floor when it applies.

    Stock everywhere else (no recipe: the same number Ultralytics computes); see `recipe.warmup_iterations`.
    """
    nw = stock(num_batches)
    s = session(trainer)
    floor = s.lr.warmup_floor if s is not None else 0
    return warmup_iterations(nw, floor, trainer.epochs, num_batches) if floor else nw
