"""The ``seqdeploy`` command line: a lazy click group of thin subcommands.

Subcommand modules are imported only when their command runs, so ``seqdeploy --help`` imports neither
torch nor onnxruntime. Library errors (:class:`~seqdeploy.errors.SeqdeployError`) are printed as one
``error:`` message and mapped to their exit code: 1 failure, 2 usage/config, 3 backend unavailable.
"""

from __future__ import annotations

import errno
import importlib
import os
import sys
import traceback
from pathlib import Path
from typing import Any, NoReturn

import click

from seqdeploy import __version__
from seqdeploy.errors import BackendUnavailable, InternalError, Interrupted, SeqdeployError

__all__ = ["cli", "describe_os_error", "main"]

# name -> (module, attribute, one-line help). The help is duplicated here so that listing the
# commands does not import them.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "export": ("seqdeploy.cli.export", "export_cmd", "Export a config's model to ONNX and prove the export."),
    "verify": ("seqdeploy.cli.verify", "verify_cmd", "Check every backend against the reference, states included."),
    "profile": ("seqdeploy.cli.profile", "profile_cmd", "Measure latency per backend over a batch x seq grid."),
    "optimize": ("seqdeploy.cli.optimize", "optimize_cmd", "Write a verified variant (int8, fp16) of an export."),
    "lint": ("seqdeploy.cli.lint", "lint_cmd", "Check ONNX graphs against ONNX Runtime / TensorRT parser rules."),
    "compile": ("seqdeploy.cli.compile", "compile_cmd", "Build, prove and record a TensorRT engine, or plan one."),
    "backends": ("seqdeploy.cli.backends", "backends_cmd", "List the backends and whether they can run here."),
    "package": ("seqdeploy.cli.package", "package_cmd", "Package an export for the torch-free runtime and Triton."),
    "predict": ("seqdeploy.cli.predict", "predict_cmd", "Run a package (text, ids or arrays) without torch."),
    "serve": ("seqdeploy.cli.serve", "serve_cmd", "Serve a package over Triton's HTTP protocol (tritonclient, curl)."),
}

# Modules of the `export` extra: a command that reaches for one in a runtime-only install (pip install
# "seqdeploy[cpu]") exits 3 naming the extra instead of failing with a traceback.
EXPORT_EXTRA_MODULES = frozenset({"torch", "onnx", "onnxscript"})


