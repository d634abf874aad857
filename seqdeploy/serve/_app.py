"""The ASGI application (Starlette): Triton's HTTP/REST routes over the served models and their schedulers.

Routes (server ``src/http_server.cc``; ``{v}`` must be digits):

==========================================================  ======================================================
``GET /v2/health/live``, ``/v2/health/ready``               200 empty; ready is 400 while loading or draining
``GET /v2``                                                 server metadata with the extensions implemented
``GET /v2/models/{m}[/versions/{v}]``                       model metadata (shapes start with -1: the batch dim)
``GET /v2/models/{m}[/versions/{v}]/config``                the config.pbtxt as Triton's JSON
``GET /v2/models/{m}[/versions/{v}]/ready``                 200 empty, 400 ``Model version not ready``
``POST /v2/models/{m}[/versions/{v}]/infer``                inference (JSON and binary tensors, sequences)
``GET /metrics``                                            Prometheus text (Triton serves it on port 8002)
==========================================================  ======================================================

Errors are ``{"error": "<message>"}`` with Triton's status: 400 bad request, 401 missing/wrong bearer token
(seqdeploy's own; Triton has no token auth), 404 unknown model or path, 405 wrong method, 500 backend
failure, 501 unsupported encoding/feature, 503 queue full, too many sequences, stopping, 408 a request body
not received within ``ServerState.body_timeout_s`` (the connection is then closed).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from seqdeploy import __version__
from seqdeploy.serve._metrics import Metrics
from seqdeploy.serve._model import Prepared, ServedModel
from seqdeploy.serve._protocol import (
    HEADER_LENGTH,
    InferRequest,
    ServeError,
    compress_body,
    decode_body,
    encode_infer_response,
    error_body,
    invalid,
    parse_infer_request,
    pick_encoding,
)
from seqdeploy.serve._scheduler import Job, Outcome, Scheduler, SequenceScheduler

__all__ = ["EXTENSIONS", "ByteBudget", "ServerState", "create_app"]

log = logging.getLogger("seqdeploy.serve")

EXTENSIONS = ("binary_tensor_data", "model_configuration", "parameters", "sequence")
"""What ``GET /v2`` advertises: only what is implemented. No ``statistics`` (perf_analyzer would then call the
stats endpoint and need every field of it), no ``model_repository``, ``schedule_policy`` (``priority`` is
accepted but not honoured), ``shared_memory`` or ``classification``."""

_DRAIN_CAP = 16
"""A body up to this many times the limit is read and dropped before the 400 goes out, so that the client sees
the answer instead of a reset connection; a larger declared one is answered at once."""

INLINE_PARSE_BYTES = 64 << 10
"""Bodies up to this size (and not compressed) are parsed on the event loop: microseconds, no thread hop for
the small requests that latency matters for. Larger or compressed ones are decoded, parsed and checked in a
worker thread, so that health probes and other requests are answered meanwhile."""
PARSE_THREADS = 2
"""Worker threads for large bodies: at most this many are being parsed at once (a JSON body's Python objects
take up to ~15× its size while it is parsed)."""

BODY_TIMEOUT_S = 30.0
"""Default time a request's body may take to arrive once it is read (:attr:`ServerState.body_timeout_s`)."""

HEALTH_POLL_S = 1.0
"""How often a request past its deadline, whose execution has begun, checks that its model's worker threads
are alive while it waits for the answer."""


class ByteBudget:
    """Bytes of request bodies held at once, from the first byte read to the reply (``--max-inflight-mb``).

    Every request reserves its declared ``Content-Length`` (the body limit when it is compressed or its
    length is unknown) before its body is read, and keeps it while it is parsed, queued and executed; a
    request that would pass the budget waits for others to finish, up to ``timeout_s``, then gets 503. A
    single request may always use the whole budget. Once a body is read (and decompressed), its reservation
    shrinks to what it turned out to be: the body's length, plus its decompressed length when compressed. A
    request never waits for more while holding a part (no two requests can each hold what the other waits
    for). Used from the event loop only.
    """

    def __init__(self, total: int) -> None:
        self.total = max(1, total)
        self.used = 0
        self._cond = asyncio.Condition()

    async def acquire(self, n: int, timeout_s: float) -> int:
        """Reserve ``n`` bytes (at most the whole budget); the amount reserved."""
        n = max(0, min(n, self.total))
        async with self._cond:
            try:
                await asyncio.wait_for(self._cond.wait_for(lambda: self.used + n <= self.total), timeout_s)
            except TimeoutError:
                raise ServeError(
                    503,
                    f"Exceeds maximum queue size: {self.used} bytes of requests are in flight and {n} more do not fit "
                    f"the server's budget of {self.total} bytes (seqdeploy serve --max-inflight-mb); retry later",
                    "REJECTED",
                ) from None
            self.used += n
        return n

    async def release(self, n: int) -> None:
        """Give back what :meth:`acquire` reserved."""
        async with self._cond:
            self.used -= n
            self._cond.notify_all()


