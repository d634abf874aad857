"""TensorRT in the torch-free runtime: a packaged engine (``PKG/NAME_trt/``) run through Polygraphy.

**This path has never run.** No machine this project is developed on has TensorRT or a GPU; everything
around the engine call (which engine, why not, the layout conversion, the shape checks, the fallback of
``backend="auto"``) is tested on the CPU with a fake engine, but not TensorRT itself, not Polygraphy's
runner and not the compute-capability probe.

How it works: Polygraphy's pure-Python ``polygraphy.backend.trt`` (``EngineFromBytes`` + ``TrtRunner``; CUDA
through ctypes, no torch, no pycuda) deserializes the engine from the verified bytes and runs numpy feeds.
The engine keeps the bundle's layout (time-major input, states with the batch on axis 1), so
:class:`TrtSession` moves the runtime's batch-first arrays into that layout and back
(``package.layout.from_batch_first`` / ``to_batch_first``) and refuses shapes outside the engine's profile
before the launch. One execution at a time per session (a lock): a Polygraphy runner holds one execution
context, and a :class:`~seqdeploy.runtime.Predictor` must be safe to share between threads.

Refusals (:class:`~seqdeploy.errors.BackendUnavailable`; ``backend="auto"`` falls back to ONNX Runtime on
each, ``backend="trt"`` raises it): TensorRT or Polygraphy missing or not importable, no CUDA device, no
engine built for this GPU's compute capability with this exact TensorRT version, an engine that does not
deserialize.
"""

from __future__ import annotations

import ctypes
import importlib
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from seqdeploy.errors import BackendUnavailable, InputError
from seqdeploy.spec import IOSpec

__all__ = ["TrtSession", "TrtTarget", "probe", "select_engine"]

_CUDA_DEV_ATTR_CC_MAJOR = 75  # cudaDevAttrComputeCapabilityMajor
_CUDA_DEV_ATTR_CC_MINOR = 76  # cudaDevAttrComputeCapabilityMinor


@dataclass(frozen=True)
class TrtTarget:
    """What an engine must have been built for: this TensorRT version and this GPU's compute capability."""

    tensorrt: str
    compute_capability: str


def probe() -> TrtTarget:
    """The TensorRT version and the compute capability of the current CUDA device.

    Raises:
        BackendUnavailable: TensorRT or Polygraphy does not import, or there is no usable CUDA device.
    """
    try:
        trt = importlib.import_module("tensorrt")
    except Exception as exc:  # noqa: BLE001 - ImportError, OSError (a library mismatch), RuntimeError, ...
        raise BackendUnavailable(
            f"TensorRT is not installed or does not import ({type(exc).__name__}: {exc}); install it on the GPU "
            "machine (pip install 'seqdeploy[gpu]', or an NGC image with TensorRT)"
        ) from None
    try:
        importlib.import_module("polygraphy.backend.trt")
    except Exception as exc:  # noqa: BLE001 - as above
        raise BackendUnavailable(
            f"Polygraphy does not import ({type(exc).__name__}: {exc}); pip install 'seqdeploy[gpu]'"
        ) from None
    return TrtTarget(str(trt.__version__), _compute_capability())


def _compute_capability() -> str:
    """``"7.5"`` for a T4: the current device's, asked through the CUDA runtime that Polygraphy loads."""
    try:
        cuda = importlib.import_module("polygraphy.cuda")
        lib = cuda.wrapper().handle
        count, device, major, minor = ctypes.c_int(0), ctypes.c_int(0), ctypes.c_int(0), ctypes.c_int(0)
        if lib.cudaGetDeviceCount(ctypes.byref(count)) != 0 or count.value < 1:
            raise RuntimeError("cudaGetDeviceCount found no device")
        if lib.cudaGetDevice(ctypes.byref(device)) != 0:
            raise RuntimeError("cudaGetDevice failed")
        for value, attr in ((major, _CUDA_DEV_ATTR_CC_MAJOR), (minor, _CUDA_DEV_ATTR_CC_MINOR)):
            if lib.cudaDeviceGetAttribute(ctypes.byref(value), attr, device) != 0:
                raise RuntimeError("cudaDeviceGetAttribute failed")
    except Exception as exc:  # noqa: BLE001 - no libcudart, no driver, no device: all mean "no GPU here"
        raise BackendUnavailable(f"no usable CUDA device ({type(exc).__name__}: {exc})") from None
    return f"{major.value}.{minor.value}"


