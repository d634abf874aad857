"""The fp16 graph pass: an fp32 export → the same graph computing in fp16, I/O contract unchanged.

Why our own pass: TensorRT 11 has no FP16 builder flag (strongly typed networks take their precision
from the ONNX file) and TensorRT 10 builds the same file with ``STRONGLY_TYPED``, so the fp16 model
must be a type-consistent fp16 ONNX file. ``onnxconverter_common.float16.convert_float_to_float16(...,
keep_io_types=True)`` keeps stale ``value_info`` and produced a graph ONNX Runtime refuses for our
bi-LSTM classifier (``Slice`` output typed fp16 where fp32 is expected; measured with onnxconverter-
common 1.16 / ORT 1.32, docs/tensorrt.md).

What the pass does, in order (every step is a plain graph edit; nothing is guessed from names):

1. refuses graphs it cannot convert faithfully: control flow (subgraphs), ops that create float
   tensors from a ``dtype`` attribute, casts to double, ops whose ONNX type constraints do not admit
   float16 where they would receive or produce it (a float ``Range``, for example), and any float
   weight or constant beyond the fp16 range (a finite |x| > 65504, or NaN; ±inf is exact in fp16 and
   kept, e.g. the ``-inf`` that masks padded steps in max pooling) — the error names each node or tensor;
2. converts every float32 initializer and constant (``Constant``, ``ConstantOfShape``) to fp16 and
   retargets ``Cast(to=FLOAT)`` to ``FLOAT16`` (e.g. the lengths of mean pooling);
3. keeps the I/O contract: each float32 graph input gets a ``Cast`` to fp16 right after it, each float32
   graph output a ``Cast`` back to fp32 (int64 ids and lengths are untouched);
4. gives every recurrent op explicit fp16 zero states where it has none (TensorRT would make FLOAT
   zeros and a strongly typed fp16 network rejects the mix — lint rule ``rnn-initial-state``);
5. drops all intermediate ``value_info`` (stale types are exactly what breaks other converters), then
   re-infers types with ``strict_mode`` + ``check_type`` and runs the full ONNX checker.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from seqdeploy._lazy import require
from seqdeploy.errors import ExportError
from seqdeploy.lint.rules import FP16_MAX, finite_peak

__all__ = ["FP16_MAX", "activation_peaks", "convert_to_fp16", "range_violations", "weight_peaks"]

_FLOAT, _FLOAT16, _DOUBLE = 1, 10, 11
_RECURRENT = ("LSTM", "GRU", "RNN")
# Ops that create float tensors from an attribute-given dtype: converting them needs per-op care that
# our exports never need, so the pass refuses them rather than leave an fp32 island in an fp16 network.
_DTYPE_OPS = frozenset(
    {"EyeLike", "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli"}
)


def _float_tensors(graph: Any) -> Iterable[tuple[str, Any]]:
    """``(name, TensorProto)`` of every float weight or constant tensor in the graph."""
    for init in graph.initializer:
        yield init.name, init
    for node in graph.node:
        for a in node.attribute:
            if node.op_type in ("Constant", "ConstantOfShape") and a.name == "value":
                yield (node.output[0] if node.output else node.name), a.t


def _merge_peak(old: float | None, new: float) -> float:
    """The larger of two peaks, NaN winning (``max`` would keep whichever comes first)."""
    if old is None:
        return new
    if np.isnan(old) or np.isnan(new):
        return float("nan")
    return max(old, new)


def weight_peaks(model: Any) -> dict[str, float]:
    """``max|x|`` of every float32 initializer and constant tensor (value attributes included).

    Peaks are :func:`~seqdeploy.lint.rules.finite_peak`: finite values only, NaN kept.
    """
    from onnx import numpy_helper

    peaks: dict[str, float] = {}
    for name, t in _float_tensors(model.graph):
        if t.data_type == _FLOAT:
            arr = numpy_helper.to_array(t)
            if arr.size:
                peaks[name] = finite_peak(arr)
    for node in model.graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value_float":
                    peaks[node.output[0]] = finite_peak(np.asarray([a.f]))
                elif a.name == "value_floats" and len(a.floats):
                    peaks[node.output[0]] = finite_peak(np.asarray(a.floats))
    return peaks


def range_violations(peaks: Mapping[str, float]) -> list[tuple[str, float]]:
    """``(name, peak)`` of every tensor that does not survive fp16: a NaN, or a finite ``|x| > 65504``,
    worst first (NaN first). Peaks come from :func:`~seqdeploy.lint.rules.finite_peak`, so a deliberate
    ±inf is not a violation.
    """
    bad = [(n, p) for n, p in peaks.items() if np.isnan(p) or p > FP16_MAX]
    return sorted(bad, key=lambda item: -np.inf if np.isnan(item[1]) else -item[1])


def _refuse_range(bad: Sequence[tuple[str, float]], what: str) -> ExportError:
    listed = ", ".join(f"'{n}' (holds NaN)" if np.isnan(p) else f"'{n}' (|x| = {p:.6g})" for n, p in bad[:8])
    more = f" and {len(bad) - 8} more" if len(bad) > 8 else ""
    return ExportError(
        f"cannot make an fp16 variant: {what} exceed the fp16 range (65504): {listed}{more}. "
        "In fp16 they would become inf (or stay NaN); rescale the model (or keep it fp32 for TensorRT)"
    )


def convert_to_fp16(model: Any) -> Any:
    """Return an fp16 copy of an fp32 ``onnx.ModelProto`` whose graph I/O keeps its dtypes.

    Raises:
        ExportError: The graph cannot be converted faithfully (see the module docstring); the message
            names the tensor or node.
    """
    onnx = require("onnx", extra="export", purpose="the fp16 pass")
    from onnx import TensorProto, helper, numpy_helper

    m = copy.deepcopy(model)
    g = m.graph
    for node in g.node:
        if any(a.HasField("g") or len(a.graphs) for a in node.attribute):
            raise ExportError(
                f"cannot make an fp16 variant: {node.op_type} node '{node.name}' has a subgraph (control flow); "
                "the fp16 pass supports straight-line graphs such as seqdeploy's exports"
            )
        if node.op_type in _DTYPE_OPS:
            raise ExportError(f"cannot make an fp16 variant: {node.op_type} node '{node.name}' is not supported")
        if node.op_type == "Cast" and _int_attr(node, "to") == _DOUBLE:
            raise ExportError(f"cannot make an fp16 variant: Cast node '{node.name}' casts to double")
    bad = range_violations(weight_peaks(m))
    if bad:
        raise _refuse_range(bad, "weights")
    problems = _fp16_type_problems(m, onnx)
    if problems:
        listed = "\n  ".join(problems[:8]) + (f"\n  ... and {len(problems) - 8} more" if len(problems) > 8 else "")
        raise ExportError(
            "cannot make an fp16 variant: these ops do not accept float16 where the fp16 graph would give "
            f"it to them (their ONNX type constraints exclude it):\n  {listed}\n"
            "Keep the model fp32 for TensorRT, or change the model so that these values are computed in "
            "another type (e.g. an integer Range)"
        )

    def to16(t: Any) -> Any:
        return numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16), t.name)

    for i, init in enumerate(g.initializer):
        if init.data_type == _FLOAT:
            g.initializer[i].CopyFrom(to16(init))
    for node in g.node:
        _node_to_fp16(node, to16, helper, TensorProto)

    _cast_io(g, helper, TensorProto)
    _explicit_states(g, helper, numpy_helper, TensorProto)
    del g.value_info[:]
    helper.set_model_props(m, {**{p.key: p.value for p in m.metadata_props}, "seqdeploy.precision": "fp16"})
    try:
        m = onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True)
        onnx.checker.check_model(m, full_check=True)
    except Exception as exc:  # noqa: BLE001 - onnx raises InferenceError, ValidationError, ...
        # The type check above covers the ops' declared constraints; what is left is a graph this pass does
        # not understand (an op whose types follow an attribute, a contrib op, ...): the graph's property,
        # refused like the others (exit 1), not reported as a crash.
        raise ExportError(
            f"cannot make an fp16 variant: ONNX type inference rejects the converted graph: {exc}. The graph uses "
            "an op the fp16 pass cannot convert; keep the model fp32 for TensorRT (for an unmodified seqdeploy "
            "export this is a seqdeploy bug: please report it with the graph)"
        ) from None
    return m


def _declared_types(model: Any, onnx: Any) -> dict[str, int]:
    """Element type of every tensor of the (fp32) graph whose type is declared or inferable."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - best effort: the declared types remain
        inferred = model
    g = inferred.graph
    types = {i.name: int(i.data_type) for i in g.initializer}
    for v in (*g.input, *g.output, *g.value_info):
        if v.type.HasField("tensor_type"):
            types.setdefault(v.name, int(v.type.tensor_type.elem_type))
    return types


