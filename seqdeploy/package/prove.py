"""Proving packaged graphs against the PyTorch reference before a package may appear.

The reference is the bundle's own ``torch`` runner (``make_runner("torch", bundle)``), fed in the bundle's
layout; packaged graphs run in ONNX Runtime (CPU) on the same data moved to batch-first. Every output is
compared (``output``, ``h_n``, ``c_n``, per-layer states too) with the tolerance of the graph's precision.

* :func:`prove_stateless` — several batches (1, 3, ``max_batch``) and lengths (min, an untraced 7, opt,
  max), padded batches included when the model has ``lengths`` (row 1 of every batch has length 1).
* :func:`prove_stream` — the stream graph driven exactly as Triton's sequence batcher drives it: the state
  out of request i of a sequence is fed to its request i+1; the first request of a sequence carries
  START = 1 and state memory pre-filled with NaN (Triton may hand over uninitialised memory); several
  sequences share each request batch with different START flags, change rows between requests, and a
  new sequence takes the row a finished one left; chunk sizes spread over the packaged T range and
  sequence lengths that are not multiples of them give padded rows. Each sequence's concatenated outputs
  and final states must equal one full-sequence reference run (from zero state).

Results go into a :class:`~seqdeploy.parity.report.ParityReport`; nothing raises per failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seqdeploy.backends.base import BaseRunner
from seqdeploy.backends.onnxrt import OrtRunner
from seqdeploy.errors import InternalError
from seqdeploy.feeds import make_feeds
from seqdeploy.package.layout import to_batch_first
from seqdeploy.parity.compare import Tolerance, compare_tensor
from seqdeploy.parity.report import CaseResult, ParityReport, Skip
from seqdeploy.spec import IOSpec

__all__ = ["StreamPlan", "prove_stateless", "prove_stream", "stateless_cases", "stream_plan"]

Arrays = dict[str, np.ndarray]


def stateless_cases(batch_max: int, seq: tuple[int, int, int]) -> tuple[list[int], list[int]]:
    """Batches ``{1, 3, max}`` and lengths ``{min, 7, opt, max}`` inside the packaged ranges."""
    lo, opt, hi = seq
    batches = sorted({1, min(3, batch_max), batch_max})
    seqs = sorted({lo, min(max(7, lo), hi), opt, hi})
    return batches, seqs


def _compare(
    report: ParityReport,
    model: str,
    mode: str,
    batch: int,
    seq: int,
    ref: Mapping[str, np.ndarray],
    got: Mapping[str, np.ndarray],
    tol: Tolerance,
    detail: str,
) -> CaseResult:
    tensors = {n: compare_tensor(n, ref[n], got[n], tol) for n in ref}
    case = CaseResult(model, mode, batch, seq, "reference", tensors, detail)
    report.cases.append(case)
    return case


def prove_stateless(
    report: ParityReport,
    model: str,
    path: Path,
    spec: IOSpec,
    bundle_spec: IOSpec,
    cases: list[tuple[int, int, Arrays, Arrays]],
    tol: Tolerance,
    *,
    threads: int | None = None,
) -> None:
    """Run a batch-first graph on every case and compare it with the reference outputs.

    Args:
        report: Where the results go.
        model: The packaged model's name (the report's "backend").
        path: The packaged graph.
        spec: Its batch-first IOSpec.
        bundle_spec: The bundle's IOSpec (the layout of ``cases``).
        cases: ``(batch, seq, feeds, reference outputs)`` in the bundle's layout.
        tol: Tolerance of the graph's precision.
        threads: ONNX Runtime threads.
    """
    with OrtRunner(model, spec, path, device="cpu", threads=threads) as runner:
        for batch, seq, feeds, ref in cases:
            padded = ""
            if bundle_spec.has("lengths"):
                short = int(np.sum(feeds["lengths"] < seq))
                padded = f", {short} padded row(s)" if short else ""
            detail = f"batch-first graph vs torch{padded}"
            try:
                got = runner.infer(to_batch_first(bundle_spec, feeds))
            except Exception as exc:  # noqa: BLE001 - an ORT failure is a failed proof, reported as such
                report.cases.append(
                    CaseResult(
                        model, "batch-first", batch, seq, "reference", {}, detail, error=f"{type(exc).__name__}: {exc}"
                    )
                )
                continue
            _compare(report, model, "batch-first", batch, seq, to_batch_first(bundle_spec, ref), got, tol, detail)


@dataclass
class _Seq:
    index: int
    data: Arrays  # batch-first input ([1, L(, F)]) of the whole sequence
    length: int
    start_step: int
    pos: int = 0
    state: Arrays = field(default_factory=dict)
    pieces: list[np.ndarray] = field(default_factory=list)
    last: Arrays = field(default_factory=dict)
    schedule: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class StreamPlan:
    """The interleaving schedule: sequence lengths, their first request, rows per request, chunk sizes, and
    the packaged sequence range (no request is shorter than ``seq_min``: the runtime refuses those).
    """

    lengths: tuple[int, ...]
    start_steps: tuple[int, ...]
    rows: int
    chunks: tuple[int, ...]
    seq_min: int = 1
    seq_max: int = 1 << 30


_CHUNK_STEPS = (3, 1, 4, 2, 5)
_LENGTHS = ((13, 2), (4, 1), (11, 3), (9, 0))  # (multiple of the minimum T, offset)


def stream_plan(max_batch: int, seq_range: tuple[int, int], *, has_lengths: bool) -> StreamPlan:
    """Four sequences: two start together, a third joins them one request later (so one batch carries START
    flags 0, 0, 1), a fourth starts in the row the shortest one left.

    Chunk sizes are ``lo + (k - 1) × step`` for k = 3, 1, 4, 2, 5 (capped at ``hi``), with
    ``step = max(1, min((hi - lo) // 8, lo))``: 3, 1, 4, 2, 5 for a minimum T of 1, and still five different
    sizes when the minimum is large (5..40: 13, 5, 17, 9, 21). Sequence lengths are ``13·lo + 2``, ``4·lo + 1``,
    ``11·lo + 3`` and ``9·lo`` — not multiples of the chunks, so rows run out at different steps and requests
    carry padded rows (models with ``lengths``); every sequence spans several requests.

    A model without ``lengths`` and a narrow range (``hi < 2·lo − 1``, a fixed ``T`` included) gets chunks of
    ``lo`` and lengths that are multiples of ``lo``: no request may be shorter than ``lo`` (it cannot be padded)
    nor longer than ``hi``, and a remainder between ``hi + 1`` and ``2·lo − 1`` could be sent neither whole nor
    in two pieces. Only such ranges can reach one; wider ranges split every remainder (see ``_take``).
    """
    lo, hi = seq_range
    if not has_lengths and hi < 2 * lo - 1:
        return StreamPlan(
            lengths=tuple(k * lo for k, _ in _LENGTHS),
            start_steps=(0, 0, 1, 2),
            rows=min(3, max_batch),
            chunks=(lo,) * len(_CHUNK_STEPS),
            seq_min=lo,
            seq_max=hi,
        )
    # At most lo, so that a chunk is at most 5·lo and every sequence (>= 4·lo + 1 steps) spans several requests.
    step = max(1, min((hi - lo) // 8, lo))
    chunks = tuple(min(hi, lo + (k - 1) * step) for k in _CHUNK_STEPS)
    lengths = tuple(k * lo + off for k, off in _LENGTHS)
    return StreamPlan(
        lengths=lengths,
        start_steps=(0, 0, 1, 2),
        rows=min(3, max_batch),
        chunks=chunks,
        seq_min=lo,
        seq_max=hi,
    )


def _take(chunk: int, remaining: int, plan: StreamPlan) -> int:
    """Steps a sequence of a model without ``lengths`` sends in this request: the chunk, unless what would be
    left is shorter than the packaged minimum (no request may be that short, and without ``lengths`` it cannot
    be padded): then the rest goes along now (or ``seq_min`` is left for later).
    """
    n = min(chunk, remaining)
    rest = remaining - n
    if 0 < rest < plan.seq_min:
        n = remaining if remaining <= plan.seq_max else remaining - plan.seq_min
    return n


def _run_requests(
    runner: BaseRunner, spec: IOSpec, start: str, seqs: list[_Seq], plan: StreamPlan
) -> tuple[int, int, int]:
    """Drive every sequence to its end; return (requests, requests with mixed START flags, NaN-state starts)."""
    state_pairs = spec.state
    requests = mixed = nan_starts = 0
    step = 0
    active: list[_Seq] = []
    waiting = sorted(seqs, key=lambda s: s.start_step)
    guard = 10_000
    while active or waiting:
        guard -= 1
        if guard == 0:
            raise InternalError("stream proof schedule did not terminate")
        while waiting and waiting[0].start_step <= step and len(active) < plan.rows:
            active.append(waiting.pop(0))
        if not active:
            step += 1
            continue
        # Rotate the rows so a sequence does not keep its row: state must follow the sequence, not the slot.
        k = step % len(active)
        rows = active[k:] + active[:k]
        c = plan.chunks[step % len(plan.chunks)]
        # With lengths a short last piece is a padded row (T never below the minimum: see t_req below);
        # without, no request may be shorter than the packaged minimum.
        takes = [min(c, s.length - s.pos) if spec.has("lengths") else _take(c, s.length - s.pos, plan) for s in rows]
        if spec.has("lengths"):
            groups = [list(range(len(rows)))]
        else:  # without lengths a padded row would read padding: one request per chunk length
            groups = [[i for i, n in enumerate(takes) if n == t] for t in sorted(set(takes))]
        for group in groups:
            t_req = max(takes[i] for i in group)
            if spec.has("lengths"):
                # Never a request shorter than the packaged minimum: pad it (its rows' lengths say so).
                t_req = max(t_req, plan.seq_min)
            feeds: Arrays = {}
            x_parts = []
            for i in group:
                s, n = rows[i], takes[i]
                x = s.data["input"][:, s.pos : s.pos + n]
                if n < t_req:
                    # Padding past a row's length: id 0 (inside every vocabulary) or zero features.
                    fill = np.zeros((1, t_req - n, *x.shape[2:]), dtype=x.dtype)
                    x = np.concatenate([x, fill], axis=1)
                x_parts.append(x)
            feeds["input"] = np.concatenate(x_parts, axis=0)
            if spec.has("lengths"):
                feeds["lengths"] = np.array([takes[i] for i in group], dtype=np.int64)
            flags = np.array([[1 if rows[i].pos == 0 else 0] for i in group], dtype=np.int32)
            feeds[start] = flags
            for pair in state_pairs:
                t = spec.tensor(pair.input)
                parts = []
                for i in group:
                    s = rows[i]
                    if s.pos == 0:
                        # What Triton may hand the graph for a new sequence: uninitialised memory.
                        shape = (1, *(int(d) for d in t.dims[1:]))
                        parts.append(np.full(shape, np.nan, dtype=t.dtype))
                    else:
                        parts.append(s.state[pair.input])
                feeds[pair.input] = np.concatenate(parts, axis=0)
            nan_starts += int(flags.sum())
            mixed += int(0 < flags.sum() < len(group))
            out = runner.infer(feeds)
            requests += 1
            for j, i in enumerate(group):
                s, n = rows[i], takes[i]
                s.state = {p.input: out[p.output][j : j + 1].copy() for p in state_pairs}
                s.last = {name: out[name][j : j + 1].copy() for name in out}
                if spec.tensor("output").seq_axis == 1:
                    s.pieces.append(out["output"][j : j + 1, :n].copy())
                s.schedule.append(f"{'START ' if flags[j, 0] else ''}{n}@row{j}/{len(group)}")
                s.pos += n
        active = [s for s in active if s.pos < s.length]
        step += 1
    return requests, mixed, nan_starts


def prove_stream(
    report: ParityReport,
    model: str,
    path: Path,
    spec: IOSpec,
    start: str,
    reference: BaseRunner,
    bundle_spec: IOSpec,
    plan: StreamPlan,
    tol: Tolerance,
    *,
    compare_output: str | None,
    seed: int = 0,
    threads: int | None = None,
) -> None:
    """Drive the stream graph as Triton's sequence batcher would and compare every sequence with one
    full-sequence reference run.

    Args:
        report: Where the results go.
        model: The stream model's name.
        path: The stream graph.
        spec: Its IOSpec (START and states included).
        start: The START input's name.
        reference: The entered torch runner of the bundle.
        bundle_spec: The bundle's IOSpec.
        plan: The interleaving schedule (:func:`stream_plan`).
        tol: Tolerance (fp32).
        compare_output: ``"steps"`` (``output`` has a time axis: concatenate the chunks), ``"last"`` (a
            classifier pooling the last state: the last chunk's output), or ``None`` (pooled over each
            chunk only: states are compared, the skip is recorded).
        seed: Seed of the sequences' data.
        threads: ONNX Runtime threads.
    """
    seqs = []
    refs: list[Arrays] = []
    for i, length in enumerate(plan.lengths):
        feeds = make_feeds(bundle_spec, 1, length, seed=seed + 100 + i, full_lengths=True)
        for pair in bundle_spec.state:  # a new sequence starts from zeros (START's reset)
            feeds[pair.input] = np.zeros_like(feeds[pair.input])
        refs.append(to_batch_first(bundle_spec, reference.infer(feeds)))
        seqs.append(_Seq(i, to_batch_first(bundle_spec, feeds), length, plan.start_steps[i]))
    with OrtRunner(model, spec, path, device="cpu", threads=threads) as runner:
        try:
            requests, mixed, nan_starts = _run_requests(runner, spec, start, seqs, plan)
        except Exception as exc:  # noqa: BLE001 - an ORT failure is a failed proof
            report.cases.append(
                CaseResult(
                    model,
                    "stream",
                    plan.rows,
                    max(plan.lengths),
                    "reference",
                    {},
                    "",
                    error=f"{type(exc).__name__}: {exc}",
                )
            )
            return
    if (plan.rows > 1 and mixed == 0) or nan_starts != len(seqs):
        raise InternalError(f"the stream proof did not run its schedule ({mixed} mixed requests, {nan_starts} starts)")
    if compare_output is None:
        report.skipped.append(
            Skip(
                "stream",
                "output is pooled over each chunk (mean/max), not over the sequence; states compared",
                backend=model,
            )
        )
    for s, ref in zip(seqs, refs, strict=True):
        want = {p.output: ref[p.output] for p in spec.state}
        got = {p.output: s.state[p.input] for p in spec.state}
        if compare_output == "steps":
            want["output"] = ref["output"]
            got["output"] = np.concatenate(s.pieces, axis=1)
        elif compare_output == "last":
            want["output"] = ref["output"]
            got["output"] = s.last["output"]
        detail = (
            f"sequence {s.index} of {len(seqs)}, {len(s.schedule)} requests [{', '.join(s.schedule)}]; "
            f"{requests} requests, {mixed} with mixed START flags, NaN state before every START"
        )
        _compare(report, model, "stream", plan.rows, s.length, want, got, tol, detail)
