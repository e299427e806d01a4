"""During training: the pipeline rebuild, out-of-memory recovery, goodput's switch, lr and BatchNorm."""
