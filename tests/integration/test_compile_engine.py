"""``seqdeploy compile DIR`` (the engine) on a CPU.

Real TensorRT never runs here. What runs for real: the exit-3 path of this machine (no TensorRT), the
plan made or reused, the bundle transaction that stages ``engines/``, the proof through ``verify``
on the staged engine at the plan's tolerance, the manifest entry and the integrity of the result, the
refusals of the ``trt`` runner that happen before TensorRT is touched, and ``ort-trt``'s options.

What is replaced, and how: the running GPU (a T4 ``GpuTarget``), the build (its "engine" is a copy of
the ONNX file the plan names — or a perturbed copy, to fail the proof) and the ``trt`` backend's runner
(ONNX Runtime on that file, after the same engine selection and profile check as ``TrtRunner``). The
real build and runner are exercised by ``tests/gpu/test_trt_engine.py`` on a GPU machine with TensorRT.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from seqdeploy import backends
from seqdeploy.backends.onnxrt import OrtRunner
from seqdeploy.cli import cli
from seqdeploy.engine import _trt
from seqdeploy.engine.build import BuildResult, ParseError
from seqdeploy.engine.compile import _build as REAL_BUILD
from seqdeploy.engine.compile import compile_engine
from seqdeploy.engine.plan import shape_problems, trtexec_shapes
from seqdeploy.engine.target import GpuTarget, ParserFailure, select_engine
from seqdeploy.errors import BackendUnavailable, ExportError, IntegrityError, ParityError, UsageError
from seqdeploy.feeds import make_feeds
from seqdeploy.manifest import Bundle, sha256
from seqdeploy.parity.run import VerifyOptions, verify
from tests.integration._onnx_surgery import perturb_weight

T4 = GpuTarget(tensorrt="10.16.1.11", compute_capability="7.5", gpu_name="Tesla T4", cuda="12.8")
A10 = GpuTarget(tensorrt="10.16.1.11", compute_capability="8.6", gpu_name="NVIDIA A10", cuda="12.8")
LSTM_LEN = {"export": {"lengths": True}}
ENGINE32 = "engines/sequence.fp32.sm75.trt10.16.1.11.plan"
ENGINE16 = "engines/sequence.fp16.sm75.trt10.16.1.11.plan"


def tree(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


class OnnxAsEngine(OrtRunner):
    """The ``trt`` backend's stand-in: picks the engine exactly like ``TrtRunner`` (``select_engine`` on the
    manifest it is given: during the proof, the one that records the staged engine) and refuses shapes
    outside the entry's profile, then runs the "engine" (an ONNX copy) with ONNX Runtime on the CPU."""

    def __init__(self, name: str, bundle: Bundle, graph: str, threads: int | None, precision: str) -> None:
        self.entry = select_engine(
            bundle.manifest, graph=graph, precision=precision, target=T4, backend=name, bundle_dir=str(bundle.path)
        )
        super().__init__(name, bundle.specs[graph], bundle.path / self.entry["file"], device="cpu", threads=threads)

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        problems = shape_problems(self.entry["profiles"][0], {n: feeds[n].shape for n in self.spec.input_names})
        if problems:
            raise UsageError("; ".join(problems))
        return super()._infer(feeds)


@pytest.fixture
def fake_gpu(monkeypatch, tmp_path):
    """A T4 with TensorRT 10.16 as far as compile and the ``trt`` backends can tell; ``state["perturb"]``
    makes the next build's engine a copy with one weight off by that much."""
    state: dict[str, float | None] = {"perturb": None}
    builds: list[str] = []

    def fake_build(bundle, plan, target, builder, cache, verbose, kept=""):
        src = bundle.file(plan["onnx"])
        builds.append(plan["onnx"])
        if state["perturb"] is None:
            data = src.read_bytes()
        else:
            tmp = tmp_path / f"perturbed-{len(builds)}.onnx"
            shutil.copy(src, tmp)
            perturb_weight(tmp, delta=state["perturb"])
            data = tmp.read_bytes()
        return BuildResult(plan=data, timing_cache=(cache or b"") + b"+timed", seconds=0.25, warnings=[])

    monkeypatch.setattr("seqdeploy.engine.compile._build", fake_build)
    monkeypatch.setattr(_trt, "running_target", lambda purpose: T4)
    monkeypatch.setattr(_trt, "build_target", lambda purpose: T4)  # ... and TensorRT could create a builder
    for name, precision in (("trt", "fp32"), ("trt-fp16", "fp16")):

        def factory(n, bundle, graph, threads, _p=precision):
            return OnnxAsEngine(n, bundle, graph, threads, _p)

        monkeypatch.setitem(backends.BACKENDS, name, dataclasses.replace(backends.BACKENDS[name], factory=factory))
    state["builds"] = builds  # type: ignore[assignment]
    return state


