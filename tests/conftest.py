"""Shared fixtures: the tiny-model table, a session cache of exports, and marker auto-skips.

Markers: ``gpu`` (needs CUDA), ``trt`` (needs TensorRT), ``slow``. Tests so marked are skipped
automatically when the machine cannot run them, so "can run" stays separate from "selected".
"""

from __future__ import annotations

import copy
import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from seqdeploy.config import PipelineConfig
from seqdeploy.config_io import config_from_dict

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    has_cuda = _cuda_available()
    has_trt = importlib.util.find_spec("tensorrt") is not None
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))
        if "trt" in item.keywords and not has_trt:
            item.add_marker(pytest.mark.skip(reason="needs TensorRT (pip install 'seqdeploy[gpu]' on a GPU machine)"))


def tiny_raw(**model: Any) -> dict[str, Any]:
    """A tiny config dict: LSTM 5 -> 4, one layer, small shapes. Keyword args override [model] keys;
    pass ``export={...}`` / ``shapes={...}`` for the other tables."""
    export = model.pop("export", {})
    shapes = model.pop("shapes", {"batch": [1, 3, 6], "seq": [1, 6, 24]})
    base: dict[str, Any] = {"cell": "lstm", "input_size": 5, "hidden_size": 4, "num_layers": 1}
    base.update(model)
    if "hidden_sizes" in base:
        base.pop("hidden_size", None)
        base.pop("num_layers", None)
    if "embedding" in base:
        base.pop("input_size", None)
    return {"model": base, "export": export, "shapes": shapes}


def tiny_config(**model: Any) -> PipelineConfig:
    """:func:`tiny_raw` validated into a config."""
    return config_from_dict(tiny_raw(**model))


@pytest.fixture(scope="session")
def export_tiny(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``export_tiny(**model_overrides) -> export dir``, cached per config for the whole session.

    Tests that mutate an export must copy it first (``copy_export``).
    """
    from seqdeploy.export.stage import export_model

    cache: dict[str, Path] = {}
    root = tmp_path_factory.mktemp("exports")

    def make(**overrides: Any) -> Path:
        raw = tiny_raw(**copy.deepcopy(overrides))
        key = json.dumps(raw, sort_keys=True)
        if key not in cache:
            out = root / f"e{len(cache)}"
            export_model(config_from_dict(raw), out)
            cache[key] = out
        return cache[key]

    return make


@pytest.fixture
def copy_export(tmp_path: Path) -> Callable[[Path], Path]:
    """Copy an export dir into this test's tmp_path (so it can be broken on purpose)."""
    import shutil

    def copy_(src: Path) -> Path:
        dst = tmp_path / f"copy-{src.name}"
        shutil.copytree(src, dst)
        return dst

    return copy_
