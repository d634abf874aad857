"""The HTTP app over fake models, served by uvicorn in a thread on loopback: request deadlines, readiness
after a lost worker thread, and health probes answered while a large body is parsed (review findings 5, 8);
stalled and abandoned uploads, and requests whose execution outlasts their deadline."""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("tritonclient.grpc")
pytest.importorskip("starlette")
uvicorn = pytest.importorskip("uvicorn")

from seqdeploy.serve import _app  # noqa: E402
from seqdeploy.serve._app import INLINE_PARSE_BYTES, ServerState, create_app  # noqa: E402
from seqdeploy.serve._metrics import Metrics  # noqa: E402
from seqdeploy.serve._model import OutputPlan, Prepared  # noqa: E402
from seqdeploy.serve._protocol import InferRequest, ServeError, decode_body  # noqa: E402
from seqdeploy.serve._scheduler import DynamicScheduler, Scheduler, SequenceScheduler  # noqa: E402
from tests.unit.test_serve_protocol import FakeModel, _job  # noqa: E402

_HTTP_TIMEOUT_S = 10


def _state(sched: Scheduler, **kwargs: Any) -> ServerState:
    model = sched.model
    return ServerState(
        models={model.name: (model, sched)},
        metrics=Metrics([(model.name, "1")]),
        max_body=1 << 20,
        **kwargs,
    )


@contextlib.contextmanager
def _serving(state: ServerState) -> Iterator[str]:
    """The app on 127.0.0.1 (a free port), in a thread; stopped and joined on exit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(state), log_level="error", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
    assert not thread.is_alive()


def _request(url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, headers=headers or {}, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=_HTTP_TIMEOUT_S) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_a_request_past_its_deadline_gets_503_and_is_withdrawn(monkeypatch: pytest.MonkeyPatch) -> None:
    """A scheduler that never answers: --request-timeout-s bounds the wait, and the request leaves the queue."""
    sched = DynamicScheduler(FakeModel())  # type: ignore[arg-type]  # never started: nothing is delivered
    job, _ = _job([1, 2])
    monkeypatch.setattr(_app, "_parse", lambda *a: (InferRequest(), job.prepared))
    with _serving(_state(sched, request_timeout_s=0.2)) as url:
        t0 = time.monotonic()
        status, body = _request(f"{url}/v2/models/fake/infer", b'{"inputs": []}')
        elapsed = time.monotonic() - t0
    assert status == 503, body
    assert "Request timeout expired" in json.loads(body)["error"] and "--request-timeout-s" in body.decode()
    assert 0.15 <= elapsed < 5
    assert sched.queued == 0  # withdrawn: no worker will run it for nobody


# The planted SystemExit ends the worker thread on purpose; pytest reports any exception that ends a thread.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_readiness_follows_a_worker_thread_that_died(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a BaseException escapes the worker loop; the model must then stop reporting ready."""
    sched = DynamicScheduler(FakeModel())  # type: ignore[arg-type]

    def dies() -> None:
        raise SystemExit("planted: the worker thread ends")

    monkeypatch.setattr(sched, "_take", dies)
    with _serving(_state(sched)) as url:
        assert _request(f"{url}/v2/health/ready")[0] == 200  # no worker started yet: healthy
        sched.start()
        deadline = time.monotonic() + 10
        while sched.healthy:
            assert time.monotonic() < deadline, "the worker thread did not end"
            time.sleep(0.01)
        assert sched.healthy is False
        assert _request(f"{url}/v2/health/ready")[0] == 400
        status, body = _request(f"{url}/v2/models/fake/ready")
        assert status == 400 and b"Model version not ready" in body
        assert _request(f"{url}/v2/health/live")[0] == 200  # alive, just not ready


def test_health_is_answered_while_a_large_body_is_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A body over 64 KiB is parsed in a worker thread: the event loop answers probes meanwhile (finding 5)."""
    sched = DynamicScheduler(FakeModel())  # type: ignore[arg-type]
    started, done = threading.Event(), threading.Event()

    def slow_parse(*args: Any) -> Any:
        started.set()
        time.sleep(1.0)
        done.set()
        raise ServeError(400, "planted: slow parse")

    monkeypatch.setattr(_app, "_parse", slow_parse)
    body = b'{"inputs": []}' + b" " * (INLINE_PARSE_BYTES + 1024)
    with _serving(_state(sched)) as url:
        replies: list[tuple[int, bytes]] = []
        poster = threading.Thread(target=lambda: replies.append(_request(f"{url}/v2/models/fake/infer", body)))
        poster.start()
        try:
            assert started.wait(10), "the large body was never parsed"
            t0 = time.monotonic()
            status, _ = _request(f"{url}/v2/health/live")
            elapsed = time.monotonic() - t0
            parsing = not done.is_set()
        finally:
            poster.join(_HTTP_TIMEOUT_S + 5)
    assert status == 200
    assert parsing, "the probe was answered only after the parse: the event loop was blocked"
    assert elapsed < 0.5, elapsed
    assert replies and replies[0][0] == 400 and b"planted: slow parse" in replies[0][1]


# -- uploads that stall or stop ------------------------------------------------------------------------------


def _recv_all(sock: socket.socket, timeout_s: float = _HTTP_TIMEOUT_S) -> bytes:
    """Everything the server sends until it closes the connection (bounded by ``timeout_s``)."""
    sock.settimeout(timeout_s)
    data = b""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        data += chunk
    return data


def _stalled_upload(url: str, declared: int) -> socket.socket:
    """A connection that sends the headers of a ``declared``-byte body, then one byte of it, then nothing."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=_HTTP_TIMEOUT_S)
    sock.sendall(f"POST /v2/models/fake/infer HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\n\r\n{{".encode())
    return sock


