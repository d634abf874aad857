"""``profile``: latency of every backend over a batch × seq grid, streaming latency, and a roofline.

Timing: warm-up calls excluded; each sample is the host wall time (``time.perf_counter``, monotonic) of
one ``runner.infer`` call with feeds validated once beforehand; CUDA backends that can also report
device time (CUDA events) get a separate ``device`` statistic. Achieved GFLOP/s uses the recurrent FLOPs
of :mod:`seqdeploy.profile.flops` and the median latency; it is divided by the sgemm rate of the
backend's library measured in the same run (:mod:`seqdeploy.profile.sgemm`).
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seqdeploy.backends import BaseRunner, get_backend, make_runner
from seqdeploy.budget import check_sweep_budget
from seqdeploy.errors import UsageError
from seqdeploy.feeds import carry_state, make_feeds
from seqdeploy.manifest import Bundle, library_versions
from seqdeploy.parity.run import not_streamable_reason, sweep_budget_facts
from seqdeploy.profile.report import ProfileCase, ProfileReport
from seqdeploy.profile.sgemm import library_of, sgemm_gflops
from seqdeploy.profile.timing import LatencyStats
from seqdeploy.spec import IOSpec

__all__ = ["ProfileOptions", "default_grid", "machine_info", "profile"]

Progress = Callable[[int, int], None]
_SETTLE_S = 0.02


@dataclass(frozen=True)
class ProfileOptions:
    """What to measure.

    Attributes:
        backends: Backends to time; the baseline is added if missing.
        baseline: Backend that speed-ups are relative to.
        batches / seqs: The grid (default: min, opt, max of the manifest's ``[shapes]``).
        shapes: Explicit ``(batch, seq)`` pairs instead of the grid.
        warmup: Untimed calls before each case.
        iters: Exact number of timed calls (``None``: as many as fit in ``min_time``).
        min_time: Seconds of timed calls per case when ``iters`` is ``None``.
        threads: Threads for every backend and for the sgemm reference (``None`` = library default).
        streaming: Also time one-token steps with carried state.
        streaming_steps: Timed steps per streaming case.
        allow_outside_range: Allow shapes outside the manifest's ``[shapes]`` range.
        sgemm_n: Size of the sgemm reference (0 disables the roofline).
        seed: Seed of the random inputs.
        max_iters: Cap on timed calls per block.
        rounds: Blocks per shape in which the backends take turns (interleaving cancels machine drift).
        max_memory_gb: Memory limit for the largest shape (default: :mod:`seqdeploy.budget`).
    """

    backends: tuple[str, ...] = ("torch", "ort-cpu")
    baseline: str = "torch"
    batches: tuple[int, ...] | None = None
    seqs: tuple[int, ...] | None = None
    shapes: tuple[tuple[int, int], ...] | None = None
    warmup: int = 5
    iters: int | None = None
    min_time: float = 0.5
    threads: int | None = None
    streaming: bool = False
    streaming_steps: int = 200
    allow_outside_range: bool = False
    sgemm_n: int = 1024
    seed: int = 0
    max_iters: int = 100_000
    rounds: int = 5
    max_memory_gb: float | None = None


def default_grid(bundle: Bundle) -> tuple[list[int], list[int]]:
    """``{min, opt, max}`` of the manifest's batch and seq ranges."""
    s = bundle.config.shapes
    return sorted(set(s.batch)), sorted(set(s.seq))


def machine_info(threads: int | None) -> dict[str, Any]:
    """CPU model, core count, threads, GPU (when torch sees one) and library versions."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": threads,
        "gpu": _gpu_name(),
        "versions": library_versions("seqdeploy", "torch", "onnxruntime", "onnx", "numpy"),
    }


def _gpu_name() -> str | None:
    """The GPU torch sees, asked only when a backend already imported torch (a CPU-only sweep stays torch-free)."""
    if "torch" not in sys.modules:
        return None
    import torch

    return str(torch.cuda.get_device_name(0)) if torch.cuda.is_available() else None


def _check_range(bundle: Bundle, shapes: list[tuple[int, int]], allow: bool) -> None:
    s = bundle.config.shapes
    bad = [f"batch {b}" for b in sorted({b for b, _ in shapes}) if not s.batch[0] <= b <= s.batch[2]]
    bad += [f"seq {t}" for t in sorted({t for _, t in shapes}) if not s.seq[0] <= t <= s.seq[2]]
    if bad and not allow:
        raise UsageError(
            f"{', '.join(bad)} outside the export's [shapes] range (batch {list(s.batch)}, seq {list(s.seq)}); "
            "pass --allow-outside-range to time them anyway"
        )


def _warm_up(runner: BaseRunner, feeds: dict[str, np.ndarray], opts: ProfileOptions) -> None:
    runner.infer(feeds)  # validated once; timed calls skip validation
    for _ in range(opts.warmup):
        runner.infer(feeds, check=False)


def _time_calls(
    runner: BaseRunner, feeds: dict[str, np.ndarray], iters: int | None, seconds: float, max_iters: int
) -> tuple[list[float], list[float]]:
    """One block of timed calls: exactly ``iters``, or at least ``seconds`` (and 2 calls)."""
    # Another backend ran just before: let its spin-waiting worker threads (OpenMP in torch, ORT's pool)
    # go idle so they do not compete for the cores, then make one untimed call to wake this backend's
    # own pool — a dedicated server sees neither.
    time.sleep(_SETTLE_S)
    runner.infer(feeds, check=False)
    host: list[float] = []
    device: list[float] = []
    deadline = time.monotonic() + seconds
    while True:
        t0 = time.perf_counter()
        runner.infer(feeds, check=False)
        host.append((time.perf_counter() - t0) * 1e3)
        if runner.last_device_ms is not None:
            device.append(runner.last_device_ms)
        n = len(host)
        if iters is not None:
            if n >= iters:
                break
        elif (n >= 2 and time.monotonic() >= deadline) or n >= max_iters:
            break
    return host, device


def _time_streaming(
    runner: BaseRunner, spec: IOSpec, feeds: dict[str, np.ndarray], steps: int, warmup: int
) -> list[float]:
    """Per-step wall time of feeding one token per call, carrying the state between calls.

    Only the ``infer`` call is timed; building the next feeds from the carried state is not.
    """
    step_feeds = dict(feeds)  # the initial states are among the feeds; later calls get the carried ones
    runner.infer(step_feeds)
    samples: list[float] = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        out = runner.infer(step_feeds, check=False)
        elapsed = time.perf_counter() - t0
        step_feeds.update(carry_state(out, spec))
        if i >= warmup:
            samples.append(elapsed * 1e3)
    return samples


def _case(
    backend: str,
    mode: str,
    graph: str,
    batch: int,
    seq: int,
    host: list[float],
    device: list[float],
    flops: int,
) -> ProfileCase:
    stats = LatencyStats.from_samples(host)
    gflops = flops / (stats.p50_ms * 1e-3) / 1e9 if stats.p50_ms > 0 else float("nan")
    return ProfileCase(
        backend=backend,
        mode=mode,
        graph=graph,
        batch=batch,
        seq=seq,
        host=stats,
        device=LatencyStats.from_samples(device) if device else None,
        gflop=flops / 1e9,
        gflops=gflops,
        sgemm_gflops=None,  # filled in by ProfileReport.finish once the sgemm reference is complete
        pct_of_sgemm=None,
    )


def profile(
    bundle: Bundle | str | Path, opts: ProfileOptions | None = None, *, progress: Progress | None = None
) -> ProfileReport:
    """Time every backend over the grid (and streaming), measure the sgemm reference, compare.

    A ``KeyboardInterrupt`` during the sweep stops it and returns what was measured, marked partial.

    Raises:
        UsageError: Unknown backend, shapes outside ``[shapes]`` without ``allow_outside_range``, bad options.
        BackendUnavailable: A requested backend cannot run here.
    """
    opts = opts or ProfileOptions()
    b = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
    names = list(dict.fromkeys([opts.baseline, *opts.backends]))
    for n in names:
        get_backend(n)
    if opts.iters is not None and opts.iters < 1:
        raise UsageError(f"--iters must be >= 1, got {opts.iters}")
    if opts.shapes is not None:
        shapes = list(dict.fromkeys(opts.shapes))
    else:
        d_batches, d_seqs = default_grid(b)
        shapes = [(bb, ss) for bb in (opts.batches or d_batches) for ss in (opts.seqs or d_seqs)]
    if not shapes or min(min(x) for x in shapes) < 1:
        raise UsageError(f"batch and seq values must be integers >= 1, got {shapes}")
    _check_range(b, shapes, opts.allow_outside_range)
    spec = b.specs["sequence"]
    # Backends are loaded side by side and each holds its outputs: copies grow with their number.
    check_sweep_budget(
        spec,
        shapes,
        *sweep_budget_facts(b),
        copies=2 + 2 * len(names),
        what="profile",
        max_memory_gb=opts.max_memory_gb,
    )
    report = ProfileReport(
        baseline=opts.baseline,
        backends=names,
        env=machine_info(opts.threads),
        options={
            "shapes": [list(x) for x in shapes],
            "warmup": opts.warmup,
            "iters": opts.iters,
            "min_time": opts.min_time,
            "threads": opts.threads,
            "streaming": opts.streaming,
            "seed": opts.seed,
        },
        # From the bundle, not the config: a source = "python" model's facts were found at export.
        model={**_model_fields(b), "flops_per_token": b.flops_per_token},
    )
    stream_ok = opts.streaming and b.streamable
    if opts.streaming and not stream_ok:
        # The same words as verify's skipped chunked mode (a user's module has no export.initial_state).
        report.skipped.append({"mode": "streaming", "backend": None, "reason": not_streamable_reason(b)})
    stream_batches = sorted({batch for batch, _ in shapes})
    total = len(names) * (len(shapes) + (len(stream_batches) if stream_ok else 0))
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, total)

    try:
        with contextlib.ExitStack() as stack:
            # Every runner, the streaming ones included, is loaded now, in one snapshot: each reads the bundle
            # that was loaded, never a swapped-in one — and a commit made later, during a long sweep, cannot
            # discard the finished sweep (a second snapshot after it would have to start over).
            with b.snapshot():
                runners = {n: stack.enter_context(make_runner(n, b, "sequence", threads=opts.threads)) for n in names}
                streamers = {
                    n: stack.enter_context(make_runner(n, b, "step", threads=opts.threads))
                    if "step" in b.specs and "step" in get_backend(n).graphs
                    else runners[n]
                    for n in (names if stream_ok else [])
                }
            # Asked again now that the runners are loaded: a torch-cuda runner imports torch only here, and a
            # GPU profile whose report names no GPU (seen on the first GPU run) cannot be compared with another.
            report.env["gpu"] = _gpu_name()
            libraries = list(dict.fromkeys(library_of(n) for n in names)) if opts.sgemm_n else []
            # The sgemm reference is measured before and after the sweep; the report uses the mean and
            # keeps both, so drift of a shared machine during the run is visible.
            for lib in libraries:
                report.sgemm_runs[lib] = [sgemm_gflops(lib, n=opts.sgemm_n, threads=opts.threads)]
            # Shape-major, and within a shape the backends take turns in `rounds` blocks, so a shared
            # machine whose speed drifts during the run slows every backend alike: the ratios compare
            # measurements interleaved in time. A shape is recorded only once all its rounds ran.
            rounds = max(1, min(opts.rounds, opts.iters)) if opts.iters is not None else max(1, opts.rounds)
            block_iters = -(-opts.iters // rounds) if opts.iters is not None else None
            for batch, seq in shapes:
                # Full lengths: every token counted in tokens/s and FLOPs is really processed.
                feeds = make_feeds(spec, batch, seq, seed=opts.seed, full_lengths=True)
                flops = b.flops_per_token * batch * seq
                samples: dict[str, tuple[list[float], list[float]]] = {n: ([], []) for n in runners}
                for runner in runners.values():
                    _warm_up(runner, feeds, opts)
                for _ in range(rounds):
                    for n, runner in runners.items():
                        host, device = _time_calls(runner, feeds, block_iters, opts.min_time / rounds, opts.max_iters)
                        samples[n][0].extend(host)
                        samples[n][1].extend(device)
                for n, (host, device) in samples.items():
                    if opts.iters is not None:
                        host, device = host[: opts.iters], device[: opts.iters]
                    report.cases.append(_case(n, "sequence", "sequence", batch, seq, host, device, flops))
                    tick()
            if stream_ok:
                for batch in stream_batches:
                    for n, runner in streamers.items():
                        report.cases.append(_stream_case(b, n, runner, batch, opts))
                        tick()
            for lib in libraries:
                report.sgemm_runs[lib].append(sgemm_gflops(lib, n=opts.sgemm_n, threads=opts.threads))
    except KeyboardInterrupt:
        report.partial = True
    report.finish()
    return report


def _stream_case(b: Bundle, name: str, runner: BaseRunner, batch: int, opts: ProfileOptions) -> ProfileCase:
    """Streaming: the step graph (cell stacks exported with ``--step``) or the sequence graph fed T=1 chunks."""
    spec = runner.spec
    feeds = make_feeds(spec, batch, 1, seed=opts.seed, full_lengths=True)
    steps = opts.iters if opts.iters is not None else opts.streaming_steps
    host = _time_streaming(runner, spec, feeds, steps, opts.warmup)
    return _case(name, "streaming", spec.kind, batch, 1, host, [], b.flops_per_token * batch)


def _model_fields(b: Bundle) -> dict[str, object]:
    summary = b.model_summary()
    if b.is_python:
        return summary
    return {k: summary[k] for k in ("cell", "layers", "hidden", "bidirectional", "head")}
