"""``import seqdeploy`` and every ``--help`` must not import torch, onnxruntime or tensorrt (start-up time)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from seqdeploy.cli import COMMANDS

HEAVY = ("torch", "onnxruntime", "tensorrt", "onnx", "matplotlib")


def _loaded_after(code: str) -> list[str]:
    probe = f"{code}\nimport sys\nprint('LOADED:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("LOADED:"))
    return [m for m in line.removeprefix("LOADED:").split(",") if m]


def test_import_seqdeploy_is_light() -> None:
    assert _loaded_after("import seqdeploy; seqdeploy.load_config; seqdeploy.IOSpec") == []


@pytest.mark.parametrize("args", [["--help"], *[[name, "--help"] for name in COMMANDS]], ids=lambda a: " ".join(a))
def test_help_is_light_and_works(args: list[str]) -> None:
    code = (
        "from click.testing import CliRunner\nfrom seqdeploy.cli import cli\n"
        f"r = CliRunner().invoke(cli, {args!r})\nassert r.exit_code == 0, r.output\nassert 'Usage' in r.output"
    )
    assert _loaded_after(code) == []


def test_python_dash_m_runs() -> None:
    out = subprocess.run([sys.executable, "-m", "seqdeploy", "--version"], capture_output=True, text=True, check=True)
    assert "seqdeploy" in out.stdout


def test_lazy_public_names_resolve() -> None:
    import seqdeploy

    assert callable(seqdeploy.export_model)
    assert callable(seqdeploy.verify)
