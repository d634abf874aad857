"""Reading user ``.npz`` files safely: never unpickle, and say what the file really is when it is not one.

``numpy.load`` answers a ``.npy`` with a bare array, a text file with "This file contains pickled (object)
data… load it unsafely", and an object array with advice to pass ``allow_pickle=True``. None of that
is what a user who passed the wrong file needs to read, and the pickle advice is actively dangerous.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from seqdeploy.errors import UsageError

__all__ = ["read_npz"]

_NPY_MAGIC = b"\x93NUMPY"


def _what_is(path: Path) -> str:
    try:
        with path.open("rb") as fh:
            head = fh.read(512)
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    if head.startswith(_NPY_MAGIC):
        return "a single .npy array, not an .npz archive (save with np.savez(path, input=..., ...))"
    if not head:
        return "empty"
    if head.startswith(b"PK"):
        return "a zip file that numpy cannot read as .npz"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "a binary file that is not an .npz archive"
    return "a text file, not an .npz archive (an .npz is a zip of .npy arrays: np.savez(path, input=...))"


def read_npz(path: str | Path, *, what: str = "inputs") -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` by name, read with ``allow_pickle=False``.

    Args:
        path: The file.
        what: What the file holds, for messages (``"inputs"``, ``"expected outputs"``).

    Raises:
        UsageError: The file is missing, a directory, not an ``.npz`` (says what it is instead), holds
            object arrays, or cannot be read.
    """
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path}: is a directory; expected an .npz file of {what}")
    if not path.exists():
        raise UsageError(f"{path}: {what} file not found")
    if not zipfile.is_zipfile(path):
        raise UsageError(f"{path}: is {_what_is(path)}; expected an .npz file of {what}")
    try:
        with np.load(path, allow_pickle=False) as data:
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise UsageError(f"{path}: is {_what_is(path)}; expected an .npz file of {what}")
            return {k: data[k] for k in data.files}
    except UsageError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "object" in str(exc).lower():
            raise UsageError(
                f"{path}: holds object (pickled) arrays, which seqdeploy never loads; save plain numeric "
                f"arrays with np.savez(path, input=np.asarray(ids, dtype=np.int64), ...)"
            ) from None
        raise UsageError(f"{path}: not a readable .npz of {what} ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise UsageError(f"{path}: not a readable .npz of {what} ({type(exc).__name__}: {exc})") from None
