"""How seqdeploy never leaves a half-written artifact: staging, per-target locks, signals, fault points.

Every command that writes an artifact (``export``, ``optimize``, ``compile``, ``package``) builds it in a
*staging* location, proves it, and only then makes it visible with one ``rename``. The decision to
replace or refuse an existing target is taken at that rename, under a per-target lock, so two writers
racing for one ``-o`` cannot both win and a directory that appeared meanwhile is never deleted.

* :func:`staged_dir` — a new directory artifact (an export bundle, a package).
* :func:`bundle_transaction` — new files inside an existing bundle (variants, the TensorRT kit) plus the
  manifest that records them, committed together.
* :func:`reading` — readers hold a shared lock while they load a bundle, so a concurrent ``--force``
  swap or a transaction's commit is never seen half-done.
* :func:`handle_signals` — SIGTERM is treated exactly like Ctrl-C (a ``KeyboardInterrupt``), and the
  commit itself is shielded: a signal that arrives during it is delivered right after.
* :func:`fault_point` — named pauses for the fault-injection tests (``SEQDEPLOY_FAULT_AT``).

Locks live in a per-user directory under the system temp dir, keyed by the target's real path, so
nothing is ever left beside the user's artifacts (a failed run leaves *nothing* behind) and read-only
parents still work. Stdlib only: the torch-free runtime may use it.
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
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqdeploy.errors import UsageError

__all__ = [
    "STAGING_MARKER",
    "Transaction",
    "bundle_transaction",
    "committed_paths",
    "fault_point",
    "handle_signals",
    "is_staging_name",
    "reading",
    "shielded",
    "signals_received",
    "staged_dir",
    "staged_file",
    "target_lock",
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

# Targets this run committed: a signal that lands after the commit point must not be reported as
# "nothing was written" (the CLI reads this to choose between exit 130 and "completed").
_COMMITTED: list[Path] = []
# Signals this run received. A signal can surface as some other error: a KeyboardInterrupt raised inside a
# C extension's import comes out as "ImportError: initialization failed", one inside an ORT call as an ORT
# error. The CLI reads this so that such a run still ends as "interrupted" (130), not as that error.
_SIGNALLED: list[int] = []


def committed_paths() -> tuple[Path, ...]:
    """Artifacts this run has committed (renamed into place) so far."""
    return tuple(_COMMITTED)


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

    Yields the list of signals received so far, so a commit can look at it right before its point of no
    return and abort instead. Used around commits and cleanups, which must never stop halfway.
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


# -- fault points (tests) ----------------------------------------------------------------------------------


def fault_point(name: str) -> None:
    """A named point where the fault-injection tests act (no-op unless ``SEQDEPLOY_FAULT_AT`` names it).

    ``SEQDEPLOY_FAULT_AT=NAME[,NAME...]`` selects points; ``SEQDEPLOY_FAULT_ACTION`` says what happens:
    ``pause`` (default: write the point's name to ``SEQDEPLOY_FAULT_READY`` if set, then sleep up to
    ``SEQDEPLOY_FAULT_PAUSE_S`` seconds, default 30, so the test can send a signal at exactly this
    point; the test resumes the run early by deleting the ready file), ``enospc`` (raise
    ``OSError(ENOSPC)``) or ``interrupt`` (raise ``KeyboardInterrupt``).

    Points: ``export:model-built``, ``export:onnx-written``, ``export:self-check``, ``commit`` (every
    :func:`staged_dir` and transaction, before its point of no return), ``commit:swapping`` (a ``--force``
    swap, between its two renames: signals are held there), ``export:committed``,
    ``optimize:int8-written``, ``optimize:committed``, ``bundle:loaded`` (a reader loaded and checked a
    bundle, before its runners), ``bundle:checked`` (under the read lock, the bundle found unchanged, its
    runners about to load) and ``bundle:runners-loaded`` (its work starts).
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


# -- locks -------------------------------------------------------------------------------------------------


def _tmp_root() -> str:
    try:
        return tempfile.gettempdir()
    except OSError:
        # gettempdir() probes each candidate by writing a file: on a full disk or under a file-size limit
        # it finds none ("No usable temporary directory"). Lock files hold no data, so any existing one
        # will do; the real write error is then reported where the artifact is written.
        return os.environ.get("TMPDIR") or "/tmp"


