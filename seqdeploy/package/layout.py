"""Batch-first signatures of packaged graphs, and moving arrays between a bundle's layout and batch-first.

Triton's batchers stack requests on axis 0 of **every** input, output and state, so a packaged graph is
batch-first everywhere (a seq-first model served batched gives wrong answers: server#808): ``input``
``[B, T(, F)]``, ``lengths`` ``[B]``, states ``[B, L·D, H]``, ``output`` ``[B, T, W]`` or ``[B, C]``.
Names are the contract names of the source bundle (they sort identically on both sides of a state pair:
``c0 < h0`` and ``c_n < h_n``, per-layer too), plus the stream graph's START flag.

numpy only: the writer uses it to feed packaged graphs from reference feeds, tests use it to check.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from seqdeploy.errors import InternalError
from seqdeploy.spec import BATCH, IOSpec, TensorSpec

__all__ = [
    "START",
    "axis_meanings",
    "batch_first_spec",
    "from_batch_first",
    "inner_perm",
    "outer_perm",
    "stream_spec",
    "to_batch_first",
]

START = "START"
"""Name of the stream graph's per-row START flag (``[B, 1]`` int32, 1 = this row starts a new sequence)."""


def _batch_axis(t: TensorSpec) -> int:
    b = t.batch_axis
    if b is None:
        raise InternalError(f"tensor '{t.name}' has no batch axis: {t.dims}")
    return b


def outer_perm(t: TensorSpec) -> list[int]:
    """Transpose perm from the bundle's layout to batch-first: ``[b, every other axis in order]``."""
    b = _batch_axis(t)
    return [b, *(i for i in range(t.rank) if i != b)]


def inner_perm(t: TensorSpec) -> list[int]:
    """Transpose perm from batch-first back to the bundle's layout (the inverse of :func:`outer_perm`)."""
    perm = outer_perm(t)
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return inv


def batch_first_spec(spec: IOSpec) -> IOSpec:
    """The IOSpec of ``spec``'s graph with every tensor's batch axis moved to axis 0."""

    def bf(t: TensorSpec) -> TensorSpec:
        dims = tuple(t.dims[i] for i in outer_perm(t))
        return TensorSpec(t.name, t.dtype, dims, t.value_range)

    return IOSpec(
        inputs=tuple(bf(t) for t in spec.inputs),
        outputs=tuple(bf(t) for t in spec.outputs),
        state=spec.state,
        kind=spec.kind,
    )


def stream_spec(bf: IOSpec, start: str = START) -> IOSpec:
    """The stream graph's IOSpec: the batch-first data inputs, then ``START`` ``[B, 1]`` int32, then the states."""
    if not bf.state:
        raise InternalError("a stream graph needs state inputs")
    if bf.has(start):
        raise InternalError(f"the graph already has a tensor named '{start}'")
    states = {p.input for p in bf.state}
    data = [t for t in bf.inputs if t.name not in states]
    flag = TensorSpec(start, "int32", (BATCH, 1), (0, 1))
    return IOSpec(
        inputs=(*data, flag, *(t for t in bf.inputs if t.name in states)),
        outputs=bf.outputs,
        state=bf.state,
        kind=bf.kind,
    )


def to_batch_first(spec: IOSpec, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Arrays in ``spec``'s layout (a bundle's) → batch-first (contiguous). Unknown names pass through."""
    return {
        n: np.ascontiguousarray(np.moveaxis(a, _batch_axis(spec.tensor(n)), 0)) if spec.has(n) else a
        for n, a in arrays.items()
    }


def from_batch_first(spec: IOSpec, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Batch-first arrays → ``spec``'s layout (the inverse of :func:`to_batch_first`)."""
    return {
        n: np.ascontiguousarray(np.moveaxis(a, 0, _batch_axis(spec.tensor(n)))) if spec.has(n) else a
        for n, a in arrays.items()
    }


def axis_meanings(t: TensorSpec, *, head: str, start: str = START) -> list[str]:
    """What each axis of a batch-first tensor means, for the package manifest and the model card."""
    base = t.name.split(".")[0]
    if t.name == start:
        return ["batch", "start_flag"]
    if t.name == "lengths":
        return ["batch"]
    if base in ("h0", "c0", "h_n", "c_n"):
        per_layer = "." in t.name
        return ["batch", "direction" if per_layer else "layer*direction", "hidden"]
    if t.name == "input":
        return ["batch", "time"] if t.rank == 2 else ["batch", "time", "feature"]
    if t.name == "output":
        if head == "classify":
            return ["batch", "class"]
        return ["batch", "time", "class" if head == "tag" else "direction*hidden"]
    return ["batch", *(str(d) for d in t.dims[1:])]