@dataclass
class ServerState:
    """What the routes serve.

    Attributes:
        models: ``{name: (model, scheduler)}``.
        metrics: The counters behind ``/metrics``.
        max_body: Largest request body accepted, in bytes (after decompression too).
        token: The bearer token (``None``: no auth).
        ready: Whether ``/v2/health/ready`` says 200 (false while loading and once draining; a model whose
            scheduler lost a worker thread makes it 400 too).
        request_timeout_s: How long a request may wait for its scheduler's answer before 503. A request whose
            execution has begun by then is not withdrawn (it runs, and a sequence's state moves): it waits for
            its answer, as long as the model's worker threads are alive.
        inflight: Bytes of request bodies held at once (:class:`ByteBudget`).
        body_timeout_s: How long a request's body may take to arrive once the server reads it, before 408 and
            a closed connection: a client that sends its headers and stalls must not hold its share of
            ``inflight`` (reserved before the body is read) for ``request_timeout_s``. Not a CLI option.
    """

    models: dict[str, tuple[ServedModel, Scheduler]]
    metrics: Metrics
    max_body: int
    token: str | None = None
    ready: bool = False
    request_timeout_s: float = 300.0
    inflight: int = 512 << 20
    body_timeout_s: float = BODY_TIMEOUT_S
    on_shutdown: list[Callable[[], None]] = field(default_factory=list)
    budget: ByteBudget | None = None
    parser: concurrent.futures.ThreadPoolExecutor = field(
        default_factory=lambda: concurrent.futures.ThreadPoolExecutor(PARSE_THREADS, "seqdeploy-parse")
    )


def _json(doc: Any, status: int = 200) -> Response:
    return Response(json.dumps(doc, separators=(",", ":")).encode(), status, media_type="application/json")


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return Response(error_body(message), status, headers=dict(headers or {}), media_type="application/json")


def _serve_error(exc: ServeError) -> Response:
    headers: dict[str, str] = {}
    if exc.status == 501:
        headers["Accept-Encoding"] = "gzip, deflate"
    elif exc.status == 408:
        headers["Connection"] = "close"  # the rest of the body may still come: the connection cannot be reused
    return _error(exc.status, exc.message, headers)


class _BearerAuth:
    """Bearer-token auth on every route but the health checks (a load balancer probes those without a token).

    The comparison is constant-time over SHA-256 digests, so neither the content nor the length of the token
    leaks through timing.
    """

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._digest = hashlib.sha256(token.encode()).digest()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in ("/v2/health/live", "/v2/health/ready"):
            await self.app(scope, receive, send)
            return
        value = b""
        for k, v in scope["headers"]:
            if k == b"authorization":
                value = v
                break
        scheme, _, credential = value.partition(b" ")
        given = hashlib.sha256(credential.strip()).digest()
        ok = hmac.compare_digest(given, self._digest) and scheme.lower() == b"bearer"
        if ok:
            await self.app(scope, receive, send)
            return
        why = "missing" if not value else "wrong"
        response = _error(
            401,
            f"Unauthorized: {why} bearer token; send 'Authorization: Bearer <token>' (the token seqdeploy serve "
            "--token-file holds)",
            {"WWW-Authenticate": 'Bearer realm="seqdeploy"'},
        )
        await response(scope, receive, send)


