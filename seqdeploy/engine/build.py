"""Build a serialized TensorRT engine from a plan — the only place seqdeploy calls TensorRT's builder.

Thin on purpose: every decision (the ONNX file, the profile, the builder settings, the network flags of
each TensorRT line) comes from :mod:`seqdeploy.engine.plan` and :mod:`seqdeploy.engine.target`, which are
tested on a CPU. What is left is the sequence of TensorRT calls, type-checked against TensorRT's API
(``scripts/check``) and run only on a GPU machine with TensorRT.

**Never run in this project's CI**: no machine here has TensorRT or a GPU (``docs/tensorrt.md``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqdeploy.engine._trt import CollectingLogger, collecting_logger, trt
from seqdeploy.engine.target import ParserFailure, network_creation_flags
from seqdeploy.errors import BackendUnavailable, ExportError

__all__ = ["BuildResult", "ParseError", "build_serialized"]


class ParseError(ExportError):
    """TensorRT's ONNX parser rejected the graph; ``failures`` holds every error with its node."""

    def __init__(self, message: str, failures: list[ParserFailure]) -> None:
        super().__init__(message)
        self.failures = failures


@dataclass
class BuildResult:
    """A serialized engine and what the build left behind."""

    plan: bytes
    timing_cache: bytes | None
    seconds: float
    warnings: list[str] = field(default_factory=list)


def _dims(shape: Any) -> trt.Dims:
    # IOptimizationProfile.set_shape is typed with Dims in the stubs; the bindings also take tuples, but
    # passing Dims keeps the call checked rather than silenced.
    return trt.Dims([int(d) for d in shape])


def _code_name(code: trt.ErrorCode) -> str:
    # pybind11 enums print as "ErrorCode.UNSUPPORTED_NODE"; the stubs type ``.name`` as a static method (a
    # stub generation artefact), so the member name is taken from str(), which both agree on.
    return str(code).rsplit(".", 1)[-1]


def _shape_list(dims: trt.Dims) -> list[int]:
    return [int(dims[i]) for i in range(len(dims))]


def build_serialized(
    onnx_path: Path,
    profile: Mapping[str, Mapping[str, Any]],
    *,
    line: str,
    workspace_gib: int,
    opt_level: int,
    strongly_typed: bool = True,
    timing_cache: bytes | None = None,
    verbose: bool = False,
) -> BuildResult:
    """Parse ``onnx_path`` into a (strongly typed, per the plan) network and build it with one profile.

    Args:
        onnx_path: The plan's graph file (``model.onnx`` or ``model.fp16.onnx``); parsed with
            ``parse_from_file`` so that external data next to it is found.
        profile: ``{input: {"min", "opt", "max"}}`` for every dynamic input (the plan's ``profiles[0]``).
        line: ``"10.x"`` or ``"11.x"`` (decides the network flags, nothing else).
        workspace_gib: Workspace memory pool limit.
        opt_level: Builder optimization level (0..5).
        strongly_typed: The plan's ``per_line[line]["strongly_typed"]`` (always true in plans seqdeploy
            writes; 11.x is strongly typed whatever it says).
        timing_cache: A serialized timing cache to start from (``None``: a new one).
        verbose: Keep TensorRT's info messages too.

    Raises:
        BackendUnavailable: TensorRT cannot create a builder (no usable CUDA device or driver).
        ParseError: The parser rejected the graph (every error, with its node).
        ExportError: The network does not match the profile, or the build failed (TensorRT's errors).
    """
    sink = CollectingLogger()
    logger = collecting_logger(sink, verbose=verbose)
    start = time.perf_counter()
    try:
        builder = trt.Builder(logger)
    except TypeError as exc:
        # Without a usable GPU the factory returns nullptr and pybind11 raises TypeError
        # (NVIDIA/TensorRT#2913, #308, #635); TensorRT logged the CUDA error first.
        raise BackendUnavailable(
            f"TensorRT could not create a builder: {exc}; {'; '.join(sink.errors()) or 'no CUDA device or driver'}"
        ) from None
    network = builder.create_network(
        network_creation_flags(
            line, int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED), strongly_typed=strongly_typed
        )
    )
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        failures = []
        for i in range(parser.num_errors):
            err: trt.ParserError = parser.get_error(i)
            failures.append(
                ParserFailure(
                    node=err.node_name(), code=_code_name(err.code()), message=err.desc(), operator=err.node_operator()
                )
            )
        raise ParseError(f"TensorRT's ONNX parser rejected {onnx_path.name}", failures)
    network_inputs = {t.name: _shape_list(t.shape) for t in (network.get_input(i) for i in range(network.num_inputs))}
    dynamic = sorted(n for n, shape in network_inputs.items() if -1 in shape)
    missing = [n for n in dynamic if n not in profile]
    unknown = [n for n in profile if n not in network_inputs]
    if missing or unknown:
        raise ExportError(
            f"{onnx_path.name}: the plan's profile does not fit the parsed network (dynamic inputs without a "
            f"profile: {missing}; profile entries that are not network inputs: {unknown}); re-run "
            "'seqdeploy compile DIR --plan-only'"
        )

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib) << 30)
    config.builder_optimization_level = int(opt_level)
    # fp32 means fp32: TF32 is on by default for fp32 matmuls on Ampere and newer (T4 has none, but an
    # engine built elsewhere for a parity check must not differ by TF32's 1e-3).
    config.clear_flag(trt.BuilderFlag.TF32)
    opt_profile = builder.create_optimization_profile()
    for name, shapes in profile.items():
        opt_profile.set_shape(name, _dims(shapes["min"]), _dims(shapes["opt"]), _dims(shapes["max"]))
    config.add_optimization_profile(opt_profile)
    cache = config.create_timing_cache(timing_cache or b"")
    config.set_timing_cache(cache, ignore_mismatch=False)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(
            f"TensorRT could not build {onnx_path.name}:\n  " + "\n  ".join(sink.errors() or sink.messages[-10:])
        )
    plan = bytes(serialized)
    new_cache = bytes(cache.serialize())
    return BuildResult(
        plan=plan,
        timing_cache=new_cache,
        seconds=time.perf_counter() - start,
        warnings=[m for m in sink.messages if m.startswith("WARNING")],
    )
