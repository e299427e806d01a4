"""`AutoPlus`: the Python way in. Register it with a model and auto-plus becomes that model's default batch."""

from __future__ import annotations

import os
from typing import Any

from yolo_batch.activate import activate
from yolo_batch.callbacks import callbacks
from yolo_batch.core.spec import BatchSpec, resolve_spec
from yolo_batch.wiring import Hook


class AutoPlus:
    """Choose the batch from measured memory and log its effect, for every ``model.train()`` of a model.

    Settings left out come from ``config`` (or ``YOLO_BATCH_CONFIG``), then from the shipped defaults; a
    batch value such as ``batch="auto-plus:fit"`` in ``train()`` overrides them. An integer ``batch=`` in
    ``train()`` wins over auto-plus: the plugin then only measures and logs.

    Args:
        policy (str | None): ``ladder`` (16/32/64, else auto-fit) or ``fit`` (largest that fits).
        utilization (float | None): Share of free memory to plan for, in (0, 1).
        candidates (list[int] | None): The ladder's rungs.
        config (str | PathLike | None): A plugin YAML with the keys of ``cfg/auto_plus.yaml``.
        **settings (Any): Any other key of ``cfg/auto_plus.yaml`` (``min_batch``, ``max_batch``, ``probe``,
            ``lr_scaling``, ``noise_scale``, ``oom_retries``...).

    Raises:
        AutoPlusError: For a bad setting or config file, at construction.

    Examples:
        >>> AutoPlus(policy="fit", utilization=0.8).spec.policy
        'fit'
    """

    def __init__(
        self,
        policy: str | None = None,
        utilization: float | None = None,
        candidates: list[int] | None = None,
        config: str | os.PathLike | None = None,
        **settings: Any,
    ) -> None:
        """Validate the settings now, so a typo fails here and not after the model is built."""
        given = {"policy": policy, "utilization": utilization, "candidates": candidates, **settings}
        self.keywords = {k: v for k, v in given.items() if v is not None}
        self.config = config
        self.spec: BatchSpec = resolve_spec(None, self.keywords, config)

    def register(self, model: Any) -> Any:
        """Add the plugin's callbacks to an Ultralytics ``YOLO`` model and return the model.

        Args:
            model: A ``ultralytics.YOLO`` (or any model with ``add_callback``).

        Returns:
            The same model, for chaining: ``model = AutoPlus().register(YOLO("yolo11n.yaml"))``.
        """
        activate()
        for event in callbacks:
            existing = model.callbacks.get(event, [])
            model.callbacks[event] = [f for f in existing if not (isinstance(f, Hook) or f in callbacks.values())]
            model.add_callback(event, Hook(self, event))
        return model

    def __repr__(self) -> str:
        """Settings as given."""
        kw = ", ".join(f"{k}={v!r}" for k, v in self.keywords.items())
        return f"AutoPlus({kw}{', ' if kw and self.config else ''}{f'config={self.config!r}' if self.config else ''})"
