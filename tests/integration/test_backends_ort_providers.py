"""How ``OrtRunner`` asks ONNX Runtime for a GPU provider, on a stand-in ``onnxruntime`` module that records
the session it is asked for (no GPU provider exists here). ``ort-trt`` must be TensorRT's numbers only: no
node may fall back to the CPU provider."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from seqdeploy.backends import onnxrt
from seqdeploy.backends.onnxrt import DISABLE_CPU_FALLBACK, OrtRunner
from seqdeploy.errors import BackendUnavailable
from seqdeploy.spec import spec_from_config
from tests.conftest import tiny_config

FALLBACK_ERROR = (
    "[ONNXRuntimeError] : 1 : FAIL : This session contains graph nodes that are assigned to the default CPU EP, "
    "but fallback to CPU EP has been explicitly disabled by the user."
)


class _Options:
    def __init__(self) -> None:
        self.config: dict[str, str] = {}
        self.log_severity_level = 0
        self.intra_op_num_threads = 0

    def add_session_config_entry(self, key: str, value: str) -> None:
        self.config[key] = value


class _FakeOrt:
    __version__ = "1.32.0"

    def __init__(self, fail: str | None = None) -> None:
        self.fail = fail
        self.sessions: list[tuple[_Options, list[Any]]] = []
        self.SessionOptions = _Options

    def get_available_providers(self) -> list[str]:
        return ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]

    def InferenceSession(self, path: str, sess_options: _Options, providers: list[Any]) -> Any:
        self.sessions.append((sess_options, providers))
        if self.fail:
            raise RuntimeError(self.fail)
        first = providers[0][0] if isinstance(providers[0], tuple) else providers[0]

        class _Session:
            def get_providers(self) -> list[str]:
                return [first, "CPUExecutionProvider"]

        return _Session()


def _runner(monkeypatch, fake: _FakeOrt, device: str) -> OrtRunner:
    monkeypatch.setattr(onnxrt, "require", lambda *a, **kw: fake)
    spec = spec_from_config(tiny_config())
    return OrtRunner(f"ort-{device}", spec, Path("/b/model.onnx"), device=device, provider_options={"x": "1"})


def test_ort_trt_forbids_cpu_fallback(monkeypatch):
    fake = _FakeOrt()
    with _runner(monkeypatch, fake, "trt"):
        pass
    ((opts, providers),) = fake.sessions
    assert opts.config == {DISABLE_CPU_FALLBACK: "1"}  # was: CPUExecutionProvider appended, nothing checked
    assert providers == [("TensorrtExecutionProvider", {"x": "1"})]  # ORT refuses the CPU EP beside the flag


def test_a_graph_tensorrt_does_not_take_whole_is_refused(monkeypatch):
    fake = _FakeOrt(fail=FALLBACK_ERROR)
    runner = _runner(monkeypatch, fake, "trt")
    with pytest.raises(BackendUnavailable, match=r"does not take every node of model\.onnx") as info, runner:
        pass
    assert "Use backend 'trt'" in str(info.value) and info.value.exit_code == 3


def test_ort_cuda_keeps_the_cpu_provider_for_shape_nodes(monkeypatch):
    fake = _FakeOrt()
    with _runner(monkeypatch, fake, "cuda"):
        pass
    ((opts, providers),) = fake.sessions
    assert opts.config == {} and providers == [("CUDAExecutionProvider", {"use_tf32": 0}), "CPUExecutionProvider"]
