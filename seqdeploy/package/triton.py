"""Triton model configurations: writing ``config.pbtxt`` and checking it against Triton's own schema and the graph.

Writing uses a small text-format emitter over plain Python structures (so that writing a package does not
need ``tritonclient``). Checking never uses a hand-written parser: every ``config.pbtxt`` is parsed with the
``ModelConfig`` protobuf that ``tritonclient`` ships (``tritonclient.grpc.model_config_pb2``), which catches
unknown fields, bad enum values and ``oneof`` conflicts. The protobuf does not catch what Triton and its ONNX
Runtime backend only find at load time, so :func:`check_model_config` adds those rules, each taken from
Triton's source (core ``model_config_utils.cc``, ``sequence_batch_scheduler.cc``,
``backend_model_instance.cc``; onnxruntime_backend ``onnxruntime.cc``, ``onnxruntime_utils.cc``):

* names, dtypes and dims (minus the batch dim) of every input and output against the graph, with
  ``reshape`` honoured; the graph's first dim must be dynamic when ``max_batch_size > 0``;
* the graph's inputs are exactly the config's inputs + control inputs + state inputs (the ORT backend
  counts them), controls and states are not listed as inputs, a boolean control is ``[1]`` per request and
  of the configured type;
* states: both names exist with the state's dtype and dims, one zero ``initial_state`` of fixed dims equal
  to the state's, and the state-name rule of server#8586 (sorting the input names and the output names must
  pair them exactly as configured);
* warmup: a model with implicit state has **none** (Triton's warmup requests skip the scheduler, so only
  ``sequence_batch_scheduler.cc`` would set their sequence state; without it the ONNX Runtime backend's
  ``TRITONBACKEND_StateNew`` fails with "unable to add state ... State configuration is missing", warmup
  fails and the model never loads). Every other model has one that covers every model input, with dims
  fully specified and matching, data files present and large enough, ``lengths`` inside ``[1, T]`` and
  token ids inside the vocabulary (a warmup that fails keeps the model from ever becoming READY).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seqdeploy._lazy import require
from seqdeploy.spec import IOSpec, TensorSpec

__all__ = [
    "DTYPE_TO_TRITON",
    "Enum",
    "GraphIO",
    "Map",
    "ScalarMap",
    "WarmupSample",
    "check_model_config",
    "dtype_name",
    "graph_io",
    "parse_config",
    "parse_config_text",
    "read_model_config",
    "render_pbtxt",
    "stateless_config",
    "stream_config",
    "triton_dims",
    "warmup_files",
    "warmup_samples",
]

DTYPE_TO_TRITON = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int64": "TYPE_INT64", "int32": "TYPE_INT32"}
_ORT_TO_TRITON = {
    "tensor(float)": "TYPE_FP32",
    "tensor(float16)": "TYPE_FP16",
    "tensor(int64)": "TYPE_INT64",
    "tensor(int32)": "TYPE_INT32",
    "tensor(bool)": "TYPE_BOOL",
    "tensor(double)": "TYPE_FP64",
}
_ITEMSIZE = {"TYPE_FP32": 4, "TYPE_FP16": 2, "TYPE_INT64": 8, "TYPE_INT32": 4, "TYPE_BOOL": 1, "TYPE_FP64": 8}
WARMUP_DIR = "warmup"
ONNX_PLATFORM = "onnxruntime_onnx"
# Triton frees a sequence's state after this long without a request (its default of 1 s is too short for
# interactive streams, e.g. a user typing).
SEQUENCE_IDLE_US = 60_000_000
QUEUE_DELAY_US = 100


class Enum(str):
    """A protobuf enum value: written bare (``TYPE_FP32``), not quoted."""


# -- text format emitter ------------------------------------------------------------------------------------


def _scalar(value: object) -> str:
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise TypeError(f"cannot write {value!r} in protobuf text format")


def _emit(fields: Mapping[str, Any], indent: int) -> list[str]:
    pad = "  " * indent
    lines: list[str] = []
    for key, value in fields.items():
        if isinstance(value, Mapping) and getattr(value, "is_scalar_map", False):
            # map<string, scalar> fields (cc_model_filenames) are repeated {key, value} entries too.
            for k, v in value.items():
                lines += [f"{pad}{key} {{", f"{pad}  key: {_scalar(k)}", f"{pad}  value: {_scalar(v)}", f"{pad}}}"]
        elif isinstance(value, Mapping) and getattr(value, "is_map", False):
            # map<string, Message> fields are repeated {key, value} entries.
            for k, v in value.items():
                lines.append(f"{pad}{key} {{")
                lines.append(f"{pad}  key: {_scalar(k)}")
                lines.append(f"{pad}  value {{")
                lines.extend(_emit(v, indent + 2))
                lines.append(f"{pad}  }}")
                lines.append(f"{pad}}}")
        elif isinstance(value, Mapping):
            lines.append(f"{pad}{key} {{")
            lines.extend(_emit(value, indent + 1))
            lines.append(f"{pad}}}")
        elif isinstance(value, list) and value and isinstance(value[0], Mapping):
            for item in value:
                lines.append(f"{pad}{key} {{")
                lines.extend(_emit(item, indent + 1))
                lines.append(f"{pad}}}")
        elif isinstance(value, list):
            lines.append(f"{pad}{key}: [ {', '.join(_scalar(v) for v in value)} ]" if value else f"{pad}{key}: [ ]")
        else:
            lines.append(f"{pad}{key}: {_scalar(value)}")
    return lines


class Map(dict[str, Any]):
    """A protobuf ``map<string, Message>`` field."""

    is_map = True


class ScalarMap(dict[str, Any]):
    """A protobuf ``map<string, scalar>`` field (``cc_model_filenames``)."""

    is_scalar_map = True


def render_pbtxt(fields: Mapping[str, Any], header: str = "") -> str:
    """Protobuf text format of a nested structure (dicts are messages, lists of dicts repeated messages)."""
    head = "".join(f"# {line}\n" for line in header.splitlines())
    return head + "\n".join(_emit(fields, 0)) + "\n"


# -- building configs ---------------------------------------------------------------------------------------


def triton_dims(t: TensorSpec) -> tuple[list[int], list[int] | None]:
    """``(dims, reshape)`` of a batch-first tensor in a config with ``max_batch_size > 0``.

    The batch axis (axis 0) is dropped and named axes become ``-1``. A tensor that is only the batch
    (``lengths [B]``) is declared ``dims: [1]`` with ``reshape: { shape: [] }``, Triton's way to feed a
    ``[B]`` tensor from ``[B, 1]`` requests.
    """
    if t.batch_axis != 0:
        raise ValueError(f"'{t.name}' is not batch-first: dims {t.dims}")
    dims = [d if isinstance(d, int) else -1 for d in t.dims[1:]]
    if not dims:
        return [1], []
    return dims, None


def _io(t: TensorSpec) -> dict[str, Any]:
    dims, reshape = triton_dims(t)
    out: dict[str, Any] = {"name": t.name, "data_type": Enum(DTYPE_TO_TRITON[t.dtype]), "dims": dims}
    if reshape is not None:
        out["reshape"] = {"shape": reshape}
    return out


@dataclass(frozen=True, slots=True)
class WarmupSample:
    """One ``model_warmup`` entry: ``batch_size`` requests of sequence length ``seq``."""

    batch_size: int
    seq: int

    @property
    def name(self) -> str:
        """Sample name, e.g. ``b1_t64``."""
        return f"b{self.batch_size}_t{self.seq}"


def _lengths_file(seq: int) -> str:
    return f"lengths_t{seq}.bin"


def warmup_files(spec: IOSpec, samples: Sequence[WarmupSample]) -> dict[str, bytes]:
    """Raw data files under ``MODEL/warmup/``: ``lengths`` cannot be zero (ORT rejects length 0), so each
    sample's lengths come from a file holding one little-endian int64 ``T`` (one request's element).
    """
    if not spec.has("lengths"):
        return {}
    return {_lengths_file(s.seq): np.array([s.seq], dtype="<i8").tobytes() for s in samples}


def _warmup(spec: IOSpec, samples: Sequence[WarmupSample]) -> list[Any]:
    out = []
    for s in samples:
        inputs = Map()
        for t in spec.inputs:
            dims = [s.seq if d == "seq" else d for d in t.dims[1:]]
            if not dims:
                dims = [1]
            entry: dict[str, Any] = {"data_type": Enum(DTYPE_TO_TRITON[t.dtype]), "dims": dims}
            if t.name == "lengths":
                entry["input_data_file"] = _lengths_file(s.seq)
            else:
                # ids 0 (in every vocabulary), zero features, zero states.
                entry["zero_data"] = True
            inputs[t.name] = entry
        out.append({"name": s.name, "batch_size": s.batch_size, "count": 1, "inputs": inputs})
    return out


def warmup_samples(max_batch: int, seq_range: tuple[int, int], seq_opt: int) -> list[WarmupSample]:
    """One sample per regime: batch 1 and ``max_batch`` at the typical length, batch 1 at the longest."""
    lo, hi = seq_range
    opt = min(max(seq_opt, lo), hi)
    samples = [WarmupSample(1, opt), WarmupSample(max_batch, opt), WarmupSample(1, hi)]
    return list(dict.fromkeys(samples))


def stateless_config(
    name: str,
    spec: IOSpec,
    *,
    max_batch: int,
    samples: Sequence[WarmupSample],
    cpu_only: bool = False,
    merge: bool = True,
) -> dict[str, Any]:
    """The config of a stateless batch-first model served with ``dynamic_batching`` (``merge``), or with
    Triton's default scheduler, which runs every request alone (``merge=False``: int8, whose answers depend
    on the rows they run with; :func:`seqdeploy.package.manifest.merges_requests`).
    """
    cfg: dict[str, Any] = {
        "name": name,
        "platform": ONNX_PLATFORM,
        "max_batch_size": max_batch,
        "input": [_io(t) for t in spec.inputs],
        "output": [_io(t) for t in spec.outputs],
    }
    if merge:
        cfg["dynamic_batching"] = {"max_queue_delay_microseconds": QUEUE_DELAY_US}
    if cpu_only:
        # ONNX Runtime's int8 recurrent ops have no CUDA kernel (pitfalls #22): run the instances on the CPU.
        cfg["instance_group"] = [{"count": 1, "kind": Enum("KIND_CPU")}]
    cfg["model_warmup"] = _warmup(spec, samples)
    return cfg


def stream_config(
    name: str,
    spec: IOSpec,
    *,
    start: str,
    max_batch: int,
) -> dict[str, Any]:
    """The config of a streaming model for the ``sequence_batching`` scheduler with implicit state.

    ``input[]`` lists the data inputs, ``output[]`` every output (states too, so a client can read them);
    the START control and the state inputs are graph inputs that Triton fills itself.

    No ``model_warmup``: Triton's warmup requests skip the sequence batcher (core
    ``backend_model_instance.cc`` ``GenerateWarmupData``; only ``sequence_batch_scheduler.cc`` calls
    ``SetSequenceStates``), so they carry no sequence state and the ONNX Runtime backend's
    ``TRITONBACKEND_StateNew`` refuses them ("State configuration is missing"): the warmup would fail and
    the model would never load. The first request of the first sequence pays the session's start-up instead.
    """
    state_inputs = {p.input for p in spec.state}
    data_inputs = [t for t in spec.inputs if t.name not in state_inputs and t.name != start]
    states = []
    # Sorted by input name: the order Triton has been seen to pair them in (server#8586), so that the file
    # reads in the same order whatever the bug does.
    for pair in sorted(spec.state, key=lambda p: p.input):
        t = spec.tensor(pair.input)
        dims, _ = triton_dims(t)
        dtype = Enum(DTYPE_TO_TRITON[t.dtype])
        states.append(
            {
                "input_name": pair.input,
                "output_name": pair.output,
                "data_type": dtype,
                "dims": dims,
                "initial_state": {"data_type": dtype, "dims": dims, "zero_data": True, "name": f"{pair.input}_zero"},
            }
        )
    return {
        "name": name,
        "platform": ONNX_PLATFORM,
        "max_batch_size": max_batch,
        "input": [_io(t) for t in data_inputs],
        "output": [_io(t) for t in spec.outputs],
        "sequence_batching": {
            "max_sequence_idle_microseconds": SEQUENCE_IDLE_US,
            "oldest": {
                "max_candidate_sequences": max(64, 4 * max_batch),
                "preferred_batch_size": [max_batch],
                "max_queue_delay_microseconds": QUEUE_DELAY_US,
            },
            "control_input": [
                {"name": start, "control": [{"kind": Enum("CONTROL_SEQUENCE_START"), "int32_false_true": [0, 1]}]}
            ],
            "state": states,
        },
    }


# -- checking -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GraphIO:
    """A graph's inputs and outputs as Triton sees them: ``{name: (TYPE_*, dims with -1 for dynamic)}``."""

    inputs: dict[str, tuple[str, tuple[int, ...]]]
    outputs: dict[str, tuple[str, tuple[int, ...]]]


