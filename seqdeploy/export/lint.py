"""Structural lints of an exported ONNX graph against its IOSpec, run without executing it.

Each rule catches a known *silent* failure (``../shared/docs/pitfalls-and-acceptance.md``):

=====================  ========  ==============================================================
code                   severity  what
=====================  ========  ==============================================================
io-names               error     graph inputs/outputs are not exactly the IOSpec's, in order
io-dtype               error     a graph input/output has another element type than the IOSpec
static-dim             error     a named dynamic axis is fixed in the graph (e.g. ``h0`` batch baked)
dim-mismatch           error     a static dim differs from the IOSpec
gru-linear-before-reset error    a GRU node without ``linear_before_reset=1`` (PyTorch semantics)
training-op            error     Dropout left in the graph, or a node in training mode
rnn-layout             error     ``layout != 0`` (TensorRT's parser rejects it)
lstm-input-forget      error     ``input_forget != 0`` (not PyTorch semantics; TensorRT rejects it)
sequence-lens          error     with a ``lengths`` input, a recurrent node without ``sequence_lens``
no-recurrent-op        error     a sequence graph without a native recurrent op: the loop was
                                 unrolled, so ``seq`` is fixed at the traced length
loop-op                warning   ``Loop``/``Scan``: weak spots of TensorRT and its ORT provider
=====================  ========  ==============================================================
"""

from __future__ import annotations

from typing import Any

from seqdeploy.parity.report import LintFinding
from seqdeploy.spec import IOSpec

__all__ = ["RECURRENT_OPS", "lint_onnx"]

RECURRENT_OPS = frozenset({"LSTM", "GRU", "RNN", "DynamicQuantizeLSTM"})
_ELEM_TYPES = {1: "float32", 10: "float16", 6: "int32", 7: "int64"}


def _attr(node: Any, name: str, default: int) -> int:
    for a in node.attribute:
        if a.name == name:
            return int(a.i)
    return default


def _all_nodes(graph: Any) -> list[Any]:
    nodes = []
    for node in graph.node:
        nodes.append(node)
        for a in node.attribute:
            if a.g is not None and len(a.g.node):
                nodes.extend(_all_nodes(a.g))
            for g in a.graphs:
                nodes.extend(_all_nodes(g))
    return nodes


def lint_onnx(model: Any, spec: IOSpec, *, file: str = "") -> list[LintFinding]:
    """Lint an ``onnx.ModelProto`` against ``spec``; returns every finding (empty = clean)."""
    found: list[LintFinding] = []

    def add(severity: str, code: str, message: str) -> None:
        found.append(LintFinding(severity, code, message, file))

    g = model.graph
    initializers = {i.name for i in g.initializer}
    graph_inputs = [i for i in g.input if i.name not in initializers]
    for kind, actual, expected in (("inputs", graph_inputs, spec.inputs), ("outputs", list(g.output), spec.outputs)):
        names = [v.name for v in actual]
        if names != [t.name for t in expected]:
            add("error", "io-names", f"graph {kind} are {names}, expected {[t.name for t in expected]}")
            continue
        for v, t in zip(actual, expected, strict=True):
            tt = v.type.tensor_type
            dtype = _ELEM_TYPES.get(tt.elem_type, f"elem_type {tt.elem_type}")
            if dtype != t.dtype:
                add("error", "io-dtype", f"'{t.name}' is {dtype} in the graph, expected {t.dtype}")
            dims = list(tt.shape.dim)
            if len(dims) != t.rank:
                add("error", "dim-mismatch", f"'{t.name}' has rank {len(dims)} in the graph, expected {t.rank}")
                continue
            for axis, (d, want) in enumerate(zip(dims, t.dims, strict=True)):
                if isinstance(want, str):
                    if d.HasField("dim_value"):
                        add(
                            "error",
                            "static-dim",
                            f"'{t.name}' axis {axis} ('{want}') is fixed to {d.dim_value} in the graph; it must be "
                            f"dynamic, or the model only runs (or silently miscomputes) at {want}={d.dim_value}",
                        )
                elif d.HasField("dim_value") and d.dim_value != want:
                    add(
                        "error",
                        "dim-mismatch",
                        f"'{t.name}' axis {axis} is {d.dim_value} in the graph, expected {want}",
                    )

    nodes = _all_nodes(g)
    recurrent = [n for n in nodes if n.op_type in RECURRENT_OPS]
    for n in nodes:
        label = f"{n.op_type} node '{n.name}'"
        if n.op_type == "GRU" and _attr(n, "linear_before_reset", 0) != 1:
            add(
                "error",
                "gru-linear-before-reset",
                f"{label} has linear_before_reset={_attr(n, 'linear_before_reset', 0)}; PyTorch GRUs need 1 "
                "(the reset gate applies after the recurrent matmul). Re-export with the TorchScript exporter.",
            )
        if n.op_type == "Dropout":
            add("error", "training-op", f"{label}: Dropout left in the graph; export the model in eval() mode")
        if n.op_type in ("BatchNormalization",) and _attr(n, "training_mode", 0):
            add("error", "training-op", f"{label} is in training mode; export in eval() mode")
        if n.op_type in ("LSTM", "GRU", "RNN") and _attr(n, "layout", 0) != 0:
            add(
                "error",
                "rnn-layout",
                f"{label} has layout=1 (batch-major); TensorRT's ONNX parser only accepts "
                "layout=0. Express batch_first with Transposes.",
            )
        if n.op_type == "LSTM" and _attr(n, "input_forget", 0) != 0:
            add("error", "lstm-input-forget", f"{label} has input_forget=1, which is not PyTorch's LSTM")
        if n.op_type in ("Loop", "Scan"):
            add("warning", "loop-op", f"{label}: Loop/Scan graphs are weak spots of TensorRT and its ORT provider")
    if spec.kind == "sequence" and not recurrent:
        add(
            "error",
            "no-recurrent-op",
            "the sequence graph has no native LSTM/GRU/RNN op: the recurrence was unrolled over the traced "
            "length, so 'seq' is fixed. Export cell stacks through seqdeploy (it converts them to modules).",
        )
    if spec.has("lengths"):
        for n in recurrent:
            seq_lens = n.input[4] if len(n.input) > 4 else ""
            if not seq_lens:
                add(
                    "error",
                    "sequence-lens",
                    f"{n.op_type} node '{n.name}' has no sequence_lens input although the graph takes 'lengths': "
                    "padded steps would be processed as data and h_n/c_n taken at the padded end",
                )
    return found
