"""How seqdeploy never leaves a half-written artifact: staging, per-target locks, signals, fault points.

Every command that writes an artifact (``export``, ``optimize``, ``compile``, ``package``) builds it in a
*staging* location, proves it, and only then makes it visible with one ``rename``. The decision to
replace or refuse an existing target is taken at that rename, under a per-target lock, so two writers
racing for one ``-o`` cannot both win and a directory that appeared meanwhile is never deleted.

* :func:`staged_dir` — a new directory artifact (an export bundle, a package).
* :func:`staged_file` — one new file (a package archive, a timing cache).
* :func:`bundle_transaction` — new files inside an existing bundle (variants, the TensorRT kit) plus the
  manifest that records them, committed together.
* :func:`write_atomic` — a small file (a report, a manifest) written whole or not at all.
* :func:`reading` — readers hold a shared lock while they load a bundle, so a concurrent ``--force``
  swap or a transaction's commit is never seen half-done.
* :func:`handle_signals` — SIGTERM is treated exactly like Ctrl-C (a ``KeyboardInterrupt``), and the
  commit itself is shielded: a signal that arrives during it is delivered right after.
* :func:`fault_point` — named pauses for the fault-injection tests (``SEQDEPLOY_FAULT_AT``).

Locks live in a per-user directory under the system temp dir, keyed by the target's real path, so
nothing is ever left beside the user's artifacts (a failed run leaves *nothing* behind) and read-only
parents still work. Writers that do not share that directory (another user, another ``TMPDIR``, another
container) are kept apart by ``flock`` on the staged paths and bundles themselves, which every process on
the machine sees. Stdlib only: the torch-free runtime may use it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqdeploy.errors import InternalError, UsageError

__all__ = [
    "STAGING_MARKER",
    "Transaction",
    "bundle_transaction",
    "committed_paths",
    "discarded_paths",
    "fault_point",
    "handle_signals",
    "is_staging_name",
    "reading",
    "shielded",
    "signals_received",
    "staged_dir",
    "staged_file",
    "target_lock",
    "with_path",
    "write_atomic",
]

STAGING_MARKER = ".seqdeploy-staging"
"""A file inside every staging directory; readers refuse a directory that has it."""

# Every staging and moved-aside name carries the pid of the run that made it (``.exp.4242-k3j9x_2a.partial``,
# ``.exp.old-4242-1f2e3d4c``, ``.model.int8.onnx.stage-4242-1f2e3d4c``): a later run removes only what a dead
# run left. Names without a pid (made before pids were added) are taken as left by a dead run.
_SUFFIX = r"(?:(?:\d+-)?[a-z0-9_]{8}\.partial|old-\d+-[0-9a-f]{8}|stage-(?:\d+-)?[0-9a-f]{8})"
_STAGING_RE = re.compile(rf"^\..+\.{_SUFFIX}$")
_OWNER_RE = re.compile(r"\.(?:old-|stage-)?(\d+)-[a-z0-9_]{8}(?:\.partial)?$")
_LOCK_WAIT_S = 60.0
"""How long a writer waits for readers to finish loading before its commit (readers hold it seconds)."""

# Targets this run committed: a signal or an error that lands after a commit must not be reported as
# "nothing was written" (the CLI names them when a command ends before its end).
_COMMITTED: list[Path] = []
# Signals this run received. A signal can surface as some other error: a KeyboardInterrupt raised inside a
# C extension's import comes out as "ImportError: initialization failed", one inside an ORT call as an ORT
# error. The CLI reads this so that such a run still ends as "interrupted" (130), not as that error.
_SIGNALLED: list[int] = []
# Staged paths this run removed after a failure: the CLI says "nothing half-written was left behind" only
# when that is what happened, not for every full disk whatever wrote to it.
_DISCARDED: list[Path] = []


def committed_paths() -> tuple[Path, ...]:
    """Artifacts this run has committed (renamed into place) so far."""
    return tuple(_COMMITTED)


def discarded_paths() -> tuple[Path, ...]:
    """Staged paths (directories, files) this run removed after a failure or an interruption."""
    return tuple(_DISCARDED)


def signals_received() -> tuple[int, ...]:
    """SIGINT/SIGTERM/SIGHUP received during this run (inside :func:`handle_signals`)."""
    return tuple(_SIGNALLED)


def is_staging_name(name: str, target: str | None = None) -> bool:
    """Whether ``name`` is a staging or moved-aside path seqdeploy made (``.X.abcd1234.partial``), and with
    ``target``, one made for that target name exactly (``.exp.v2.…`` is not ``exp``'s).
    """
    if target is None:
        return bool(_STAGING_RE.match(name))
    prefix = f".{target}."
    return name.startswith(prefix) and bool(re.fullmatch(_SUFFIX, name[len(prefix) :]))


def _unique(dest: Path, kind: str) -> Path:
    """``.NAME.KIND-PID-RANDOM`` beside ``dest``: unique per run and per call, recognisably seqdeploy's."""
    return dest.with_name(f".{dest.name}.{kind}-{os.getpid()}-{os.urandom(4).hex()}")


# -- signals ---------------------------------------------------------------------------------------------


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _raise_interrupt(signum: int, frame: object) -> None:
    _SIGNALLED.append(signum)
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


@contextlib.contextmanager
def handle_signals(*, final: bool = False) -> Iterator[None]:
    """One CLI run: SIGINT, SIGTERM and SIGHUP raise ``KeyboardInterrupt`` in the main thread, and are
    recorded (:func:`signals_received`); :func:`committed_paths` starts empty.

    One code path then handles every interruption: cleanup runs, nothing is committed, exit 130. A signal
    the caller ignores (``nohup``: SIGHUP ``SIG_IGN``; a background job: SIGINT ``SIG_IGN``) stays ignored.
    Off the main thread (where Python cannot install handlers) only the run state is reset.

    Args:
        final: The process exits right after the block (the console script): from the end of the block
            on, these signals are ignored instead of restored, so a signal that lands while the outcome is
            being reported, or during the interpreter's teardown, cannot turn a finished run into "killed by
            SIGINT" or "Aborted!" (exit -2/1) — the exit status stays the run's own.
    """
    _COMMITTED.clear()  # state of this run only (the CLI can be invoked several times in one process)
    _SIGNALLED.clear()
    _DISCARDED.clear()
    if not _on_main_thread():
        yield
        return
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    for s, handler in old.items():
        if handler in (signal.SIG_DFL, signal.default_int_handler):
            signal.signal(s, _raise_interrupt)
    try:
        yield
    finally:
        for s, handler in old.items():
            restore = handler if handler is not None else signal.SIG_DFL
            signal.signal(s, signal.SIG_IGN if final else restore)


@contextlib.contextmanager
def shielded() -> Iterator[list[int]]:
    """Hold SIGINT/SIGTERM/SIGHUP back while the block runs; re-raise one as ``KeyboardInterrupt`` after.

    Yields the list of signals received *inside the block* (empty on entry): a commit looks at it right
    before its point of no return and aborts instead of committing. Used around commits and cleanups,
    which must never stop halfway. Never wait inside it (a lock, a child): a signal would be held for
    the whole wait — take locks first, then enter the shield.
    """
    if not _on_main_thread():
        yield []
        return
    received: list[int] = []

    def hold(signum: int, frame: object) -> None:
        received.append(signum)
        _SIGNALLED.append(signum)

    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    old = {s: signal.getsignal(s) for s in sigs}
    for s in sigs:
        if old[s] != signal.SIG_IGN:  # an ignored signal (nohup) stays ignored
            signal.signal(s, hold)
    try:
        yield received
    finally:
        for s, handler in old.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
    if received:
        raise KeyboardInterrupt(f"signal {signal.Signals(received[0]).name}")


def _abort_if_signalled(received: list[int]) -> None:
    """The last moment a commit may still give up: a signal held since the shield began aborts it."""
    if received:
        raise KeyboardInterrupt(f"signal {signal.Signals(received[0]).name} before the commit")


# -- fault points (tests) ----------------------------------------------------------------------------------


def fault_point(name: str) -> None:
    """A named point where the fault-injection tests act (no-op unless ``SEQDEPLOY_FAULT_AT`` names it).

    ``SEQDEPLOY_FAULT_AT=NAME[,NAME...]`` selects points; ``SEQDEPLOY_FAULT_ACTION`` says what happens:
    ``pause`` (default: write the point's name to ``SEQDEPLOY_FAULT_READY`` if set, then sleep up to
    ``SEQDEPLOY_FAULT_PAUSE_S`` seconds, default 30, so the test can send a signal at exactly this
    point; the test resumes the run early by deleting the ready file), ``enospc`` (raise
    ``OSError(ENOSPC)``) or ``interrupt`` (raise ``KeyboardInterrupt``).

    Points (the full list is in ``docs/errors.md``): ``export:model-built``, ``export:onnx-written``,
    ``export:self-check``, ``export:committed``, ``optimize:int8-written``, ``optimize:fp16-written``,
    ``optimize:committed``, ``compile:kit-written``, ``compile:engine-written``, ``commit`` (every
    :func:`staged_dir`, :func:`staged_file` and transaction, before it takes the swap lock),
    ``commit:locked`` (the swap lock taken, signals held, before the first rename: a signal held here
    aborts the commit), ``commit:swapping`` (between the renames of a swap: signals held, the commit
    goes on), ``bundle:loaded`` (a reader loaded and checked a bundle, before its runners),
    ``bundle:checked`` (under the read lock, the bundle found unchanged, its runners about to load) and
    ``bundle:runners-loaded`` (its work starts).
    """
    wanted = os.environ.get("SEQDEPLOY_FAULT_AT")
    if not wanted or name not in wanted.split(","):
        return
    action = os.environ.get("SEQDEPLOY_FAULT_ACTION", "pause")
    if action == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), f"<fault point {name}>")
    if action == "interrupt":
        raise KeyboardInterrupt(f"fault point {name}")
    ready = os.environ.get("SEQDEPLOY_FAULT_READY")
    if ready:
        Path(ready).write_text(name, encoding="utf-8")
    deadline = time.monotonic() + float(os.environ.get("SEQDEPLOY_FAULT_PAUSE_S", "30"))
    # Bounded: a test that forgets to signal still ends. Deleting the ready file resumes at once, so a
    # race (a second writer, a directory created at the target) happens exactly while this run waits.
    while time.monotonic() < deadline and (not ready or os.path.exists(ready)):
        time.sleep(0.05)


