"""The lint layer: facts about ONNX graphs, checked without running them.

Used by export (the ``ort`` rules must pass; the ``trt10`` rules are recorded), verify (every file it
runs), optimize (variants), ``seqdeploy lint`` and ``compile --plan-only``. It sits below all of them
and imports none of them: :mod:`~seqdeploy.lint.findings` is stdlib only, the rules import onnx lazily.

* :mod:`~seqdeploy.lint.findings` — :class:`Finding` (``code``, ``severity``, ``graph``, ``node``,
  ``message``) and :class:`LintReport` (the ``seqdeploy lint --json`` schema).
* :mod:`~seqdeploy.lint.targets` — ``ort``, ``trt10``, ``trt11`` and their parser facts.
* :mod:`~seqdeploy.lint.rules` — the rule table and :func:`lint_model`.
* :mod:`~seqdeploy.lint.bundle` — export directories and single files (:func:`lint_path`).
"""

from __future__ import annotations

from seqdeploy.lint.bundle import GraphFile, graph_files, lint_file, lint_manifest, lint_path
from seqdeploy.lint.findings import Finding, LintReport, Severity, render_findings
from seqdeploy.lint.rules import FP16_MAX, RECURRENT_OPS, RULES, lint_model
from seqdeploy.lint.targets import DEFAULT_TARGET, TARGETS, Target, get_target

__all__ = [
    "DEFAULT_TARGET",
    "FP16_MAX",
    "RECURRENT_OPS",
    "RULES",
    "TARGETS",
    "Finding",
    "GraphFile",
    "LintReport",
    "Severity",
    "Target",
    "get_target",
    "graph_files",
    "lint_file",
    "lint_manifest",
    "lint_model",
    "lint_path",
    "render_findings",
]
