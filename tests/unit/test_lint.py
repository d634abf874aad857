"""Graph rules of the lint layer: seqdeploy/lint/rules.py ``lint_model`` on hand-made graphs (target ort)."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from seqdeploy.config_io import config_from_dict
from seqdeploy.lint import RECURRENT_OPS, lint_model
from seqdeploy.spec import IOSpec, TensorSpec, spec_from_config
from tests.conftest import tiny_config, tiny_raw

_DTYPES = {"float32": TensorProto.FLOAT, "int64": TensorProto.INT64, "int32": TensorProto.INT32}

LSTM = spec_from_config(tiny_config())  # input(seq,batch,5) h0 c0 -> output(seq,batch,4) h_n c_n
GRU = spec_from_config(tiny_config(cell="gru"))
LSTM_LEN = spec_from_config(tiny_config(export={"lengths": True}))


def _vi(t: TensorSpec, *, dims=None, elem=None) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(t.name, elem or _DTYPES[t.dtype], list(dims if dims is not None else t.dims))


def _weights(cell: str, hidden: int = 4, feat: int = 5) -> list[onnx.TensorProto]:
    gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[cell]
    rng = np.random.default_rng(0)
    return [
        numpy_helper.from_array(rng.standard_normal((1, gates * hidden, feat)).astype(np.float32), "W"),
        numpy_helper.from_array(rng.standard_normal((1, gates * hidden, hidden)).astype(np.float32), "R"),
        numpy_helper.from_array(np.zeros((1, 2 * gates * hidden), np.float32), "B"),
    ]


def _rnn_node(spec: IOSpec, cell: str = "LSTM", *, seq_lens: str | None = None, **attrs: Any) -> onnx.NodeProto:
    states = [n for n in spec.input_names if n.startswith(("h0", "c0"))]
    # ONNX wants int32 sequence_lens; _model casts the int64 'lengths' input to 'lengths32'
    ins = ["input", "W", "R", "B", seq_lens if seq_lens is not None else ("lengths32" if spec.has("lengths") else "")]
    ins += states
    outs = ["Y", *[n for n in spec.output_names if n.startswith(("h_n", "c_n"))]]
    if cell == "GRU":
        attrs.setdefault("linear_before_reset", 1)
    return helper.make_node(cell, ins, outs, name=f"{cell.lower()}0", hidden_size=4, **attrs)


def _model(
    spec: IOSpec,
    nodes: list[onnx.NodeProto] | None = None,
    *,
    inputs: list[onnx.ValueInfoProto] | None = None,
    outputs: list[onnx.ValueInfoProto] | None = None,
    cell: str = "LSTM",
    extra_init: list[onnx.TensorProto] | None = None,
    **rnn_attrs: Any,
) -> onnx.ModelProto:
    """A graph whose I/O follow ``spec``: [RNN op] -> Squeeze(axis 1) -> output."""
    if nodes is None:
        axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
        nodes = [
            _rnn_node(spec, cell, **rnn_attrs),
            helper.make_node("Squeeze", ["Y", "axes"], ["output"], name="squeeze"),
        ]
        if spec.has("lengths"):
            nodes.insert(0, helper.make_node("Cast", ["lengths"], ["lengths32"], to=TensorProto.INT32))
        inits = [*_weights(cell), axes]
    else:
        inits = []
    inits += extra_init or []
    graph = helper.make_graph(
        nodes,
        "g",
        inputs if inputs is not None else [_vi(t) for t in spec.inputs],
        outputs if outputs is not None else [_vi(t) for t in spec.outputs],
        initializer=inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _codes(model: onnx.ModelProto, spec: IOSpec) -> list[str]:
    return [f.code for f in lint_model(model, spec)]


def _only(model: onnx.ModelProto, spec: IOSpec, code: str, severity: str = "error") -> str:
    found = lint_model(model, spec, graph="model.onnx")
    assert [f.code for f in found] == [code], [f.to_dict() for f in found]
    assert found[0].severity == severity
    assert found[0].file == "model.onnx"
    return found[0].message


# -------------------------------------------------------------------------------------------- clean graphs


@pytest.mark.parametrize(
    ("spec", "cell"),
    [(LSTM, "LSTM"), (GRU, "GRU"), (LSTM_LEN, "LSTM"), (spec_from_config(tiny_config(cell="rnn_tanh")), "RNN")],
    ids=["lstm", "gru", "lstm-lengths", "rnn"],
)
def test_clean_graph_has_no_findings(spec: IOSpec, cell: str):
    model = _model(spec, cell=cell)
    onnx.checker.check_model(model, full_check=True)  # the hand-made graph is itself valid ONNX
    assert lint_model(model, spec) == []


def test_initializers_listed_as_inputs_are_ignored():
    spec = LSTM
    weights = _weights("LSTM")
    inputs = [_vi(t) for t in spec.inputs] + [
        helper.make_tensor_value_info(w.name, TensorProto.FLOAT, list(w.dims)) for w in weights
    ]
    assert lint_model(_model(spec, inputs=inputs), spec) == []


# ------------------------------------------------------------------------------------------------- rules


def test_io_names_wrong_input_order():
    spec = LSTM
    inputs = [_vi(spec.tensor(n)) for n in ("input", "c0", "h0")]
    msg = _only(_model(spec, inputs=inputs), spec, "io-names")
    assert msg == "graph inputs are ['input', 'c0', 'h0'], expected ['input', 'h0', 'c0']"


def test_io_names_missing_output():
    spec = LSTM
    outputs = [_vi(spec.tensor(n)) for n in ("output", "h_n")]
    msg = _only(_model(spec, outputs=outputs), spec, "io-names")
    assert "graph outputs are ['output', 'h_n'], expected ['output', 'h_n', 'c_n']" in msg


def test_io_dtype():
    spec = LSTM
    inputs = [_vi(spec.tensor("input"), elem=TensorProto.DOUBLE), _vi(spec.tensor("h0")), _vi(spec.tensor("c0"))]
    msg = _only(_model(spec, inputs=inputs), spec, "io-dtype")
    assert msg == "'input' is elem_type 11 in the graph, expected float32"


def test_io_dtype_int32_ids():
    spec = spec_from_config(tiny_config(embedding={"vocab_size": 9, "dim": 5}))
    inputs = [_vi(spec.tensor("input"), elem=TensorProto.INT32), _vi(spec.tensor("h0")), _vi(spec.tensor("c0"))]
    model = _model(spec, [], inputs=inputs)  # no nodes: only the I/O matters here
    found = lint_model(model, spec)
    assert [f.code for f in found] == ["io-dtype", "no-recurrent-op"]
    assert found[0].message == "'input' is int32 in the graph, expected int64"


def test_static_dim_on_state_batch_axis():
    spec = LSTM
    inputs = [_vi(spec.tensor("input")), _vi(spec.tensor("h0"), dims=[1, 2, 4]), _vi(spec.tensor("c0"))]
    msg = _only(_model(spec, inputs=inputs), spec, "static-dim")
    assert msg.startswith("'h0' axis 1 ('batch') is fixed to 2 in the graph; it must be dynamic")


def test_static_dim_on_seq_axis_of_output():
    spec = LSTM
    outputs = [_vi(spec.tensor("output"), dims=[5, "batch", 4]), _vi(spec.tensor("h_n")), _vi(spec.tensor("c_n"))]
    msg = _only(_model(spec, outputs=outputs), spec, "static-dim")
    assert msg.startswith("'output' axis 0 ('seq') is fixed to 5")


def test_dim_mismatch_static_value():
    spec = LSTM
    inputs = [_vi(spec.tensor("input"), dims=["seq", "batch", 6]), _vi(spec.tensor("h0")), _vi(spec.tensor("c0"))]
    msg = _only(_model(spec, inputs=inputs), spec, "dim-mismatch")
    assert msg == "'input' axis 2 is 6 in the graph, expected 5"


def test_dim_mismatch_rank():
    spec = LSTM
    outputs = [_vi(spec.tensor("output")), _vi(spec.tensor("h_n"), dims=["batch", 4]), _vi(spec.tensor("c_n"))]
    msg = _only(_model(spec, outputs=outputs), spec, "dim-mismatch")
    assert msg == "'h_n' has rank 2 in the graph, expected 3"


def test_symbolic_name_other_than_spec_is_accepted():
    # a dynamic dim with another symbolic name (e.g. exporter-generated) is still dynamic
    spec = LSTM
    inputs = [_vi(spec.tensor("input"), dims=["s", "b", 5]), _vi(spec.tensor("h0")), _vi(spec.tensor("c0"))]
    assert lint_model(_model(spec, inputs=inputs), spec) == []


def test_gru_linear_before_reset():
    msg = _only(_model(GRU, cell="GRU", linear_before_reset=0), GRU, "gru-linear-before-reset")
    assert msg.startswith("GRU node 'gru0' has linear_before_reset=0; PyTorch GRUs need 1")


def test_gru_linear_before_reset_missing_attribute():
    spec = GRU
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    node = helper.make_node("GRU", ["input", "W", "R", "B", "", "h0"], ["Y", "h_n"], name="g", hidden_size=4)
    nodes = [node, helper.make_node("Squeeze", ["Y", "axes"], ["output"])]
    model = _model(spec, nodes, extra_init=[*_weights("GRU"), axes])
    msg = _only(model, spec, "gru-linear-before-reset")
    assert "linear_before_reset=0" in msg


def test_training_op_dropout():
    spec = LSTM
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    nodes = [
        helper.make_node("Dropout", ["input"], ["x_drop"], name="drop"),
        _rnn_node(spec),
        helper.make_node("Squeeze", ["Y", "axes"], ["output"]),
    ]
    nodes[1].input[0] = "x_drop"
    model = _model(spec, nodes, extra_init=[*_weights("LSTM"), axes])
    msg = _only(model, spec, "training-op")
    assert msg == "Dropout node 'drop': Dropout left in the graph; export the model in eval() mode"


def test_training_op_batchnorm_training_mode():
    spec = LSTM
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    params = [numpy_helper.from_array(np.ones(4, np.float32), n) for n in ("sc", "bi", "mu", "var")]
    nodes = [
        _rnn_node(spec),
        helper.make_node("Squeeze", ["Y", "axes"], ["y"]),
        helper.make_node("BatchNormalization", ["y", "sc", "bi", "mu", "var"], ["output"], name="bn", training_mode=1),
    ]
    model = _model(spec, nodes, extra_init=[*_weights("LSTM"), axes, *params])
    assert "is in training mode" in _only(model, spec, "training-op")


def test_rnn_layout():
    msg = _only(_model(LSTM, layout=1), LSTM, "rnn-layout")
    assert msg.startswith("LSTM node 'lstm0' has layout=1")


def test_rnn_layout_gru():
    assert _codes(_model(GRU, cell="GRU", layout=1), GRU) == ["rnn-layout"]


def test_lstm_input_forget():
    msg = _only(_model(LSTM, input_forget=1), LSTM, "lstm-input-forget")
    assert msg == "LSTM node 'lstm0' has input_forget=1, which is not PyTorch's LSTM"


def test_sequence_lens_empty_slot():
    model = _model(LSTM_LEN, nodes=None, seq_lens="")  # 'lengths' is a graph input but the LSTM ignores it
    msg = _only(model, LSTM_LEN, "sequence-lens")
    assert msg.startswith("LSTM node 'lstm0' has no sequence_lens input although the graph takes 'lengths'")


def test_sequence_lens_no_fifth_input():
    spec = LSTM_LEN
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    node = helper.make_node("LSTM", ["input", "W", "R", "B"], ["Y", "h_n", "c_n"], name="short", hidden_size=4)
    nodes = [node, helper.make_node("Squeeze", ["Y", "axes"], ["output"])]
    model = _model(spec, nodes, extra_init=[*_weights("LSTM"), axes])
    found = lint_model(model, spec)
    assert [f.code for f in found] == ["sequence-lens"]
    assert "'short'" in found[0].message


def test_sequence_lens_not_required_without_lengths():
    assert lint_model(_model(LSTM, seq_lens=""), LSTM) == []


def test_no_recurrent_op():
    spec = LSTM
    w = numpy_helper.from_array(np.ones((5, 4), np.float32), "w")
    nodes = [
        helper.make_node("MatMul", ["input", "w"], ["output"]),
        helper.make_node("Identity", ["h0"], ["h_n"]),
        helper.make_node("Identity", ["c0"], ["c_n"]),
    ]
    found = lint_model(_model(spec, nodes, extra_init=[w]), spec)
    assert [f.code for f in found] == ["no-recurrent-op"]
    assert found[0].severity == "error"
    assert "'seq' is fixed" in found[0].message


def test_no_recurrent_op_not_required_for_step_graph():
    spec = spec_from_config(tiny_config(), "step")
    w = numpy_helper.from_array(np.ones((5, 4), np.float32), "w")
    nodes = [
        helper.make_node("MatMul", ["input", "w"], ["output"]),
        helper.make_node("Identity", ["h0"], ["h_n"]),
        helper.make_node("Identity", ["c0"], ["c_n"]),
    ]
    assert lint_model(_model(spec, nodes, extra_init=[w]), spec) == []


def _loop_model(spec: IOSpec, body_nodes: list[onnx.NodeProto]) -> onnx.ModelProto:
    body = helper.make_graph(
        body_nodes,
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, [])],
    )
    trip = numpy_helper.from_array(np.array(1, np.int64), "trip")
    nodes = [
        helper.make_node("Loop", ["trip", ""], [], name="loop", body=body),
        helper.make_node("Identity", ["input"], ["output"]),
        helper.make_node("Identity", ["h0"], ["h_n"]),
        helper.make_node("Identity", ["c0"], ["c_n"]),
    ]
    return _model(spec, nodes, extra_init=[trip])


def test_loop_op_warning_and_recurrent_op_in_subgraph():
    spec = LSTM
    inner = _rnn_node(spec)
    body_nodes = [inner, helper.make_node("Identity", ["cond_in"], ["cond_out"])]
    found = lint_model(_loop_model(spec, body_nodes), spec)
    # the LSTM inside the Loop body counts as a native recurrent op: only the warning remains
    assert [(f.severity, f.code) for f in found] == [("warning", "loop-op")]
    assert found[0].message.startswith("Loop node 'loop': Loop/Scan graphs")


def test_rules_apply_inside_subgraphs():
    spec = GRU
    inner = _rnn_node(spec, "GRU", linear_before_reset=0)
    body_nodes = [inner, helper.make_node("Identity", ["cond_in"], ["cond_out"])]
    found = lint_model(_loop_model(LSTM, body_nodes), LSTM)
    assert sorted(f.code for f in found) == ["gru-linear-before-reset", "loop-op"]


def test_scan_is_flagged_too():
    spec = LSTM
    body = helper.make_graph(
        [helper.make_node("Identity", ["s"], ["s_out"])],
        "body",
        [helper.make_tensor_value_info("s", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("s_out", TensorProto.FLOAT, [1])],
    )
    nodes = [
        _rnn_node(spec),
        helper.make_node("Scan", ["h0"], ["scanned"], name="scan", body=body, num_scan_inputs=0),
        helper.make_node("Squeeze", ["Y", "axes"], ["output"]),
    ]
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    codes = _codes(_model(spec, nodes, extra_init=[*_weights("LSTM"), axes]), spec)
    assert codes == ["loop-op"]


def test_several_findings_reported_together():
    found = lint_model(_model(LSTM, layout=1, input_forget=1), LSTM)
    assert [f.code for f in found] == ["rnn-layout", "lstm-input-forget"]
    assert all(f.to_dict()["severity"] == "error" for f in found)


def test_recurrent_ops_constant():
    assert {"LSTM", "GRU", "RNN", "DynamicQuantizeLSTM"} == RECURRENT_OPS


# ------------------------------------------------------------------------------------------ real exports


@pytest.mark.parametrize(
    "overrides",
    [{"cell": "gru"}, {"cell": "lstm", "batch_first": True, "export": {"lengths": True}}],
    ids=["gru", "lstm-bf-lengths"],
)
def test_real_export_lints_clean(export_tiny, overrides):
    path = export_tiny(**overrides)
    model = onnx.load(str(path / "model.onnx"))
    spec = spec_from_config(config_from_dict(tiny_raw(**overrides)))
    assert lint_model(model, spec) == []
    assert {n.op_type for n in model.graph.node} & RECURRENT_OPS
