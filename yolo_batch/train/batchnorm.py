"""``bn_momentum: auto``: BatchNorm running statistics that average over the same number of images at any batch.

Ultralytics sets every BatchNorm's momentum to 0.03 (``initialize_weights``), and the running mean and variance
move by that share at every training iteration, whatever the batch. At batch 16, Ultralytics' default batch and
the reference here, a batch's statistics keep half their weight for ``ln 0.5 / ln 0.97 = 22.8`` iterations,
364 images. At batch 64 the same momentum keeps them for 22.8 iterations of 64 images, 1456 images: 4x fewer
updates per epoch, and running statistics that trail the weights for longer (the notebook traced the early-epoch
mAP lag of large batches to this).

``auto`` sets ``momentum_b = 1 - (1 - momentum_16) ** (b / 16)`` on the training model, which keeps the decay per
image: 0.1147 at 64, 0.0151 at 8. The EMA model (what validation, ``last.pt`` and ``best.pt`` use) is never
touched, so checkpoints keep Ultralytics' momentum. ``keep`` (the default) changes nothing, and so does a run
the plugin only measures (an integer batch, ``YOLO_BATCH_OBSERVE=1``): measuring never changes training.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from yolo_batch.core.recipe import REFERENCE_BATCH, half_life_images, scaled  # the pure formulas, in the core
from yolo_batch.session import log

if TYPE_CHECKING:
    from ultralytics.engine.trainer import BaseTrainer

    from yolo_batch.session import Session

__all__ = ("REFERENCE_BATCH", "apply", "half_life_images", "scaled")


def apply(trainer: BaseTrainer, session: Session) -> None:
    """Scale the training model's BatchNorm momentum to the batch it trains at (``bn_momentum: auto`` only).

    Runs at every epoch start (the batch may have stepped down after running out of memory); logs a change.
    Only where the plugin chooses the batch (auto-plus, or a goodput run resumed): a run it only measures
    (an integer batch, ``YOLO_BATCH_OBSERVE``) trains as stock. The large-batch recipe (a ``speed`` or
    ``goodput`` pick above nbs, also when such a run resumes) turns it on too.
    """
    asked = session.spec.bn_momentum == "auto" and (session.decides or session.adapts)
    if not (asked or session.lr.bn_auto):  # bn_auto: the large-batch recipe above nbs (`recipe`, via `lrscale`)
        return
    batch = trainer.batch_size
    if session.bn_batch == batch:
        return
    import torch.nn as nn
    from ultralytics.utils.torch_utils import unwrap_model

    if session.bn_momenta is None:
        session.bn_momenta = {}
    originals = session.bn_momenta
    changed = []
    for name, m in unwrap_model(trainer.model).named_modules():  # type: ignore[arg-type]  # Ultralytics types model str | Path
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.momentum is not None:
            base = originals.setdefault(name, m.momentum)
            m.momentum = scaled(base, batch)
            changed.append(base)
    session.bn_batch = batch
    if changed:
        base = max(set(changed), key=changed.count)
        logger, prefix = log()
        logger.info(
            f"{prefix}bn_momentum auto: BatchNorm momentum {base:g} -> {scaled(base, batch):.4f} at batch {batch} "
            f"(running statistics halve over ~{half_life_images(base, REFERENCE_BATCH):.0f} images, as at batch "
            f"{REFERENCE_BATCH}), {len(changed)} layers"
        )
