"""Linting files: every graph and variant of an export directory, or one ``.onnx`` file.

An export directory lists its graphs in ``manifest["graphs"]`` and its variants in
``manifest["variants"]``; each is linted against the IOSpec of the graph it implements. A variant that
only runs on the CPU (the int8 variant's ``com.microsoft`` ops) is never built by TensorRT: under a
TensorRT target its TensorRT-only findings are downgraded to warnings that say so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqdeploy._lazy import require
from seqdeploy.errors import UsageError
from seqdeploy.lint.findings import Finding, LintReport
from seqdeploy.lint.rules import TENSORRT_RULES, lint_model
from seqdeploy.lint.targets import get_target
from seqdeploy.spec import IOSpec

__all__ = ["GraphFile", "graph_files", "lint_file", "lint_manifest", "lint_path"]

_CPU_ONLY_VARIANTS = frozenset({"int8"})


@dataclass(frozen=True, slots=True)
class GraphFile:
    """One ONNX file of an export directory.

    Attributes:
        file: Path relative to the directory (``model.fp16.onnx``).
        graph: The graph it implements (``sequence`` or ``step``), whose IOSpec applies.
        variant: The variant name (``fp16``, ``int8``) or ``None`` for the exported graphs.
        cpu_only: Whether the file is a CPU-only path that TensorRT never builds.
    """

    file: str
    graph: str
    variant: str | None = None
    cpu_only: bool = False


def graph_files(manifest: Mapping[str, Any]) -> list[GraphFile]:
    """Every ONNX file a manifest references: its graphs, then each variant's graphs."""
    out = [GraphFile(str(g["file"]), name) for name, g in manifest.get("graphs", {}).items()]
    for name, v in manifest.get("variants", {}).items():
        per_graph = v.get("graphs") or {v.get("graph", "sequence"): v["file"]}
        cpu_only = name in _CPU_ONLY_VARIANTS or bool(v.get("cpu_only", False))
        out.extend(GraphFile(str(f), g, name, cpu_only) for g, f in per_graph.items())
    return out


def _load(path: Path) -> Any:
    onnx = require("onnx", extra="export", purpose="graph lint")
    return onnx.load(str(path), load_external_data=False)


def lint_file(path: Path, spec: IOSpec | None, target: str, *, name: str | None = None) -> list[Finding]:
    """Lint one ONNX file; an unreadable file is one ``unreadable`` error finding."""
    label = name or path.name
    try:
        model = _load(path)
    except FileNotFoundError:
        return [Finding("unreadable", "error", label, "", f"{path}: file not found")]
    except Exception as exc:  # noqa: BLE001 - onnx raises DecodeError, OSError and friends
        return [Finding("unreadable", "error", label, "", f"not a readable ONNX model: {exc}")]
    return lint_model(model, spec, target=target, graph=label)


def lint_manifest(
    root: Path,
    manifest: Mapping[str, Any],
    target: str,
    *,
    only: list[str] | None = None,
    cpu_only_as_warnings: bool = True,
    locate: Mapping[str, Path] | None = None,
) -> LintReport:
    """Lint every graph and variant listed in ``manifest`` (files under ``root``) for ``target``.

    Args:
        root: The export directory.
        manifest: Its parsed ``manifest.json``.
        target: ``ort``, ``trt10`` or ``trt11``.
        only: Lint only these files (relative names); ``None`` = all.
        cpu_only_as_warnings: Downgrade TensorRT-only errors of CPU-only variants (they are never built).
        locate: Where files not yet in place are (a staged variant before its commit), by relative name.
    """
    tgt = get_target(target)
    specs = {k: IOSpec.from_dict(g["spec"]) for k, g in manifest.get("graphs", {}).items()}
    report = LintReport(tgt.name)
    for gf in graph_files(manifest):
        if only is not None and gf.file not in only:
            continue
        path = (locate or {}).get(gf.file, root / gf.file)
        found = lint_file(path, specs.get(gf.graph), tgt.name, name=gf.file)
        report.extend(_adjust(gf, found, tgt.tensorrt and cpu_only_as_warnings))
    return report


def _adjust(gf: GraphFile, found: list[Finding], tensorrt: bool) -> list[Finding]:
    out = []
    for f in found:
        if gf.variant in _CPU_ONLY_VARIANTS and f.code == "no-recurrent-op":
            continue  # quantized graphs hold DynamicQuantizeLSTM or keep GRU/RNN; nothing was unrolled
        if tensorrt and gf.cpu_only and f.code in TENSORRT_RULES and f.severity == "error":
            f = f.as_warning(
                f"{gf.file} is a CPU-only variant that TensorRT never builds; engines come from the "
                "fp32 or fp16 graphs"
            )
        out.append(f)
    return out


def lint_path(path: str | Path, target: str) -> LintReport:
    """Lint an export directory (every graph and variant) or a single ``.onnx`` file.

    A single file inside an export directory is linted against its graph's IOSpec, and asked plainly
    whether the target can take it (a CPU-only variant's TensorRT findings stay errors); a file outside
    an export gets the graph-internal rules only.

    Raises:
        UsageError: ``path`` is neither an export directory nor an ONNX file.
    """
    p = Path(path)
    get_target(target)
    manifest_path = (p if p.is_dir() else p.parent) / "manifest.json"
    manifest: dict[str, Any] | None = None
    if manifest_path.is_file():
        from seqdeploy.manifest import validate_manifest

        # Read, not Bundle.load: lint judges the files as they are (a modified file is what it is asked
        # about), but a malformed manifest is still a usage error, not a crash.
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(f"{manifest_path}: unreadable manifest: {exc}") from None
        problems = validate_manifest(manifest)
        if problems:
            raise UsageError(f"{manifest_path}: malformed manifest:\n  " + "\n  ".join(problems[:10]))
    if p.is_dir():
        if manifest is None:
            raise UsageError(
                f"{p}: not a seqdeploy export directory (no manifest.json); give an export directory or a .onnx file"
            )
        return lint_manifest(p, manifest, target)
    if not p.is_file():
        raise UsageError(f"{p}: no such file or directory; give an export directory or a .onnx file")
    if manifest is not None:
        for gf in graph_files(manifest):
            if (p.parent / gf.file).resolve() == p.resolve():
                return lint_manifest(p.parent, manifest, target, only=[gf.file], cpu_only_as_warnings=False)
    try:
        model = _load(p)
    except Exception as exc:  # noqa: BLE001 - onnx raises DecodeError, OSError and friends
        raise UsageError(f"{p}: not a readable ONNX model ({type(exc).__name__}: {exc})") from None
    return LintReport(target, lint_model(model, None, target=target, graph=p.name))