def select_engine(
    engines: Sequence[Mapping[str, Any]], target: TrtTarget
) -> tuple[Mapping[str, Any] | None, list[str]]:
    """The recorded engine that runs on ``target``, or ``None`` and why none does (one reason per engine)."""
    from seqdeploy.engine.target import GpuTarget, compatibility_problems

    gpu = GpuTarget(target.tensorrt, target.compute_capability, "this GPU", None)
    why: list[str] = []
    for e in engines:
        problems = compatibility_problems(e, gpu)
        if not problems:
            return e, []
        why.extend(problems)
    return None, why


Runner = Any
"""An activated runner: ``infer(feed_dict) -> {name: array}`` (Polygraphy's ``TrtRunner``, or a test's fake)."""


def polygraphy_runner(plan: bytes) -> Runner:
    """Deserialize ``plan`` and activate a Polygraphy ``TrtRunner`` on it.

    Raises:
        BackendUnavailable: TensorRT cannot deserialize the plan (another TensorRT version, a corrupt file).
    """
    try:
        trt_backend = importlib.import_module("polygraphy.backend.trt")
        runner = trt_backend.TrtRunner(trt_backend.EngineFromBytes(plan))
        runner.activate()
    except Exception as exc:  # noqa: BLE001 - PolygraphyException, RuntimeError, ... : TensorRT's refusal
        raise BackendUnavailable(
            f"TensorRT could not load the engine ({type(exc).__name__}: {exc}); rebuild it on this GPU with "
            "'seqdeploy compile' and package again"
        ) from None
    return runner


class TrtSession:
    """An ONNX-Runtime-session-like object (``run(output_names, feeds)``) over one packaged engine.

    Args:
        plan: The engine's verified bytes.
        engine: Its manifest record (``profiles``: the shapes it accepts).
        spec: The engine's signature in the bundle's layout.
        make_runner: Builds the activated runner (default: :func:`polygraphy_runner`).
    """

    def __init__(
        self,
        plan: bytes,
        engine: Mapping[str, Any],
        spec: IOSpec,
        make_runner: Callable[[bytes], Runner] | None = None,
    ) -> None:
        self.engine = dict(engine)
        self.spec = spec
        self._profile = dict((engine.get("profiles") or [{}])[0])
        self._runner = (make_runner or polygraphy_runner)(plan)
        self._lock = threading.Lock()

    def run(self, output_names: Sequence[str], feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Run batch-first ``feeds``; return the outputs, batch-first, in ``output_names`` order.

        Raises:
            InputError: A shape outside the engine's profile (the allowed range per axis is named).
        """
        from seqdeploy.engine.plan import shape_problems
        from seqdeploy.package.layout import from_batch_first, to_batch_first

        arrays = from_batch_first(self.spec, {n: feeds[n] for n in self.spec.input_names})
        problems = shape_problems(self._profile, {n: a.shape for n, a in arrays.items()})
        if problems:
            raise InputError(
                f"the TensorRT engine {self.engine.get('file')} cannot run these shapes (in the export's layout):\n  "
                + "\n  ".join(problems)
            )
        with self._lock:
            outs = self._runner.infer(arrays)
            # Copied while the lock is held: Polygraphy's runner reuses its host buffers for the next call.
            copied = {n: np.array(outs[n], copy=True) for n in output_names}
        got = to_batch_first(self.spec, copied)
        return [got[n] for n in output_names]

    def close(self) -> None:
        """Release the engine (Polygraphy's ``deactivate``)."""
        deactivate = getattr(self._runner, "deactivate", None)
        if deactivate is not None:
            deactivate()
