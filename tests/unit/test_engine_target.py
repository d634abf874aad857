"""Decisions on the target GPU as plain functions (no TensorRT, no GPU): the TensorRT line and its one
10.x/11.x branch, engine naming, the manifest entry, compatibility refusals, engine selection, the I/O and
dtype checks, parser errors explained by the lint, what a proof covers, ORT's TensorRT options.
"""

from __future__ import annotations

import typing

import pytest

from seqdeploy.engine.plan import KIT_TOLERANCES, axis_bounds, build_plan, profile_for, trtexec_shapes
from seqdeploy.engine.target import (
    NUMPY_FROM_TRT,
    GpuTarget,
    ParserFailure,
    compatibility_problems,
    engine_entry,
    engine_io_problems,
    engine_path,
    explain_parser_errors,
    network_creation_flags,
    no_tensorrt_message,
    ort_trt_cache_dir,
    ort_trt_options,
    plan_strongly_typed,
    proof_plan,
    select_engine,
    trt_line,
    unresolved_outputs,
)
from seqdeploy.errors import BackendUnavailable, UsageError
from seqdeploy.lint.findings import Finding
from seqdeploy.spec import DType, spec_from_config
from tests.conftest import tiny_config

T4 = GpuTarget(tensorrt="10.16.1.11", compute_capability="7.5", gpu_name="Tesla T4", cuda="12.8")
A10 = GpuTarget(tensorrt="10.16.1.11", compute_capability="8.6", gpu_name="NVIDIA A10", cuda="12.8")
SPEC = spec_from_config(tiny_config(export={"lengths": True}))


def _plan(precision: str = "fp32") -> dict:
    manifest = {
        "opset": 17,
        "graphs": {"sequence": {"file": "model.onnx", "spec": SPEC.to_dict()}},
        "variants": {"fp16": {"file": "model.fp16.onnx", "graph": "sequence"}},
    }
    bounds = axis_bounds((1, 3, 6), (1, 6, 24))
    return build_plan(manifest, precision=precision, bounds=bounds, onnx_sha256="ab" * 32, lint={})


# -- lines ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "line"), [("10.0.1.6", "10.x"), ("10.16.1.11", "10.x"), ("11.1.0.5", "11.x"), ("11.4.0.106", "11.x")]
)
def test_trt_line(version, line):
    assert trt_line(version) == line


@pytest.mark.parametrize("version", ["8.6.1.6", "12.0.0", "x.y"])
def test_unsupported_versions_are_refused(version):
    with pytest.raises(BackendUnavailable, match=r"TensorRT|version"):
        trt_line(version)


def test_the_one_10x_11x_branch():
    # 10.x: opt into STRONGLY_TYPED (bit 1); 11.x: always strongly typed, the flag is deprecated: none.
    assert network_creation_flags("10.x", 1) == 2
    assert network_creation_flags("10.x", 1, strongly_typed=False) == 0  # only a plan that says so
    assert network_creation_flags("11.x", 1) == 0
    assert network_creation_flags("11.x", 1, strongly_typed=False) == 0
    with pytest.raises(BackendUnavailable):
        network_creation_flags("9.x", 1)
    assert GpuTarget("11.4.0.106", "7.5", "Tesla T4", "13.0").line == "11.x"


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_the_plan_decides_strong_typing_and_the_entry_records_it(precision):
    plan = _plan(precision)
    assert plan_strongly_typed(plan, "10.x") and plan_strongly_typed(plan, "11.x")  # both precisions, both lines
    e = engine_entry(
        file="f", plan=plan, target=T4, plan_sha256="0", build_seconds=0, timing_cache=None, builder={}, verified={}
    )
    assert e["strongly_typed"] is True
    old = dict(plan, tensorrt={"per_line": {"10.x": {"strongly_typed": False}}})  # a weakly typed 10.x plan
    assert not plan_strongly_typed(old, "10.x")
    e = engine_entry(
        file="f", plan=old, target=T4, plan_sha256="0", build_seconds=0, timing_cache=None, builder={}, verified={}
    )
    assert e["strongly_typed"] is False  # what was really built (was: True, hard-coded)


# -- naming and the manifest entry --------------------------------------------------------------------------


def test_engine_file_names_graph_precision_sm_and_version():
    assert T4.sm == "75"
    assert engine_path(_plan("fp16"), T4) == "engines/sequence.fp16.sm75.trt10.16.1.11.plan"
    assert engine_path(_plan(), A10) == "engines/sequence.fp32.sm86.trt10.16.1.11.plan"


