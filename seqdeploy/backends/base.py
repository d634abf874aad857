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
import queue
import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import ClassVar, Protocol, Self, runtime_checkable

import numpy as np

from seqdeploy.errors import InternalError
from seqdeploy.feeds import check_feeds
from seqdeploy.spec import IOSpec

__all__ = ["BaseRunner", "Runner", "abandoned_workers"]

_LONG_CALL_S = 0.05
"""A call predicted to take this long runs in a worker thread, so Ctrl-C stops it within ~0.1 s. Shorter
ones run directly: there the thread hand-off (~0.1 ms) would be visible in the latencies of short calls.
The prediction can be off by a few times (caches, a shared machine): 50 ms keeps a mispredicted call far
below the second it may take to answer Ctrl-C."""
_LONG_CALL_ELEMENTS = 1 << 21
"""Feeds this large (≈2 M elements: batch 64 × seq 512 × 64 features) always run interruptibly."""
_TIMINGS_KEPT = 64


_ABANDONED: list[threading.Event] = []
"""The ``done`` events of workers given up on after an interrupt."""


def abandoned_workers() -> int:
    """How many worker threads of interrupted calls still run native code (an uncancellable torch call).

    The console script ends the process without the interpreter's teardown while one runs: tearing the
    libraries down under it aborts the process (C++ ``terminate``, exit -6) instead of exiting 130.
    """
    return sum(not done.is_set() for done in _ABANDONED)


class _Worker:
    """One daemon thread that runs a runner's calls in order (:attr:`BaseRunner.one_thread`)."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()

    def submit(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)

    def stop(self, *, wait: bool) -> None:
        """End the thread once the job it runs now (if any) returns; ``wait``: until it has ended.

        Waited for when the runner closes: a thread that ran torch still alive while the interpreter tears
        torch down aborts the process (``terminate called without an active exception``, exit -6 — seen
        when ``verify`` exited just after its last call). Not waited for after an interrupt: the thread may
        be inside a call that cannot be cancelled (:func:`abandoned_workers`).
        """
        self._jobs.put(None)
        if wait:
            self._thread.join()


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

    one_thread: ClassVar[bool] = False
    """Every call runs on one persistent worker thread, short ones too. For libraries whose thread pool
    belongs to the calling thread (torch's OpenMP): a model called from two threads keeps two pools
    competing for the cores — measured on 2 cores, an LSTM call at seq 800 took 197 ms instead of 86 ms
    after calls at seq 50 had run on the main thread. The hand-off costs tens of µs per call; ONNX Runtime
    and TensorRT own their pools, so their short calls stay on the calling thread."""

    def __init__(self, name: str, spec: IOSpec) -> None:
        self.name = name
        self.spec = spec
        self._worker: _Worker | None = None
        self._active = False
        self._last_latency_ms: float | None = None
        self._last_device_ms: float | None = None
        # Seconds of the last call by its feed size (elements): how long the next call will take is
        # predicted from them, since it depends on the model (hidden size, layers) and not on the feeds
        # alone — token ids at seq 10⁶ are 1 M elements, and minutes of work at hidden size 4096.
        self._timings: dict[int, float] = {}

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
            self._stop_worker(wait=True)
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
        elements = sum(int(np.size(v)) for v in feeds.values())
        start = time.perf_counter()
        if self.one_thread or self._long_call(elements):
            outputs = self._interruptible(feeds)
        else:
            outputs = self._infer(feeds)
        elapsed = time.perf_counter() - start
        self._last_latency_ms = elapsed * 1e3
        self._timings.pop(elements, None)
        self._timings[elements] = elapsed  # the newest last: the oldest is dropped first
        if len(self._timings) > _TIMINGS_KEPT:
            del self._timings[next(iter(self._timings))]
        missing = [n for n in self.spec.output_names if n not in outputs]
        if missing:
            raise InternalError(f"runner '{self.name}' returned {sorted(outputs)}, missing {missing}")
        return outputs

    def predicted_s(self, elements: int) -> float | None:
        """How long a call with feeds of ``elements`` elements should take, from this runner's earlier
        calls (``None``: no call yet). Scaled linearly from the largest earlier call no larger than it
        (its fixed overhead scaled too: an over-estimate, the safe side); a call smaller than any earlier
        one takes at most as long as the smallest.
        """
        if not self._timings:
            return None
        smaller = [n for n in self._timings if n <= elements]
        if smaller:
            n = max(smaller)
            return self._timings[n] * elements / max(n, 1)
        return self._timings[min(self._timings)]

    def _long_call(self, elements: int) -> bool:
        """Whether a call runs in a worker thread (interruptible): a large feed, a first call (nothing is
        known of this model's speed yet), or one predicted to take :data:`_LONG_CALL_S` or more.
        """
        if elements >= _LONG_CALL_ELEMENTS:
            return True
        predicted = self.predicted_s(elements)
        return predicted is None or predicted >= _LONG_CALL_S

    def _interruptible(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run ``_infer`` in a worker thread so that Ctrl-C/SIGTERM stop the command within ~0.1 s.

        A single native call (an ORT session run, a torch LSTM) at seq 10⁶ takes minutes and Python
        only handles signals between bytecodes of the main thread: the main thread waits here instead,
        asks the backend to cancel (:meth:`_cancel`) and re-raises. The worker is a daemon thread, so an
        uncancellable one never keeps the process alive.
        """
        result: dict[str, dict[str, np.ndarray]] = {}
        error: list[BaseException] = []
        done = threading.Event()

        def work() -> None:
            try:
                result["out"] = self._infer(feeds)
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread unchanged
                error.append(exc)
            finally:
                done.set()

        if self.one_thread:
            if self._worker is None:
                self._worker = _Worker(f"seqdeploy-{self.name}")
            self._worker.submit(work)
        else:
            threading.Thread(target=work, name=f"seqdeploy-{self.name}", daemon=True).start()
        try:
            # An Event, not Thread.join(timeout): a KeyboardInterrupt that lands inside join() marks the
            # thread as stopped while it still runs (CPython bpo-45274), and is_alive() then lies.
            while not done.wait(0.1):
                pass
        except KeyboardInterrupt:
            self._cancel()
            _ABANDONED.append(done)  # may still run (torch cannot cancel): the process must end without it
            self._stop_worker(wait=False)  # it may be stuck in that call: a later call gets a fresh one
            raise
        if error:
            raise error[0]
        return result["out"]

    def _stop_worker(self, *, wait: bool) -> None:
        if self._worker is not None:
            self._worker.stop(wait=wait)
            self._worker = None

    def _cancel(self) -> None:  # noqa: B027 - optional hook: most backends cannot cancel a running call
        """Ask a running ``_infer`` (in the worker thread) to stop early; best effort."""

    @abc.abstractmethod
    def _load(self) -> None:
        """Load the model or engine and allocate what ``_infer`` needs."""

    @abc.abstractmethod
    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one inference on validated feeds."""

    def _unload(self) -> None:  # noqa: B027 - optional hook: most backends free by dropping references
        """Free what ``_load`` allocated."""
