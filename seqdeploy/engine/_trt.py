"""The TensorRT module, imported lazily but **typed as the real one**, and what both the builder and the
runner ask of the machine (the running GPU, a logger that keeps TensorRT's messages).

``trt`` below is, for mypy, ``import tensorrt as trt`` — every ``trt.X`` in seqdeploy is checked against
TensorRT's Python API (tensorrt-stubs 10.13, repaired into ``typings/`` by ``scripts/typings.py``; a
misspelled method fails ``scripts/check``). At run time it is a proxy that imports TensorRT on first
use through :func:`seqdeploy._lazy.require`, so a missing TensorRT is a :class:`BackendUnavailable`
naming the ``gpu`` extra, and ``import seqdeploy`` never imports TensorRT.

Where TensorRT 11.x differs from the 10.13 stubs, the difference lives in one small pure function,
:func:`seqdeploy.engine.target.network_creation_flags`; nothing else here or in the callers uses an
API that 11.x removed (``BuilderFlag.FP16``, ``EXPLICIT_BATCH``, ``device_memory_size``, calibrators).
"""

from __future__ import annotations

import importlib.util
from types import ModuleType
from typing import TYPE_CHECKING, Any

from seqdeploy._lazy import require
from seqdeploy.engine.target import GpuTarget, trt_line
from seqdeploy.errors import BackendUnavailable

if TYPE_CHECKING:
    import tensorrt as trt
else:

    class _LazyTensorRT:
        """Stands in for the ``tensorrt`` module until first use (then every attribute is the real one)."""

        _module: ModuleType | None = None

        def __getattr__(self, name: str) -> Any:
            if _LazyTensorRT._module is None:
                _LazyTensorRT._module = require("tensorrt", extra="gpu", purpose="TensorRT engines")
            return getattr(_LazyTensorRT._module, name)

    trt = _LazyTensorRT()

__all__ = ["CollectingLogger", "build_target", "collecting_logger", "running_target", "tensorrt_status", "trt"]


def tensorrt_status() -> tuple[bool, str]:
    """``(True, version)`` when TensorRT imports, else ``(False, why)`` — without raising.

    Any failure of the import is "unavailable", not a crash: a missing ``libnvinfer`` is an ImportError,
    but a library of the wrong version or a broken CUDA install surfaces as OSError or RuntimeError from
    the bindings' initialisation.
    """
    try:
        if importlib.util.find_spec("tensorrt") is None:
            return False, "TensorRT's Python package is not installed"
        version = trt.__version__
    except BackendUnavailable as exc:  # installed, but its libraries do not load (libnvinfer missing, ...)
        return False, f"TensorRT is installed but does not import ({exc.__cause__ or exc})"
    except Exception as exc:  # noqa: BLE001 - OSError, RuntimeError, ... from the bindings: unavailable
        return False, f"TensorRT is installed but does not import ({type(exc).__name__}: {exc})"
    return True, str(version)


def running_target(purpose: str) -> GpuTarget:
    """The GPU (device 0, through torch) and the TensorRT version of this process.

    Raises:
        BackendUnavailable: TensorRT is not installed or does not import, its version is not 10.x/11.x,
            or torch has no CUDA device (the message says which).
    """
    ok, what = tensorrt_status()
    if not ok:
        raise BackendUnavailable(f"{what} (needed for {purpose})")
    trt_line(what)
    torch = require("torch", extra="export", purpose=purpose)
    if not torch.cuda.is_available():
        raise BackendUnavailable(
            f"TensorRT {what} is installed, but torch {torch.__version__} sees no CUDA device (needed for {purpose}: "
            "engines are built and run on the GPU; install a CUDA build of torch and check the driver with nvidia-smi)"
        )
    major, minor = torch.cuda.get_device_capability(0)
    return GpuTarget(
        tensorrt=what,
        compute_capability=f"{major}.{minor}",
        gpu_name=str(torch.cuda.get_device_name(0)),
        cuda=torch.version.cuda,
    )


def build_target(purpose: str) -> GpuTarget:
    """:func:`running_target`, and proof that TensorRT can create a builder here (the cheapest call that
    needs a working driver): ``seqdeploy compile`` asks before it writes anything (the plan included), so
    a machine that cannot build exits 3 with the bundle untouched.

    Raises:
        BackendUnavailable: As :func:`running_target`, or TensorRT cannot create a builder.
    """
    target = running_target(purpose)
    sink = CollectingLogger()
    try:
        builder = trt.Builder(collecting_logger(sink))
    except Exception as exc:  # noqa: BLE001 - no GPU: pybind11's TypeError (NVIDIA/TensorRT#2913); others too
        why = "; ".join(sink.errors()) or "no usable CUDA device or driver"
        raise BackendUnavailable(f"TensorRT {target.tensorrt} could not create a builder ({exc}): {why}") from None
    del builder
    return target


class CollectingLogger:
    """The messages a TensorRT logger received (``"ERROR: ..."``), for error reports."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def errors(self) -> list[str]:
        """The messages of severity ERROR and INTERNAL_ERROR."""
        return [m for m in self.messages if m.startswith(("ERROR", "INTERNAL_ERROR"))]


def collecting_logger(sink: CollectingLogger, *, verbose: bool = False) -> trt.ILogger:
    """A ``trt.ILogger`` that records warnings and errors (and info with ``verbose``) into ``sink``.

    TensorRT reports why a build failed (out of workspace, unsupported tactic, ...) only through its
    logger; ``build_serialized_network`` just returns ``None``. Keeping the messages lets the error say why.
    """
    floor = trt.ILogger.Severity.INFO if verbose else trt.ILogger.Severity.WARNING

    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)  # pybind11 trampolines need the base initialised explicitly

        def log(self, severity: trt.ILogger.Severity, msg: str) -> None:
            if severity <= floor:
                sink.messages.append(f"{severity.name}: {msg}")

    return _Logger()
