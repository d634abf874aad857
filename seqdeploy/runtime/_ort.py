"""One ONNX Runtime session factory, torch-free: the runtime's and (meant to be) the verify backends'.

What every seqdeploy session needs, in one place:

* the execution provider is checked to exist in this onnxruntime build before anything is loaded
  (:class:`~seqdeploy.errors.BackendUnavailable` naming the extra that installs it);
* fp32 means fp32: the CUDA provider gets ``use_tf32 = 0`` (it uses TF32 on Ampere and newer otherwise);
* a GPU provider gets the CPU provider after it (nodes it cannot take run there: ORT's partitioning), but
  the session must come up **on** the GPU provider: ONNX Runtime silently falls back to the CPU when the
  GPU provider fails to initialise, and that is refused here, so a "GPU" result is never a CPU result;
* errors only in ORT's log (its CPU warnings about unused initializers are noise); threads and session
  config entries as given.

``seqdeploy/backends/onnxrt.py`` (``OrtRunner._load``) still has its own copy of these rules; it can call
:func:`ort_session` with ``model=str(path)`` and its own ``on_load_error``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from seqdeploy._lazy import require
from seqdeploy.errors import BackendUnavailable

__all__ = ["PROVIDERS", "ort_session"]

PROVIDERS: dict[str, tuple[str, str]] = {
    # device -> (execution provider, seqdeploy extra that installs an onnxruntime build with it)
    "cpu": ("CPUExecutionProvider", "cpu"),
    "cuda": ("CUDAExecutionProvider", "gpu"),
    "trt": ("TensorrtExecutionProvider", "gpu"),
}


def ort_session(
    model: bytes | str | Path,
    *,
    device: str = "cpu",
    what: str,
    threads: int | None = None,
    config: Mapping[str, str] | None = None,
    provider_options: Mapping[str, str] | None = None,
    on_load_error: Callable[[Exception], Exception] | None = None,
) -> Any:
    """An ``onnxruntime.InferenceSession`` on exactly the provider of ``device``.

    Args:
        model: The graph (bytes, or a path; a path lets ORT resolve external data next to it).
        device: ``"cpu"``, ``"cuda"`` or ``"trt"`` (:data:`PROVIDERS`).
        what: Who asks, for messages (``"backend 'ort-cuda'"``, ``"seqdeploy.runtime"``).
        threads: ``intra_op_num_threads`` (``None``/0: ORT's default).
        config: Session config entries (``SessionOptions.add_session_config_entry``).
        provider_options: Options of the GPU provider (merged over ``use_tf32 = 0`` for CUDA).
        on_load_error: Turns ORT's exception when the graph does not load into the caller's error.

    Raises:
        BackendUnavailable: onnxruntime is missing, this build lacks the provider, or the provider did not
            initialise (no silent fallback to the CPU).
    """
    provider, extra = PROVIDERS[device]
    ort = require("onnxruntime", extra=extra, purpose=what)
    available = ort.get_available_providers()
    if provider not in available:
        raise BackendUnavailable(
            f"{what} needs ONNX Runtime's {provider}, but this onnxruntime {ort.__version__} only has {available}. "
            f"Install it with: pip install 'seqdeploy[{extra}]' (onnxruntime-gpu replaces onnxruntime; uninstall "
            "onnxruntime first), on a machine with a GPU"
        )
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    for key, value in (config or {}).items():
        opts.add_session_config_entry(key, value)
    opts.log_severity_level = 3  # errors only
    options: dict[str, Any] = {"use_tf32": 0} if device == "cuda" else {}
    options.update(provider_options or {})
    providers: list[Any] = [(provider, options) if options else provider]
    if device != "cpu":
        providers.append("CPUExecutionProvider")
    source = model if isinstance(model, bytes) else str(model)
    try:
        session = ort.InferenceSession(source, sess_options=opts, providers=providers)
    except Exception as exc:
        if on_load_error is None:
            raise
        raise on_load_error(exc) from None
    got = session.get_providers()
    if got[0] != provider:
        raise BackendUnavailable(
            f"{what}: ONNX Runtime could not initialise {provider} (the session got {got}); check the CUDA/"
            "TensorRT libraries and the driver. Not falling back to the CPU"
        )
    return session
