"""Optimized variants of an export. Today: dynamic int8 for CPU serving (``seqdeploy optimize --int8``).

ONNX Runtime's ``quantize_dynamic`` turns each ``LSTM`` into ``com.microsoft.DynamicQuantizeLSTM`` and
Linear heads into MatMulInteger; the embedding ``Gather`` stays fp32. There is no GRU/RNN counterpart
(onnxruntime#5747), so those recurrent ops stay fp32 and only the head is quantized. The int8 ops have no
CUDA kernel and TensorRT cannot parse them: int8 RNNs are a CPU-only path (pitfalls #22).

The variant is proven before it is recorded: a small verify of ``ort-cpu-int8`` against the fp32
PyTorch reference at int8 tolerance. A failing variant is deleted and never enters the manifest.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from seqdeploy._atomic import bundle_transaction, fault_point
from seqdeploy._lazy import require
from seqdeploy.errors import ExportError, Interrupted, ParityError, UsageError
from seqdeploy.manifest import MANIFEST, Bundle
from seqdeploy.parity.report import ParityReport
from seqdeploy.parity.run import VerifyOptions, verify

__all__ = ["INT8_FILE", "Int8Result", "quantize_int8"]

INT8_FILE = "model.int8.onnx"


@dataclass(frozen=True)
class Int8Result:
    """The recorded variant and the verify run that proved it."""

    path: Path
    entry: dict[str, Any]
    report: ParityReport
    duration_s: float


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    # quantize_dynamic logs a "please run pre-processing" suggestion through the root logger; it is
    # advice about shape inference for transformer graphs, not about these models.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _quantizer_failed(exc: Exception, src: Path, tmp: Path) -> NoReturn:
    """Turn a ``quantize_dynamic`` failure into the error it really is.

    It writes the variant, and a shape-inferred copy of the model in the temp directory from C++ code
    that ignores write errors: a full disk (or a file-size limit) surfaces as "DecodeError: Wire format
    was corrupt" when that copy is read back. So: an OS error names its path (exit 2); a source graph
    that does not parse (accepted with --allow-modified) is a usage error (exit 2); if a file of the
    model's size cannot be written where the quantizer writes, that is the OS error (exit 2); anything
    else is the quantizer failing on this graph (exit 1).
    """
    import onnx

    if isinstance(exc, OSError) and exc.errno is not None:
        raise OSError(exc.errno, exc.strerror or os.strerror(exc.errno), exc.filename or str(tmp)) from None
    try:
        onnx.load(str(src), load_external_data=False)
    except Exception as load_exc:  # noqa: BLE001 - onnx raises DecodeError and friends
        raise UsageError(f"{src}: cannot load the graph to quantize ({load_exc}); re-export the bundle") from None
    need = 2 * src.stat().st_size + (1 << 16)
    for where in (tmp.parent, None):
        try:
            directory = Path(tempfile.gettempdir()) if where is None else where
        except OSError as tmp_exc:  # no writable temp directory at all
            raise UsageError(f"cannot write to any temporary directory ({tmp_exc}); is the disk full?") from None
        try:
            with tempfile.TemporaryFile(dir=directory) as fh:
                os.posix_fallocate(fh.fileno(), 0, need)
        except OSError as io_exc:
            raise OSError(io_exc.errno, io_exc.strerror, str(directory)) from None
    raise ExportError(f"int8 quantization of {src.name} failed: {type(exc).__name__}: {exc}") from exc


def quantize_int8(
    bundle_dir: str | Path, *, allow_modified: bool = False, max_memory_gb: float | None = None
) -> Int8Result:
    """Write ``model.int8.onnx`` next to ``model.onnx``, prove it, and record it in the manifest.

    The candidate is written and verified inside a :func:`~seqdeploy._atomic.bundle_transaction`: the
    file and the manifest entry appear together, only after the proof passed; an interruption or a
    failure leaves the bundle exactly as it was (an earlier good variant included).

    Raises:
        UsageError: ``bundle_dir`` is not an export directory (IntegrityError: it was modified).
        BackendUnavailable: onnxruntime (and its quantization tools) are not installed.
        ParityError: The int8 variant exceeds its documented tolerance vs the fp32 reference.
        Interrupted: Ctrl-C or SIGTERM before the variant was proven (nothing recorded).
    """
    start = time.perf_counter()
    quant = require("onnxruntime.quantization", extra="cpu", purpose="int8 quantization")
    onnx = require("onnx", extra="cpu")
    with bundle_transaction(bundle_dir) as tx:
        # Loaded under the writer lock: no other writer can change the bundle until this one commits.
        bundle = Bundle.load(bundle_dir, allow_modified=allow_modified)
        src = bundle.graph_path("sequence")
        tmp = tx.stage(INT8_FILE)
        try:
            # A ModelProto, not the path: given a path, quantize_dynamic writes its shape-inferred copy
            # beside the source (DIR/model-inferred.onnx, outside the transaction, left behind on failure);
            # given a model, it works in a temporary directory of its own.
            graph = onnx.load(str(src))
            with _quiet_quantizer():
                quant.quantize_dynamic(graph, str(tmp), weight_type=quant.QuantType.QInt8)
        except Exception as exc:  # noqa: BLE001 - the quantizer raises anything; _quantizer_failed sorts it out
            _quantizer_failed(exc, src, tmp)
        fault_point("optimize:int8-written")
        ops = Counter(n.op_type for n in onnx.load(str(tmp), load_external_data=False).graph.node)
        entry: dict[str, Any] = {
            "file": INT8_FILE,
            "graph": "sequence",
            "precision": "int8",
            "method": "onnxruntime.quantization.quantize_dynamic(weight_type=QInt8)",
            "quantized_ops": {k: v for k, v in sorted(ops.items()) if "Quantize" in k or "Integer" in k},
            "fp32_recurrent_ops": {k: ops[k] for k in ("LSTM", "GRU", "RNN") if ops.get(k)},
        }
        # Prove the candidate while it is still the staged file: verify runs on an in-memory bundle whose
        # int8 variant points at it. Neither the manifest nor model.int8.onnx changes unless it passes.
        candidate = copy.deepcopy(bundle.manifest)
        candidate.setdefault("variants", {})["int8"] = {**entry, "file": tmp.name}
        cfg = bundle.config
        opts = VerifyOptions(
            backends=("torch", "ort-cpu-int8"),
            batches=(1, 3),
            seqs=(1, 7, max(cfg.shapes.seq[1], 16)),
            modes=("full", "chunked", "batch", "padding"),
            max_memory_gb=max_memory_gb,
        )
        report = verify(dataclasses.replace(bundle, manifest=candidate, identity=()), opts)
        if report.partial:
            raise Interrupted("optimize --int8 interrupted while proving the variant; nothing was recorded")
        if not report.passed:
            raise ParityError(f"int8 variant failed its tolerance (nothing was recorded): {report.summary()}", report)
        entry["max_abs_vs_fp32"] = report.max_abs_by_tensor(bundle.specs["sequence"].output_names, mode="full")
        manifest = copy.deepcopy(bundle.manifest)
        manifest.setdefault("variants", {})["int8"] = entry
        # A manifest edited by hand (accepted with --allow-modified) is not re-stamped: recording a variant
        # must not turn an edited manifest into one that looks as seqdeploy wrote it. Modified files keep
        # their old sha256 in the table, so they stay visible too.
        edited = any(p.startswith(f"{MANIFEST}:") for p in bundle.modified)
        tx.commit(manifest, stamp=not edited)
    fault_point("optimize:committed")  # a signal from here on lands after the commit: the variant is recorded
    return Int8Result(bundle.path / INT8_FILE, entry, report, time.perf_counter() - start)
