"""Shared CLI pieces: list parsing, a progress bar for slow sweeps, atomic report writing."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click

from seqdeploy.errors import UsageError

__all__ = ["Progress", "parse_int_list", "write_text_atomic"]


def parse_int_list(text: str | None, option: str) -> tuple[int, ...] | None:
    """``"1,3,8"`` → ``(1, 3, 8)``; ``None`` passes through. Values must be integers >= 1."""
    if text is None:
        return None
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UsageError(f"{option} {text!r}: expected comma-separated integers, e.g. {option} 1,3,8") from None
    if not values or min(values) < 1:
        raise UsageError(f"{option} {text!r}: expected integers >= 1")
    return tuple(sorted(set(values)))


def write_text_atomic(path: Path, text: str) -> None:
    """Write via a temp file and rename, so a report is never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class Progress:
    """A one-line progress bar on stderr, shown only on a terminal and only once a sweep has taken more
    than ``delay`` seconds (quick runs stay quiet).
    """

    def __init__(self, label: str, *, delay: float = 1.0, enabled: bool | None = None) -> None:
        self.label = label
        self.delay = delay
        self.start = time.monotonic()
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or time.monotonic() - self.start < self.delay:
            return
        width = 30
        filled = int(width * min(done, total) / max(total, 1))
        click.echo(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}", err=True, nl=False)
        self.shown = True

    def close(self) -> None:
        """End the progress line, if one was drawn."""
        if self.shown:
            click.echo("", err=True)
