"""How the CLI ends a command (``seqdeploy.cli``): exit status and message for every kind of outcome.

Commands registered here for the test only commit artifacts through the real foundation and then
finish, fail or are interrupted — the shapes of ``optimize --int8 --fp16`` and ``compile`` (plan, then
engine) without their cost.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import seqdeploy.cli as cli_module
from seqdeploy._atomic import bundle_transaction
from seqdeploy.cli import cli
from seqdeploy.errors import ParityError

OUT: dict[str, Path] = {}


def _commit_one(name: str) -> None:
    with bundle_transaction(OUT["bundle"]) as tx:
        tx.stage(name).write_bytes(name.encode())
        tx.commit(json.loads((OUT["bundle"] / "manifest.json").read_text()))


@click.command("two-artifacts")
@click.argument("how")
def two_artifacts(how: str) -> None:
    """Commits a first artifact, then ends as ``how`` says before (or after) the second."""
    _commit_one("first.bin")
    if how == "interrupt":
        raise KeyboardInterrupt
    if how == "parity":
        raise ParityError("second variant failed its tolerance (nothing was recorded)")
    if how == "oserror-ours":
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(OUT["bundle"] / ".x.old-1-1f2e3d4c"))
    _commit_one("second.bin")


@click.command("raise-os")
@click.argument("which")
def raise_os(which: str) -> None:
    """Raises one OSError, as the environment or a seqdeploy bug would."""
    errors = {
        "enospc-nameless": OSError(errno.ENOSPC, "No space left on device"),
        "eacces-user-path": PermissionError(errno.EACCES, "Permission denied", "/home/u/out/report.json"),
        "enoent-user-path": FileNotFoundError(errno.ENOENT, "No such file or directory", "/home/u/in.npz"),
        "enoent-staging": FileNotFoundError(errno.ENOENT, "No such file or directory", "/home/u/.exp.old-42-1f2e3d4c"),
        "ebadf": OSError(errno.EBADF, "Bad file descriptor"),
        "eacces-nameless": PermissionError(errno.EACCES, "Permission denied"),
        "eaddrinuse": OSError(errno.EADDRINUSE, "Address already in use"),
        # os.rename(dest, old) of a mount point: filename2 is our own moved-aside name, the path is the user's
        "ebusy-mount-point": OSError(errno.EBUSY, "Device or resource busy", "/out", "/.out.old-1-0123abcd"),
        "estale": OSError(errno.ESTALE, "Stale file handle", "/nfs/out/model.onnx"),
        "enolck": OSError(errno.ENOLCK, "No locks available"),
        # serve --host ::1 on a kernel without IPv6: socket() fails before any bind
        "eafnosupport": OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol"),
    }
    raise errors[which]


@pytest.fixture
def commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "manifest.json").write_text(json.dumps({"schema_version": 1, "graphs": {}, "files": {}}))
    OUT["bundle"] = bundle
    monkeypatch.setitem(cli_module.COMMANDS, "two-artifacts", (__name__, "two_artifacts", "test"))
    monkeypatch.setitem(cli_module.COMMANDS, "raise-os", (__name__, "raise_os", "test"))
    yield bundle


def _run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.output


def test_a_command_that_finished_exits_0(commands: Path) -> None:
    code, text = _run("two-artifacts", "finish")
    assert code == 0, text
    assert (commands / "second.bin").is_file()


def test_interrupted_after_its_first_commit_exits_130_naming_what_is_complete(commands: Path) -> None:
    """Finding 1: was exit 0 "(it is complete)" although the second artifact was never made."""
    code, text = _run("two-artifacts", "interrupt")
    assert code == 130, text
    assert "interrupted before the command finished" in text, text
    assert f"{commands / 'first.bin'} was written and proven (it is complete)" in text, text
    assert "nothing else was written or recorded" in text
    assert (commands / "first.bin").is_file() and not (commands / "second.bin").exists()


def test_a_failure_after_an_earlier_commit_says_what_was_already_complete(commands: Path) -> None:
    code, text = _run("two-artifacts", "parity")
    assert code == 1, text
    assert "nothing was recorded" in text and f"{commands / 'first.bin'} was written and proven" in text, text


def test_an_enoent_on_a_path_seqdeploy_made_is_a_bug_not_the_environment(commands: Path) -> None:
    code, text = _run("two-artifacts", "oserror-ours")
    assert code == 70, text
    assert "internal error" in text and "first.bin was written and proven" in text, text


@pytest.mark.parametrize(
    ("which", "code"),
    [
        ("enospc-nameless", 2),
        ("eacces-user-path", 2),
        ("enoent-user-path", 2),
        ("enoent-staging", 70),
        ("ebadf", 70),
        ("eacces-nameless", 2),  # a permission is the environment's, path or not (a port below 1024)
        ("eaddrinuse", 2),
        ("ebusy-mount-point", 2),  # round 2: were exit 70 ("a seqdeploy bug") after finding 9's fix
        ("estale", 2),
        ("enolck", 2),
        ("eafnosupport", 2),
    ],
)
def test_os_errors_are_the_environments_only_when_they_are(commands: Path, which: str, code: int) -> None:
    """Finding 9: every OSError used to be exit 2, hiding seqdeploy bugs (a race on our own staging path,
    a bad file descriptor) behind "check the permissions".
    """
    got, text = _run("raise-os", which)
    assert got == code, text
    assert ("internal error" in text) == (code == 70), text
    if code == 2:
        assert text.startswith("error: ") and "Traceback" not in text
    assert "nothing half-written" not in text  # nothing was staged: no such claim


def test_a_busy_path_is_explained(commands: Path) -> None:
    code, text = _run("raise-os", "ebusy-mount-point")
    assert code == 2, text
    assert "(EBUSY)" in text and "is a mount point: write into a directory inside it" in text, text


def test_the_docs_list_every_command_that_takes_allow_modified() -> None:
    """Finding 22: ``lint`` took --allow-modified but the docs' lists left it out."""
    import re

    from seqdeploy.cli import COMMANDS, LazyGroup

    assert isinstance(cli, LazyGroup)
    ctx = click.Context(cli)
    takes = set()
    for name in COMMANDS:
        command = cli.get_command(ctx, name)
        assert command is not None
        if any(p.name == "allow_modified" for p in command.params):
            takes.add(name)
    docs = Path(__file__).resolve().parents[2] / "docs"
    cli_md = " ".join((docs / "cli.md").read_text("utf-8").split())
    errors_md = " ".join((docs / "errors.md").read_text("utf-8").split())
    in_cli = re.search(r"\(`--allow-modified`, on ([^)]*?), to accept", cli_md)
    in_errors = re.search(r"`--allow-modified` \(([^)]*)\) accepts", errors_md)
    assert in_cli and in_errors
    assert set(re.findall(r"`([a-z-]+)`", in_cli.group(1))) == takes, in_cli.group(1)
    assert {w.strip() for w in in_errors.group(1).split(",")} == takes, in_errors.group(1)


def test_help_lists_every_exit_code() -> None:
    code, text = _run("--help")
    assert code == 0
    flat = " ".join(text.split())
    for part in ("0 success", "1 failure", "2 usage", "3 a requested backend", "70 internal error", "130 interrupted"):
        assert part in flat, text


def test_the_environment_check_reads_every_path_part(tmp_path: Path) -> None:
    from seqdeploy.cli import _environment_error

    inside_staging = tmp_path / f".exp.{os.getpid()}-abcd1234.partial" / "model.onnx"
    assert not _environment_error(FileNotFoundError(errno.ENOENT, "gone", str(inside_staging)))
    assert _environment_error(FileNotFoundError(errno.ENOENT, "gone", str(tmp_path / "exp" / "model.onnx")))
