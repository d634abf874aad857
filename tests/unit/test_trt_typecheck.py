"""The type check of TensorRT calls bites: mypy with the repaired TensorRT stubs (``typings/``, made by
``scripts/typings.py``, which ``scripts/check`` runs before ``scripts/test`` in CI) rejects a misspelled
method and a wrong argument type, and accepts the same calls spelled right. Skipped, saying why, when
``typings/`` has not been made (tests never touch the network).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TYPINGS = REPO / "typings"

GOOD = """
import tensorrt as trt

def run(ctx: trt.IExecutionContext, stream: int) -> bool:
    ok: bool = ctx.execute_async_v3(stream)
    return ok

def workspace(config: trt.IBuilderConfig) -> None:
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 2 << 30)
"""

BAD = """
import tensorrt as trt

def run(ctx: trt.IExecutionContext, stream: int) -> bool:
    ok: bool = ctx.execute_async_v9(stream)
    return ok

def workspace(config: trt.IBuilderConfig) -> None:
    config.set_memory_pool_limit("workspace", 2 << 30)

def untyped(ctx):
    return ctx.execute_async_v3(0)
"""


def _mypy(tmp_path: Path, source: str, monkeypatch: pytest.MonkeyPatch) -> tuple[str, int]:
    api = pytest.importorskip("mypy.api")
    if not (TYPINGS / "tensorrt" / "__init__.pyi").is_file():
        pytest.skip(
            "typings/ is missing: run scripts/check (or python scripts/typings.py) to fetch the TensorRT stubs"
        )
    (tmp_path / "uses_trt.py").write_text(textwrap.dedent(source), encoding="utf-8")
    # The project's own settings (pyproject.toml: strict, mypy_path, the stubs' override), not a copy of
    # them: loosening the project's configuration must fail this test. mypy resolves mypy_path from the
    # working directory, so it runs from the repository root.
    monkeypatch.chdir(REPO)
    out, err, status = api.run(
        [
            "--config-file",
            str(REPO / "pyproject.toml"),
            "--cache-dir",
            str(tmp_path / ".mypy_cache"),
            str(tmp_path / "uses_trt.py"),
        ]
    )
    return out + err, status


def test_mypy_rejects_a_misspelled_tensorrt_call_and_a_wrong_argument(tmp_path, monkeypatch):
    out, status = _mypy(tmp_path, BAD, monkeypatch)
    assert status == 1, out
    assert '"IExecutionContext" has no attribute "execute_async_v9"; maybe "execute_async_v3"?' in out
    assert 'Argument 1 to "set_memory_pool_limit" of "IBuilderConfig" has incompatible type "str"' in out
    assert "Function is missing a type annotation" in out  # the project's strict = true is in force


def test_mypy_accepts_the_same_calls_spelled_right(tmp_path, monkeypatch):
    out, status = _mypy(tmp_path, GOOD, monkeypatch)
    assert status == 0, out
