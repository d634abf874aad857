"""Fixtures of the fault-injection suite: a CLI runner per test and tiny exports shared per session.

The shared exports are made in-process once (setup is not what these tests prove); every test works
on its own copy, through subprocesses.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import tiny_raw
from tests.faults._cli import Cli, write_config

TINY = tiny_raw()
"""LSTM 5 -> 4, one layer, initial states, shapes batch [1, 3, 6] seq [1, 6, 24]: a ~3 s export."""


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    c = Cli(tmp_path / "cli")
    yield c
    c.close()


@pytest.fixture(scope="session")
def tiny_toml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_config(tmp_path_factory.mktemp("configs") / "tiny.toml", TINY)


@pytest.fixture(scope="session")
def slow_check_toml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cell stack proven at seq 1500: its self-check runs ~2 s (a Python loop per step), long enough to
    land signals inside it at a sweep of delays.
    """
    raw = tiny_raw(cell="lstm_cell", hidden_sizes=[4, 3], shapes={"batch": [1, 3, 6], "seq": [1, 6, 1500]})
    return write_config(tmp_path_factory.mktemp("configs") / "slow.toml", raw)


@pytest.fixture(scope="session")
def gru_toml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A different model (GRU 5 -> 3) with the same inputs: its bundle cannot be mistaken for TINY's."""
    return write_config(tmp_path_factory.mktemp("configs") / "gru.toml", tiny_raw(cell="gru", hidden_size=3))


@pytest.fixture(scope="session")
def _bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from seqdeploy.config_io import config_from_dict
    from seqdeploy.export.stage import export_model
    from seqdeploy.optimize import quantize_int8

    root = tmp_path_factory.mktemp("fault-bundles")
    plain = root / "plain"
    export_model(config_from_dict(TINY), plain)
    int8 = root / "int8"
    shutil.copytree(plain, int8)
    quantize_int8(int8)
    return {"plain": plain, "int8": int8}


@pytest.fixture(scope="session")
def other_bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``same-spec``: TINY with other weights (model.onnx/model.pt that fit TINY's manifest's spec);
    ``embedding``: token ids in (a ``value_range`` to widen).
    """
    from seqdeploy.config_io import config_from_dict
    from seqdeploy.export.stage import export_model

    root = tmp_path_factory.mktemp("other-bundles")
    out = {"same-spec": root / "same-spec", "embedding": root / "embedding"}
    export_model(config_from_dict(tiny_raw(seed=7)), out["same-spec"])
    export_model(config_from_dict(tiny_raw(embedding={"vocab_size": 20, "dim": 5})), out["embedding"])
    return out


@pytest.fixture
def bundle_copy(_bundles: dict[str, Path], tmp_path: Path) -> Callable[..., Path]:
    """``bundle_copy(dest=None, int8=False)``: a private copy of the tiny export (with an int8 variant)."""

    def copy(dest: Path | None = None, *, int8: bool = False) -> Path:
        dest = dest or tmp_path / "work" / "exp"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(_bundles["int8" if int8 else "plain"], dest)
        return dest

    return copy