def test_compile_builds_proves_and_records_the_engine(export_tiny, copy_export, fake_gpu, tmp_path):
    d = copy_export(export_tiny(**LSTM_LEN))
    cache = tmp_path / "timing.cache"
    res = compile_engine(d, timing_cache=cache)
    assert not res.plan_reused and (d / "trt/plan.json").is_file()  # no plan yet: made and recorded first
    e = res.entry
    assert e["file"] == ENGINE32 and res.path == d / ENGINE32
    assert (d / ENGINE32).read_bytes() == (d / "model.onnx").read_bytes()  # what the (fake) build produced
    manifest = json.loads((d / "manifest.json").read_text())
    assert manifest["engines"] == [e]
    assert manifest["files"][ENGINE32]["sha256"] == sha256(d / ENGINE32) == e["plan_sha256"]
    assert e["onnx_sha256"] == sha256(d / "model.onnx") and e["onnx"] == "model.onnx"
    assert (e["compute_capability"], e["tensorrt"], e["gpu_name"], e["cuda"]) == (
        "7.5",
        "10.16.1.11",
        "Tesla T4",
        "12.8",
    )
    plan = json.loads((d / "trt/plan.json").read_text())
    assert e["profiles"] == plan["profiles"]
    assert e["timing_cache"] == str(cache) and cache.read_bytes() == b"+timed"
    assert e["builder"] == {"workspace_gib": 2, "optimization_level": 3, "tf32": False}
    v = e["verified"]
    assert v["backend"] == "trt" and (v["atol"], v["rtol"]) == (1e-4, 1e-4)
    assert v["batches"] == [1, 3, 4, 6] and v["seqs"] == [1, 6, 24]  # the profile's min, opt(+1), max
    assert v["modes"] == ["batch", "chunked", "full", "identities", "padding"]
    assert set(v["max_abs_vs_fp32"]) == {"output", "h_n", "c_n"} and max(v["max_abs_vs_fp32"].values()) < 1e-6
    assert Bundle.load(d).tampered_files() == []  # every engine file is listed with its sha256
    assert not [p for p in d.iterdir() if p.name.startswith(".")]  # nothing staged is left
    # The recorded engine is what `verify --backends torch,trt` runs afterwards.
    with backends.make_runner("trt", Bundle.load(d)) as r:
        assert r.entry["file"] == ENGINE32
        r.infer(make_feeds(r.spec, 2, 5, seed=1))
    # A plain verify judges the engine at the tolerance it was proven at (the backend's, not fp32's 1e-5).
    rep = verify(d, VerifyOptions(backends=("torch", "trt"), batches=(2,), seqs=(3,), modes=("full",)))
    assert rep.passed and rep.tolerances["trt"]["default"] == {"atol": 1e-4, "rtol": 1e-4}
    assert rep.tolerances["torch"]["default"] == {"atol": 1e-5, "rtol": 1e-4}
    # Rebuilding needs --force; then the plan is reused and the entry replaced, not duplicated.
    with pytest.raises(UsageError, match=r"already built and recorded .* pass --force"):
        compile_engine(d)
    again = compile_engine(d, force=True, timing_cache=cache, opt_level=5)
    assert again.plan_reused and cache.read_bytes() == b"+timed+timed"
    assert again.entry["builder"]["optimization_level"] == 5
    assert [x["file"] for x in json.loads((d / "manifest.json").read_text())["engines"]] == [ENGINE32]
    (d / ENGINE32).write_bytes(b"tampered")
    with pytest.raises(IntegrityError, match=r"engines/sequence\.fp32"):
        Bundle.load(d)