def test_engine_entry_has_every_contract_field():
    plan = _plan("fp16")
    e = engine_entry(
        file="engines/x.plan",
        plan=plan,
        target=T4,
        plan_sha256="cd" * 32,
        build_seconds=12.5,
        timing_cache="/tmp/t.cache",
        builder={"workspace_gib": 2, "optimization_level": 3, "tf32": False},
        verified={"batches": [1]},
    )
    required = {
        "file",
        "graph",
        "precision",
        "tensorrt",
        "cuda",
        "gpu_name",
        "compute_capability",
        "profiles",
        "onnx_sha256",
        "plan_sha256",
        "build_seconds",
        "timing_cache",
    }
    assert required <= set(e)
    assert e["precision"] == "fp16" and e["onnx"] == "model.fp16.onnx" and e["onnx_sha256"] == "ab" * 32
    assert e["compute_capability"] == "7.5" and e["tensorrt"] == "10.16.1.11" and e["tensorrt_line"] == "10.x"
    assert e["profiles"] == plan["profiles"] and e["tolerances"] == plan["tolerances"]
    assert e["profiles"] is not plan["profiles"]  # a copy: the manifest never aliases the plan


# -- compatibility and selection ----------------------------------------------------------------------------


def test_compatibility_names_both_sides():
    e = engine_entry(
        file="engines/a.plan",
        plan=_plan(),
        target=A10,
        plan_sha256="0" * 64,
        build_seconds=1,
        timing_cache=None,
        builder={},
        verified={},
    )
    assert compatibility_problems(e, A10) == []
    (cc,) = compatibility_problems(e, T4)
    assert "compute capability 8.6 (NVIDIA A10)" in cc and "(Tesla T4) is 7.5" in cc
    other = GpuTarget("11.4.0.106", "8.6", "NVIDIA A10", "13.0")
    (ver,) = compatibility_problems(e, other)
    assert "built with TensorRT 10.16.1.11, this is TensorRT 11.4.0.106" in ver
    assert len(compatibility_problems(e, GpuTarget("11.4.0.106", "7.5", "T4", None))) == 2


def _entry(target: GpuTarget, precision: str = "fp32") -> dict:
    plan = _plan(precision)
    return engine_entry(
        file=engine_path(plan, target),
        plan=plan,
        target=target,
        plan_sha256="0" * 64,
        build_seconds=1,
        timing_cache=None,
        builder={},
        verified={},
    )


def _manifest(*engines: dict) -> dict:
    """A manifest recording ``engines``, with the graph files they were built from (as the plan's sha256)."""
    files = {"model.onnx": {"sha256": "ab" * 32}, "model.fp16.onnx": {"sha256": "ab" * 32}}
    return {"engines": list(engines), "files": files}


def test_select_engine_picks_the_one_built_here():
    manifest = _manifest(_entry(A10), _entry(T4), _entry(T4, "fp16"))
    got = select_engine(manifest, graph="sequence", precision="fp32", target=T4, backend="trt", bundle_dir="D")
    assert got["file"] == "engines/sequence.fp32.sm75.trt10.16.1.11.plan"
    got16 = select_engine(manifest, graph="sequence", precision="fp16", target=T4, backend="trt-fp16", bundle_dir="D")
    assert got16["precision"] == "fp16"


def test_select_engine_refuses_missing_and_foreign_engines():
    with pytest.raises(
        UsageError, match=r"none recorded; build it on this GPU with 'seqdeploy compile D --precision fp16'"
    ):
        select_engine({}, graph="sequence", precision="fp16", target=T4, backend="trt-fp16", bundle_dir="D")
    with pytest.raises(BackendUnavailable) as info:
        select_engine(
            _manifest(_entry(A10)), graph="sequence", precision="fp32", target=T4, backend="trt", bundle_dir="D"
        )
    msg = str(info.value)
    assert "compute capability 8.6" in msg and "Rebuild it on this GPU with 'seqdeploy compile D'" in msg
    assert info.value.exit_code == 3


