"""``seqdeploy optimize --fp16``: the fp16 file really is fp16, keeps the I/O contract, is proven before it
is recorded, reports error vs seq, and refuses (naming the tensor) what does not fit fp16.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx import TensorProto, numpy_helper

from seqdeploy.backends import make_runner
from seqdeploy.cli import cli
from seqdeploy.errors import ExportError, Interrupted, ParityError
from seqdeploy.feeds import make_feeds
from seqdeploy.fp16 import convert_to_fp16
from seqdeploy.manifest import Bundle
from seqdeploy.optimize import FP16_FILES, make_fp16
from seqdeploy.parity.run import VerifyOptions, verify
from tests.integration._onnx_surgery import INITIAL_C, INITIAL_H, edit_onnx, recurrent_node

LSTM_LEN = {"export": {"lengths": True}}
STEP = {"cell": "gru", "export": {"step": True}}


def float_types(model: onnx.ModelProto) -> set[int]:
    return {i.data_type for i in model.graph.initializer if i.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16)}


def snapshot(d: Path) -> tuple[str, list[str]]:
    return (d / "manifest.json").read_text(), sorted(p.name for p in d.iterdir())


def test_fp16_variant_is_fp16_inside_fp32_outside_and_recorded(export_tiny, copy_export):
    d = copy_export(export_tiny(**LSTM_LEN))
    res = CliRunner().invoke(cli, ["optimize", str(d), "--fp16"])
    assert res.exit_code == 0, res.output
    assert "fp16 vs fp32 torch, max|Δ| by sequence length" in res.output

    fp32, fp16 = onnx.load(str(d / "model.onnx")), onnx.load(str(d / "model.fp16.onnx"))
    assert float_types(fp32) == {TensorProto.FLOAT}
    assert float_types(fp16) == {TensorProto.FLOAT16}  # every float initializer is FLOAT16
    lstm = recurrent_node(fp16)
    assert {i.name: i.data_type for i in fp16.graph.initializer}[lstm.input[1]] == TensorProto.FLOAT16
    io = lambda m: [(v.name, v.type.tensor_type.elem_type) for v in (*m.graph.input, *m.graph.output)]  # noqa: E731
    assert io(fp16) == io(fp32)  # ids int64, lengths int64, states and outputs fp32

    manifest = json.loads((d / "manifest.json").read_text())
    entry = manifest["variants"]["fp16"]
    assert entry["graphs"] == {"sequence": "model.fp16.onnx"} and entry["precision"] == "fp16"
    assert manifest["files"]["model.fp16.onnx"]["bytes"] == (d / "model.fp16.onnx").stat().st_size
    assert entry["tolerance"] == {"atol": 1e-2, "rtol": 1e-2}
    rows = entry["error_vs_seq"]
    assert [r["seq"] for r in rows] == [1, 24, 64]  # seq 1, the config's max (24) and 64
    for r in rows:
        assert r["batches"] == [1, 3]
        assert set(r["max_abs"]) == {"output", "h_n", "c_n"}
        assert all(0 < v < 1e-2 for v in r["max_abs"].values()), r  # fp16 really rounds, within tolerance
    assert set(entry["verified"]["modes"]) >= {"full", "chunked", "batch", "padding", "identities"}
    assert manifest["lint"]["trt10"]["passed"] is True

    res = CliRunner().invoke(cli, ["verify", str(d), "--backends", "ort-cpu-fp16", "--batch", "2", "--seq", "1,9"])
    assert res.exit_code == 0, res.output
    assert "(atol=0.01, rtol=0.01)" in res.output
    assert "fp16 vs fp32 torch, max|Δ| by sequence length" in res.output


def test_variant_agrees_with_an_independent_run(export_tiny, copy_export):
    """The recorded numbers are real: rerun the fp16 file in a bare session against torch."""
    d = copy_export(export_tiny(cell="rnn_tanh", bidirectional=True))
    make_fp16(d)
    b = Bundle.load(d)
    spec = b.specs["sequence"]
    sess = ort.InferenceSession(str(d / "model.fp16.onnx"), providers=["CPUExecutionProvider"])
    feeds = make_feeds(spec, 4, 33, seed=7)
    got = dict(zip(spec.output_names, sess.run(list(spec.output_names), feeds), strict=True))
    with make_runner("torch", b) as ref:
        want = ref.infer(feeds)
    for n in spec.output_names:
        err = float(np.abs(got[n] - want[n]).max())
        assert 1e-6 < err < 1e-2, (n, err)


def test_step_graph_gets_an_fp16_twin_proven_in_step_mode(export_tiny, copy_export):
    d = copy_export(export_tiny(**STEP))
    result = make_fp16(d)
    assert result.entry["graphs"] == FP16_FILES
    assert float_types(onnx.load(str(d / "step.fp16.onnx"))) == {TensorProto.FLOAT16}
    assert "step" in result.entry["verified"]["modes"]
    report = verify(d, VerifyOptions(backends=("ort-cpu-fp16",), batches=(2,), seqs=(5,), modes=("step",)))
    assert report.passed and {c.mode for c in report.cases} == {"step"}


def test_weight_beyond_fp16_range_is_refused_naming_it(export_tiny, copy_export):
    d = copy_export(export_tiny())
    with edit_onnx(d / "model.onnx") as model:
        init = next(i for i in model.graph.initializer if i.name == recurrent_node(model).input[2])
        r = numpy_helper.to_array(init).copy()
        r[0, 1, 2] = -70000.0
        init.CopyFrom(numpy_helper.from_array(r, init.name))
        name = init.name
    before = snapshot(d)
    res = CliRunner().invoke(cli, ["optimize", str(d), "--fp16"])
    assert res.exit_code == 1
    assert f"weights exceed the fp16 range (65504): '{name}' (|x| = 70000)" in res.output
    assert snapshot(d) == before  # nothing written, nothing recorded


def test_activation_beyond_fp16_range_is_refused_naming_the_tensor(export_tiny, copy_export):
    # Weights stay inside the fp16 range, but the head's output does not: every head weight and bias is
    # 60000, so output = 60000 * (1 + sum of the hidden units) leaves fp16 wherever that sum exceeds 0.1.
    d = copy_export(export_tiny(head={"task": "tag", "num_classes": 3}))
    with edit_onnx(d / "model.onnx") as model:
        head = {n.op_type: n for n in model.graph.node if n.op_type in ("MatMul", "Add", "Gemm")}
        names = {x for n in head.values() for x in n.input}
        for init in model.graph.initializer:
            if init.name in names:
                arr = numpy_helper.to_array(init)
                init.CopyFrom(numpy_helper.from_array(np.full_like(arr, 60000.0), init.name))
    before = snapshot(d)
    with pytest.raises(
        ExportError, match=r"activations of the fp32 graph in the verify run exceed the fp16 range"
    ) as e:
        make_fp16(d)
    assert "'output' (|x| = " in str(e.value)
    assert snapshot(d) == before


def test_failing_variant_is_never_recorded(export_tiny, copy_export, monkeypatch):
    import seqdeploy.fp16 as fp16

    real = fp16.convert_to_fp16

    def broken(model):  # a converter bug that scrambles one recurrent weight
        m = real(model)
        init = next(i for i in m.graph.initializer if i.name == recurrent_node(m).input[1])
        w = numpy_helper.to_array(init).copy()
        w.reshape(-1)[:5] += np.float16(0.5)
        init.CopyFrom(numpy_helper.from_array(w, init.name))
        return m

    monkeypatch.setattr(fp16, "convert_to_fp16", broken)
    d = copy_export(export_tiny())
    before = snapshot(d)
    with pytest.raises(ParityError, match="fp16 variant failed its tolerance") as e:
        make_fp16(d)
    assert e.value.report is not None and not e.value.report.passed
    assert snapshot(d) == before


def test_interrupted_proof_records_nothing(export_tiny, copy_export, monkeypatch):
    import seqdeploy.optimize as optimize

    real = optimize.verify

    def interrupted(*args, **kwargs):
        report = real(*args, **kwargs)
        report.partial = True
        return report

    monkeypatch.setattr(optimize, "verify", interrupted)
    d = copy_export(export_tiny())
    before = snapshot(d)
    with pytest.raises(Interrupted):
        make_fp16(d)
    assert snapshot(d) == before


@pytest.mark.parametrize("slot", [INITIAL_H, INITIAL_C])
def test_missing_initial_states_become_explicit_fp16_zeros(export_tiny, slot):
    src = export_tiny(bidirectional=True)
    model = onnx.load(str(src / "model.onnx"))
    recurrent_node(model).input[slot] = ""  # a graph whose LSTM starts from implicit zeros
    m16 = convert_to_fp16(model)
    lstm = recurrent_node(m16)
    assert lstm.input[slot].endswith("__zero_state_zeros")
    spec = Bundle.load(src).specs["sequence"]
    feeds = make_feeds(spec, 3, 7, seed=1)
    outs = {}
    for label, m in (("fp32", model), ("fp16", m16)):
        sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        outs[label] = sess.run(None, feeds)
    for a, b in zip(outs["fp32"], outs["fp16"], strict=True):
        assert np.abs(a - b).max() < 1e-2


def test_converter_refuses_what_it_cannot_convert():
    from onnx import helper

    g = helper.make_graph(
        [helper.make_node("RandomNormal", [], ["y"], name="rand", shape=[2])],
        "g",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    with pytest.raises(ExportError, match="RandomNormal node 'rand' is not supported"):
        convert_to_fp16(helper.make_model(g))


MAX_POOL_LEN = {
    "cell": "gru",
    "embedding": {"vocab_size": 50, "dim": 5, "padding_idx": 0},
    "head": {"task": "classify", "num_classes": 3, "pooling": "max"},
    "export": {"lengths": True},
}


def test_max_pooling_with_lengths_gets_an_fp16_variant(export_tiny, copy_export, tmp_path):
    """Max pooling masks padded steps with -inf (exact in fp16): not a range violation anywhere."""
    from seqdeploy.lint import lint_path

    d = copy_export(export_tiny(**MAX_POOL_LEN))
    fp32 = onnx.load(str(d / "model.onnx"))
    consts = [numpy_helper.to_array(a.t) for n in fp32.graph.node if n.op_type == "Constant" for a in n.attribute]
    assert any(np.isneginf(c).any() for c in consts if c.dtype == np.float32)  # the mask is really there
    assert lint_path(d, "trt10").findings == []  # was: "weight ... reaches |x| = inf" (a warning)

    res = CliRunner().invoke(cli, ["optimize", str(d), "--fp16"])
    assert res.exit_code == 0, res.output  # was: exit 1, "'/Constant_6_output_0' (|x| = inf)"
    manifest = json.loads((d / "manifest.json").read_text())
    entry = manifest["variants"]["fp16"]
    assert np.isfinite(entry["weights_max_abs"]) and np.isfinite(entry["activations_max_abs"])
    assert "padding" in entry["verified"]["modes"]  # padded rows: the masked steps are really exercised
    assert manifest["lint"]["trt10"] == {"target": "trt10", "passed": True, "findings": []}
    for target in ("ort", "trt10", "trt11"):
        assert lint_path(d, target).findings == [], target
        assert lint_path(d / "model.fp16.onnx", target).findings == [], target

    # Without its fp32 source the lint cannot tell a mask from an overflow: a warning, not a verdict.
    loose = tmp_path / "loose.fp16.onnx"
    loose.write_bytes((d / "model.fp16.onnx").read_bytes())
    report = lint_path(loose, "trt10")
    assert report.passed and [(f.code, f.severity) for f in report.findings] == [("fp16-range", "warning")]
    assert "all ±inf" in report.findings[0].message and report.findings[0].node  # the Constant node's name


def test_a_nan_or_an_overflowing_mask_is_still_refused():
    from onnx import helper

    from seqdeploy.fp16 import range_violations, weight_peaks

    def model(value: float) -> onnx.ModelProto:
        c = helper.make_node(
            "Constant", [], ["c"], name="mask", value=helper.make_tensor("v", TensorProto.FLOAT, [2], [value, 1.0])
        )
        add = helper.make_node("Add", ["x", "c"], ["y"], name="add")
        g = helper.make_graph(
            [c, add],
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        )
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])

    assert range_violations(weight_peaks(model(-np.inf))) == []
    convert_to_fp16(model(-np.inf))  # fine: -inf is exact in fp16
    for bad, shown in ((np.nan, "'c' (holds NaN)"), (70000.0, "'c' (|x| = 70000)")):
        with pytest.raises(ExportError, match="weights exceed the fp16 range") as e:
            convert_to_fp16(model(bad))
        assert shown in str(e.value)
    # Peaks are finite maxima (NaN kept): NaN first, then the largest finite overflow; small ones pass.
    peaks = {"ok": 1.0, "big": 7e4, "nan": float("nan")}
    assert [n for n, _ in range_violations(peaks)] == ["nan", "big"]


def test_a_graph_with_ops_that_take_no_float16_is_refused_naming_the_node():
    """A float Range has no float16 kernel in ONNX's type constraints: exit 1 naming the node, not exit 70."""
    from onnx import helper

    nodes = [
        helper.make_node("Shape", ["x"], ["s"], name="shape"),
        helper.make_node("Cast", ["s"], ["sf"], name="to_float", to=TensorProto.FLOAT),
        helper.make_node("Squeeze", ["sf"], ["n"], name="squeeze"),
        helper.make_node("Range", ["zero", "n", "one"], ["r"], name="float_range"),
        helper.make_node("Add", ["x", "r"], ["y"], name="add"),
    ]
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])],
        [
            numpy_helper.from_array(np.array(0, np.float32), "zero"),
            numpy_helper.from_array(np.array(1, np.float32), "one"),
        ],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(m, full_check=True)
    with pytest.raises(
        ExportError, match=r"Range node 'float_range': start 'zero', limit 'n', delta 'one', output 'r'"
    ):
        convert_to_fp16(m)
    assert ExportError.exit_code == 1
