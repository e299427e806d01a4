"""The core: pure numbers, no torch, no trainer.

The batch value and settings, the memory and time laws, the policies, goodput, the large-batch recipe,
the record builders and the what-if tables.
"""