def _fp16_type_problems(model: Any, onnx: Any) -> list[str]:
    """Nodes whose ONNX schema does not admit ``tensor(float16)`` for an input or output that is float32
    now and will be float16 after the pass (every float tensor inside the graph is converted).

    ``Cast`` (retargeted), ``Constant`` and ``ConstantOfShape`` (values converted) are the pass's own
    business; ops outside the known domains or opsets cannot be checked here and are left to the type
    inference that ends the pass.
    """
    types = _declared_types(model, onnx)
    opsets = {("" if o.domain == "ai.onnx" else o.domain): int(o.version) for o in model.opset_import}
    variadic = onnx.defs.OpSchema.FormalParameterOption.Variadic
    problems = []
    for node in model.graph.node:
        if node.op_type in ("Cast", "Constant", "ConstantOfShape"):
            continue
        domain = "" if node.domain == "ai.onnx" else node.domain
        try:
            schema = onnx.defs.get_schema(node.op_type, opsets.get(domain, 1), domain)
        except onnx.defs.SchemaError:
            continue
        allowed = {c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints}
        refused: dict[str, list[str]] = {}  # type parameter -> the node's inputs/outputs bound to it
        for names, formals in ((node.input, schema.inputs), (node.output, schema.outputs)):
            for i, name in enumerate(names):
                if not name or types.get(name) != _FLOAT or not formals:
                    continue
                formal = formals[min(i, len(formals) - 1)]
                if i >= len(formals) and formal.option != variadic:
                    continue
                if "tensor(float16)" not in allowed.get(formal.type_str, {formal.type_str}):
                    refused.setdefault(formal.type_str, []).append(f"{formal.name} '{name}'")
        for type_str, uses in refused.items():
            admitted = ", ".join(
                t.removeprefix("tensor(").removesuffix(")") for t in sorted(allowed.get(type_str, {type_str}))
            )
            problems.append(
                f"{node.op_type} node '{node.name}': {', '.join(uses)} would be float16; {type_str} admits {admitted}"
            )
    return problems


