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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seqdeploy._atomic import fault_point
from seqdeploy._atomic import with_path as _with_path
from seqdeploy.config import PipelineConfig
from seqdeploy.config_io import config_to_dict, load_config
from seqdeploy.errors import ExportError, Interrupted, ParityError, UsageError
from seqdeploy.manifest import (
    MANIFEST,
    SCHEMA_VERSION,
    Bundle,
    file_entry,
    library_versions,
    sha256,
    write_manifest,
)
from seqdeploy.parity.report import ParityReport
from seqdeploy.parity.run import VerifyOptions, verify
from seqdeploy.spec import IOSpec, spec_from_config

if TYPE_CHECKING:
    from torch import nn

__all__ = ["ExportResult", "export_model", "self_check_options"]


@dataclass(frozen=True)
class ExportResult:
    """What ``export_model`` produced."""

    path: Path
    manifest: dict[str, Any]
    report: ParityReport
    duration_s: float
    messages: tuple[str, ...] = ()
    """What the user must see: checkpoint unwrapping and key mapping, vectors not used, the module used."""
    warnings: tuple[str, ...] = ()
    """Loud problems that did not stop the export (0 % vectors coverage, a dropped padding vector)."""


def self_check_options(cfg: PipelineConfig, *, max_memory_gb: float | None = None) -> VerifyOptions:
    """The small verify run every export must pass: batch 1 and an odd batch, seq 1, a short untraced
    seq and a long one — none of them the traced shape (batch 2, seq 5) — over every check mode, under
    the export's own memory limit (``export --max-memory-gb``).
    """
    long_seq = max(cfg.shapes.seq[2], 64)
    return VerifyOptions(
        backends=("torch", "ort-cpu"),
        batches=(1, 3),
        seqs=(1, 7, long_seq),
        max_rows=3,
        max_memory_gb=max_memory_gb,
    )


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

    With ``[model] source = "python"`` the model is the user's own module (``entry`` + ``kwargs``; importing
    it runs their code), its outputs are found by running it, and the self-check compares ONNX Runtime with
    that module itself (see ``docs/your-model.md``).

    Args:
        config: A config or the path of a TOML file.
        out_dir: The export directory to create.
        checkpoint: A state_dict to load (``torch.load(weights_only=True)``); training-checkpoint wrappers
            and DataParallel prefixes are unwrapped, and names are mapped by ``[checkpoint] map`` or by
            structure (reported in :attr:`ExportResult.messages`).
        force: Replace an existing ``out_dir`` (only once the new export is proven).
        step: Override ``[export] step``.
        max_memory_gb: Memory limit for the model and the self-check (default: ``$SEQDEPLOY_MAX_MEMORY_GB``,
            else 80 % of the memory available; see :mod:`seqdeploy.budget`).

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
    if not cfg.model.is_python:
        # Refuse what cannot fit before anything is allocated (hidden_size = 10**9 would otherwise die in
        # torch's allocator): the model's weights and the largest self-check case. A user's module is
        # sized once it is imported (_build_python), still before its weights are allocated.
        check_export_budget(cfg, self_check_options(cfg, max_memory_gb=max_memory_gb), max_memory_gb=max_memory_gb)
    with staged_dir(Path(out_dir), force=force, kind=MANIFEST) as tmp:
        built, manifest, report = _export_into(cfg, tmp, checkpoint, max_memory_gb)
    fault_point("export:committed")  # a signal from here on lands after the commit: the export is complete
    out = Path(os.path.realpath(out_dir))
    return ExportResult(
        out, manifest, report, time.perf_counter() - start, tuple(built.messages), tuple(built.warnings)
    )


@dataclass
class _Built:
    """A model ready to export: graph specs, the modules to trace, the weights to save, manifest fields."""

    specs: dict[str, IOSpec]
    modules: dict[str, nn.Module]
    state_dict: dict[str, Any]
    config: dict[str, Any]
    fields: dict[str, Any]
    messages: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    explain: Callable[[ParityReport], str] | None = None
    """Extra advice for a failed self-check (user modules)."""