def test_select_engine_refuses_an_engine_built_from_an_earlier_graph_file():
    """Re-running optimize --fp16 replaces model.fp16.onnx: an engine of the old file must not run as the new."""
    manifest = _manifest(_entry(T4, "fp16"))
    manifest["files"]["model.fp16.onnx"]["sha256"] = "cd" * 32
    with pytest.raises(UsageError) as info:  # was: the old engine selected and run
        select_engine(manifest, graph="sequence", precision="fp16", target=T4, backend="trt-fp16", bundle_dir="D")
    msg = str(info.value)
    assert (
        "was built from an earlier model.fp16.onnx (sha256 abababababab…; the bundle's model.fp16.onnx is now cdcd"
        in msg
    )
    assert "Rebuild it on this GPU with 'seqdeploy compile D --precision fp16'" in msg
    # Measured on disk (a runner hashes the file as it is) wins over the table.
    got = select_engine(
        manifest,
        graph="sequence",
        precision="fp16",
        target=T4,
        backend="trt-fp16",
        bundle_dir="D",
        current_sha256={"model.fp16.onnx": "ab" * 32},
    )
    assert got["onnx"] == "model.fp16.onnx"
    # A stale engine beside a foreign one: both reasons are given.
    manifest["engines"].append(_entry(A10, "fp16"))
    manifest["engines"][1]["onnx_sha256"] = "cd" * 32
    with pytest.raises(
        BackendUnavailable, match=r"(?s)built from an earlier model\.fp16\.onnx.*compute capability 8\.6"
    ):
        select_engine(manifest, graph="sequence", precision="fp16", target=T4, backend="trt-fp16", bundle_dir="D")


# -- I/O, dtypes, shapes -------------------------------------------------------------------------------------


def _io(spec, **override):
    trt_of = {v: k for k, v in NUMPY_FROM_TRT.items()}
    io = {t.name: ("INPUT", trt_of[t.dtype], t.rank) for t in spec.inputs}
    io |= {t.name: ("OUTPUT", trt_of[t.dtype], t.rank) for t in spec.outputs}
    io.update(override)
    return io


def test_dtype_map_covers_every_iospec_dtype_one_to_one():
    assert set(typing.get_args(DType)) <= set(NUMPY_FROM_TRT.values())
    assert len(set(NUMPY_FROM_TRT.values())) == len(NUMPY_FROM_TRT)
    assert NUMPY_FROM_TRT["HALF"] == "float16" and NUMPY_FROM_TRT["INT64"] == "int64"


def test_engine_io_matches_the_iospec_or_says_what_differs():
    assert engine_io_problems(SPEC, _io(SPEC)) == []
    problems = engine_io_problems(
        SPEC,
        _io(
            SPEC,
            h0=("INPUT", "HALF", 3),
            c_n=("OUTPUT", "BF16", 3),
            lengths=("OUTPUT", "INT64", 2),
            extra=("INPUT", "FLOAT", 1),
        ),
    )
    assert "'h0' is float16 in the engine, float32 in the IOSpec" in problems
    assert "'c_n' has TensorRT type BF16, which seqdeploy does not map to NumPy" in problems
    assert "'lengths' is an output of the engine, the IOSpec has it as an input" in problems
    assert "'lengths' has rank 2 in the engine, 1 in the IOSpec" in problems
    assert "the engine has I/O tensors the IOSpec does not: ['extra']" in problems
    io = _io(SPEC)
    del io["h_n"]
    assert engine_io_problems(SPEC, io) == [f"output 'h_n' is missing from the engine (it has {sorted(io)})"]


def test_unresolved_output_shapes_are_named():
    assert unresolved_outputs({"output": [6, 3, 4], "h_n": [1, 3, 4]}) == []
    assert unresolved_outputs({"output": [-1, 3, 4]}) == [
        "output 'output' has shape [-1, 3, 4] after the input shapes were set"
    ]


# -- parser errors and the lint ------------------------------------------------------------------------------


def test_parser_errors_are_explained_by_lint_findings_on_the_same_node():
    findings = [
        Finding("rnn-layout", "error", "model.onnx", "/rnn/LSTM", "layout=1 is not supported by TensorRT"),
        Finding("opset-range", "error", "model.onnx", "", "opset 30 is outside 9-24"),
        Finding("loop-op", "warning", "other.onnx", "/rnn/LSTM", "not this file"),
    ]
    errors = [
        ParserFailure("/rnn/LSTM", "UNSUPPORTED_NODE", "Assertion failed: layout", operator="LSTM"),
        ParserFailure("", "INVALID_GRAPH", "unsupported opset"),
        ParserFailure("/head/Gemm", "INTERNAL_ERROR", "weird"),
    ]
    lines = explain_parser_errors(errors, findings, "model.onnx")
    assert lines[0] == "model.onnx: LSTM node '/rnn/LSTM': Assertion failed: layout [UNSUPPORTED_NODE]"
    assert lines[1] == "    explained by lint rnn-layout (error): layout=1 is not supported by TensorRT"
    assert lines[2] == "model.onnx: the graph: unsupported opset [INVALID_GRAPH]"
    assert lines[3] == "    explained by lint opset-range (error): opset 30 is outside 9-24"
    assert lines[4].startswith("model.onnx: node '/head/Gemm'")
    assert "no seqdeploy lint rule predicts this error" in lines[5] and "NVIDIA/TensorRT#1177" in lines[5]
    assert len(lines) == 6  # the other file's finding is not used


