"""``seqdeploy verify DIR``."""

from __future__ import annotations

from pathlib import Path

import click

from seqdeploy.cli._options import (
    Progress,
    allow_modified_option,
    check_report_paths,
    max_memory_option,
    parse_int_list,
    run_on_bundle,
    write_json_atomic,
    write_text_atomic,
)


@click.command("verify")
@click.argument("bundle_dir", metavar="DIR", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--backends",
    default=None,
    help="Comma-separated backends to check [default: torch,ort-cpu; ort-cpu with --no-import --expected].",
)
@click.option("--reference", default=None, help="The fp32 backend taken as the truth [default: torch].")
@click.option("--batch", "batches", help="Batch sizes, e.g. 1,3,8 (default: min, opt, opt+1, max of [shapes]).")
@click.option("--seq", "seqs", help="Sequence lengths, e.g. 1,7,64 (default: min, opt, max of [shapes]).")
@click.option(
    "--atol",
    multiple=True,
    metavar="[TENSOR=]X",
    help="Absolute tolerance, global or per tensor (h_n=1e-4); repeatable. Default by precision.",
)
@click.option("--rtol", multiple=True, metavar="[TENSOR=]X", help="Relative tolerance, like --atol.")
@click.option(
    "--modes",
    default=None,
    help="Comma-separated check modes (default: all that apply): full, chunked, batch, padding, identities, step.",
)
@click.option(
    "--inputs",
    "inputs_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help=".npz of input arrays keyed by input name, instead of the random sweep.",
)
@click.option(
    "--expected",
    "expected_paths",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Golden case: .npz with the inputs and the outputs YOUR model computed, by contract name (input, "
    "h0, ... output, h_n, ...). Every backend is compared with them instead of the reference. Repeatable.",
)
@click.option(
    "--no-import",
    is_flag=True,
    help="Never import a source = 'python' bundle's module (that runs its code): refuse the torch backends.",
)
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Seed of the random inputs.")
@click.option("--chunks", default=3, show_default=True, type=click.IntRange(min=2), help="Chunks in chunked mode.")
@click.option("--threads", type=click.IntRange(min=1), help="Threads per backend.")
@click.option("--json", "json_path", type=click.Path(path_type=Path, dir_okay=False), help="Write the JSON report.")
@click.option(
    "--markdown", "md_path", type=click.Path(path_type=Path, dir_okay=False), help="Write a Markdown report."
)
@click.option("--failures-only", is_flag=True, help="Print only failing cases.")
@allow_modified_option
@max_memory_option
def verify_cmd(
    bundle_dir: Path,
    backends: str | None,
    reference: str | None,
    batches: str | None,
    seqs: str | None,
    atol: tuple[str, ...],
    rtol: tuple[str, ...],
    modes: str | None,
    inputs_path: Path | None,
    expected_paths: tuple[Path, ...],
    no_import: bool,
    seed: int,
    chunks: int,
    threads: int | None,
    json_path: Path | None,
    md_path: Path | None,
    failures_only: bool,
    allow_modified: bool,
    max_memory_gb: float | None,
) -> None:
    """Check that every backend matches the reference on output AND h_n/c_n.

    Runs whole sequences over a batch x seq sweep, chunked runs with carried state, row-by-row batch
    independence, padding, output/state identities and the step graph. With --expected, every backend
    is compared with outputs your own model computed instead. For a source = 'python' bundle the torch
    reference is your module itself (importing it runs its code; --no-import refuses). Exit codes: 0 all passed,
    1 a parity failure, 2 usage/config error, 3 a requested backend unavailable, 130 interrupted
    (the reports hold what was checked so far, marked partial).
    """
    from seqdeploy.backends import parse_backends
    from seqdeploy.errors import UsageError
    from seqdeploy.manifest import Bundle
    from seqdeploy.parity.compare import parse_tolerances
    from seqdeploy.parity.report import ParityReport, render_markdown, render_table
    from seqdeploy.parity.run import MODES, VerifyOptions, load_expected, load_inputs, verify

    if inputs_path is not None and (batches or seqs):
        raise UsageError("--inputs replaces the --batch/--seq sweep: give one or the other")
    if expected_paths:
        clash = [
            o
            for o, given in (
                ("--inputs", inputs_path),
                ("--batch", batches),
                ("--seq", seqs),
                ("--modes", modes),
                ("--reference", reference),
            )
            if given
        ]
        if clash:
            raise UsageError(
                f"--expected replaces the reference and the random sweep: {', '.join(clash)} cannot be combined "
                "with it"
            )
    if backends is None:
        backends = "ort-cpu" if no_import and expected_paths else "torch,ort-cpu"
    reference = reference or "torch"
    names = parse_backends(backends)
    parse_backends(reference)
    # None = not given: each backend then gets its precision's default (fp32, fp16, int8).
    atol_default, atol_per = parse_tolerances(atol, None, "--atol")
    rtol_default, rtol_per = parse_tolerances(rtol, None, "--rtol")
    # Every option is parsed before the bundle is loaded (hashing it is the slow part of starting).
    batch_list = parse_int_list(batches, "--batch")
    seq_list = parse_int_list(seqs, "--seq")
    mode_list = tuple(m.strip() for m in modes.split(",")) if modes else MODES
    # Before any work: a report path that cannot be written, or that would overwrite a bundle file, fails now.
    check_report_paths({"--json": json_path, "--markdown": md_path}, bundle_dir)

    def run(bundle: Bundle) -> ParityReport:
        opts = VerifyOptions(
            backends=tuple(names),
            reference=reference,
            batches=batch_list,
            seqs=seq_list,
            atol=atol_default,
            rtol=rtol_default,
            atol_per_tensor=atol_per,
            rtol_per_tensor=rtol_per,
            modes=mode_list,
            inputs=load_inputs(inputs_path, bundle.specs["sequence"]) if inputs_path else None,
            expected=tuple(load_expected(p, bundle.specs["sequence"]) for p in expected_paths),
            no_import=no_import,
            chunks=chunks,
            seed=seed,
            threads=threads,
            max_memory_gb=max_memory_gb,
        )
        with Progress("verify") as progress:
            return verify(bundle, opts, progress=progress)

    bundle, report = run_on_bundle(bundle_dir, run, allow_modified=allow_modified)
    click.echo(render_table(report, failures_only=failures_only))
    if "ort-cpu-fp16" in names and (fp16 := bundle.variant("fp16")) is not None:
        from seqdeploy.optimize import render_error_vs_seq

        # The table recorded when the variant was proven: what users choose fp16 or fp32 for T4 from.
        for line in render_error_vs_seq(fp16):
            click.echo(line)
    if json_path:
        write_json_atomic(json_path, report.to_dict())
    if md_path:
        write_text_atomic(md_path, render_markdown(report))
    if report.partial:
        raise SystemExit(130)
    if not report.passed:
        raise SystemExit(1)
