"""Latency statistics in milliseconds (floats; formatting happens only in renderers)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["LatencyStats", "throughput"]


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """Summary of latency samples, all in ms. Percentiles interpolate linearly (numpy's default)."""

    n: int
    min_ms: float
    mean_ms: float
    std_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def from_samples(cls, samples_ms: Sequence[float]) -> LatencyStats:
        """Statistics of ``samples_ms`` (at least one sample; std is the sample std, 0 for one sample)."""
        a = np.asarray(samples_ms, dtype=np.float64)
        if a.size == 0:
            raise ValueError("no latency samples")
        p50, p90, p99 = np.percentile(a, [50, 90, 99])
        return cls(
            n=int(a.size),
            min_ms=float(a.min()),
            mean_ms=float(a.mean()),
            std_ms=float(a.std(ddof=1)) if a.size > 1 else 0.0,
            p50_ms=float(p50),
            p90_ms=float(p90),
            p99_ms=float(p99),
            max_ms=float(a.max()),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def throughput(latency_ms: float, batch: int, seq: int) -> tuple[float, float]:
    """``(sequences/s, tokens/s)`` for one call of ``batch`` sequences of ``seq`` tokens taking ``latency_ms``."""
    if latency_ms <= 0 or not math.isfinite(latency_ms):
        return float("nan"), float("nan")
    per_s = 1e3 / latency_ms
    return batch * per_s, batch * seq * per_s
