"""Parity results as data, and their renderings (terminal table, JSON, Markdown).

The JSON schema is documented in ``docs/parity.md``; bump :data:`SCHEMA_VERSION` when a
field changes meaning (adding fields does not).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from seqdeploy.lint.findings import Finding
from seqdeploy.parity.compare import TensorDiff

__all__ = ["SCHEMA_VERSION", "CaseResult", "ParityReport", "Skip", "render_markdown", "render_table"]

SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class CaseResult:
    """One comparison: a backend, a check mode, a shape, and one :class:`TensorDiff` per tensor.

    ``against`` is ``"reference"`` (vs the reference backend) or ``"self"`` (the backend against its
    own whole-sequence run, e.g. chunked vs full). ``error`` is set when the backend raised.
    """

    backend: str
    mode: str
    batch: int
    seq: int
    against: str
    tensors: dict[str, TensorDiff]
    detail: str = ""
    error: str | None = None

    @property
    def passed(self) -> bool:
        """No error and every tensor within tolerance."""
        return self.error is None and all(t.passed for t in self.tensors.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "backend": self.backend,
            "mode": self.mode,
            "batch": self.batch,
            "seq": self.seq,
            "against": self.against,
            "detail": self.detail,
            "passed": self.passed,
            "error": self.error,
            "tensors": {name: d.to_dict() for name, d in self.tensors.items()},
        }


@dataclass(frozen=True, slots=True)
class Skip:
    """A check mode that does not apply, and why."""

    mode: str
    reason: str
    backend: str | None = None
    batch: int | None = None
    seq: int | None = None
    """Set when the skip concerns one shape of the sweep only."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "mode": self.mode,
            "backend": self.backend,
            "reason": self.reason,
            "batch": self.batch,
            "seq": self.seq,
        }


