"""The I/O specification: the single source of truth for tensor names, dtypes, named axes and state pairs.

Everything downstream — ``dynamic_axes`` for the exporter, dummy and random feeds, feed validation in
the runners, output-shape checks, state carrying between chunks — reads an :class:`IOSpec`; nothing
re-derives names or axes. Tensor names are a public contract:

* inputs ``input`` (int64 token ids or float32 features), ``lengths`` (int64 ``[batch]``), ``h0``, ``c0``
* outputs ``output``, ``h_n``, ``c_n``
* cell stacks with unequal layer sizes use one state per layer: ``h0.k``/``c0.k`` → ``h_n.k``/``c_n.k``.

States are ``[layers * directions, batch, hidden]``: batch is axis 1 even for ``batch_first`` models.
This module imports neither torch nor numpy, so that ``import seqdeploy`` stays fast.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from seqdeploy.errors import InputError, InternalError

if TYPE_CHECKING:
    from seqdeploy.config import PipelineConfig

__all__ = ["BATCH", "SEQ", "IOSpec", "StatePair", "TensorSpec", "io_inputs", "spec_from_config", "spec_from_io"]

BATCH = "batch"
SEQ = "seq"
Dim = int | str
DType = Literal["float32", "float16", "int64", "int32"]
GraphKind = Literal["sequence", "step"]


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One graph input or output.

    Attributes:
        name: Graph tensor name, e.g. ``"h0"``.
        dtype: NumPy dtype name.
        dims: Static sizes as ints, dynamic axes as names (``"batch"``, ``"seq"``).
        value_range: Inclusive ``(low, high)`` bounds on values, for integer inputs; ``high`` may name a
            dim (``lengths`` must lie in ``[1, seq]``). Checked before inference.
    """

    name: str
    dtype: DType
    dims: tuple[Dim, ...]
    value_range: tuple[int, Dim] | None = None

    @property
    def rank(self) -> int:
        """Number of axes."""
        return len(self.dims)

    def axis(self, dim_name: str) -> int | None:
        """Index of the named dynamic axis, or ``None`` when the tensor does not have it."""
        return self.dims.index(dim_name) if dim_name in self.dims else None

    @property
    def batch_axis(self) -> int | None:
        """Index of the ``batch`` axis (1 for states even when ``batch_first``)."""
        return self.axis(BATCH)

    @property
    def seq_axis(self) -> int | None:
        """Index of the ``seq`` axis, if the tensor has one."""
        return self.axis(SEQ)

    def shape(self, sizes: Mapping[str, int]) -> tuple[int, ...]:
        """Concrete shape for the given sizes of the named axes."""
        try:
            return tuple(d if isinstance(d, int) else sizes[d] for d in self.dims)
        except KeyError as exc:
            raise InternalError(f"no size given for axis {exc} of '{self.name}'") from None

    def describe(self) -> str:
        """``name[dtype](d0, d1, ...)`` for messages."""
        return f"{self.name}: {self.dtype} ({', '.join(str(d) for d in self.dims)})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the manifest's ``spec``)."""
        out: dict[str, Any] = {"name": self.name, "dtype": self.dtype, "dims": list(self.dims)}
        if self.value_range is not None:
            out["value_range"] = list(self.value_range)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TensorSpec:
        """Inverse of :meth:`to_dict`."""
        vr = data.get("value_range")
        return cls(
            name=data["name"],
            dtype=data["dtype"],
            dims=tuple(data["dims"]),
            value_range=(vr[0], vr[1]) if vr is not None else None,
        )


@dataclass(frozen=True, slots=True)
class StatePair:
    """A recurrent state fed in as ``input`` and returned as ``output`` (``h0`` → ``h_n``)."""

    input: str
    output: str


