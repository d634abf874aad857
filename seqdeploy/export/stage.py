"""The export stage behind ``seqdeploy export``: config → model → ONNX → lint/checker → self-verify → DIR.

Everything is written to a temporary sibling directory and renamed into place only after every check
passed, so a failure never leaves a half-written export (and ``--force`` never destroys the old one
before the new one is proven).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqdeploy._atomic import fault_point
from seqdeploy.config import PipelineConfig
from seqdeploy.config_io import config_to_dict, load_config
from seqdeploy.errors import ExportError, Interrupted, ParityError, UsageError
from seqdeploy.manifest import MANIFEST, SCHEMA_VERSION, Bundle, file_entry, library_versions, write_manifest
from seqdeploy.parity.report import ParityReport
from seqdeploy.parity.run import VerifyOptions, verify
from seqdeploy.spec import spec_from_config

__all__ = ["ExportResult", "export_model", "self_check_options"]


@dataclass(frozen=True)
class ExportResult:
    """What ``export_model`` produced."""

    path: Path
    manifest: dict[str, Any]
    report: ParityReport
    duration_s: float


def self_check_options(cfg: PipelineConfig) -> VerifyOptions:
    """The small verify run every export must pass: batch 1 and an odd batch, seq 1, a short untraced
    seq and a long one — none of them the traced shape (batch 2, seq 5) — over every check mode.
    """
    long_seq = max(cfg.shapes.seq[2], 64)
    return VerifyOptions(backends=("torch", "ort-cpu"), batches=(1, 3), seqs=(1, 7, long_seq), max_rows=3)


def external_data_files(path: Path) -> list[str]:
    """The external data files an ONNX file refers to (relative to its directory), in first-use order."""
    import onnx

    found: list[str] = []

    def visit(tensors: Any) -> None:
        for t in tensors:
            if t.data_location == onnx.TensorProto.EXTERNAL:
                loc = next((e.value for e in t.external_data if e.key == "location"), None)
                if loc and loc not in found:
                    found.append(loc)

    def walk(graph: Any) -> None:
        visit(graph.initializer)
        for node in graph.node:
            for a in node.attribute:
                visit([a.t] if a.HasField("t") else [])
                visit(a.tensors)
                if a.HasField("g"):
                    walk(a.g)
                for g in a.graphs:
                    walk(g)

    walk(onnx.load(str(path), load_external_data=False).graph)
    return found


def _check_graph(path: Path, spec: Any) -> None:
    import onnx

    from seqdeploy.export.lint import lint_onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:  # noqa: BLE001 - onnx raises ValidationError, InferenceError, ...
        raise ExportError(f"{path.name}: onnx checker (full) failed: {exc}") from None
    errors = [f for f in lint_onnx(onnx.load(str(path)), spec, file=path.name) if f.severity == "error"]
    if errors:
        raise ExportError(f"{path.name}: failed lint:\n  " + "\n  ".join(f"[{f.code}] {f.message}" for f in errors))


def _with_path(exc: OSError, path: Path) -> OSError:
    """``exc`` naming ``path`` (a failed ``write``/``close`` carries no file name): what the CLI reports."""
    if exc.filename or exc.errno is None:
        return exc
    return OSError(exc.errno, exc.strerror or os.strerror(exc.errno), str(path))


def _write_graph(module: Any, spec: Any, path: Path, *, opset: int) -> None:
    """``export_onnx`` with a failed write (disk full, a file-size limit) reported as the OS error it is
    (exit 2, naming the file) instead of "torch.onnx.export failed" (exit 1: a graph that failed its checks).
    """
    from seqdeploy.export.onnx import export_onnx

    try:
        export_onnx(module, spec, path, opset=opset)
    except ExportError as exc:
        if isinstance(exc.__cause__, OSError) and exc.__cause__.errno is not None:
            raise _with_path(exc.__cause__, path) from None
        raise


def export_model(
    config: PipelineConfig | str | Path,
    out_dir: str | Path,
    *,
    checkpoint: str | Path | None = None,
    force: bool = False,
    step: bool | None = None,
    max_memory_gb: float | None = None,
) -> ExportResult:
    """Export a config's model to ``out_dir`` and prove the export.

    Writes ``model.onnx`` (+ ``step.onnx`` with ``step``), ``model.pt`` (the exported state_dict) and
    ``manifest.json``. Before ``out_dir`` appears, the graphs pass the full ONNX checker and the lints,
    and a small :func:`~seqdeploy.parity.run.verify` run against PyTorch at untraced shapes. Everything
    is built in a staging directory that is renamed to ``out_dir`` only then (see
    :func:`seqdeploy._atomic.staged_dir`): a failure or an interruption leaves nothing behind.

    Args:
        config: A config or the path of a TOML file.
        out_dir: The export directory to create.
        checkpoint: A state_dict to load (``torch.load(weights_only=True)``).
        force: Replace an existing ``out_dir`` (only once the new export is proven).
        step: Override ``[export] step``.
        max_memory_gb: Memory limit for the model and the self-check (default: see
            :func:`seqdeploy.budget.memory_limit_bytes`).

    Raises:
        ConfigError, UsageError, CheckpointError, VectorsError: Bad input (exit 2).
        ResourceLimitError: The model or the self-check would not fit in memory (exit 2).
        ExportError: The exporter failed or a graph failed the checker or a lint.
        ParityError: The self-check found a mismatch; ``.report`` has the details.
        Interrupted: Ctrl-C or SIGTERM during the self-check (nothing was written).
        BackendUnavailable: onnxruntime is missing, so the export cannot be checked.
    """
    from seqdeploy._atomic import staged_dir
    from seqdeploy.budget import check_export_budget

    start = time.perf_counter()
    cfg = config if isinstance(config, PipelineConfig) else load_config(config)
    if step is not None and step != cfg.export.step:
        cfg = dataclasses.replace(cfg, export=dataclasses.replace(cfg.export, step=step))
    # Refuse what cannot fit before anything is allocated (hidden_size = 10**9 would otherwise die in
    # torch's allocator): the model's weights and the largest self-check case.
    check_export_budget(cfg, self_check_options(cfg), max_memory_gb=max_memory_gb)
    with staged_dir(Path(out_dir), force=force, kind=MANIFEST) as tmp:
        manifest, report = _export_into(cfg, tmp, checkpoint)
    fault_point("export:committed")  # a signal from here on lands after the commit: the export is complete
    out = Path(os.path.realpath(out_dir))
    return ExportResult(out, manifest, report, time.perf_counter() - start)


def _export_into(cfg: PipelineConfig, tmp: Path, checkpoint: str | Path | None) -> tuple[dict[str, Any], ParityReport]:
    import torch

    from seqdeploy.export.onnx import TRACE_BATCH, TRACE_SEQ
    from seqdeploy.models.build import build_model, exportable, load_checkpoint, step_module

    model, vectors = build_model(cfg, load_vectors=checkpoint is None)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
    fault_point("export:model-built")
    specs = {"sequence": spec_from_config(cfg, "sequence")}
    traced = exportable(model)
    _write_graph(traced, specs["sequence"], tmp / "model.onnx", opset=cfg.export.opset)
    files = ["model.onnx"]
    if cfg.export.step:
        specs["step"] = spec_from_config(cfg, "step")
        # Traced from the exportable module too: for cell stacks one native LSTM/GRU/RNN op per layer
        # (seq 1) instead of per-gate MatMul/Sigmoid chains — faster in ORT (33 vs 45-94 µs/token measured,
        # docs/benchmarks.md) and the op TensorRT imports natively. The step self-check proves it equals
        # the eager cell loop.
        _write_graph(step_module(traced), specs["step"], tmp / "step.onnx", opset=cfg.export.opset)
        files.append("step.onnx")
    fault_point("export:onnx-written")
    graphs: dict[str, Any] = {}
    extra: list[str] = []
    for name, graph in zip(files, specs, strict=True):
        _check_graph(tmp / name, specs[graph])
        graphs[graph] = {"file": name, "spec": specs[graph].to_dict()}
        # Models over 2 GiB keep their weights in external data files beside the graph: they are bundle
        # files like any other (listed, hashed), or a reader would load unverified bytes.
        if data := external_data_files(tmp / name):
            graphs[graph]["external_data"] = data
            extra.extend(d for d in data if d not in extra)
    weights = tmp / "model.pt"
    try:
        # Through a Python file object: a write error (ENOSPC, EFBIG) is then an OSError with its errno.
        with weights.open("wb") as fh:
            torch.save(model.state_dict(), fh)
    except OSError as exc:
        raise _with_path(exc, weights) from None
    except RuntimeError as exc:  # torch may still wrap a write error in RuntimeError
        raise UsageError(f"{weights}: cannot write the weights ({exc}); is the disk full?") from None
    files.append("model.pt")

    manifest: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "created_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "config": config_to_dict(cfg),
        "opset": cfg.export.opset,
        "exporter": "torch.onnx.export(dynamo=False) with dynamic_axes",
        "trace_shapes": {"batch": TRACE_BATCH, "seq": TRACE_SEQ},
        "graphs": graphs,
        "weights": "model.pt",
        "checkpoint": str(checkpoint) if checkpoint is not None else None,
        "embedding_vectors": vectors.to_dict() if vectors is not None else None,
        "versions": library_versions("seqdeploy", "torch", "onnx", "onnxruntime", "numpy"),
        "files": {f: file_entry(tmp / f) for f in (*files, *extra)},
        "variants": {},
    }
    fault_point("export:self-check")
    check = self_check_options(cfg)
    report = verify(Bundle.from_manifest(tmp, manifest), check, lint=False)
    if report.partial:
        raise Interrupted(
            f"export interrupted during its self-check ({len(report.cases)} comparisons done); nothing was written"
        )
    if not report.passed:
        raise ParityError(f"export self-check failed: {report.summary()}", report)
    manifest["self_check"] = {
        "passed": True,
        "comparisons": len(report.cases),
        "skipped": [s.to_dict() for s in report.skipped],
        "max_abs": report.max_abs_by_tensor(specs["sequence"].output_names),
        "batches": list(check.batches or ()),
        "seqs": list(check.seqs or ()),
    }
    write_manifest(tmp / MANIFEST, manifest)
    return manifest, report
