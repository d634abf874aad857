"""Linting files: every graph and variant of an export directory, or one ``.onnx`` file.

An export directory lists its graphs in ``manifest["graphs"]`` and its variants in
``manifest["variants"]``; each is linted against the IOSpec of the graph it implements. A variant that
only runs on the CPU (the int8 variant's ``com.microsoft`` ops) is never built by TensorRT: under a
TensorRT target its TensorRT-only findings are downgraded to warnings that say so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seqdeploy._lazy import require
from seqdeploy.errors import IntegrityError, UsageError
from seqdeploy.lint.findings import Finding, LintReport
from seqdeploy.lint.rules import TENSORRT_RULES, lint_model
from seqdeploy.lint.targets import get_target
from seqdeploy.spec import IOSpec

if TYPE_CHECKING:
    from seqdeploy.manifest import Bundle

__all__ = [
    "GraphFile",
    "graph_files",
    "lint_file",
    "lint_manifest",
    "lint_path",
    "variant_file",
    "variant_graphs",
    "variant_path",
]

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


def variant_graphs(entry: Mapping[str, Any]) -> dict[str, str]:
    """``{graph: file}`` of one variant entry of a manifest (``graphs``, or the single ``graph``/``file``)."""
    per_graph = entry.get("graphs") or {entry.get("graph", "sequence"): entry["file"]}
    return {str(g): str(f) for g, f in per_graph.items()}


def variant_file(
    manifest: Mapping[str, Any], variant: str, graph: str, *, needed_by: str, bundle_dir: str = "DIR"
) -> str:
    """The file (relative to the export directory) that implements ``graph`` in ``variant`` — **the** answer
    to "which file is the fp16 variant of graph G", for every caller (backends, the plan, lint).

    The name is as the manifest records it; open it only through :meth:`seqdeploy.manifest.Bundle.file`
    (:func:`variant_path`), which refuses a path outside the bundle.

    Args:
        manifest: The export's manifest.
        variant: ``fp16``, ``int8``.
        graph: ``sequence`` or ``step``.
        needed_by: Who asks, for the message (``"backend 'ort-cpu-fp16'"``, ``"--precision fp16"``).
        bundle_dir: The export directory as the user named it, for the command in the message.

    Raises:
        UsageError: The export has no such variant, or the variant has no such graph (says how to make it).
    """
    entry = (manifest.get("variants") or {}).get(variant)
    make = f"seqdeploy optimize {bundle_dir} --{variant}"
    if entry is None:
        raise UsageError(
            f"{needed_by} needs the {variant} variant, which {bundle_dir} does not have; create it (and prove it on "
            f"the CPU) with '{make}'"
        )
    files = variant_graphs(entry)
    if graph not in files:
        raise UsageError(
            f"{needed_by}: the {variant} variant of {bundle_dir} has no '{graph}' graph (it has {sorted(files)}); "
            f"re-create it with '{make}'"
        )
    return files[graph]


def variant_path(bundle: Bundle, variant: str, graph: str, *, needed_by: str) -> Path:
    """:func:`variant_file` resolved through ``bundle.file``: a recorded path outside the bundle is refused.

    Raises:
        UsageError: No such variant or graph.
        IntegrityError: The manifest points the variant outside the bundle.
    """
    return bundle.file(variant_file(bundle.manifest, variant, graph, needed_by=needed_by, bundle_dir=str(bundle.path)))


def graph_files(manifest: Mapping[str, Any]) -> list[GraphFile]:
    """Every ONNX file a manifest references: its graphs, then each variant's graphs."""
    out = [GraphFile(str(g["file"]), name) for name, g in manifest.get("graphs", {}).items()]
    for name, v in manifest.get("variants", {}).items():
        cpu_only = name in _CPU_ONLY_VARIANTS or bool(v.get("cpu_only", False))
        out.extend(GraphFile(f, g, name, cpu_only) for g, f in variant_graphs(v).items())
    return out


def _load(path: Path) -> Any:
    onnx = require("onnx", extra="export", purpose="graph lint")
    return onnx.load(str(path), load_external_data=False)


