"""Planted bugs: each must make ``seqdeploy verify`` exit 1 and name the guilty tensor, both in the
terminal output and in the JSON report's failing cases. A control proves an untouched copy passes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from seqdeploy.cli import cli
from tests.integration._onnx_surgery import (
    SEQUENCE_LENS,
    drop_input,
    fix_input_dim,
    perturb_weight,
    swap_lstm_gates,
    zero_direction,
)

SWEEP = ("--batch", "1,3", "--seq", "1,6")
HIDDEN = 4  # tests/conftest.py tiny_raw: LSTM 5 -> 4


def run_verify(d: Path, *args: str) -> tuple[Result, dict[str, Any]]:
    """``seqdeploy verify d --json ...``; returns the click result and the parsed JSON report."""
    out = d.parent / f"{d.name}-report.json"
    result = CliRunner().invoke(cli, ["verify", str(d), *SWEEP, "--json", str(out), *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    report = json.loads(out.read_text()) if out.exists() else {}
    return result, report


def failed_cases(report: dict[str, Any], mode: str | None = None) -> list[dict[str, Any]]:
    return [c for c in report["cases"] if not c["passed"] and (mode is None or c["mode"] == mode)]


def failing_tensors(report: dict[str, Any], mode: str | None = None) -> set[str]:
    return {n for c in failed_cases(report, mode) for n, t in c["tensors"].items() if not t["passed"]}


def summary_line(result: Result) -> str:
    (line,) = [ln for ln in result.output.splitlines() if ln.startswith(("FAILED:", "PASSED:"))]
    return line


def assert_names(result: Result, report: dict[str, Any], *tensors: str) -> None:
    """Exit 1, and each tensor FAILED in the table, in the summary and in the JSON report."""
    assert result.exit_code == 1, result.output
    assert report["passed"] is False
    summary = summary_line(result)
    assert summary.startswith("FAILED:"), summary
    failing_json = failing_tensors(report)
    for name in tensors:
        assert f"FAILED | {name} |" in result.output, f"{name} not named FAILED in:\n{result.output}"
        assert name in summary.split("failing tensors:")[1], summary
        assert name in failing_json, failing_json


def test_control_untouched_copy_passes(export_tiny, copy_export):
    d = copy_export(export_tiny())
    result, report = run_verify(d)
    assert result.exit_code == 0, result.output
    assert summary_line(result).startswith("PASSED:")
    assert "FAILED" not in result.output
    assert report["passed"] is True
    assert report["cases"] and not failed_cases(report)
    assert report["lint"] == [] and report["warnings"] == []


def test_one_perturbed_lstm_weight_fails_output_and_states(export_tiny, copy_export):
    d = copy_export(export_tiny())
    perturb_weight(d / "model.onnx", 1e-3, (0, 0, 0))
    result, report = run_verify(d)
    assert_names(result, report, "output", "h_n", "c_n")
    assert {c["backend"] for c in failed_cases(report)} == {"ort-cpu"}
    assert {"full", "chunked"} <= {c["mode"] for c in failed_cases(report)}


@pytest.mark.parametrize("cell", ["gru", "rnn_tanh"])
def test_one_perturbed_weight_fails_other_cells_too(cell, export_tiny, copy_export):
    d = copy_export(export_tiny(cell=cell))
    perturb_weight(d / "model.onnx", 1e-3, (0, 0, 0))
    result, report = run_verify(d)
    assert_names(result, report, "output", "h_n")
    assert "c_n" not in result.output  # no cell state outside LSTMs


def test_swapped_lstm_gate_blocks_fail(export_tiny, copy_export):
    d = copy_export(export_tiny())
    swap_lstm_gates(d / "model.onnx", HIDDEN, "o", "f")
    result, report = run_verify(d)
    assert_names(result, report, "output", "h_n", "c_n")
    # Wrong at every shape of the sweep, seq 1 and batch 1 included.
    full = [c for c in report["cases"] if c["mode"] == "full"]
    assert len(full) == 4 and not any(c["passed"] for c in full)


def test_removed_sequence_lens_fails_lint_full_and_padding(export_tiny, copy_export):
    d = copy_export(export_tiny(export={"lengths": True}))
    drop_input(d / "model.onnx", SEQUENCE_LENS)
    result, report = run_verify(d)
    assert_names(result, report, "output", "h_n")
    assert "lint sequence-lens" in result.output
    assert [f["code"] for f in report["lint"] if f["severity"] == "error"] == ["sequence-lens"]
    assert {"output", "h_n"} <= failing_tensors(report, "full")
    assert "h_n" in failing_tensors(report, "padding")
    assert "output[padded steps]" in failing_tensors(report, "padding")
    # Only rows shorter than seq can tell: batch 1 (full length) passes its full-mode case.
    assert all(c["passed"] for c in report["cases"] if c["mode"] == "full" and c["batch"] == 1)


def test_h0_batch_baked_to_a_constant_fails_at_other_batches(export_tiny, copy_export):
    d = copy_export(export_tiny())
    fix_input_dim(d / "model.onnx", "h0", axis=1, value=2)
    result, report = run_verify(d, "--batch", "1,2,3")  # the later --batch wins over SWEEP's
    assert result.exit_code == 1, result.output
    assert report["passed"] is False
    assert "h0" in result.output
    assert "lint static-dim" in result.output
    static = [f for f in report["lint"] if f["code"] == "static-dim"]
    assert len(static) == 1 and "'h0'" in static[0]["message"] and static[0]["severity"] == "error"
    full = {(c["batch"], c["seq"]): c for c in report["cases"] if c["mode"] == "full"}
    assert {b for b, _ in full} == {1, 2, 3}
    for (batch, _), case in full.items():
        if batch == 2:
            assert case["passed"], case
        else:
            assert not case["passed"]
            assert "h0" in case["error"], case


def test_zeroed_reverse_direction_fails_output_and_h_n(export_tiny, copy_export):
    d = copy_export(export_tiny(bidirectional=True))
    zero_direction(d / "model.onnx", direction=1)
    result, report = run_verify(d)
    assert_names(result, report, "output", "h_n")
    # The guilty half is located: the backward slot of h_n and the backward half of output's features.
    for case in failed_cases(report, "full"):
        h_n, out = case["tensors"]["h_n"], case["tensors"]["output"]
        assert h_n["worst_index"][0] == 1, h_n
        assert out["worst_index"][-1] >= HIDDEN, out
    skipped = {s["mode"]: s["reason"] for s in report["skipped"]}
    assert "backward direction" in skipped["chunked"]
