"""The machine's matrix-multiply rate, measured through the same library a backend uses.

A profile reports "52 % of this machine's sgemm rate", not just milliseconds: each backend's achieved
GFLOP/s is divided by the rate of a large fp32 matmul (N×N @ N×N, 2·N³ FLOPs) run in the same process,
with the same threads, through the same library (torch for ``torch*``, ONNX Runtime for ``ort-*``).
TensorRT engines are compared with cuBLAS through torch: ``trt`` with the fp32 sgemm (``torch-cuda``),
fp16 GPU backends (``trt-fp16``, ``ort-trt-fp16``) with the fp16 hgemm (``torch-cuda-fp16``, tensor cores
where the GPU has them, like a T4).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from seqdeploy._lazy import require
from seqdeploy.errors import BackendUnavailable

__all__ = ["library_of", "sgemm_gflops"]


def library_of(backend: str) -> str:
    """The library key whose sgemm rate a backend is compared with (``torch-cpu``, ``ort-cpu``, ...)."""
    return {
        "torch": "torch-cpu",
        "torch-cuda": "torch-cuda",
        "ort-cpu": "ort-cpu",
        "ort-cpu-int8": "ort-cpu",
        "ort-cpu-fp16": "ort-cpu",
        "ort-cuda": "ort-cuda",
        "ort-trt": "ort-trt",
        "ort-trt-fp16": "torch-cuda-fp16",
        "trt": "torch-cuda",
        "trt-fp16": "torch-cuda-fp16",
    }.get(backend, backend)


def _median_rate(run: Any, n: int, repeats: int) -> float:
    # The median, like the latencies it is compared with: a best-of-N peak would make every ratio look
    # worse on a machine whose speed fluctuates.
    run()  # warm-up: first call pays for allocation and (for ORT) kernel selection
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / float(np.median(times)) / 1e9


def sgemm_gflops(library: str, *, n: int = 1024, repeats: int = 10, threads: int | None = None) -> float:
    """Median GFLOP/s over ``repeats`` ``n``-cubed fp32 matmuls through ``library`` (fp16 for ``*-fp16``)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    if library.startswith("torch"):
        import torch

        device = "cuda" if library.startswith("torch-cuda") else "cpu"
        dtype = torch.float16 if library.endswith("-fp16") else torch.float32
        old = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        try:
            ta, tb = (torch.from_numpy(x).to(device, dtype) for x in (a, b))

            def run_torch() -> None:
                torch.mm(ta, tb)
                if device == "cuda":
                    torch.cuda.synchronize()

            return _median_rate(run_torch, n, repeats)
        finally:
            torch.set_num_threads(old)
    ort = require("onnxruntime", extra="cpu", purpose="the sgemm reference")
    onnx = require("onnx", extra="export")
    h = onnx.helper
    graph = h.make_graph(
        [h.make_node("MatMul", ["A", "B"], ["C"])],
        "sgemm",
        [h.make_tensor_value_info(x, onnx.TensorProto.FLOAT, [n, n]) for x in ("A", "B")],
        [h.make_tensor_value_info("C", onnx.TensorProto.FLOAT, [n, n])],
    )
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    provider = {"ort-cuda": "CUDAExecutionProvider", "ort-trt": "TensorrtExecutionProvider"}.get(
        library, "CPUExecutionProvider"
    )
    sess = ort.InferenceSession(model.SerializeToString(), sess_options=opts, providers=[provider])
    if sess.get_providers()[0] != provider:
        raise BackendUnavailable(f"sgemm reference: {provider} did not initialise (got {sess.get_providers()})")
    if provider == "CPUExecutionProvider":
        return _median_rate(lambda: sess.run(None, {"A": a, "B": b}), n, repeats)
    # On a GPU the operands live on the device (IO binding): timing host<->device copies of 12 MiB per
    # call would measure PCIe, not the matmul rate.
    binding = sess.io_binding()
    binding.bind_ortvalue_input("A", ort.OrtValue.ortvalue_from_numpy(a, "cuda", 0))
    binding.bind_ortvalue_input("B", ort.OrtValue.ortvalue_from_numpy(b, "cuda", 0))
    binding.bind_output("C", "cuda", 0)
    return _median_rate(lambda: sess.run_with_iobinding(binding), n, repeats)
