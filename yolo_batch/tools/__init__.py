"""The tools: `yolo-batch` (plan, sweep, compare, make-data, demo, cache), the reports, the synthetic data.

They run the stock `yolo` in subprocesses or in process and never reach into a live trainer.
"""
