"""Optimized variants of an export: dynamic int8 for CPU serving, fp16 for TensorRT (``seqdeploy optimize``).

**int8** (``--int8``): ONNX Runtime's ``quantize_dynamic`` turns each ``LSTM`` into
``com.microsoft.DynamicQuantizeLSTM`` and Linear heads into MatMulInteger; the embedding ``Gather``
stays fp32. There is no GRU/RNN counterpart (onnxruntime#5747), so those recurrent ops stay fp32 and
only the head is quantized. The int8 ops have no CUDA kernel and TensorRT cannot parse them: int8 RNNs
are a CPU-only path (pitfalls #22).

**fp16** (``--fp16``): :func:`seqdeploy.fp16.convert_to_fp16` writes ``model.fp16.onnx`` (and
``step.fp16.onnx``): weights and compute in fp16, the I/O contract unchanged (casts inside the graph).
It is the file TensorRT builds for fp16 (11.x has no FP16 flag; 10.x builds it strongly typed) and it
runs on the CPU as backend ``ort-cpu-fp16``. A model whose weights, or whose activations in the verify
run, exceed the fp16 range is refused, naming the tensors. The entry records the error against the
fp32 reference per output at seq 1, 64 and the config's max seq (``error_vs_seq``).

Every variant is proven before it is recorded: a verify of its backend against the fp32 PyTorch
reference at the variant's tolerance, while its files are staged in a bundle transaction. A failing (or
interrupted) variant is deleted and never enters the manifest.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from seqdeploy._atomic import Transaction, bundle_transaction, committed_paths, fault_point, with_path
from seqdeploy._lazy import require
from seqdeploy.errors import ExportError, Interrupted, ParityError, UsageError
from seqdeploy.feeds import make_feeds
from seqdeploy.manifest import Bundle, sha256
from seqdeploy.parity.compare import DEFAULT_TOLERANCES
from seqdeploy.parity.report import ParityReport
from seqdeploy.parity.run import MODES, VerifyOptions, verify

__all__ = [
    "FP16_FILES",
    "INT8_FILE",
    "Fp16Result",
    "Int8Result",
    "VariantResult",
    "error_vs_seq",
    "fp16_sweep",
    "make_fp16",
    "quantize_int8",
    "render_error_vs_seq",
]

INT8_FILE = "model.int8.onnx"
FP16_FILES: dict[str, str] = {"sequence": "model.fp16.onnx", "step": "step.fp16.onnx"}
FP16_REPORT_SEQS = (1, 64)
"""Sequence lengths of the fp16 error table, with the config's max seq (users pick fp16 or fp32 from it)."""


@dataclass(frozen=True)
class VariantResult:
    """The recorded variant and the verify run that proved it."""

    path: Path
    entry: dict[str, Any]
    report: ParityReport
    duration_s: float


Int8Result = VariantResult
Fp16Result = VariantResult


@contextlib.contextmanager
def quiet_onnxruntime_tools() -> Iterator[None]:
    """Silence the root logger while ONNX Runtime's tools run (optimize and package both quantize).

    quantize_dynamic logs a "please run pre-processing" suggestion through the root logger; it is advice
    about shape inference for transformer graphs, not about these models.
    """
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _prove(bundle: Bundle, variant: str, entry: Mapping[str, Any], opts: VerifyOptions) -> ParityReport:
    """Verify a candidate variant whose ``entry`` points at its staged files, on an in-memory manifest.

    Raises:
        Interrupted: Ctrl-C or SIGTERM during the run (nothing is recorded).
        ParityError: The variant failed its tolerance (nothing is recorded).
    """
    candidate = copy.deepcopy(bundle.manifest)
    candidate.setdefault("variants", {})[variant] = dict(entry)
    report = verify(dataclasses.replace(bundle, manifest=candidate, identity=()), opts)
    if report.partial:
        raise Interrupted(
            f"optimize --{variant} interrupted while proving the variant; {_not_recorded(bundle, variant)}"
        )
    if not report.passed:
        raise ParityError(
            f"{variant} variant failed its tolerance ({_not_recorded(bundle, variant)}): {report.summary()}", report
        )
    return report


