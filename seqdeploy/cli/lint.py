"""``seqdeploy lint PATH [--target ort|trt10|trt11] [--json P] [--allow-modified]``."""

from __future__ import annotations

from pathlib import Path

import click

from seqdeploy.cli._options import allow_modified_option, check_report_paths, write_json_atomic
from seqdeploy.lint.targets import DEFAULT_TARGET, TARGETS


@click.command("lint")
@click.argument("path", metavar="PATH", type=click.Path(path_type=Path))
@click.option(
    "--target",
    type=click.Choice(list(TARGETS)),
    default=DEFAULT_TARGET,
    show_default=True,
    help="ort: the export's own checks; trt10/trt11: plus TensorRT's ONNX parser rules for that line.",
)
@click.option("--json", "json_path", type=click.Path(path_type=Path, dir_okay=False), help="Write the JSON report.")
@allow_modified_option
def lint_cmd(path: Path, target: str, json_path: Path | None, allow_modified: bool) -> None:
    """Check ONNX graphs against a runtime's rules without running them (no GPU, no TensorRT needed).

    PATH is an export directory (every graph and variant is linted against its IOSpec) or a single
    .onnx file. An export's files are checked against the sha256 in its manifest first, like every
    command does (--allow-modified lints them as they are, with a warning). Exit codes: 0 no finding
    is an error, 1 at least one error, 2 usage (or a bundle that differs from its manifest).
    JSON: {"target", "passed", "findings": [{"code", "severity", "graph", "node", "message"}]}.
    """
    from seqdeploy.lint import lint_path, render_findings
    from seqdeploy.manifest import MANIFEST

    # A report never lands on a file of the bundle it is about (--json DIR/manifest.json would destroy it).
    bundle = path if path.is_dir() else path.parent if (path.parent / MANIFEST).is_file() else None
    check_report_paths({"--json": json_path}, bundle)
    report = lint_path(path, target, allow_modified=allow_modified)
    for m in report.modified:
        click.echo(f"WARNING: linting a modified bundle (--allow-modified): {m}", err=True)
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
