"""Package archives: refused entries write nothing anywhere; archives are byte-for-byte deterministic."""

from __future__ import annotations

import io
import os
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from seqdeploy.errors import IntegrityError, UsageError
from seqdeploy.runtime import extract
from seqdeploy.runtime._archive import write_tar


def _tar(path: Path, add: Callable[[tarfile.TarFile], None]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        add(tf)
    return path


def _file(tf: tarfile.TarFile, name: str, data: bytes = b"x") -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def _special(kind: bytes, name: str, link: str = "") -> Callable[[tarfile.TarFile], None]:
    def add(tf: tarfile.TarFile) -> None:
        _file(tf, "pkg/seqdeploy.json", b"{}")
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = link
        tf.addfile(info)

    return add


@pytest.mark.parametrize(
    ("add", "why"),
    [
        (lambda tf: (_file(tf, "pkg/seqdeploy.json"), _file(tf, "pkg/../../evil.txt")), "'..' component"),
        (lambda tf: (_file(tf, "pkg/seqdeploy.json"), _file(tf, "/tmp/evil-abs.txt")), "absolute path"),
        (_special(tarfile.SYMTYPE, "pkg/README.md", "/etc/passwd"), "symbolic link"),
        (_special(tarfile.SYMTYPE, "pkg/m", "../../"), "symbolic link"),
        (_special(tarfile.LNKTYPE, "pkg/hard", "pkg/seqdeploy.json"), "hard link"),
        (_special(tarfile.FIFOTYPE, "pkg/fifo"), "not a regular file"),
        (_special(tarfile.CHRTYPE, "pkg/dev"), "not a regular file"),
        (lambda tf: (_file(tf, "a/seqdeploy.json"), _file(tf, "b/seqdeploy.json")), "exactly one top-level directory"),
    ],
    ids=["dotdot", "absolute", "symlink-out", "symlink-dir", "hardlink", "fifo", "device", "two-roots"],
)
def test_malicious_archives_are_refused_and_nothing_is_written(
    tmp_path: Path, add: Callable[[tarfile.TarFile], None], why: str
) -> None:
    archive = _tar(tmp_path / "bad.tar.gz", add)
    work = tmp_path / "work"
    work.mkdir()
    dest = work / "sub" / "x"
    with pytest.raises(IntegrityError, match=why):
        extract(archive, dest)
    assert not dest.exists() or not any(dest.iterdir())
    assert not (tmp_path / "evil.txt").exists() and not (work / "evil.txt").exists()
    assert not Path("/tmp/evil-abs.txt").exists()


def test_not_an_archive(tmp_path: Path) -> None:
    (tmp_path / "x.tar.gz").write_text("plain text")
    with pytest.raises(UsageError, match=r"not a readable \.tar\.gz"):
        extract(tmp_path / "x.tar.gz", tmp_path / "d")
    with pytest.raises(UsageError, match="not found"):
        extract(tmp_path / "missing.tar.gz", tmp_path / "d")


def _tree(root: Path) -> None:
    (root / "m" / "1").mkdir(parents=True)
    (root / "m" / "1" / "model.onnx").write_bytes(os.urandom(1000))
    (root / "seqdeploy.json").write_text("{}")
    (root / ".seqdeploy-staging").write_text("marker")


def test_write_tar_is_deterministic_and_round_trips(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _tree(src)
    a, b = tmp_path / "a.tar.gz", tmp_path / "b.tar.gz"
    write_tar(src, a, root="pkg", skip=frozenset({".seqdeploy-staging"}))
    later = time.time() + 1000
    for p in src.rglob("*"):
        os.utime(p, (later, later))  # mtimes must not leak into the archive
    os.chmod(src / "seqdeploy.json", 0o600)  # nor permissions
    write_tar(src, b, root="pkg", skip=frozenset({".seqdeploy-staging"}))
    assert a.read_bytes() == b.read_bytes()
    with tarfile.open(a) as tf:
        members = tf.getmembers()
    assert [m.name for m in members] == sorted(m.name for m in members)
    assert [m.name for m in members] == ["pkg", "pkg/m", "pkg/m/1", "pkg/m/1/model.onnx", "pkg/seqdeploy.json"]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}
    root = extract(a, tmp_path / "out")
    assert root == tmp_path / "out" / "pkg"
    assert (root / "m" / "1" / "model.onnx").read_bytes() == (src / "m" / "1" / "model.onnx").read_bytes()
    assert not (root / ".seqdeploy-staging").exists()


def test_write_tar_refuses_links(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _tree(src)
    os.symlink("/etc/passwd", src / "m" / "link")
    with pytest.raises(IntegrityError, match="no links"):
        write_tar(src, tmp_path / "a.tar.gz", root="pkg")


def test_declared_sizes_are_capped_before_anything_is_extracted(tmp_path: Path) -> None:
    """A small .tar.gz can declare a multi-GB member (a gzip bomb would fill /tmp before any sha256 check)."""

    def bomb(tf: tarfile.TarFile) -> None:
        _file(tf, "pkg/seqdeploy.json", b"{}")
        info = tarfile.TarInfo("pkg/big.bin")
        info.size = 40 << 30  # header only: the archive stays tiny, the declared size does not
        tf.addfile(info)

    archive = _tar(tmp_path / "bomb.tar.gz", bomb)
    assert archive.stat().st_size < 10_000
    with pytest.raises(IntegrityError, match="declare more than"):
        extract(archive, tmp_path / "d")
    assert not any((tmp_path / "d").iterdir())
    ok = _tar(tmp_path / "ok.tar.gz", lambda tf: _file(tf, "pkg/seqdeploy.json", b"x" * 100))
    with pytest.raises(IntegrityError, match="declare more than 50 bytes"):
        extract(ok, tmp_path / "e", max_bytes=50)
    assert extract(ok, tmp_path / "f", max_bytes=100) == tmp_path / "f" / "pkg"


def test_python_without_the_data_filter_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ok = _tar(tmp_path / "ok.tar.gz", lambda tf: _file(tf, "pkg/seqdeploy.json"))
    monkeypatch.delattr(tarfile, "data_filter")
    with pytest.raises(UsageError, match=r"Python >= 3\.11\.4"):
        extract(ok, tmp_path / "d")