# -- small files written whole --------------------------------------------------------------------------------


def with_path(exc: OSError, path: Path | str) -> OSError:
    """``exc`` naming ``path`` (a failed ``write``/``close`` carries no file name), for the CLI's message."""
    if exc.filename or exc.errno is None:
        return exc
    return OSError(exc.errno, exc.strerror or os.strerror(exc.errno), str(path))


_NO_FLOCK = frozenset({errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENOLCK})
"""``flock`` errors of a file system without working locks (Lustre mounted ``noflock``, some FUSE and NFS
setups): not the user's mistake and not a bug."""


def _flock_if_supported(fd: int, mode: int) -> bool:
    """``flock(fd, mode)``; ``False`` where the file system has no ``flock``.

    Those locks are a second line (they tell cleaners in other PID namespaces that a path is alive, and
    keep two writers of one bundle apart across lock directories); without them the decision taken at
    the rename and the lock directory still protect the data, and cleaners fall back to the owner's pid.
    ``BlockingIOError`` (held by another run) is raised, as is any other error.
    """
    try:
        fcntl.flock(fd, mode)
    except BlockingIOError:
        raise
    except OSError as exc:
        if exc.errno in _NO_FLOCK:
            return False
        raise
    return True


def _create_locked(path: Path) -> int:
    """Create ``path`` (exclusively, never through a symlink) and hold an ``flock`` on it: the file of a live
    run, which a cleaner in any process — another user's, another container's — sees as such.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        _flock_if_supported(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_atomic(path: Path | str, data: str | bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all: a unique temp sibling, flushed, renamed over ``path``.

    The one atomic writer of small files (reports, manifests, plans). Two writers of one path never share
    a temp file (the last rename wins, each file whole); a failure or an interruption removes the temp
    file, and temp files a killed run left for ``path`` are removed by the next write. An ``OSError``
    always names ``path``.
    """
    dest = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    _clean_temps(dest.parent, dest.name)
    tmp = _unique(dest, "stage")
    try:
        fd = _create_locked(tmp)
        try:
            with os.fdopen(os.dup(fd), "wb") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())  # the data is on disk before the name points at it
            _apply_umask(tmp, directory=False)
            os.replace(tmp, dest)
        finally:
            os.close(fd)
    except OSError as exc:
        with shielded():
            _discard(tmp)
        raise with_path(exc, dest) from None
    except BaseException:
        with shielded():
            _discard(tmp)
        raise


