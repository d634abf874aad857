"""Packages for the package/runtime tests: tiny models exported once and packaged once per session.

``package_for(name, tmp_path_factory, export_tiny)`` returns ``(bundle_dir, package_dir)``; the package is
cached for the session, so tests that break a package must copy it first (``copy_package``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from seqdeploy.package.writer import PackageOptions, write_package

VOCAB = [
    "<pad>",
    "<unk>",
    "the",
    "a",
    "film",
    "was",
    "good",
    "bad",
    "not",
    "great",
    ",",
    "!",
    "movie",
    "fine",
    "plot",
    ".",
]

# name -> (export_tiny overrides, PackageOptions fields). Together they cover: token ids + lengths + LSTM
# states + text + labels (classifier pooling the last state), a batch-first GRU tagger, a bidirectional
# model (no stream model), a cell stack with per-layer states, and a model without state inputs.
MODELS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "lstm_text": (
        {
            "num_layers": 2,
            "embedding": {"vocab_size": len(VOCAB), "dim": 4},
            "head": {"task": "classify", "num_classes": 3, "labels": ["neg", "neutral", "pos"]},
            "export": {"lengths": True},
        },
        {"variants": ("fp32", "int8")},
    ),
    "gru_tagger": (
        {
            "cell": "gru",
            "batch_first": True,
            "embedding": {"vocab_size": 20, "dim": 4},
            "head": {"task": "tag", "num_classes": 3},
            "export": {"lengths": True},
        },
        {},
    ),
    "bidir": ({"bidirectional": True, "num_layers": 2}, {}),
    "cells": ({"cell": "lstm_cell", "hidden_sizes": [4, 3]}, {}),
    "nostate": ({"cell": "rnn_tanh", "export": {"initial_state": False}}, {}),
}

_CACHE: dict[str, tuple[Path, Path]] = {}


def vocab_file(root: Path) -> Path:
    path = root / "vocab.txt"
    if not path.exists():
        path.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return path


def package_for(
    name: str, factory: pytest.TempPathFactory, export_tiny: Callable[..., Path], **extra: Any
) -> tuple[Path, Path]:
    """(export dir, package dir) of one of :data:`MODELS`, built once per session."""
    key = f"{name}:{sorted(extra.items())}"
    if key not in _CACHE:
        overrides, opts = MODELS[name]
        bundle = export_tiny(**overrides)
        root = factory.mktemp(f"pkg-{name}")
        options = {"name": name, **opts, **extra}
        if name == "lstm_text":
            options.setdefault("vocab", vocab_file(root))
        out = root / name
        write_package(bundle, out, PackageOptions(**options))
        _CACHE[key] = (bundle, out)
    return _CACHE[key]


def copy_package(src: Path, dst_root: Path) -> Path:
    """A copy of a package that a test may break."""
    dst = dst_root / src.name
    shutil.copytree(src, dst)
    return dst


BLOCK_PRELUDE = """
import importlib.abc, sys
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None
sys.meta_path.insert(0, _Block())
"""


def run_blocked(code: str, blocked: tuple[str, ...], *, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter in which importing any of ``blocked`` fails."""
    prelude = f"BLOCKED = {set(blocked)!r}\n" + BLOCK_PRELUDE
    return subprocess.run(
        [sys.executable, "-c", prelude + code], capture_output=True, text=True, cwd=cwd, timeout=300, check=False
    )
