"""Trace a module to ONNX with truly dynamic ``seq`` and ``batch`` axes.

torch 2.13 facts (``../shared/docs/export-notes.md``): the dynamo exporter silently fixes ``seq`` for
``nn.RNN`` and folds it into a Reshape for time-major GRU/LSTM, so seqdeploy uses the TorchScript
exporter (``dynamo=False``) with ``dynamic_axes`` taken from the IOSpec — states included, since their
batch axis (1) is where a forgotten axis bakes the batch in (onnxruntime#19270).
"""

from __future__ import annotations

import contextlib
import linecache
import os
import re
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
    # torch's own RNN code (nn.GRU/RNN/LSTM, pack_padded_sequence) reads the packed batch sizes and flags
    # as Python values; the exporter turns pack -> RNN -> pad into `sequence_lens` anyway, and parity at
    # untraced shapes proves it. The same warnings raised from a user's own code are not expected: see
    # _frozen_in_user_code.
    (TracerWarning, r"Converting a tensor to a Python boolean"),
    (TracerWarning, r"Converting a tensor to a Python integer"),
    (TracerWarning, r"Iterating over a tensor might cause the trace to be incorrect"),
)
_TORCH_DIR = os.path.join(os.path.dirname(os.path.realpath(torch.__file__)), "")


def _expected(w: warnings.WarningMessage) -> bool:
    message = str(w.message)
    return any(issubclass(w.category, cat) and re.match(pattern, message) for cat, pattern in _EXPECTED_WARNINGS)


def _outside_torch_tracer_warning(w: warnings.WarningMessage) -> bool:
    return issubclass(w.category, TracerWarning) and not os.path.realpath(w.filename).startswith(_TORCH_DIR)


def _frozen_in_user_code(caught: list[warnings.WarningMessage]) -> list[str]:
    """``file:line: `source` (what the tracer said)`` for every tracer warning raised outside torch itself.

    Outside torch, a tracer warning means the user's ``forward`` (or a library it calls) read a tensor's
    value in Python — ``if x.max() > 6:``, ``int(n)``, ``for row in x`` — and the trace froze the result: the
    graph takes the branch the trace inputs took, for every input. No check on random inputs is sure to
    notice (the self-check's inputs take the same branch), so this is refused unless the user opts in.
    """
    found: dict[tuple[str, int], str] = {}
    for w in caught:
        if not _outside_torch_tracer_warning(w):
            continue
        said = str(w.message).split(" might cause", 1)[0].split(". ", 1)[0].strip()
        line = linecache.getline(w.filename, w.lineno).strip()
        code = f" `{line}`" if line else ""
        found.setdefault((w.filename, w.lineno), f"{w.filename}:{w.lineno}:{code} ({said})")
    return list(found.values())


def _frozen_error(frozen: list[str]) -> ExportError:
    return ExportError(
        "your module reads tensor values in Python while it is traced, so the graph freezes what they were for "
        f"the trace's random inputs (batch {TRACE_BATCH}, seq {TRACE_SEQ}) — a branch taken on values is taken "
        "the same way for every input, and the self-check (random inputs too) may well not notice:\n  "
        + "\n  ".join(frozen)
        + "\nCompute it with tensor operations instead (torch.where, clamp, masks: the graph then computes it "
        "for each input). If the frozen value is right for every input you will serve, set [export] "
        "allow_tracer_warnings = true (the bundle records it, and every verify repeats this warning), and prove it "
        "with seqdeploy verify DIR --expected FILE.npz on real data (docs/your-model.md)."
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
    from seqdeploy.models.user import UserModel

    feeds = make_feeds(spec, TRACE_BATCH, TRACE_SEQ, seed=1234)
    args = tuple(torch.from_numpy(feeds[n]) for n in spec.input_names)
    module.eval()
    error: Exception | None = None
    # Every warning is recorded ("always": none is lost to the once-per-location registry), then sorted:
    # the expected ones are dropped, the user's frozen values judged, anything else shown as it was raised.
    with warnings.catch_warnings(record=True) as caught, _quiet_stderr() as log:
        warnings.simplefilter("always")
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
    user = module if isinstance(module, UserModel) else None
    frozen = _frozen_in_user_code(caught) if user is not None else []
    for w in caught:
        if not _expected(w) and not (user is not None and _outside_torch_tracer_warning(w)):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    if error is not None:
        detail = "\n".join(s for s in log if s.strip())
        raise ExportError(f"torch.onnx.export failed: {type(error).__name__}: {error}\n{detail}".rstrip()) from error
    if user is not None:
        if frozen and not user.allow_tracer_warnings:
            raise _frozen_error(frozen)
        user.tracer_warnings[:] = frozen
