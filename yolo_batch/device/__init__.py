"""The devices: memory headroom, peak meters and the one OOM predicate; several GPUs (DDP)."""
