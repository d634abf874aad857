"""Trace a module to ONNX with truly dynamic ``seq`` and ``batch`` axes.

torch 2.13 facts (``../shared/docs/export-notes.md``): the dynamo exporter silently fixes ``seq`` for
``nn.RNN`` and folds it into a Reshape for time-major GRU/LSTM, so seqdeploy uses the TorchScript
exporter (``dynamo=False``) with ``dynamic_axes`` taken from the IOSpec — states included, since their
batch axis (1) is where a forgotten axis bakes the batch in (onnxruntime#19270).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn
from torch.jit import TracerWarning  # type: ignore[attr-defined]

from seqdeploy.errors import ExportError
from seqdeploy.feeds import make_feeds
from seqdeploy.spec import IOSpec

__all__ = ["TRACE_BATCH", "TRACE_SEQ", "export_onnx"]

# Traced at a batch and a seq that no check uses, so a value baked in at trace time cannot hide.
TRACE_BATCH = 2
TRACE_SEQ = 5

# Exactly the warnings torch 2.13's TorchScript exporter emits for correct RNN exports
# (export-notes.md, "Exporter choice"); anything else still surfaces.
_EXPECTED_WARNINGS: tuple[tuple[type[Warning], str], ...] = (
    (DeprecationWarning, r"You are using the legacy TorchScript-based ONNX export"),
    (DeprecationWarning, r"The feature will be removed"),
    (UserWarning, r"Exporting a model to ONNX with a batch_size other than 1"),
    (TracerWarning, r"Converting a tensor to a Python boolean"),
    # GRU/RNN with pack_padded_sequence read the packed batch sizes as Python ints; the exporter turns
    # pack -> RNN -> pad into `sequence_lens` anyway, and parity at untraced shapes proves it.
    (TracerWarning, r"Converting a tensor to a Python integer"),
    (TracerWarning, r"Iterating over a tensor might cause the trace to be incorrect"),
)


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[list[str]]:
    """Capture C++-level stderr (the exporter prints PackPadded shape-inference notes there)."""
    captured: list[str] = []
    try:
        fd = 2
        saved = os.dup(fd)
    except OSError:  # no real fd 2 (some embedded interpreters): nothing to capture
        yield captured
        return
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), fd)
        try:
            yield captured
        finally:
            os.dup2(saved, fd)
            os.close(saved)
            tmp.seek(0)
            captured.append(tmp.read().decode("utf-8", "replace"))


def export_onnx(module: nn.Module, spec: IOSpec, path: Path, *, opset: int) -> None:
    """Trace ``module`` (inputs and outputs in IOSpec order) to ``path``.

    Raises:
        ExportError: The exporter failed; the message carries its error and its C++ log.
    """
    feeds = make_feeds(spec, TRACE_BATCH, TRACE_SEQ, seed=1234)
    args = tuple(torch.from_numpy(feeds[n]) for n in spec.input_names)
    module.eval()
    error: Exception | None = None
    with warnings.catch_warnings(), _quiet_stderr() as log:
        for category, pattern in _EXPECTED_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern, category=category)
        try:
            torch.onnx.export(
                module,
                args,
                str(path),
                dynamo=False,
                opset_version=opset,
                input_names=list(spec.input_names),
                output_names=list(spec.output_names),
                dynamic_axes=spec.dynamic_axes(),
                do_constant_folding=True,
            )
        except Exception as exc:  # noqa: BLE001 - the exporter raises anything from RuntimeError to SymbolicValueError
            error = exc
    if error is not None:
        detail = "\n".join(s for s in log if s.strip())
        raise ExportError(f"torch.onnx.export failed: {type(error).__name__}: {error}\n{detail}".rstrip()) from error
