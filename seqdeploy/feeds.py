"""Feeds built from an :class:`~seqdeploy.spec.IOSpec`: random inputs, zero states, state carrying, slicing.

Runners are stateless: a caller that processes a sequence in chunks passes the previous chunk's
``h_n``/``c_n`` back as ``h0``/``c0`` with :func:`carry_state`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from seqdeploy.errors import InputError
from seqdeploy.spec import BATCH, SEQ, IOSpec, TensorSpec

__all__ = [
    "Feeds",
    "carry_state",
    "check_feeds",
    "make_feeds",
    "select_rows",
    "slice_seq",
    "zero_state",
]

Feeds = Mapping[str, np.ndarray]


def make_feeds(
    spec: IOSpec,
    batch: int,
    seq: int = 1,
    seed: int = 0,
    *,
    full_lengths: bool = False,
) -> dict[str, np.ndarray]:
    """Seeded random feeds for every input of ``spec``.

    * token ids are uniform over the vocabulary and always include the padding/first id ``0`` and the
      last id ``vocab_size - 1`` (edges that a wrong ``Gather`` or embedding mix-up get wrong first);
    * features are standard normal;
    * ``lengths`` put row 0 at full length, row 1 at length 1 and the rest uniform in ``[1, seq]``
      (all full with ``full_lengths=True``);
    * initial states are non-zero (``N(0, 0.5²)``) so that a graph that ignores them is caught.
    """
    if batch < 1 or seq < 1:
        raise InputError(f"batch and seq must be >= 1, got batch={batch}, seq={seq}")
    rng = np.random.default_rng(seed)
    sizes = {BATCH: batch, SEQ: seq}
    feeds: dict[str, np.ndarray] = {}
    for t in spec.inputs:
        shape = t.shape(sizes)
        if t.name == "lengths":
            lengths = rng.integers(1, seq + 1, size=shape, dtype=np.int64)
            lengths[0] = seq
            if batch > 1:
                lengths[1] = 1
            feeds[t.name] = np.full(shape, seq, dtype=np.int64) if full_lengths else lengths
        elif t.value_range is not None:  # token ids
            lo, hi = t.value_range
            assert isinstance(hi, int)
            ids = rng.integers(lo, hi + 1, size=shape, dtype=np.int64)
            flat = ids.reshape(-1)
            flat[0] = lo
            flat[-1] = hi
            if flat.size > 2:
                flat[flat.size // 2] = max(lo, hi - 1)
            feeds[t.name] = ids.astype(t.dtype)
        else:
            scale = 0.5 if t.name.startswith(("h0", "c0")) else 1.0
            feeds[t.name] = (rng.standard_normal(shape) * scale).astype(t.dtype)
    return feeds


def zero_state(spec: IOSpec, batch: int) -> dict[str, np.ndarray]:
    """Zero initial states (``h0``, ``c0``, ...) for ``batch`` rows."""
    out: dict[str, np.ndarray] = {}
    for pair in spec.state:
        t = spec.tensor(pair.input)
        out[t.name] = np.zeros(t.shape({BATCH: batch}), dtype=t.dtype)
    return out


def carry_state(outputs: Mapping[str, np.ndarray], spec: IOSpec) -> dict[str, np.ndarray]:
    """Map state outputs to the next call's state inputs (``h_n → h0``, ``c_n → c0``) through ``spec.state``."""
    missing = [p.output for p in spec.state if p.output not in outputs]
    if missing:
        raise InputError(f"cannot carry state: outputs {missing} are missing (got {sorted(outputs)})")
    return {p.input: np.ascontiguousarray(outputs[p.output]) for p in spec.state}


def slice_seq(spec: IOSpec, feeds: Feeds, start: int, stop: int) -> dict[str, np.ndarray]:
    """Feeds restricted to time steps ``[start, stop)`` (inputs without a ``seq`` axis are copied as is)."""
    out: dict[str, np.ndarray] = {}
    for name, value in feeds.items():
        axis = spec.tensor(name).seq_axis if spec.has(name) else None
        if axis is None:
            out[name] = value
        else:
            out[name] = np.ascontiguousarray(np.take(value, np.arange(start, stop), axis=axis))
    return out


