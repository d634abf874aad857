"""Package archives: writing a deterministic ``.tar.gz`` and extracting one safely.

Extraction refuses, before writing anything, every entry that is not a plain file or directory inside one
top-level directory: links (symbolic and hard), devices, FIFOs, absolute paths and ``..`` components. It
then extracts with tarfile's ``data`` filter as a second line of defence (links, absolute paths and
``..`` refused again, permissions sanitised). So a malicious archive writes nothing outside the target,
and in fact nothing at all.
"""

from __future__ import annotations

import gzip
import os
import tarfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from seqdeploy.errors import IntegrityError, UsageError

__all__ = ["extract", "is_archive", "write_tar"]

_SUFFIXES = (".tar.gz", ".tgz")


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


def extract(archive: str | Path, dest: str | Path) -> Path:
    """Extract a package archive into ``dest`` (created; must be empty) and return the package directory.

    Raises:
        UsageError: ``archive`` is not a readable ``.tar.gz`` or ``dest`` is not empty.
        IntegrityError: An entry is a link, a special file, an absolute path or escapes with ``..``; the
            message names the entry. Nothing is extracted then.
    """
    archive, dest = Path(archive), Path(dest)
    try:
        tf = tarfile.open(archive, "r:gz")  # noqa: SIM115 - closed below, after the checks
    except FileNotFoundError:
        raise UsageError(f"{archive}: package archive not found") from None
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise UsageError(f"{archive}: not a readable .tar.gz package archive ({exc})") from None
    with tf:
        try:
            members = tf.getmembers()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise UsageError(f"{archive}: damaged package archive ({exc})") from None
        for m in members:
            why = _member_problem(m)
            if why is not None:
                raise IntegrityError(f"{archive}: refused entry '{m.name}': it {why}. Nothing was extracted")
        root = _root(members, archive)
        dest.mkdir(parents=True, exist_ok=True)
        if any(dest.iterdir()):
            raise UsageError(f"{dest}: extraction target is not empty")
        try:
            tf.extractall(dest, members=members, filter="data")
        except tarfile.FilterError as exc:  # the second line of defence; the checks above should win first
            raise IntegrityError(f"{archive}: refused by tarfile's data filter: {exc}") from None
        except (tarfile.TarError, EOFError) as exc:
            raise UsageError(f"{archive}: damaged package archive ({exc})") from None
    return dest / root


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
