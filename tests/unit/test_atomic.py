"""The artifact foundation (``seqdeploy._atomic``) in-process: the decisions, locks and cleanups the
fault-injection suite drives from the outside, here case by case and without subprocesses.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import seqdeploy._atomic as atomic
from seqdeploy._atomic import (
    bundle_transaction,
    is_staging_name,
    staged_dir,
    staged_file,
    target_lock,
    write_atomic,
)
from seqdeploy.errors import UsageError

DEAD_PID = 4_194_999
"""Above Linux's largest pid_max (2**22): never a live process, in any namespace."""


@pytest.fixture(autouse=True)
def _private_lock_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Each test gets its own temp root (outside its tmp_path), so its lock directory is its own."""
    root = tmp_path_factory.mktemp("tmproot")
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    monkeypatch.setattr(atomic, "_WARNED", [])
    yield root


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def _export_manifest(d: Path) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / "manifest.json").write_text(json.dumps({"schema_version": 1, "graphs": {}, "files": {}}))


# -- finding 3: --force replaces only what seqdeploy wrote ------------------------------------------------


def test_force_never_replaces_a_directory_whose_manifest_json_is_someone_elses(tmp_path: Path, cwd: Path) -> None:
    """A web app has a manifest.json too: its index.html must survive ``export -o app --force``."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "manifest.json").write_text(json.dumps({"name": "My PWA", "start_url": "/index.html"}))
    (app / "index.html").write_text("<html></html>")
    with pytest.raises(UsageError, match="not one seqdeploy wrote"), staged_dir(app, force=True) as tmp:
        (tmp / "manifest.json").write_text("{}")
    assert sorted(p.name for p in app.iterdir()) == ["index.html", "manifest.json"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(
    "text", ["not json", "[1, 2]", '{"schema_version": "1", "graphs": {}}', '{"schema_version": 1}']
)
def test_force_refuses_a_manifest_json_that_is_not_an_exports(tmp_path: Path, cwd: Path, text: str) -> None:
    d = tmp_path / "d"
    d.mkdir()
    (d / "manifest.json").write_text(text)
    assert atomic._replace_refusal(d, "manifest.json") is not None


def test_force_replaces_an_earlier_export_and_a_package_only_by_their_shape(tmp_path: Path) -> None:
    export = tmp_path / "e"
    _export_manifest(export)
    assert atomic._replace_refusal(export, "manifest.json") is None
    pkg = tmp_path / "p"
    pkg.mkdir()
    (pkg / "seqdeploy.json").write_text(json.dumps({"format": "seqdeploy-package", "files": {}}))
    assert atomic._replace_refusal(pkg, "seqdeploy.json") is None
    (pkg / "seqdeploy.json").write_text(json.dumps({"format": "something-else"}))
    assert atomic._replace_refusal(pkg, "seqdeploy.json") is not None


def test_the_package_format_the_foundation_recognises_is_the_packages(tmp_path: Path) -> None:
    """``_atomic`` is stdlib-only, so it spells the package format out: it must stay the package's."""
    from seqdeploy.package.manifest import PACKAGE_FORMAT

    pkg = tmp_path / "p"
    pkg.mkdir()
    (pkg / "seqdeploy.json").write_text(json.dumps({"format": PACKAGE_FORMAT}))
    assert atomic._seqdeploy_artifact(pkg, "seqdeploy.json")


# -- finding 2: a signal before the point of no return aborts the commit -----------------------------------


def test_a_signal_held_before_the_first_rename_aborts_the_commit(tmp_path: Path, cwd: Path, monkeypatch) -> None:
    """``commit:locked``: inside the shield, before any rename. A signal that arrived there is not held
    until after the commit (which then went ahead): the commit is abandoned, nothing changed.
    """
    import signal

    def signal_at(name: str) -> None:
        if name == "commit:locked":
            os.kill(os.getpid(), signal.SIGTERM)  # held by the shield

    monkeypatch.setattr(atomic, "fault_point", signal_at)
    out = tmp_path / "exp"
    with atomic.handle_signals(), pytest.raises(KeyboardInterrupt), staged_dir(out) as tmp:
        (tmp / "manifest.json").write_text("{}")
    assert not out.exists()
    assert atomic.committed_paths() == ()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_the_swap_lock_is_waited_for_outside_the_shield(tmp_path: Path, cwd: Path, monkeypatch) -> None:
    """A reader holding the bundle: the commit waits for it, and a signal during that wait stops the run
    at once (before the fix the wait was shielded: the signal was held for up to 60 s, then the commit
    went ahead anyway).
    """
    import signal

    out = tmp_path / "exp"
    _export_manifest(out)
    monkeypatch.setattr(atomic, "_LOCK_WAIT_S", 5.0)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM))
    with atomic.reading(out), atomic.handle_signals():
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt), staged_dir(out, force=True) as tmp:
                _export_manifest(tmp)
                (tmp / "new").write_text("new")
        finally:
            timer.cancel()
    assert not (out / "new").exists() and atomic.committed_paths() == ()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_force_over_a_mount_point_is_a_usage_error_and_changes_nothing(tmp_path: Path, cwd: Path, monkeypatch) -> None:
    """``export -o /mnt/out --force`` where /mnt/out is a mount point: ``rename(dest, old)`` fails with EBUSY.
    It used to surface as a bare OSError (exit 70, "a seqdeploy bug"); it is the user's path: exit 2.
    """
    import errno

    out = tmp_path / "exp"
    _export_manifest(out)
    (out / "old").write_text("old")
    real = os.rename

    def busy_mount(src: os.PathLike[str] | str, dst: os.PathLike[str] | str) -> None:
        if Path(src) == out:
            raise OSError(errno.EBUSY, "Device or resource busy", str(src), str(dst))
        real(src, dst)

    monkeypatch.setattr(atomic.os, "rename", busy_mount)
    with (
        atomic.handle_signals(),
        pytest.raises(UsageError, match=rf"{out}: is a mount point .* nothing was changed.* -o {out}/export"),
        staged_dir(out, force=True) as tmp,
    ):
        _export_manifest(tmp)
        (tmp / "new").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "old"]
    assert atomic.committed_paths() == ()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# -- finding 9: leftovers that vanish while being cleaned ----------------------------------------------------


