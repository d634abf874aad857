"""Latency profiling: statistics (``timing``), FLOPs (``flops``), the sweep (``run``), reports and plots."""