def test_an_fp16_engine_joins_the_fp32_one(export_tiny, copy_export, fake_gpu):
    d = copy_export(export_tiny(**LSTM_LEN))
    assert CliRunner().invoke(cli, ["optimize", str(d), "--fp16"]).exit_code == 0
    compile_engine(d)
    res = compile_engine(d, precision="fp16")
    assert not res.plan_reused and res.plan["onnx"] == "model.fp16.onnx"  # the fp32 plan was not reused
    assert res.entry["file"] == ENGINE16 and res.entry["verified"]["backend"] == "trt-fp16"
    assert (res.entry["verified"]["atol"], res.entry["verified"]["rtol"]) == (1e-2, 1e-2)
    manifest = json.loads((d / "manifest.json").read_text())
    assert [x["file"] for x in manifest["engines"]] == [ENGINE32, ENGINE16]
    assert (d / ENGINE32).read_bytes() == (d / "model.onnx").read_bytes()  # kept through the commit
    assert (d / ENGINE16).read_bytes() == (d / "model.fp16.onnx").read_bytes()
    assert Bundle.load(d).tampered_files() == []
    assert fake_gpu["builds"] == ["model.onnx", "model.fp16.onnx"]


def test_forgetting_force_leaves_the_bundle_as_it_was(export_tiny, copy_export, fake_gpu):
    """An fp16 plan recorded, then fp32 asked again without --force: the refusal came after plan_only had
    replaced trt/ (the fp16 kit) and the manifest with a new fp32 plan (final read of the fix rounds)."""
    d = copy_export(export_tiny(**LSTM_LEN))
    assert CliRunner().invoke(cli, ["optimize", str(d), "--fp16"]).exit_code == 0
    compile_engine(d)
    compile_engine(d, precision="fp16")
    before = {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}
    with pytest.raises(UsageError, match=r"already built and recorded .* pass --force"):
        compile_engine(d)  # the recorded plan is fp16's: not reusable for fp32
    after = {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}
    assert after == before
    assert json.loads((d / "trt" / "plan.json").read_text())["precision"] == "fp16"
    assert fake_gpu["builds"] == ["model.onnx", "model.fp16.onnx"]


def test_a_failing_engine_is_deleted_and_never_recorded(export_tiny, copy_export, fake_gpu):
    d = copy_export(export_tiny(**LSTM_LEN))
    assert CliRunner().invoke(cli, ["compile", str(d), "--plan-only"]).exit_code == 0
    before = tree(d)
    fake_gpu["perturb"] = 1e-2
    with pytest.raises(ParityError, match=r"failed its proof .* \(it was deleted and nothing was recorded\)") as info:
        compile_engine(d)
    assert info.value.exit_code == 1 and not info.value.report.passed
    assert tree(d) == before  # no engines/, no staging directory, manifest untouched
    res = CliRunner().invoke(cli, ["compile", str(d)])
    assert res.exit_code == 1, res.output
    assert "FAILED" in res.output and tree(d) == before


def test_interrupted_before_the_commit_records_nothing(export_tiny, copy_export, fake_gpu, monkeypatch):
    d = copy_export(export_tiny(**LSTM_LEN))
    assert CliRunner().invoke(cli, ["compile", str(d), "--plan-only"]).exit_code == 0
    before = tree(d)
    monkeypatch.setenv("SEQDEPLOY_FAULT_AT", "compile:engine-written")
    monkeypatch.setenv("SEQDEPLOY_FAULT_ACTION", "interrupt")
    # (The CLI turns this into exit 130: tested in a subprocess for the other writers, test_trt_interrupts.py.)
    with pytest.raises(KeyboardInterrupt):
        compile_engine(d)
    assert tree(d) == before


