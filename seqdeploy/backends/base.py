"""The runner protocol every backend implements, and the base class that validates for them.

A runner is a context manager: entering loads the model or engine, leaving frees it. ``infer`` takes
feeds keyed by IOSpec input names and returns every IOSpec output by name. Runners keep **no state
between calls**: recurrent state always goes in and out explicitly (see :func:`seqdeploy.feeds.carry_state`).

Backends subclass :class:`BaseRunner` and write only the hooks ``_load``, ``_infer`` and ``_unload``:
the public methods check that the runner is active, check the feeds against the IOSpec (names,
dtypes, ranks, static dims, consistent named axes, token ids inside the vocabulary, lengths inside
``[1, seq]``), time the call and check that every output came back. A native TensorRT runner (next
wave) is one more subclass registered in :mod:`seqdeploy.backends` — nothing else changes.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

import numpy as np

from seqdeploy.errors import InternalError
from seqdeploy.feeds import check_feeds
from seqdeploy.spec import IOSpec

__all__ = ["BaseRunner", "Runner"]


@runtime_checkable
class Runner(Protocol):
    """What the parity checker and the profiler need from a backend."""

    name: str
    spec: IOSpec

    def __enter__(self) -> Self: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def infer(self, feeds: Mapping[str, np.ndarray], *, check: bool = True) -> dict[str, np.ndarray]: ...

    @property
    def last_latency_ms(self) -> float | None: ...


class BaseRunner(abc.ABC):
    """Template for runners: public methods validate, ``_``-hooks compute.

    Args:
        name: Backend name as the user typed it (``"ort-cpu"``), used in reports.
        spec: The IOSpec of the graph this runner executes.
    """

    def __init__(self, name: str, spec: IOSpec) -> None:
        self.name = name
        self.spec = spec
        self._active = False
        self._last_latency_ms: float | None = None
        self._last_device_ms: float | None = None

    def __enter__(self) -> Self:
        if self._active:
            raise InternalError(f"runner '{self.name}' entered twice")
        self._load()
        self._active = True
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._active:
            self._active = False
            self._unload()

    @property
    def last_latency_ms(self) -> float | None:
        """Host wall time of the last ``infer`` (hook only, validation excluded), in milliseconds."""
        return self._last_latency_ms

    @property
    def last_device_ms(self) -> float | None:
        """Device time of the last ``infer`` measured with device events (CUDA), or ``None`` where the
        backend cannot measure it. Reported separately from host wall time.
        """
        return self._last_device_ms

    def infer(self, feeds: Mapping[str, np.ndarray], *, check: bool = True) -> dict[str, np.ndarray]:
        """Run the graph on ``feeds`` and return every output by name.

        Args:
            feeds: One array per IOSpec input.
            check: Validate feeds against the IOSpec first. Only the profiler turns this off, after
                checking the same feeds once, so that validation is not timed.

        Raises:
            InputError: The feeds do not match the IOSpec; the message says what was expected.
        """
        if not self._active:
            raise InternalError(f"runner '{self.name}' used outside its 'with' block")
        if check:
            check_feeds(self.spec, feeds)
        start = time.perf_counter()
        outputs = self._infer(feeds)
        self._last_latency_ms = (time.perf_counter() - start) * 1e3
        missing = [n for n in self.spec.output_names if n not in outputs]
        if missing:
            raise InternalError(f"runner '{self.name}' returned {sorted(outputs)}, missing {missing}")
        return outputs

    @abc.abstractmethod
    def _load(self) -> None:
        """Load the model or engine and allocate what ``_infer`` needs."""

    @abc.abstractmethod
    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one inference on validated feeds."""

    def _unload(self) -> None:  # noqa: B027 - optional hook: most backends free by dropping references
        """Free what ``_load`` allocated."""