def _write_new(path: Path, text: str) -> None:
    """Write a file that nobody else can see yet (inside a staging directory, or a unique pending name)."""
    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        raise with_path(exc, path) from None


# -- locks -------------------------------------------------------------------------------------------------


class _NoLockDir(OSError):
    """The lock directory cannot be used (cannot be created, or is not safely ours): run without locks."""


_WARNED: list[str] = []


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.append(message)
        print(f"warning: {message}", file=sys.stderr)


def _tmp_root() -> str:
    try:
        return tempfile.gettempdir()
    except OSError:
        # gettempdir() probes each candidate by writing a file: on a full disk or under a file-size limit
        # it finds none ("No usable temporary directory"). Lock files hold no data, so any existing one
        # will do; the real write error is then reported where the artifact is written.
        return os.environ.get("TMPDIR") or "/tmp"


def _lock_dir() -> Path:
    """``$TMPDIR/seqdeploy-locks-UID``, created 0700 — and only if it is safely ours.

    A directory another user made there first (``/tmp`` is shared) could hold symlinks where our lock
    files go, or locks that block us forever: it must be a real directory, owned by us and writable by
    nobody else; otherwise (or when it cannot be created: a read-only ``TMPDIR``) :class:`_NoLockDir`.
    """
    uid = os.getuid() if hasattr(os, "getuid") else 0
    d = Path(_tmp_root()) / f"seqdeploy-locks-{uid}"
    try:
        d.mkdir(mode=0o700, exist_ok=True)
        st = os.lstat(d)
        if stat.S_ISDIR(st.st_mode) and st.st_uid == uid and st.st_mode & 0o022:
            os.chmod(d, 0o700)  # ours, but group/other-writable (made under another umask): tighten it
            st = os.lstat(d)
    except OSError as exc:
        raise _NoLockDir(exc.errno, f"cannot create the lock directory {d} ({exc.strerror or exc})") from None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or st.st_mode & 0o022:
        raise _NoLockDir(
            errno.EPERM, f"{d} is not a directory owned by you and writable only by you; not using it for locks"
        )
    return d


def _lock_file(target: Path, kind: str) -> Path:
    key = hashlib.sha256(os.fsencode(os.path.realpath(target))).hexdigest()[:40]
    return _lock_dir() / f"{key}.{kind}.lock"


