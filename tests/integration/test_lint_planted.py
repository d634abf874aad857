"""``seqdeploy lint``: every rule caught on an exported graph edited to break it; clean exports pass.

Each planted bug is one edit of a real export (``_onnx_surgery``), so the tests prove the rules fire on
the graphs seqdeploy writes, not only on hand-made ones (tests/unit/test_lint.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from seqdeploy.cli import cli
from seqdeploy.cli.lint import lint_cmd
from seqdeploy.lint import DEFAULT_TARGET, RULES, TARGETS, lint_path
from seqdeploy.lint.rules import TENSORRT_RULES
from tests.integration._onnx_surgery import INITIAL_C, INITIAL_H, SEQUENCE_LENS, drop_input, edit_onnx, recurrent_node

LSTM_LEN = {"export": {"lengths": True}}
BI_LSTM = {"bidirectional": True}
GRU_BI = {"cell": "gru", "bidirectional": True}


def lint(path: Path, target: str = "trt10", *extra: str) -> tuple[int, dict[str, Any], str]:
    out = path.parent / f"lint-{target}.json" if path.is_file() else path.parent / f"{path.name}-lint-{target}.json"
    res = CliRunner().invoke(cli, ["lint", str(path), "--target", target, "--json", str(out), *extra])
    report = json.loads(out.read_text()) if out.exists() else {}
    return res.exit_code, report, res.output


def codes(report: dict[str, Any], severity: str | None = "error") -> list[str]:
    return [f["code"] for f in report["findings"] if severity is None or f["severity"] == severity]


def set_attr(path: Path, name: str, value: Any, op: str | None = None) -> str:
    """Set attribute ``name`` on the first recurrent node (or first node of type ``op``); return its name."""
    with edit_onnx(path) as model:
        node = next(n for n in model.graph.node if n.op_type == op) if op else recurrent_node(model)
        keep = [a for a in node.attribute if a.name != name]
        del node.attribute[:]
        node.attribute.extend([*keep, helper.make_attribute(name, value)])
        return str(node.name)


# ------------------------------------------------------------------------------------------------ schema


def test_cli_targets_match_the_library():
    target = next(p for p in lint_cmd.params if p.name == "target")
    assert list(target.type.choices) == list(TARGETS)  # type: ignore[attr-defined]
    assert target.default == DEFAULT_TARGET
    assert set(TENSORRT_RULES) == {
        "rnn-activations",
        "opset-range",
        "custom-domain-op",
        "loop-dynamic-scan",
        "rnn-initial-state",
    }
    assert all(set(sev) <= set(TARGETS) for sev in RULES.values())


@pytest.mark.parametrize("overrides", [LSTM_LEN, BI_LSTM, GRU_BI, {"cell": "rnn_tanh", "batch_first": True}])
@pytest.mark.parametrize("target", ["ort", "trt10", "trt11"])
def test_clean_exports_pass_every_target_with_no_finding(export_tiny, overrides, target):
    code, report, out = lint(export_tiny(**overrides), target)
    assert code == 0, out
    assert report == {"target": target, "passed": True, "findings": []}
    assert out.strip().endswith("0 error(s), 0 warning(s)")


def test_export_records_the_trt10_lint_in_the_manifest(export_tiny):
    manifest = json.loads((export_tiny(**LSTM_LEN) / "manifest.json").read_text())
    assert manifest["lint"] == {"trt10": {"target": "trt10", "passed": True, "findings": []}}


def test_json_schema_of_a_finding(export_tiny, copy_export):
    d = copy_export(export_tiny())
    node = set_attr(d / "model.onnx", "layout", 1)
    code, report, out = lint(d, "trt11")
    assert code == 1
    assert set(report) == {"target", "passed", "findings"}
    assert report["target"] == "trt11" and report["passed"] is False
    (f,) = report["findings"]
    assert set(f) == {"code", "severity", "graph", "node", "message"}
    assert (f["code"], f["severity"], f["graph"], f["node"]) == ("rnn-layout", "error", "model.onnx", node)
    assert f"ERROR | rnn-layout | model.onnx | {node} |" in out


# ---------------------------------------------------------------------------------------- planted bugs


def test_rnn_layout(export_tiny, copy_export):
    d = copy_export(export_tiny(cell="gru"))
    set_attr(d / "model.onnx", "layout", 1)
    for target in ("ort", "trt10", "trt11"):
        assert codes(lint(d, target)[1]) == ["rnn-layout"], target


def test_lstm_input_forget(export_tiny, copy_export):
    d = copy_export(export_tiny())
    set_attr(d / "model.onnx", "input_forget", 1)
    assert codes(lint(d, "trt10")[1]) == ["lstm-input-forget"]


def test_gru_linear_before_reset(export_tiny, copy_export):
    d = copy_export(export_tiny(cell="gru"))
    set_attr(d / "model.onnx", "linear_before_reset", 0)
    code, report, _ = lint(d, "trt10")
    assert code == 1 and codes(report) == ["gru-linear-before-reset"]
    assert "PyTorch GRUs need 1" in report["findings"][0]["message"]


def test_bidirectional_activations_differ_fail_tensorrt_only(export_tiny, copy_export):
    d = copy_export(export_tiny(**BI_LSTM))
    node = set_attr(d / "model.onnx", "activations", ["Sigmoid", "Tanh", "Tanh", "Sigmoid", "Relu", "Tanh"])
    for target in ("trt10", "trt11"):
        code, report, _ = lint(d, target)
        assert code == 1 and codes(report) == ["rnn-activations"], target
        assert report["findings"][0]["node"] == node
        assert (
            "forward ['sigmoid', 'tanh', 'tanh'] vs reverse ['sigmoid', 'relu', 'tanh']"
            in (report["findings"][0]["message"])
        )
    # ONNX Runtime runs different activations per direction: not an ort error.
    assert lint(d, "ort")[0] == 0


def test_bidirectional_alpha_differs(export_tiny, copy_export):
    d = copy_export(export_tiny(**GRU_BI))
    set_attr(d / "model.onnx", "activations", ["Sigmoid", "Tanh", "Sigmoid", "Tanh"])
    assert lint(d, "trt10")[0] == 0  # equal activations both ways: fine
    set_attr(d / "model.onnx", "activation_alpha", [0.5, 0.25])
    code, report, _ = lint(d, "trt10")
    assert code == 1 and codes(report) == ["rnn-activations"]
    assert "activation_alpha forward [0.5] vs reverse [0.25]" in report["findings"][0]["message"]


def test_opset_outside_the_parser_table(export_tiny, copy_export):
    d = copy_export(export_tiny())
    with edit_onnx(d / "model.onnx") as model:
        next(o for o in model.opset_import if o.domain in ("", "ai.onnx")).version = 21
    code, report, _ = lint(d, "trt10")
    assert code == 1 and codes(report) == ["opset-range"]
    assert "opset 21" in report["findings"][0]["message"] and "9-20" in report["findings"][0]["message"]
    assert lint(d, "trt11")[0] == 0  # the 11.x table reaches opset 24
    assert lint(d, "ort")[0] == 0


def test_com_microsoft_ops_fail_a_single_file_but_only_warn_as_the_cpu_only_int8_variant(export_tiny, copy_export):
    from seqdeploy.optimize import quantize_int8

    d = copy_export(export_tiny())
    quantize_int8(d)
    code, report, _ = lint(d / "model.int8.onnx", "trt10")
    assert code == 1 and set(codes(report)) == {"custom-domain-op"}
    msg = report["findings"][0]["message"]
    assert "domain 'com.microsoft'" in msg and "CPU-only path" in msg
    code, report, _ = lint(d, "trt10")
    assert code == 0, report
    assert codes(report) == []
    warned = [f for f in report["findings"] if f["code"] == "custom-domain-op"]
    assert warned and all(f["graph"] == "model.int8.onnx" and f["severity"] == "warning" for f in warned)
    assert "CPU-only variant that TensorRT never builds" in warned[0]["message"]
    manifest = json.loads((d / "manifest.json").read_text())
    assert manifest["lint"]["trt10"]["passed"] is True  # optimize re-lints the bundle with its variant
    assert {f["code"] for f in manifest["lint"]["trt10"]["findings"]} == {"custom-domain-op"}


def _add_loop(path: Path, *, trip: str, early_exit: bool = False) -> None:
    """A side Loop over the input with one scan output (not wired to any graph output).

    ``trip``: ``constant`` (4), ``shape`` (seq, read from the input's shape at run time), ``data`` (a value
    of the input tensor itself) or ``none``; ``early_exit``: the body computes its condition (a while loop).
    """
    with edit_onnx(path) as model:
        body_nodes = [helper.make_node("Cast", ["i"], ["scan_out"], to=TensorProto.FLOAT)]
        if early_exit:  # keep going while i < 2: the loop can stop before its trip count
            model.graph.initializer.extend([numpy_helper.from_array(np.array(2, np.int64), "loop_limit")])
            body_nodes.append(helper.make_node("Less", ["i", "loop_limit"], ["cond_out"]))
        else:
            body_nodes.append(helper.make_node("Identity", ["cond_in"], ["cond_out"]))
        body = helper.make_graph(
            body_nodes,
            "body",
            [
                helper.make_tensor_value_info("i", TensorProto.INT64, []),
                helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            ],
            [
                helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
                helper.make_tensor_value_info("scan_out", TensorProto.FLOAT, []),
            ],
        )
        nodes = []
        model.graph.initializer.extend([numpy_helper.from_array(np.array([0], np.int64), "loop_idx")])
        if trip == "shape":  # trip count = seq, from the input's shape: TensorRT sizes the scan from it
            nodes += [
                helper.make_node("Shape", ["input"], ["loop_shape"]),
                helper.make_node("Gather", ["loop_shape", "loop_idx"], ["loop_trip_1d"]),
                helper.make_node("Squeeze", ["loop_trip_1d"], ["loop_trip"]),
            ]
        elif trip == "data":  # trip count = a value read from the input tensor: known only at run time
            nodes += [
                helper.make_node("ReduceMax", ["input"], ["loop_max"], keepdims=0),
                helper.make_node("Cast", ["loop_max"], ["loop_trip"], to=TensorProto.INT64),
            ]
        elif trip == "constant":
            model.graph.initializer.extend([numpy_helper.from_array(np.array(4, np.int64), "loop_trip")])
        cond = ""
        if early_exit:
            model.graph.initializer.extend([numpy_helper.from_array(np.array(True), "loop_go")])
            cond = "loop_go"
        trip_name = "" if trip == "none" else "loop_trip"
        nodes.append(helper.make_node("Loop", [trip_name, cond], ["scanned"], name="side_loop", body=body))
        model.graph.node.extend(nodes)


@pytest.mark.parametrize(
    ("trip", "early_exit", "why"),
    [
        ("data", False, "trip count is computed from data, not from shapes or constants"),
        ("shape", True, "its condition can end it early"),
        ("none", True, "it has no trip count and its condition can end it early"),
    ],
)
def test_loop_with_a_scan_length_known_only_when_it_ends(export_tiny, copy_export, trip, early_exit, why):
    d = copy_export(export_tiny())
    _add_loop(d / "model.onnx", trip=trip, early_exit=early_exit)
    code, report, _ = lint(d, "trt10")
    assert code == 1 and codes(report) == ["loop-dynamic-scan"]
    (f,) = [f for f in report["findings"] if f["severity"] == "error"]
    assert f["node"] == "side_loop"
    assert "1 scan output(s)" in f["message"] and why in f["message"]
    assert codes(report, "warning") == ["loop-op"]
    assert lint(d, "ort")[0] == 0  # ORT runs it; only the warning


@pytest.mark.parametrize("trip", ["constant", "shape"])
def test_loop_with_a_trip_count_from_constants_or_shapes_only_warns(export_tiny, copy_export, trip):
    # A trip count from the input's shape is what scripted RNN loops have; onnx-tensorrt sizes scan outputs
    # from shapes at run time (was: flagged as an error, which blocked compile --plan-only).
    d = copy_export(export_tiny())
    _add_loop(d / "model.onnx", trip=trip)
    for target in ("trt10", "trt11"):
        code, report, _ = lint(d, target)
        assert code == 0 and codes(report, None) == ["loop-op"], target


def test_fp16_recurrent_op_without_explicit_states(export_tiny, copy_export):
    from seqdeploy.optimize import make_fp16

    d = copy_export(export_tiny())
    make_fp16(d)
    assert lint(d, "trt10")[0] == 0
    drop_input(d / "model.fp16.onnx", INITIAL_C)
    for target in ("trt10", "trt11"):
        code, report, _ = lint(d, target)
        assert code == 1 and codes(report) == ["rnn-initial-state"], target
        f = report["findings"][0]
        assert f["graph"] == "model.fp16.onnx" and "no initial_c input" in f["message"]
    assert lint(d, "ort")[0] == 0  # ORT makes fp16 zeros itself


def test_fp16_weight_overflowed_to_inf(export_tiny, copy_export):
    from seqdeploy.optimize import make_fp16

    d = copy_export(export_tiny())
    make_fp16(d)
    with edit_onnx(d / "model.fp16.onnx") as model:
        node = recurrent_node(model)
        init = next(i for i in model.graph.initializer if i.name == node.input[2])
        r = numpy_helper.to_array(init).copy()
        r[0, 0, 0] = np.inf
        init.CopyFrom(numpy_helper.from_array(r, init.name))
        name = init.name
    code, report, _ = lint(d, "ort")
    assert code == 1 and codes(report) == ["fp16-range"]
    assert f"fp16 tensor '{name}' holds 1 inf/NaN value(s)" in report["findings"][0]["message"]


def test_fp32_weight_beyond_fp16_range_is_a_warning(export_tiny, copy_export):
    d = copy_export(export_tiny())
    with edit_onnx(d / "model.onnx") as model:
        node = recurrent_node(model)
        init = next(i for i in model.graph.initializer if i.name == node.input[1])
        w = numpy_helper.to_array(init).copy()
        w[0, 0, 0] = 1e5
        init.CopyFrom(numpy_helper.from_array(w, init.name))
    code, report, _ = lint(d, "trt10")
    assert code == 0
    assert codes(report, "warning") == ["fp16-range"]
    assert "reaches |x| = 100000" in report["findings"][0]["message"]


def test_sequence_lens_dropped(export_tiny, copy_export):
    d = copy_export(export_tiny(**LSTM_LEN))
    drop_input(d / "model.onnx", SEQUENCE_LENS)
    assert codes(lint(d, "trt10")[1]) == ["sequence-lens"]


def test_static_state_batch(export_tiny, copy_export):
    from tests.integration._onnx_surgery import fix_input_dim

    d = copy_export(export_tiny())
    fix_input_dim(d / "model.onnx", "h0", 1, 2)
    code, report, _ = lint(d, "trt11")
    assert code == 1 and codes(report) == ["static-dim"]
    assert report["findings"][0]["message"].startswith("'h0' axis 1 ('batch') is fixed to 2")


def test_dropout_left_in_the_graph(export_tiny, copy_export):
    from tests.integration._onnx_surgery import _reroute

    d = copy_export(export_tiny())
    with edit_onnx(d / "model.onnx") as model:
        pre = _reroute(model, "output")
        model.graph.node.append(helper.make_node("Dropout", [pre], ["output"], name="planted_dropout"))
    code, report, _ = lint(d, "ort")
    assert code == 1 and codes(report) == ["training-op"]
    assert report["findings"][0]["node"] == "planted_dropout"


def test_single_file_outside_an_export_gets_graph_rules_only(export_tiny, tmp_path):
    src = export_tiny(cell="gru")
    model = onnx.load(str(src / "model.onnx"))
    for node in model.graph.node:
        if node.op_type == "GRU":
            for a in node.attribute:
                if a.name == "linear_before_reset":
                    a.i = 0
    loose = tmp_path / "loose.onnx"
    onnx.save(model, str(loose))
    report = lint_path(loose, "trt10")
    assert [f.code for f in report.findings] == ["gru-linear-before-reset"]
    assert report.findings[0].graph == "loose.onnx"


def test_usage_errors_exit_2(tmp_path):
    runner = CliRunner()
    assert runner.invoke(cli, ["lint", str(tmp_path / "missing")]).exit_code == 2
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    res = runner.invoke(cli, ["lint", str(tmp_path / "junk.onnx")])
    assert res.exit_code == 2 and "not a readable ONNX model" in res.output
    res = runner.invoke(cli, ["lint", str(tmp_path)])
    assert res.exit_code == 2 and "not a seqdeploy export directory" in res.output
    assert runner.invoke(cli, ["lint", str(tmp_path), "--target", "trt9"]).exit_code == 2
    (tmp_path / "manifest.json").write_text('{"schema_version": 1, "graphs": {"sequence": {}}}')
    res = runner.invoke(cli, ["lint", str(tmp_path)])
    assert res.exit_code == 2 and "malformed manifest" in res.output


def test_missing_graph_file_is_an_error_finding(export_tiny, copy_export: Callable[[Path], Path]):
    d = copy_export(export_tiny())
    (d / "model.onnx").unlink()
    code, _, out = lint(d, "ort")  # the bundle no longer matches its manifest: refused like everywhere
    assert code == 2 and "model.onnx: is missing" in out
    code, report, _ = lint(d, "ort", "--allow-modified")
    assert code == 1 and codes(report) == ["unreadable"]
    assert report["modified"] == ["model.onnx: is missing"]


def test_initial_h_dropped_from_fp32_graph_is_not_a_tensorrt_error(export_tiny, copy_export):
    # fp32 networks get FLOAT zeros from the parser, which match: the rule is about fp16 only.
    d = copy_export(export_tiny())
    drop_input(d / "model.onnx", INITIAL_H)
    report = lint_path(d, "trt10")
    assert "rnn-initial-state" not in [f.code for f in report.findings]


def test_a_report_never_overwrites_a_bundle_file(export_tiny, copy_export):
    d = copy_export(export_tiny())
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    for path, target in ((d, d / "manifest.json"), (d / "model.onnx", d / "model.onnx"), (d, d / "model.pt")):
        res = CliRunner().invoke(cli, ["lint", str(path), "--json", str(target)])
        assert res.exit_code == 2, res.output  # was: exit 0, the manifest replaced by the lint report
        assert "a file of the bundle" in res.output
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before
    res = CliRunner().invoke(cli, ["lint", str(d), "--json", str(d / "lint.json")])  # beside them: fine
    assert res.exit_code == 0 and json.loads((d / "lint.json").read_text())["passed"] is True


def test_a_tampered_graph_is_refused_unless_allowed(export_tiny, copy_export):
    d = copy_export(export_tiny(cell="gru"))
    model = onnx.load(str(d / "model.onnx"))
    node = next(n for n in model.graph.node if n.op_type == "GRU")
    for a in node.attribute:
        if a.name == "linear_before_reset":
            a.i = 0
    onnx.save(model, str(d / "model.onnx"))  # changed behind the manifest's back (no restamp)
    for path in (d, d / "model.onnx"):
        code, _, out = lint(path, "trt10")
        assert code == 2, out  # was: the bundle's tampered file linted as if it were the export
        assert "model.onnx: differs from the manifest" in out
    code, report, out = lint(d, "trt10", "--allow-modified")
    assert code == 1 and codes(report) == ["gru-linear-before-reset"]
    assert report["modified"] == ["model.onnx: differs from the manifest (sha256 mismatch)"]
    assert "WARNING: linting a modified bundle (--allow-modified): model.onnx: differs" in out