def _fail_count(state: ServerState, reason: str) -> float:
    return state.metrics.value("nv_inference_request_failure", "fake", reason)


def test_stalled_uploads_get_408_and_release_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients that send headers and stall held their reservation of the in-flight budget until they hung up,
    and every other request got 503 after --request-timeout-s. The body has a deadline of its own now."""
    sched = DynamicScheduler(_versioned(FakeModel()))  # type: ignore[arg-type]
    monkeypatch.setattr(_app, "_parse", _json_parse)
    state = _state(sched, request_timeout_s=4.0, inflight=8 << 20, body_timeout_s=0.5)
    sched.start()
    try:
        with _serving(state) as url:
            stalled = [_stalled_upload(url, 1 << 20) for _ in range(8)]  # 8 × 1 MiB: the whole budget
            try:
                deadline = time.monotonic() + 10
                while state.budget is None or state.budget.used < 8 << 20:
                    assert time.monotonic() < deadline, "the stalled uploads never reserved the budget"
                    time.sleep(0.01)
                t0 = time.monotonic()
                status, body = _request(f"{url}/v2/models/fake/infer", json.dumps({"ids": [1, 2]}).encode())
                elapsed = time.monotonic() - t0
                replies = [_recv_all(s) for s in stalled]  # each answered, then closed
            finally:
                for s in stalled:
                    s.close()
            assert status == 200, body
            assert json.loads(body)["outputs"][0]["data"] == [3.0]
            assert elapsed < 3.0, elapsed  # served once the stalled ones timed out, well before the 4 s deadline
            for reply in replies:
                head, _, payload = reply.partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 408"), reply
                assert b"connection: close" in head.lower()
                error = json.loads(payload)["error"]
                assert "Request Timeout" in error and "1 of 1048576 bytes" in error
            assert state.budget is not None and state.budget.used == 0
            assert _fail_count(state, "OTHER") == 8 and _fail_count(state, "REJECTED") == 0
    finally:
        sched.stop(10)


def test_a_client_that_hangs_up_mid_body_is_no_server_error(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """starlette's ClientDisconnect was logged as an internal error ('a bug, please report it') with a traceback."""
    sched = DynamicScheduler(_versioned(FakeModel()))  # type: ignore[arg-type]
    monkeypatch.setattr(_app, "_parse", _json_parse)
    state = _state(sched)
    caplog.set_level(logging.DEBUG, logger="seqdeploy.serve")
    with _serving(state) as url:
        _stalled_upload(url, 1000).close()
        deadline = time.monotonic() + 10
        while _fail_count(state, "CANCELED") == 0:
            assert time.monotonic() < deadline, "the abandoned request was never counted"
            time.sleep(0.01)
        assert state.budget is not None and state.budget.used == 0
        assert _fail_count(state, "OTHER") == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert "internal error" not in caplog.text


# -- requests whose execution outlasts their deadline ---------------------------------------------------------


def _versioned(model: FakeModel) -> FakeModel:
    model.version = "1"  # type: ignore[attr-defined]
    return model


def _json_parse(raw: bytes, encoding: str | None, *args: Any) -> tuple[InferRequest, Prepared]:
    """A stand-in for the real parser: ``{"ids": [...], "seq": id, "start": bool}``, ``h_n`` back as JSON."""
    doc = json.loads(decode_body(raw, encoding, 1 << 20))
    job, _ = _job(doc["ids"])
    prepared = dataclasses.replace(job.prepared, outputs=[OutputPlan("h_n", "FP64", False)])
    return InferRequest(sequence_id=doc.get("seq", 0), sequence_start=doc.get("start", False)), prepared


def _executing(sched: Scheduler) -> None:
    deadline = time.monotonic() + 10
    while sched.gauges()["executing"] < 1:
        assert time.monotonic() < deadline, "the request never started executing"
        time.sleep(0.005)