def lint_file(
    path: Path, spec: IOSpec | None, target: str, *, name: str | None = None, source: Path | None = None
) -> list[Finding]:
    """Lint one ONNX file; an unreadable file is one ``unreadable`` error finding.

    ``source``: the fp32 graph this file was converted from (a variant's), for the ``fp16-range`` rule.
    """
    label = name or path.name
    try:
        model = _load(path)
    except FileNotFoundError:
        return [Finding("unreadable", "error", label, "", f"{path}: file not found")]
    except Exception as exc:  # noqa: BLE001 - onnx raises DecodeError, OSError and friends
        return [Finding("unreadable", "error", label, "", f"not a readable ONNX model: {exc}")]
    src = None
    if source is not None:
        try:
            src = _load(source)
        except Exception:  # noqa: BLE001 - the source gets its own finding when it is linted itself
            src = None
    return lint_model(model, spec, target=target, graph=label, source=src)


def _inside(root: Path, rel: str) -> Path:
    from seqdeploy.manifest import inside

    full = inside(root, rel)
    if full is None:
        raise IntegrityError(f"{root}: {rel!r} points outside the bundle; a bundle never reads files outside it")
    return full


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
        manifest: Its parsed ``manifest.json`` (checked by the caller: :meth:`Bundle.load`).
        target: ``ort``, ``trt10`` or ``trt11``.
        only: Lint only these files (relative names); ``None`` = all.
        cpu_only_as_warnings: Downgrade TensorRT-only errors of CPU-only variants (they are never built).
        locate: Where files not yet in place are (a staged variant before its commit), by relative name.

    Raises:
        IntegrityError: The manifest points a file outside ``root``.
    """
    tgt = get_target(target)
    specs = {k: IOSpec.from_dict(g["spec"]) for k, g in manifest.get("graphs", {}).items()}
    sources = {k: str(g["file"]) for k, g in manifest.get("graphs", {}).items()}
    where = dict(locate or {})

    def path_of(rel: str) -> Path:
        return where[rel] if rel in where else _inside(root, rel)

    report = LintReport(tgt.name)
    for gf in graph_files(manifest):
        if only is not None and gf.file not in only:
            continue
        source = path_of(sources[gf.graph]) if gf.variant is not None and gf.graph in sources else None
        found = lint_file(path_of(gf.file), specs.get(gf.graph), tgt.name, name=gf.file, source=source)
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


def lint_path(path: str | Path, target: str, *, allow_modified: bool = False) -> LintReport:
    """Lint an export directory (every graph and variant) or a single ``.onnx`` file.

    An export directory is loaded like every other command loads it (:meth:`Bundle.load`): a file that
    differs from its manifest is refused unless ``allow_modified`` (then the report's ``modified`` says
    what differs). A single file inside an export directory is linted against its graph's IOSpec, and
    asked plainly whether the target can take it (a CPU-only variant's TensorRT findings stay errors); a
    file outside an export gets the graph-internal rules only.

    Raises:
        UsageError: ``path`` is neither an export directory nor an ONNX file, or its manifest is malformed.
        IntegrityError: The export's files differ from its manifest (without ``allow_modified``).
    """
    from seqdeploy.manifest import MANIFEST, Bundle

    p = Path(path)
    get_target(target)
    if not p.exists():
        raise UsageError(f"{p}: no such file or directory; give an export directory or a .onnx file")
    root = p if p.is_dir() else p.parent
    bundle = Bundle.load(root, allow_modified=allow_modified) if (root / MANIFEST).is_file() else None
    if p.is_dir():
        if bundle is None:
            raise UsageError(
                f"{p}: not a seqdeploy export directory (no {MANIFEST}); give an export directory or a .onnx file"
            )
        return _with_modified(lint_manifest(bundle.path, bundle.manifest, target), bundle)
    if not p.is_file():
        raise UsageError(f"{p}: not a regular file; give an export directory or a .onnx file")
    if bundle is not None:
        for gf in graph_files(bundle.manifest):
            if bundle.file(gf.file).resolve() == p.resolve():
                report = lint_manifest(
                    bundle.path, bundle.manifest, target, only=[gf.file], cpu_only_as_warnings=False
                )
                return _with_modified(report, bundle)
    try:
        model = _load(p)
    except Exception as exc:  # noqa: BLE001 - onnx raises DecodeError, OSError and friends
        raise UsageError(f"{p}: not a readable ONNX model ({type(exc).__name__}: {exc})") from None
    return LintReport(target, lint_model(model, None, target=target, graph=p.name))


def _with_modified(report: LintReport, bundle: Bundle) -> LintReport:
    report.modified = list(bundle.modified)
    return report