async def _read_body(request: Request, limit: int, timeout_s: float = BODY_TIMEOUT_S) -> bytes:
    """The raw body, refused past ``limit`` bytes without holding more than ``limit`` in memory.

    Raises:
        ServeError: 400 past the limit; 408 when the body has not arrived within ``timeout_s``.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise invalid(f"Unable to parse Content-Length, got: {declared}") from None
        if size > limit * _DRAIN_CAP:
            raise _too_big(size, limit)
    chunks: list[bytes] = []
    total = 0
    try:
        # uvicorn has no body-read timeout: without this, a client that stalls after its headers would hold
        # its reservation of the in-flight budget for as long as it keeps the connection open.
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                total += len(chunk)
                if total <= limit:
                    chunks.append(chunk)
                elif chunks:
                    chunks = []  # drop what was kept; keep reading so the client gets the answer
                if total > limit * _DRAIN_CAP:
                    break
    except TimeoutError:
        got = f"{total} of {declared}" if declared is not None else f"{total}"
        raise ServeError(
            408,
            f"Request Timeout: {got} bytes of the request body arrived within {timeout_s:g} s; send the whole body "
            "without pausing",
        ) from None
    if total > limit:
        raise _too_big(total, limit)
    return b"".join(chunks)


def _too_big(size: int, limit: int) -> ServeError:
    return invalid(
        f"request body of {size} bytes exceeds the maximum allowed size of {limit} bytes; send smaller batches or "
        "start the server with a larger --max-body-mb"
    )


def _header_length(request: Request) -> int | None:
    value = request.headers.get(HEADER_LENGTH)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise invalid(f"Unable to parse Inference-Header-Content-Length, got: {value}") from None


def create_app(state: ServerState) -> Starlette:
    """The Starlette app serving ``state`` (wrapped in bearer auth when ``state.token`` is set)."""

    def lookup(request: Request) -> tuple[ServedModel, Scheduler]:
        name = request.path_params["model"]
        entry = state.models.get(name)
        if entry is None:
            raise ServeError(404, f"Request for unknown model: '{name}' is not found")
        version = request.path_params.get("version")
        if version is not None and str(version) != entry[0].version:
            raise ServeError(404, f"Request for unknown model: '{name}' version {version} is not found")
        return entry

    def guarded(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except ServeError as exc:
                return _serve_error(exc)

        return run

    async def live(request: Request) -> Response:
        return Response(b"", 200)

    def all_ready() -> bool:
        return state.ready and all(sched.healthy for _, sched in state.models.values())

    async def ready(request: Request) -> Response:
        return Response(b"", 200 if all_ready() else 400)

    async def server_metadata(request: Request) -> Response:
        return _json({"name": "seqdeploy", "version": __version__, "extensions": list(EXTENSIONS)})

    @guarded
    async def model_metadata(request: Request) -> Response:
        model, _ = lookup(request)
        return _json(model.metadata())

    @guarded
    async def model_config(request: Request) -> Response:
        model, _ = lookup(request)
        return _json(model.config_json)

    @guarded
    async def model_ready(request: Request) -> Response:
        _, sched = lookup(request)
        if not state.ready or not sched.healthy:
            raise invalid("Model version not ready")
        return Response(b"", 200)

    async def metrics(request: Request) -> Response:
        gauges = {name: sched.gauges() for name, (_, sched) in state.models.items()}
        return Response(state.metrics.render(gauges), 200, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def infer(request: Request) -> Response:
        t0 = time.perf_counter_ns()
        try:
            model, sched = lookup(request)
        except ServeError as exc:
            return _error(exc.status, exc.message)
        try:
            response, outcome, rows = await _infer(request, model, sched, state)
        except ServeError as exc:
            state.metrics.failure(model.name, exc.reason, time.perf_counter_ns() - t0)
            return _serve_error(exc)
        except ClientDisconnect:
            # The client went away before its body was read: nobody to answer, and no server fault (its
            # reservation is already released).
            log.debug("client disconnected before its request to model '%s' was read", model.name)
            state.metrics.failure(model.name, "CANCELED", time.perf_counter_ns() - t0)
            return _error(400, "client disconnected before its request body was received")
        except Exception as exc:
            log.exception("internal error serving model '%s'", model.name)
            state.metrics.failure(model.name, "OTHER", time.perf_counter_ns() - t0)
            return _error(
                500, f"internal error in seqdeploy serve (a bug, please report it): {type(exc).__name__}: {exc}"
            )
        state.metrics.success(
            model.name,
            rows=rows,
            duration_ns=time.perf_counter_ns() - t0,
            queue_ns=outcome.queue_ns,
            compute_input_ns=outcome.compute_input_ns,
            compute_infer_ns=outcome.compute_infer_ns,
            compute_output_ns=outcome.compute_output_ns,
        )
        return response

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        return _error(status, {404: "Not Found", 405: "Method Not Allowed"}.get(status, str(exc)))

    async def server_error(request: Request, exc: Exception) -> Response:
        log.error("internal error on %s %s: %r", request.method, request.url.path, exc)
        return _error(500, f"internal error in seqdeploy serve (a bug, please report it): {type(exc).__name__}: {exc}")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.budget = ByteBudget(state.inflight)  # created on the loop that uses it
        state.ready = True
        try:
            yield
        finally:
            state.ready = False
            for hook in state.on_shutdown:
                await asyncio.get_running_loop().run_in_executor(None, hook)
            state.parser.shutdown(wait=False)

    m = "/v2/models/{model}"
    mv = "/v2/models/{model}/versions/{version:int}"
    routes = [
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
        Route("/v2", server_metadata, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    for base in (m, mv):
        routes += [
            Route(base, model_metadata, methods=["GET"]),
            Route(base + "/config", model_config, methods=["GET"]),
            Route(base + "/ready", model_ready, methods=["GET"]),
            Route(base + "/infer", infer, methods=["POST"]),
        ]
    app = Starlette(
        routes=routes,
        exception_handlers={404: not_found, 405: not_found, 500: server_error, Exception: server_error},
        lifespan=lifespan,
    )
    if state.token is not None:
        app.add_middleware(_BearerAuth, token=state.token)
    return app


def _reservation(request: Request, limit: int) -> int:
    """The bytes a request reserves of the in-flight budget before its body is read.

    An upper bound: it shrinks to the body's real size once that is known (:class:`_Reservation`).
    """
    declared = request.headers.get("content-length")
    encoding = (request.headers.get("content-encoding") or "").strip().lower()
    if declared is None or encoding not in ("", "identity"):
        return limit  # unknown length, or decompressed up to the limit
    try:
        return min(int(declared), limit)
    except ValueError:
        return 0  # refused by _read_body


class _Reservation:
    """One request's share of the in-flight budget: reserved once, then only shrunk, and released in full."""

    def __init__(self, budget: ByteBudget, held: int) -> None:
        self.budget = budget
        self.held = held

    async def shrink(self, n: int) -> None:
        """Keep at most ``n`` bytes (never grows: a request must not wait for more while holding some)."""
        n = max(0, n)
        if n < self.held:
            await self.budget.release(self.held - n)
            self.held = n


