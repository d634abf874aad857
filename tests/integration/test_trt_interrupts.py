"""An interrupted ``optimize --fp16`` or ``compile --plan-only`` records nothing and leaves nothing behind
(exit 130), whether by Ctrl-C at the last moment before the commit or by SIGTERM while paused there."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

LSTM_LEN = {"export": {"lengths": True}}


def snapshot(d: Path) -> tuple[str, list[str]]:
    return (d / "manifest.json").read_text(), sorted(str(p.relative_to(d)) for p in d.rglob("*"))


def run(args: list[str], **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "seqdeploy", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **env},
    )


@pytest.mark.parametrize(
    ("args", "point"),
    [(["optimize", "--fp16"], "optimize:fp16-written"), (["compile", "--plan-only"], "compile:kit-written")],
    ids=["fp16", "plan"],
)
def test_ctrl_c_before_the_commit_records_nothing(export_tiny, copy_export, args, point):
    d = copy_export(export_tiny(**LSTM_LEN))
    before = snapshot(d)
    p = run([args[0], str(d), *args[1:]], SEQDEPLOY_FAULT_AT=point, SEQDEPLOY_FAULT_ACTION="interrupt")
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 130, out
    assert snapshot(d) == before


def test_sigterm_while_the_kit_is_staged_records_nothing(export_tiny, copy_export, tmp_path):
    d = copy_export(export_tiny(**LSTM_LEN))
    before = snapshot(d)
    ready = tmp_path / "ready"
    p = run(
        ["compile", str(d), "--plan-only"],
        SEQDEPLOY_FAULT_AT="compile:kit-written",
        SEQDEPLOY_FAULT_READY=str(ready),
        SEQDEPLOY_FAULT_PAUSE_S="60",
    )
    deadline = time.monotonic() + 120
    while not ready.exists() and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ready.exists(), p.communicate()[0]
    staged = [x for x in d.iterdir() if x.name.startswith(".trt.")]
    assert staged and (staged[0] / "golden.json").is_file()  # the whole kit was written, not yet committed
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 130, out
    assert snapshot(d) == before
