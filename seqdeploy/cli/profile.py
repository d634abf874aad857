"""``seqdeploy profile DIR``."""

from __future__ import annotations

import math
from pathlib import Path

import click

from seqdeploy.cli._options import (
    Progress,
    allow_modified_option,
    check_report_paths,
    max_memory_option,
    parse_int_list,
    parse_shapes,
    run_on_bundle,
    write_json_atomic,
    write_text_atomic,
)


@click.command("profile")
@click.argument("bundle_dir", metavar="DIR", type=click.Path(path_type=Path, file_okay=False))
@click.option("--backends", default="torch,ort-cpu", show_default=True, help="Comma-separated backends to time.")
@click.option("--baseline", default="torch", show_default=True, help="Backend that speed-ups are relative to.")
@click.option("--batch", "batches", help="Batch sizes, e.g. 1,8,64 (default: min, opt, max of [shapes]).")
@click.option("--seq", "seqs", help="Sequence lengths, e.g. 1,64,512 (default: min, opt, max of [shapes]).")
@click.option("--shapes", "shape_list", help="Explicit BxT pairs instead of the grid, e.g. 1x32,32x128,1x512.")
@click.option("--warmup", default=5, show_default=True, type=click.IntRange(min=0), help="Untimed calls per case.")
@click.option("--iters", type=click.IntRange(min=1), help="Timed calls per case (exclusive with --min-time).")
@click.option("--min-time", type=click.FloatRange(min=0.0), help="Seconds of timed calls per case [default: 0.5].")
@click.option("--threads", type=click.IntRange(min=1), help="Threads per backend and for the sgemm reference.")
@click.option("--streaming", is_flag=True, help="Also time one-token steps with carried state.")
@click.option("--allow-outside-range", is_flag=True, help="Allow shapes outside the export's [shapes].")
@click.option("--json", "json_path", type=click.Path(path_type=Path, dir_okay=False), help="Write the JSON report.")
@click.option(
    "--markdown", "md_path", type=click.Path(path_type=Path, dir_okay=False), help="Write a Markdown report."
)
@click.option("--plot", "plot_path", type=click.Path(path_type=Path, dir_okay=False), help="Write a PNG plot.")
@allow_modified_option
@max_memory_option
def profile_cmd(
    bundle_dir: Path,
    backends: str,
    baseline: str,
    batches: str | None,
    seqs: str | None,
    shape_list: str | None,
    warmup: int,
    iters: int | None,
    min_time: float | None,
    threads: int | None,
    streaming: bool,
    allow_outside_range: bool,
    json_path: Path | None,
    md_path: Path | None,
    plot_path: Path | None,
    allow_modified: bool,
    max_memory_gb: float | None,
) -> None:
    """Time every backend over a batch x seq grid and compare them.

    Reports min/mean/std/p50/p90/p99 latency (ms), sequences/s and tokens/s, achieved GFLOP/s of the
    recurrent layers and its share of this machine's sgemm rate (measured in the same run), the
    speed-up against the baseline and the winner per shape. Ctrl-C writes what was measured so far,
    marked partial. Exit codes: 0 ok, 2 usage error, 3 a backend unavailable, 130 interrupted.
    """
    from seqdeploy.backends import parse_backends
    from seqdeploy.errors import UsageError
    from seqdeploy.manifest import Bundle
    from seqdeploy.profile.report import ProfileReport, render_markdown, render_plot, render_table
    from seqdeploy.profile.run import ProfileOptions, profile

    if min_time is not None and not math.isfinite(min_time):
        raise UsageError(f"--min-time must be a finite number of seconds, got {min_time}")
    if iters is not None and min_time is not None:
        raise UsageError("--iters and --min-time are exclusive: give one")
    if shape_list is not None and (batches or seqs):
        raise UsageError("--shapes replaces --batch/--seq: give one or the other")
    opts = ProfileOptions(
        backends=tuple(parse_backends(backends)),
        baseline=parse_backends(baseline)[0],
        batches=parse_int_list(batches, "--batch"),
        seqs=parse_int_list(seqs, "--seq"),
        shapes=parse_shapes(shape_list),
        warmup=warmup,
        iters=iters,
        min_time=0.5 if min_time is None else min_time,
        threads=threads,
        streaming=streaming,
        allow_outside_range=allow_outside_range,
        max_memory_gb=max_memory_gb,
    )
    # Before any timing: unwritable report paths, or ones that would overwrite a bundle file, fail now.
    check_report_paths({"--json": json_path, "--markdown": md_path, "--plot": plot_path}, bundle_dir)

    def warn_if_modified(bundle: Bundle) -> None:
        if tampered := bundle.tampered_files():
            # Accepted, never silent: the timings are of the files as they are now.
            click.echo(
                f"WARNING: --allow-modified: the bundle differs from its manifest ({'; '.join(tampered)}); "
                "profiling the files as they are now",
                err=True,
            )

    def run(bundle: Bundle) -> ProfileReport:
        with Progress("profile") as progress:
            return profile(bundle, opts, progress=progress)

    _, report = run_on_bundle(bundle_dir, run, allow_modified=allow_modified, on_first_load=warn_if_modified)
    click.echo(render_table(report))
    if plot_path:
        render_plot(report, plot_path)
    if json_path:
        write_json_atomic(json_path, report.to_dict())
    if md_path:
        plot_ref = None
        if plot_path:
            try:
                plot_ref = str(plot_path.resolve().relative_to(md_path.resolve().parent))
            except ValueError:
                plot_ref = str(plot_path.resolve())
        write_text_atomic(md_path, render_markdown(report, plot_ref))
    if report.partial:
        raise SystemExit(130)