def test_parser_errors_name_the_node_and_leave_nothing(export_tiny, copy_export, fake_gpu, monkeypatch):
    d = copy_export(export_tiny(**LSTM_LEN))
    assert CliRunner().invoke(cli, ["compile", str(d), "--plan-only"]).exit_code == 0
    before = tree(d)
    node = next(n.name for n in onnx.load(str(d / "model.onnx")).graph.node if n.op_type == "LSTM")

    def reject(*args, **kwargs):
        raise ParseError("rejected", [ParserFailure(node, "UNSUPPORTED_NODE", "Assertion failed: something")])

    monkeypatch.setattr("seqdeploy.engine.build.build_serialized", reject)
    monkeypatch.setattr("seqdeploy.engine.compile._build", REAL_BUILD)  # the real one, with the rejecting parser
    with pytest.raises(ExportError) as info:
        compile_engine(d)
    msg = str(info.value)
    assert f"model.onnx: node '{node}': Assertion failed: something [UNSUPPORTED_NODE]" in msg
    assert "no seqdeploy lint rule predicts this error" in msg  # a clean export: no finding on that node
    assert "(no engine was written)" in msg  # the plan existed before this run
    assert info.value.exit_code == 1 and tree(d) == before
    # Without a plan, compile commits one first: the message says it stays (was: "nothing was written").
    shutil.rmtree(d)
    d = copy_export(export_tiny(**LSTM_LEN))
    with pytest.raises(ExportError, match=r"no engine was written; the plan trt/ written by this run stays recorded"):
        compile_engine(d)
    assert (d / "trt/plan.json").is_file() and "trt" in json.loads((d / "manifest.json").read_text())


def test_a_timing_cache_inside_the_bundle_is_refused(export_tiny, copy_export, fake_gpu):
    d = copy_export(export_tiny(**LSTM_LEN))
    before = tree(d)
    with pytest.raises(UsageError, match="keep the timing cache outside"):
        compile_engine(d, timing_cache=d / "trt" / "timing.cache")
    assert tree(d) == before


def test_engines_not_recorded_by_seqdeploy_are_never_deleted(export_tiny, copy_export, fake_gpu):
    d = copy_export(export_tiny(**LSTM_LEN))
    (d / "engines").mkdir()
    (d / "engines" / "sequence.fp32.sm75.trt10.plan").write_bytes(b"built by trtexec.sh")
    before = tree(d)
    with pytest.raises(UsageError, match=r"holds files seqdeploy did not build or record: \['engines/sequence"):
        compile_engine(d)
    assert tree(d) == before  # refused before anything was planned, built or staged


def test_compile_cli_reports_the_engine(export_tiny, copy_export, fake_gpu):
    d = copy_export(export_tiny(**LSTM_LEN))
    res = CliRunner().invoke(cli, ["compile", str(d), "--shapes", "1x1,2x4,4x8"])
    assert res.exit_code == 0, res.output
    assert "plan: written trt/plan.json (model.onnx, fp32)" in res.output
    assert "profile h0: min [1, 1, 4] opt [1, 2, 4] max [1, 4, 4]" in res.output
    assert f"built {ENGINE32} with TensorRT 10.16.1.11 on Tesla T4 (compute capability 7.5)" in res.output
    assert "verified vs fp32 torch (trt, atol 0.0001 rtol 0.0001, batches [1, 2, 3, 4], seqs [1, 4, 8]" in res.output
    assert "not run: step: engines are built for the sequence graph only" in res.output
    # Other --shapes: a new plan, and the engine is rebuilt from it (with --force).
    res = CliRunner().invoke(cli, ["compile", str(d), "--shapes", "1x1,2x4,5x9", "--force"])
    assert res.exit_code == 0, res.output
    assert "plan: written" in res.output and "max [1, 5, 4]" in res.output


# -- no TensorRT / no CUDA: exit 3, nothing written ---------------------------------------------------------

NO_TRT = importlib.util.find_spec("tensorrt") is not None


@pytest.mark.skipif(NO_TRT, reason="TensorRT is installed here: this test is about machines without it")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_compile_on_this_machine_exits_3_and_leaves_nothing(export_tiny, copy_export, precision):
    d = copy_export(export_tiny(**LSTM_LEN))
    if precision == "fp16":
        assert CliRunner().invoke(cli, ["optimize", str(d), "--fp16"]).exit_code == 0
    before = tree(d)
    res = CliRunner().invoke(cli, ["compile", str(d), "--precision", precision])
    assert res.exit_code == 3, res.output
    flag = "" if precision == "fp32" else " --precision fp16"
    for part in (
        "TensorRT's Python package is not installed",
        "pip install 'seqdeploy[gpu]'",
        "Engines must be built on the GPU that will run them (or one of the same compute capability",
        f"'seqdeploy compile {d}{flag} --plan-only'",
        f"{d}/trt/trtexec.sh build 10",
        "Nothing was written",
    ):
        assert part in res.output, part
    assert tree(d) == before


