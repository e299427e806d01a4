"""At ``trainer.auto_batch()``: the probe, the dataloader timing, the law cache and the decision."""