def test_the_gpu_extra_pin_is_what_pyproject_pins():
    import re
    import tomllib
    from pathlib import Path

    from seqdeploy.engine.target import GPU_EXTRA_TENSORRT

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    gpu = pyproject["project"]["optional-dependencies"]["gpu"]
    assert any(re.sub(r"\s", "", d).startswith(GPU_EXTRA_TENSORRT) for d in gpu), gpu
    with pytest.raises(BackendUnavailable, match=re.escape(f"installs {GPU_EXTRA_TENSORRT}")):
        trt_line("9.3.0")  # was: "pins tensorrt-cu12>=10,<12", which pyproject no longer said


# -- the proof -----------------------------------------------------------------------------------------------


def test_proof_covers_min_opt_max_and_every_mode_inside_the_profile():
    p = proof_plan(axis_bounds((1, 8, 64), (1, 64, 512)), "fp32", streamable=True, lengths=True)
    assert p.batches == (1, 8, 9, 64) and p.seqs == (1, 64, 512)
    assert p.modes == ("full", "batch", "chunked", "padding", "identities")
    assert (p.atol, p.rtol) == KIT_TOLERANCES["fp32"] == (1e-4, 1e-4)  # was rtol 1e-3: 10x issue 8's target
    assert p.skipped == ("step: engines are built for the sequence graph only",)


def test_proof_leaves_out_modes_whose_shapes_fall_below_the_profile():
    p = proof_plan(axis_bounds((2, 4, 4), (16, 32, 64)), "fp16", streamable=True, lengths=True)
    assert p.batches == (2, 4) and p.seqs == (16, 32, 64)
    assert p.modes == ("full", "identities")
    assert any(s.startswith("batch: rows run alone at batch 1, below the profile's min batch 2") for s in p.skipped)
    assert any(s.startswith("chunked:") and "min seq 16" in s for s in p.skipped)
    assert any(s.startswith("padding:") and "min seq 16" in s for s in p.skipped)
    assert (p.atol, p.rtol) == (1e-2, 1e-2)
    bi = proof_plan(axis_bounds((1, 2, 3), (1, 2, 3)), "fp32", streamable=False, lengths=False)
    assert bi.modes == ("full", "batch", "identities")


# -- ONNX Runtime's TensorRT provider -------------------------------------------------------------------------


def test_ort_trt_options_come_from_the_plan_profile():
    prof = profile_for(SPEC, axis_bounds((1, 3, 6), (1, 6, 24)))
    opts = ort_trt_options(prof, precision="fp32", cache_path="/b/cache/ort-trt/x", workspace_gib=2, opt_level=3)
    for which in ("min", "opt", "max"):
        assert opts[f"trt_profile_{which}_shapes"] == trtexec_shapes(prof, which)
    assert opts["trt_profile_min_shapes"] == "input:1x1x5,lengths:1,h0:1x1x4,c0:1x1x4"
    assert opts["trt_fp16_enable"] == "False"
    assert opts["trt_max_workspace_size"] == str(2 << 30) and opts["trt_builder_optimization_level"] == "3"
    assert opts["trt_engine_cache_enable"] == "True" and opts["trt_engine_cache_path"] == "/b/cache/ort-trt/x"
    assert opts["trt_timing_cache_path"] == "/b/cache/ort-trt/x"
    fp16 = ort_trt_options(prof, precision="fp16", cache_path=None, workspace_gib=1, opt_level=5)
    assert fp16["trt_fp16_enable"] == "True" and not any("cache" in k for k in fp16)


def test_ort_trt_cache_is_keyed_by_file_and_versions():
    d = ort_trt_cache_dir("fp16", "0123456789abcdef" * 4, "1.32.0", None)
    assert d == "cache/ort-trt/fp16-0123456789abcdef-ort1.32.0-trtunknown"
    assert ort_trt_cache_dir("fp32", "f" * 64, "1.32.0", "10.16.1.11") != ort_trt_cache_dir(
        "fp32", "e" * 64, "1.32.0", "10.16.1.11"
    )


def test_no_tensorrt_message_says_what_to_do():
    msg = no_tensorrt_message("TensorRT's Python package is not installed", "out/m", "fp16")
    for part in (
        "pip install 'seqdeploy[gpu]'",
        "Engines must be built on the GPU that will run them (or one of the same compute capability",
        "'seqdeploy compile out/m --precision fp16 --plan-only'",
        "out/m/trt/trtexec.sh build 10",
        "Nothing was written",
    ):
        assert part in msg, part