def test_cleaning_leftovers_that_vanish_meanwhile_is_no_error(tmp_path: Path, monkeypatch) -> None:
    olds = [tmp_path / f".exp.old-{DEAD_PID}-{i:08x}" for i in range(3)]
    for p in olds:
        p.mkdir()
    real = atomic._owner_alive

    def racing_cleaner(p: Path) -> bool:
        if p == olds[1]:
            atomic._remove(olds[2])  # another process cleaned this one right now
        return real(p)

    monkeypatch.setattr(atomic, "_owner_alive", racing_cleaner)
    atomic._clean_leftovers(tmp_path, "exp")
    assert (tmp_path / "exp").is_dir()  # one old copy restored (the target was missing)
    assert [p.name for p in tmp_path.iterdir()] == ["exp"]


# -- finding 10: a live writer in another PID namespace -------------------------------------------------------


def test_a_staging_dir_held_by_a_live_run_is_never_cleaned_whatever_its_pid(tmp_path: Path) -> None:
    """A writer in another container: its pid means nothing here (it looks dead). Its flock does not."""
    staging = tmp_path / f".exp.{DEAD_PID}-abcd1234.partial"
    staging.mkdir()
    fd = os.open(staging, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        atomic._clean_leftovers(tmp_path, "exp")
        assert staging.is_dir()
    finally:
        os.close(fd)  # the run ends (or dies: the kernel drops its locks)
    atomic._clean_leftovers(tmp_path, "exp")
    assert not staging.exists()


def test_a_staging_dir_is_held_for_the_whole_run(tmp_path: Path, cwd: Path) -> None:
    with staged_dir(tmp_path / "exp") as tmp:
        assert atomic._held_by_a_live_run(tmp)
        atomic._clean_leftovers(tmp_path, "exp")  # a cleaner that does not share our lock directory
        assert tmp.is_dir()
        _export_manifest(tmp)
    assert not atomic._held_by_a_live_run(tmp_path / "exp")


def test_a_bundle_being_written_by_a_process_without_our_lock_dir_refuses_a_second_writer(tmp_path: Path) -> None:
    d = tmp_path / "exp"
    _export_manifest(d)
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)  # a transaction of another container, on the same bundle
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(UsageError, match="another seqdeploy process is writing it"), bundle_transaction(d):
            pass
    finally:
        os.close(fd)
    with bundle_transaction(d):
        pass