class CliError(click.ClickException):
    """A :class:`SeqdeployError` on its way out of the CLI, keeping its exit code."""

    def __init__(self, error: SeqdeployError, *, note: str = "") -> None:
        super().__init__(f"{error}{note}")
        self.exit_code = error.exit_code  # type: ignore[misc]  # click reads it per instance

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class LazyGroup(click.Group):
    """Imports a subcommand's module only when that subcommand is invoked (or its --help shown)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[cmd_name]
        command = getattr(importlib.import_module(module), attr)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_) for name, (_, _, help_) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        from seqdeploy._atomic import handle_signals, signals_received

        finished = False  # the command's body returned: everything it set out to do is done
        try:
            # SIGTERM takes the same path as Ctrl-C: cleanup, nothing committed, 130. Run as the console
            # script, the process ends after this: signals are ignored from then on (the outcome is decided).
            with handle_signals(final=_STANDALONE[0]):
                result = super().invoke(ctx)
                finished = True
                return result
        except KeyboardInterrupt:
            _interrupted(ctx, finished=finished)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:
            if isinstance(exc, Interrupted) or signals_received():
                # An error that is the signal's doing (a KeyboardInterrupt inside a C extension's import
                # comes out as an ImportError, "module not installed"): the run was interrupted, say so.
                _interrupted(ctx, finished=False)
            if isinstance(exc, SeqdeployError):
                raise CliError(exc, note=_committed_note()) from exc
            if _out_of_memory(exc):
                click.echo(
                    "error: out of memory; use smaller sizes (--batch/--seq, [shapes], model sizes) or set "
                    "--max-memory-gb / SEQDEPLOY_MAX_MEMORY_GB to what this machine can really give"
                    + _committed_note(),
                    err=True,
                )
                ctx.exit(2)
            if isinstance(exc, OSError) and _environment_error(exc):
                # Disk full, permission denied, a directory where a file was expected: the environment, not
                # a seqdeploy bug. Say which path and what the system said.
                click.echo(f"error: {describe_os_error(exc)}{_discarded_note()}{_committed_note()}", err=True)
                ctx.exit(2)
            if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in EXPORT_EXTRA_MODULES:
                raise CliError(
                    BackendUnavailable(
                        f"'seqdeploy {ctx.invoked_subcommand}' needs {exc.name}, which is not installed (a "
                        "runtime-only install?). Install the export extra: pip install 'torch==2.13.*' "
                        "'seqdeploy[cpu,export]' (torch first, so pip does not pick a multi-GB CUDA build)"
                    )
                ) from exc
            # Anything else is a seqdeploy bug: say so, keep the traceback.
            _internal_error(ctx, exc)


def _internal_error(ctx: click.Context, exc: Exception) -> NoReturn:
    click.echo(traceback.format_exc(), err=True)
    click.echo(
        f"internal error (a seqdeploy bug, please report it with the traceback above): {exc}{_committed_note()}",
        err=True,
    )
    ctx.exit(InternalError.exit_code)


_ALLOCATOR_FAILURES = (
    "DefaultCPUAllocator: can't allocate memory",  # torch: RuntimeError, not MemoryError
    "DefaultCPUAllocator: not enough memory",
    "CUDA out of memory",
    "Failed to allocate memory",  # onnxruntime
)


def _out_of_memory(exc: BaseException) -> bool:
    """A ``MemoryError``, or an allocator failure torch/onnxruntime raise as ``RuntimeError``: the machine's
    memory (after --max-memory-gb let a larger estimate through), not a seqdeploy bug.
    """
    return isinstance(exc, MemoryError) or (
        isinstance(exc, RuntimeError) and any(s in str(exc) for s in _ALLOCATOR_FAILURES)
    )


def _done(paths: tuple[Path, ...]) -> str:
    names = ", ".join(map(str, paths))
    return (
        f"{names} was written and proven (it is complete)"
        if len(paths) == 1
        else (f"{names} were written and proven (each is complete)")
    )


def _committed_note() -> str:
    """For a command that fails after an earlier commit of its own (``optimize --int8 --fp16``: int8
    recorded, then fp16 fails): what it already wrote stays, complete and proven — say so.
    """
    from seqdeploy._atomic import committed_paths

    done = committed_paths()
    return f"\nnote: before this, the command had finished a part of its work: {_done(done)}" if done else ""


def _discarded_note() -> str:
    """Said only when it is what happened: this run removed what it had staged before failing."""
    from seqdeploy._atomic import discarded_paths

    return "; what this run had staged was removed: nothing half-written was left behind" if discarded_paths() else ""


def _interrupted(ctx: click.Context, *, finished: bool) -> NoReturn:
    """Exit 130 for a command interrupted before its end, naming what it had already committed; exit 0
    only for one that had finished (the signal landed while the process was ending).

    A multi-artifact command (``optimize --int8 --fp16``, ``compile`` — plan, then engine) may have
    committed an earlier artifact, proven and complete, before the interruption: it stays, and is named,
    but the command did not do what was asked, so the exit status is 130 all the same.
    """
    from seqdeploy._atomic import committed_paths

    done = committed_paths()
    if finished:
        click.echo("interrupted after the command had finished (its results are complete)", err=True)
        ctx.exit(0)
    if done:
        click.echo(
            f"interrupted before the command finished: {_done(done)}; nothing else was written or recorded",
            err=True,
        )
    else:
        click.echo("interrupted: nothing was written or recorded", err=True)
    ctx.exit(Interrupted.exit_code)


# errno names that are the environment's doing: disk full, quotas, read-only mounts, permissions, limits,
# an address that cannot be bound (serve), a mount point or a file in use (EBUSY: its filename2 is our own
# moved-aside name, so it is listed here, not with the path errors), a network file system's stale handle
# or missing lock daemon (ESTALE, ENOLCK). A path-related one is the user's only when it names a path (a
# file they gave, a directory they chose) and that path is not one seqdeploy made itself (a staging or
# moved-aside path): an ENOENT there is a race or a bug of ours, reported as such (exit 70) instead of
# being blamed on the environment, like any OSError not listed here.
_ENVIRONMENT_ERRNOS = frozenset(
    {
        "ENOSPC", "EFBIG", "EDQUOT", "EROFS", "EIO", "EMFILE", "ENFILE", "ENOMEM", "EACCES", "EPERM",
        "EADDRINUSE", "EADDRNOTAVAIL", "ENETUNREACH", "EHOSTUNREACH", "ECONNREFUSED", "EBUSY", "ESTALE",
        "ENOLCK", "EAFNOSUPPORT",
    }
)  # fmt: skip
_PATH_ERRNOS = frozenset({"EISDIR", "ENOTDIR", "ENOENT", "ELOOP", "ENAMETOOLONG", "EEXIST", "ENOTEMPTY"})


def _environment_error(exc: OSError) -> bool:
    """Whether an ``OSError`` is the environment's (exit 2) rather than a seqdeploy bug (exit 70)."""
    import socket

    from seqdeploy._atomic import is_staging_name

    if isinstance(exc, socket.gaierror):  # a --host that does not resolve
        return True
    name = errno.errorcode.get(exc.errno or 0, "")
    if name in _ENVIRONMENT_ERRNOS:
        return True
    if name not in _PATH_ERRNOS or not exc.filename:
        return False
    ours = [
        str(f)
        for f in (exc.filename, exc.filename2)
        if f is not None and any(is_staging_name(part) for part in Path(os.fsdecode(f)).parts)
    ]
    return not ours


