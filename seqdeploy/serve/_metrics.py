"""``/metrics``: Prometheus text with Triton's metric names where they mean the same thing.

Triton's per-model counters (server ``docs/user_guide/metrics.md``, core ``src/metrics.cc``), labelled
``{model, version}``: ``nv_inference_request_success`` / ``_failure`` (with ``reason``), ``nv_inference_count``
(inferences = batch rows of successful requests), ``nv_inference_exec_count`` (executions), and the
cumulative microseconds ``nv_inference_request_duration_us``, ``nv_inference_queue_duration_us`` and
``nv_inference_compute_{input,infer,output}_duration_us`` (a request in a batch is charged the batch's
compute time, as in Triton). seqdeploy's own gauges (queue length, live and backlogged sequences) are named
``seqdeploy_*``. No GPU gauges: this server runs ONNX Runtime on whatever the runtime chose.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping

__all__ = ["REASONS", "Metrics"]

REASONS = ("REJECTED", "CANCELED", "BACKEND", "OTHER")

_COUNTERS = {
    "nv_inference_request_success": "Number of successful inference requests, all batch sizes",
    "nv_inference_count": "Number of inferences performed (does not include cached requests)",
    "nv_inference_exec_count": "Number of model executions performed (does not include cached requests)",
    "nv_inference_request_duration_us": (
        "Cumulative inference request duration in microseconds (includes cached requests)"
    ),
    "nv_inference_queue_duration_us": (
        "Cumulative inference queuing duration in microseconds (includes cached requests)"
    ),
    "nv_inference_compute_input_duration_us": (
        "Cumulative compute input duration in microseconds (does not include cached requests)"
    ),
    "nv_inference_compute_infer_duration_us": (
        "Cumulative compute inference duration in microseconds (does not include cached requests)"
    ),
    "nv_inference_compute_output_duration_us": (
        "Cumulative inference compute output duration in microseconds (does not include cached requests)"
    ),
}
_FAILURE = "nv_inference_request_failure"
_FAILURE_HELP = "Number of failed inference requests, all batch sizes"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """Thread-safe counters per model (workers count executions, the event loop counts requests)."""

    def __init__(self, models: Iterable[tuple[str, str]]) -> None:
        self._lock = threading.Lock()
        self._versions = dict(models)
        self._counters: dict[str, dict[str, float]] = {m: defaultdict(float) for m in self._versions}
        self._failures: dict[str, dict[str, int]] = {m: dict.fromkeys(REASONS, 0) for m in self._versions}

    def execution(self, model: str) -> None:
        """One model execution (called from a worker thread); inferences are counted per successful request,
        as Triton does.
        """
        with self._lock:
            self._counters[model]["nv_inference_exec_count"] += 1

    def success(
        self,
        model: str,
        *,
        rows: int,
        duration_ns: int,
        queue_ns: int,
        compute_input_ns: int,
        compute_infer_ns: int,
        compute_output_ns: int,
    ) -> None:
        """One successful request."""
        with self._lock:
            c = self._counters[model]
            c["nv_inference_request_success"] += 1
            c["nv_inference_count"] += rows
            c["nv_inference_request_duration_us"] += duration_ns // 1000
            c["nv_inference_queue_duration_us"] += queue_ns // 1000
            c["nv_inference_compute_input_duration_us"] += compute_input_ns // 1000
            c["nv_inference_compute_infer_duration_us"] += compute_infer_ns // 1000
            c["nv_inference_compute_output_duration_us"] += compute_output_ns // 1000

    def failure(self, model: str, reason: str, duration_ns: int = 0) -> None:
        """One failed request of a known model (``reason``: one of :data:`REASONS`)."""
        with self._lock:
            self._failures[model][reason if reason in REASONS else "OTHER"] += 1
            self._counters[model]["nv_inference_request_duration_us"] += duration_ns // 1000

    def value(self, name: str, model: str, reason: str | None = None) -> float:
        """One counter's value (tests and the load test read them)."""
        with self._lock:
            if name == _FAILURE:
                return float(self._failures[model][reason] if reason else sum(self._failures[model].values()))
            return float(self._counters[model][name])

    def render(self, gauges: Mapping[str, Mapping[str, float]] | None = None) -> str:
        """The Prometheus text exposition (``text/plain; version=0.0.4``)."""
        lines: list[str] = []
        with self._lock:
            for name in ("nv_inference_request_success", _FAILURE, *list(_COUNTERS)[1:]):
                lines.append(f"# HELP {name} {_FAILURE_HELP if name == _FAILURE else _COUNTERS[name]}")
                lines.append(f"# TYPE {name} counter")
                for model, version in self._versions.items():
                    m, v = _escape(model), _escape(version)
                    if name == _FAILURE:
                        failures = self._failures[model]
                        lines.extend(
                            f'{name}{{model="{m}",reason="{r}",version="{v}"}} {failures[r]}' for r in REASONS
                        )
                    else:
                        lines.append(f'{name}{{model="{m}",version="{v}"}} {int(self._counters[model][name])}')
        for gauge, help_ in (
            ("queue", "Requests waiting for an execution"),
            ("executing", "Requests in an execution now"),
            ("live_sequences", "Sequences holding a slot (state kept on the server)"),
            ("backlog_sequences", "New sequences waiting for a free slot"),
        ):
            rows = [(m, g[gauge]) for m, g in (gauges or {}).items() if gauge in g]
            if not rows:
                continue
            name = f"seqdeploy_{gauge}"
            lines.append(f"# HELP {name} {help_}")
            lines.append(f"# TYPE {name} gauge")
            for model, value in rows:
                lines.append(
                    f'{name}{{model="{_escape(model)}",version="{_escape(self._versions[model])}"}} {int(value)}'
                )
        return "\n".join(lines) + "\n"
