"""The ``seqdeploy`` command line: a lazy click group of thin subcommands.

Subcommand modules are imported only when their command runs, so ``seqdeploy --help`` imports neither
torch nor onnxruntime. Library errors (:class:`~seqdeploy.errors.SeqdeployError`) are printed as one
``error:`` message and mapped to their exit code: 1 failure, 2 usage/config, 3 backend unavailable.
"""

from __future__ import annotations

import errno
import importlib
import sys
import traceback
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

    def __init__(self, error: SeqdeployError) -> None:
        super().__init__(str(error))
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

        try:
            # SIGTERM takes the same path as Ctrl-C: cleanup, nothing committed, 130. Run as the console
            # script, the process ends after this: signals are ignored from then on (the outcome is decided).
            with handle_signals(final=_STANDALONE[0]):
                return super().invoke(ctx)
        except KeyboardInterrupt:
            _interrupted(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:
            if isinstance(exc, Interrupted) or signals_received():
                # An error that is the signal's doing (a KeyboardInterrupt inside a C extension's import
                # comes out as an ImportError, "module not installed"): the run was interrupted, say so.
                _interrupted(ctx)
            if isinstance(exc, SeqdeployError):
                raise CliError(exc) from exc
            if _out_of_memory(exc):
                click.echo(
                    "error: out of memory; use smaller sizes (--batch/--seq, [shapes], model sizes) or set "
                    "--max-memory-gb / SEQDEPLOY_MAX_MEMORY_GB to what this machine can really give",
                    err=True,
                )
                ctx.exit(2)
            if isinstance(exc, OSError):
                # Disk full, permission denied, a directory where a file was expected: the environment, not
                # a seqdeploy bug. Say which path and what the system said.
                click.echo(f"error: {describe_os_error(exc)}", err=True)
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
    click.echo(f"internal error (a seqdeploy bug, please report it with the traceback above): {exc}", err=True)
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


def _interrupted(ctx: click.Context) -> None:
    """Exit 130 "nothing was written", or 0 when the signal landed after this run's commit."""
    from seqdeploy._atomic import committed_paths

    done = committed_paths()
    if done:
        # The signal landed after the commit point: the artifact is complete and proven, say so.
        click.echo(f"interrupted after {', '.join(map(str, done))} was written and proven (it is complete)", err=True)
        ctx.exit(0)
    click.echo("interrupted: nothing was written or recorded", err=True)
    ctx.exit(Interrupted.exit_code)


def describe_os_error(exc: OSError) -> str:
    """``PATH: No space left on device (ENOSPC)`` from an ``OSError``, with a hint for the common ones."""
    name = errno.errorcode.get(exc.errno or 0, "")
    where = f"{exc.filename}: " if exc.filename else ""
    if exc.filename2:
        where = f"{exc.filename} -> {exc.filename2}: "
    hint = {
        "ENOSPC": "; free some space or write elsewhere (nothing half-written was left behind)",
        "EFBIG": "; the file exceeds a file-size limit (ulimit -f); write elsewhere or raise the limit",
        "EDQUOT": "; the disk quota is exhausted",
        "EACCES": "; check the permissions, or choose a path you can write",
        "EPERM": "; check the permissions, or choose a path you can write",
        "EROFS": "; the file system is read-only; choose another path",
        "EISDIR": "; a directory is where a file was expected",
        "ENOTDIR": "; a file is where a directory was expected",
    }.get(name, "")
    return f"{where}{exc.strerror or exc}{f' ({name})' if name else ''}{hint}"


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="seqdeploy")
def cli() -> None:
    """Deploy PyTorch recurrent sequence models (RNN, GRU, LSTM, cell stacks).

    Typical flow: `seqdeploy export CONFIG -o DIR`, then `seqdeploy verify DIR`, then
    `seqdeploy profile DIR`, then `seqdeploy package DIR -o PKG` and `seqdeploy predict PKG`.
    Exit codes: 0 success, 1 failure (export check or parity), 2 usage or config error,
    3 a requested backend or extra is unavailable.
    """


_STANDALONE = [False]
"""Set by :func:`main`: this process is the ``seqdeploy`` command and exits when the command ends."""


def main() -> None:
    """Console-script entry point."""
    _STANDALONE[0] = True
    cli(prog_name="seqdeploy")
    sys.exit(0)
