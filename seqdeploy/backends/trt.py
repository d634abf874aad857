"""Native TensorRT runner (backends ``trt`` and ``trt-fp16``). Named ``trt`` inside ``seqdeploy.backends``,
which never shadows the ``tensorrt`` module.

The engine is deserialized once on enter; each call sets every input's shape and address, sizes the
outputs from the execution context (only then are their shapes known), and launches with
``execute_async_v3`` on a non-default CUDA stream (the default stream adds synchronisations), on torch
CUDA tensors (no pycuda). Before anything runs, the runner refuses clearly: an engine built for another
compute capability or TensorRT version (from its manifest entry and the running GPU), an engine whose
I/O differs from the IOSpec, and — before each launch — a shape outside the engine's profile (with the
allowed range per axis).

**Never run in this project's CI**: no machine here has TensorRT or a GPU. The decisions it relies on
(engine selection, compatibility, I/O and shape checks, the dtype map) are pure functions in
:mod:`seqdeploy.engine.target` and :mod:`seqdeploy.engine.plan`, tested on the CPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from seqdeploy.backends.base import BaseRunner
from seqdeploy.engine._trt import CollectingLogger, collecting_logger, running_target, trt
from seqdeploy.engine.plan import shape_problems
from seqdeploy.engine.target import NUMPY_FROM_TRT, engine_io_problems, select_engine, unresolved_outputs
from seqdeploy.errors import BackendUnavailable, IntegrityError, UsageError
from seqdeploy.spec import IOSpec

if TYPE_CHECKING:
    import torch

__all__ = ["TrtRunner"]


class TrtRunner(BaseRunner):
    """Runs a recorded TensorRT engine of the bundle on this GPU.

    Args:
        name: Backend name for reports (``trt`` or ``trt-fp16``).
        spec: IOSpec of the graph.
        manifest: The bundle's manifest (its ``engines`` list is searched for an engine of ``graph`` and
            ``precision`` built on this GPU's compute capability with this TensorRT version).
        bundle_dir: The bundle directory (engine files are relative to it).
        precision: ``fp32`` or ``fp16``.
        graph: The graph the engine was built from.
    """

    def __init__(
        self, name: str, spec: IOSpec, manifest: Mapping[str, Any], bundle_dir: Path, *, precision: str, graph: str
    ) -> None:
        super().__init__(name, spec)
        self.manifest = manifest
        self.bundle_dir = bundle_dir
        self.precision = precision
        self.graph = graph
        self.entry: dict[str, Any] | None = None
        self._profile: dict[str, Any] = {}
        self._runtime: trt.Runtime | None = None
        self._engine: trt.ICudaEngine | None = None
        self._context: trt.IExecutionContext | None = None
        self._stream: torch.cuda.Stream | None = None
        self._torch_dtypes: dict[str, torch.dtype] = {}
        self._log = CollectingLogger()

    def _load(self) -> None:
        import torch

        try:
            target = running_target(f"backend '{self.name}'")
        except BackendUnavailable as exc:
            raise BackendUnavailable(
                f"{exc}; install the 'gpu' extra (pip install 'seqdeploy[gpu]') on the GPU machine and build the "
                f"engine there with 'seqdeploy compile {self.bundle_dir}'"
            ) from exc
        entry = select_engine(
            self.manifest,
            graph=self.graph,
            precision=self.precision,
            target=target,
            backend=self.name,
            bundle_dir=str(self.bundle_dir),
            current_sha256=self._graph_shas(),
        )
        path = self.bundle_dir / str(entry["file"])
        if not path.is_file():
            raise IntegrityError(
                f"backend '{self.name}': engine {entry['file']} is recorded in the manifest but missing from "
                f"{self.bundle_dir}; rebuild it with 'seqdeploy compile {self.bundle_dir} --force'"
            )
        self._runtime = trt.Runtime(collecting_logger(self._log))
        engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise BackendUnavailable(
                f"backend '{self.name}': TensorRT {target.tensorrt} could not deserialize {entry['file']}: "
                + ("; ".join(self._log.errors()) or "no reason given")
            )
        io: dict[str, tuple[str, str, int]] = {}
        for i in range(engine.num_io_tensors):
            tname = engine.get_tensor_name(i)
            mode = "INPUT" if engine.get_tensor_mode(tname) == trt.TensorIOMode.INPUT else "OUTPUT"
            io[tname] = (mode, engine.get_tensor_dtype(tname).name, len(engine.get_tensor_shape(tname)))
        problems = engine_io_problems(self.spec, io)
        if problems:
            raise UsageError(
                f"backend '{self.name}': engine {entry['file']} does not serve this export's I/O:\n  "
                + "\n  ".join(problems)
                + f"\nRebuild it with 'seqdeploy compile {self.bundle_dir} --force'"
            )
        self._torch_dtypes = {n: getattr(torch, NUMPY_FROM_TRT[d]) for n, (_, d, _) in io.items()}
        self._engine = engine
        self._context = engine.create_execution_context()
        self._stream = torch.cuda.Stream()  # type: ignore[no-untyped-call]  # torch stubs: untyped __new__
        self._profile = dict(entry["profiles"][0])
        self.entry = entry

    def _graph_shas(self) -> dict[str, str]:
        """sha256 of each ONNX file this runner's candidate engines were built from, as the file is now: an
        engine built from an earlier version of its file (``optimize --fp16`` run again) never runs.
        """
        from seqdeploy.manifest import inside, sha256

        out: dict[str, str] = {}
        for e in self.manifest.get("engines") or []:
            rel = str(e.get("onnx"))
            if e.get("graph") != self.graph or e.get("precision") != self.precision or rel in out:
                continue
            full = inside(self.bundle_dir, rel)
            if full is not None and full.is_file():
                out[rel] = sha256(full)
        return out

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        assert self._context is not None and self._stream is not None
        # Checked here, before any launch: TensorRT's own refusal is a logged error and a False return.
        problems = shape_problems(self._profile, {n: feeds[n].shape for n in self.spec.input_names})
        if problems:
            raise UsageError(
                f"backend '{self.name}': the engine cannot run these shapes:\n  "
                + "\n  ".join(problems)
                + "\nRebuild with a wider profile: 'seqdeploy compile DIR --shapes MIN,OPT,MAX --force'"
            )
        ctx = self._context
        stream = self._stream
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            keep: dict[str, torch.Tensor] = {}  # every buffer must outlive the launch
            for n in self.spec.input_names:
                t = torch.from_numpy(np.ascontiguousarray(feeds[n])).to("cuda", self._torch_dtypes[n])
                keep[n] = t
                if not ctx.set_input_shape(n, tuple(t.shape)):
                    raise UsageError(f"backend '{self.name}': TensorRT refused shape {tuple(t.shape)} for '{n}'")
                ctx.set_tensor_address(n, t.data_ptr())
            shapes = {n: _dims(ctx.get_tensor_shape(n)) for n in self.spec.output_names}
            if bad := unresolved_outputs(shapes):
                raise UsageError(f"backend '{self.name}': " + "; ".join(bad))
            outs = {n: torch.empty(s, dtype=self._torch_dtypes[n], device="cuda") for n, s in shapes.items()}
            for n, t in outs.items():
                ctx.set_tensor_address(n, t.data_ptr())
            begin = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
            end = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
            begin.record(stream)
            ok = ctx.execute_async_v3(stream.cuda_stream)
            end.record(stream)
            if not ok:
                stream.synchronize()
                why = "; ".join(self._log.errors()) or "no reason given"
                # A launch that fails on a proven engine is the GPU or the driver failing (out of memory, a
                # lost device), not the user's input: this backend cannot run here now.
                raise BackendUnavailable(f"backend '{self.name}': TensorRT's execute_async_v3 failed: {why}")
            result = {n: t.cpu().numpy() for n, t in outs.items()}
        stream.synchronize()
        self._last_device_ms = float(begin.elapsed_time(end))
        del keep
        return result

    def _unload(self) -> None:
        self._context = None
        self._engine = None
        self._runtime = None
        self._stream = None


def _dims(d: trt.Dims) -> list[int]:
    return [int(d[i]) for i in range(len(d))]