def _build_zoo(cfg: PipelineConfig, checkpoint: str | Path | None) -> _Built:
    from seqdeploy.models.build import build_model, check_unused_vectors, exportable, load_checkpoint, step_module

    model, vectors = build_model(cfg, load_vectors=checkpoint is None)
    messages: list[str] = []
    vectors_record: dict[str, Any] | None = vectors.to_dict() if vectors is not None else None
    ckpt = None
    if checkpoint is not None:
        # The vectors and vocabulary files are not used (the checkpoint's embedding wins) but still checked:
        # a wrong path or a broken vocabulary is never silently ignored.
        vectors_record = check_unused_vectors(cfg)
        # A vocab-only record (vocab_tokens) is printed by the CLI as "vocab: PATH (N tokens) checked" with or
        # without --checkpoint: it names no vectors that could have been loaded.
        if vectors_record is not None and "vocab_tokens" not in vectors_record:
            messages.append(f"vectors: {vectors_record['path']} not loaded: {vectors_record['reason']}")
        ckpt = load_checkpoint(model, checkpoint, key_map=cfg.checkpoint.map)
        messages = ckpt.describe() + messages
    specs = {"sequence": spec_from_config(cfg, "sequence")}
    traced = exportable(model)
    modules: dict[str, nn.Module] = {"sequence": traced}
    if cfg.export.step:
        specs["step"] = spec_from_config(cfg, "step")
        # Traced from the exportable module too: for cell stacks one native LSTM/GRU/RNN op per layer
        # (seq 1) instead of per-gate MatMul/Sigmoid chains — faster in ORT (33 vs 45-94 µs/token measured,
        # docs/benchmarks.md) and the op TensorRT imports natively. The step self-check proves it equals
        # the eager cell loop.
        modules["step"] = step_module(traced)
    return _Built(
        specs,
        modules,
        model.state_dict(),
        config_to_dict(cfg),
        {
            "embedding_vectors": vectors_record,
            "checkpoint_load": ckpt.to_dict() if ckpt is not None else None,
        },
        messages,
        list(vectors.warnings) if vectors is not None else [],
    )


_LOOP_ADVICE = (
    "A forward that loops over time in Python (for t in range(x.size(0)): cell(...)) is unrolled by the "
    "exporter at the traced length (seq 5), so the graph only works at that length. Use nn.RNN/nn.GRU/nn.LSTM "
    "modules (a stack of *Cell layers with different sizes is a chain of one-layer modules with the cells' "
    "weights copied: same gate order), or describe the model as a zoo config with cell = 'lstm_cell' / "
    "'gru_cell' / 'rnn_cell' and hidden_sizes, which converts the loop to native ops and loads your "
    "checkpoint by structure (docs/your-model.md)."
)


def _build_python(cfg: PipelineConfig, checkpoint: str | Path | None, max_memory_gb: float | None) -> _Built:
    from seqdeploy.budget import check_user_model_budget
    from seqdeploy.models.checkpoint import load_checkpoint
    from seqdeploy.models.user import (
        build_user_model,
        import_entry,
        meta_parameter_bytes,
        probe_outputs,
        recurrent_layers,
        recurrent_summary,
    )
    from seqdeploy.spec import io_inputs, spec_from_io

    factory, info = import_entry(cfg)
    weights = meta_parameter_bytes(factory, cfg)
    if weights is None and checkpoint is not None and Path(checkpoint).is_file():
        weights = Path(checkpoint).stat().st_size  # a state_dict file is its tensors' bytes plus a little
    check = self_check_options(cfg, max_memory_gb=max_memory_gb)
    # Before the real build: the weights (measured on the meta device) and the inputs of the probe runs.
    check_user_model_budget(weights, io_inputs(cfg), None, check, max_memory_gb=max_memory_gb)
    model, info = build_user_model(cfg, (factory, info))
    messages = [f"model: your module {info.resolved.text} (source = 'python'), kwargs {cfg.model.kwargs}"]
    ckpt = None
    if checkpoint is not None:
        ckpt = load_checkpoint(
            model.net, checkpoint, key_map=cfg.checkpoint.map, what=f"your module {info.resolved.attr}"
        )
        messages.extend(ckpt.describe())
    outputs = probe_outputs(model, cfg)
    spec = spec_from_io(cfg, outputs)
    state = model.net.state_dict()
    real_weights = sum(int(t.numel() * t.element_size()) for t in state.values())
    check_user_model_budget(real_weights, spec.inputs, spec, check, max_memory_gb=max_memory_gb)
    layers = recurrent_layers(model.net)
    bidirectional, flops = recurrent_summary(layers)
    assert cfg.io is not None
    source = info.source_file
    user_module = {
        "entry": cfg.model.entry,
        "resolved": info.resolved.text,
        "class": type(model.net).__qualname__,
        "kwargs": cfg.model.kwargs,
        "call": cfg.io.signature.describe(),
        "source_file": source,
        "source_sha256": sha256(Path(source)) if source and Path(source).is_file() else None,
        # Every file the entry is read from (the defining file, and the entry module's own when the class is
        # imported into it: `from layers import Net`): verify warns when any of them changed since export.
        "source_files": {f: sha256(Path(f)) for f in info.source_files if Path(f).is_file()},
        "parameters": int(sum(p.numel() for p in model.net.parameters())),
        "recurrent": layers,
        "bidirectional": bidirectional,
        "flops_per_token": flops,
    }
    config = config_to_dict(cfg)
    # Absolute paths: verify rebuilds the module from the manifest alone, wherever the bundle is read from.
    config["model"]["entry"] = info.resolved.text
    config["model"]["python_path"] = list(info.resolved.search_path)
    warnings = [] if layers else ["no nn.RNN/GRU/LSTM (or *Cell) submodule found in your module"]
    return _Built(
        {"sequence": spec},
        {"sequence": model},
        state,
        config,
        {"user_module": user_module, "embedding_vectors": None, "checkpoint_load": ckpt.to_dict() if ckpt else None},
        messages,
        warnings,
        lambda report: _explain_python_failure(report, layers),
    )


