"""Each check mode of ``verify`` passes on a correct export and fails on one broken the way that mode
exists to catch; then ``--inputs`` and the ``verify`` command line (tolerances, backends, exit codes,
report files).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result

from seqdeploy.backends import BACKENDS
from seqdeploy.cli import cli
from seqdeploy.feeds import make_feeds
from seqdeploy.manifest import Bundle
from seqdeploy.parity.report import CaseResult, ParityReport
from seqdeploy.parity.run import VerifyOptions, verify
from tests.integration._onnx_surgery import (
    INITIAL_H,
    SEQUENCE_LENS,
    add_constant_to_output,
    drop_input,
    leak_across_batch,
    perturb_weight,
)

BATCHES = (1, 3)
SEQS = (1, 6)
SWEEP = ("--batch", "1,3", "--seq", "1,6")


def run(d: Path, *modes: str, **kw: Any) -> ParityReport:
    kw.setdefault("batches", BATCHES)
    kw.setdefault("seqs", SEQS)
    return verify(d, VerifyOptions(modes=modes, **kw))


def cases(report: ParityReport, mode: str, backend: str | None = None, against: str | None = None) -> list[CaseResult]:
    found = [
        c
        for c in report.cases
        if c.mode == mode and (backend is None or c.backend == backend) and (against is None or c.against == against)
    ]
    assert found, f"no {mode} cases for {backend or 'any backend'} in {[(c.mode, c.backend) for c in report.cases]}"
    return found


def assert_all_pass(report: ParityReport, mode: str) -> None:
    got = cases(report, mode)
    bad = [(c.backend, c.batch, c.seq, c.error, [n for n, t in c.tensors.items() if not t.passed]) for c in got]
    assert all(c.passed for c in got), bad


def skip_reason(report: ParityReport, mode: str) -> str:
    (reason,) = [s.reason for s in report.skipped if s.mode == mode and s.backend is None]
    return reason


def failing(case: CaseResult) -> set[str]:
    return {n for n, t in case.tensors.items() if not t.passed}


# -- chunked -------------------------------------------------------------------------------------------


def test_chunked_passes_on_a_correct_export(export_tiny):
    report = run(export_tiny(), "chunked")
    assert report.passed, report.summary()
    assert {c.backend for c in cases(report, "chunked")} == {"torch", "ort-cpu"}
    assert cases(report, "chunked", "ort-cpu", "reference")
    assert all(c.mode == "chunked" for c in report.cases)


def test_chunked_fails_when_the_graph_ignores_h0(export_tiny, copy_export):
    d = copy_export(export_tiny())
    drop_input(d / "model.onnx", INITIAL_H)
    report = run(d, "full", "chunked")
    assert not report.passed
    assert not any(c.passed for c in cases(report, "full", "ort-cpu"))
    # Carrying h_n into h0 between chunks does nothing any more: the chunked run differs from the
    # backend's own full run (seq 6 -> 3 chunks), and from the reference at every shape.
    for c in cases(report, "chunked", "ort-cpu", "self"):
        assert c.passed == (c.seq == 1), (c.seq, failing(c))
    for c in cases(report, "chunked", "ort-cpu", "reference"):
        assert not c.passed
        assert {"h_n", "output"} <= failing(c)
    assert all(c.passed for c in cases(report, "chunked", "torch"))


def test_chunked_is_skipped_for_bidirectional_models(export_tiny):
    report = run(export_tiny(bidirectional=True), "full", "chunked")
    assert report.passed, report.summary()
    assert "backward direction" in skip_reason(report, "chunked")
    assert not [c for c in report.cases if c.mode == "chunked"]


# -- batch independence --------------------------------------------------------------------------------


def test_batch_mode_passes_on_a_correct_export(export_tiny):
    report = run(export_tiny(), "batch")
    assert_all_pass(report, "batch")
    assert {c.batch for c in cases(report, "batch")} == {3}  # batch 1 has nothing to compare


def test_batch_mode_fails_on_a_cross_row_leak(export_tiny, copy_export):
    d = copy_export(export_tiny())
    leak_across_batch(d / "model.onnx", batch_axis=1)  # output is [seq, batch, hidden]
    report = run(d, "batch")
    for c in cases(report, "batch", "ort-cpu"):
        assert not c.passed
        assert failing(c) == {"output"}
    assert all(c.passed for c in cases(report, "batch", "torch"))


# -- padding -------------------------------------------------------------------------------------------


def test_padding_passes_on_a_correct_lengths_export(export_tiny):
    report = run(export_tiny(export={"lengths": True}), "padding")
    assert_all_pass(report, "padding")
    assert {c.seq for c in cases(report, "padding")} == {6}  # seq 1 has no padding
    # make_feeds puts row 1 at length 1, so batch 3 always has padded steps to check.
    (b3,) = [c for c in cases(report, "padding", "ort-cpu") if c.batch == 3]
    assert "output[padded steps]" in b3.tensors


def test_padding_fails_without_sequence_lens(export_tiny, copy_export):
    d = copy_export(export_tiny(export={"lengths": True}))
    drop_input(d / "model.onnx", SEQUENCE_LENS)
    report = run(d, "padding")
    assert not report.passed
    assert any(f.code == "sequence-lens" for f in report.lint)
    (b3,) = [c for c in cases(report, "padding", "ort-cpu") if c.batch == 3]
    assert not b3.passed
    assert {"h_n", "output[padded steps]"} <= failing(b3)
    assert all(c.passed for c in cases(report, "padding", "torch"))


def test_padding_is_skipped_without_lengths(export_tiny):
    report = run(export_tiny(), "full", "padding")
    assert "lengths" in skip_reason(report, "padding")
    assert {c.mode for c in report.cases} == {"full"}


def test_a_run_where_every_mode_is_skipped_is_a_usage_error(export_tiny):
    from seqdeploy.errors import UsageError

    with pytest.raises(UsageError, match=r"nothing was compared.*padding: the model has no 'lengths' input"):
        run(export_tiny(), "padding")


def test_padding_and_chunked_never_pass_by_comparing_a_run_with_itself(export_tiny):
    # batch 1 has only a full-length row and seq 1 has a single chunk: both are skipped, not "PASSED".
    report = verify(
        export_tiny(export={"lengths": True}),
        VerifyOptions(batches=(1,), seqs=(1, 4), modes=("full", "padding", "chunked")),
    )
    assert not [c for c in report.cases if c.mode in ("padding",)]
    assert [c.seq for c in report.cases if c.mode == "chunked"] == [4, 4, 4]  # torch self, ort self, ort vs ref
    skips = {(s.mode, s.reason, s.batch, s.seq) for s in report.skipped}
    assert ("padding", "no row is shorter than seq", 1, 4) in skips
    assert ("chunked", "a single step has no chunks", 1, 1) in skips


# -- identities ----------------------------------------------------------------------------------------


def test_identities_pass_on_a_correct_export(export_tiny):
    for model in ({}, {"bidirectional": True}, {"export": {"lengths": True}}):
        report = run(export_tiny(**model), "identities")
        assert_all_pass(report, "identities")


def test_identities_fail_when_output_is_offset(export_tiny, copy_export):
    d = copy_export(export_tiny())
    add_constant_to_output(d / "model.onnx", 1e-3)
    report = run(d, "full", "identities")
    for c in cases(report, "identities", "ort-cpu"):
        assert failing(c) == {"h_n[top]"}
    assert all(c.passed for c in cases(report, "identities", "torch"))
    for c in cases(report, "full", "ort-cpu"):
        assert failing(c) == {"output"}
        assert c.tensors["h_n"].passed and c.tensors["c_n"].passed


def test_identities_are_skipped_for_heads(export_tiny):
    report = run(export_tiny(head={"task": "tag", "num_classes": 3}), "full", "identities")
    assert "'tag' head" in skip_reason(report, "identities")


# -- step ----------------------------------------------------------------------------------------------

STEP = {"export": {"step": True}}


def test_step_mode_passes_on_a_correct_step_export(export_tiny):
    report = run(export_tiny(**STEP), "step")
    assert_all_pass(report, "step")
    assert {c.backend for c in cases(report, "step")} == {"torch", "ort-cpu"}
    assert cases(report, "step", "ort-cpu", "reference")
    assert set(cases(report, "step")[0].tensors) == {"output", "h_n", "c_n"}


def test_step_mode_fails_when_only_the_step_graph_is_wrong(export_tiny, copy_export):
    d = copy_export(export_tiny(**STEP))
    perturb_weight(d / "step.onnx", 1e-3)
    report = run(d, "full", "step")
    assert not report.passed
    assert_all_pass(report, "full")  # model.onnx is untouched
    ref_cases = cases(report, "step", "ort-cpu", "reference")
    assert {"output", "h_n", "c_n"} <= set().union(*(failing(c) for c in ref_cases))
    assert all(not c.passed for c in ref_cases if c.seq > 1)  # the error grows over the steps
    assert all(not c.passed for c in cases(report, "step", "ort-cpu", "self") if c.seq > 1)
    assert all(c.passed for c in cases(report, "step", "torch"))


def test_step_mode_is_skipped_without_a_step_graph(export_tiny):
    report = run(export_tiny(), "full", "step")
    assert "--step" in skip_reason(report, "step")


def test_step_mode_passes_for_a_cell_stack_with_per_layer_states(export_tiny):
    d = export_tiny(cell="lstm_cell", hidden_sizes=[6, 4, 3], **STEP)
    report = run(d, "full", "step")
    assert_all_pass(report, "full")
    assert_all_pass(report, "step")
    names = set(cases(report, "step", "ort-cpu", "reference")[0].tensors)
    assert names == {"output", "h_n.0", "h_n.1", "h_n.2", "c_n.0", "c_n.1", "c_n.2"}


# -- user inputs ---------------------------------------------------------------------------------------


def invoke(*args: str) -> Result:
    result = CliRunner().invoke(cli, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def save_npz(path: Path, feeds: dict[str, np.ndarray]) -> Path:
    np.savez(path, **feeds)
    return path


def spec_of(d: Path) -> Any:
    return Bundle.load(d).specs["sequence"]


def test_inputs_file_with_correct_arrays_passes(export_tiny, tmp_path):
    d = export_tiny(export={"lengths": True})
    npz = save_npz(tmp_path / "in.npz", make_feeds(spec_of(d), 2, 5, seed=7))
    result = invoke("verify", str(d), "--inputs", str(npz), "--json", str(tmp_path / "r.json"))
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["passed"] is True
    assert {(c["batch"], c["seq"]) for c in report["cases"]} == {(2, 5)}


def test_inputs_with_token_ids_outside_the_vocabulary_exit_2(export_tiny, tmp_path):
    d = export_tiny(embedding={"vocab_size": 20, "dim": 5})
    feeds = make_feeds(spec_of(d), 2, 4)
    feeds["input"][1, 0] = 20
    result = invoke("verify", str(d), "--inputs", str(save_npz(tmp_path / "in.npz", feeds)))
    assert result.exit_code == 2, result.output
    assert "vocabulary" in result.output
    assert "PASSED" not in result.output and "FAILED" not in result.output


def test_inputs_with_a_zero_length_exit_2(export_tiny, tmp_path):
    d = export_tiny(export={"lengths": True})
    feeds = make_feeds(spec_of(d), 3, 4)
    feeds["lengths"][2] = 0
    result = invoke("verify", str(d), "--inputs", str(save_npz(tmp_path / "in.npz", feeds)))
    assert result.exit_code == 2, result.output
    assert "lengths" in result.output


def test_inputs_missing_h0_exit_2(export_tiny, tmp_path):
    d = export_tiny()
    feeds = make_feeds(spec_of(d), 2, 4)
    del feeds["h0"]
    result = invoke("verify", str(d), "--inputs", str(save_npz(tmp_path / "in.npz", feeds)))
    assert result.exit_code == 2, result.output
    assert "h0" in result.output


# -- command line --------------------------------------------------------------------------------------


def verify_json(d: Path, tmp_path: Path, *args: str) -> tuple[Result, dict[str, Any]]:
    out = tmp_path / "report.json"
    out.unlink(missing_ok=True)
    result = invoke("verify", str(d), *SWEEP, "--json", str(out), *args)
    return result, json.loads(out.read_text())


def test_per_tensor_atol_override_reaches_the_json(export_tiny, tmp_path):
    result, report = verify_json(export_tiny(), tmp_path, "--atol", "h_n=1e-1")
    assert result.exit_code == 0, result.output
    assert "atol=0.1" in result.output
    for c in report["cases"]:
        for name, t in c["tensors"].items():
            assert t["atol"] == (0.1 if name.startswith("h_n") else 1e-5), (c["mode"], name, t["atol"])
            assert t["rtol"] == 1e-4
    assert report["tolerances"]["ort-cpu"]["atol"] == {"h_n": 0.1}
    assert report["tolerances"]["ort-cpu"]["default"] == {"atol": 1e-5, "rtol": 1e-4}


def test_loose_tolerances_accept_a_small_planted_error(export_tiny, copy_export, tmp_path):
    d = copy_export(export_tiny())
    perturb_weight(d / "model.onnx", 1e-3)
    strict, strict_report = verify_json(d, tmp_path)
    assert strict.exit_code == 1, strict.output
    assert not strict_report["passed"]
    loose, loose_report = verify_json(d, tmp_path, "--atol", "1", "--rtol", "1")
    assert loose.exit_code == 0, loose.output
    assert loose_report["passed"] is True
    assert all(t["atol"] == 1.0 and t["rtol"] == 1.0 for c in loose_report["cases"] for t in c["tensors"].values())


def test_unknown_backend_exits_2_listing_known_backends(export_tiny):
    result = invoke("verify", str(export_tiny()), "--backends", "torch,onnx-magic")
    assert result.exit_code == 2, result.output
    assert "onnx-magic" in result.output
    for name in BACKENDS:
        assert name in result.output


def _ort_has_cuda() -> bool:
    if importlib.util.find_spec("onnxruntime") is None:
        return False
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


@pytest.mark.skipif(_ort_has_cuda(), reason="this machine's onnxruntime has the CUDA provider")
def test_gpu_backend_on_a_cpu_machine_exits_3_naming_the_extra(export_tiny):
    result = invoke("verify", str(export_tiny()), *SWEEP, "--backends", "torch,ort-cuda")
    assert result.exit_code == 3, result.output
    assert "seqdeploy[gpu]" in result.output
    assert "ort-cuda" in result.output


def test_missing_export_dir_exits_2(tmp_path):
    result = invoke("verify", str(tmp_path / "nope"))
    assert result.exit_code == 2, result.output
    assert "not a seqdeploy export directory" in result.output


def test_unknown_mode_exits_2(export_tiny):
    result = invoke("verify", str(export_tiny()), "--modes", "full,telepathy")
    assert result.exit_code == 2, result.output
    assert "telepathy" in result.output


def test_markdown_and_json_reports(export_tiny, tmp_path):
    md = tmp_path / "sub" / "report.md"
    result, report = verify_json(export_tiny(export={"lengths": True}), tmp_path, "--markdown", str(md))
    assert result.exit_code == 0, result.output
    text = md.read_text()
    assert text.startswith("# seqdeploy parity report")
    header = "| mode | backend | vs | batch | seq | tensor | max_abs | max_rel | p99_abs | atol | rtol | result |"
    assert header in text.splitlines()
    assert "| full | ort-cpu | torch | 3 | 6 | `h_n` |" in text

    assert report["schema_version"] == 1
    assert {"schema_version", "passed", "reference", "cases", "skipped", "lint", "warnings"} <= set(report)
    assert report["reference"] == "torch"
    assert {c["mode"] for c in report["cases"]} == {"full", "chunked", "batch", "padding", "identities"}
    case_keys = {"backend", "mode", "batch", "seq", "against", "passed", "error", "tensors"}
    tensor_keys = {"max_abs", "max_rel", "mean_abs", "p99_abs", "atol", "rtol", "passed"}
    for c in report["cases"]:
        assert case_keys <= set(c), c
        assert c["tensors"], c
        for t in c["tensors"].values():
            assert tensor_keys <= set(t), t
    assert "step" in {s["mode"] for s in report["skipped"]}
    assert all(s["reason"] for s in report["skipped"])