def graph_io(model: bytes | str | Path) -> GraphIO:
    """Read a graph's I/O through ONNX Runtime (as Triton's ONNX Runtime backend does).

    Raises:
        BackendUnavailable: onnxruntime is not installed.
        ValueError: ONNX Runtime cannot load the graph.
    """
    ort = require("onnxruntime", extra="cpu", purpose="reading a packaged graph")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        sess = ort.InferenceSession(
            model if isinstance(model, bytes) else str(model), opts, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # noqa: BLE001 - ORT raises InvalidProtobuf, Fail, InvalidGraph, ...
        raise ValueError(f"ONNX Runtime cannot load the graph: {type(exc).__name__}: {exc}") from None

    def conv(args: Any) -> dict[str, tuple[str, tuple[int, ...]]]:
        return {
            a.name: (
                _ORT_TO_TRITON.get(a.type, a.type),
                tuple(d if isinstance(d, int) else -1 for d in (a.shape or [])),
            )
            for a in args
        }

    return GraphIO(conv(sess.get_inputs()), conv(sess.get_outputs()))


def parse_config_text(text: str, *, extra: str = "triton") -> Any:
    """Parse ``config.pbtxt`` text with Triton's ``ModelConfig`` protobuf — the one parser of configs that the
    package checks and ``seqdeploy serve`` share.

    Args:
        text: The file's text.
        extra: The extra named when tritonclient is missing (``triton``; ``serve`` for the server).

    Raises:
        BackendUnavailable: tritonclient is not installed.
        ValueError: The text does not parse; the message carries the protobuf error (line and column).
    """
    mc = require("tritonclient.grpc.model_config_pb2", extra=extra, purpose="reading Triton model configs")
    text_format = require("google.protobuf.text_format", extra=extra, purpose="reading Triton model configs")
    try:
        return text_format.Parse(text, mc.ModelConfig())
    except text_format.ParseError as exc:
        raise ValueError(f"does not parse as Triton's ModelConfig: {exc}") from None


def parse_config(path: Path) -> Any:
    """:func:`parse_config_text` of a ``config.pbtxt`` file."""
    return parse_config_text(path.read_text(encoding="utf-8"))


def read_model_config(model_dir: Path) -> tuple[Any, list[str]]:
    """``MODEL/config.pbtxt`` parsed, or ``(None, [the problem])`` when it is missing or does not parse."""
    path = model_dir / "config.pbtxt"
    if not path.is_file():
        return None, [f"{model_dir.name}: config.pbtxt is missing"]
    try:
        return parse_config(path), []
    except ValueError as exc:
        return None, [f"{model_dir.name}/config.pbtxt: {exc}"]


def dtype_name(cfg_enum: int) -> str:
    """The ``TYPE_*`` name of a ``ModelConfig`` ``DataType`` value."""
    mc = require("tritonclient.grpc.model_config_pb2", extra="triton")
    return str(mc.DataType.Name(cfg_enum))


def _dims_match(model: tuple[int, ...], cfg: list[int], *, exact: bool) -> bool:
    """Triton's ``CompareDimsSupported`` with batching: the model's dim 0 is -1 and the rest matches."""
    if not model or model[0] != -1 or len(model) != len(cfg) + 1:
        return False
    return all(m == c or (not exact and m == -1) for m, c in zip(model[1:], cfg, strict=True))


@dataclass
class _Ctx:
    problems: list[str] = dataclasses.field(default_factory=list)

    def add(self, message: str) -> None:
        self.problems.append(message)


def check_model_config(
    model_dir: Path,
    io: GraphIO,
    *,
    spec: IOSpec,
    kind: str,
    max_batch: int,
    start: str | None,
    cpu_only: bool = False,
    merge: bool = True,
) -> list[str]:
    """Every problem of ``MODEL/config.pbtxt`` against Triton's schema, its graph and the package manifest.

    Args:
        model_dir: The model directory (its name is the model name).
        io: The graph's I/O (:func:`graph_io`).
        spec: The manifest's batch-first signature of the graph (value ranges for warmup data).
        kind: ``"stateless"`` or ``"stream"``.
        max_batch: The manifest's ``max_batch_size``.
        start: The manifest's START control name (stream models).
        cpu_only: The model must run on CPU instances (int8).
        merge: Requests may share an execution (``dynamic_batching``); ``False`` for int8, whose config must
            have no scheduler at all (Triton's default runs each request alone).

    Returns:
        Problems, each naming the field and what was expected; empty when the config is sound.
    """
    c = _Ctx()
    cfg, unreadable = read_model_config(model_dir)
    if cfg is None:
        return unreadable
    name = model_dir.name
    where = f"{name}/config.pbtxt"
    if cfg.name != name:
        c.add(f"{where}: name is {cfg.name!r} but the directory is '{name}' (Triton requires them to match)")
    if cfg.platform != ONNX_PLATFORM:
        c.add(f"{where}: platform is {cfg.platform!r}, expected '{ONNX_PLATFORM}'")
    if cfg.backend not in ("", "onnxruntime"):
        c.add(f"{where}: backend {cfg.backend!r} does not match platform '{ONNX_PLATFORM}'")
    model_file = cfg.default_model_filename or "model.onnx"
    versions = sorted(p.name for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())
    if versions != ["1"]:
        c.add(f"{where}: expected exactly one version directory '1', found {versions}")
    if not (model_dir / "1" / model_file).is_file():
        c.add(f"{where}: the graph {name}/1/{model_file} is missing")
    if cfg.max_batch_size != max_batch:
        c.add(f"{where}: max_batch_size is {cfg.max_batch_size}, the package manifest says {max_batch}")
    if cfg.max_batch_size < 1:
        c.add(f"{where}: max_batch_size must be >= 1: the graphs are batch-first and meant to be batched")
    scheduling = cfg.WhichOneof("scheduling_choice")
    want = ("dynamic_batching" if merge else None) if kind == "stateless" else "sequence_batching"
    if scheduling != want and not merge:
        c.add(
            f"{where}: scheduler is {scheduling!r}, but requests to this model must never be merged: its dynamic "
            "int8 quantization computes one scale over the whole batch, so a request's answer would depend on its "
            "batch companions; remove the scheduler (Triton's default runs each request alone)"
        )
    elif scheduling != want:
        c.add(f"{where}: scheduler is {scheduling!r}, a {kind} model needs '{want}'")
    for size in cfg.dynamic_batching.preferred_batch_size:
        if not 0 < size <= cfg.max_batch_size:
            c.add(f"{where}: dynamic_batching.preferred_batch_size {size} must be in [1, max_batch_size]")
    if cpu_only and not any(g.kind == g.KIND_CPU for g in cfg.instance_group):
        c.add(f"{where}: an int8 model must run on KIND_CPU instances (ORT's int8 recurrent ops have no CUDA kernel)")

    seen: set[str] = set()
    cfg_inputs = {}
    for t in cfg.input:
        if t.name in seen:
            c.add(f"{where}: input '{t.name}' is listed twice")
        seen.add(t.name)
        cfg_inputs[t.name] = t
        _check_tensor(c, where, "input", t, io.inputs, exact=False)
    cfg_outputs = set()
    for t in cfg.output:
        if t.name in cfg_outputs:
            c.add(f"{where}: output '{t.name}' is listed twice")
        cfg_outputs.add(t.name)
        _check_tensor(c, where, "output", t, io.outputs, exact=True)

    sb = cfg.sequence_batching
    controls: list[str] = []
    for ci in sb.control_input:
        controls.append(ci.name)
        if ci.name in cfg_inputs:
            c.add(f"{where}: control '{ci.name}' is also listed in input[]; Triton supplies controls itself")
        if ci.name not in io.inputs:
            c.add(f"{where}: control '{ci.name}' is not an input of the graph")
            continue
        for ctl in ci.control:
            if ctl.kind != ctl.CONTROL_SEQUENCE_START:
                c.add(f"{where}: control '{ci.name}' has kind {ctl.kind}; the graph consumes only a START flag")
            if list(ctl.int32_false_true) != [0, 1]:
                c.add(
                    f"{where}: control '{ci.name}' must be int32_false_true: [ 0, 1 ] (the graph reads an int32 flag)"
                )
        dtype, dims = io.inputs[ci.name]
        if dtype != "TYPE_INT32" or not _dims_match(dims, [1], exact=True):
            c.add(f"{where}: control '{ci.name}' in the graph is {dtype} {list(dims)}; Triton feeds [batch, 1] INT32")
    if kind == "stream" and controls != ([start] if start else []):
        c.add(f"{where}: control inputs are {controls}, the package manifest says START is {start!r}")

    state_in: dict[str, str] = {}
    for st in sb.state:
        state_in[st.input_name] = st.output_name
        _check_state(c, where, st, io, cfg_inputs)
    if kind == "stream" and set(state_in.items()) != {(p.input, p.output) for p in spec.state}:
        c.add(
            f"{where}: states {sorted(state_in.items())} differ from the manifest's pairs "
            f"{[(p.input, p.output) for p in spec.state]}"
        )
    if state_in:
        by_sort = dict(zip(sorted(state_in), sorted(state_in.values()), strict=True))
        if by_sort != state_in:
            c.add(
                f"{where}: state names do not sort into the same pairs on both sides ({sorted(state_in.items())} "
                f"vs sorted order {sorted(by_sort.items())}); Triton has paired implicit states by sorted name "
                "(server#8586): rename them so both sides sort alike"
            )

    expected = set(cfg_inputs) | set(controls) | set(state_in)
    if set(io.inputs) != expected:
        c.add(
            f"{where}: the graph's inputs {sorted(io.inputs)} are not exactly input[] + controls + state inputs "
            f"{sorted(expected)} (ONNX Runtime's backend refuses to load the model)"
        )
    for out in io.outputs:
        if out not in cfg_outputs and out not in state_in.values():
            c.add(f"{where}: graph output '{out}' is neither listed in output[] nor a state output")

    _check_warmup(c, where, cfg, io, spec, model_dir)
    return c.problems


def _check_tensor(
    c: _Ctx, where: str, side: str, t: Any, graph: Mapping[str, tuple[str, tuple[int, ...]]], *, exact: bool
) -> None:
    if t.name not in graph:
        c.add(f"{where}: {side} '{t.name}' is not an {side} of the graph (graph {side}s: {sorted(graph)})")
        return
    dtype, dims = graph[t.name]
    cfg_dtype = dtype_name(t.data_type)
    if cfg_dtype != dtype:
        c.add(f"{where}: {side} '{t.name}' is {cfg_dtype} in the config but {dtype} in the graph")
    shape = list(t.reshape.shape) if t.HasField("reshape") else list(t.dims)
    if t.HasField("reshape") and not (
        int(np.prod(t.dims)) == int(np.prod(t.reshape.shape)) or (list(t.dims) == [1] and not t.reshape.shape)
    ):
        c.add(f"{where}: {side} '{t.name}' dims {list(t.dims)} and reshape {shape} hold different element counts")
    if not _dims_match(dims, shape, exact=exact):
        c.add(
            f"{where}: {side} '{t.name}' is [batch] + {shape} in the config but {list(dims)} in the graph "
            "(the graph's first dim must be the dynamic batch, the rest must match)"
        )


def _check_state(c: _Ctx, where: str, st: Any, io: GraphIO, cfg_inputs: Mapping[str, Any]) -> None:
    name = st.input_name
    dtype = dtype_name(st.data_type)
    dims = list(st.dims)
    if name in cfg_inputs:
        c.add(f"{where}: state input '{name}' is also listed in input[]; Triton supplies implicit state itself")
    for side, tensor, graph in (("input", name, io.inputs), ("output", st.output_name, io.outputs)):
        if tensor not in graph:
            c.add(f"{where}: state {side} '{tensor}' is not an {side} of the graph")
            continue
        gdtype, gdims = graph[tensor]
        if gdtype != dtype:
            c.add(f"{where}: state {side} '{tensor}' is {dtype} in the config but {gdtype} in the graph")
        if not _dims_match(gdims, dims, exact=False):
            c.add(f"{where}: state {side} '{tensor}' is [batch] + {dims} in the config but {list(gdims)} in the graph")
    if len(st.initial_state) != 1:
        c.add(
            f"{where}: state '{name}' needs exactly one initial_state (zero_data): without it a new sequence "
            "starts from uninitialised memory"
        )
        return
    init = st.initial_state[0]
    if not init.name:
        c.add(f"{where}: initial_state of '{name}' needs a name (Triton refuses an empty one)")
    if init.data_type != st.data_type:
        c.add(f"{where}: initial_state of '{name}' has data type {dtype_name(init.data_type)}, the state {dtype}")
    if list(init.dims) != dims or any(d < 1 for d in init.dims):
        c.add(
            f"{where}: initial_state dims {list(init.dims)} of '{name}' must be fixed and equal the state dims {dims}"
        )
    if init.WhichOneof("state_data") != "zero_data" or not init.zero_data:
        c.add(f"{where}: initial_state of '{name}' must be zero_data: true (a new sequence starts from zeros)")


def _check_warmup(c: _Ctx, where: str, cfg: Any, io: GraphIO, spec: IOSpec, model_dir: Path) -> None:
    if cfg.sequence_batching.state:
        if cfg.model_warmup:
            c.add(
                f"{where}: model_warmup on a model with implicit state: Triton's warmup requests skip the sequence "
                "batcher and carry no sequence state, so the ONNX Runtime backend refuses them ('State "
                "configuration is missing'), the warmup fails and the model never loads; remove model_warmup"
            )
        return
    if not cfg.model_warmup:
        c.add(f"{where}: no model_warmup: first requests would pay the session's start-up cost")
        return
    names = [w.name for w in cfg.model_warmup]
    if len(set(names)) != len(names) or not all(names):
        c.add(f"{where}: warmup sample names must be unique and non-empty, got {names}")
    for w in cfg.model_warmup:
        label = f"{where}: warmup '{w.name}'"
        if not 1 <= w.batch_size <= cfg.max_batch_size:
            c.add(f"{label}: batch_size {w.batch_size} must be in [1, max_batch_size]")
        missing = sorted(set(io.inputs) - set(w.inputs))
        if missing:
            c.add(f"{label}: does not cover the graph inputs {missing} (warmup must give every model input)")
        seq = None
        for key, inp in w.inputs.items():
            if key not in io.inputs:
                c.add(f"{label}: input '{key}' is not an input of the graph")
                continue
            gdtype, gdims = io.inputs[key]
            dtype = dtype_name(inp.data_type)
            if dtype != gdtype:
                c.add(f"{label}: input '{key}' is {dtype}, the graph takes {gdtype}")
            dims = list(inp.dims)
            if any(d < 1 for d in dims):
                c.add(f"{label}: input '{key}' dims {dims} must be fully specified (no -1)")
            rest = list(gdims[1:]) or [1]
            if len(rest) != len(dims) or any(g not in (-1, d) for g, d in zip(rest, dims, strict=False)):
                c.add(f"{label}: input '{key}' dims {dims} do not fit the graph's {list(gdims)}")
            if key == "input" and spec.has("input") and spec.tensor("input").seq_axis == 1 and dims:
                seq = dims[0]
            _check_warmup_data(c, label, key, inp, dims, dtype, spec, model_dir)
        if spec.has("lengths") and "lengths" in w.inputs and seq is not None:
            values = _warmup_values(w.inputs["lengths"], model_dir, "TYPE_INT64")
            if values is not None and (values.size == 0 or values.min() < 1 or values.max() > seq):
                c.add(f"{label}: lengths {values.tolist()} must lie in [1, {seq}] (ONNX Runtime rejects others)")


def _warmup_values(inp: Any, model_dir: Path, dtype: str) -> np.ndarray | None:
    which = inp.WhichOneof("input_data_type")
    if which == "zero_data":
        return np.zeros(1, dtype=np.int64)
    if which == "input_data_file":
        p = model_dir / WARMUP_DIR / inp.input_data_file
        if p.is_file():
            np_dtype = {"TYPE_INT64": "<i8", "TYPE_INT32": "<i4"}.get(dtype)
            if np_dtype is not None:
                return np.frombuffer(p.read_bytes(), dtype=np_dtype)
    return None


def _check_warmup_data(
    c: _Ctx, label: str, key: str, inp: Any, dims: list[int], dtype: str, spec: IOSpec, model_dir: Path
) -> None:
    which = inp.WhichOneof("input_data_type")
    if which is None:
        c.add(f"{label}: input '{key}' has no data (zero_data, random_data or input_data_file)")
        return
    if which == "input_data_file":
        p = model_dir / WARMUP_DIR / inp.input_data_file
        need = int(np.prod(dims)) * _ITEMSIZE.get(dtype, 1)
        if not p.is_file():
            c.add(f"{label}: input '{key}' data file {model_dir.name}/{WARMUP_DIR}/{inp.input_data_file} is missing")
            return
        if p.stat().st_size < need:
            c.add(f"{label}: input '{key}' data file holds {p.stat().st_size} bytes, Triton needs {need}")
    t = spec.tensor(key) if spec.has(key) else None
    if t is not None and t.value_range is not None and key != "lengths":
        if which == "random_data":
            c.add(f"{label}: input '{key}' must not be random_data: its values must lie in {list(t.value_range)}")
        values = _warmup_values(inp, model_dir, dtype)
        lo, hi = t.value_range
        if values is not None and isinstance(hi, int) and (values.min() < lo or values.max() > hi):
            c.add(f"{label}: input '{key}' warmup values must lie in [{lo}, {hi}]")
