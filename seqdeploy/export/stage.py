"""The export stage behind ``seqdeploy export``: config → model → ONNX → lint/checker → self-verify → DIR.

Everything is written to a temporary sibling directory and renamed into place only after every check
passed, so a failure never leaves a half-written export (and ``--force`` never destroys the old one
before the new one is proven).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqdeploy.config import PipelineConfig
from seqdeploy.config_io import config_to_dict, load_config
from seqdeploy.errors import ExportError, ParityError, UsageError
from seqdeploy.manifest import MANIFEST, SCHEMA_VERSION, Bundle, file_entry, library_versions, write_json
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


def _check_graph(path: Path, spec: Any) -> None:
    import onnx

    from seqdeploy.lint import lint_model

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:  # noqa: BLE001 - onnx raises ValidationError, InferenceError, ...
        raise ExportError(f"{path.name}: onnx checker (full) failed: {exc}") from None
    errors = [
        f for f in lint_model(onnx.load(str(path)), spec, target="ort", graph=path.name) if f.severity == "error"
    ]
    if errors:
        raise ExportError(f"{path.name}: failed lint:\n  " + "\n  ".join(f"[{f.code}] {f.message}" for f in errors))


def export_model(
    config: PipelineConfig | str | Path,
    out_dir: str | Path,
    *,
    checkpoint: str | Path | None = None,
    force: bool = False,
    step: bool | None = None,
) -> ExportResult:
    """Export a config's model to ``out_dir`` and prove the export.

    Writes ``model.onnx`` (+ ``step.onnx`` with ``step``), ``model.pt`` (the exported state_dict) and
    ``manifest.json``. Before ``out_dir`` appears, the graphs pass the full ONNX checker and the lints,
    and a small :func:`~seqdeploy.parity.run.verify` run against PyTorch at untraced shapes.

    Args:
        config: A config or the path of a TOML file.
        out_dir: The export directory to create.
        checkpoint: A state_dict to load (``torch.load(weights_only=True)``).
        force: Replace an existing ``out_dir`` (only once the new export is proven).
        step: Override ``[export] step``.

    Raises:
        ConfigError, UsageError, CheckpointError, VectorsError: Bad input (exit 2).
        ExportError: The exporter failed or a graph failed the checker or a lint.
        ParityError: The self-check found a mismatch; ``.report`` has the details.
        BackendUnavailable: onnxruntime is missing, so the export cannot be checked.
    """
    start = time.perf_counter()
    cfg = config if isinstance(config, PipelineConfig) else load_config(config)
    if step is not None and step != cfg.export.step:
        cfg = dataclasses.replace(cfg, export=dataclasses.replace(cfg.export, step=step))
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a directory; choose another -o path")
    if out.exists() and not force:
        raise UsageError(
            f"{out}: already exists; pass --force to replace it (the old export is kept until the "
            "new one has passed its checks)"
        )
    if out.exists() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        # --force replaces exports, never arbitrary directories (a mistyped -o must not delete a project).
        raise UsageError(f"{out}: exists and is not a seqdeploy export (no {MANIFEST}); --force only replaces exports")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    except OSError as exc:
        raise UsageError(f"{out}: cannot create the export directory here: {exc}") from None
    try:
        manifest, report = _export_into(cfg, tmp, checkpoint)
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportResult(out, manifest, report, time.perf_counter() - start)


def _export_into(cfg: PipelineConfig, tmp: Path, checkpoint: str | Path | None) -> tuple[dict[str, Any], ParityReport]:
    import torch

    from seqdeploy.export.onnx import TRACE_BATCH, TRACE_SEQ, export_onnx
    from seqdeploy.lint import lint_manifest
    from seqdeploy.models.build import build_model, exportable, load_checkpoint, step_module

    model, vectors = build_model(cfg, load_vectors=checkpoint is None)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
    specs = {"sequence": spec_from_config(cfg, "sequence")}
    traced = exportable(model)
    export_onnx(traced, specs["sequence"], tmp / "model.onnx", opset=cfg.export.opset)
    files = ["model.onnx"]
    if cfg.export.step:
        specs["step"] = spec_from_config(cfg, "step")
        # Traced from the exportable module too: for cell stacks one native LSTM/GRU/RNN op per layer
        # (seq 1) instead of per-gate MatMul/Sigmoid chains — faster in ORT (33 vs 45-94 µs/token measured,
        # docs/benchmarks.md) and the op TensorRT imports natively. The step self-check proves it equals
        # the eager cell loop.
        export_onnx(step_module(traced), specs["step"], tmp / "step.onnx", opset=cfg.export.opset)
        files.append("step.onnx")
    for name, graph in zip(files, specs, strict=True):
        _check_graph(tmp / name, specs[graph])
    torch.save(model.state_dict(), tmp / "model.pt")
    files.append("model.pt")

    manifest: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "created_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "config": config_to_dict(cfg),
        "opset": cfg.export.opset,
        "exporter": "torch.onnx.export(dynamo=False) with dynamic_axes",
        "trace_shapes": {"batch": TRACE_BATCH, "seq": TRACE_SEQ},
        "graphs": {g: {"file": f, "spec": specs[g].to_dict()} for g, f in zip(specs, files, strict=False)},
        "weights": "model.pt",
        "checkpoint": str(checkpoint) if checkpoint is not None else None,
        "embedding_vectors": vectors.to_dict() if vectors is not None else None,
        "versions": library_versions("seqdeploy", "torch", "onnx", "onnxruntime", "numpy"),
        "files": {f: file_entry(tmp / f) for f in files},
        "variants": {},
    }
    write_json(tmp / MANIFEST, manifest)
    check = self_check_options(cfg)
    report = verify(Bundle.load(tmp), check, lint=False)
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
    # TensorRT readiness, recorded but never fatal here: the bundle says whether it would parse.
    manifest["lint"] = {"trt10": lint_manifest(tmp, manifest, "trt10").to_dict()}
    write_json(tmp / MANIFEST, manifest)
    return manifest, report


def _swap_into_place(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``; an existing ``out`` is moved aside first and deleted only afterwards."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except OSError:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
