"""What a run writes: the decision's record and history, the per-epoch effect, the summary, the loggers."""