def _not_recorded(bundle: Bundle, variant: str) -> str:
    """What a failed variant leaves: nothing, or — ``optimize --int8 --fp16`` — what this run committed to
    the same bundle before it (``_atomic.committed_paths``, reset by the CLI for each run).
    """
    root = Path(os.path.realpath(bundle.path))
    earlier = [p.name for p in committed_paths() if p.parent == root]
    if earlier:
        return f"the {variant} variant was not recorded; this run recorded {', '.join(earlier)} before it"
    return "nothing was recorded"


def _record(tx: Transaction, bundle: Bundle, variant: str, entry: dict[str, Any], staged: Mapping[str, Path]) -> None:
    """Commit the proven variant: its staged files, its manifest entry and the re-run TensorRT lint — and
    drop what was built from a file it replaces (engines, the TensorRT plan and kit), which would otherwise
    go on running the old model under the new file's name.
    """
    from seqdeploy.lint import DEFAULT_TARGET, lint_manifest

    manifest = copy.deepcopy(bundle.manifest)
    manifest.setdefault("variants", {})[variant] = entry
    lint = lint_manifest(bundle.path, manifest, DEFAULT_TARGET, locate=staged)
    manifest["lint"] = {**(manifest.get("lint") or {}), DEFAULT_TARGET: lint.to_dict()}
    drop = _drop_replaced_builds(tx, bundle, manifest, {rel: sha256(tmp) for rel, tmp in staged.items()})
    # The manifest is re-stamped: an edited one never loads (--allow-modified accepts files, never the
    # manifest), so only seqdeploy's own content is signed off. Modified files keep their old sha256 in
    # the table, so they stay visible to every later reader.
    tx.commit(manifest, drop=drop)
    fault_point("optimize:committed")  # a signal from here on lands after the commit: the variant is recorded


