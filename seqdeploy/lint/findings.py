"""The one findings type of every graph lint, and a lint run's report (``seqdeploy lint --json``).

Stdlib only: the parity report, the manifest and the CLI use these types without importing onnx.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

__all__ = ["Finding", "LintReport", "Severity", "render_findings"]

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Finding:
    """A structural problem found in an ONNX graph without running it.

    Attributes:
        code: The rule's code (``rnn-layout``, ``fp16-range``, ...; table in :mod:`seqdeploy.lint.rules`).
        severity: ``"error"`` (the graph is wrong, or the target will reject it) or ``"warning"``.
        graph: The ONNX file the finding is about, relative to its export directory (``model.fp16.onnx``).
        node: The ONNX node name (``""`` for graph-level findings such as I/O or opset).
        message: What is wrong, why it matters and how to fix it.
    """

    code: str
    severity: Severity
    graph: str
    node: str
    message: str

    @property
    def file(self) -> str:
        """The file the finding is about (the parity report's historical field name)."""
        return self.graph

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``seqdeploy lint --json`` schema)."""
        return {
            "code": self.code,
            "severity": self.severity,
            "graph": self.graph,
            "node": self.node,
            "message": self.message,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        """Inverse of :meth:`to_dict` (also reads the parity report's ``file`` field)."""
        return cls(
            code=str(data["code"]),
            severity="error" if data["severity"] == "error" else "warning",
            graph=str(data.get("graph", data.get("file", ""))),
            node=str(data.get("node", "")),
            message=str(data["message"]),
        )

    def as_warning(self, note: str) -> Finding:
        """The same finding downgraded to a warning, with ``note`` appended to the message."""
        return replace(self, severity="warning", message=f"{self.message} ({note})")


@dataclass
class LintReport:
    """Every finding of one lint run against one target. ``passed`` when no finding is an error."""

    target: str
    findings: list[Finding] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    """Files that differ from the bundle's manifest, linted as they are (``--allow-modified``)."""

    @property
    def passed(self) -> bool:
        """Whether no finding has severity ``error``."""
        return not any(f.severity == "error" for f in self.findings)

    @property
    def errors(self) -> list[Finding]:
        """The findings of severity ``error``."""
        return [f for f in self.findings if f.severity == "error"]

    def extend(self, findings: Iterable[Finding]) -> None:
        """Add findings."""
        self.findings.extend(findings)

    def to_dict(self) -> dict[str, Any]:
        """``{"target", "passed", "findings": [...]}``: the ``seqdeploy lint --json`` schema (plus ``modified``
        only when files were linted that differ from the manifest, accepted with ``--allow-modified``).
        """
        out: dict[str, Any] = {
            "target": self.target,
            "passed": self.passed,
            "findings": [f.to_dict() for f in self.findings],
        }
        if self.modified:
            out["modified"] = list(self.modified)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LintReport:
        """Inverse of :meth:`to_dict`."""
        return cls(
            str(data["target"]),
            [Finding.from_dict(f) for f in data.get("findings", [])],
            [str(m) for m in data.get("modified", [])],
        )


def render_findings(findings: Sequence[Finding]) -> list[str]:
    """One ``ERROR | code | graph | node | message`` line per finding."""
    return [f"{f.severity.upper()} | {f.code} | {f.graph or '-'} | {f.node or '-'} | {f.message}" for f in findings]