@dataclass(frozen=True, slots=True)
class IOSpec:
    """Every input and output of one graph, and how states pair up.

    Attributes:
        inputs: Graph inputs in positional order (the order the torch module's ``forward`` takes).
        outputs: Graph outputs in order.
        state: ``h0 → h_n`` style pairs, for carrying state between calls.
        kind: ``"sequence"`` (whole sequences) or ``"step"`` (one time step, no ``seq`` axis).
    """

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    state: tuple[StatePair, ...] = ()
    kind: GraphKind = "sequence"
    _by_name: dict[str, TensorSpec] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = [t.name for t in (*self.inputs, *self.outputs)]
        if len(set(names)) != len(names):
            raise InternalError(f"duplicate tensor names in IOSpec: {names}")
        self._by_name.update({t.name: t for t in (*self.inputs, *self.outputs)})

    @property
    def input_names(self) -> tuple[str, ...]:
        """Names of the inputs, in order."""
        return tuple(t.name for t in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        """Names of the outputs, in order."""
        return tuple(t.name for t in self.outputs)

    @property
    def state_outputs(self) -> tuple[str, ...]:
        """Names of the state outputs (``h_n``, ``c_n``, ``h_n.0``, ...), also when states are not inputs
        (``initial_state = false``, where :attr:`state` is empty).
        """
        paired = {p.output for p in self.state}
        return tuple(n for n in self.output_names if n.split(".")[0] in ("h_n", "c_n") or n in paired)

    def tensor(self, name: str) -> TensorSpec:
        """The input or output called ``name``."""
        try:
            return self._by_name[name]
        except KeyError:
            raise InputError(
                f"no tensor named '{name}'; this graph has inputs {list(self.input_names)} "
                f"and outputs {list(self.output_names)}"
            ) from None

    def has(self, name: str) -> bool:
        """Whether ``name`` is an input or output of this graph."""
        return name in self._by_name

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """``{tensor: {axis: name}}`` for every named axis, states included (``torch.onnx`` format)."""
        return {
            t.name: {i: d for i, d in enumerate(t.dims) if isinstance(d, str)}
            for t in (*self.inputs, *self.outputs)
            if any(isinstance(d, str) for d in t.dims)
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored in the manifest)."""
        return {
            "kind": self.kind,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "state": [{"input": p.input, "output": p.output} for p in self.state],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IOSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(
            inputs=tuple(TensorSpec.from_dict(t) for t in data["inputs"]),
            outputs=tuple(TensorSpec.from_dict(t) for t in data["outputs"]),
            state=tuple(StatePair(p["input"], p["output"]) for p in data.get("state", ())),
            kind=data.get("kind", "sequence"),
        )


def spec_from_config(cfg: PipelineConfig, kind: GraphKind = "sequence") -> IOSpec:
    """Build the IOSpec of the sequence graph (or, with ``kind="step"``, the single-step graph).

    Raises:
        ConfigError: ``source = "python"``: outputs are found by running the module (:func:`spec_from_io`).
    """
    if cfg.model.is_python:
        from seqdeploy.errors import ConfigError

        raise ConfigError(
            "model.source = 'python': the outputs' shapes are found by running your module at export; read the "
            "spec from the export's manifest (Bundle.specs), or use spec_from_io with the outputs"
        )
    m, ex = cfg.model, cfg.export
    step = kind == "step"
    if step and (m.bidirectional or ex.lengths):
        raise InternalError("step graphs exist only for unidirectional models without lengths")
    token_dims: tuple[Dim, ...] = (BATCH,) if step else ((BATCH, SEQ) if m.batch_first else (SEQ, BATCH))
    inputs: list[TensorSpec] = []
    if m.embedding is not None:
        inputs.append(TensorSpec("input", "int64", token_dims, (0, m.embedding.vocab_size - 1)))
    else:
        inputs.append(TensorSpec("input", "float32", (*token_dims, m.feature_size)))
    if ex.lengths and not step:
        inputs.append(TensorSpec("lengths", "int64", (BATCH,), (1, SEQ)))

    state_names = ["h", "c"] if m.base_cell == "lstm" else ["h"]
    state_in: list[TensorSpec] = []
    state_out: list[TensorSpec] = []
    pairs: list[StatePair] = []
    sizes = m.layer_sizes
    if m.per_layer_state:
        for s in state_names:
            for k, size in enumerate(sizes):
                state_in.append(TensorSpec(f"{s}0.{k}", "float32", (1, BATCH, size)))
                state_out.append(TensorSpec(f"{s}_n.{k}", "float32", (1, BATCH, size)))
                pairs.append(StatePair(f"{s}0.{k}", f"{s}_n.{k}"))
    else:
        rows = len(sizes) * m.num_directions
        for s in state_names:
            state_in.append(TensorSpec(f"{s}0", "float32", (rows, BATCH, sizes[0])))
            state_out.append(TensorSpec(f"{s}_n", "float32", (rows, BATCH, sizes[0])))
            pairs.append(StatePair(f"{s}0", f"{s}_n"))
    if ex.initial_state or step:
        inputs.extend(state_in)

    top = sizes[-1] * m.num_directions
    head = m.head
    out_dims: tuple[Dim, ...]
    if head.task == "classify":
        assert head.num_classes is not None
        out_dims = (BATCH, head.num_classes)
    else:
        width = top if head.task == "none" else head.num_classes
        assert width is not None
        out_dims = (*token_dims, width)
    outputs = [TensorSpec("output", "float32", out_dims), *state_out]
    return IOSpec(
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        state=tuple(pairs) if (ex.initial_state or step) else (),
        kind=kind,
    )


def io_inputs(cfg: PipelineConfig) -> tuple[TensorSpec, ...]:
    """The inputs of a ``source = "python"`` model, in ``[io] call`` order, from their declarations."""
    if cfg.io is None:
        raise InternalError("io_inputs needs a config with [io] (source = 'python')")
    out = []
    for name, decl in cfg.io.declarations().items():
        vr: tuple[int, Dim] | None = decl.range
        if name == "lengths":
            vr = (1, SEQ)
        out.append(TensorSpec(name, decl.dtype, tuple(decl.dims), vr))
    return tuple(out)


def spec_from_io(cfg: PipelineConfig, outputs: tuple[TensorSpec, ...]) -> IOSpec:
    """The IOSpec of a ``source = "python"`` model: inputs from ``[io]``, ``outputs`` as found by running it
    (in ``[io] call`` return order), state pairs declared or by name (``h0`` → ``h_n``).

    Raises:
        ConfigError: A state pair whose input and output shapes differ (they are fed back into each other);
            the key is ``io.state.NAME`` for a declared pair, ``io.call`` for a pair by name.
    """
    from seqdeploy.errors import ConfigError

    inputs = io_inputs(cfg)
    assert cfg.io is not None
    by_name = {t.name: t for t in (*inputs, *outputs)}
    pairs = []
    for src, dst in cfg.io.state_pairs():
        a, b = by_name[src], by_name[dst]
        if a.dims != b.dims or a.dtype != b.dtype:
            key = f"io.state.{src}" if cfg.io.state is not None else "io.call"
            fix = (
                "pair it with an output of that shape"
                if cfg.io.state is not None
                else "declare [io] state to pair others ({} for none)"
            )
            raise ConfigError(
                f"{key}: state pair {src} -> {dst}: the module returns {b.describe()} for {a.describe()}; a state "
                f"output is fed back as the next chunk's input, so they must match ({fix})"
            )
        pairs.append(StatePair(src, dst))
    return IOSpec(inputs=inputs, outputs=outputs, state=tuple(pairs), kind="sequence")
