"""The builder's control flow on a fake ``tensorrt`` module (see ``_fake_tensorrt``): flags per line, the
profile for every dynamic input as ``Dims``, builder settings, the timing cache, parser errors with
their nodes, a failed build with TensorRT's own messages, no GPU. The real TensorRT never runs here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from seqdeploy.engine import _trt
from seqdeploy.errors import BackendUnavailable, ExportError
from tests.unit import _fake_tensorrt

PROFILE = {
    "input": {"min": [1, 1], "opt": [6, 3], "max": [24, 6]},
    "h0": {"min": [1, 1, 4], "opt": [1, 3, 4], "max": [1, 6, 4]},
}
INPUTS = {"input": [-1, -1], "h0": [1, -1, 4], "scale": [3]}  # "scale": a static input needs no profile


@pytest.fixture
def fake_trt(monkeypatch):
    def install(**kwargs):
        mod = _fake_tensorrt.make_module(**{"inputs": INPUTS, **kwargs})
        monkeypatch.setitem(sys.modules, "tensorrt", mod)
        monkeypatch.setattr(type(_trt.trt), "_module", None)  # the lazy proxy imports it again
        return mod

    yield install
    type(_trt.trt)._module = None


def build(line="10.x", **kw):
    from seqdeploy.engine.build import build_serialized

    return build_serialized(Path("/x/model.onnx"), PROFILE, line=line, workspace_gib=2, opt_level=4, **kw)


def test_builds_strongly_typed_with_the_plan_profile_and_settings(fake_trt):
    mod = fake_trt()
    res = build(timing_cache=b"old")
    net, cfg = mod.calls["network"], mod.calls["config"]
    assert net.flags == 1 << 1  # 10.x: STRONGLY_TYPED opt-in
    assert mod.calls["parsed"] == "/x/model.onnx"  # parse_from_file: external data next to it is found
    assert cfg.pools == {mod.MemoryPoolType.WORKSPACE: 2 << 30}
    assert cfg.builder_optimization_level == 4
    assert cfg.cleared == [mod.BuilderFlag.TF32]
    (prof,) = cfg.profiles
    assert prof.shapes == {n: (p["min"], p["opt"], p["max"]) for n, p in PROFILE.items()}
    assert cfg.cache.blob == b"old" and cfg.ignore_mismatch is False
    assert res.timing_cache == b"old+timed"
    assert res.plan.startswith(b"ENGINE:")
    assert res.warnings == ["WARNING: a warning worth keeping"]  # info dropped unless verbose


def test_the_plans_typing_reaches_the_network(fake_trt):
    mod = fake_trt()
    build(strongly_typed=False)  # a plan that says weakly typed for 10.x (none seqdeploy writes)
    assert mod.calls["network"].flags == 0


def test_compile_builds_with_the_plans_flag_for_the_line(monkeypatch):
    from seqdeploy.engine import build as build_mod
    from seqdeploy.engine.compile import _build
    from seqdeploy.engine.target import GpuTarget

    seen = {}
    monkeypatch.setattr(build_mod, "build_serialized", lambda *a, **kw: seen.update(kw))

    class _Bundle:
        def file(self, rel):
            return Path("/x") / rel

    plan = {
        "onnx": "model.onnx",
        "profiles": [PROFILE],
        "strongly_typed": True,
        "tensorrt": {"per_line": {"10.x": {"strongly_typed": False}, "11.x": {"strongly_typed": True}}},
    }
    builder = {"workspace_gib": 2, "optimization_level": 3}
    _build(_Bundle(), plan, GpuTarget("10.16.1.11", "7.5", "T4", None), builder, None, False)
    assert seen["strongly_typed"] is False  # read from the plan's line (was: never read)
    _build(_Bundle(), plan, GpuTarget("11.4.0.106", "7.5", "T4", None), builder, None, False)
    assert seen["strongly_typed"] is True


def test_trt11_gets_no_deprecated_flag(fake_trt):
    mod = fake_trt()
    build(line="11.x")
    assert mod.calls["network"].flags == 0


def test_parser_errors_keep_their_nodes(fake_trt):
    from seqdeploy.engine.build import ParseError

    fake_trt(parse_errors=[("/rnn/LSTM", "Assertion failed: layout == 0"), ("", "opset 30 unsupported")])
    with pytest.raises(ParseError) as info:
        build()
    assert [(f.node, f.operator, f.code, f.message) for f in info.value.failures] == [
        ("/rnn/LSTM", "LSTM", "UNSUPPORTED_NODE", "Assertion failed: layout == 0"),  # was op="ErrorCode...."
        ("", "", "UNSUPPORTED_NODE", "opset 30 unsupported"),
    ]
    assert info.value.exit_code == 1


def test_a_dynamic_input_without_profile_is_refused(fake_trt):
    fake_trt(inputs={**INPUTS, "c0": [1, -1, 4]})
    with pytest.raises(ExportError, match=r"dynamic inputs without a profile: \['c0'\]"):
        build()


def test_a_failed_build_says_what_tensorrt_logged(fake_trt):
    fake_trt(build_fails=True)
    with pytest.raises(ExportError, match="out of workspace memory"):
        build()


def test_no_gpu_is_backend_unavailable_with_the_cuda_error(fake_trt):
    fake_trt(no_gpu=True)
    with pytest.raises(BackendUnavailable, match="CUDA initialization failure"):
        build()