def _post_in_background(url: str, doc: dict[str, Any]) -> tuple[threading.Thread, list[tuple[int, bytes]]]:
    replies: list[tuple[int, bytes]] = []
    thread = threading.Thread(
        target=lambda: replies.append(_request(f"{url}/v2/models/fake/infer", json.dumps(doc).encode()))
    )
    thread.start()
    return thread, replies


@pytest.mark.parametrize("kind", ["dynamic", "sequence"])
def test_a_request_executing_past_its_deadline_gets_its_answer(monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """A request already taken for execution when its deadline passes still runs (and moves its sequence's
    state): it got 503 'Request timeout expired', and a client's retry applied it twice. It now gets its answer."""
    model = _versioned(FakeModel(delay_us=0))
    sched: Scheduler = DynamicScheduler(model) if kind == "dynamic" else SequenceScheduler(model)  # type: ignore[arg-type]
    monkeypatch.setattr(_app, "_parse", _json_parse)
    state = _state(sched, request_timeout_s=0.5)
    seq: dict[str, Any] = {"seq": 7} if kind == "sequence" else {}
    sched.start()
    try:
        with _serving(state) as url:
            status, body = _request(
                f"{url}/v2/models/fake/infer", json.dumps({"ids": [5], "start": True, **seq}).encode()
            )
            assert status == 200 and json.loads(body)["outputs"][0]["data"] == [5.0], body
            model.gate.clear()  # the next execution outlasts the request's deadline
            thread, replies = _post_in_background(url, {"ids": [2], **seq})
            try:
                _executing(sched)
                time.sleep(1.0)  # twice the deadline
            finally:
                model.gate.set()
                thread.join(_HTTP_TIMEOUT_S + 5)
            assert replies, "no reply"
            status, body = replies[0]
            want = 7.0 if kind == "sequence" else 2.0
            assert status == 200 and json.loads(body)["outputs"][0]["data"] == [want], body
            if kind == "sequence":  # the next request continues from the state that includes it
                status, body = _request(f"{url}/v2/models/fake/infer", json.dumps({"ids": [1], **seq}).encode())
                assert status == 200 and json.loads(body)["outputs"][0]["data"] == [8.0], body
            assert _fail_count(state, "REJECTED") == 0
    finally:
        model.gate.set()
        sched.stop(10)


def test_a_compressed_body_holds_its_real_size_of_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """A compressed body reserves the body limit until it is decompressed, then only what it turned out to be
    (compressed + decompressed bytes) while it is queued and executed; it held the whole limit throughout."""
    model = _versioned(FakeModel(delay_us=0))
    sched = DynamicScheduler(model)  # type: ignore[arg-type]
    monkeypatch.setattr(_app, "_parse", _json_parse)
    state = _state(sched)
    plain = json.dumps({"ids": [1, 2, 3]}).encode() + b" " * 5000
    packed = gzip.compress(plain)
    sched.start()
    try:
        with _serving(state) as url:
            model.gate.clear()
            replies: list[tuple[int, bytes]] = []
            infer = f"{url}/v2/models/fake/infer"
            thread = threading.Thread(
                target=lambda: replies.append(_request(infer, packed, {"Content-Encoding": "gzip"}))
            )
            thread.start()
            try:
                _executing(sched)
                assert state.budget is not None
                held = state.budget.used
            finally:
                model.gate.set()
                thread.join(_HTTP_TIMEOUT_S + 5)
            assert held == len(packed) + len(plain) < state.max_body
            assert replies and replies[0][0] == 200 and json.loads(replies[0][1])["outputs"][0]["data"] == [6.0]
            assert state.budget.used == 0
    finally:
        model.gate.set()
        sched.stop(10)


# The planted SystemExit ends the worker thread on purpose; pytest reports any exception that ends a thread.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_worker_dying_under_a_late_request_says_it_may_have_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past its deadline, an executing request waits for its answer only while the worker threads live."""
    model = _versioned(FakeModel(delay_us=0))
    sched = SequenceScheduler(model)  # type: ignore[arg-type]
    monkeypatch.setattr(_app, "_parse", _json_parse)
    monkeypatch.setattr(_app, "HEALTH_POLL_S", 0.05)
    dying = threading.Event()

    def infer(feeds: Any) -> Any:
        dying.wait(10)
        raise SystemExit("planted: the worker thread ends mid-execution")

    monkeypatch.setattr(model, "infer", infer)
    state = _state(sched, request_timeout_s=0.5)
    sched.start()
    try:
        with _serving(state) as url:
            thread, replies = _post_in_background(url, {"ids": [2], "seq": 7, "start": True})
            try:
                _executing(sched)
                time.sleep(0.8)  # past the deadline
            finally:
                dying.set()
                thread.join(_HTTP_TIMEOUT_S + 5)
        assert replies, "no reply"
        status, body = replies[0]
        assert status == 500, body
        error = json.loads(body)["error"]
        assert "may have been executed" in error and "sequence_start" in error
    finally:
        dying.set()
        sched.stop(1)
