"""ONNX graph surgery that turns a bundle's ``model.onnx`` into the packaged graphs, for any model.

Nothing here knows the model: it reads only the bundle's IOSpec, so a user's own ``nn.Module`` gets the
same treatment as the zoo's.

* :func:`batch_first_graph` puts a ``Transpose`` in front of every input and behind every output whose
  batch is not on axis 0 (time-major ``input``/``output``, and states, whose batch is on axis 1 even for
  ``batch_first`` models). Graph input and output names stay the contract names; the tensors inside the
  graph that carried those names are renamed (``h0__sd_inner``), subgraphs' outer-scope references included.
* :func:`stream_graph` adds the ``START`` input ``[B, 1]`` int32 and a per-row reset of every state input:
  ``Where(START != 0, 0, h)``. A select, never ``h * (1 - START)``: on the first request of a sequence
  Triton may hand the graph uninitialised state memory, which can hold NaN, and ``NaN * 0`` is NaN.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from seqdeploy.errors import InternalError
from seqdeploy.package.layout import START, batch_first_spec, inner_perm, outer_perm
from seqdeploy.spec import IOSpec, TensorSpec

__all__ = ["batch_first_graph", "check_graph", "stream_graph", "toposort"]

_ELEM = {
    "float32": TensorProto.FLOAT,
    "float16": TensorProto.FLOAT16,
    "int64": TensorProto.INT64,
    "int32": TensorProto.INT32,
}


def _subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            yield attr.g
        elif attr.type == onnx.AttributeProto.GRAPHS:
            yield from attr.graphs


def _names(graph: onnx.GraphProto) -> set[str]:
    """Every tensor name defined or used in ``graph`` and its subgraphs."""
    out = {v.name for v in (*graph.input, *graph.output, *graph.value_info)}
    out |= {i.name for i in graph.initializer}
    for node in graph.node:
        out |= set(node.input) | set(node.output)
        for sub in _subgraphs(node):
            out |= _names(sub)
    return out


def _defines(graph: onnx.GraphProto, name: str) -> bool:
    return (
        any(v.name == name for v in graph.input)
        or any(i.name == name for i in graph.initializer)
        or any(name in n.output for n in graph.node)
    )


def _rename_uses(graph: onnx.GraphProto, old: str, new: str, *, outputs: bool) -> None:
    """Rename ``old`` to ``new`` wherever ``graph`` uses it (and, with ``outputs``, where a node produces it).

    Subgraphs (Loop/If/Scan bodies) may read outer tensors by name; they are renamed too unless the
    subgraph defines its own tensor of that name (shadowing).
    """
    for node in graph.node:
        node.input[:] = [new if x == old else x for x in node.input]
        if outputs:
            node.output[:] = [new if x == old else x for x in node.output]
        for sub in _subgraphs(node):
            if not _defines(sub, old):
                _rename_uses(sub, old, new, outputs=False)
    for vi in graph.value_info:
        if vi.name == old:
            vi.name = new


def _fresh(taken: set[str], base: str) -> str:
    name, k = base, 1
    while name in taken:
        k += 1
        name = f"{base}{k}"
    taken.add(name)
    return name


def _value_info(t: TensorSpec) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(t.name, _ELEM[t.dtype], list(t.dims))


def _replace_io(entries: Any, t: TensorSpec) -> None:
    """Replace the graph input/output ``t.name`` in ``entries`` (a repeated ValueInfoProto field)."""
    for vi in entries:
        if vi.name == t.name:
            vi.CopyFrom(_value_info(t))
            return
    raise InternalError(f"graph has no input/output named '{t.name}'")


def _set_meta(model: onnx.ModelProto, key: str, value: str) -> None:
    for prop in model.metadata_props:
        if prop.key == key:
            prop.value = value
            return
    model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))


def batch_first_graph(model: onnx.ModelProto, spec: IOSpec) -> onnx.ModelProto:
    """A copy of ``model`` (whose I/O is ``spec``) with every input and output batch-first.

    Raises:
        InternalError: ``model``'s I/O names differ from ``spec``'s.
    """
    m = copy.deepcopy(model)
    g = m.graph
    graph_in = [v.name for v in g.input if v.name not in {i.name for i in g.initializer}]
    graph_out = [v.name for v in g.output]
    if sorted(graph_in) != sorted(spec.input_names) or graph_out != list(spec.output_names):
        raise InternalError(
            f"graph I/O {graph_in} -> {graph_out} does not match the bundle's IOSpec "
            f"{list(spec.input_names)} -> {list(spec.output_names)}"
        )
    taken = _names(g)
    front: list[onnx.NodeProto] = []
    back: list[onnx.NodeProto] = []
    for t in spec.inputs:
        if t.batch_axis == 0:
            continue
        inner = _fresh(taken, f"{t.name}__sd_inner")
        _rename_uses(g, t.name, inner, outputs=False)
        front.append(
            helper.make_node("Transpose", [t.name], [inner], name=f"sd_batch_first_in_{t.name}", perm=inner_perm(t))
        )
    for t in spec.outputs:
        if t.batch_axis == 0:
            continue
        inner = _fresh(taken, f"{t.name}__sd_inner")
        _rename_uses(g, t.name, inner, outputs=True)
        back.append(
            helper.make_node("Transpose", [inner], [t.name], name=f"sd_batch_first_out_{t.name}", perm=outer_perm(t))
        )
    nodes = [*front, *g.node, *back]
    del g.node[:]
    g.node.extend(nodes)
    bf = batch_first_spec(spec)
    for t in bf.inputs:
        _replace_io(g.input, t)
    for t in bf.outputs:
        _replace_io(g.output, t)
    _set_meta(m, "seqdeploy.layout", "batch_first")
    _set_meta(m, "seqdeploy.graph", "stateless")
    return m


def stream_graph(model: onnx.ModelProto, bf_spec: IOSpec, start: str = START) -> onnx.ModelProto:
    """A copy of the batch-first ``model`` with a ``START`` input and a per-row reset of every state input.

    Args:
        model: A batch-first graph (:func:`batch_first_graph`) whose I/O is ``bf_spec``.
        bf_spec: Its IOSpec; ``bf_spec.state`` names the state inputs to reset.
        start: Name of the new control input.
    """
    if not bf_spec.state:
        raise InternalError("stream_graph needs a graph with state inputs")
    m = copy.deepcopy(model)
    g = m.graph
    taken = _names(g)
    if start in taken:
        raise InternalError(f"the graph already uses the name '{start}'")
    taken.add(start)
    flag_bool = _fresh(taken, "sd_start_bool")
    flag_rows = _fresh(taken, "sd_start_rows")
    shape_name = _fresh(taken, "sd_start_shape")
    nodes = [
        helper.make_node("Cast", [start], [flag_bool], name="sd_start_cast", to=TensorProto.BOOL),
        # [B, 1] -> [B, 1, 1]: broadcasts over a state's [B, L*D, H], one flag per row.
        helper.make_node("Reshape", [flag_bool, shape_name], [flag_rows], name="sd_start_rows"),
    ]
    inits = [numpy_helper.from_array(np.array([-1, 1, 1], dtype=np.int64), shape_name)]
    for pair in bf_spec.state:
        t = bf_spec.tensor(pair.input)
        if t.rank != 3:
            raise InternalError(f"state '{t.name}' is not [batch, rows, hidden]: {t.dims}")
        zero = _fresh(taken, f"sd_zero_{t.name}")
        inits.append(numpy_helper.from_array(np.zeros((), dtype=t.dtype), zero))
        reset = _fresh(taken, f"{t.name}__sd_reset")
        _rename_uses(g, t.name, reset, outputs=False)
        nodes.append(helper.make_node("Where", [flag_rows, zero, t.name], [reset], name=f"sd_reset_{t.name}"))
    existing = list(g.node)
    del g.node[:]
    g.node.extend([*nodes, *existing])
    g.initializer.extend(inits)
    # START goes after the data inputs, before the states (the stream IOSpec's order).
    states = {p.input for p in bf_spec.state}
    inputs = [copy.deepcopy(v) for v in g.input]
    pos = next((i for i, v in enumerate(inputs) if v.name in states), len(inputs))
    inputs.insert(pos, helper.make_tensor_value_info(start, TensorProto.INT32, ["batch", 1]))
    del g.input[:]
    g.input.extend(inputs)
    _set_meta(m, "seqdeploy.graph", "stream")
    _set_meta(m, "seqdeploy.start", start)
    return m


def _outer_refs(graph: onnx.GraphProto) -> set[str]:
    """Names a subgraph reads from enclosing scopes."""
    defined = {v.name for v in graph.input} | {i.name for i in graph.initializer}
    refs: set[str] = set()
    for node in graph.node:
        refs |= {x for x in node.input if x and x not in defined}
        for sub in _subgraphs(node):
            refs |= _outer_refs(sub) - defined
        defined |= set(node.output)
    return refs


def toposort(model: onnx.ModelProto) -> onnx.ModelProto:
    """Order the main graph's nodes topologically (stable: the original order wherever it is valid).

    ONNX requires it; ONNX Runtime's fp16 converter appends the input casts it inserts at the end.
    """
    g = model.graph
    nodes = list(g.node)
    available = {v.name for v in g.input} | {i.name for i in g.initializer} | {""}
    needs = [{x for x in n.input} | set().union(*(_outer_refs(s) for s in _subgraphs(n))) for n in nodes]
    ordered: list[onnx.NodeProto] = []
    pending = list(range(len(nodes)))
    while pending:
        ready = [i for i in pending if needs[i] <= available]
        if not ready:
            missing = sorted(set().union(*(needs[i] for i in pending)) - available)[:5]
            raise InternalError(f"graph has a cycle or reads undefined tensors: {missing}")
        for i in ready:
            ordered.append(nodes[i])
            available |= set(nodes[i].output)
        done = set(ready)
        pending = [i for i in pending if i not in done]
    del g.node[:]
    g.node.extend(ordered)
    return model


def check_graph(model: onnx.ModelProto) -> None:
    """The full ONNX checker (with shape inference) on a packaged graph.

    Raises:
        InternalError: The surgery produced an invalid graph (a seqdeploy bug).
    """
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # noqa: BLE001 - onnx raises ValidationError, InferenceError, ...
        raise InternalError(f"graph surgery produced an invalid ONNX graph: {exc}") from None
