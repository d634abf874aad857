"""Graph rules: facts about one ONNX graph, checked without running it, per target.

Each rule catches a known *silent* failure or a known parser rejection
(``../shared/docs/pitfalls-and-acceptance.md``, ``../shared/docs/tensorrt-notes.md``). ``ort`` holds
the export's own checks; the TensorRT targets add the parser's rules. Severity per target
(``E`` error, ``W`` warning, ``-`` not checked):

=======================  ===  =====  =====  ====================================================================
code                     ort  trt10  trt11  what
=======================  ===  =====  =====  ====================================================================
io-names                 E    E      E      graph inputs/outputs are not exactly the IOSpec's, in order
io-dtype                 E    E      E      a graph input/output has another element type than the IOSpec
static-dim               E    E      E      a named dynamic axis is fixed in the graph (e.g. ``h0`` batch baked)
dim-mismatch             E    E      E      a static dim differs from the IOSpec
gru-linear-before-reset  E    E      E      a GRU node without ``linear_before_reset=1`` (PyTorch semantics)
training-op              E    E      E      Dropout left in the graph, or a node in training mode
rnn-layout               E    E      E      ``layout != 0`` (TensorRT's parser rejects it for LSTM and silently
                                            reads GRU/RNN as layout 0)
lstm-input-forget        E    E      E      ``input_forget != 0`` (not PyTorch's LSTM; TensorRT rejects it)
sequence-lens            E    E      E      with a ``lengths`` input, a recurrent node without ``sequence_lens``
no-recurrent-op          E    E      E      a sequence graph without a native recurrent op (``seq`` unrolled)
loop-op                  W    W      W      ``Loop``/``Scan``: weak spots of TensorRT and its ORT provider
fp16-range               E    E      E      an fp16 weight or constant is inf/NaN where its fp32 source was finite
                                            (it overflowed 65504; a deliberate -inf mask is fine); in an fp32
                                            graph, a finite weight beyond 65504 or a NaN is a warning (no fp16
                                            variant)
rnn-activations          -    E      E      a bidirectional op whose forward and reverse activations (or
                                            alpha/beta) differ: the parser needs them equal
opset-range              -    E      E      the default-domain opset is outside the parser's table
custom-domain-op         -    E      E      an op outside the ONNX domain (``com.microsoft`` contrib ops such as
                                            the int8 variant's ``DynamicQuantizeLSTM``): no TensorRT importer
loop-dynamic-scan        -    E      E      a ``Loop`` with scan outputs whose length is only known when it ends:
                                            no trip count, an early-exit condition, or a trip count read from
                                            data (a trip count from shapes or constants is fine)
rnn-initial-state        -    E      E      an fp16 recurrent op without explicit ``initial_h``/``initial_c``: the
                                            parser makes FLOAT zeros, which a strongly typed fp16 network rejects
=======================  ===  =====  =====  ====================================================================

Rules work on an ``onnx.ModelProto`` and need no spec for the graph-internal rules; the I/O rules run
only when an :class:`~seqdeploy.spec.IOSpec` is given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from seqdeploy.lint.findings import Finding, Severity
from seqdeploy.lint.targets import Target, get_target
from seqdeploy.spec import IOSpec

__all__ = [
    "FP16_MAX",
    "RECURRENT_OPS",
    "RULES",
    "TENSORRT_RULES",
    "finite_peak",
    "lint_model",
    "recurrent_precision",
]

RECURRENT_OPS = frozenset({"LSTM", "GRU", "RNN", "DynamicQuantizeLSTM"})
FP16_MAX = 65504.0
"""The largest finite float16."""

_ELEM_TYPES = {1: "float32", 10: "float16", 6: "int32", 7: "int64"}
_FLOAT, _FLOAT16 = 1, 10
_ONNX_DOMAINS = ("", "ai.onnx")

# code -> severity per target; a target missing from a row does not run that rule.
_ALL_E: dict[str, Severity] = {"ort": "error", "trt10": "error", "trt11": "error"}
_TRT_E: dict[str, Severity] = {"trt10": "error", "trt11": "error"}
RULES: dict[str, dict[str, Severity]] = {
    "io-names": _ALL_E,
    "io-dtype": _ALL_E,
    "static-dim": _ALL_E,
    "dim-mismatch": _ALL_E,
    "gru-linear-before-reset": _ALL_E,
    "training-op": _ALL_E,
    "rnn-layout": _ALL_E,
    "lstm-input-forget": _ALL_E,
    "sequence-lens": _ALL_E,
    "no-recurrent-op": _ALL_E,
    "loop-op": {"ort": "warning", "trt10": "warning", "trt11": "warning"},
    "fp16-range": _ALL_E,
    "rnn-activations": _TRT_E,
    "opset-range": _TRT_E,
    "custom-domain-op": _TRT_E,
    "loop-dynamic-scan": _TRT_E,
    "rnn-initial-state": _TRT_E,
}
TENSORRT_RULES = frozenset(code for code, sev in RULES.items() if "ort" not in sev)
"""Rules that only the TensorRT targets run (a CPU-only variant downgrades them to warnings)."""


def _attr(node: Any, name: str, default: Any) -> Any:
    """An attribute's value (int, float, string, or a list of those), or ``default``."""
    import onnx

    for a in node.attribute:
        if a.name == name:
            value = onnx.helper.get_attribute_value(a)
            if isinstance(value, bytes):
                return value.decode()
            if isinstance(value, list):
                return [v.decode() if isinstance(v, bytes) else v for v in value]
            return value
    return default