def _int_attr(node: Any, name: str) -> int | None:
    for a in node.attribute:
        if a.name == name:
            return int(a.i)
    return None


def _node_to_fp16(node: Any, to16: Any, helper: Any, tensor_proto: Any) -> None:
    if node.op_type == "Cast":
        for a in node.attribute:
            if a.name == "to" and a.i == _FLOAT:
                a.i = _FLOAT16
    elif node.op_type == "ConstantOfShape":
        values = [a for a in node.attribute if a.name == "value"]
        if not values:  # the default value is a float32 zero: make it explicit fp16
            node.attribute.append(helper.make_attribute("value", helper.make_tensor("value", _FLOAT16, [1], [0.0])))
        elif values[0].t.data_type == _FLOAT:
            values[0].t.CopyFrom(to16(values[0].t))
    elif node.op_type == "Constant":
        for i, a in enumerate(node.attribute):
            if a.name == "value" and a.t.data_type == _FLOAT:
                a.t.CopyFrom(to16(a.t))
            elif a.name in ("value_float", "value_floats"):
                vals = [a.f] if a.name == "value_float" else list(a.floats)
                dims = [] if a.name == "value_float" else [len(vals)]
                arr = np.asarray(vals, dtype=np.float16).reshape(dims)
                t = helper.make_tensor("value", _FLOAT16, dims, arr.reshape(-1).tolist())
                node.attribute[i].CopyFrom(helper.make_attribute("value", t))


def _rename_uses(graph: Any, old: str, new: str) -> None:
    for node in graph.node:
        for i, x in enumerate(node.input):
            if x == old:
                node.input[i] = new


def _cast_io(graph: Any, helper: Any, tensor_proto: Any) -> None:
    """fp32 graph inputs are cast to fp16 where they enter; fp32 outputs are cast back where they leave."""
    head = []
    for inp in graph.input:
        if inp.type.tensor_type.elem_type == _FLOAT:
            inner = f"{inp.name}__fp16"
            _rename_uses(graph, inp.name, inner)
            head.append(helper.make_node("Cast", [inp.name], [inner], name=f"{inp.name}__to_fp16", to=_FLOAT16))
    inputs = {i.name for i in graph.input}
    tail = []
    for out in graph.output:
        if out.type.tensor_type.elem_type != _FLOAT or out.name in inputs:
            continue
        inner = f"{out.name}__fp16"
        for node in graph.node:
            for i, o in enumerate(node.output):
                if o == out.name:
                    node.output[i] = inner
        _rename_uses(graph, out.name, inner)
        tail.append(helper.make_node("Cast", [inner], [out.name], name=f"{out.name}__to_fp32", to=_FLOAT))
    nodes = [*head, *graph.node, *tail]
    del graph.node[:]
    graph.node.extend(nodes)