# -- finding 15: staged_file decides at the rename, under a lock --------------------------------------------


def test_staged_file_keeps_a_file_that_appeared_meanwhile(tmp_path: Path) -> None:
    target = tmp_path / "pkg.tar.gz"
    with pytest.raises(UsageError, match="appeared"), staged_file(target) as tmp:
        tmp.write_bytes(b"ours")
        target.write_bytes(b"someone else's")
    assert target.read_bytes() == b"someone else's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg.tar.gz"]


def test_staged_file_replaces_the_file_that_was_there_and_force_replaces_any(tmp_path: Path) -> None:
    target = tmp_path / "cache.bin"
    target.write_bytes(b"old")
    with staged_file(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    with staged_file(target, force=True) as tmp:
        tmp.write_bytes(b"newer")
        target.unlink()
        target.write_bytes(b"another writer's")  # a cache: the last writer wins
    assert target.read_bytes() == b"newer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.bin"]


def test_a_forced_staged_file_waits_for_another_writer_and_is_not_recorded(
    tmp_path: Path, _private_lock_dir: Path
) -> None:
    """Round 2, item 2: two compiles sharing one --timing-cache. The second used to fail at once (exit 2,
    after a whole build, its engine not recorded): ``force`` ("the last writer wins") now waits for the
    first writer's short block. And a cache is no proven artifact: ``record=False`` keeps it out of
    :func:`committed_paths` (a later failure must not call it "written and proven").
    """
    import subprocess
    import sys
    import time

    cache = tmp_path / "trt.cache"
    ready = tmp_path / "child-holds-it"
    child_code = (
        "import sys, tempfile, time\n"
        "from pathlib import Path\n"
        "tempfile.tempdir = sys.argv[1]\n"
        "from seqdeploy._atomic import staged_file\n"
        "with staged_file(sys.argv[2]) as tmp:\n"
        "    tmp.write_bytes(b'child')\n"
        "    Path(sys.argv[3]).write_text('holding')\n"
        "    time.sleep(1.0)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", child_code, str(_private_lock_dir), str(cache), str(ready)])
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert child.poll() is None, "the child ended before taking the lock"
            assert time.monotonic() < deadline, "the child never took the lock"
            time.sleep(0.02)
        with atomic.handle_signals():
            started = time.monotonic()
            with staged_file(cache, force=True, record=False) as tmp:
                waited = time.monotonic() - started
                tmp.write_bytes(b"parent")
            assert atomic.committed_paths() == ()
        assert child.wait(timeout=60) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
    assert waited > 0.3  # it really waited for the child's block
    assert cache.read_bytes() == b"parent"  # the child committed first; the last writer won
    assert sorted(p.name for p in tmp_path.iterdir()) == ["child-holds-it", "trt.cache"]


def test_staged_file_records_its_target_by_default(tmp_path: Path) -> None:
    with atomic.handle_signals():
        with staged_file(tmp_path / "pkg.tar.gz") as tmp:
            tmp.write_bytes(b"whole")
        assert atomic.committed_paths() == (tmp_path / "pkg.tar.gz",)


def test_staged_file_cleans_a_dead_runs_temp_files_and_refuses_a_second_writer(tmp_path: Path) -> None:
    target = tmp_path / "pkg.tar.gz"
    dead = tmp_path / f".pkg.tar.gz.stage-{DEAD_PID}-1f2e3d4c"
    dead.write_bytes(b"half")
    with staged_file(target) as tmp:
        assert not dead.exists()
        assert atomic._held_by_a_live_run(tmp)
        with pytest.raises(UsageError, match="another seqdeploy process"), staged_file(target):
            pass
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole"


# -- finding 16: the lock directory ------------------------------------------------------------------------


def test_an_unusable_lock_directory_degrades_writers_and_readers_alike(tmp_path: Path, monkeypatch, capsys) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    monkeypatch.setattr(tempfile, "tempdir", str(not_a_dir))  # TMPDIR unusable (read-only, not a directory)
    d = tmp_path / "exp"
    _export_manifest(d)
    with target_lock(d), atomic.reading(d):
        pass
    with bundle_transaction(d):
        pass
    err = capsys.readouterr().err
    assert err.count("working without the per-target lock") == 1, err


