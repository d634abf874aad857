"""``seqdeploy serve PKG``: serve a package over Triton's HTTP/REST protocol (tritonclient, curl, perf_analyzer)."""

from __future__ import annotations

from pathlib import Path

import click

from seqdeploy.errors import UsageError


def _read_token(path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise UsageError(f"--token-file {path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--token-file {path}: cannot read it ({exc})") from None
    if not token or any(c.isspace() for c in token):
        raise UsageError(f"--token-file {path}: expected one token without spaces (e.g. from 'openssl rand -hex 32')")
    return token


@click.command("serve", context_settings={"show_default": True})
@click.argument("package", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", help="Address to bind; 0.0.0.0 exposes the server to the network.")
@click.option("--port", default=8000, type=click.IntRange(0, 65535), help="TCP port (0: any free port).")
@click.option(
    "--backend",
    default="auto",
    type=click.Choice(["auto", "ort-cpu", "ort-cuda", "trt"]),
    help="Runtime backend: auto picks a packaged TensorRT engine for this GPU, else ORT CUDA, else CPU "
    "(int8 models always run on the CPU).",
)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="ONNX Runtime intra-op threads per model.")
@click.option(
    "--token-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Require 'Authorization: Bearer <token>' (the file's content) on every route but /v2/health/*.",
)
@click.option(
    "--max-body-mb",
    default=None,
    type=click.FloatRange(min=0.001),
    help="Largest request body (MiB) [default: the largest valid request of the served models as JSON, >= 1 MiB].",
)
@click.option(
    "--max-inflight-mb",
    default=None,
    type=click.FloatRange(min=0.001),
    help="Request bodies held at once, read to reply (MiB); more wait, then 503 [default: 8 x the body limit].",
)
@click.option("--model", "models", multiple=True, help="Serve only this model (repeatable; default: all).")
@click.option("--no-batching", is_flag=True, help="Execute every request alone (for comparisons).")
@click.option("--instances", default=1, type=click.IntRange(1, 64), help="Executions at once per model.")
@click.option("--max-queue", default=1024, type=click.IntRange(min=1), help="Queued requests per model before 503.")
@click.option(
    "--max-sequences",
    type=click.IntRange(min=1),
    default=None,
    help="Live sequences per stream model [default: the config's max_candidate_sequences].",
)
@click.option(
    "--sequence-wait-s",
    default=10.0,
    type=click.FloatRange(min=0),
    help="How long a new sequence waits for a free slot before 503.",
)
@click.option(
    "--sequence-idle-s",
    type=click.FloatRange(min=0.001),
    default=None,
    help="Free a sequence after this long without a request [default: the config's max_sequence_idle_microseconds].",
)
@click.option(
    "--max-queue-delay-us",
    type=click.IntRange(min=0),
    default=None,
    help="How long a request may wait for others to batch with [default: the config's max_queue_delay_microseconds].",
)
@click.option(
    "--ort-spin",
    is_flag=True,
    help="Let ONNX Runtime's threads spin-wait between runs: lower latency for a lone client, less CPU under load.",
)
@click.option(
    "--drain-timeout-s", default=30.0, type=click.FloatRange(min=0), help="On SIGTERM, time for requests in flight."
)
@click.option(
    "--request-timeout-s",
    default=300.0,
    type=click.FloatRange(min=0.001),
    help="How long a request may wait for its answer (queue, sequence slot, execution) before 503.",
)
@click.option("--access-log", is_flag=True, help="Log every request.")
@click.option("--log-level", default="warning", type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def serve_cmd(
    package: Path,
    host: str,
    port: int,
    backend: str,
    threads: int | None,
    token_file: Path | None,
    max_body_mb: float | None,
    max_inflight_mb: float | None,
    models: tuple[str, ...],
    no_batching: bool,
    instances: int,
    max_queue: int,
    max_sequences: int | None,
    sequence_wait_s: float,
    sequence_idle_s: float | None,
    max_queue_delay_us: int | None,
    ort_spin: bool,
    drain_timeout_s: float,
    request_timeout_s: float,
    access_log: bool,
    log_level: str,
) -> None:
    """Serve PKG over Triton's HTTP/REST protocol (KServe v2 + binary tensors + sequences).

    The same tritonclient.http code, curl scripts and perf_analyzer runs work here and against
    `tritonserver --model-repository=PKG`. Binds 127.0.0.1 unless --host says otherwise. SIGTERM or
    Ctrl-C: readiness turns 400, requests in flight finish, exit 0.
    """
    from seqdeploy.serve import ServeOptions, serve

    options = ServeOptions(
        package=package,
        host=host,
        port=port,
        backend=backend,
        threads=threads,
        token=_read_token(token_file) if token_file is not None else None,
        max_body_bytes=int(max_body_mb * (1 << 20)) if max_body_mb is not None else None,
        max_inflight_bytes=int(max_inflight_mb * (1 << 20)) if max_inflight_mb is not None else None,
        models=models,
        batching=not no_batching,
        instances=instances,
        max_queue=max_queue,
        max_sequences=max_sequences,
        sequence_wait_s=sequence_wait_s,
        sequence_idle_s=sequence_idle_s,
        queue_delay_us=max_queue_delay_us,
        ort_spin=ort_spin,
        drain_timeout_s=drain_timeout_s,
        request_timeout_s=request_timeout_s,
        log_level=log_level,
        access_log=access_log,
    )
    serve(options, announce=lambda line: click.echo(line, err=True))
    click.echo("seqdeploy serve: stopped", err=True)
