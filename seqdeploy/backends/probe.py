"""Whether a backend can run here, without loading a model."""

from __future__ import annotations

import importlib.util

from seqdeploy.backends import get_backend
from seqdeploy.backends.onnxrt import PROVIDERS

__all__ = ["availability"]

_ORT_DEVICE = {"ort-cpu": "cpu", "ort-cpu-int8": "cpu", "ort-cpu-fp16": "cpu", "ort-cuda": "cuda", "ort-trt": "trt"}


def availability(name: str) -> tuple[bool, str]:
    """``(available, reason if not)`` for backend ``name``."""
    get_backend(name)
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