def test_compile_without_a_cuda_device_exits_3_and_leaves_nothing(export_tiny, copy_export, monkeypatch):
    d = copy_export(export_tiny(**LSTM_LEN))
    before = tree(d)

    def no_cuda(purpose):
        raise BackendUnavailable(
            f"TensorRT 10.16.1.11 is installed, but torch sees no CUDA device (needed for {purpose})"
        )

    monkeypatch.setattr(_trt, "running_target", no_cuda)
    res = CliRunner().invoke(cli, ["compile", str(d)])
    assert res.exit_code == 3, res.output
    assert "torch sees no CUDA device" in res.output and "seqdeploy[gpu]" in res.output
    assert "--plan-only" in res.output and tree(d) == before


def test_a_gpu_that_cannot_build_exits_3_before_the_plan_is_written(export_tiny, copy_export, monkeypatch):
    """TensorRT imports and torch sees the GPU, but the driver is broken: trt.Builder fails (pybind11's
    TypeError, NVIDIA/TensorRT#2913). Found before the plan is committed (was: trt/ rewritten, then exit 3)."""
    import sys

    from tests.unit import _fake_tensorrt

    d = copy_export(export_tiny(**LSTM_LEN))
    before = tree(d)
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_tensorrt.make_module(inputs={}, no_gpu=True))
    monkeypatch.setattr(type(_trt.trt), "_module", None)
    monkeypatch.setattr(_trt, "running_target", lambda purpose: T4)
    res = CliRunner().invoke(cli, ["compile", str(d)])
    assert res.exit_code == 3, res.output
    assert "could not create a builder" in res.output and "CUDA initialization failure" in res.output
    assert tree(d) == before and not (d / "trt").exists()


def test_a_tensorrt_that_fails_to_import_is_unavailable_not_a_crash(export_tiny, copy_export, monkeypatch):
    """A library mismatch makes the bindings raise OSError/RuntimeError on import (not ImportError)."""
    import importlib.util

    from seqdeploy.backends.probe import availability

    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args):
        return object() if name == "tensorrt" else real_find_spec(name, *args)

    def broken(*args, **kwargs):
        raise OSError("libnvinfer.so.10: version `TRT_10.16' not found")

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(_trt, "require", broken)
    monkeypatch.setattr(type(_trt.trt), "_module", None)
    ok, why = _trt.tensorrt_status()
    assert not ok and "does not import (OSError: libnvinfer.so.10" in why  # was: the OSError escaped (exit 70)
    ok, why = availability("trt-fp16")
    assert not ok and "OSError" in why
    d = copy_export(export_tiny(**LSTM_LEN))
    before = tree(d)
    res = CliRunner().invoke(cli, ["compile", str(d)])
    assert res.exit_code == 3 and "does not import" in res.output, res.output
    assert tree(d) == before


# -- the trt runner refuses before TensorRT is touched --------------------------------------------------------


def _recorded(export_tiny, copy_export, fake_gpu) -> Path:
    d = copy_export(export_tiny(**LSTM_LEN))
    compile_engine(d)
    return d


def test_trt_runner_refuses_an_engine_of_another_gpu(export_tiny, copy_export, fake_gpu, monkeypatch):
    from seqdeploy.backends.trt import TrtRunner

    d = _recorded(export_tiny, copy_export, fake_gpu)
    b = Bundle.load(d)
    monkeypatch.setattr("seqdeploy.backends.trt.running_target", lambda purpose: A10)
    runner = TrtRunner("trt", b.specs["sequence"], b.manifest, b.path, precision="fp32", graph="sequence")
    with pytest.raises(BackendUnavailable) as info:
        runner.__enter__()
    assert "built for compute capability 7.5 (Tesla T4), this GPU (NVIDIA A10) is 8.6" in str(info.value)
    assert f"seqdeploy compile {d}" in str(info.value)
    fp16 = TrtRunner("trt-fp16", b.specs["sequence"], b.manifest, b.path, precision="fp16", graph="sequence")
    with pytest.raises(UsageError, match=r"needs a fp16 TensorRT engine .* none recorded"):
        fp16.__enter__()