async def _infer(
    request: Request, model: ServedModel, sched: Scheduler, state: ServerState
) -> tuple[Response, Outcome, int]:
    if state.budget is None:  # an app driven without its lifespan (tests): an unshared budget
        state.budget = ByteBudget(state.inflight)
    budget = state.budget
    held = _Reservation(budget, await budget.acquire(_reservation(request, state.max_body), state.request_timeout_s))
    try:
        return await _infer_within_budget(request, model, sched, state, held)
    finally:
        await budget.release(held.held)


async def _await_executing(
    future: asyncio.Future[Outcome], sched: Scheduler, model: str, request_timeout_s: float
) -> None:
    """Wait for the answer of a request past its deadline that was already taken for execution.

    It runs whatever the client is told, and on a sequence model it moves the sequence's state: a 503 would
    invite a retry that applies it twice. The worker loop answers every request it took unless its thread
    died, so the wait is bounded by the scheduler's health, not by a deadline.

    Raises:
        ServeError: 500 when a worker thread of the model is gone and no answer came.
    """
    log.info(
        "a request to model '%s' passed its deadline of %g s while executing; waiting for its answer",
        model,
        request_timeout_s,
    )
    while True:
        done, _ = await asyncio.wait({future}, timeout=HEALTH_POLL_S)
        if done:
            return
        if not sched.healthy:
            # An answer posted just before the thread ended is delivered by the loop's next turns.
            done, _ = await asyncio.wait({future}, timeout=0.1)
            if done:
                return
            raise ServeError(
                500,
                f"internal error in seqdeploy serve (a bug, please report it): a worker thread of model '{model}' "
                f"ended while executing this request (past its deadline of {request_timeout_s:g} s). The request may "
                "have been executed: on a sequence, its state may include it, so restart the sequence "
                "(sequence_start) instead of retrying this request",
            )