@contextlib.contextmanager
def _flock(path: Path, mode: int, *, wait_s: float, what: Callable[[], str]) -> Iterator[None]:
    """Hold ``flock(mode)`` on ``path``, polling up to ``wait_s`` (interruptible: a signal stops the wait)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                if not _flock_if_supported(fd, mode | fcntl.LOCK_NB):
                    _warn_once(f"{path.parent}: this file system has no flock; working without the per-target lock")
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise UsageError(what()) from None
                time.sleep(0.05)
        if mode == fcntl.LOCK_EX:
            with contextlib.suppress(OSError):  # the holder's pid is only for messages (disk full: none)
                os.ftruncate(fd, 0)
                os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)  # closing releases the lock


@contextlib.contextmanager
def _optional_flock(target: Path, kind: str, mode: int, *, wait_s: float, what: Callable[[], str]) -> Iterator[None]:
    """:func:`_flock` on ``target``'s lock file, or no lock at all (with a warning) when the lock directory
    is unusable: a read-only or foreign ``TMPDIR`` must not stop a reader or a writer. Without it, the
    decision taken at the rename and the ``flock`` on staged paths still keep writers apart.
    """
    try:
        path = _lock_file(target, kind)
    except _NoLockDir as exc:
        _warn_once(f"{exc.strerror}; working without the per-target lock (set TMPDIR to a private directory)")
        yield
        return
    with _flock(path, mode, wait_s=wait_s, what=what):
        yield


def _holder(target: Path) -> str:
    try:
        pid = _lock_file(target, "write").read_text().strip()
    except OSError:
        pid = ""
    return f" (pid {pid})" if pid else ""


@contextlib.contextmanager
def target_lock(target: Path, *, wait_s: float = 0.0) -> Iterator[None]:
    """Exclusive writer lock on ``target`` for a whole run; a second writer fails at once (exit 2).

    Args:
        target: The artifact to write.
        wait_s: Wait (polling, interruptibly) up to this long for the lock instead: for a writer whose
            block is short and where the last writer wins (a shared timing cache).
    """
    with _optional_flock(
        target,
        "write",
        fcntl.LOCK_EX,
        wait_s=wait_s,
        what=lambda: (
            f"{target}: another seqdeploy process{_holder(target)} is writing it right now"
            + (f" (waited {wait_s:.0f} s)" if wait_s > 0 else "")
            + "; nothing was changed. Wait for it to finish, or choose another path"
        ),
    ):
        yield


@contextlib.contextmanager
def _swap_lock(target: Path) -> Iterator[None]:
    """The exclusive side of :func:`reading`; waits (interruptibly) for readers. Take it *before*
    :func:`shielded`, so a signal during the wait stops the run instead of being held.
    """
    with _optional_flock(
        target,
        "swap",
        fcntl.LOCK_EX,
        wait_s=_LOCK_WAIT_S,
        what=lambda: f"{target}: still being read by another process after {_LOCK_WAIT_S:.0f} s; nothing changed",
    ):
        yield


@contextlib.contextmanager
def reading(target: Path) -> Iterator[None]:
    """Shared lock held while a reader loads ``target`` (manifest, hashes, models into memory).

    A writer commits (swaps a directory, renames files, rewrites the manifest) only under the exclusive
    side of the same lock, so a reader sees the old artifact or the new one, never a mix. Readers hold it
    for seconds; an unusable lock directory (read-only temp) degrades to no lock rather than failing.
    """
    with _optional_flock(
        target,
        "swap",
        fcntl.LOCK_SH,
        wait_s=_LOCK_WAIT_S,
        what=lambda: f"{target}: being replaced by another process for over {_LOCK_WAIT_S:.0f} s; try again",
    ):
        yield


@contextlib.contextmanager
def _exclusive_inode(path: Path, what: str) -> Iterator[None]:
    """Hold ``flock(LOCK_EX)`` on the directory ``path`` itself, failing at once if another process holds it.

    Unlike the lock directory, an ``flock`` on the bundle's own inode is seen by every process on the
    machine (another user, another ``TMPDIR``, another container with the directory mounted), so two
    writers of one bundle can never both run, whatever their environments.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        yield  # vanished or unreadable: the caller's own operations report it
        return
    try:
        try:
            _flock_if_supported(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(what) from None
        yield
    finally:
        os.close(fd)


def _held_by_a_live_run(path: Path) -> bool:
    """Whether another open file description holds an ``flock`` on ``path`` (a live run's staging path).

    The kernel drops every lock of a process that died, however it died: a lock that is held means a live
    owner, in any PID namespace. The probe's own lock is released at once.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


# -- renames -----------------------------------------------------------------------------------------------

_RENAME_NOREPLACE = 1
_libc: Any = None


def _rename_noreplace(src: Path, dst: Path) -> None:
    """``rename(src, dst)`` that fails with ``FileExistsError`` if ``dst`` exists (Linux ``renameat2``).

    Without ``renameat2`` (other kernels, some file systems) falls back to ``os.rename``, which still
    refuses a non-empty directory; the caller has checked under the lock that ``dst`` did not exist.
    """
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(None, use_errno=True)
            _libc.renameat2  # noqa: B018 - probe: AttributeError where libc lacks it
        except (OSError, AttributeError):
            _libc = False
    if _libc:
        at_fdcwd = -100
        rc = _libc.renameat2(at_fdcwd, os.fsencode(src), at_fdcwd, os.fsencode(dst), _RENAME_NOREPLACE)
        if rc == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.ENOSYS, errno.EINVAL):
            raise OSError(err, os.strerror(err), str(dst))
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dst))
    os.rename(src, dst)


def _remove(path: Path) -> None:
    """Delete a file or a tree we made, never following a symlink out of it."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)


def _discard(path: Path) -> None:
    """Remove what this run staged for an artifact that will not be committed (and remember it)."""
    if os.path.lexists(path):
        _remove(path)
        _DISCARDED.append(path)


def _apply_umask(path: Path, *, directory: bool) -> None:
    """``mkdtemp``/``mkstemp`` create 0700/0600; artifacts get the permissions any other tool would give."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if directory else 0o666) & ~umask)


def _resolve_target(target: Path) -> Path:
    """The real path to write: ``.`` and symlinks are resolved, so a ``--force`` over a symlinked
    directory replaces what it points to and the link stays valid (nothing is left moved aside).
    """
    resolved = Path(os.path.realpath(target))
    cwd = Path(os.path.realpath(os.getcwd()))
    if resolved == cwd or resolved in cwd.parents:
        raise UsageError(
            f"{target}: is the current directory or contains it; seqdeploy never replaces the directory you "
            "are working in. Choose an output path outside it, e.g. -o ../out"
        )
    if resolved.parent == resolved:
        raise UsageError(f"{target}: cannot write an artifact at the root of the file system")
    return resolved


def _mkdirs(parent: Path, target: Path) -> None:
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{target}: cannot create its parent directory {parent}: {exc.strerror or exc}") from None
    if not parent.is_dir():
        raise UsageError(f"{target}: its parent {parent} is not a directory")


def _owner_alive(path: Path) -> bool:
    """Whether the run that made this staging/moved-aside path is still running (then it is not a leftover).

    First the ``flock`` every live run holds on its staging directory and staged files
    (:func:`_held_by_a_live_run`): it works across users, ``TMPDIR``s and PID namespaces (containers),
    where a pid means nothing. Then, for paths of runs that held no such lock, the pid in the name (or in
    a staging directory's marker), in this PID namespace.
    """
    if _held_by_a_live_run(path):
        return True
    pid = None
    if m := _OWNER_RE.search(path.name):
        pid = int(m.group(1))
    else:
        with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
            pid = int(json.loads((path / STAGING_MARKER).read_text("utf-8")).get("pid"))
    if pid is None or pid == os.getpid() or pid <= 0:
        return False  # ours (an earlier run in this process) or unknown: a dead run's
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        return True
    return True


def _mtime(path: Path) -> float:
    try:
        return os.lstat(path).st_mtime
    except OSError:
        return 0.0  # removed meanwhile (another cleaner): sorts last, and renaming it will fail


def _clean_leftovers(parent: Path, name: str) -> None:
    """Remove what a killed earlier run left for this target.

    A moved-aside old artifact whose target is missing is the only copy left (the run died between the
    two renames of a swap): it is restored, never deleted. Paths of a run that is still alive (a writer
    that does not share our lock directory) are left alone: the rename decides between us. Paths that
    vanish meanwhile (another process cleaning too) are simply gone.
    """
    try:
        entries = list(parent.iterdir())
    except OSError:
        return
    target = parent / name
    mine = [p for p in entries if is_staging_name(p.name, name) and not _owner_alive(p)]
    olds = sorted((p for p in mine if ".old-" in p.name), key=_mtime, reverse=True)
    if olds and not os.path.lexists(target):
        with contextlib.suppress(FileNotFoundError):
            _rename_noreplace(olds[0], target)
        mine.remove(olds[0])
    for p in mine:
        _remove(p)


def _clean_temps(parent: Path, name: str) -> None:
    """Remove the temp files (``.NAME.stage-PID-…``) killed runs left for the file ``parent/name``."""
    try:
        entries = list(parent.iterdir())
    except OSError:
        return
    for p in entries:
        if is_staging_name(p.name, name) and ".stage-" in p.name and not _owner_alive(p):
            _remove(p)


def _seqdeploy_artifact(target: Path, marker: str) -> bool:
    """Whether ``target/marker`` is the manifest of an artifact seqdeploy wrote, not merely a file of that
    name (a web app's ``manifest.json``): a JSON object of the export's or the package's shape.
    """
    path = target / marker
    if path.is_symlink() or not path.is_file():
        return False
    try:
        with open(path, "rb") as fh:
            data = json.loads(fh.read(64 << 20))  # a manifest is kilobytes; never read a huge file whole
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict):
        return False
    if marker == "seqdeploy.json":  # a package (seqdeploy.package.manifest.PACKAGE_FORMAT)
        return data.get("format") == "seqdeploy-package"
    return isinstance(data.get("schema_version"), int) and (
        isinstance(data.get("graphs"), dict) or isinstance(data.get("files"), dict)
    )


def _replace_refusal(target: Path, marker: str) -> str | None:
    """Why ``target`` must not be replaced with ``--force`` (``None``: it may be)."""
    if target.is_symlink() or not target.is_dir():
        return f"{target}: exists and is not a directory; choose another path"
    label = {"manifest.json": "export", "seqdeploy.json": "package"}.get(marker, "artifact of this kind")
    if _seqdeploy_artifact(target, marker):
        return None
    try:
        empty = not any(target.iterdir())
    except OSError as exc:
        return f"{target}: cannot be read ({exc.strerror or exc})"
    if empty:
        return None
    why = (
        f"its {marker} is not one seqdeploy wrote (not a {label} manifest, or unreadable)"
        if os.path.lexists(target / marker)
        else f"no {marker}"
    )
    return (
        f"{target}: exists and is not a seqdeploy {label} ({why}); --force only replaces an earlier "
        f"{label.split()[0]} or an empty directory, never other data"
    )


def _preflight(target: Path, *, force: bool, marker: str, existed: bool) -> None:
    if not os.path.lexists(target):
        return
    if not force:
        verb = "already exists" if existed else "appeared while this run was working (another process made it)"
        raise UsageError(
            f"{target}: {verb}; nothing was changed. Pass --force to replace it (the old one is kept until the "
            "new one has passed its checks)"
        )
    why = _replace_refusal(target, marker)
    if why:
        raise UsageError(why if existed else f"{why} (it appeared while this run was working; nothing was changed)")


def _make_staging_dir(parent: Path, dest: Path) -> tuple[Path, int]:
    """A new staging directory beside ``dest`` and an open descriptor holding ``flock`` on it for the run.

    The lock is what tells any cleaner (:func:`_owner_alive`) that the directory is alive. A cleaner could
    remove the directory in the instant between ``mkdtemp`` and the lock: then it is made again.
    """
    for _ in range(5):
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.{os.getpid()}-", suffix=".partial", dir=parent))
        except OSError as exc:
            raise UsageError(f"{dest}: cannot create a staging directory in {parent}: {exc.strerror}") from None
        fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            _flock_if_supported(fd, fcntl.LOCK_EX)
            if os.path.samestat(os.fstat(fd), os.lstat(tmp)):
                return tmp, fd
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    raise UsageError(
        f"{dest}: its staging directories in {parent} keep disappearing; is another program removing them?"
    )


@contextlib.contextmanager
def staged_dir(target: Path | str, *, force: bool = False, kind: str = "manifest.json") -> Iterator[Path]:
    """Build a directory artifact in a staging directory and rename it to ``target`` only on success.

    Args:
        target: Where the artifact goes (``-o``). Symlinks and ``.`` are resolved first.
        force: Replace an existing ``target`` that is an earlier artifact (its ``kind`` file is a manifest
            seqdeploy wrote) or is empty.
        kind: The artifact's own manifest file name, how an earlier artifact is recognised.

    Yields:
        An empty staging directory beside ``target`` (same file system, so the final rename is atomic).

    The per-target writer lock is held for the whole block: a second writer fails at once with exit 2.
    The existence/``--force`` decision is checked early (to fail fast) and again at the rename, under the
    lock; a directory that appeared meanwhile is never replaced without ``--force`` and never deleted.
    A signal that arrives before the first rename of the commit aborts it; one that arrives during the
    renames is held and delivered after them. On any exception, ``KeyboardInterrupt`` included, the
    staging directory is removed and the exception propagates; a replaced artifact is deleted only after
    its successor is in place.

    Raises:
        UsageError: ``target`` exists (without ``force``), is not replaceable, another writer holds it, or
            its parent cannot be created.
    """
    dest = _resolve_target(Path(target))
    parent = dest.parent
    _mkdirs(parent, dest)
    with target_lock(dest):
        # Leftovers first: an old artifact a killed --force had moved aside is restored, and the decision
        # (exists? --force?) is then taken on what the user really has.
        with shielded():
            _clean_leftovers(parent, dest.name)
        _preflight(dest, force=force, marker=kind, existed=True)
        tmp, fd = _make_staging_dir(parent, dest)
        try:
            _apply_umask(tmp, directory=True)
            _write_new(tmp / STAGING_MARKER, json.dumps({"pid": os.getpid()}))
            yield tmp
            fault_point("commit")
            _commit_dir(tmp, dest, force=force, marker=kind)
        except BaseException:
            with shielded():
                _discard(tmp)
            raise
        finally:
            os.close(fd)


def _commit_dir(tmp: Path, dest: Path, *, force: bool, marker: str) -> None:
    with contextlib.ExitStack() as locked:
        locked.enter_context(_swap_lock(dest))  # waits for readers: interruptible, outside the shield
        with shielded() as received:
            fault_point("commit:locked")
            _preflight(dest, force=force, marker=marker, existed=False)
            if not os.path.lexists(dest):
                _abort_if_signalled(received)
                (tmp / STAGING_MARKER).unlink()
                try:
                    _rename_noreplace(tmp, dest)
                except FileExistsError:
                    raise UsageError(
                        f"{dest}: appeared while this run was working (another process made it); nothing was "
                        "changed. Pass --force to replace it"
                    ) from None
                _COMMITTED.append(dest)
                return
            # A bundle being changed by a transaction (optimize, compile) in a process that does not share
            # our lock directory holds an flock on it: never swap it away under that writer.
            locked.enter_context(
                _exclusive_inode(
                    dest, f"{dest}: another seqdeploy process is writing into it right now; nothing was changed"
                )
            )
            _abort_if_signalled(received)
            (tmp / STAGING_MARKER).unlink()
            old = _unique(dest, "old")
            try:
                os.rename(dest, old)
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    raise
                # A mount point (a volume mounted at -o) cannot be renamed away: the user's choice of path,
                # not a seqdeploy bug. Nothing moved yet; the staging directory is discarded by the caller.
                inside = {"manifest.json": "export", "seqdeploy.json": "package"}.get(marker, "out")
                raise UsageError(
                    f"{dest}: is a mount point or in use and cannot be replaced; nothing was changed. Write "
                    f"inside it, e.g. -o {dest / inside}"
                ) from None
            try:
                fault_point("commit:swapping")  # the one moment the target is missing: only SIGKILL lands here
                _rename_noreplace(tmp, dest)
            except BaseException as exc:
                try:
                    os.rename(old, dest)
                except OSError as undo:
                    raise InternalError(
                        f"{dest}: replacing it failed ({exc}) and the earlier artifact could not be put back "
                        f"({undo.strerror or undo}); it is intact at {old}: rename it back to {dest}"
                    ) from exc
                raise
            _COMMITTED.append(dest)
            locked.close()  # readers may load the new artifact while the old one is deleted
            _remove(old)


@contextlib.contextmanager
def staged_file(target: Path | str, *, force: bool = False, record: bool = True) -> Iterator[Path]:
    """Write one file through a temp sibling, renamed onto ``target`` on success (removed on failure).

    The temp file exists (empty, held with ``flock``) when the block starts; write to its path. The
    per-target writer lock is held for the whole block (a second writer fails at once; with ``force``
    it waits its turn), temp files a killed run left for ``target`` are removed first, and the decision
    is taken at the rename:

    Args:
        target: The file to write.
        force: Replace whatever file is at ``target`` then (a cache: the last writer wins). A writer that
            holds the lock is waited for (interruptibly, up to the usual lock wait): the block of such a
            writer is short (write the bytes), and failing at once would throw away the run that
            produced them. Without it, only the file that was at ``target`` when the block started (the
            one the caller checked and decided to replace) is replaced; a file that appeared or was
            replaced meanwhile is kept and :class:`UsageError` is raised, nothing changed.
        record: Count the file among this run's artifacts (:func:`committed_paths`, which the CLI names as
            "written and proven" when a command ends early). ``False`` for a by-product that is not an
            artifact the command proves (a timing cache).
    """
    dest = Path(os.path.realpath(target))
    with target_lock(dest, wait_s=_LOCK_WAIT_S if force else 0.0):
        with shielded():
            _clean_temps(dest.parent, dest.name)
        seen = _inode(dest)
        tmp = _unique(dest, "stage")
        try:
            fd = _create_locked(tmp)
        except OSError as exc:
            raise with_path(exc, tmp) from None
        try:
            yield tmp
            fault_point("commit")
            with shielded() as received:
                now = _inode(dest)
                if not force and now is not None and now != seen:
                    raise UsageError(
                        f"{dest}: appeared (or was replaced) while this run was working; nothing was changed. "
                        "Run again to replace it"
                    )
                _abort_if_signalled(received)
                _apply_umask(tmp, directory=False)
                if now is None:
                    try:
                        _rename_noreplace(tmp, dest)
                    except FileExistsError:
                        if not force:
                            raise UsageError(
                                f"{dest}: appeared while this run was working; nothing was changed"
                            ) from None
                        os.replace(tmp, dest)
                else:
                    os.replace(tmp, dest)
                if record:
                    _COMMITTED.append(dest)
        except BaseException:
            with shielded():
                _discard(tmp)
            raise
        finally:
            os.close(fd)


def _inode(path: Path) -> tuple[int, int] | None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


# -- in-place transactions on an existing bundle --------------------------------------------------------------


def _rel_ok(rel: str) -> bool:
    parts = Path(rel).parts
    return bool(parts) and not Path(rel).is_absolute() and ".." not in parts and rel == Path(rel).as_posix()


@dataclass
class Transaction:
    """New files for an existing bundle, staged inside it and committed with the manifest.

    Use through :func:`bundle_transaction`. ``stage(relpath)`` returns a hidden temp path in the bundle
    (the caller creates a file or a directory there); :meth:`commit` renames every staged path onto its
    ``relpath``, records each file's sha256 and size in ``manifest["files"]`` and writes the manifest.
    """

    root: Path
    manifest_name: str
    staged: dict[str, Path] = field(default_factory=dict)
    committed: bool = False
    unrecorded: set[str] = field(default_factory=set)
    """Staged paths that only carry existing artifacts over (kept engines re-linked into a new ``engines/``):
    committed, but never named as "written and proven" by the exit messages."""

    def stage(self, relpath: str, *, record: bool = True) -> Path:
        """A temp path (not yet created) that becomes ``root/relpath`` on commit; ``record=False`` for one
        that holds nothing new (see :attr:`unrecorded`).
        """
        if not _rel_ok(relpath):
            raise UsageError(f"{relpath!r}: bundle paths must be relative, '/'-separated and stay inside the bundle")
        if "/" in relpath:  # a file inside a sub-directory: stage the whole sub-directory and write inside it
            raise UsageError(f"{relpath!r}: stage the directory '{relpath.split('/')[0]}' and write inside it")
        if relpath not in self.staged:
            self.staged[relpath] = _unique(self.root / relpath, "stage")
        if not record:
            self.unrecorded.add(relpath)
        return self.staged[relpath]

    def files(self) -> dict[str, Path]:
        """Every staged file (directories expanded) by its final relpath."""
        out: dict[str, Path] = {}
        for rel, tmp in self.staged.items():
            if tmp.is_dir():
                for p in sorted(tmp.rglob("*")):
                    if p.is_file():
                        out[f"{rel}/{p.relative_to(tmp).as_posix()}"] = p
            elif tmp.is_file():
                out[rel] = tmp
        return out

    def commit(self, manifest: dict[str, Any], *, drop: tuple[str, ...] = ()) -> None:
        """Rename the staged paths into place and write ``manifest`` (its ``files`` table updated).

        The new manifest is written first, under a unique pending name beside the old one (the only write
        that needs space: a full disk fails before anything moved); then, under the swap lock (readers
        finish loading first) and with signals held, only renames remain — the manifest's last — and any
        failure among them is rolled back, newest first. A signal that arrived before the first rename
        aborts the commit.

        Args:
            manifest: The new manifest; its ``files`` table is updated here, nothing else is changed.
            drop: Relpaths (files or directories) this commit removes from the bundle and the table.
        """
        from seqdeploy.manifest import DIGEST_FIELD, file_entry, manifest_digest  # lazily: manifest imports config

        files = manifest.setdefault("files", {})
        for rel in (*drop, *self.staged):
            for name in [n for n in files if n == rel or n.startswith(f"{rel}/")]:
                del files[name]
        for rel, tmp in self.files().items():
            files[rel] = file_entry(tmp)
        manifest[DIGEST_FIELD] = manifest_digest(manifest)
        fault_point("commit")
        pending = _unique(self.root / self.manifest_name, "stage")
        try:
            with contextlib.ExitStack() as locked:
                _write_pending(locked, pending, json.dumps(manifest, indent=2, allow_nan=False) + "\n")
                locked.enter_context(_swap_lock(self.root))  # interruptible wait for readers
                with shielded() as received:
                    fault_point("commit:locked")
                    _abort_if_signalled(received)
                    moved = self._swap(pending, drop)
                    self.committed = True
                    _COMMITTED.extend(self.root / rel for rel in self.staged if rel not in self.unrecorded)
                    locked.close()  # readers may load the new bundle while the old files are deleted
                    for _, aside in moved:
                        if ".old-" in aside.name:
                            _remove(aside)
        except BaseException:
            with shielded():
                _discard(pending)
            raise

    def _swap(self, pending: Path, drop: tuple[str, ...]) -> list[tuple[Path, Path]]:
        """The renames of :meth:`commit` (signals held), rolled back newest first if one fails."""
        moved: list[tuple[Path, Path]] = []
        try:
            for rel in (*drop, *self.staged):
                dest = self.root / rel
                if os.path.lexists(dest):
                    aside = _unique(dest, "old")
                    os.rename(dest, aside)
                    moved.append((dest, aside))
            for rel, tmp in self.staged.items():
                if tmp.is_dir():
                    _apply_umask(tmp, directory=True)
                os.rename(tmp, self.root / rel)
                moved.append((tmp, self.root / rel))
            fault_point("commit:swapping")  # files swapped, manifest not yet: only SIGKILL lands here
            os.replace(pending, self.root / self.manifest_name)
        except BaseException as exc:
            stuck = []
            for src, dst in reversed(moved):
                try:
                    os.rename(dst, src)
                except OSError as undo:
                    stuck.append(f"{dst} (belongs at {src}: {undo.strerror or undo})")
            if stuck:
                raise InternalError(
                    f"{self.root}: the commit failed ({exc}) and could not be rolled back; the manifest is the old "
                    f"one, but these files are not where it expects them: {'; '.join(stuck)}. Rename them back"
                ) from exc
            raise
        return moved


def _write_pending(stack: contextlib.ExitStack, path: Path, text: str) -> None:
    """Write the pending manifest of a commit, holding ``flock`` on it (a live run's file) until ``stack`` ends."""
    try:
        fd = _create_locked(path)
        stack.callback(os.close, fd)
        with os.fdopen(os.dup(fd), "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        raise with_path(exc, path) from None


def _recover_transaction(root: Path, manifest_name: str) -> None:
    """Undo what a transaction killed mid-commit (SIGKILL, power loss) left in ``root``.

    A moved-aside file (``.REL.old-PID-…``) of a dead run is put back when ``REL`` is missing, or when the
    manifest (still the old one: it is replaced last) lists ``REL`` with the moved-aside file's sha256; a
    moved-aside directory when it holds exactly the files the manifest lists under ``REL/``; otherwise it is
    stale and removed, like staged files and a pending manifest.
    """
    from seqdeploy.manifest import sha256

    try:
        listed = json.loads((root / manifest_name).read_text("utf-8")).get("files") or {}
    except (OSError, ValueError, AttributeError):
        listed = {}
    for p in sorted(root.iterdir()):
        if not (p.name.startswith(".") and is_staging_name(p.name)) or _owner_alive(p):
            continue
        if ".old-" in p.name:
            rel = p.name[1:].rsplit(".old-", 1)[0]
            dest = root / rel
            entry = listed.get(rel) if isinstance(listed, dict) else None
            if not os.path.lexists(dest):
                os.rename(p, dest)
                continue
            if p.is_file() and dest.is_file() and isinstance(entry, dict) and entry.get("sha256") == sha256(p):
                os.replace(p, dest)
                continue
            if _is_listed_dir(p, rel, listed) and dest.is_dir() and not dest.is_symlink():
                # A directory swap (engines/, trt/) killed before the manifest moved: the old directory is
                # exactly what the manifest lists, the new one is the dead run's. Put the old one back.
                _remove(dest)
                os.rename(p, dest)
                continue
        _remove(p)


def _is_listed_dir(p: Path, rel: str, listed: Any) -> bool:
    """Whether the directory ``p`` holds exactly the files ``listed`` (a manifest's ``files``) has under ``rel/``,
    each with its recorded sha256.
    """
    from seqdeploy.manifest import sha256

    if not (isinstance(listed, dict) and p.is_dir() and not p.is_symlink()):
        return False
    want = {k[len(rel) + 1 :]: v for k, v in listed.items() if k.startswith(f"{rel}/")}
    have = {f.relative_to(p).as_posix(): f for f in p.rglob("*") if f.is_file() or f.is_symlink()}
    if not want or set(want) != set(have):
        return False
    return all(
        isinstance(v, dict) and not have[k].is_symlink() and v.get("sha256") == sha256(have[k])
        for k, v in want.items()
    )


@contextlib.contextmanager
def bundle_transaction(bundle_dir: Path | str, *, manifest_name: str = "manifest.json") -> Iterator[Transaction]:
    """Lock an existing bundle for writing and stage new files in it; see :class:`Transaction`.

    Leaving the block without :meth:`Transaction.commit` (an exception, Ctrl-C, SIGTERM) deletes everything
    staged; the manifest and the existing files are untouched. A second writer fails at once (exit 2) —
    also one that does not share the lock directory: the bundle directory itself is held with ``flock``.
    """
    root = Path(os.path.realpath(bundle_dir))
    if not root.is_dir():
        raise UsageError(f"{bundle_dir}: no such export directory; create one with 'seqdeploy export CONFIG -o DIR'")
    busy = f"{root}: another seqdeploy process is writing it right now; nothing was changed. Wait for it to finish"
    with target_lock(root), _exclusive_inode(root, busy):
        with shielded():
            _recover_transaction(root, manifest_name)  # what a killed earlier run left; we hold the writer lock
        tx = Transaction(root, manifest_name)
        try:
            yield tx
        finally:
            if not tx.committed:
                with shielded():
                    for tmp in tx.staged.values():
                        _discard(tmp)