def test_a_lock_directory_owned_by_someone_else_is_never_used(tmp_path: Path, monkeypatch, capsys) -> None:
    real_uid = os.getuid()
    monkeypatch.setattr(os, "getuid", lambda: real_uid + 1)  # as if another user had made ours first
    root = Path(tempfile.gettempdir())
    (root / f"seqdeploy-locks-{real_uid + 1}").mkdir(mode=0o700)
    with target_lock(tmp_path / "exp"):
        pass
    assert list((root / f"seqdeploy-locks-{real_uid + 1}").iterdir()) == []  # nothing opened in it
    assert "not a directory owned by you" in capsys.readouterr().err


def test_a_group_writable_lock_directory_of_ours_is_tightened(tmp_path: Path) -> None:
    d = Path(tempfile.gettempdir()) / f"seqdeploy-locks-{os.getuid()}"
    d.mkdir()
    d.chmod(0o777)
    with target_lock(tmp_path / "exp"):
        pass
    assert d.stat().st_mode & 0o777 == 0o700


def test_lock_files_are_never_opened_through_a_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    lock = atomic._lock_file(tmp_path / "exp", "write")
    lock.symlink_to(victim)
    with pytest.raises(OSError), target_lock(tmp_path / "exp"):
        pass
    assert victim.read_text() == "precious"


# -- finding 17: one atomic writer --------------------------------------------------------------------------


def test_write_atomic_uses_a_unique_temp_file_and_cleans_a_dead_runs(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    dead = tmp_path / f".report.json.stage-{DEAD_PID}-0a0b0c0d"
    dead.write_text("half")
    names: list[str] = []
    real = atomic._create_locked

    def spy(path: Path) -> int:
        names.append(path.name)
        return real(path)

    atomic._create_locked = spy  # type: ignore[assignment]
    try:
        write_atomic(target, "one")
        write_atomic(target, b"two")
    finally:
        atomic._create_locked = real  # type: ignore[assignment]
    assert target.read_text() == "two"
    assert len(set(names)) == 2 and all(is_staging_name(n, "report.json") for n in names)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_write_atomic_names_the_path_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "dir-in-the-way"
    target.mkdir()
    with pytest.raises(OSError) as info:
        write_atomic(target, "x")
    assert info.value.filename is not None and "dir-in-the-way" in str(info.value.filename)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir-in-the-way"]


def test_a_transaction_commit_leaves_no_pending_manifest_and_one_rename(tmp_path: Path, monkeypatch) -> None:
    d = tmp_path / "exp"
    _export_manifest(d)
    renames: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy(src: object, dst: object) -> None:
        renames.append((Path(str(src)).name, Path(str(dst)).name))
        real_replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", spy)
    with bundle_transaction(d) as tx:
        tx.stage("extra.bin").write_bytes(b"x")
        tx.commit(json.loads((d / "manifest.json").read_text()))
    manifest_renames = [r for r in renames if "manifest.json" in r[0] or "manifest.json" in r[1]]
    assert len(manifest_renames) == 1, manifest_renames  # written once, renamed once (was: temp -> pending -> final)
    assert manifest_renames[0][0].startswith(".manifest.json.stage-") and manifest_renames[0][1] == "manifest.json"
    assert json.loads((d / "manifest.json").read_text())["files"]["extra.bin"]["bytes"] == 1
    assert sorted(p.name for p in d.iterdir()) == ["extra.bin", "manifest.json"]


@pytest.mark.parametrize("err", ["ENOSYS", "EOPNOTSUPP", "EINVAL"])
def test_a_file_system_without_flock_still_writes_atomically(
    tmp_path: Path, cwd: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], err: str
) -> None:
    """Lustre mounted `noflock` (common on GPU clusters) answers flock with ENOSYS: every write used to end
    with that OSError (exit 70, "a seqdeploy bug"). The locks are a second line: writes go on without them."""
    import errno

    real = fcntl.flock

    def no_flock(fd: int, op: int) -> None:
        if op & fcntl.LOCK_UN:
            return real(fd, op)
        raise OSError(getattr(errno, err), os.strerror(getattr(errno, err)))

    monkeypatch.setattr(fcntl, "flock", no_flock)
    write_atomic(tmp_path / "report.json", "{}")
    assert (tmp_path / "report.json").read_text() == "{}"
    with staged_dir(tmp_path / "exp") as tmp:
        _export_manifest(tmp)
    assert (tmp_path / "exp" / "manifest.json").is_file()
    with staged_file(tmp_path / "cache.bin", force=True, record=False) as t:
        t.write_bytes(b"x")
    assert (tmp_path / "cache.bin").read_bytes() == b"x"
    with bundle_transaction(tmp_path / "exp") as tx:
        tx.stage("extra.txt").write_text("y")
        manifest = json.loads((tmp_path / "exp" / "manifest.json").read_text())
        tx.commit(manifest)
    assert (tmp_path / "exp" / "extra.txt").read_text() == "y"
    assert not [p for p in tmp_path.iterdir() if is_staging_name(p.name)]
    assert "has no flock" in capsys.readouterr().err