def test_trt_runner_refuses_a_missing_engine_file(export_tiny, copy_export, fake_gpu, monkeypatch):
    from seqdeploy.backends.trt import TrtRunner

    d = _recorded(export_tiny, copy_export, fake_gpu)
    b = Bundle.load(d)
    (d / ENGINE32).unlink()
    monkeypatch.setattr("seqdeploy.backends.trt.running_target", lambda purpose: T4)
    runner = TrtRunner("trt", b.specs["sequence"], b.manifest, b.path, precision="fp32", graph="sequence")
    with pytest.raises(IntegrityError, match="recorded in the manifest but missing"):
        runner.__enter__()


def test_trt_runner_refuses_an_engine_built_from_an_earlier_graph_file(
    export_tiny, copy_export, fake_gpu, monkeypatch
):
    """The real runner hashes the graph file on disk: an engine whose onnx_sha256 is another file's never runs,
    even when the manifest's table was not updated (a bundle accepted with --allow-modified)."""
    from seqdeploy.backends.trt import TrtRunner

    d = _recorded(export_tiny, copy_export, fake_gpu)
    perturb_weight(d / "model.onnx", delta=1e-3)  # the graph file changes (and is re-stamped)
    b = Bundle.load(d)
    monkeypatch.setattr("seqdeploy.backends.trt.running_target", lambda purpose: T4)
    runner = TrtRunner("trt", b.specs["sequence"], b.manifest, b.path, precision="fp32", graph="sequence")
    with pytest.raises(UsageError, match=r"was built from an earlier model\.onnx") as info:
        runner.__enter__()
    assert f"Rebuild it on this GPU with 'seqdeploy compile {d}'" in str(info.value)


def test_trt_runner_refuses_shapes_outside_the_profile_before_launching(export_tiny, copy_export, fake_gpu):
    from seqdeploy.backends.trt import TrtRunner

    d = _recorded(export_tiny, copy_export, fake_gpu)
    b = Bundle.load(d)
    runner = TrtRunner("trt", b.specs["sequence"], b.manifest, b.path, precision="fp32", graph="sequence")
    entry = b.manifest["engines"][0]
    # As _load leaves it; the context and stream are sentinels: reaching TensorRT would fail differently.
    runner._profile, runner._context, runner._stream, runner._active = entry["profiles"][0], object(), object(), True
    with pytest.raises(UsageError) as info:
        runner.infer(make_feeds(runner.spec, 7, 30, seed=0))
    msg = str(info.value)
    assert "input 'input': shape [30, 7, 5] is outside the profile (axis 0: 1..24, axis 1: 1..6, axis 2: 5..5)" in msg
    assert "input 'h0': shape [1, 7, 4] is outside the profile" in msg and "--shapes MIN,OPT,MAX" in msg


# -- ort-trt: options from the same plan -----------------------------------------------------------------------


def test_ort_trt_takes_its_profile_and_fp16_file_from_the_plan(export_tiny, copy_export):
    d = copy_export(export_tiny(**LSTM_LEN))
    assert CliRunner().invoke(cli, ["optimize", str(d), "--fp16"]).exit_code == 0
    res = CliRunner().invoke(cli, ["compile", str(d), "--plan-only", "--shapes", "1x2,2x8,4x16", "--opt-level", "4"])
    assert res.exit_code == 0, res.output
    b = Bundle.load(d)
    plan = json.loads((d / "trt/plan.json").read_text())
    r = backends.make_runner("ort-trt", b)
    assert r.path == d / "model.onnx"
    for which in ("min", "opt", "max"):
        assert r.provider_options[f"trt_profile_{which}_shapes"] == trtexec_shapes(plan["profiles"][0], which)
    assert r.provider_options["trt_profile_max_shapes"] == "input:16x4x5,lengths:4,h0:1x4x4,c0:1x4x4"
    assert r.provider_options["trt_builder_optimization_level"] == "4"
    assert r.provider_options["trt_fp16_enable"] == "False"
    assert r.cache_dir is not None and r.cache_dir.parent == d / "cache/ort-trt"
    assert r.provider_options["trt_engine_cache_path"] == str(r.cache_dir)
    # fp16: the fp16 file; the recorded plan is for model.onnx, so its profile comes from the config.
    r16 = backends.make_runner("ort-trt-fp16", b)
    assert r16.path == d / "model.fp16.onnx" and r16.provider_options["trt_fp16_enable"] == "True"
    assert r16.provider_options["trt_profile_max_shapes"] == "input:24x6x5,lengths:6,h0:1x6x4,c0:1x6x4"
    assert r16.cache_dir != r.cache_dir
    # No TensorRT provider here: refused before a cache directory is made; the bundle stays intact.
    with pytest.raises(BackendUnavailable, match="TensorrtExecutionProvider"), r:
        pass
    assert not (d / "cache").exists()
    assert Bundle.load(d).tampered_files() == []