@dataclass
class ParityReport:
    """Every comparison of a verify run. ``passed`` only if all cases pass and no lint error was found."""

    reference: str
    backends: list[str]
    cases: list[CaseResult] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    lint: list[Finding] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What the reader must know to read the report (e.g. that the reference is the user's own module)."""
    tolerances: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    duration_s: float = 0.0
    partial: bool = False

    @property
    def passed(self) -> bool:
        """Whether the run was complete, compared something, every case passed and lint found no error.

        A partial (interrupted) run is never passed, even when nothing had failed yet, and neither is a
        run with no comparison at all: "nothing went wrong" is not proof.
        """
        return (
            not self.partial
            and bool(self.cases)
            and all(c.passed for c in self.cases)
            and not any(f.severity == "error" for f in self.lint)
        )

    @property
    def failures(self) -> list[CaseResult]:
        """The failing cases."""
        return [c for c in self.cases if not c.passed]

    def max_abs_by_tensor(self, names: Sequence[str], *, mode: str | None = None) -> dict[str, float]:
        """The largest ``max_abs`` of each tensor over the comparisons against the reference (optionally
        of one mode only); 0.0 for a tensor never compared.
        """
        cases = [c for c in self.cases if c.against == "reference" and (mode is None or c.mode == mode)]
        return {n: max((c.tensors[n].max_abs for c in cases if n in c.tensors), default=0.0) for n in names}

    def failing_tensors(self) -> list[str]:
        """Names of tensors that failed anywhere (sorted, unique)."""
        return sorted({n for c in self.failures for n, d in c.tensors.items() if not d.passed})

    def summary(self) -> str:
        """One line: counts and the guilty tensors (``PARTIAL`` first when interrupted)."""
        prefix = "PARTIAL (interrupted) " if self.partial else ""
        return prefix + self._summary()

    def _summary(self) -> str:
        n, bad = len(self.cases), len(self.failures)
        lint_err = sum(f.severity == "error" for f in self.lint)
        if self.passed:
            return f"PASSED: {n} comparisons, {len(self.skipped)} skipped"
        if (
            not self.failures
            and not self.partial
            and not self.cases
            and not any(f.severity == "error" for f in self.lint)
        ):
            return "NOT PROVEN: nothing was compared"
        if self.partial and not self.failures and not any(f.severity == "error" for f in self.lint):
            # summary() already says PARTIAL (interrupted): only what was done remains to be said.
            return f"NOT PROVEN: {n} comparisons done, none failed so far"
        parts = [f"FAILED: {bad} of {n} comparisons"]
        tensors = self.failing_tensors()
        if tensors:
            parts.append(f"failing tensors: {', '.join(tensors)}")
        errors = sorted({c.error.splitlines()[0][:160] for c in self.failures if c.error})
        if errors:
            parts.append(f"errors: {'; '.join(errors)}")
        if lint_err:
            parts.append(f"{lint_err} lint error(s)")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """The JSON report (``docs/parity.md``)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "passed": self.passed,
            "partial": self.partial,
            "reference": self.reference,
            "backends": self.backends,
            "seed": self.seed,
            "duration_s": round(self.duration_s, 4),
            "model": self.model,
            "tolerances": self.tolerances,
            "summary": self.summary(),
            "cases": [c.to_dict() for c in self.cases],
            "skipped": [s.to_dict() for s in self.skipped],
            # `file` is the field this report always had; `graph` and `node` come with the lint layer.
            "lint": [{**f.to_dict(), "file": f.file} for f in self.lint],
            "warnings": self.warnings,
            "notes": self.notes,
        }


def _num(x: float) -> str:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf"
    return f"{x:.3g}"


def _case_title(c: CaseResult, reference: str) -> str:
    vs = reference if c.against == "reference" else "itself"
    detail = f" ({c.detail})" if c.detail else ""
    return f"[{c.mode}] {c.backend} vs {vs} | batch={c.batch} seq={c.seq}{detail}"


def _tensor_line(name: str, d: TensorDiff) -> str:
    status = "PASSED" if d.passed else "FAILED"
    if d.error:
        return f"{status} | {name} | {d.error}"
    where = f" at {list(d.worst_index)}" if not d.passed and d.worst_index is not None else ""
    return (
        f"{status} | {name} | max_abs={_num(d.max_abs)} max_rel={_num(d.max_rel)} "
        f"(atol={d.atol:g}, rtol={d.rtol:g}){where}"
    )


def render_table(report: ParityReport, *, failures_only: bool = False) -> str:
    """The terminal rendering: cases, one ``PASSED | tensor | ...`` line per tensor, then a summary."""
    lines = [f"NOTE: {n}" for n in report.notes]
    lines += [
        f"{'FAILED' if f.severity == 'error' else 'WARNING'} | lint {f.code} | {f.graph}"
        + (f" node '{f.node}'" if f.node else "")
        + f" | {f.message}"
        for f in report.lint
    ]
    for c in report.cases:
        if failures_only and c.passed:
            continue
        lines.append(_case_title(c, report.reference))
        if c.error:
            lines.append(f"  FAILED | (backend error) | {c.error}")
        lines.extend(f"  {_tensor_line(n, d)}" for n, d in c.tensors.items())
    lines.extend(_skip_lines(report.skipped))
    lines.extend(f"WARNING: {w}" for w in report.warnings)
    lines.append(report.summary() + f" ({report.duration_s:.1f} s)")
    return "\n".join(lines)


def _skip_lines(skips: list[Skip]) -> list[str]:
    """One line per (mode, backend, reason), listing the shapes it applied to."""
    groups: dict[tuple[str, str | None, str], list[str]] = {}
    for s in skips:
        shape = f"batch={s.batch} seq={s.seq}" if s.batch is not None else ""
        groups.setdefault((s.mode, s.backend, s.reason), []).append(shape)
    lines = []
    for (mode, backend, reason), shapes in groups.items():
        who = f" {backend}" if backend else ""
        where = f" (at {', '.join(x for x in shapes if x)})" if any(shapes) else ""
        lines.append(f"SKIPPED [{mode}]{who}: {reason}{where}")
    return lines


def render_markdown(report: ParityReport) -> str:
    """A Markdown report: summary, one table row per tensor comparison, skips and lint findings."""
    out = [
        "# seqdeploy parity report",
        "",
        f"**{'PASSED' if report.passed else 'FAILED'}** — {report.summary()}",
        "",
        f"Reference: `{report.reference}`; backends: {', '.join(f'`{b}`' for b in report.backends)}; "
        f"seed {report.seed}; {report.duration_s:.1f} s.",
        *(f"\n*Note:* {n}" for n in report.notes),
        "",
        "| mode | backend | vs | batch | seq | tensor | max_abs | max_rel | p99_abs | atol | rtol | result |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in report.cases:
        vs = report.reference if c.against == "reference" else "self"
        if c.error:
            out.append(
                f"| {c.mode} | {c.backend} | {vs} | {c.batch} | {c.seq} | — | | | | | | "
                f"FAILED: {c.error.splitlines()[0]} |"
            )
        for n, d in c.tensors.items():
            result = "PASSED" if d.passed else f"FAILED{': ' + d.error if d.error else ''}"
            out.append(
                f"| {c.mode} | {c.backend} | {vs} | {c.batch} | {c.seq} | `{n}` | {_num(d.max_abs)} | "
                f"{_num(d.max_rel)} | {_num(d.p99_abs)} | {d.atol:g} | {d.rtol:g} | {result} |"
            )
    if report.skipped:
        out += ["", "## Skipped", ""]
        out += [f"- {line.removeprefix('SKIPPED ')}" for line in _skip_lines(report.skipped)]
    if report.lint:
        out += ["", "## Lint", ""]
        out += [f"- {f.severity} `{f.code}` {f.file}: {f.message}" for f in report.lint]
    if report.warnings:
        out += ["", "## Warnings", ""] + [f"- {w}" for w in report.warnings]
    return "\n".join(out) + "\n"
