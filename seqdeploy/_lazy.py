"""Lazy imports of optional heavy dependencies with an actionable error when they are missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from seqdeploy.errors import BackendUnavailable


def require(module: str, *, extra: str, purpose: str = "") -> ModuleType:
    """Import ``module`` or raise :class:`BackendUnavailable` naming the pip extra that provides it.

    Args:
        module: Importable module name, e.g. ``"onnxruntime"``.
        extra: The seqdeploy extra that installs it, e.g. ``"cpu"``.
        purpose: What the module is needed for, for the message.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        why = f" (needed for {purpose})" if purpose else ""
        raise BackendUnavailable(
            f"Python module '{module}' is not installed{why}: {exc}. Install it with: pip install 'seqdeploy[{extra}]'"
        ) from exc
