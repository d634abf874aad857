"""ONNX Runtime runners for the CPU, CUDA and TensorRT execution providers. Named ``onnxrt`` so that
it never shadows ``onnxruntime``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from seqdeploy._lazy import require
from seqdeploy.backends.base import BaseRunner
from seqdeploy.errors import BackendUnavailable, UsageError
from seqdeploy.spec import IOSpec

__all__ = ["DISABLE_CPU_FALLBACK", "PROVIDERS", "OrtRunner"]

DISABLE_CPU_FALLBACK = "session.disable_cpu_ep_fallback"
"""ONNX Runtime's session config key: fail session creation when a node would be assigned to the CPU EP."""

PROVIDERS: dict[str, tuple[str, str]] = {
    # device -> (execution provider, seqdeploy extra that installs an onnxruntime build with it)
    "cpu": ("CPUExecutionProvider", "cpu"),
    "cuda": ("CUDAExecutionProvider", "gpu"),
    "trt": ("TensorrtExecutionProvider", "gpu"),
}


class OrtRunner(BaseRunner):
    """Runs an ONNX file in an ``InferenceSession`` on exactly one execution provider.

    ONNX Runtime silently falls back to the CPU provider when a GPU provider fails to initialise; this
    runner checks the session's providers after creation and raises :class:`BackendUnavailable`
    instead, so a "GPU" number is never a CPU number. On the TensorRT provider (``device="trt"``) it
    also forbids ORT to place any node on the CPU (``session.disable_cpu_ep_fallback``): a graph that
    TensorRT does not take whole is refused, never run partly on the CPU.

    Args:
        name: Backend name for reports.
        spec: IOSpec of the graph.
        path: The ONNX file.
        device: ``"cpu"``, ``"cuda"`` or ``"trt"`` (see :data:`PROVIDERS`).
        threads: ``intra_op_num_threads`` (``None``/0 = ONNX Runtime's default).
        provider_options: Options of the GPU execution provider (``ort-trt``: from the TensorRT plan,
            :mod:`seqdeploy.backends.ort_trt`).
        cache_dir: A directory the provider's engine cache lives in, created on load; when it cannot be
            created (a read-only bundle) the ``*_cache_*`` options are dropped: slower start, same results.
    """

    def __init__(
        self,
        name: str,
        spec: IOSpec,
        path: Path,
        *,
        device: str = "cpu",
        threads: int | None = None,
        provider_options: Mapping[str, str] | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        super().__init__(name, spec)
        self.path = path
        self.device = device
        self.threads = threads
        self.provider_options = dict(provider_options or {})
        self.cache_dir = cache_dir
        self._session: Any = None
        self._run_options: Any = None
        self._ort: Any = None

    @property
    def session(self) -> Any:
        """The underlying ``onnxruntime.InferenceSession`` (while active)."""
        return self._session

    def _load(self) -> None:
        ort = require("onnxruntime", extra=PROVIDERS[self.device][1], purpose=f"backend '{self.name}'")
        self._ort = ort
        provider, extra = PROVIDERS[self.device]
        available = ort.get_available_providers()
        if provider not in available:
            raise BackendUnavailable(
                f"backend '{self.name}' needs ONNX Runtime's {provider}, but this onnxruntime "
                f"{ort.__version__} only has {available}. Install it with: pip install 'seqdeploy[{extra}]' "
                "(onnxruntime-gpu replaces onnxruntime; uninstall onnxruntime first), on a machine with a GPU"
            )
        opts = ort.SessionOptions()
        if self.threads:
            opts.intra_op_num_threads = self.threads
        opts.log_severity_level = 3  # errors only: the CPU EP's warnings about unused initializers are noise
        providers: list[Any] = [provider]
        if self.device == "cuda":
            # fp32 means fp32: the CUDA EP uses TF32 on Ampere and newer unless told not to.
            providers = [(provider, {"use_tf32": 0})]
            # Nodes the CUDA provider has no kernel for run on the CPU (ORT's partitioning, by design: shape
            # computations); the check below makes sure the CUDA provider itself initialised.
            providers.append("CPUExecutionProvider")
        elif self.device == "trt":
            if self.provider_options:
                providers = [(provider, self._trt_options())]
            # An "ort-trt" number must be TensorRT's: without this, nodes TensorRT does not take would run on
            # the CPU provider silently. With it, ORT refuses to create such a session (and refuses the CPU
            # provider in the list, so it is not appended). TensorRT's own TF32 use is not configurable here.
            opts.add_session_config_entry(DISABLE_CPU_FALLBACK, "1")
        try:
            self._session = ort.InferenceSession(str(self.path), sess_options=opts, providers=providers)
        except Exception as exc:  # noqa: BLE001 - ORT raises InvalidProtobuf, Fail, InvalidGraph, ...
            if self.device == "trt" and "fallback to CPU EP has been explicitly disabled" in str(exc):
                raise BackendUnavailable(
                    f"backend '{self.name}': ONNX Runtime's TensorRT provider does not take every node of "
                    f"{self.path.name}, and seqdeploy does not let the rest run on the CPU (the numbers would "
                    f"not be TensorRT's): {exc}. Use backend 'trt' (the native engine) or 'ort-cuda'"
                ) from None
            raise UsageError(
                f"backend '{self.name}': ONNX Runtime cannot load {self.path} ({type(exc).__name__}: {exc}); "
                "is the export directory intact? Re-export it with 'seqdeploy export'"
            ) from None
        if self._session.get_providers()[0] != provider:
            got = self._session.get_providers()
            self._session = None
            raise BackendUnavailable(
                f"backend '{self.name}': ONNX Runtime could not initialise {provider} (session got {got}); "
                "check the CUDA/TensorRT libraries and the driver. Not falling back to the CPU."
            )

    def _trt_options(self) -> dict[str, str]:
        opts = dict(self.provider_options)
        if self.cache_dir is not None:
            try:
                self.cache_dir.mkdir(parents=True, exist_ok=True)
            except OSError:
                opts = {k: v for k, v in opts.items() if "_cache_" not in k}
        return opts

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        ort = self._ort
        # One RunOptions per call: setting `terminate` on it (from _cancel) stops this run early.
        self._run_options = ort.RunOptions()
        outs = self._session.run(
            list(self.spec.output_names), {n: feeds[n] for n in self.spec.input_names}, self._run_options
        )
        return dict(zip(self.spec.output_names, outs, strict=True))

    def _cancel(self) -> None:
        if self._run_options is not None:
            self._run_options.terminate = True

    def _unload(self) -> None:
        self._session = None
