"""The seqdeploy exception tree.

Every user-facing failure raises a subclass of :class:`SeqdeployError`; the CLI maps its ``exit_code``
to the process exit status. Bugs in seqdeploy itself raise :class:`InternalError`, which is
deliberately *outside* the user-facing tree so that it is never mistaken for bad input::

    Exception
    ├── SeqdeployError                 exit 1 unless stated
    │   ├── ConfigError(ValueError)    exit 2  bad TOML, unknown key, wrong type, impossible value
    │   ├── UsageError(ValueError)     exit 2  bad CLI value, refused overwrite, bad --inputs file
    │   │   ├── IntegrityError         exit 2  a bundle/package file is missing, unlisted, outside it, or
    │   │   │                                  differs from its manifest's sha256 (names the file)
    │   │   └── ResourceLimitError     exit 2  the estimated memory of a model or sweep exceeds the limit
    │   ├── InputError(ValueError)     exit 2  feeds that do not match the IOSpec (names, dtype, shape,
    │   │                                      ids outside the vocabulary, lengths outside [1, seq])
    │   ├── CheckpointError(ValueError) exit 2  state_dict that does not fit the model
    │   ├── VectorsError(ValueError)   exit 2  malformed GloVe/word2vec/vocab file
    │   ├── ExportError                exit 1  the exported graph failed its own checks
    │   ├── ParityError                exit 1  a backend disagreed with the reference (carries the report)
    │   ├── BackendUnavailable         exit 3  a requested backend cannot run here (names the extra)
    │   └── Interrupted                exit 130 SIGINT/SIGTERM: the artifact being made was not recorded or
    │                                              renamed into place (earlier ones of the command stay)
    └── InternalError                  exit 70 a seqdeploy bug; please report it
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "BackendUnavailable",
    "CheckpointError",
    "ConfigError",
    "ExportError",
    "InputError",
    "IntegrityError",
    "InternalError",
    "Interrupted",
    "ParityError",
    "ResourceLimitError",
    "SeqdeployError",
    "UsageError",
    "VectorsError",
]


class SeqdeployError(Exception):
    """Base class of every error that is the user's to fix."""

    exit_code: ClassVar[int] = 1


class ConfigError(SeqdeployError, ValueError):
    """A configuration file or value is invalid; the message names the key path."""

    exit_code = 2


class UsageError(SeqdeployError, ValueError):
    """A command-line argument is invalid or an operation was refused."""

    exit_code = 2


class IntegrityError(UsageError):
    """A file of a bundle or package is missing, not listed in its manifest, outside the directory, or
    differs from the manifest's sha256. The message names the file.
    """


class ResourceLimitError(UsageError):
    """The estimated memory of a model or a sweep exceeds the limit; the message gives both figures and
    the option that raises the limit.
    """


class InputError(SeqdeployError, ValueError):
    """Feeds do not match the model's IOSpec."""

    exit_code = 2


class CheckpointError(SeqdeployError, ValueError):
    """A checkpoint could not be loaded into the model."""

    exit_code = 2


class VectorsError(SeqdeployError, ValueError):
    """A pretrained-vectors or vocabulary file is malformed or does not fit the config."""

    exit_code = 2


class ExportError(SeqdeployError):
    """The exported graph failed a structural lint, the ONNX checker or its parity self-check."""

    exit_code = 1


class ParityError(SeqdeployError):
    """At least one backend disagreed with the reference. ``report`` holds every comparison."""

    exit_code = 1

    def __init__(self, message: str, report: Any = None) -> None:
        super().__init__(message)
        self.report = report


class BackendUnavailable(SeqdeployError):
    """A requested backend cannot run on this machine; the message names what to install."""

    exit_code = 3


class Interrupted(SeqdeployError):
    """The run was interrupted (SIGINT or SIGTERM). The artifact being made is not recorded or renamed into
    place; one the same command had already committed (``optimize --int8 --fp16``: int8) stays, complete
    and proven, and the CLI names it. The exit status is 130 for both signals.
    """

    exit_code = 130


class InternalError(Exception):
    """A bug in seqdeploy. Not a :class:`SeqdeployError`: it is never the user's input."""

    exit_code: ClassVar[int] = 70
