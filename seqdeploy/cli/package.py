"""``seqdeploy package DIR -o PKG`` and ``seqdeploy package --check PKG``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from seqdeploy.cli._options import max_memory_option
from seqdeploy.errors import ParityError, UsageError


@click.command("package")
@click.argument("bundle_dir", metavar="DIR", required=False, type=click.Path(path_type=Path, file_okay=False))
@click.option("-o", "--output", "out", type=click.Path(path_type=Path), help="Package directory to create.")
@click.option("--name", help="Package and default model name [default: DIR's name].")
@click.option(
    "--max-batch",
    type=click.IntRange(min=1),
    help="Triton max_batch_size and largest batch proven [default: [shapes] batch max].",
)
@click.option(
    "--variants",
    default="fp32",
    show_default=True,
    help="Precisions to package: fp32 (always), int8, fp16; e.g. fp32,int8.",
)
@click.option(
    "--vocab",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Vocabulary for text input [default: the config's].",
)
@click.option("--unk-token", help="Token unknown words map to [default: <unk>, [UNK], ... if in the vocabulary].")
@click.option(
    "--profile",
    "profile_json",
    type=click.Path(path_type=Path, dir_okay=False),
    help="A 'seqdeploy profile --json' report to record.",
)
@click.option("--tar", is_flag=True, help="Also write PKG.tar.gz (deterministic).")
@click.option("--force", is_flag=True, help="Replace an existing package (only after the new one is proven).")
@click.option(
    "--no-engines",
    is_flag=True,
    help="Leave the bundle's TensorRT engines out (no NAME_trt/), e.g. for a Triton with another TensorRT.",
)
@click.option("--threads", type=click.IntRange(min=1), help="Threads for the proof.")
@max_memory_option
@click.option(
    "--check", "check_path", type=click.Path(path_type=Path), help="Check an existing package (or .tar.gz) instead."
)
@click.option("--json", "as_json", is_flag=True, help="With --check: print the results as JSON.")
def package_cmd(
    bundle_dir: Path | None,
    out: Path | None,
    name: str | None,
    max_batch: int | None,
    variants: str,
    vocab: Path | None,
    unk_token: str | None,
    profile_json: Path | None,
    tar: bool,
    force: bool,
    no_engines: bool,
    threads: int | None,
    max_memory_gb: float | None,
    check_path: Path | None,
    as_json: bool,
) -> None:
    """Package the export DIR into PKG: a Triton model repository that seqdeploy.runtime loads without torch.

    PKG/NAME is the stateless batch-first model (dynamic batching), PKG/NAME_stream the streaming model
    (sequence batching, implicit state, per-row START reset; unidirectional models only), PKG/NAME_int8 and
    PKG/NAME_fp16 the variants asked for. Every graph is proven against the export's PyTorch model (output
    and every state, padded batches, interleaved streamed sequences) and every config.pbtxt is checked with
    Triton's protobuf before PKG appears; on failure nothing is written.

    --check PKG re-runs the config, graph and sha256 checks on an existing package (no torch needed).
    Exit codes: 0 ok, 1 a proof or check failed, 2 usage, 3 a needed extra is missing, 130 interrupted.
    """
    if check_path is not None:
        if bundle_dir is not None or out is not None:
            raise UsageError("--check PKG takes no DIR or -o: 'seqdeploy package --check PKG'")
        _check(check_path, as_json)
        return
    if bundle_dir is None or out is None:
        raise UsageError("expected 'seqdeploy package DIR -o PKG' (or 'seqdeploy package --check PKG')")
    from seqdeploy.cli._options import Progress
    from seqdeploy.package.writer import PackageOptions, write_package
    from seqdeploy.parity.report import render_table

    opts = PackageOptions(
        name=name,
        max_batch=max_batch,
        variants=tuple(v.strip() for v in variants.split(",") if v.strip()),
        tar=tar,
        force=force,
        vocab=vocab,
        unk_token=unk_token,
        profile=profile_json,
        threads=threads,
        max_memory_gb=max_memory_gb,
        engines=not no_engines,
    )
    try:
        with Progress("proving packaged graphs") as bar:
            result = write_package(bundle_dir, out, opts, progress=bar)
    except ParityError as exc:
        if exc.report is not None:
            click.echo(render_table(exc.report, failures_only=True), err=True)
        raise
    m = result.manifest
    for mname, entry in m["models"].items():
        p = entry["parity"]
        worst = ", ".join(f"{k} {v:.2g}" for k, v in p["max_abs"].items())
        click.echo(
            f"{mname}: {entry['kind']} {entry['precision']}, max_batch {entry['max_batch_size']}, "
            f"{p['comparisons']} comparisons vs torch ({p['mode']}), max_abs {worst}"
        )
    if m["stream"]["model"] is None:
        click.echo(f"no stream model: {m['stream']['reason']}")
    if m["text"] is None:
        click.echo(f"no text input: {m['text_unavailable']}")
    for w in result.warnings:
        click.echo(f"warning: {w}", err=True)
    total = sum(e["bytes"] for e in m["files"].values())
    click.echo(f"wrote {result.path} ({len(m['files'])} files, {total:,} bytes) in {result.duration_s:.1f} s")
    if result.archive is not None:
        click.echo(f"wrote {result.archive}")
    click.echo(
        f"serve it: tritonserver --model-repository={result.path.resolve()}; run it: seqdeploy predict {result.path}"
    )


def _check(path: Path, as_json: bool) -> None:
    from seqdeploy.package.check import check_package

    result = check_package(path)
    click.echo(json.dumps(result.to_dict(), indent=2) if as_json else result.render())
    if not result.passed:
        click.get_current_context().exit(1)
