"""Load a package's models behind their schedulers and run the HTTP server (uvicorn) until SIGTERM/SIGINT.

Startup order: read the manifest and check every file's sha256 (through the runtime), parse each
``config.pbtxt`` with Triton's protobuf, load and warm up every model, bind the socket, then serve. A failure
before the bind is an ordinary seqdeploy error (exit 1/2/3); nothing listens until every model is ready.

Shutdown (SIGTERM or Ctrl-C): ``/v2/health/ready`` turns 400 at once (a load balancer stops routing), the
listener closes, requests in flight finish (up to ``drain_timeout_s``), the schedulers finish their queues,
and the process exits 0. uvicorn re-raises the signal after a graceful stop; this server does not, since a
SIGTERM is how a server is meant to stop (Kubernetes sends it), not an interruption of unfinished work.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import socket
import threading
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from seqdeploy.errors import UsageError
from seqdeploy.serve._config import config_to_json, parse_config_text, settings_from_config
from seqdeploy.serve._metrics import Metrics
from seqdeploy.serve._model import ServedModel
from seqdeploy.serve._scheduler import DynamicScheduler, Scheduler, SequenceScheduler

__all__ = ["INFLIGHT_BODIES", "MIN_BODY_BYTES", "ServeOptions", "default_body_limit", "load_models", "serve"]

MIN_BODY_BYTES = 1 << 20
"""The smallest derived body limit (a tiny model's largest request is a few kB)."""
INFLIGHT_BODIES = 8
"""Default in-flight budget, in body limits."""


def default_body_limit(models: Iterable[ServedModel]) -> int:
    """The body limit derived from the served models: their largest valid request as JSON, at least 1 MiB."""
    return max([MIN_BODY_BYTES, *(m.max_request_bytes for m in models)])


@dataclass(frozen=True)
class ServeOptions:
    """How ``seqdeploy serve`` runs (the CLI options, one to one).

    Attributes:
        package: Package directory or ``.tar.gz``.
        host: Address to bind (``127.0.0.1``: this machine only).
        port: TCP port (0: any free port, printed at start).
        backend: Runtime backend (``auto``, ``ort-cpu``, ``ort-cuda``, ``trt``); int8 models always run on the CPU,
            and ``trt`` applies to the models the package has an engine for (the others: ``auto``).
        threads: ONNX Runtime intra-op threads per model (``None``: its default).
        token: Bearer token required on every route but the health checks (``None``: no auth).
        max_body_bytes: Largest request body, compressed or not (``None``: derived from the package, the largest
            valid request of its models as JSON, at least :data:`MIN_BODY_BYTES`).
        max_inflight_bytes: Request bodies held at once, from their first byte to the reply (``None``:
            :data:`INFLIGHT_BODIES` × the body limit); more wait, then get 503.
        models: Models to serve (empty: every model of the package).
        batching: Merge concurrent requests (``False``: every request executes alone; for comparisons).
        instances: Executions that may run at once per model (Triton's instance count).
        max_queue: Requests that may wait per model before 503.
        max_sequences: Live sequences per stream model (``None``: the config's ``max_candidate_sequences``).
        sequence_wait_s: How long a new sequence waits for a free slot before 503.
        sequence_idle_s: Free a sequence after this long without a request (``None``: the config's
            ``max_sequence_idle_microseconds``).
        queue_delay_us: How long the oldest queued request may wait for others to batch with (``None``: the
            config's ``max_queue_delay_microseconds``; the package's sha256 forbids editing the file).
        ort_spin: Let ONNX Runtime's threads spin-wait between runs (lower latency for a lone client, less CPU
            left for the HTTP side under load).
        drain_timeout_s: On SIGTERM, how long requests in flight may take to finish.
        request_timeout_s: How long a request may wait for its answer (queue, sequence slot, execution) before
            503; a deadline, so that no request waits forever.
        log_level: uvicorn's log level.
        access_log: Log every request.
    """

    package: Path
    host: str = "127.0.0.1"
    port: int = 8000
    backend: str = "auto"
    threads: int | None = None
    token: str | None = None
    max_body_bytes: int | None = None
    max_inflight_bytes: int | None = None
    models: tuple[str, ...] = ()
    batching: bool = True
    instances: int = 1
    max_queue: int = 1024
    max_sequences: int | None = None
    sequence_wait_s: float = 10.0
    sequence_idle_s: float | None = None
    queue_delay_us: int | None = None
    ort_spin: bool = False
    drain_timeout_s: float = 30.0
    request_timeout_s: float = 300.0
    log_level: str = "warning"
    access_log: bool = False


def load_models(
    package: Path, options: ServeOptions, metrics: Metrics | None = None
) -> dict[str, tuple[ServedModel, Scheduler]]:
    """Load, check and warm up the package's models, each behind the scheduler its config declares.

    The package is verified once (every file's sha256, under its read lock, or in a private extraction of an
    archive), and every config and graph is read from those verified bytes: a ``package --force`` meanwhile
    can never pair one package's config with another's graph.

    Raises:
        UsageError: An unknown ``--model``, a config this server cannot honour, or a package problem.
        IntegrityError: A file differs from the manifest.
        BackendUnavailable: onnxruntime or tritonclient is missing.
    """
    from seqdeploy.runtime import build_predictor, open_package

    verified = open_package(
        package, list(options.models) or None, configs=True, engines=options.backend in ("auto", "trt")
    )
    manifest = verified.manifest
    names = list(options.models) or list(manifest.models)
    out: dict[str, tuple[ServedModel, Scheduler]] = {}
    for name in names:
        entry = manifest.models[name]
        where = f"{package}/{entry.config}"
        try:
            config = parse_config_text(verified.data[entry.config].decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise UsageError(f"{where}: {exc}") from None
        settings = settings_from_config(config)
        if settings.controls_unsupported:
            raise UsageError(
                f"{where}: control inputs {dict(settings.controls_unsupported)} are not supported by seqdeploy serve "
                "(it drives CONTROL_SEQUENCE_START only, as packages declare it)"
            )
        expected = "sequence" if entry.kind == "stream" else "dynamic"
        if settings.scheduler not in (expected, "none"):
            raise UsageError(
                f"{where}: a {entry.kind} model needs {expected} batching, the config has {settings.scheduler}"
            )
        # int8 graphs run on the CPU only (their config says KIND_CPU); an explicit ort-cuda applies to the rest.
        backend = "ort-cpu" if entry.precision == "int8" and options.backend == "ort-cuda" else options.backend
        if backend == "trt" and manifest.trt_for(name) is None:
            backend = "auto"  # the stream model and int8 have no engine; 'trt' is for the models that have one
        # By default no spin-waiting in ONNX Runtime's thread pool: after each run its threads would spin for a
        # while, taking the CPU the event loop needs to answer (2 vCPUs, 16 clients: ~+30 % requests/s). Spinning
        # wins back ~0.5 ms for a lone client (--ort-spin): docs/benchmarks.md.
        predictor = build_predictor(
            verified,
            name,
            backend=backend,
            threads=options.threads,
            session_config={"session.intra_op.allow_spinning": "1" if options.ort_spin else "0"},
        )
        try:
            model = ServedModel(name, predictor, settings, config_to_json(config))
        except ValueError as exc:
            raise UsageError(f"{where}: {exc}") from None
        model.warmup()
        hook = metrics.execution if metrics is not None else None
        common: dict[str, Any] = {
            # int8: never merged, whatever an (older) config says: the batch's dynamic quantization scale would
            # make a reply depend on its batch companions (package.manifest.merges_requests).
            "batching": options.batching and settings.scheduler != "none" and entry.merges_requests,
            "instances": options.instances,
            "max_queue": settings.max_queue_size or options.max_queue,
            "on_execution": hook,
            "queue_delay_us": options.queue_delay_us,
        }
        sched: Scheduler
        if entry.kind == "stream":
            sched = SequenceScheduler(
                model,
                max_sequences=options.max_sequences,
                slot_wait_s=options.sequence_wait_s,
                idle_s=options.sequence_idle_s,
                **common,
            )
        else:
            sched = DynamicScheduler(model, **common)
        out[name] = (model, sched)
    return out


def _bind(host: str, port: int) -> socket.socket:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
        # Listen before announcing the address: a client that connects at once waits in the backlog instead
        # of being refused before uvicorn's own listen().
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def serve(options: ServeOptions, *, announce: Callable[[str], None] | None = None) -> None:
    """Serve a package until SIGTERM/SIGINT; return after a graceful stop.

    Args:
        options: See :class:`ServeOptions`.
        announce: Receives one line once the server listens (the URL and the models).

    Raises:
        UsageError, IntegrityError, BackendUnavailable: See :func:`load_models`.
        OSError: The address cannot be bound (in use, not permitted).
    """
    from seqdeploy._lazy import require

    # The web stack is the `serve` extra: say so (exit 3) instead of a traceback when it is missing.
    for module in ("starlette", "uvicorn", "tritonclient.grpc.model_config_pb2"):
        require(module, extra="serve", purpose="seqdeploy serve")
    import uvicorn

    from seqdeploy.serve._app import ServerState, create_app

    models = load_models(options.package, options, None)
    metrics = Metrics((name, model.version) for name, (model, _) in models.items())
    for _, sched in models.values():
        sched.on_execution = metrics.execution
    max_body = options.max_body_bytes or default_body_limit(m for m, _ in models.values())
    state = ServerState(
        models=models,
        metrics=metrics,
        max_body=max_body,
        token=options.token,
        request_timeout_s=options.request_timeout_s,
        inflight=options.max_inflight_bytes or INFLIGHT_BODIES * max_body,
    )
    for _, sched in models.values():
        sched.start()
        state.on_shutdown.append(functools.partial(sched.stop, options.drain_timeout_s))
    try:
        sock = _bind(options.host, options.port)
    except BaseException:
        for hook in state.on_shutdown:
            hook()
        raise
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    config = uvicorn.Config(
        create_app(state),
        log_level=options.log_level,
        access_log=options.access_log,
        lifespan="on",
        timeout_graceful_shutdown=max(1, round(options.drain_timeout_s)),
        timeout_keep_alive=30,
    )
    server = _Server(config, on_signal=lambda: setattr(state, "ready", False))
    if announce is not None:
        listed = ", ".join(
            f"{m.name} ({m.kind}, {s.__class__.__name__.removesuffix('Scheduler').lower()}, {m.predictor.backend})"
            for m, s in models.values()
        )
        announce(f"serving {options.package} on http://{shown}:{port} (models: {listed})")
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        if not server.started:
            for hook in state.on_shutdown:
                hook()
    if not server.started:
        raise UsageError("the HTTP server failed to start (see the log above)")


class _Server:
    """uvicorn's Server with signal handling fit for a service: SIGTERM/SIGINT drain and return, no re-raise."""

    def __init__(self, config: Any, on_signal: Callable[[], None]) -> None:
        import uvicorn

        on = on_signal

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Generator[None, None, None]:
                if threading.current_thread() is not threading.main_thread():
                    yield
                    return
                old = {s: signal.signal(s, self.handle_exit) for s in (signal.SIGINT, signal.SIGTERM)}
                try:
                    yield
                finally:
                    for s, handler in old.items():
                        signal.signal(s, handler)

            def handle_exit(self, sig: int, frame: FrameType | None) -> None:
                on()
                super().handle_exit(sig, frame)

        self._server = Server(config)

    @property
    def started(self) -> bool:
        """Whether uvicorn got as far as serving."""
        return bool(self._server.started)

    def run(self, sockets: list[socket.socket]) -> None:
        """Serve on ``sockets`` until a signal; return after the graceful stop."""
        self._server.run(sockets=sockets)
