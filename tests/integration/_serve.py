"""A ``seqdeploy serve`` subprocess for the client tests: loopback only, a free port, bounded waits.

The server is started with ``--port 0`` and announces its URL on stderr once it listens, so there is no
race for a port. Every wait has a deadline: a hang fails the test instead of blocking CI.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

_URL = re.compile(r"on http://(127\.0\.0\.1:\d+) ")
START_TIMEOUT_S = 120.0


class Server:
    """``seqdeploy serve PKG ARGS`` in a subprocess (127.0.0.1, port chosen by the OS)."""

    def __init__(self, package: Path, *args: str, env: dict[str, str] | None = None, code: str | None = None) -> None:
        cmd = [sys.executable, "-m", "seqdeploy", "serve", str(package), "--port", "0", *args]
        if code is not None:  # run the CLI inside a prepared interpreter (import blocking)
            cmd = [sys.executable, "-c", code, "serve", str(package), "--port", "0", *args]
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.stderr: list[str] = []
        self.stdout: list[str] = []
        self._ready = threading.Event()
        self.url = ""
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr, True), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stdout, self.stdout, False), daemon=True),
        ]
        for t in self._readers:
            t.start()
        if not self._ready.wait(START_TIMEOUT_S) or not self.url:
            self.kill()
            raise AssertionError(f"seqdeploy serve did not start:\n{self.log}")

    def _read(self, stream: Any, into: list[str], announce: bool) -> None:
        for line in stream:
            into.append(line)
            m = _URL.search(line) if announce else None
            if m:
                self.url = m.group(1)
                self._ready.set()
        if announce:
            self._ready.set()  # EOF: the process ended (startup failure)

    @property
    def log(self) -> str:
        """Everything the server wrote so far."""
        return "".join(self.stderr) + "".join(self.stdout)

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
        """A raw GET (status, body, headers) with a deadline."""
        return self.request("GET", path, None, headers)

    def request(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes, dict[str, str]]:
        """A raw HTTP request through the standard library (status, body, lower-cased headers)."""
        req = urllib.request.Request(f"http://{self.url}{path}", data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read(), {k.lower(): v for k, v in r.headers.items()}
        except urllib.error.HTTPError as e:
            return e.code, e.read(), {k.lower(): v for k, v in e.headers.items()}

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM, then wait (kill after ``timeout``); the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"seqdeploy serve did not stop within {timeout} s after SIGTERM:\n{self.log}"
            ) from None

    def kill(self) -> None:
        """Kill without grace (cleanup), and close the pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        for t in self._readers:
            t.join(10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.terminate()
        finally:
            self.kill()


HOOKED_SERVER = """
import sys, time
import numpy as np
import seqdeploy.serve._server as _server
from seqdeploy.serve._model import ServedModel

FAULT, SLOW, SLOW_S = {fault}, {slow}, {slow_s}


class HookedModel(ServedModel):
    # Test-only: a token that makes the backend call raise (a crashing backend), one that makes it slow (a
    # request held in flight). Production code has no such hooks.
    def infer(self, feeds):
        ids = feeds.get("input")
        if ids is not None and ids.dtype.kind in "iu":
            if bool(np.any(ids == FAULT)):
                raise RuntimeError(f"injected backend fault (token {{FAULT}})")
            if bool(np.any(ids == SLOW)):
                time.sleep(SLOW_S)
        return super().infer(feeds)


_server.ServedModel = HookedModel
from seqdeploy.cli import main

sys.argv = ["seqdeploy"] + sys.argv[1:]
main()
"""
"""A ``seqdeploy serve`` interpreter whose models fail on token ``fault`` and sleep ``slow_s`` on ``slow``."""


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    """Poll ``predicate`` until true or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def infer_input(name: str, array: np.ndarray, binary: bool = True) -> Any:
    """A tritonclient.http InferInput holding ``array``."""
    import tritonclient.http as httpclient
    from tritonclient.utils import np_to_triton_dtype

    i = httpclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
    i.set_data_from_numpy(array, binary_data=binary)
    return i


def metric(text: str, name: str, model: str, reason: str | None = None) -> float:
    """One counter from Prometheus text."""
    for line in text.splitlines():
        if (
            line.startswith(name + "{")
            and f'model="{model}"' in line
            and (reason is None or f'reason="{reason}"' in line)
        ):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"metric {name} for {model} not found in:\n{text}")
