"""Helpers of the fault-injection suite: the CLI in a subprocess, paused at a named fault point.

A run started with ``fault_at=NAME`` stops at ``seqdeploy._atomic.fault_point(NAME)`` and writes a ready
file; the test then acts *exactly* there (sends a signal, races a second writer, creates a directory at
the target) and either signals the run or resumes it by deleting the ready file. No timing luck: every
wait is a poll with a deadline, and every child is killed if a test fails, so a hang fails the test
instead of blocking CI.

Children never use ``shell=True``; their stdout/stderr are pipes drained by threads; their exit status and
peak RSS come from ``os.wait4`` on that one child.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TIMEOUT_S = 120.0
"""Upper bound on any one child: far above a tiny export (~3-5 s), far below a CI job's patience."""

SEQDEPLOY = (sys.executable, "-m", "seqdeploy")
LEFTOVER_MARKS = (".partial", ".old-", ".stage-", ".tmp")


@dataclass(frozen=True)
class Result:
    """A finished child: exit code (negative: killed by that signal), output, peak RSS, wall time."""

    code: int
    stdout: str
    stderr: str
    maxrss_mb: float
    wall_s: float

    @property
    def text(self) -> str:
        return self.stdout + self.stderr

    def __str__(self) -> str:  # what a failing assert shows
        return f"exit {self.code} after {self.wall_s:.1f} s\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def base_env(tmp: Path, **extra: str) -> dict[str, str]:
    """The environment of a child: this one without any SEQDEPLOY_* setting, a private TMPDIR (its lock
    directory), one thread per library (two cores are shared), plus ``extra``.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEQDEPLOY_")}
    tmpdir = tmp / "tmpdir"
    tmpdir.mkdir(parents=True, exist_ok=True)
    env.update(
        TMPDIR=str(tmpdir),
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONHASHSEED="0",
    )
    env.update(extra)
    return env


class Child:
    """A running ``python -m seqdeploy ...``; see :func:`start`."""

    def __init__(
        self,
        args: tuple[str, ...],
        env: Mapping[str, str],
        *,
        ready: Path | None,
        cwd: Path | None = None,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        self.args = args
        self.ready = ready
        self.start_time = time.monotonic()
        # Pipes, drained by threads: a file would be subject to the child's own RLIMIT_FSIZE (the full-disk
        # tests would lose the very message they check), and an undrained pipe could block the child.
        self.proc = subprocess.Popen(
            [*SEQDEPLOY, *args],
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=preexec_fn,
        )
        self._out: list[bytes] = []
        self._err: list[bytes] = []
        self._drains = [
            threading.Thread(target=_drain, args=(self.proc.stdout, self._out), daemon=True),
            threading.Thread(target=_drain, args=(self.proc.stderr, self._err), daemon=True),
        ]
        for t in self._drains:
            t.start()
        self.result: Result | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return b"".join(self._out).decode(errors="replace") + b"".join(self._err).decode(errors="replace")

    def wait_ready(self, timeout: float = TIMEOUT_S) -> str:
        """Block until the child reached its fault point (returns the point's name); fail if it exits first."""
        assert self.ready is not None, "started without fault_at"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready.exists():
                name = self.ready.read_text()
                if name:  # written, not just created
                    return name
            if self._reap() is not None:
                raise AssertionError(f"{self.args} exited before reaching its fault point:\n{self.result}")
            time.sleep(0.02)
        self.kill()
        raise AssertionError(f"{self.args} did not reach its fault point within {timeout} s:\n{self.output()}")

    def resume(self) -> None:
        """Let a paused child go on (the pause ends when its ready file disappears)."""
        assert self.ready is not None
        self.ready.unlink()

    def send(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        if self.result is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
            self.finish()

    def _reap(self) -> Result | None:
        """The result if the child has exited (reaped here with ``wait4``, for its own rusage), else None."""
        if self.result is None:
            pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
            if not pid:
                return None
            code = os.waitstatus_to_exitcode(status)
            self.proc.returncode = code  # Popen must not wait for it again
            wall = time.monotonic() - self.start_time
            for t in self._drains:  # the pipes close when the child (and any grandchild) is gone
                t.join(timeout=30)
            for stream in (self.proc.stdout, self.proc.stderr):
                if stream is not None:
                    stream.close()
            self.result = Result(
                code,
                b"".join(self._out).decode(errors="replace"),
                b"".join(self._err).decode(errors="replace"),
                usage.ru_maxrss / 1024,  # Linux reports KiB
                wall,
            )
        return self.result

    def finish(self, timeout: float = TIMEOUT_S) -> Result:
        """Reap the child (killing it after ``timeout``, which fails the test) and return its result."""
        deadline = time.monotonic() + timeout
        while (result := self._reap()) is None:
            if time.monotonic() > deadline:
                os.kill(self.proc.pid, signal.SIGKILL)
                while self._reap() is None:
                    time.sleep(0.02)
                raise AssertionError(f"{self.args} still running after {timeout} s (killed):\n{self.output()}")
            time.sleep(0.02)
        return result


def _drain(stream: Any, into: list[bytes]) -> None:
    into.extend(iter(lambda: stream.read1(65536), b""))


def assert_clean_error(result: Result, code: int = 2) -> None:
    """Exit ``code`` with an ``error:`` message and never a traceback or an internal error."""
    assert result.code == code, result
    assert "Traceback" not in result.text, result
    assert "internal error" not in result.text, result
    assert "error: " in result.stderr, result


class Cli:
    """Starts children with one shared environment (so they share a lock directory) under ``root``."""

    def __init__(self, root: Path, **env: str) -> None:
        self.root = root
        self.env = base_env(root, **env)
        self._children: list[Child] = []

    def start(
        self,
        *args: str | Path,
        fault_at: str | None = None,
        action: str = "pause",
        pause_s: float = 60.0,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        fsize_limit: int | None = None,
        rlimits: Mapping[int, int] | None = None,
    ) -> Child:
        """Start ``seqdeploy ARGS``; with ``fault_at``, act at that fault point (``action``, see
        ``seqdeploy._atomic.fault_point``). ``fsize_limit`` caps the size of any file the child writes
        (``RLIMIT_FSIZE``: Python ignores SIGXFSZ, so a write past it fails with EFBIG, like a full disk);
        ``rlimits`` sets others (``RLIMIT_AS``: an allocation past it fails at once, safely).
        """
        full_env = dict(self.env)
        ready = None
        if fault_at is not None:
            n = len(self._children)
            ready = self.root / f"ready-{n}"
            ready.unlink(missing_ok=True)
            full_env.update(
                SEQDEPLOY_FAULT_AT=fault_at,
                SEQDEPLOY_FAULT_ACTION=action,
                SEQDEPLOY_FAULT_READY=str(ready),
                SEQDEPLOY_FAULT_PAUSE_S=str(pause_s),
            )
        full_env.update(env or {})
        limits = dict(rlimits or {})
        if fsize_limit is not None:
            limits[resource.RLIMIT_FSIZE] = fsize_limit
        preexec = None
        if limits:

            def preexec() -> None:
                for which, value in limits.items():
                    resource.setrlimit(which, (value, value))

        child = Child(tuple(str(a) for a in args), full_env, ready=ready, cwd=cwd, preexec_fn=preexec)
        self._children.append(child)
        return child

    def run(self, *args: str | Path, timeout: float = TIMEOUT_S, **kw: Any) -> Result:
        """Run ``seqdeploy ARGS`` to the end."""
        return self.start(*args, **kw).finish(timeout)

    def close(self) -> None:
        """Kill whatever a failed test left running."""
        for c in self._children:
            c.kill()


# -- what is on disk --------------------------------------------------------------------------------------


def tree_digest(root: Path) -> dict[str, str]:
    """``relpath -> sha256`` of every file under ``root`` (hidden ones included), for byte-identity checks."""
    out: dict[str, str] = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[p.relative_to(root).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def leftovers(*dirs: Path) -> list[str]:
    """Staging, moved-aside and temp paths seqdeploy makes, anywhere under ``dirs`` (should be none)."""
    found = [
        str(p)
        for d in dirs
        if d.exists()
        for p in d.rglob("*")
        if p.name.startswith(".") and any(m in p.name for m in LEFTOVER_MARKS)
    ]
    return sorted(found)


def no_json_says_passed(*dirs: Path) -> list[str]:
    """JSON files under ``dirs`` that claim ``"passed": true`` anywhere (none may, after an interruption)."""
    bad = []
    for d in dirs:
        for p in d.rglob("*.json") if d.exists() else []:
            with contextlib.suppress(ValueError, OSError):
                if _claims_passed(json.loads(p.read_text())):
                    bad.append(str(p))
    return bad


def _claims_passed(node: Any) -> bool:
    if isinstance(node, dict):
        return node.get("passed") is True or any(_claims_passed(v) for v in node.values())
    if isinstance(node, list):
        return any(_claims_passed(v) for v in node)
    return False


# -- configs ------------------------------------------------------------------------------------------------


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML form for {v!r}")


def to_toml(doc: Mapping[str, Any]) -> str:
    """A TOML document from nested dicts of scalars and arrays (tables as ``[a.b]`` headers)."""
    lines: list[str] = []

    def table(prefix: str, data: Mapping[str, Any]) -> None:
        scalars = {k: v for k, v in data.items() if not isinstance(v, Mapping)}
        subs = {k: v for k, v in data.items() if isinstance(v, Mapping)}
        if prefix and (scalars or not subs):
            lines.append(f"[{prefix}]")
        for k, v in scalars.items():
            lines.append(f"{json.dumps(k)} = {_toml_value(v)}")
        for k, v in subs.items():
            table(f"{prefix}.{json.dumps(k)}" if prefix else json.dumps(k), v)

    table("", doc)
    return "\n".join(lines) + "\n"


def write_config(path: Path, doc: Mapping[str, Any]) -> Path:
    path.write_text(to_toml(doc), encoding="utf-8")
    return path


@contextlib.contextmanager
def cli_in(root: Path, **env: str) -> Iterator[Cli]:
    c = Cli(root, **env)
    try:
        yield c
    finally:
        c.close()