def _drop_replaced_builds(
    tx: Transaction, bundle: Bundle, manifest: dict[str, Any], new: Mapping[str, str]
) -> tuple[str, ...]:
    """Take out of ``manifest`` the engines and the TensorRT plan built from a file this commit replaces with
    different contents (``new``: file -> its new sha256); return what the commit must drop.

    The kept engines are re-staged in a new ``engines/`` (hard links), or ``engines/`` is dropped when none
    is left; files in ``engines/`` that seqdeploy did not record are refused rather than deleted.
    """
    from seqdeploy.engine.plan import KIT_DIR
    from seqdeploy.engine.target import ENGINES_DIR, listed_sha256, stale_reason, stray_engine_files

    current = {**listed_sha256(bundle.manifest), **new}
    drop: list[str] = []
    plan = manifest.get("trt")
    if isinstance(plan, dict) and stale_reason(plan, current) is not None:
        del manifest["trt"]
        drop.append(KIT_DIR)
    engines: list[dict[str, Any]] = list(manifest.get("engines") or [])
    kept = [e for e in engines if stale_reason(e, current) is None]
    if len(kept) == len(engines):
        return tuple(drop)
    strays = stray_engine_files(bundle.path, manifest)
    if strays:
        raise UsageError(
            f"{bundle.path}: this variant replaces a graph file that recorded engines were built from, so those "
            f"engines must go; but {ENGINES_DIR}/ also holds files seqdeploy did not record: {strays}. Move them "
            "out of the bundle first"
        )
    manifest["engines"] = kept
    if kept:
        staged = tx.stage(ENGINES_DIR, record=False)  # the kept engines, re-linked: nothing new
        staged.mkdir()
        for e in kept:
            src = bundle.file(str(e["file"]))
            try:  # a hard link costs nothing and survives the commit moving the old engines/ aside
                os.link(src, staged / src.name)
            except OSError:
                shutil.copy2(src, staged / src.name)
    else:
        drop.append(ENGINES_DIR)
    return tuple(drop)


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
        raise with_path(exc, tmp) from None
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
    bundle_dir: str | Path,
    *,
    threads: int | None = None,
    allow_modified: bool = False,
    max_memory_gb: float | None = None,
) -> VariantResult:
    """Write ``model.int8.onnx`` next to ``model.onnx``, prove it, and record it in the manifest.

    ``threads``: threads of the proof's verify run (both backends), like ``make_fp16``'s.

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
    onnx = require("onnx", extra="export")
    with bundle_transaction(bundle_dir) as tx:
        bundle = Bundle.load(bundle_dir, allow_modified=allow_modified)
        src = bundle.graph_path("sequence")
        tmp = tx.stage(INT8_FILE)
        try:
            # A ModelProto, not the path: given a path, quantize_dynamic writes its shape-inferred copy
            # beside the source (DIR/model-inferred.onnx, outside the transaction, left behind on failure);
            # given a model, it works in a temporary directory of its own.
            graph = onnx.load(str(src))
            with quiet_onnxruntime_tools():
                quant.quantize_dynamic(graph, str(tmp), weight_type=quant.QuantType.QInt8)
        except Exception as exc:  # noqa: BLE001 - the quantizer raises anything; _quantizer_failed sorts it out
            _quantizer_failed(exc, src, tmp)
        fault_point("optimize:int8-written")
        ops = Counter(n.op_type for n in onnx.load(str(tmp), load_external_data=False).graph.node)
        entry: dict[str, Any] = {
            "file": INT8_FILE,
            "graph": "sequence",
            "precision": "int8",
            "cpu_only": True,
            "method": "onnxruntime.quantization.quantize_dynamic(weight_type=QInt8)",
            "quantized_ops": {k: v for k, v in sorted(ops.items()) if "Quantize" in k or "Integer" in k},
            "fp32_recurrent_ops": {k: ops[k] for k in ("LSTM", "GRU", "RNN") if ops.get(k)},
        }
        cfg = bundle.config
        opts = VerifyOptions(
            backends=("torch", "ort-cpu-int8"),
            batches=(1, 3),
            seqs=(1, 7, max(cfg.shapes.seq[1], 16)),
            modes=("full", "chunked", "batch", "padding"),
            threads=threads,
            max_memory_gb=max_memory_gb,
        )
        report = _prove(bundle, "int8", {**entry, "file": tmp.name}, opts)
        entry["max_abs_vs_fp32"] = report.max_abs_by_tensor(bundle.specs["sequence"].output_names, mode="full")
        _record(tx, bundle, "int8", entry, {INT8_FILE: tmp})
    return VariantResult(bundle.path / INT8_FILE, entry, report, time.perf_counter() - start)


def fp16_sweep(bundle: Bundle) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Batches and seqs the fp16 variant is proven on: batch 1 and 3 (3 exercises the batch and padding
    modes), seq 1, 64 and the config's max seq — the points of the error table.
    """
    seqs = tuple(sorted({*FP16_REPORT_SEQS, bundle.config.shapes.seq[2]}))
    return (1, 3), seqs


def error_vs_seq(report: ParityReport, backend: str, outputs: tuple[str, ...]) -> list[dict[str, Any]]:
    """Per seq of the run: the largest max|Δ| per output over the batches, from the ``full`` cases."""
    rows: dict[int, dict[str, Any]] = {}
    for c in report.cases:
        if c.backend != backend or c.mode != "full" or c.against != "reference":
            continue
        row = rows.setdefault(c.seq, {"seq": c.seq, "batches": [], "max_abs": dict.fromkeys(outputs, 0.0)})
        row["batches"] = sorted({*row["batches"], c.batch})
        for n in outputs:
            if n in c.tensors:
                row["max_abs"][n] = max(row["max_abs"][n], c.tensors[n].max_abs)
    return [rows[s] for s in sorted(rows)]


def render_error_vs_seq(entry: Mapping[str, Any]) -> list[str]:
    """The fp16 error table of a variant entry, as aligned text lines (empty without one)."""
    rows = entry.get("error_vs_seq") or []
    if not rows:
        return []
    names = list(rows[0]["max_abs"])
    tol = entry.get("tolerance", {})
    lines = [
        f"fp16 vs fp32 torch, max|Δ| by sequence length (atol {tol.get('atol', '?')}, rtol {tol.get('rtol', '?')}):",
        "  " + f"{'seq':>6} " + " ".join(f"{n:>10}" for n in names),
    ]
    lines += ["  " + f"{r['seq']:>6} " + " ".join(f"{r['max_abs'][n]:>10.2e}" for n in names) for r in rows]
    return lines


