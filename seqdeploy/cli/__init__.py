"""The ``seqdeploy`` command line: a lazy click group of thin subcommands.

Subcommand modules are imported only when their command runs, so ``seqdeploy --help`` imports neither
torch nor onnxruntime. Library errors (:class:`~seqdeploy.errors.SeqdeployError`) are printed as one
``error:`` message and mapped to their exit code: 1 failure, 2 usage/config, 3 backend unavailable.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from typing import Any

import click

from seqdeploy import __version__
from seqdeploy.errors import InternalError, SeqdeployError

__all__ = ["cli", "main"]

# name -> (module, attribute, one-line help). The help is duplicated here so that listing the
# commands does not import them.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "export": ("seqdeploy.cli.export", "export_cmd", "Export a config's model to ONNX and prove the export."),
    "verify": ("seqdeploy.cli.verify", "verify_cmd", "Check every backend against the reference, states included."),
    "profile": ("seqdeploy.cli.profile", "profile_cmd", "Measure latency per backend over a batch x seq grid."),
    "optimize": ("seqdeploy.cli.optimize", "optimize_cmd", "Write a verified variant (int8, fp16) of an export."),
    "lint": ("seqdeploy.cli.lint", "lint_cmd", "Check ONNX graphs against ONNX Runtime / TensorRT parser rules."),
    "compile": ("seqdeploy.cli.compile", "compile_cmd", "Plan a TensorRT build and write its hand-off kit."),
    "backends": ("seqdeploy.cli.backends", "backends_cmd", "List the backends and whether they can run here."),
}


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
        try:
            return super().invoke(ctx)
        except SeqdeployError as exc:
            raise CliError(exc) from exc
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - anything else is a seqdeploy bug: say so, keep the traceback
            click.echo(traceback.format_exc(), err=True)
            click.echo(f"internal error (a seqdeploy bug, please report it with the traceback above): {exc}", err=True)
            ctx.exit(InternalError.exit_code)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="seqdeploy")
def cli() -> None:
    """Deploy PyTorch recurrent sequence models (RNN, GRU, LSTM, cell stacks).

    Typical flow: `seqdeploy export CONFIG -o DIR`, then `seqdeploy verify DIR`, then
    `seqdeploy profile DIR`. Exit codes: 0 success, 1 failure (export check or parity),
    2 usage or config error, 3 a requested backend is unavailable.
    """


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="seqdeploy")
    sys.exit(0)
