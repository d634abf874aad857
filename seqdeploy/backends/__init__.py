"""Backends by name. Importing this module imports neither torch nor onnxruntime.

==============  =====================================================  =========  ===========
name            what runs                                              precision  extra
==============  =====================================================  =========  ===========
torch           the config-built PyTorch model, eager, on the CPU       fp32       (core)
torch-cuda      the same on a CUDA device                              fp32       CUDA torch
ort-cpu         ONNX Runtime, CPUExecutionProvider                     fp32       ``cpu``
ort-cuda        ONNX Runtime, CUDAExecutionProvider                    fp32       ``gpu``
ort-trt         ONNX Runtime, TensorrtExecutionProvider                fp32       ``gpu``
ort-cpu-int8    ONNX Runtime CPU on the dynamically quantized variant  int8       ``cpu``
ort-cpu-fp16    ONNX Runtime CPU on the fp16 variant (TensorRT's file)  fp16       ``cpu``
                (ORT CPU has no fp16 LSTM/Gemm kernel: it casts around
                them, so the recurrence itself runs in fp32)
ort-trt-fp16    ONNX Runtime TensorrtExecutionProvider on the fp16     fp16       ``gpu``
                variant, ``trt_fp16_enable``
trt             native TensorRT engine recorded by ``seqdeploy         fp32       ``gpu``
                compile`` (built on this GPU and TensorRT version)
trt-fp16        the same, built from the fp16 variant                  fp16       ``gpu``
==============  =====================================================  =========  ===========

``ort-trt``/``ort-trt-fp16`` take their TensorRT options from the same plan as ``trt``/``trt-fp16``
(profiles for every dynamic input, workspace, optimization level; :mod:`seqdeploy.backends.ort_trt`).
TensorRT backends are judged at the plan's tolerances (:data:`seqdeploy.engine.plan.KIT_TOLERANCES`:
fp32 atol = rtol = 1e-4, issue 8's target, looser than the CPU's 1e-5 since TensorRT's GEMM tactics
accumulate in another order; fp16 verify's fp16 tolerance).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from seqdeploy.backends.base import BaseRunner, Runner
from seqdeploy.engine.plan import KIT_TOLERANCES
from seqdeploy.errors import UsageError
from seqdeploy.manifest import Bundle

__all__ = ["BACKENDS", "BackendInfo", "BaseRunner", "Runner", "get_backend", "make_runner", "parse_backends"]

Precision = Literal["fp32", "fp16", "int8"]
Factory = Callable[[str, Bundle, str, "int | None"], BaseRunner]


@dataclass(frozen=True, slots=True)
class BackendInfo:
    """A registered backend: its name, numeric precision, device and how to build its runner."""

    name: str
    precision: Precision
    device: Literal["cpu", "cuda"]
    description: str
    factory: Factory
    graphs: tuple[str, ...] = ("sequence", "step")
    tolerance: tuple[float, float] | None = None
    """``(atol, rtol)`` when the backend's numerics need other defaults than its precision's."""


def _torch(device: str) -> Factory:
    def make(name: str, bundle: Bundle, graph: str, threads: int | None) -> BaseRunner:
        from seqdeploy.backends.pyt import TorchRunner

        return TorchRunner(
            name, bundle.specs[graph], bundle.config, bundle.weights_path, device=device, threads=threads
        )

    return make


def _ort(device: str) -> Factory:
    def make(name: str, bundle: Bundle, graph: str, threads: int | None) -> BaseRunner:
        from seqdeploy.backends.onnxrt import OrtRunner

        return OrtRunner(name, bundle.specs[graph], bundle.graph_path(graph), device=device, threads=threads)

    return make


def _ort_int8(name: str, bundle: Bundle, graph: str, threads: int | None) -> BaseRunner:
    from seqdeploy.backends.onnxrt import OrtRunner
    from seqdeploy.lint.bundle import variant_path

    path = variant_path(bundle, "int8", graph, needed_by=f"backend '{name}'")
    return OrtRunner(name, bundle.specs[graph], path, device="cpu", threads=threads)


def _ort_fp16(name: str, bundle: Bundle, graph: str, threads: int | None) -> BaseRunner:
    from seqdeploy.backends.onnxrt import OrtRunner
    from seqdeploy.lint.bundle import variant_path

    # Through Bundle.file: a variant recorded outside the bundle ('../outside/evil.onnx') is refused.
    path = variant_path(bundle, "fp16", graph, needed_by=f"backend '{name}'")
    return OrtRunner(name, bundle.specs[graph], path, device="cpu", threads=threads)


def _ort_trt(precision: str) -> Factory:
    def make(name: str, bundle: Bundle, graph: str, threads: int | None) -> BaseRunner:
        from seqdeploy.backends.ort_trt import make_ort_trt

        return make_ort_trt(name, bundle, graph, threads, precision=precision)

    return make


def _trt(precision: str) -> Factory:
    def make(name: str, bundle: Bundle, graph: str, threads: int | None) -> BaseRunner:
        from seqdeploy.backends.trt import TrtRunner

        return TrtRunner(name, bundle.specs[graph], bundle.manifest, bundle.path, precision=precision, graph=graph)

    return make


def _register(*infos: BackendInfo) -> dict[str, BackendInfo]:
    table: dict[str, BackendInfo] = {}
    for info in infos:
        if info.name in table:  # a duplicate would silently shadow a backend
            raise AssertionError(f"backend '{info.name}' registered twice")
        table[info.name] = info
    return table


BACKENDS: dict[str, BackendInfo] = _register(
    BackendInfo("torch", "fp32", "cpu", "PyTorch eager on the CPU (the default reference)", _torch("cpu")),
    BackendInfo("torch-cuda", "fp32", "cuda", "PyTorch eager on a CUDA device", _torch("cuda")),
    BackendInfo("ort-cpu", "fp32", "cpu", "ONNX Runtime CPUExecutionProvider", _ort("cpu")),
    BackendInfo("ort-cuda", "fp32", "cuda", "ONNX Runtime CUDAExecutionProvider", _ort("cuda")),
    BackendInfo(
        "ort-trt",
        "fp32",
        "cuda",
        "ONNX Runtime TensorrtExecutionProvider, options from the TensorRT plan",
        _ort_trt("fp32"),
        tolerance=KIT_TOLERANCES["fp32"],
    ),
    BackendInfo(
        "ort-cpu-int8",
        "int8",
        "cpu",
        "ONNX Runtime CPU, dynamically quantized int8 variant",
        _ort_int8,
        graphs=("sequence",),
    ),
    BackendInfo(
        "ort-cpu-fp16",
        "fp16",
        "cpu",
        "ONNX Runtime CPU on the fp16 variant (the file TensorRT builds for fp16)",
        _ort_fp16,
    ),
    BackendInfo(
        "ort-trt-fp16",
        "fp16",
        "cuda",
        "ONNX Runtime TensorrtExecutionProvider on the fp16 variant",
        _ort_trt("fp16"),
        tolerance=KIT_TOLERANCES["fp16"],
    ),
    BackendInfo(
        "trt",
        "fp32",
        "cuda",
        "TensorRT engine recorded by 'seqdeploy compile' (native runtime)",
        _trt("fp32"),
        graphs=("sequence",),
        tolerance=KIT_TOLERANCES["fp32"],
    ),
    BackendInfo(
        "trt-fp16",
        "fp16",
        "cuda",
        "TensorRT engine built from the fp16 variant (native runtime)",
        _trt("fp16"),
        graphs=("sequence",),
        tolerance=KIT_TOLERANCES["fp16"],
    ),
)


def get_backend(name: str) -> BackendInfo:
    """The backend called ``name``.

    Raises:
        UsageError: Unknown name; the message lists the known ones.
    """
    try:
        return BACKENDS[name]
    except KeyError:
        raise UsageError(f"unknown backend '{name}'; known backends: {', '.join(BACKENDS)}") from None


def parse_backends(text: str) -> list[str]:
    """Split a ``torch,ort-cpu`` list, checking every name and refusing duplicates."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UsageError(f"expected a comma-separated list of backends ({', '.join(BACKENDS)}), got {text!r}")
    for n in names:
        get_backend(n)
    if len(set(names)) != len(names):
        raise UsageError(f"backend listed twice in {text!r}")
    return names


def make_runner(name: str, bundle: Bundle, graph: str = "sequence", *, threads: int | None = None) -> BaseRunner:
    """A runner for backend ``name`` on one graph of ``bundle`` (not yet entered)."""
    info = get_backend(name)
    if graph not in info.graphs:
        raise UsageError(f"backend '{name}' cannot run the '{graph}' graph (it supports {list(info.graphs)})")
    if graph not in bundle.specs:
        bundle.graph_path(graph)  # raises the "re-export with --step" message
    return info.factory(name, bundle, graph, threads)