def select_rows(spec: IOSpec, arrays: Mapping[str, np.ndarray], rows: list[int] | np.ndarray) -> dict[str, np.ndarray]:
    """Rows ``rows`` of every tensor along its ``batch`` axis (tensors without one are copied as is)."""
    idx = np.asarray(rows, dtype=np.int64)
    out: dict[str, np.ndarray] = {}
    for name, value in arrays.items():
        axis = spec.tensor(name).batch_axis if spec.has(name) else None
        out[name] = value if axis is None else np.ascontiguousarray(np.take(value, idx, axis=axis))
    return out


def check_feeds(spec: IOSpec, feeds: Feeds) -> dict[str, int]:
    """Check ``feeds`` against ``spec``; return the size bound to each named axis.

    Checks names (missing and unexpected), dtype, rank, static dims, that a named axis has one size across
    all tensors (``batch`` of ``input`` equals ``batch`` of ``h0``), and value ranges: token ids inside the
    vocabulary and ``lengths`` in ``[1, seq]``. All problems are collected and raised once.

    Raises:
        InputError: Listing every problem, each with what was expected.
    """
    problems: list[str] = []
    names = set(feeds)
    expected = set(spec.input_names)
    if missing := sorted(expected - names):
        problems.append(f"missing inputs {missing}")
    if unexpected := sorted(names - expected):
        problems.append(f"unexpected inputs {unexpected} (the graph takes {list(spec.input_names)})")
    sizes: dict[str, int] = {}
    where: dict[str, str] = {}
    for t in spec.inputs:
        if t.name not in feeds:
            continue
        value = feeds[t.name]
        if not isinstance(value, np.ndarray):
            problems.append(f"input '{t.name}': expected a numpy array, got {type(value).__name__}")
            continue
        if value.dtype != np.dtype(t.dtype):
            problems.append(f"input '{t.name}': got dtype {value.dtype}, expected {t.dtype} ({t.describe()})")
        if value.ndim != t.rank:
            problems.append(
                f"input '{t.name}': got shape {tuple(value.shape)} (rank {value.ndim}), expected rank "
                f"{t.rank}: ({', '.join(str(d) for d in t.dims)})"
            )
            continue
        for axis, (d, n) in enumerate(zip(t.dims, value.shape, strict=True)):
            if isinstance(d, int):
                if d != n:
                    problems.append(
                        f"input '{t.name}': got shape {tuple(value.shape)}, expected "
                        f"({', '.join(str(x) for x in t.dims)}); axis {axis} must be {d}"
                    )
            elif d in sizes and sizes[d] != n:
                problems.append(f"input '{t.name}': axis {axis} ('{d}') is {n} but {where[d]} set '{d}' = {sizes[d]}")
            else:
                sizes.setdefault(d, n)
                where.setdefault(d, f"input '{t.name}'")
            if n == 0:
                problems.append(f"input '{t.name}': axis {axis} is empty; every axis must be >= 1")
    if not problems:
        problems.extend(_check_ranges(spec.inputs, feeds, sizes))
    if problems:
        raise InputError("feeds do not match the model's inputs:\n  - " + "\n  - ".join(problems))
    return sizes


def _check_ranges(inputs: tuple[TensorSpec, ...], feeds: Feeds, sizes: Mapping[str, int]) -> list[str]:
    problems: list[str] = []
    for t in inputs:
        if t.value_range is None:
            continue
        value = feeds[t.name]
        if value.size == 0:
            continue
        lo, hi_dim = t.value_range
        hi = sizes.get(hi_dim, 0) if isinstance(hi_dim, str) else hi_dim
        bad = np.flatnonzero((value < lo) | (value > hi))
        if bad.size:
            first = np.unravel_index(int(bad[0]), value.shape)
            what = "token ids must be in the vocabulary" if t.name == "input" else "values must be"
            fix = (
                "map unknown tokens to an OOV id inside the vocabulary"
                if t.name == "input"
                else f"every length must satisfy 1 <= length <= {hi_dim} (= {hi})"
            )
            problems.append(
                f"input '{t.name}': {what} in [{lo}, {hi}], but {bad.size} value(s) are outside, first "
                f"{int(value[first])} at index {tuple(int(i) for i in first)}; {fix}"
            )
    return problems