def make_fp16(
    bundle_dir: str | Path,
    *,
    threads: int | None = None,
    allow_modified: bool = False,
    max_memory_gb: float | None = None,
) -> VariantResult:
    """Write ``model.fp16.onnx`` (+ ``step.fp16.onnx``), prove it against fp32 PyTorch, and record it.

    Like int8, the files are staged and proven inside a bundle transaction: they and the manifest entry
    appear together only after the proof passed.

    Raises:
        UsageError: ``bundle_dir`` is not an export directory (IntegrityError: it was modified).
        BackendUnavailable: onnx/onnxruntime are not installed.
        ExportError: A weight or an activation of the verify run exceeds the fp16 range (named), or
            the graph cannot be converted.
        ParityError: The fp16 variant exceeds the fp16 tolerance vs the fp32 reference.
        Interrupted: Ctrl-C or SIGTERM before the variant was proven (nothing recorded).
    """
    from seqdeploy.fp16 import activation_peaks, convert_to_fp16, refuse_activations, weight_peaks

    start = time.perf_counter()
    onnx = require("onnx", extra="export", purpose="the fp16 variant")
    require("onnxruntime", extra="cpu", purpose="the fp16 variant's proof")
    with bundle_transaction(bundle_dir) as tx:
        bundle = Bundle.load(bundle_dir, allow_modified=allow_modified)
        graphs = [g for g in FP16_FILES if g in bundle.specs]
        staged = {FP16_FILES[g]: tx.stage(FP16_FILES[g]) for g in graphs}
        batches, seqs = fp16_sweep(bundle)
        spec = bundle.specs["sequence"]
        weights = 0.0
        for g in graphs:
            src = onnx.load(str(bundle.graph_path(g)))
            weights = max([weights, *weight_peaks(src).values()])
            onnx.save(convert_to_fp16(src), str(staged[FP16_FILES[g]]))
        fault_point("optimize:fp16-written")
        # The activations of the verify run, measured on the fp32 graph with the same shapes and seeds
        # as verify's sweep, so a tensor that would overflow in fp16 is named, not just seen as inf.
        shapes = [(b, s) for b in batches for s in seqs]
        feeds = [make_feeds(spec, b, s, seed=i) for i, (b, s) in enumerate(shapes)]
        peaks = activation_peaks(bundle.graph_path("sequence"), feeds, threads=threads)
        refuse_activations(peaks)
        tol = DEFAULT_TOLERANCES["fp16"]
        entry: dict[str, Any] = {
            "file": FP16_FILES["sequence"],
            "graph": "sequence",
            "graphs": {g: FP16_FILES[g] for g in graphs},
            # every file of the variant, in the key the manifest's integrity check reads
            "files": [FP16_FILES[g] for g in graphs],
            "precision": "fp16",
            "method": "seqdeploy.fp16.convert_to_fp16: fp16 weights and compute, fp32/int64 I/O cast inside",
            "io": {t.name: t.dtype for t in (*spec.inputs, *spec.outputs)},
            "tolerance": {"atol": tol.atol, "rtol": tol.rtol},
            "weights_max_abs": weights,
            "activations_max_abs": max(peaks.values(), default=0.0),
        }
        opts = VerifyOptions(
            backends=("torch", "ort-cpu-fp16"),
            batches=batches,
            seqs=seqs,
            modes=MODES,
            threads=threads,
            max_memory_gb=max_memory_gb,
        )
        names = {g: staged[FP16_FILES[g]].name for g in graphs}
        candidate = {**entry, "file": names["sequence"], "graphs": names, "files": list(names.values())}
        report = _prove(bundle, "fp16", candidate, opts)
        entry["max_abs_vs_fp32"] = report.max_abs_by_tensor(spec.output_names, mode="full")
        entry["error_vs_seq"] = error_vs_seq(report, "ort-cpu-fp16", spec.output_names)
        entry["verified"] = {
            "batches": list(batches),
            "seqs": list(seqs),
            "modes": sorted({c.mode for c in report.cases}),
            "comparisons": len(report.cases),
        }
        _record(tx, bundle, "fp16", entry, staged)
    return VariantResult(bundle.path / FP16_FILES["sequence"], entry, report, time.perf_counter() - start)
