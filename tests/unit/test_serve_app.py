"""The HTTP app over fake models, served by uvicorn in a thread on loopback: request deadlines, readiness
after a lost worker thread, and health probes answered while a large body is parsed (review findings 5, 8)."""

from __future__ import annotations

import contextlib
import json
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
from seqdeploy.serve._protocol import InferRequest, ServeError  # noqa: E402
from seqdeploy.serve._scheduler import DynamicScheduler, Scheduler  # noqa: E402
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


def _request(url: str, body: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
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
