"""Shared CLI pieces: list parsing, a progress bar for slow sweeps, atomic report writing."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

import click

from seqdeploy.errors import UsageError

if TYPE_CHECKING:
    from seqdeploy.manifest import Bundle

__all__ = [
    "Progress",
    "allow_modified_option",
    "check_report_paths",
    "max_memory_option",
    "parse_int_list",
    "parse_shapes",
    "run_on_bundle",
    "write_json_atomic",
    "write_text_atomic",
]

F = TypeVar("F", bound=Callable[..., Any])


def max_memory_option(f: F) -> F:
    """``--max-memory-gb``: the memory limit estimates are checked against (before anything is allocated)."""
    return click.option(
        "--max-memory-gb",
        type=click.FloatRange(min=0.0, min_open=True),
        help="Refuse work whose estimated memory exceeds this many GB [default: 80% of available memory, "
        "or $SEQDEPLOY_MAX_MEMORY_GB].",
    )(f)


def allow_modified_option(f: F) -> F:
    """``--allow-modified``: use a bundle whose files differ from its manifest (reported, never silent)."""
    return click.option(
        "--allow-modified",
        is_flag=True,
        help="Use the bundle's files even if they differ from the sha256 in its manifest (reported as a warning).",
    )(f)


def check_report_paths(paths: Mapping[str, Path | None], bundle: Path | None = None) -> None:
    """Check report destinations before a long run: writable, distinct, and never one of the bundle's files.

    Args:
        paths: Option name (``--json``) → the path given (``None`` = not given).
        bundle: The bundle the command reads; a report may go inside it, but never onto a file it lists
            (``verify D --json D/manifest.json`` would otherwise destroy the export).

    Raises:
        UsageError: A path is a directory, collides with another report or a bundle file, or cannot be written.
    """
    from seqdeploy.manifest import MANIFEST, referenced_files

    protected: set[Path] = set()
    if bundle is not None and any(p is not None for p in paths.values()):
        root = Path(os.path.realpath(bundle))
        names = {MANIFEST}
        try:
            manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            manifest = None  # no readable manifest: the command itself will say so
        if isinstance(manifest, dict):  # read before it is validated: take only what has the right shape
            files = manifest.get("files")
            names |= set(files) if isinstance(files, dict) else set()
            names |= set(referenced_files(manifest))
        protected = {Path(os.path.realpath(root / n)) for n in names if isinstance(n, str) and "\0" not in n}
    seen: dict[Path, str] = {}
    for option, path in paths.items():
        if path is None:
            continue
        real = Path(os.path.realpath(path))
        if real in protected:
            raise UsageError(
                f"{option} {path}: would overwrite {real.name}, a file of the bundle {bundle}; write the report "
                "elsewhere (e.g. outside the bundle directory)"
            )
        if real in seen:
            raise UsageError(f"{option} {path}: the same file as {seen[real]}; give each report its own path")
        seen[real] = option
        if real.is_dir():
            raise UsageError(f"{option} {path}: is a directory; give a file path, e.g. {path}/report")
        probe = real.parent
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir():
            raise UsageError(f"{option} {path}: {probe} is not a directory")
        # Really create (and drop) a file there: os.access() says yes to root everywhere, and knows nothing of
        # read-only mounts, ACLs or file systems that refuse new files (/proc). The report is written by a
        # rename in that directory, so the directory is what must accept a new file.
        try:
            with tempfile.TemporaryFile(dir=probe):
                pass
        except OSError as exc:
            raise UsageError(
                f"{option} {path}: cannot be written ({exc.strerror or exc} in {probe}); choose another path"
            ) from None
        if real.exists() and not os.access(real, os.W_OK):
            raise UsageError(f"{option} {path}: the file is read-only; choose another path")


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


def parse_shapes(text: str | None) -> tuple[tuple[int, int], ...] | None:
    """``"1x32,32x128"`` → ``((1, 32), (32, 128))`` (batch x seq); ``None`` passes through."""
    if text is None:
        return None
    shapes = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        b, sep, t = part.lower().partition("x")
        try:
            shape = (int(b), int(t))
        except ValueError:
            raise UsageError(f"--shapes {text!r}: expected BATCHxSEQ pairs, e.g. --shapes 1x32,32x128") from None
        if not sep or min(shape) < 1:
            raise UsageError(f"--shapes {text!r}: expected BATCHxSEQ pairs of integers >= 1")
        shapes.append(shape)
    if not shapes:
        raise UsageError(f"--shapes {text!r}: expected at least one BATCHxSEQ pair")
    return tuple(shapes)


def write_json_atomic(path: Path, data: Any) -> None:
    """A JSON report (strict: non-finite numbers must already be ``None``), written atomically."""
    write_text_atomic(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    """A report, written whole or not at all (:func:`seqdeploy._atomic.write_atomic`: a unique temp file,
    renamed). A failure names the path and exits 2.
    """
    from seqdeploy._atomic import write_atomic
    from seqdeploy.cli import describe_os_error

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text)
    except OSError as exc:
        raise UsageError(f"cannot write the report: {describe_os_error(exc)}") from None


T = TypeVar("T")


def run_on_bundle(
    bundle_dir: Path,
    run: Callable[[Bundle], T],
    *,
    allow_modified: bool,
    on_first_load: Callable[[Bundle], None] | None = None,
    attempts: int = 3,
) -> tuple[Bundle, T]:
    """Load ``bundle_dir`` (hashes checked) and ``run`` on it; start over on the new bundle when it was
    swapped (``export --force``) or updated (``optimize``) between loading and reading its files
    (:class:`~seqdeploy.manifest.BundleChanged`: no runner had started), at most ``attempts`` times.

    Parse and check every option before calling this: each attempt hashes the bundle again.
    """
    from seqdeploy.manifest import Bundle, BundleChanged

    for attempt in range(attempts):
        bundle = Bundle.load(bundle_dir, allow_modified=allow_modified)
        if attempt == 0 and on_first_load is not None:
            on_first_load(bundle)
        try:
            return bundle, run(bundle)
        except BundleChanged:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable: the last attempt returns or raises")


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
            self.shown = False

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
