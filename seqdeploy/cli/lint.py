"""``seqdeploy lint PATH [--target ort|trt10|trt11] [--json P]``."""

from __future__ import annotations

from pathlib import Path

import click

from seqdeploy.cli._options import write_json_atomic

_TARGETS = ("ort", "trt10", "trt11")  # seqdeploy.lint.targets.TARGETS, kept here so --help stays import-light


@click.command("lint")
@click.argument("path", metavar="PATH", type=click.Path(path_type=Path))
@click.option(
    "--target",
    type=click.Choice(_TARGETS),
    default="trt10",
    show_default=True,
    help="ort: the export's own checks; trt10/trt11: plus TensorRT's ONNX parser rules for that line.",
)
@click.option("--json", "json_path", type=click.Path(path_type=Path, dir_okay=False), help="Write the JSON report.")
def lint_cmd(path: Path, target: str, json_path: Path | None) -> None:
    """Check ONNX graphs against a runtime's rules without running them (no GPU, no TensorRT needed).

    PATH is an export directory (every graph and variant is linted against its IOSpec) or a single
    .onnx file. Exit codes: 0 no finding is an error, 1 at least one error, 2 usage.
    JSON: {"target", "passed", "findings": [{"code", "severity", "graph", "node", "message"}]}.
    """
    from seqdeploy.lint import lint_path, render_findings

    report = lint_path(path, target)
    for line in render_findings(report.findings):
        click.echo(line)
    errors = len(report.errors)
    warnings = len(report.findings) - errors
    verdict = "PASSED" if report.passed else "FAILED"
    click.echo(f"{verdict}: lint --target {target}: {errors} error(s), {warnings} warning(s)")
    if json_path:
        write_json_atomic(json_path, report.to_dict())
    if not report.passed:
        raise SystemExit(1)
