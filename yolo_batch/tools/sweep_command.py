"""``yolo-batch sweep``: the engine's keys split off, then the local engine (`sweep`) or Ray's (`sweep_ray`).

The one module that knows both engines, so neither imports the other (`sweep_ray` stands on `sweep`).
"""

from __future__ import annotations

from yolo_batch.tools.sweep import local_sweep
from yolo_batch.tools.sweep_engine import split_engine
from yolo_batch.tools.sweep_ray import ray_sweep


def sweep_cli(args: list[str]) -> int:
    """``yolo-batch sweep``: train the recipe at each batch (reusing and resuming), then compare.

    Args:
        args (list[str]): ``key=value`` words; see `yolo_batch.tools.sweep.USAGE`.

    Returns:
        (int): 0 once every run is finished and compared; 130 after Ctrl-C (one line says how to resume).

    Raises:
        AutoPlusError: For a bad argument or project (before anything is trained), or a failed run (finished
            runs are kept).
    """
    engine, rest = split_engine(args)
    if engine["engine"] == "ray":
        return ray_sweep(args, rest, engine)  # Ray itself is imported only inside, when it runs
    return local_sweep(args, rest)