def _walk(graph: Any) -> Iterator[tuple[Any, Any]]:
    """Every ``(node, graph it belongs to)``, subgraphs (Loop/Scan/If bodies) included."""
    for node in graph.node:
        yield node, graph
        for a in node.attribute:
            if a.HasField("g"):
                yield from _walk(a.g)
            for g in a.graphs:
                yield from _walk(g)


def _label(node: Any) -> str:
    return f"{node.op_type} node '{node.name}'"


def _elem_types(model: Any) -> dict[str, int]:
    """Element type of every tensor whose type is known or inferable (initializers, I/O, value_info)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - inference is best effort here; the declared types remain
        inferred = model
    g = inferred.graph
    types = {i.name: i.data_type for i in g.initializer}
    for v in (*g.input, *g.output, *g.value_info):
        if v.type.HasField("tensor_type"):
            types.setdefault(v.name, v.type.tensor_type.elem_type)
    for node, _ in _walk(g):
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    types[node.output[0]] = a.t.data_type
    return types


def recurrent_precision(node: Any, types: dict[str, int]) -> str | None:
    """``"float16"``/``"float32"`` of a recurrent node (from ``W``, else ``X``), or ``None`` if unknown."""
    for slot in (1, 0):
        if len(node.input) > slot and node.input[slot] in types:
            return _ELEM_TYPES.get(types[node.input[slot]])
    return None


def lint_model(
    model: Any,
    spec: IOSpec | None = None,
    *,
    target: str | Target = "ort",
    graph: str = "",
    source: Any | None = None,
) -> list[Finding]:
    """Lint an ``onnx.ModelProto`` for ``target``; returns every finding (empty = clean).

    Args:
        model: The graph.
        spec: Its IOSpec; without one the I/O rules and the kind-dependent rules (``no-recurrent-op``,
            ``sequence-lens`` when there is no ``lengths`` graph input) are skipped.
        target: ``ort``, ``trt10``, ``trt11`` (or a :class:`Target`).
        graph: The file name to put in each finding.
        source: The fp32 graph an fp16 variant was converted from, when known: an inf/NaN in an fp16
            tensor is then an error only where the same-named fp32 tensor was finite (a deliberate ``-inf``
            stays ``-inf``). Without it, an fp16 tensor that is all ±inf is a warning, NaN or inf among
            finite values an error.
    """
    tgt = target if isinstance(target, Target) else get_target(target)
    found: list[Finding] = []

    def add(code: str, node: str, message: str, severity: Severity | None = None) -> None:
        table = RULES[code]
        if tgt.name in table:
            found.append(Finding(code, severity or table[tgt.name], graph, node, message))

    if spec is not None:
        _io_rules(model, spec, add)
    types = _elem_types(model)
    nodes = list(_walk(model.graph))
    recurrent = [n for n, _ in nodes if n.op_type in RECURRENT_OPS]
    for n, owner in nodes:
        _node_rules(n, owner, types, add)
    if spec is not None and spec.kind == "sequence" and not recurrent:
        add(
            "no-recurrent-op",
            "",
            "the sequence graph has no native LSTM/GRU/RNN op: the recurrence was unrolled over the traced "
            "length, so 'seq' is fixed. Export cell stacks through seqdeploy (it converts them to modules).",
        )
    has_lengths = spec.has("lengths") if spec is not None else any(i.name == "lengths" for i in model.graph.input)
    if has_lengths:
        for n in recurrent:
            if not (n.input[4] if len(n.input) > 4 else ""):
                add(
                    "sequence-lens",
                    n.name,
                    f"{n.op_type} node '{n.name}' has no sequence_lens input although the graph takes 'lengths': "
                    "padded steps would be processed as data and h_n/c_n taken at the padded end",
                )
    if tgt.tensorrt:
        _opset_rule(model, tgt, add)
    _fp16_range_rule(model, recurrent, types, add, source)
    return found


Add = Callable[..., None]


def _io_rules(model: Any, spec: IOSpec, add: Add) -> None:
    g = model.graph
    initializers = {i.name for i in g.initializer}
    graph_inputs = [i for i in g.input if i.name not in initializers]
    for kind, actual, expected in (("inputs", graph_inputs, spec.inputs), ("outputs", list(g.output), spec.outputs)):
        names = [v.name for v in actual]
        if names != [t.name for t in expected]:
            add("io-names", "", f"graph {kind} are {names}, expected {[t.name for t in expected]}")
            continue
        for v, t in zip(actual, expected, strict=True):
            tt = v.type.tensor_type
            dtype = _ELEM_TYPES.get(tt.elem_type, f"elem_type {tt.elem_type}")
            if dtype != t.dtype:
                add("io-dtype", "", f"'{t.name}' is {dtype} in the graph, expected {t.dtype}")
            dims = list(tt.shape.dim)
            if len(dims) != t.rank:
                add("dim-mismatch", "", f"'{t.name}' has rank {len(dims)} in the graph, expected {t.rank}")
                continue
            for axis, (d, want) in enumerate(zip(dims, t.dims, strict=True)):
                if isinstance(want, str):
                    if d.HasField("dim_value"):
                        add(
                            "static-dim",
                            "",
                            f"'{t.name}' axis {axis} ('{want}') is fixed to {d.dim_value} in the graph; it must be "
                            f"dynamic, or the model only runs (or silently miscomputes) at {want}={d.dim_value}",
                        )
                elif d.HasField("dim_value") and d.dim_value != want:
                    add("dim-mismatch", "", f"'{t.name}' axis {axis} is {d.dim_value} in the graph, expected {want}")


def _node_rules(n: Any, owner: Any, types: dict[str, int], add: Add) -> None:
    label = _label(n)
    op = n.op_type
    if n.domain not in _ONNX_DOMAINS:
        why = (
            "an ONNX Runtime contrib op: TensorRT's ONNX parser has no importer for it. The int8 variant "
            "(DynamicQuantizeLSTM) is a CPU-only path; build TensorRT engines from model.onnx or model.fp16.onnx"
            if n.domain == "com.microsoft"
            else "TensorRT's ONNX parser only imports ONNX-domain ops (plugins aside)"
        )
        add("custom-domain-op", n.name, f"{label} is in domain '{n.domain}': {why}")
    if op == "GRU" and _attr(n, "linear_before_reset", 0) != 1:
        add(
            "gru-linear-before-reset",
            n.name,
            f"{label} has linear_before_reset={_attr(n, 'linear_before_reset', 0)}; PyTorch GRUs need 1 "
            "(the reset gate applies after the recurrent matmul). Re-export with the TorchScript exporter.",
        )
    if op == "Dropout":
        add("training-op", n.name, f"{label}: Dropout left in the graph; export the model in eval() mode")
    if op == "BatchNormalization" and _attr(n, "training_mode", 0):
        add("training-op", n.name, f"{label} is in training mode; export in eval() mode")
    if op in ("LSTM", "GRU", "RNN") and _attr(n, "layout", 0) != 0:
        add(
            "rnn-layout",
            n.name,
            f"{label} has layout=1 (batch-major); TensorRT's ONNX parser only accepts "
            "layout=0. Express batch_first with Transposes.",
        )
    if op == "LSTM" and _attr(n, "input_forget", 0) != 0:
        add("lstm-input-forget", n.name, f"{label} has input_forget=1, which is not PyTorch's LSTM")
    if op in ("Loop", "Scan"):
        add("loop-op", n.name, f"{label}: Loop/Scan graphs are weak spots of TensorRT and its ORT provider")
    if op == "Loop":
        _loop_scan_rule(n, owner, add)
    if op in ("LSTM", "GRU", "RNN"):
        _activations_rule(n, add)
        _initial_state_rule(n, types, add)


def _activations_rule(n: Any, add: Add) -> None:
    if _attr(n, "direction", "forward") != "bidirectional":
        return
    per_dir = {"LSTM": 3, "GRU": 2, "RNN": 1}[n.op_type]
    acts = [str(a).lower() for a in _attr(n, "activations", [])]
    problems = []
    if acts and (len(acts) != 2 * per_dir or acts[:per_dir] != acts[per_dir:]):
        problems.append(f"activations forward {acts[:per_dir]} vs reverse {acts[per_dir:]}")
    for name in ("activation_alpha", "activation_beta"):
        vals = [float(v) for v in _attr(n, name, [])]
        half = len(vals) // 2
        if vals and (len(vals) % 2 or vals[:half] != vals[half:]):
            problems.append(f"{name} forward {vals[:half]} vs reverse {vals[half:]}")
    if problems:
        add(
            "rnn-activations",
            n.name,
            f"{_label(n)} is bidirectional with different directions: {'; '.join(problems)}. TensorRT's parser "
            "needs the same activations both ways (NVIDIA/TensorRT#1417); PyTorch modules always export equal ones.",
        )


def _initial_state_rule(n: Any, types: dict[str, int], add: Add) -> None:
    if recurrent_precision(n, types) != "float16":
        return
    slots = {5: "initial_h", 6: "initial_c"} if n.op_type == "LSTM" else {5: "initial_h"}
    missing = [name for slot, name in slots.items() if not (n.input[slot] if len(n.input) > slot else "")]
    if missing:
        add(
            "rnn-initial-state",
            n.name,
            f"{_label(n)} is fp16 but has no {' / '.join(missing)} input: TensorRT's parser creates FLOAT "
            "zeros for a missing state, which a strongly typed fp16 network rejects (mixed types). Feed "
            "explicit fp16 states (seqdeploy optimize --fp16 inserts zero states when a graph lacks them).",
        )


def _from_shapes_and_constants(name: str, graph: Any) -> bool:
    """Whether tensor ``name`` of ``graph`` is computed only from shapes (``Shape``/``Size`` outputs) and
    constants — a trip count TensorRT can take: its importers set a loop's length from an input's shape at
    run time (the RNN and CumSum importers do so themselves). Data (a graph input such as ``lengths``, a
    value read from a tensor) or a name from an enclosing graph makes it data-dependent.
    """
    producers = {o: n for n in graph.node for o in n.output if o}
    constants = {i.name for i in graph.initializer}
    seen: set[str] = set()
    todo = [name]
    while todo:
        t = todo.pop()
        if t in seen or t in constants:
            continue
        seen.add(t)
        node = producers.get(t)
        if node is None:
            return False  # a graph input (data) or a name from an enclosing graph
        if node.op_type in ("Shape", "Size", "Constant"):
            continue
        if any(a.HasField("g") or len(a.graphs) for a in node.attribute):
            return False  # computed by control flow
        todo.extend(i for i in node.input if i)
    return True


def _loop_scan_rule(n: Any, owner: Any, add: Add) -> None:
    """A ``Loop`` whose scan outputs TensorRT's parser cannot size: it needs a trip count known before the
    loop runs (constants or shapes: a dynamic T through shape tensors is fine) and no early exit. A loop
    whose condition can end it early (a ``while`` loop), or whose trip count is read from data, has scan
    outputs of a length only known when it ends.
    """
    carried = len(n.input) - 2
    scans = len(n.output) - carried
    if scans <= 0:
        return
    trip = n.input[0] if n.input else ""
    cond = n.input[1] if len(n.input) > 1 else ""
    reasons = []
    if not trip:
        reasons.append("it has no trip count")
    elif not _from_shapes_and_constants(trip, owner):
        reasons.append("its trip count is computed from data, not from shapes or constants")
    body = next((a.g for a in n.attribute if a.name == "body"), None)
    if cond or body is None:
        body_cond_in = body.input[1].name if body is not None and len(body.input) > 1 else ""
        body_cond_out = body.output[0].name if body is not None and body.output else ""
        passthrough = body_cond_out == body_cond_in or any(
            b.op_type == "Identity" and b.output[0] == body_cond_out and b.input[0] == body_cond_in
            for b in (body.node if body is not None else [])
        )
        if not passthrough:
            reasons.append("its condition can end it early")
    if reasons:
        add(
            "loop-dynamic-scan",
            n.name,
            f"{_label(n)} has {scans} scan output(s) whose length is only known when the loop ends "
            f"({' and '.join(reasons)}); TensorRT's parser needs scan outputs whose length is set before the "
            "loop runs (a trip count from shapes or constants, no early exit). "
            "Export native LSTM/GRU/RNN ops instead of a scripted loop.",
        )


def _opset_rule(model: Any, tgt: Target, add: Add) -> None:
    if tgt.opsets is None:
        return
    lo, hi = tgt.opsets
    for o in model.opset_import:
        if o.domain in _ONNX_DOMAINS and not lo <= o.version <= hi:
            add(
                "opset-range",
                "",
                f"the graph uses ONNX opset {o.version}; TensorRT {tgt.line}'s ONNX parser table covers opsets "
                f"{lo}-{hi}. Re-export with [export] opset inside that range (seqdeploy's default is 17).",
            )


def finite_peak(arr: Any) -> float:
    """``max|x|`` over the finite values of ``arr`` (``0.0`` when there are none), ``NaN`` if it holds a NaN.

    ±inf is left out on purpose: it is exact in fp16 and graphs use it deliberately (max pooling masks
    padded steps with ``masked_fill(-inf)``); only a finite value beyond 65504 overflows in conversion.
    """
    import numpy as np

    a = np.asarray(arr, dtype=np.float64)
    if a.size == 0:
        return 0.0
    if np.isnan(a).any():
        return float("nan")
    finite = a[np.isfinite(a)]
    return float(np.abs(finite).max()) if finite.size else 0.0


def _float_constants(model: Any) -> list[tuple[str, str, Any]]:
    """``(tensor name, node name, NumPy array)`` of every float32/float16 initializer (node ``""``) and
    ``Constant`` value, subgraphs included; external data (not loaded by lint) is skipped.
    """
    import numpy as np
    from onnx import numpy_helper

    out = [
        (i.name, "", numpy_helper.to_array(i))
        for i in model.graph.initializer
        if i.data_type in (_FLOAT, _FLOAT16) and i.data_location != 1
    ]
    for node, _ in _walk(model.graph):
        if node.op_type != "Constant" or not node.output:
            continue
        for a in node.attribute:
            if a.name == "value" and a.t.data_type in (_FLOAT, _FLOAT16) and a.t.data_location != 1:
                out.append((node.output[0], node.name, numpy_helper.to_array(a.t)))
            elif a.name == "value_float":
                out.append((node.output[0], node.name, np.asarray(a.f, dtype=np.float32)))
            elif a.name == "value_floats":
                out.append((node.output[0], node.name, np.asarray(a.floats, dtype=np.float32)))
    return [(n, node, arr) for n, node, arr in out if arr.size]


def _fp16_range_rule(model: Any, recurrent: list[Any], types: dict[str, int], add: Add, source: Any) -> None:
    import numpy as np

    fp16_graph = any(recurrent_precision(n, types) == "float16" for n in recurrent)
    sources = {n: arr for n, _, arr in _float_constants(source)} if source is not None else None
    for name, node, arr in _float_constants(model):
        if arr.dtype == np.float16:
            bad = ~np.isfinite(arr)
            if not bad.any():
                continue
            src = sources.get(name) if sources is not None else None
            if src is not None and src.shape == arr.shape:
                # Only where the fp32 source was finite: a -inf mask (max pooling) is -inf in both.
                bad &= np.isfinite(src)
                if not bad.any():
                    continue
            elif sources is None and not np.isnan(arr).any() and not np.isfinite(arr).any():
                add(
                    "fp16-range",
                    node,
                    f"fp16 tensor '{name}' is all ±inf: deliberate (a mask) or an overflow of its fp32 value — lint "
                    "it inside its export directory, where its fp32 source is compared",
                    "warning",
                )
                continue
            add(
                "fp16-range",
                node,
                f"fp16 tensor '{name}' holds {int(bad.sum())} inf/NaN value(s) that are finite in the fp32 graph: "
                "a value beyond the fp16 range (65504) overflowed when it was converted. Rescale the weights or "
                "keep the model fp32.",
            )
        elif not fp16_graph:
            peak = finite_peak(arr)
            if np.isnan(peak) or peak > FP16_MAX:
                reach = "holds NaN" if np.isnan(peak) else f"reaches |x| = {peak:.6g}, beyond the fp16 range (65504)"
                add(
                    "fp16-range",
                    node,
                    f"weight '{name}' {reach}: this graph has no fp16 form (seqdeploy optimize --fp16 refuses it); "
                    "TensorRT builds it in fp32 only.",
                    "warning",
                )