def _explain_python_failure(report: ParityReport, layers: list[dict[str, Any]]) -> str:
    """Advice for a self-check of a user's module that failed, from which comparisons failed and how: a
    mismatch of tensors, or an exception (recorded against what its mode compares with: ``reference`` in
    ``full``, ``self`` in the chunked/batch/padding modes).
    """
    from seqdeploy.export.onnx import TRACE_SEQ

    advice = []
    bad = report.failures
    ref = report.reference
    if any(c.backend != ref and c.against == "reference" and c.mode == "full" and c.seq != TRACE_SEQ for c in bad):
        cells = [x["name"] for x in layers if x["type"].endswith("Cell")]
        found = f" (your module has {', '.join(cells)})" if cells else ""
        advice.append(
            f"ONNX Runtime disagrees with your module, or fails, at lengths other than the traced one{found}. "
            f"{_LOOP_ADVICE}"
        )
    raised = {c.mode: c for c in bad if c.backend == ref and c.error}
    mismatched = {c.mode for c in bad if c.backend == ref and c.against == "self" and not c.error}
    how_fed = {
        "chunked": "fed the sequence in chunks (as short as one step) with the returned state passed back in",
        "batch": "fed one row of the batch alone (batch 1)",
        "padding": "fed a row alone, cut to its length",
    }
    for mode, case in raised.items():
        if mode in how_fed:
            advice.append(
                f"Your module itself raised when {how_fed[mode]}: {(case.error or '').splitlines()[0][:300]}. "
                "seqdeploy serves every batch and length in [shapes]; make forward accept them."
            )
    if "chunked" in mismatched:
        advice.append(
            "Your module itself gives different results when a sequence is fed in chunks with the returned state "
            "carried: its outputs depend on more than that state (e.g. a backward direction written by hand, or "
            "pooling over time). If it is not meant to be streamed, declare [io] state = {} (no state pairs)."
        )
    if "padding" in mismatched:
        advice.append(
            "Your module itself gives a padded row different results than the same row unpadded: it reads padded "
            "steps (e.g. out[-1] on a padded batch — take each row's last valid step, or pack with "
            "pack_padded_sequence(..., enforce_sorted=False))."
        )
    if "batch" in mismatched:
        advice.append("Your module itself mixes rows of a batch (a row alone differs from the same row in a batch).")
    return ("\n" + "\n".join(advice)) if advice else ""


def _record_tracer_warnings(built: _Built) -> None:
    """With ``[export] allow_tracer_warnings = true``, what the trace froze in the user's code (collected by
    :func:`~seqdeploy.export.onnx.export_onnx`) goes into ``user_module.tracer_warnings`` — every verify
    repeats it from there — and is shown now: an opt-in that printed nothing would hide what it allowed.
    """
    um = built.fields.get("user_module")
    if not isinstance(um, dict):  # a zoo model: nothing of the user's is traced
        return
    from seqdeploy.models.user import UserModel

    module = built.modules.get("sequence")
    if not isinstance(module, UserModel) or not module.tracer_warnings:
        return
    frozen = list(module.tracer_warnings)
    um["tracer_warnings"] = frozen
    built.warnings.append(
        "allow_tracer_warnings = true: values frozen at trace time: "
        + "; ".join(frozen)
        + "; the graph computes them as they were for the trace's random inputs, for every input — prove the "
        "bundle with seqdeploy verify DIR --expected FILE.npz on real data (docs/your-model.md)"
    )


