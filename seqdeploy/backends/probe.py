"""Whether a backend can run here, without loading a model."""

from __future__ import annotations

import importlib.util

from seqdeploy.backends import get_backend
from seqdeploy.backends.onnxrt import PROVIDERS

__all__ = ["availability"]

_ORT_DEVICE = {
    "ort-cpu": "cpu",
    "ort-cpu-int8": "cpu",
    "ort-cpu-fp16": "cpu",
    "ort-cuda": "cuda",
    "ort-trt": "trt",
    "ort-trt-fp16": "trt",
}


def _trt_availability() -> tuple[bool, str]:
    """Native TensorRT: the Python package imports, its version is 10.x/11.x, and torch sees a CUDA device.
    Whether an engine for this GPU is recorded is a property of each bundle, checked when a runner loads.
    """
    from seqdeploy.engine._trt import tensorrt_status
    from seqdeploy.engine.target import trt_line
    from seqdeploy.errors import BackendUnavailable

    ok, what = tensorrt_status()
    if not ok:
        return False, (
            f"{what}: pip install 'seqdeploy[gpu]' on the GPU machine; engines are then built there with "
            "'seqdeploy compile DIR' (on a CPU machine: 'seqdeploy compile DIR --plan-only')"
        )
    try:
        trt_line(what)
    except BackendUnavailable as exc:
        return False, str(exc)
    import torch

    if not torch.cuda.is_available():
        return False, f"TensorRT {what} is installed, but torch {torch.__version__} sees no CUDA device"
    return True, ""


def availability(name: str) -> tuple[bool, str]:
    """``(available, reason if not)`` for backend ``name``."""
    get_backend(name)
    if name in ("trt", "trt-fp16"):
        return _trt_availability()
    if name.startswith("torch"):
        if name == "torch":
            return True, ""
        import torch

        ok = torch.cuda.is_available()
        return ok, "" if ok else f"torch {torch.__version__} sees no CUDA device"
    if importlib.util.find_spec("onnxruntime") is None:
        return False, "onnxruntime is not installed: pip install 'seqdeploy[cpu]' (or [gpu])"
    import onnxruntime as ort

    provider, extra = PROVIDERS[_ORT_DEVICE[name]]
    if provider in ort.get_available_providers():
        return True, ""
    return False, f"onnxruntime {ort.__version__} lacks {provider}: pip install 'seqdeploy[{extra}]' on a GPU machine"
