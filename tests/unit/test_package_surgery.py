"""Graph surgery on hand-made graphs: layouts, renamed references (subgraphs included), the START select."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from seqdeploy.errors import InternalError
from seqdeploy.package.layout import (
    axis_meanings,
    batch_first_spec,
    from_batch_first,
    inner_perm,
    outer_perm,
    stream_spec,
    to_batch_first,
)
from seqdeploy.package.surgery import batch_first_graph, check_graph, stream_graph, toposort
from seqdeploy.spec import IOSpec, StatePair, TensorSpec

# A time-major toy "recurrent" model: output = input + h0 (broadcast over time), h_n = h0 * 2 via an If
# whose branches read the outer tensor h0 by name (the subgraph reference the surgery must rename).
SPEC = IOSpec(
    inputs=(TensorSpec("input", "float32", ("seq", "batch", 3)), TensorSpec("h0", "float32", (1, "batch", 3))),
    outputs=(TensorSpec("output", "float32", ("seq", "batch", 3)), TensorSpec("h_n", "float32", (1, "batch", 3))),
    state=(StatePair("h0", "h_n"),),
)


def _toy() -> onnx.ModelProto:
    two = numpy_helper.from_array(np.array(2.0, np.float32), "two")
    then_g = helper.make_graph(
        [helper.make_node("Mul", ["h0", "two"], ["then_out"])],
        "then",
        [],
        [helper.make_tensor_value_info("then_out", TensorProto.FLOAT, None)],
    )
    else_g = helper.make_graph(
        [helper.make_node("Identity", ["h0"], ["else_out"])],
        "else",
        [],
        [helper.make_tensor_value_info("else_out", TensorProto.FLOAT, None)],
    )
    nodes = [
        helper.make_node("Add", ["input", "h0"], ["output"]),  # [T,B,3] + [1,B,3]
        helper.make_node("Constant", [], ["cond"], value=numpy_helper.from_array(np.array(True))),
        helper.make_node("If", ["cond"], ["h_n"], then_branch=then_g, else_branch=else_g),
    ]
    graph = helper.make_graph(
        nodes,
        "toy",
        [_vi(t) for t in SPEC.inputs],
        [_vi(t) for t in SPEC.outputs],
        initializer=[two],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _vi(t: TensorSpec) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(t.name, TensorProto.FLOAT, list(t.dims))


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds), strict=True))


def test_perms_are_inverse_and_arrays_round_trip() -> None:
    rng = np.random.default_rng(0)
    for t in (*SPEC.inputs, *SPEC.outputs):
        p, q = outer_perm(t), inner_perm(t)
        assert [p[i] for i in q] == list(range(t.rank))
    arrays = {
        "input": rng.standard_normal((5, 2, 3)).astype(np.float32),
        "h0": rng.standard_normal((1, 2, 3)).astype(np.float32),
    }
    bf = to_batch_first(SPEC, arrays)
    assert bf["input"].shape == (2, 5, 3) and bf["h0"].shape == (2, 1, 3)
    np.testing.assert_array_equal(bf["input"][1, 4], arrays["input"][4, 1])
    back = from_batch_first(SPEC, bf)
    for k in arrays:
        np.testing.assert_array_equal(back[k], arrays[k])


def test_batch_first_graph_equals_the_original_and_keeps_names() -> None:
    m = _toy()
    check_graph(m)
    bf = batch_first_graph(m, SPEC)
    check_graph(bf)
    assert [i.name for i in bf.graph.input] == ["input", "h0"]
    assert [o.name for o in bf.graph.output] == ["output", "h_n"]
    rng = np.random.default_rng(1)
    feeds = {
        "input": rng.standard_normal((4, 3, 3)).astype(np.float32),
        "h0": rng.standard_normal((1, 3, 3)).astype(np.float32),
    }
    want = _run(m, feeds)
    got = from_batch_first(SPEC, _run(bf, to_batch_first(SPEC, feeds)))
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=0)
    dims = {vi.name: [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim] for vi in bf.graph.input}
    assert dims == {"input": ["batch", "seq", 3], "h0": ["batch", 1, 3]}
    meta = {p.key: p.value for p in bf.metadata_props}
    assert meta["seqdeploy.layout"] == "batch_first"


def test_stream_graph_resets_rows_by_select_even_on_nan() -> None:
    bf_spec = batch_first_spec(SPEC)
    st = stream_graph(batch_first_graph(_toy(), SPEC), bf_spec)
    check_graph(st)
    assert stream_spec(bf_spec).input_names == ("input", "START", "h0")
    assert [i.name for i in st.graph.input] == ["input", "START", "h0"]
    x = np.ones((3, 2, 3), np.float32)
    h = np.array([[[np.nan] * 3], [[1, 2, 3]], [[np.inf] * 3]], np.float32)
    out = _run(st, {"input": x, "START": np.array([[1], [0], [1]], np.int32), "h0": h})
    np.testing.assert_array_equal(out["h_n"][0], np.zeros((1, 3)))  # NaN memory + START: zeros, not NaN
    np.testing.assert_array_equal(out["h_n"][1], 2 * h[1])  # continuing row untouched
    np.testing.assert_array_equal(out["h_n"][2], np.zeros((1, 3)))
    np.testing.assert_array_equal(out["output"][0], np.ones((2, 3)))


def test_surgery_refuses_a_graph_that_is_not_the_spec() -> None:
    wrong = IOSpec(inputs=(TensorSpec("x", "float32", ("seq", "batch", 3)),), outputs=SPEC.outputs)
    with pytest.raises(InternalError, match="does not match the bundle's IOSpec"):
        batch_first_graph(_toy(), wrong)
    with pytest.raises(InternalError, match="needs a graph with state inputs"):
        stream_graph(_toy(), IOSpec(inputs=SPEC.inputs, outputs=SPEC.outputs))


def test_toposort_repairs_order_and_detects_cycles() -> None:
    m = _toy()
    nodes = list(m.graph.node)
    del m.graph.node[:]
    m.graph.node.extend(reversed(nodes))
    with pytest.raises(InternalError):
        check_graph(m)
    check_graph(toposort(m))
    loop = helper.make_model(
        helper.make_graph(
            [helper.make_node("Relu", ["b"], ["a"]), helper.make_node("Relu", ["a"], ["b"])],
            "cycle",
            [],
            [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1])],
        )
    )
    with pytest.raises(InternalError, match="cycle"):
        toposort(loop)


def test_axis_meanings() -> None:
    bf = batch_first_spec(SPEC)
    assert axis_meanings(bf.tensor("input"), head="none") == ["batch", "time", "feature"]
    assert axis_meanings(bf.tensor("h0"), head="none") == ["batch", "layer*direction", "hidden"]
    assert axis_meanings(TensorSpec("output", "float32", ("batch", 5)), head="classify") == ["batch", "class"]
    assert axis_meanings(TensorSpec("START", "int32", ("batch", 1)), head="none") == ["batch", "start_flag"]