def _parse(
    raw: bytes, encoding: str | None, header_length: int | None, model: ServedModel, limit: int
) -> tuple[InferRequest, Prepared]:
    """Decompress, parse and check a request body (on the loop for small bodies, else in a parse thread)."""
    body = decode_body(raw, encoding, limit)
    if header_length == 0:
        # Raw binary request: no JSON header at all, the body is the model's single input and every output
        # comes back binary (Triton's HandleRawBinaryRequest).
        req = InferRequest(binary_output=True)
        model.raw_input(req, body)
    else:
        req = parse_infer_request(body, header_length, model.name, max_elements=model.max_elements)
    return req, model.prepare(req)


def _decode_and_parse(
    raw: bytes, encoding: str | None, header_length: int | None, model: ServedModel, limit: int
) -> tuple[InferRequest, Prepared, int]:
    """:func:`_parse` of the decompressed body, and that body's length (in a parse thread)."""
    body = decode_body(raw, encoding, limit)
    req, prepared = _parse(body, None, header_length, model, limit)
    return req, prepared, len(body)


async def _infer_within_budget(
    request: Request, model: ServedModel, sched: Scheduler, state: ServerState, held: _Reservation
) -> tuple[Response, Outcome, int]:
    limit = state.max_body
    raw = await _read_body(request, limit, state.body_timeout_s)
    header_length = _header_length(request)
    encoding = request.headers.get("content-encoding")
    loop = asyncio.get_running_loop()
    if (encoding or "").strip().lower() in ("", "identity"):
        await held.shrink(len(raw))  # a body without Content-Length reserved the whole limit
        if len(raw) <= INLINE_PARSE_BYTES:
            req, prepared = _parse(raw, encoding, header_length, model, limit)
        else:
            req, prepared = await loop.run_in_executor(
                state.parser, _parse, raw, encoding, header_length, model, limit
            )
    else:
        # Reserved: the body limit (the decompressed size is unknown until decoded); kept: both bodies' sizes.
        req, prepared, decoded = await loop.run_in_executor(
            state.parser, _decode_and_parse, raw, encoding, header_length, model, limit
        )
        await held.shrink(len(raw) + decoded)
    del raw
    job_args: dict[str, Any] = {}
    if isinstance(sched, SequenceScheduler):
        if not req.in_sequence:
            raise invalid(
                f"inference request to model '{model.name}' must specify a non-zero or non-empty correlation ID"
            )
        if prepared.rows != 1:
            raise invalid(
                f"inference request to model '{model.name}' must specify batch-size 1 due to requirements of sequence "
                "batcher"
            )
        job_args = {
            "seq_id": req.sequence_id,
            "start": req.sequence_start,
            "end": req.sequence_end,
            "timeout_us": req.timeout_us,
        }
    future: asyncio.Future[Outcome] = loop.create_future()

    def resolve(outcome: Outcome) -> None:
        if not future.done():
            future.set_result(outcome)

    def deliver(outcome: Outcome) -> None:
        loop.call_soon_threadsafe(resolve, outcome)

    job = Job(prepared, deliver, **job_args)
    sched.submit(job)
    # A deadline, so that a request never waits forever on a scheduler that failed to answer. asyncio.wait, not
    # wait_for: the future must stay pending for an answer that comes after the deadline.
    done, _ = await asyncio.wait({future}, timeout=state.request_timeout_s)
    if not done:
        if sched.cancel(job):  # still queued: withdrawn, it never runs
            raise ServeError(
                503,
                f"Request timeout expired: model '{model.name}' did not answer within {state.request_timeout_s:g} s "
                "(seqdeploy serve --request-timeout-s)",
                "REJECTED",
            )
        await _await_executing(future, sched, model.name, state.request_timeout_s)
    outcome = future.result()
    if outcome.error is not None:
        raise outcome.error
    assert outcome.outputs is not None
    outs = outcome.outputs
    body_out, json_size = encode_infer_response(
        model=model.name,
        version=model.version,
        request_id=req.id,
        outputs=[(p.name, p.datatype, outs[p.name], p.binary) for p in prepared.outputs],
    )
    headers: dict[str, str] = {}
    media = "application/json"
    if json_size is not None:
        media = "application/octet-stream"
        headers["Inference-Header-Content-Length"] = str(json_size)
    encoding = pick_encoding(request.headers.get("accept-encoding"))
    if encoding != "identity":
        body_out = compress_body(body_out, encoding)
        headers["Content-Encoding"] = encoding
    return Response(body_out, 200, headers=headers, media_type=media), outcome, prepared.rows