def test_other_flock_errors_are_not_hidden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    def broken(fd: int, op: int) -> None:
        raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr(fcntl, "flock", broken)
    with pytest.raises(OSError, match="Bad file descriptor"):
        write_atomic(tmp_path / "r.json", "{}")


def test_a_path_staged_only_to_carry_artifacts_over_is_never_called_written(tmp_path: Path, monkeypatch) -> None:
    """optimize re-links the engines it keeps into a new engines/: the exit messages ("… were written and
    proven") must name the new variant only, never engines nothing built or proved this run."""
    monkeypatch.setattr(atomic, "_COMMITTED", [])
    d = tmp_path / "exp"
    _export_manifest(d)
    with bundle_transaction(d) as tx:
        tx.stage("model.int8.onnx").write_text("new")
        kept = tx.stage("engines", record=False)
        kept.mkdir()
        (kept / "a.plan").write_text("old engine")
        tx.commit(json.loads((d / "manifest.json").read_text()))
    assert (d / "engines" / "a.plan").is_file()
    assert [p.name for p in atomic.committed_paths()] == ["model.int8.onnx"]
    files = json.loads((d / "manifest.json").read_text())["files"]
    assert set(files) == {"model.int8.onnx", "engines/a.plan"}  # committed and hashed all the same


def test_a_directory_swap_killed_before_the_manifest_moved_is_undone(tmp_path: Path) -> None:
    """SIGKILL between the renames of a commit that replaces engines/: the new directory is in place, the old
    one aside, the manifest still the old one. Recovery put back moved-aside files only, so the bundle then
    failed every integrity check (its listed engine gone) until a re-export."""
    from seqdeploy.manifest import file_entry

    d = tmp_path / "exp"
    d.mkdir()
    old = d / f".engines.old-{DEAD_PID}-0000abcd"
    old.mkdir()
    (old / "a.plan").write_bytes(b"the engine the manifest lists")
    files = {"engines/a.plan": file_entry(old / "a.plan")}
    (d / "manifest.json").write_text(json.dumps({"schema_version": 1, "graphs": {}, "files": files}))
    (d / "engines").mkdir()
    (d / "engines" / "b.plan").write_bytes(b"what the killed run built")
    atomic._recover_transaction(d, "manifest.json")
    assert sorted(p.relative_to(d).as_posix() for p in d.rglob("*")) == ["engines", "engines/a.plan", "manifest.json"]
    assert (d / "engines" / "a.plan").read_bytes() == b"the engine the manifest lists"


def test_a_moved_aside_directory_that_is_not_the_listed_one_is_removed(tmp_path: Path) -> None:
    from seqdeploy.manifest import file_entry

    d = tmp_path / "exp"
    (d / "engines").mkdir(parents=True)
    (d / "engines" / "a.plan").write_bytes(b"listed")
    files = {"engines/a.plan": file_entry(d / "engines" / "a.plan")}
    (d / "manifest.json").write_text(json.dumps({"schema_version": 1, "graphs": {}, "files": files}))
    old = d / f".engines.old-{DEAD_PID}-0000abcd"
    old.mkdir()
    (old / "a.plan").write_bytes(b"an older engine, no longer listed")  # the commit had completed
    atomic._recover_transaction(d, "manifest.json")
    assert not old.exists() and (d / "engines" / "a.plan").read_bytes() == b"listed"