def _export_into(
    cfg: PipelineConfig, tmp: Path, checkpoint: str | Path | None, max_memory_gb: float | None = None
) -> tuple[_Built, dict[str, Any], ParityReport]:
    import torch

    from seqdeploy.export.onnx import TRACE_BATCH, TRACE_SEQ
    from seqdeploy.lint import DEFAULT_TARGET, lint_manifest

    built = _build_python(cfg, checkpoint, max_memory_gb) if cfg.model.is_python else _build_zoo(cfg, checkpoint)
    fault_point("export:model-built")
    files = []
    for graph, module in built.modules.items():
        name = "model.onnx" if graph == "sequence" else f"{graph}.onnx"
        _write_graph(module, built.specs[graph], tmp / name, opset=cfg.export.opset)
        files.append(name)
    fault_point("export:onnx-written")
    _record_tracer_warnings(built)
    graphs: dict[str, Any] = {}
    extra: list[str] = []
    for name, graph in zip(files, built.specs, strict=True):
        try:
            _check_graph(tmp / name, built.specs[graph])
        except ExportError as exc:
            if cfg.model.is_python and "no-recurrent-op" in str(exc):
                raise ExportError(f"{exc}\n{_LOOP_ADVICE}") from None
            raise
        graphs[graph] = {"file": name, "spec": built.specs[graph].to_dict()}
        # Models over 2 GiB keep their weights in external data files beside the graph: they are bundle
        # files like any other (listed, hashed), or a reader would load unverified bytes.
        if data := external_data_files(tmp / name):
            graphs[graph]["external_data"] = data
            extra.extend(d for d in data if d not in extra)
    weights = tmp / "model.pt"
    try:
        # Through a Python file object: a write error (ENOSPC, EFBIG) is then an OSError with its errno.
        with weights.open("wb") as fh:
            torch.save(built.state_dict, fh)
    except OSError as exc:
        raise _with_path(exc, weights) from None
    except RuntimeError as exc:  # torch may still wrap a write error in RuntimeError
        raise UsageError(f"{weights}: cannot write the weights ({exc}); is the disk full?") from None
    files.append("model.pt")

    manifest: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "created_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "config": built.config,
        "opset": cfg.export.opset,
        "exporter": "torch.onnx.export(dynamo=False) with dynamic_axes",
        "trace_shapes": {"batch": TRACE_BATCH, "seq": TRACE_SEQ},
        "graphs": graphs,
        "weights": "model.pt",
        "checkpoint": str(checkpoint) if checkpoint is not None else None,
        "versions": library_versions("seqdeploy", "torch", "onnx", "onnxruntime", "numpy"),
        "files": {f: file_entry(tmp / f) for f in (*files, *extra)},
        "variants": {},
    }
    manifest.update(built.fields)
    fault_point("export:self-check")
    # The same limit as the estimate checked before the build (check_export_budget): the self-check's own
    # estimate (verify's) is the same figure, so it can never refuse what the export already accepted.
    check = self_check_options(cfg, max_memory_gb=max_memory_gb)
    report = verify(Bundle.from_manifest(tmp, manifest), check, lint=False)
    if report.partial:
        raise Interrupted(
            f"export interrupted during its self-check ({len(report.cases)} comparisons done); nothing was written"
        )
    if not report.passed:
        advice = built.explain(report) if built.explain is not None else ""
        raise ParityError(f"export self-check failed: {report.summary()}{advice}", report)
    manifest["self_check"] = {
        "passed": True,
        "comparisons": len(report.cases),
        "skipped": [s.to_dict() for s in report.skipped],
        "max_abs": report.max_abs_by_tensor(built.specs["sequence"].output_names),
        "batches": list(check.batches or ()),
        "seqs": list(check.seqs or ()),
    }
    # TensorRT readiness, recorded but never fatal here: the bundle says whether it would parse.
    manifest["lint"] = {DEFAULT_TARGET: lint_manifest(tmp, manifest, DEFAULT_TARGET).to_dict()}
    write_manifest(tmp / MANIFEST, manifest)
    return built, manifest, report
