"""Package archives: writing a deterministic ``.tar.gz`` and extracting one safely.

Extraction refuses, before writing anything, every entry that is not a plain file or directory inside one
top-level directory: links (symbolic and hard), devices, FIFOs, absolute paths and ``..`` components,
and an archive whose members declare more bytes than :data:`MAX_EXTRACT_BYTES` or the free space of the
target (a small ``.tar.gz`` can declare a multi-GB member of zeros: it would fill the disk before any
sha256 is checked). It then extracts with tarfile's ``data`` filter as a second line of defence (links,
absolute paths and ``..`` refused again, permissions sanitised). So a malicious archive writes nothing
outside the target, and in fact nothing at all.

tarfile's ``data`` filter exists from Python 3.11.4 (``requires-python``); an older 3.11 is refused with a
clear message rather than a ``TypeError``.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

from seqdeploy.errors import IntegrityError, UsageError

__all__ = ["MAX_EXTRACT_BYTES", "MAX_MEMBERS", "extract", "is_archive", "package_dir", "write_tar"]

_SUFFIXES = (".tar.gz", ".tgz")
MAX_EXTRACT_BYTES = 32 << 30
"""Largest total of member sizes an archive may declare (also capped by the target's free space)."""
MAX_MEMBERS = 100_000
"""Most entries an archive may have (a package has a few dozen)."""


def is_archive(path: Path) -> bool:
    """Whether ``path`` names a package archive (by its suffix)."""
    return path.name.endswith(_SUFFIXES)


def _member_problem(m: tarfile.TarInfo) -> str | None:
    name = m.name
    if "\x00" in name or "\\" in name:
        return "has a NUL or backslash in its name"
    p = PurePosixPath(name)
    if p.is_absolute() or name.startswith("/"):
        return "is an absolute path"
    if ".." in p.parts:
        return "has a '..' component (it would escape the target directory)"
    if m.issym() or m.islnk():
        return f"is a {'symbolic' if m.issym() else 'hard'} link to {m.linkname!r}; packages contain no links"
    if not (m.isfile() or m.isdir()):
        return "is not a regular file or directory (a device, FIFO or other special entry)"
    return None


def _root(members: Iterable[tarfile.TarInfo], archive: Path) -> str:
    tops = {PurePosixPath(m.name).parts[0] for m in members if PurePosixPath(m.name).parts}
    if len(tops) != 1:
        raise IntegrityError(
            f"{archive}: a package archive holds exactly one top-level directory, found {sorted(tops)[:5]}"
        )
    return tops.pop()


def _members(tf: tarfile.TarFile, archive: Path, budget: int) -> list[tarfile.TarInfo]:
    """Every member, checked one by one as the stream is read: the size total is refused as soon as it passes
    ``budget``, before the rest of a gzip bomb is decompressed.
    """
    members: list[tarfile.TarInfo] = []
    total = 0
    while True:
        try:
            m = tf.next()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise UsageError(f"{archive}: damaged package archive ({exc})") from None
        if m is None:
            return members
        why = _member_problem(m)
        if why is not None:
            raise IntegrityError(f"{archive}: refused entry '{m.name}': it {why}. Nothing was extracted")
        members.append(m)
        total += max(0, m.size)
        if total > budget or len(members) > MAX_MEMBERS:
            raise IntegrityError(
                f"{archive}: its entries declare more than {budget:,} bytes (or more than {MAX_MEMBERS:,} "
                "entries), more than a package archive may hold here or than the target's free space; refused "
                "before extracting anything"
            )


def extract(archive: str | Path, dest: str | Path, *, max_bytes: int = MAX_EXTRACT_BYTES) -> Path:
    """Extract a package archive into ``dest`` (created; must be empty) and return the package directory.

    Args:
        archive: The ``.tar.gz``.
        dest: The target directory (created; must be empty).
        max_bytes: Largest total of declared member sizes (also capped by ``dest``'s free space).

    Raises:
        UsageError: ``archive`` is not a readable ``.tar.gz``, ``dest`` is not empty, or this Python has no
            tarfile ``data`` filter (before 3.11.4).
        IntegrityError: An entry is a link, a special file, an absolute path or escapes with ``..``, or the
            entries declare more bytes than allowed; the message names the entry. Nothing is extracted then.
    """
    archive, dest = Path(archive), Path(dest)
    if not hasattr(tarfile, "data_filter"):
        raise UsageError(
            "extracting a package archive safely needs tarfile's 'data' filter (Python >= 3.11.4); upgrade Python, "
            f"or extract {archive} yourself and pass the directory"
        )
    try:
        tf = tarfile.open(archive, "r:gz")  # noqa: SIM115 - closed below, after the checks
    except FileNotFoundError:
        raise UsageError(f"{archive}: package archive not found") from None
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise UsageError(f"{archive}: not a readable .tar.gz package archive ({exc})") from None
    with tf:
        dest.mkdir(parents=True, exist_ok=True)
        if any(dest.iterdir()):
            raise UsageError(f"{dest}: extraction target is not empty")
        budget = min(max_bytes, shutil.disk_usage(dest).free)
        members = _members(tf, archive, budget)
        root = _root(members, archive)
        try:
            tf.extractall(dest, members=members, filter="data")
        except tarfile.FilterError as exc:  # the second line of defence; the checks above should win first
            raise IntegrityError(f"{archive}: refused by tarfile's data filter: {exc}") from None
        except (tarfile.TarError, EOFError) as exc:
            raise UsageError(f"{archive}: damaged package archive ({exc})") from None
    return dest / root


@contextlib.contextmanager
def package_dir(path: Path, *, prefix: str = "seqdeploy-package-") -> Iterator[Path]:
    """The package directory of ``path`` for as long as the block runs.

    A directory is used as it is, under its shared read lock (a ``package --force`` of it waits until the
    block is done, so the block never sees two packages). An archive is extracted to a private temporary
    directory, removed when the block ends.

    Raises:
        UsageError: ``path`` does not exist, or is neither a directory nor a ``.tar.gz``.
        IntegrityError: See :func:`extract`.
    """
    from seqdeploy._atomic import reading

    if path.is_dir():
        with reading(path):
            yield path
        return
    if not path.exists():
        raise UsageError(f"{path}: no such package (expected a directory made by 'seqdeploy package' or its .tar.gz)")
    if not is_archive(path):
        raise UsageError(f"{path}: not a package (expected a package directory or a .tar.gz archive of one)")
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield extract(path, tmp / "x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_tar(src: Path, dst: Path, *, root: str, skip: frozenset[str] = frozenset()) -> None:
    """Write ``src``'s tree to ``dst`` as a deterministic ``.tar.gz`` with every entry under ``root/``.

    ``skip`` names top-level entries of ``src`` to leave out (the writer's staging marker).

    Deterministic: entries sorted, mtime 0, uid/gid 0 without owner names, modes 0644/0755, and a gzip
    header without file name or time, so the same package always gives the same bytes (and sha256).
    """
    entries: list[tuple[str, Path]] = [(root, src)]
    for dirpath, dirnames, filenames in os.walk(src, followlinks=False):
        dirnames.sort()
        base = Path(dirpath)
        for name in [*dirnames, *filenames]:
            p = base / name
            rel = p.relative_to(src).as_posix()
            if rel not in skip:
                entries.append((f"{root}/{rel}", p))
    entries.sort(key=lambda e: e[0])
    with (
        dst.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tf,
    ):
        for arcname, p in entries:
            info = tarfile.TarInfo(arcname)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if p.is_symlink():
                raise IntegrityError(f"{p}: packages contain no links")
            if p.is_dir():
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tf.addfile(info)
            else:
                info.size = p.stat().st_size
                info.mode = 0o644
                with p.open("rb") as fh:
                    tf.addfile(info, fh)
