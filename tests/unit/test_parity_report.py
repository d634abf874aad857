"""The one-line summary of a parity report (``seqdeploy.parity.report``)."""

from __future__ import annotations

from seqdeploy.parity.report import CaseResult, ParityReport


def _case() -> CaseResult:
    return CaseResult("ort-cpu", "full", 1, 2, "reference", {})  # no tensor failed: a passing case


def test_an_interrupted_report_says_partial_once() -> None:
    """Finding 21: "PARTIAL (interrupted) NOT PROVEN: interrupted after 2 comparisons" said it twice."""
    report = ParityReport(reference="torch", backends=["torch", "ort-cpu"], cases=[_case(), _case()], partial=True)
    assert report.summary() == "PARTIAL (interrupted) NOT PROVEN: 2 comparisons done, none failed so far"
    assert not report.passed