def _another_fp16_file(real):
    """The fp16 pass writing another file (a re-trained model, a newer pass); the same numbers here."""

    def rebuilt(model):
        m = real(model)
        onnx.helper.set_model_props(m, {**{p.key: p.value for p in m.metadata_props}, "rebuilt": "yes"})
        return m

    return rebuilt


def test_a_replaced_graph_file_takes_its_engine_and_plan_along(export_tiny, copy_export, fake_gpu, monkeypatch):
    """optimize --fp16 run again replaces model.fp16.onnx: the engine and the kit built from the old file go
    (they would run the old model under the new file's name); what was built from other files stays."""
    import seqdeploy.fp16 as fp16

    d = copy_export(export_tiny(**LSTM_LEN))
    assert CliRunner().invoke(cli, ["optimize", str(d), "--fp16"]).exit_code == 0
    compile_engine(d)
    compile_engine(d, precision="fp16")  # the recorded plan is now the fp16 one
    assert CliRunner().invoke(cli, ["optimize", str(d), "--fp16"]).exit_code == 0  # same file: nothing dropped
    manifest = json.loads((d / "manifest.json").read_text())
    assert [e["file"] for e in manifest["engines"]] == [ENGINE32, ENGINE16] and manifest["trt"]["precision"] == "fp16"

    monkeypatch.setattr(fp16, "convert_to_fp16", _another_fp16_file(fp16.convert_to_fp16))
    res = CliRunner().invoke(cli, ["optimize", str(d), "--fp16"])
    assert res.exit_code == 0, res.output
    manifest = json.loads((d / "manifest.json").read_text())
    assert [e["file"] for e in manifest["engines"]] == [ENGINE32]  # was: ENGINE16 kept, built from the old file
    assert "trt" not in manifest and not (d / "trt").exists()  # the fp16 plan and kit went with it
    assert not (d / ENGINE16).exists() and (d / ENGINE32).read_bytes() == (d / "model.onnx").read_bytes()
    assert not any(f.startswith(("trt/", ENGINE16)) for f in manifest["files"])
    assert Bundle.load(d).tampered_files() == []
    res16 = compile_engine(d, precision="fp16")  # was: "already built and recorded" without --force
    assert not res16.plan_reused and res16.entry["onnx_sha256"] == sha256(d / "model.fp16.onnx")


def test_engines_go_only_when_nothing_unrecorded_is_beside_them(export_tiny, copy_export, fake_gpu, monkeypatch):
    import seqdeploy.fp16 as fp16

    d = copy_export(export_tiny(**LSTM_LEN))
    assert CliRunner().invoke(cli, ["optimize", str(d), "--fp16"]).exit_code == 0
    compile_engine(d, precision="fp16")
    (d / "engines" / "mine.plan").write_bytes(b"built by hand")
    before = tree(d)
    monkeypatch.setattr(fp16, "convert_to_fp16", _another_fp16_file(fp16.convert_to_fp16))
    res = CliRunner().invoke(cli, ["optimize", str(d), "--fp16"])
    assert res.exit_code == 2 and "engines/mine.plan" in res.output
    assert tree(d) == before  # refused at the commit: nothing recorded, the stray file kept


def test_a_plan_from_before_strong_typing_on_every_line_is_made_again() -> None:
    from seqdeploy.engine.compile import _reusable

    axes = {"batch": [1, 2, 4], "seq": [1, 8, 16]}
    typed = {"10.x": {"strongly_typed": True}, "11.x": {"strongly_typed": True}}
    new = {"axes": axes, "tensorrt": {"per_line": typed}}
    old = {"axes": axes, "tensorrt": {"per_line": {**typed, "10.x": {"strongly_typed": False}}}}
    assert _reusable(new, axes, shapes_given=False) and _reusable(new, axes, shapes_given=True)
    assert not _reusable(old, axes, shapes_given=False)
    assert not _reusable(None, axes, shapes_given=False)