def describe_os_error(exc: OSError) -> str:
    """``PATH: No space left on device (ENOSPC)`` from an ``OSError``, with a hint for the common ones."""
    name = errno.errorcode.get(exc.errno or 0, "")
    where = f"{exc.filename}: " if exc.filename else ""
    if exc.filename2:
        where = f"{exc.filename} -> {exc.filename2}: "
    hint = {
        "ENOSPC": "; free some space or write elsewhere",
        "EFBIG": "; the file exceeds a file-size limit (ulimit -f); write elsewhere or raise the limit",
        "EDQUOT": "; the disk quota is exhausted",
        "EACCES": "; check the permissions, or choose a path you can write",
        "EPERM": "; check the permissions, or choose a path you can write",
        "EROFS": "; the file system is read-only; choose another path",
        "EISDIR": "; a directory is where a file was expected",
        "ENOTDIR": "; a file is where a directory was expected",
        "ENOENT": "; check the path",
        "EMFILE": "; too many open files (ulimit -n)",
        "EADDRINUSE": "; another program listens there: choose another --port",
        "EBUSY": "; the path is in use or is a mount point: write into a directory inside it",
        "ESTALE": "; a stale network file system handle: check the mount, or write to a local path",
        "ENOLCK": "; the file system cannot lock files (a network mount without a lock daemon): write to a local path",
    }.get(name, "")
    return f"{where}{exc.strerror or exc}{f' ({name})' if name else ''}{hint}"


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="seqdeploy")
def cli() -> None:
    """Deploy PyTorch recurrent sequence models (RNN, GRU, LSTM, cell stacks).

    Typical flow: `seqdeploy export CONFIG -o DIR`, then `seqdeploy verify DIR`, then
    `seqdeploy profile DIR`, then `seqdeploy package DIR -o PKG` and `seqdeploy predict PKG`.
    Exit codes: 0 success, 1 failure (export check or parity), 2 usage or config error,
    3 a requested backend or extra is unavailable, 70 internal error (a seqdeploy bug),
    130 interrupted (Ctrl-C or SIGTERM; what was already complete is named).
    """


_STANDALONE = [False]
"""Set by :func:`main`: this process is the ``seqdeploy`` command and exits when the command ends."""


def main() -> None:
    """Console-script entry point."""
    _STANDALONE[0] = True
    try:
        cli(prog_name="seqdeploy")
    except SystemExit as exc:
        _exit(exc.code)
    _exit(0)


def _exit(code: str | int | None) -> NoReturn:
    """End the process with ``code`` — at once, skipping the interpreter's teardown, when an interrupted
    native call still runs in a worker thread (:func:`seqdeploy.backends.base.abandoned_workers`): torch's
    libraries torn down under it would abort the process ("terminate called without an active exception",
    exit -6) after the outcome was already decided and reported.
    """
    base = sys.modules.get("seqdeploy.backends.base")  # only if a runner was ever made (--help imports nothing)
    if base is not None and base.abandoned_workers() > 0:
        status = code if isinstance(code, int) else (0 if code is None else 1)
        if isinstance(code, str):
            print(code, file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(code)