def _explicit_states(graph: Any, helper: Any, numpy_helper: Any, tensor_proto: Any) -> None:
    """Zero fp16 ``initial_h``/``initial_c`` of shape ``[directions, batch, hidden]`` where a node has none."""
    nodes = []
    for node in graph.node:
        if node.op_type in _RECURRENT:
            slots = (5, 6) if node.op_type == "LSTM" else (5,)
            missing = [s for s in slots if not (node.input[s] if len(node.input) > s else "")]
            if missing:
                nodes.extend(_zero_state_nodes(node, missing, helper, numpy_helper, graph))
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)


def _zero_state_nodes(node: Any, slots: list[int], helper: Any, numpy_helper: Any, graph: Any) -> list[Any]:
    hidden = next(int(a.i) for a in node.attribute if a.name == "hidden_size")
    direction = next((a.s.decode() for a in node.attribute if a.name == "direction"), "forward")
    dirs = 2 if direction == "bidirectional" else 1
    p = f"{node.name or node.output[0]}__zero_state"
    # batch = X.shape[1] (layout 0: [seq, batch, input]); Slice keeps it a 1-D shape tensor at any opset.
    consts = {
        f"{p}_start": np.array([1], np.int64),
        f"{p}_end": np.array([2], np.int64),
        f"{p}_dirs": np.array([dirs], np.int64),
        f"{p}_hidden": np.array([hidden], np.int64),
    }
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
    made = [
        helper.make_node("Shape", [node.input[0]], [f"{p}_xshape"], name=f"{p}_shape"),
        helper.make_node("Slice", [f"{p}_xshape", f"{p}_start", f"{p}_end"], [f"{p}_batch"], name=f"{p}_batch"),
        helper.make_node(
            "Concat", [f"{p}_dirs", f"{p}_batch", f"{p}_hidden"], [f"{p}_dims"], name=f"{p}_dims", axis=0
        ),
        helper.make_node(
            "ConstantOfShape",
            [f"{p}_dims"],
            [f"{p}_zeros"],
            name=f"{p}_zeros",
            value=helper.make_tensor("value", _FLOAT16, [1], [0.0]),
        ),
    ]
    while len(node.input) <= max(slots):
        node.input.append("")
    for s in slots:
        node.input[s] = f"{p}_zeros"
    return made


def activation_peaks(
    path: Path, feeds: Sequence[Mapping[str, np.ndarray]], *, threads: int | None = None
) -> dict[str, float]:
    """``max|x|`` of every float tensor of an fp32 graph (inputs, intermediates, outputs) over ``feeds``
    (finite values only, NaN kept: :func:`~seqdeploy.lint.rules.finite_peak`).

    Runs the graph in ONNX Runtime on the CPU with every float node output exposed as a graph output,
    so a tensor that would overflow fp16 in the variant is found *by name*, not only as an inf in the
    variant's outputs.
    """
    onnx = require("onnx", extra="export", purpose="the fp16 range check")
    ort = require("onnxruntime", extra="cpu", purpose="the fp16 range check")
    model = onnx.load(str(path))
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in (*inferred.graph.value_info, *inferred.graph.output)}
    known = {o.name for o in model.graph.output}
    for node in model.graph.node:
        for o in node.output:
            if o and o not in known and types.get(o) == _FLOAT:
                model.graph.output.append(onnx.helper.make_tensor_value_info(o, _FLOAT, None))
                known.add(o)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    # Graph optimizations would fuse away the intermediates we want to see.
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    float_inputs = [i.name for i in model.graph.input if i.type.tensor_type.elem_type == _FLOAT]
    peaks: dict[str, float] = {}
    for f in feeds:
        for name in float_inputs:
            if name in f and f[name].size:
                peaks[name] = _merge_peak(peaks.get(name), finite_peak(f[name]))
        for name, value in zip(names, sess.run(names, dict(f)), strict=True):
            arr = np.asarray(value)
            if arr.dtype == np.float32 and arr.size:
                # Finite values only (NaN kept): a -inf that masks padded steps is exact in fp16.
                peaks[name] = _merge_peak(peaks.get(name), finite_peak(arr))
    return peaks


def refuse_activations(peaks: Mapping[str, float]) -> None:
    """Raise when an activation of the verify run exceeds the fp16 range (names each tensor).

    Raises:
        ExportError: Listing the tensors and their peak magnitudes.
    """
    bad = range_violations(peaks)
    if bad:
        raise _refuse_range(bad, "activations of the fp32 graph in the verify run")