def _lock_dir() -> Path:
    uid = os.getuid() if hasattr(os, "getuid") else 0
    d = Path(_tmp_root()) / f"seqdeploy-locks-{uid}"
    d.mkdir(mode=0o700, exist_ok=True)
    return d


def _lock_file(target: Path, kind: str) -> Path:
    key = hashlib.sha256(os.fsencode(os.path.realpath(target))).hexdigest()[:40]
    return _lock_dir() / f"{key}.{kind}.lock"


@contextlib.contextmanager
def _flock(path: Path, mode: int, *, wait_s: float, what: Callable[[], str]) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
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


def _holder(path: Path) -> str:
    try:
        pid = path.read_text().strip()
    except OSError:
        pid = ""
    return f" (pid {pid})" if pid else ""


@contextlib.contextmanager
def target_lock(target: Path) -> Iterator[None]:
    """Exclusive writer lock on ``target`` for a whole run; a second writer fails at once (exit 2)."""
    path = _lock_file(target, "write")
    with _flock(
        path,
        fcntl.LOCK_EX,
        wait_s=0.0,
        what=lambda: (
            f"{target}: another seqdeploy process{_holder(path)} is writing it right now; nothing was "
            "changed. Wait for it to finish, or choose another path"
        ),
    ):
        yield


@contextlib.contextmanager
def _swap_lock(target: Path) -> Iterator[None]:
    path = _lock_file(target, "swap")
    with _flock(
        path,
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
    for seconds; a missing lock directory (read-only temp) degrades to no lock rather than failing.
    """
    try:
        path = _lock_file(target, "swap")
    except OSError:
        yield
        return
    with _flock(
        path,
        fcntl.LOCK_SH,
        wait_s=_LOCK_WAIT_S,
        what=lambda: f"{target}: being replaced by another process for over {_LOCK_WAIT_S:.0f} s; try again",
    ):
        yield


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


def _write_text(path: Path, text: str) -> None:
    """``path.write_text`` whose errors name ``path`` (a failed write or close names no file)."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        if exc.filename is None and exc.errno is not None:
            raise OSError(exc.errno, exc.strerror or os.strerror(exc.errno), str(path)) from None
        raise


def _remove(path: Path) -> None:
    """Delete a file or a tree we made, never following a symlink out of it."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)


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

    The pid comes from the name (or, for a staging directory, its marker). The per-target lock already
    keeps two writers apart, but only when they share a lock directory: two users, two ``TMPDIR``s or a
    container writing to the same directory do not, and must never delete each other's live work.
    """
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


def _clean_leftovers(parent: Path, name: str) -> None:
    """Remove what a killed earlier run left for this target (we hold its lock).

    A moved-aside old artifact whose target is missing is the only copy left (the run died between the
    two renames of a swap): it is restored, never deleted. Paths of a run that is still alive (a writer
    that does not share our lock directory) are left alone: the rename decides between us.
    """
    try:
        entries = list(parent.iterdir())
    except OSError:
        return
    target = parent / name
    mine = [p for p in entries if is_staging_name(p.name, name) and not _owner_alive(p)]
    olds = sorted((p for p in mine if ".old-" in p.name), key=lambda p: p.stat().st_mtime, reverse=True)
    if olds and not os.path.lexists(target):
        os.rename(olds[0], target)
        mine.remove(olds[0])
    for p in mine:
        _remove(p)


Replaceable = Callable[[Path], str | None]


def _replace_refusal(target: Path, marker: str) -> str | None:
    """Why ``target`` must not be replaced with ``--force`` (``None``: it may be)."""
    if target.is_symlink() or not target.is_dir():
        return f"{target}: exists and is not a directory; choose another path"
    if (target / marker).is_file():
        return None
    try:
        empty = not any(target.iterdir())
    except OSError as exc:
        return f"{target}: cannot be read ({exc.strerror or exc})"
    if empty:
        return None
    label = {"manifest.json": "export", "seqdeploy.json": "package"}.get(marker, "artifact of this kind")
    return (
        f"{target}: exists and is not a seqdeploy {label} (no {marker}); --force only replaces an earlier "
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


@contextlib.contextmanager
def staged_dir(target: Path | str, *, force: bool = False, kind: str = "manifest.json") -> Iterator[Path]:
    """Build a directory artifact in a staging directory and rename it to ``target`` only on success.

    Args:
        target: Where the artifact goes (``-o``). Symlinks and ``.`` are resolved first.
        force: Replace an existing ``target`` that is an earlier artifact (has ``kind``) or is empty.
        kind: The artifact's own manifest file name, how an earlier artifact is recognised.

    Yields:
        An empty staging directory beside ``target`` (same file system, so the final rename is atomic).

    The per-target writer lock is held for the whole block: a second writer fails at once with exit 2.
    The existence/``--force`` decision is checked early (to fail fast) and again at the rename, under the
    lock; a directory that appeared meanwhile is never replaced without ``--force`` and never deleted.
    On any exception, ``KeyboardInterrupt`` included, the staging directory is removed and the exception
    propagates; a replaced artifact is deleted only after its successor is in place.

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
        _clean_leftovers(parent, dest.name)
        _preflight(dest, force=force, marker=kind, existed=True)
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.{os.getpid()}-", suffix=".partial", dir=parent))
        except OSError as exc:
            raise UsageError(f"{dest}: cannot create a staging directory in {parent}: {exc.strerror}") from None
        try:
            _apply_umask(tmp, directory=True)
            _write_text(tmp / STAGING_MARKER, json.dumps({"pid": os.getpid(), "target": str(dest)}))
            yield tmp
            fault_point("commit")
            with shielded() as received:
                if received:
                    raise KeyboardInterrupt("interrupted before the commit")
                (tmp / STAGING_MARKER).unlink()
                _commit_dir(tmp, dest, force=force, marker=kind)
                _COMMITTED.append(dest)
        except BaseException:
            with shielded():
                _remove(tmp)
            raise


def _commit_dir(tmp: Path, dest: Path, *, force: bool, marker: str) -> None:
    with _swap_lock(dest):
        _preflight(dest, force=force, marker=marker, existed=False)
        if not os.path.lexists(dest):
            try:
                _rename_noreplace(tmp, dest)
            except FileExistsError:
                raise UsageError(
                    f"{dest}: appeared while this run was working (another process made it); nothing was "
                    "changed. Pass --force to replace it"
                ) from None
            return
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}-{os.urandom(4).hex()}")
        os.rename(dest, old)
        try:
            fault_point("commit:swapping")  # the one moment the target is missing: only SIGKILL lands here
            _rename_noreplace(tmp, dest)
        except BaseException:
            os.rename(old, dest)
            raise
    _remove(old)


@contextlib.contextmanager
def staged_file(target: Path | str) -> Iterator[Path]:
    """Write one file through a temp sibling, renamed over ``target`` on success (removed on failure)."""
    dest = Path(target)
    tmp = dest.with_name(f".{dest.name}.stage-{os.getpid()}-{os.urandom(4).hex()}")
    try:
        yield tmp
        with shielded():
            if tmp.exists():
                _apply_umask(tmp, directory=False)
            os.replace(tmp, dest)
    except BaseException:
        with shielded():
            _remove(tmp)
        raise


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

    def stage(self, relpath: str) -> Path:
        """A temp path (not yet created) that becomes ``root/relpath`` on commit."""
        if not _rel_ok(relpath):
            raise UsageError(f"{relpath!r}: bundle paths must be relative, '/'-separated and stay inside the bundle")
        if "/" in relpath:  # a file inside a sub-directory: stage the whole sub-directory and write inside it
            raise UsageError(f"{relpath!r}: stage the directory '{relpath.split('/')[0]}' and write inside it")
        if relpath not in self.staged:
            self.staged[relpath] = self.root / f".{relpath}.stage-{os.getpid()}-{os.urandom(4).hex()}"
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

    def commit(self, manifest: dict[str, Any], *, drop: tuple[str, ...] = (), stamp: bool = True) -> None:
        """Rename the staged paths into place and write ``manifest`` (its ``files`` table updated).

        Args:
            manifest: The new manifest; its ``files`` table is updated here, nothing else is changed.
            drop: Relpaths (files or directories) this commit removes from the bundle and the table.
            stamp: Stamp the manifest's digest. ``False`` for a bundle whose manifest was already edited by
                hand (accepted with ``--allow-modified``): its stale digest is kept, so the edit stays
                visible to every later reader instead of being signed off by this commit.
        """
        from seqdeploy.manifest import file_entry, write_json, write_manifest  # lazily: manifest imports config

        files = manifest.setdefault("files", {})
        for rel in (*drop, *self.staged):
            for name in [n for n in files if n == rel or n.startswith(f"{rel}/")]:
                del files[name]
        for rel, tmp in self.files().items():
            files[rel] = file_entry(tmp)
        fault_point("commit")
        with shielded() as received:
            if received:
                raise KeyboardInterrupt("interrupted before the commit")
            with _swap_lock(self.root):
                # The new manifest is written first, beside the old one: it is the only write that needs
                # space, so a full disk fails here, before anything moved. Then only renames remain, the
                # manifest's last; any failure among them is rolled back, newest first.
                pending = self.root / f".{self.manifest_name}.stage-{os.getpid()}-{os.urandom(4).hex()}"
                moved: list[tuple[Path, Path]] = []
                try:
                    (write_manifest if stamp else write_json)(pending, manifest)
                    for rel in (*drop, *self.staged):
                        dest = self.root / rel
                        if os.path.lexists(dest):
                            aside = self.root / f".{rel}.old-{os.getpid()}-{os.urandom(4).hex()}"
                            os.rename(dest, aside)
                            moved.append((dest, aside))
                    for rel, tmp in self.staged.items():
                        if tmp.is_dir():
                            _apply_umask(tmp, directory=True)
                        os.rename(tmp, self.root / rel)
                        moved.append((tmp, self.root / rel))
                    fault_point("commit:swapping")  # files swapped, manifest not yet: only SIGKILL lands here
                    os.replace(pending, self.root / self.manifest_name)
                except BaseException:
                    for src, dst in reversed(moved):
                        with contextlib.suppress(OSError):
                            os.rename(dst, src)
                    _remove(pending)
                    raise
                self.committed = True
                _COMMITTED.extend(self.root / rel for rel in self.staged)
            for _, aside in moved:
                if ".old-" in aside.name:
                    _remove(aside)


def _recover_transaction(root: Path, manifest_name: str) -> None:
    """Undo what a transaction killed mid-commit (SIGKILL, power loss) left in ``root``.

    A moved-aside file (``.REL.old-PID-…``) of a dead run is put back when ``REL`` is missing, or when the
    manifest (still the old one: it is replaced last) lists ``REL`` with the moved-aside file's sha256;
    otherwise it is stale and removed, like staged files and a pending manifest.
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
        _remove(p)


@contextlib.contextmanager
def bundle_transaction(bundle_dir: Path | str, *, manifest_name: str = "manifest.json") -> Iterator[Transaction]:
    """Lock an existing bundle for writing and stage new files in it; see :class:`Transaction`.

    Leaving the block without :meth:`Transaction.commit` (an exception, Ctrl-C, SIGTERM) deletes everything
    staged; the manifest and the existing files are untouched. A second writer fails at once (exit 2).
    """
    root = Path(os.path.realpath(bundle_dir))
    if not root.is_dir():
        raise UsageError(f"{bundle_dir}: no such export directory; create one with 'seqdeploy export CONFIG -o DIR'")
    with target_lock(root):
        with shielded():
            _recover_transaction(root, manifest_name)  # what a killed earlier run left; we hold the writer lock
        tx = Transaction(root, manifest_name)
        try:
            yield tx
        finally:
            if not tx.committed:
                with shielded():
                    for tmp in tx.staged.values():
                        _remove(tmp)


def file_mode_ok(path: Path) -> bool:
    """Whether ``path`` is a regular file (not a symlink, FIFO or device) — what bundles may contain."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False
