"""Shared pieces of the property suites: one way to run the CLI, the exit-code property, a tally.

The property (issue 12): whatever the generated input, the CLI ends with exit 0, 1, 2 or 3 (130 only for
an interruption, which no generated input is) — never 70 ("a seqdeploy bug") and never a traceback.

Runs are in-process through click's CliRunner (fast enough for dozens of exports), and a handful per
suite in subprocesses (the real entry point). Hypothesis runs derandomized without a database: CI runs
exactly the same cases every time, and a failure prints the example to reproduce it. Every case is
counted in :data:`TALLY`, printed at the end of the test session (``tests/property/conftest.py``).
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

from click.testing import CliRunner
from hypothesis import HealthCheck, settings

from seqdeploy.cli import cli

ALLOWED = frozenset({0, 1, 2, 3})
TALLY: defaultdict[str, Counter[int]] = defaultdict(Counter)
"""property name -> exit code -> how many generated cases ended with it."""


def bounded(max_examples: int) -> settings:
    """Reproducible, bounded settings: derandomized, no example database, no per-example deadline."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
    )


def run_in_process(args: Sequence[str | Path]) -> tuple[int, str]:
    """``seqdeploy ARGS`` through CliRunner; (exit code, stdout+stderr). Warnings are silenced as the CLI's
    defaults would show them, not raised (the test suite turns warnings into errors).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = CliRunner().invoke(cli, [str(a) for a in args])
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise AssertionError(f"the CLI let {r.exception!r} escape:\n{r.output}") from r.exception
    return r.exit_code, r.output


def run_subprocess(args: Sequence[str | Path], timeout: float = 120) -> tuple[int, str]:
    """``python -m seqdeploy ARGS``; (exit code, stdout+stderr). Never a shell."""
    p = subprocess.run(
        [sys.executable, "-m", "seqdeploy", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return p.returncode, p.stdout + p.stderr


def check_exit(name: str, args: Sequence[str | Path], code: int, output: str) -> None:
    """The property; records the case in :data:`TALLY`."""
    TALLY[name][code] += 1
    assert code in ALLOWED, f"seqdeploy {' '.join(map(str, args))} -> exit {code}:\n{output}"
    assert "Traceback" not in output, f"seqdeploy {' '.join(map(str, args))} printed a traceback:\n{output}"
    assert "internal error" not in output, output
    if code != 0:
        assert "error" in output.lower() or "FAILED" in output, f"exit {code} without saying why:\n{output}"
