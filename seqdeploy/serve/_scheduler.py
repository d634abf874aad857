"""The schedulers a packaged ``config.pbtxt`` declares, honoured as Triton would, plus exact variable-length batching.

:class:`DynamicScheduler` (``dynamic_batching``, the stateless model) and :class:`SequenceScheduler`
(``sequence_batching`` with implicit state, the stream model) share one loop, run by ``instances`` worker
threads (Triton's model instances): take the oldest eligible request, add the queued requests that can
share its execution up to ``max_batch_size`` rows, and dispatch when the batch reaches its target (the
largest ``preferred_batch_size``, else ``max_batch_size``) or the oldest request has waited
``max_queue_delay_microseconds``. Timed waits use ``threading.Condition`` (futex, sub-millisecond), not the
event loop's timers, whose millisecond granularity would add up to 1 ms to a 100 µs delay.

**Exact variable-length batching.** Requests of different ``T`` share an execution only when the model
has a ``lengths`` input: each is padded to the longest ``T`` (its own ``lengths`` unchanged), and its outputs
are cut back to its own rows and its own ``T``. The package proves padded batches equal to the rows run
alone, so every reply equals the request run by itself (on a TensorRT engine: within the engine's tolerance,
since TensorRT may pick other kernels for another batch shape; that path has never run). Without ``lengths``,
padding would change the result, so only equal ``T`` are merged (the batching key holds every non-batch dim,
``T`` included).

**One request's failure stays its own.** Each request is checked alone before it is queued. If an
execution still raises, every request of that batch is re-run alone: the one that fails again gets 500,
the others their results; a failed sequence request leaves its sequence's state as it was.

**Sequences** (:class:`SequenceScheduler`): state rows are kept per sequence id between requests; a batch
takes at most the head request of each sequence (a sequence's requests run in arrival order, one at a time)
and sets ``START`` per row, so rows of different sequences share an execution. Live sequences are bounded
(``max_sequences``): a new sequence beyond it waits in a backlog for at most ``slot_wait_s`` (or its request's
``timeout``), then gets 503. Idle sequences (no request for ``max_sequence_idle_microseconds``, counted from
the last arrival as Triton does) are freed by the worker loop; the queue itself is bounded by ``max_queue``.
The backlog of new sequences waiting for a slot is bounded too (``max_backlog``, default ``max_sequences``):
a START beyond it gets 503 at once, so a burst of new sequences never fills the queue that the live
sequences' requests need.

**A bug never hangs a model.** The worker loop catches anything that escapes picking or executing a batch:
it logs it, answers every request of that batch (or, if picking failed, every queued request) with 500,
and keeps looping. :attr:`Scheduler.healthy` turns false only if a worker thread is gone, and readiness
follows it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from seqdeploy.errors import InputError
from seqdeploy.serve._model import Prepared, ServedModel
from seqdeploy.serve._protocol import ServeError

__all__ = ["DynamicScheduler", "Job", "Outcome", "Scheduler", "SequenceScheduler"]

_MAX_WAIT_S = 1.0  # the worker loop re-checks its timers at least this often
_ERROR_PAUSE_S = 0.05  # after an internal error, so that a persistent one cannot spin a CPU

log = logging.getLogger("seqdeploy.serve")


@dataclass
class Outcome:
    """What a request gets back from its scheduler.

    Attributes:
        outputs: The request's own outputs (its rows, its ``T``), or ``None`` on error.
        error: The error, or ``None``.
        queue_ns: Time from enqueue to the start of its execution.
        compute_input_ns: Time spent building the batch feeds.
        compute_infer_ns: Time of the backend call it was part of.
        compute_output_ns: Time spent cutting its outputs from the batch.
    """

    outputs: dict[str, np.ndarray] | None
    error: ServeError | None = None
    queue_ns: int = 0
    compute_input_ns: int = 0
    compute_infer_ns: int = 0
    compute_output_ns: int = 0


@dataclass(eq=False)
class Job:
    """A queued request: its prepared feeds and how to deliver its outcome (called once, from a worker thread).

    Attributes:
        prepared: The checked request.
        deliver: Receives the outcome; must not block (the server posts it to the event loop).
        enqueued_ns: ``time.perf_counter_ns()`` at enqueue.
        seq_id: Sequence id (stream models).
        start: ``sequence_start``.
        end: ``sequence_end``.
        timeout_us: The request's ``timeout`` parameter (0 = none); bounds a backlogged sequence's wait.
        claimed: Taken from the queue for an execution (set under the lock). A request withdrawn while still
            queued (``cancel``, or an internal error while picking) was never claimed: releasing it must not
            touch the sequence that another of its requests may be executing.
    """

    prepared: Prepared
    deliver: Callable[[Outcome], None]
    enqueued_ns: int = field(default_factory=time.perf_counter_ns)
    seq_id: int | str | None = None
    start: bool = False
    end: bool = False
    timeout_us: int = 0
    slot_deadline_ns: int | None = None
    finished: bool = False
    delivered: bool = False
    claimed: bool = False

    @property
    def rows(self) -> int:
        """Batch rows of this request."""
        return self.prepared.rows


ExecHook = Callable[[str], None]
"""Called with the model name once per execution (the metrics' exec count)."""


class Scheduler:
    """The shared batching loop; subclasses choose what is eligible and what happens around an execution."""

    def __init__(
        self,
        model: ServedModel,
        *,
        batching: bool = True,
        instances: int = 1,
        max_queue: int = 1024,
        on_execution: ExecHook | None = None,
        queue_delay_us: int | None = None,
    ) -> None:
        s = model.settings
        self.model = model
        self.batching = batching
        # The runtime may accept fewer rows than the config (a TensorRT engine's profile): never merge beyond it.
        runtime_rows = getattr(model.predictor.signature, "max_batch_size", s.max_batch_size)
        self.max_rows = max(1, min(s.max_batch_size, runtime_rows))
        preferred = [p for p in s.preferred_batch_sizes if 0 < p <= self.max_rows]
        self.target_rows = max(preferred) if preferred else self.max_rows
        delay = s.queue_delay_us if queue_delay_us is None else queue_delay_us
        self.delay_ns = delay * 1000 if batching else 0
        self.max_queue = max_queue
        self._instances = max(1, instances)
        self.on_execution = on_execution
        self._cv = threading.Condition()
        self._queue: list[Job] = []
        self._stopping = False
        self._executing = 0
        self._threads: list[threading.Thread] = []

    # -- lifecycle --------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker threads (one per model instance)."""
        for i in range(self._instances):
            t = threading.Thread(target=self._worker, name=f"seqdeploy-{self.model.name}-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop taking requests, finish the queued ones, and join the workers."""
        with self._cv:
            self._stopping = True
            self._on_stop()
            self._cv.notify_all()
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    @property
    def healthy(self) -> bool:
        """Whether every worker thread is running (always true before :meth:`start` and after :meth:`stop`)."""
        with self._cv:
            if self._stopping or not self._threads:
                return True
        return all(t.is_alive() for t in self._threads)

    @property
    def queued(self) -> int:
        """Requests waiting for an execution."""
        with self._cv:
            return len(self._queue)

    # -- submit -----------------------------------------------------------------------------------------------
    def submit(self, job: Job) -> None:
        """Queue a request; its outcome arrives through ``job.deliver``.

        Raises:
            ServeError: 503 when the server is stopping or the queue is full; subclasses add theirs.
        """
        with self._cv:
            if self._stopping:
                raise ServeError(
                    503,
                    "Server is stopping, scheduler for model has stopped accepting new inference requests",
                    "REJECTED",
                )
            if len(self._queue) >= self.max_queue:
                raise ServeError(
                    503,
                    f"Exceeds maximum queue size: {self.max_queue} requests of model '{self.model.name}' are already "
                    "waiting (seqdeploy serve --max-queue)",
                    "REJECTED",
                )
            self._admit(job, time.perf_counter_ns())
            self._queue.append(job)
            self._cv.notify_all()

    def cancel(self, job: Job) -> bool:
        """Withdraw a request that is still queued (its caller gave up); ``False`` once it is executing."""
        with self._cv:
            if job not in self._queue:
                return False
            self._queue.remove(job)
            self._finish_job(job, None)
            self._cv.notify_all()
            return True

    # -- the loop ---------------------------------------------------------------------------------------------
    def _worker(self) -> None:
        while True:
            try:
                with self._cv:
                    batch = self._take()
            except Exception as exc:
                log.exception("seqdeploy serve: internal error picking a batch of model '%s'", self.model.name)
                with self._cv:
                    queued, self._queue = list(self._queue), []
                self._abandon(queued, exc)
                time.sleep(_ERROR_PAUSE_S)
                continue
            if batch is None:
                return
            try:
                self._execute(batch)
            except Exception as exc:
                log.exception("seqdeploy serve: internal error executing a batch of model '%s'", self.model.name)
                self._abandon(batch, exc)
            finally:
                with self._cv:
                    self._executing -= len(batch)

    def _abandon(self, jobs: list[Job], exc: Exception) -> None:
        """Answer every request of ``jobs`` not answered yet with 500 (a seqdeploy bug), releasing its state."""
        err = ServeError(
            500,
            f"internal error in seqdeploy serve's scheduler of model '{self.model.name}' (a bug, please report it): "
            f"{type(exc).__name__}: {exc}",
        )
        with self._cv:
            for job in jobs:
                try:
                    self._finish_job(job, None)
                except Exception:
                    log.exception("seqdeploy serve: could not release a request of model '%s'", self.model.name)
            self._cv.notify_all()
        for job in jobs:
            self._deliver(job, Outcome(None, err))

    def _finish_job(self, job: Job, outputs: dict[str, np.ndarray] | None) -> None:
        """:meth:`_finish` once per request (lock held)."""
        if not job.finished:
            job.finished = True
            self._finish(job, outputs)

    def _deliver(self, job: Job, outcome: Outcome) -> None:
        """Hand a request its outcome, once."""
        if not job.delivered:
            job.delivered = True
            job.deliver(outcome)

    def _take(self) -> list[Job] | None:
        """The next batch to execute (lock held), or ``None`` when stopping and nothing is left."""
        while True:
            now = time.perf_counter_ns()
            self._housekeeping(now)
            picked = self._select()
            timeout: float | None
            if picked:
                rows = sum(j.rows for j in picked)
                wait_ns = picked[0].enqueued_ns + self.delay_ns - now
                if rows >= self.target_rows or wait_ns <= 0 or self._stopping or not self.batching:
                    for j in picked:
                        self._queue.remove(j)
                        j.claimed = True
                    self._claim(picked)
                    self._executing += len(picked)
                    return picked
                timeout = wait_ns / 1e9
            else:
                if self._stopping and self._drained():
                    return None
                timeout = self._next_timer(now)
            self._cv.wait(_MAX_WAIT_S if timeout is None else min(timeout, _MAX_WAIT_S))

    def _execute(self, batch: list[Job]) -> None:
        t0 = time.perf_counter_ns()
        try:
            feeds = self._feeds(batch)
        except Exception as exc:  # noqa: BLE001 - a bug building feeds must fail these requests, not the worker
            self._fail_all(batch, t0, exc)
            return
        t1 = time.perf_counter_ns()
        try:
            outs = self.model.infer(feeds)
        except Exception as exc:  # noqa: BLE001 - any backend failure: isolate the request that causes it
            if len(batch) > 1:
                for job in batch:
                    self._execute([job])
                return
            self._fail_all(batch, t0, exc)
            return
        t2 = time.perf_counter_ns()
        if self.on_execution is not None:
            self.on_execution(self.model.name)
        results = self._split(batch, outs)
        t3 = time.perf_counter_ns()
        with self._cv:
            for job, out in zip(batch, results, strict=True):
                self._finish_job(job, out)
            self._cv.notify_all()
        for job, out in zip(batch, results, strict=True):
            self._deliver(
                job,
                Outcome(
                    out,
                    queue_ns=t0 - job.enqueued_ns,
                    compute_input_ns=t1 - t0,
                    compute_infer_ns=t2 - t1,
                    compute_output_ns=t3 - t2,
                ),
            )

    def _fail_all(self, batch: list[Job], t0: int, exc: Exception) -> None:
        if isinstance(exc, InputError):
            err = ServeError(400, f"inference request to model '{self.model.name}': {exc}")
        else:
            err = ServeError(
                500,
                f"inference failed in the backend of model '{self.model.name}': {type(exc).__name__}: {exc}",
                "BACKEND",
            )
        with self._cv:
            for job in batch:
                self._finish_job(job, None)
            self._cv.notify_all()
        for job in batch:
            self._deliver(job, Outcome(None, err, queue_ns=t0 - job.enqueued_ns))

    # -- batches ----------------------------------------------------------------------------------------------
    def _compatible(self, picked: list[Job], rows: int, job: Job) -> bool:
        return job.prepared.key == picked[0].prepared.key and rows + job.rows <= self.max_rows

    def _data_feeds(self, batch: list[Job]) -> dict[str, np.ndarray]:
        """Stack the requests' own inputs, padding the seq axis to the longest ``T`` (models with ``lengths``)."""
        if len(batch) == 1:
            return dict(batch[0].prepared.feeds)
        out: dict[str, np.ndarray] = {}
        for name in batch[0].prepared.feeds:
            parts = [j.prepared.feeds[name] for j in batch]
            axis = self.model.seq_axis.get(name)
            if axis is not None and axis >= 1:
                longest = max(p.shape[axis] for p in parts)
                fill = self.model.pad_value.get(name, 0)
                padded = []
                for p in parts:
                    if p.shape[axis] < longest:
                        widths = [(0, 0)] * p.ndim
                        widths[axis] = (0, longest - p.shape[axis])
                        p = np.pad(p, widths, constant_values=fill)
                    padded.append(p)
                parts = padded
            out[name] = np.concatenate(parts, axis=0)
        return out

    def _split(self, batch: list[Job], outs: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Each request's rows (and its own ``T`` of sequence outputs)."""
        results: list[dict[str, np.ndarray]] = []
        row = 0
        for job in batch:
            mine: dict[str, np.ndarray] = {}
            for name, arr in outs.items():
                part = arr[row : row + job.rows]
                axis = self.model.seq_axis.get(name)
                seq = job.prepared.seq
                if axis is not None and axis >= 1 and seq is not None and part.shape[axis] != seq:
                    part = part[(slice(None),) * axis + (slice(0, seq),)]
                mine[name] = part
            results.append(mine)
            row += job.rows
        return results

    # -- hooks ------------------------------------------------------------------------------------------------
    def _admit(self, job: Job, now: int) -> None:
        """Accept or refuse a request as it is queued (lock held)."""

    def _select(self) -> list[Job]:
        """The oldest eligible request and those that can share its execution (lock held)."""
        if not self._queue:
            return []
        picked = [self._queue[0]]
        if not self.batching:
            return picked
        rows = picked[0].rows
        for job in self._queue[1:]:
            if rows >= self.target_rows:
                break
            if self._compatible(picked, rows, job):
                picked.append(job)
                rows += job.rows
        return picked

    def _claim(self, batch: list[Job]) -> None:
        """The batch leaves the queue (lock held)."""

    def _feeds(self, batch: list[Job]) -> dict[str, np.ndarray]:
        return self._data_feeds(batch)

    def _finish(self, job: Job, outputs: dict[str, np.ndarray] | None) -> None:
        """After an execution, per request (lock held); ``outputs`` is ``None`` when it failed."""

    def _housekeeping(self, now: int) -> None:
        """Timers (lock held)."""

    def _next_timer(self, now: int) -> float | None:
        """Seconds until the next timer, or ``None``."""
        return None

    def _drained(self) -> bool:
        return not self._queue

    def _on_stop(self) -> None:
        """Called once when stopping (lock held)."""

    def gauges(self) -> dict[str, float]:
        """Scheduler gauges for ``/metrics``: requests queued and requests executing."""
        with self._cv:
            return {"queue": float(len(self._queue)), "executing": float(self._executing)}


class DynamicScheduler(Scheduler):
    """``dynamic_batching``: concurrent requests gathered into one execution, different ``T`` padded exactly."""


@dataclass(eq=False)
class _Sequence:
    state: dict[str, np.ndarray] | None
    last_ns: int
    pending: int = 0
    busy: bool = False
    slot: bool = False


class SequenceScheduler(Scheduler):
    """``sequence_batching`` with implicit state: per-sequence state rows, per-row START, bounded and reaped.

    Args:
        model: The stream model.
        max_sequences: Live sequences held at once (slots); more wait in a bounded backlog.
        max_backlog: New sequences that may wait for a slot (default ``max_sequences``); a START beyond it
            gets 503 at once instead of taking queue space that live sequences' requests need.
        slot_wait_s: How long a new sequence waits for a slot before 503.
        idle_s: Free a sequence after this long without a request (``None``: the config's
            ``max_sequence_idle_microseconds``).
        **kwargs: See :class:`Scheduler`.
    """

    def __init__(
        self,
        model: ServedModel,
        *,
        max_sequences: int | None = None,
        max_backlog: int | None = None,
        slot_wait_s: float = 10.0,
        idle_s: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, **kwargs)
        s = model.settings
        sig = model.predictor.signature
        if s.start is None or s.start != sig.start:
            raise ValueError(
                f"model '{model.name}': its config has no START control matching the graph's {sig.start!r}"
            )
        self.max_sequences = max_sequences if max_sequences is not None else s.max_candidate_sequences
        self.max_backlog = max_backlog if max_backlog is not None else self.max_sequences
        self.slot_wait_ns = int(slot_wait_s * 1e9)
        self.idle_ns = int(idle_s * 1e9) if idle_s is not None else s.sequence_idle_us * 1000
        self._start_name = s.start
        self._pairs = [(p.input, p.output) for p in sig.state]
        self._zero = {k: v[0] for k, v in sig.zero_state(1).items()}
        self._seqs: dict[Hashable, _Sequence] = {}
        self._live = 0

    @property
    def live(self) -> int:
        """Sequences holding a slot."""
        with self._cv:
            return self._live

    def gauges(self) -> dict[str, float]:
        """Queue length, live and backlogged sequences."""
        with self._cv:
            return {
                "queue": float(len(self._queue)),
                "executing": float(self._executing),
                "live_sequences": float(self._live),
                "backlog_sequences": float(self._backlog()),
            }

    def _backlog(self) -> int:
        """New sequences waiting for a slot (lock held)."""
        return sum(1 for s in self._seqs.values() if not s.slot)

    def _unknown(self, seq_id: Hashable) -> ServeError:
        return ServeError(
            400,
            f"inference request for sequence {seq_id} to model '{self.model.name}' must specify the START flag on the "
            "first request of the sequence",
        )

    def _admit(self, job: Job, now: int) -> None:
        key: Hashable = job.seq_id
        s = self._seqs.get(key)
        if s is None:
            if not job.start:
                raise self._unknown(job.seq_id)
            if self._live >= self.max_sequences and self._backlog() >= self.max_backlog:
                raise ServeError(
                    503,
                    f"Exceeds maximum queue size: model '{self.model.name}' holds its maximum of {self.max_sequences} "
                    f"live sequences and {self.max_backlog} new sequences already wait for a slot; retry later, end "
                    "sequences with sequence_end, or raise seqdeploy serve --max-sequences",
                    "REJECTED",
                )
            s = self._seqs[key] = _Sequence(state=None, last_ns=now)
        s.last_ns = now
        s.pending += 1
        if not s.slot:
            if self._live < self.max_sequences:
                s.slot = True
                self._live += 1
            elif job.start:
                wait = self.slot_wait_ns
                if job.timeout_us:
                    wait = min(wait, job.timeout_us * 1000)
                job.slot_deadline_ns = now + wait

    def _select(self) -> list[Job]:
        picked: list[Job] = []
        seen: set[Hashable] = set()
        rows = 0
        for job in list(self._queue):
            key: Hashable = job.seq_id
            if key in seen:
                continue  # a sequence's requests run in arrival order
            seen.add(key)
            s = self._seqs[key]
            if s.busy or not s.slot:
                continue
            if not job.start and s.state is None:
                # The sequence ended (or its START failed) after this request was queued.
                self._queue.remove(job)
                self._finish_job(job, None)
                self._deliver(job, Outcome(None, self._unknown(job.seq_id)))
                continue
            if not picked:
                picked.append(job)
                rows = job.rows
                if not self.batching:
                    break
            elif rows < self.target_rows and self._compatible(picked, rows, job):
                picked.append(job)
                rows += job.rows
        return picked

    def _claim(self, batch: list[Job]) -> None:
        for job in batch:
            self._seqs[job.seq_id].busy = True

    def _feeds(self, batch: list[Job]) -> dict[str, np.ndarray]:
        feeds = self._data_feeds(batch)
        feeds[self._start_name] = np.array([[1 if j.start else 0] for j in batch], dtype=np.int32)
        for name, _ in self._pairs:
            rows = []
            for job in batch:
                state = self._seqs[job.seq_id].state  # busy: no other worker touches it
                rows.append(self._zero[name] if job.start or state is None else state[name])
            feeds[name] = np.stack(rows)
        return feeds

    def _finish(self, job: Job, outputs: dict[str, np.ndarray] | None) -> None:
        key: Hashable = job.seq_id
        s = self._seqs.get(key)
        if s is None:
            return
        s.pending -= 1
        if not job.claimed:
            # Withdrawn while queued (its deadline, or an internal error while picking): it never ran, so it
            # changes nothing, not even by its END, and above all not ``busy``, which belongs to the sequence's
            # request that may be executing right now (clearing it would hand the next request the state from
            # before that execution). A sequence that never started and has nothing left is freed, as below.
            if s.state is None and s.pending == 0:
                self._drop(key)
            return
        s.busy = False
        if outputs is not None:
            s.state = {name: np.array(outputs[out][0]) for name, out in self._pairs}
        if job.end:
            s.state = None
        if s.state is None and s.pending == 0:
            # Ended, or never started (its START failed): nothing to keep, so the slot is free at once.
            self._drop(key)

    def _drop(self, key: Hashable) -> None:
        s = self._seqs.pop(key)
        if s.slot:
            self._live -= 1
            self._grant()

    def _grant(self) -> None:
        """Give free slots to backlogged sequences, oldest first."""
        for job in self._queue:
            if self._live >= self.max_sequences:
                return
            s = self._seqs[job.seq_id]
            if not s.slot:
                s.slot = True
                self._live += 1

    def _housekeeping(self, now: int) -> None:
        expired = [
            k for k, s in self._seqs.items() if s.pending == 0 and not s.busy and now - s.last_ns > self.idle_ns
        ]
        for k in expired:
            self._drop(k)
        late: set[Hashable] = {
            job.seq_id
            for job in self._queue
            if job.slot_deadline_ns is not None and now > job.slot_deadline_ns and not self._seqs[job.seq_id].slot
        }
        if late:
            self._reject_backlog(late, self._backlog_timeout)

    def _backlog_timeout(self, job: Job) -> ServeError:
        return ServeError(
            503,
            f"timeout of the corresponding sequence has been expired: model '{self.model.name}' holds its maximum of "
            f"{self.max_sequences} live sequences and none ended or went idle while sequence {job.seq_id} waited; end "
            "sequences with sequence_end, or raise seqdeploy serve --max-sequences",
            "REJECTED",
        )

    def _reject_backlog(self, keys: set[Hashable], error: Callable[[Job], ServeError]) -> None:
        for job in [j for j in self._queue if j.seq_id in keys]:
            self._queue.remove(job)
            job.finished = True  # its sequence is dropped below: nothing to release
            self._deliver(job, Outcome(None, error(job)))
        for k in keys:
            self._seqs.pop(k, None)

    def _next_timer(self, now: int) -> float | None:
        times = [s.last_ns + self.idle_ns for s in self._seqs.values() if s.pending == 0 and not s.busy]
        times += [j.slot_deadline_ns for j in self._queue if j.slot_deadline_ns is not None]
        if not times:
            return None
        return max(0.0, (min(times) - now) / 1e9) + 1e-4

    def _drained(self) -> bool:
        return not self._queue and not any(s.busy for s in self._seqs.values())

    def _on_stop(self) -> None:
        backlog = {k for k, s in self._seqs.items() if not s.slot}
        self._reject_backlog(
            backlog,
            lambda job: ServeError(
                503, "Server is stopping, scheduler for model has stopped accepting new inference requests", "REJECTED"
            ),
        )
