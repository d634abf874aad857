"""Memory estimates made *before* anything is allocated: refuse what cannot fit, with the figures.

A ``hidden_size`` of 10⁹ or a ``verify --seq 10000000 --batch 64`` used to end inside torch's or
numpy's allocator (a traceback, or minutes of swapping). Every stage that allocates in proportion to a
user-given size asks this module first and raises :class:`~seqdeploy.errors.ResourceLimitError`
(exit 2) with the estimate, the limit, and how to change either.

The estimates are deliberately simple upper-ish bounds (weights × the copies a stage holds; activations
of every input, output and recurrent gate buffer × the copies a verify case holds), not allocator
models: their job is to tell 10 MB from 10 GB. The limit is ``--max-memory-gb``, else the environment
variable ``SEQDEPLOY_MAX_MEMORY_GB``, else 80 % of the memory available when the command starts.
Stdlib only.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from seqdeploy.errors import ResourceLimitError, UsageError

if TYPE_CHECKING:
    from seqdeploy.config import ModelConfig, PipelineConfig
    from seqdeploy.spec import IOSpec, TensorSpec

__all__ = [
    "ENV_VAR",
    "activation_bytes",
    "check_bytes",
    "check_export_budget",
    "check_sweep_budget",
    "check_user_model_budget",
    "format_bytes",
    "memory_limit_bytes",
    "parameter_count",
]

ENV_VAR = "SEQDEPLOY_MAX_MEMORY_GB"
_FRACTION = 0.8
_FLOAT = 4
# Copies of the weights an export holds at its peak: the eager model, the traced copy (cell stacks),
# the exporter's graph and serialized proto, the saved state_dict, and the self-check's ORT session
# and torch runner.
_EXPORT_WEIGHT_COPIES = 6
# Copies of one case's tensors a verify holds at its peak: the feeds, the reference's and the backend's
# outputs (numpy and framework side), and the comparison's float64 difference arrays.
_CASE_COPIES = 6


def format_bytes(n: float) -> str:
    """``1.5 GB``-style (decimal units, as ``free -h`` users read them)."""
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"  # pragma: no cover - the loop always returns


def _available_bytes() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
    except (OSError, ValueError, AttributeError):
        return 8 * 10**9  # unknown platform: assume a small machine


def memory_limit_bytes(max_memory_gb: float | None = None) -> int:
    """The limit in bytes: ``max_memory_gb``, else ``$SEQDEPLOY_MAX_MEMORY_GB``, else 80 % of available."""
    return _limit(max_memory_gb)[0]


def _limit(max_memory_gb: float | None) -> tuple[int, str]:
    """The limit in bytes and where it came from (for the message)."""
    source = "--max-memory-gb"
    if max_memory_gb is None and (env := os.environ.get(ENV_VAR)):
        source = ENV_VAR
        try:
            max_memory_gb = float(env)
        except ValueError:
            raise UsageError(f"{ENV_VAR}={env!r}: expected a number of gigabytes, e.g. 16") from None
    if max_memory_gb is not None:
        if not math.isfinite(max_memory_gb) or max_memory_gb <= 0:
            raise UsageError(f"{source} {max_memory_gb}: expected a number of gigabytes > 0")
        return int(max_memory_gb * 10**9), f"set by {source}"
    return int(_available_bytes() * _FRACTION), f"80 % of available memory; raise it with --max-memory-gb or {ENV_VAR}"


def parameter_count(model: ModelConfig) -> int:
    """Parameters of a zoo model: embedding, every recurrent layer and direction, and the head.

    A ``source = "python"`` model has no sizes in its config: it is measured by building it on the meta
    device (:func:`seqdeploy.models.user.meta_parameter_bytes`) and checked with
    :func:`check_user_model_budget`.
    """
    gates = {"rnn": 1, "gru": 3, "lstm": 4}[model.base_cell]
    dirs = model.num_directions
    total = 0
    if model.embedding is not None:
        total += model.embedding.vocab_size * model.embedding.dim
    in_size = model.feature_size
    for size in model.layer_sizes:
        total += dirs * gates * size * (in_size + size + 2)
        # nn.RNN/GRU/LSTM feed layer k+1 both directions; cell stacks (unidirectional) the hidden state
        in_size = size * dirs
    if model.head.task != "none" and model.head.num_classes:
        total += (model.layer_sizes[-1] * dirs + 1) * model.head.num_classes
    return total


def activation_bytes(spec: IOSpec, batch: int, seq: int, model: ModelConfig | None = None) -> int:
    """Bytes of one inference's tensors: every input and output of ``spec`` at ``batch``×``seq``, plus the
    recurrent layers' per-step outputs and gate projections when the zoo ``model`` is known.
    """
    sizes = {"batch": batch, "seq": seq}
    total = 0
    for t in (*spec.inputs, *spec.outputs):
        n = 1
        for d in t.dims:
            n *= d if isinstance(d, int) else sizes.get(d, 1)
        total += n * (8 if t.dtype == "int64" else _FLOAT)
    if model is not None and not model.is_python:
        gates = {"rnn": 1, "gru": 3, "lstm": 4}[model.base_cell]
        if model.embedding is not None:
            total += batch * seq * model.embedding.dim * _FLOAT
        for size in model.layer_sizes:
            # Y of the layer, and the input projections ONNX Runtime computes for all steps at once.
            total += batch * seq * size * model.num_directions * (1 + gates) * _FLOAT
    return total


def check_bytes(needed: int, what: str, fix: str, *, max_memory_gb: float | None = None) -> None:
    """Raise :class:`ResourceLimitError` if ``needed`` exceeds the limit (naming ``what`` and the ``fix``)."""
    limit, source = _limit(max_memory_gb)
    if needed > limit:
        raise ResourceLimitError(
            f"{what} needs an estimated {format_bytes(needed)} of memory, over the limit of {format_bytes(limit)} "
            f"({source}). {fix}"
        )


def _worst_case(spec: IOSpec, shapes: Iterable[tuple[int, int]], model: ModelConfig | None) -> tuple[int, int, int]:
    worst = (0, 0, 0)
    for batch, seq in shapes:
        n = activation_bytes(spec, batch, seq, model)
        if n > worst[0]:
            worst = (n, batch, seq)
    return worst


def check_export_budget(cfg: PipelineConfig, opts: object, *, max_memory_gb: float | None = None) -> None:
    """Refuse an export whose weights, or whose self-check's largest case, cannot fit in memory.

    ``opts`` is the self-check's :class:`~seqdeploy.parity.run.VerifyOptions` (batches and seqs).
    """
    from seqdeploy.spec import spec_from_config

    weights = parameter_count(cfg.model) * _FLOAT
    check_bytes(
        weights * _EXPORT_WEIGHT_COPIES,
        f"exporting this model ({parameter_count(cfg.model):,} parameters, {format_bytes(weights)} of fp32 weights)",
        "Check [model] sizes (hidden_size, num_layers, embedding.vocab_size/dim).",
        max_memory_gb=max_memory_gb,
    )
    batches = getattr(opts, "batches", None) or (1,)
    seqs = getattr(opts, "seqs", None) or (1,)
    spec = spec_from_config(cfg)
    needed, batch, seq = _worst_case(spec, ((b, s) for b in batches for s in seqs), cfg.model)
    check_bytes(
        weights * _EXPORT_WEIGHT_COPIES + needed * _CASE_COPIES,
        f"the export's self-check at batch {batch}, seq {seq} (seq = max([shapes] seq, 64))",
        "Lower the largest [shapes] seq (it is the longest sequence the export is proven and served at).",
        max_memory_gb=max_memory_gb,
    )


def check_user_model_budget(
    weights_bytes: int | None,
    inputs: Sequence[TensorSpec],
    spec: IOSpec | None,
    opts: object,
    *,
    max_memory_gb: float | None = None,
) -> None:
    """Refuse the export of a user's module (``source = "python"``) that cannot fit in memory.

    Called twice: before the module's weights are allocated (``weights_bytes`` measured on the meta
    device, or the checkpoint's size, or ``None`` when neither is known; only the inputs are known, so the
    self-check's inputs are sized), and once its outputs are known (``spec``), for the whole self-check.
    ``opts`` is the self-check's :class:`~seqdeploy.parity.run.VerifyOptions`.
    """
    from seqdeploy.spec import IOSpec

    weights = weights_bytes or 0
    if weights_bytes is not None:
        check_bytes(
            weights * _EXPORT_WEIGHT_COPIES,
            f"exporting your module ({format_bytes(weights)} of weights and buffers)",
            "Check the sizes in [model] kwargs.",
            max_memory_gb=max_memory_gb,
        )
    io = spec if spec is not None else IOSpec(inputs=tuple(inputs), outputs=())
    batches = getattr(opts, "batches", None) or (1,)
    seqs = getattr(opts, "seqs", None) or (1,)
    # The probe runs (batch 2/3, seq 5/7) are smaller than the self-check's largest case.
    needed, batch, seq = _worst_case(io, ((b, s) for b in (*batches, 3) for s in (*seqs, 7)), None)
    check_bytes(
        weights * _EXPORT_WEIGHT_COPIES + needed * _CASE_COPIES,
        f"the export's self-check at batch {batch}, seq {seq} (seq = max([shapes] seq, 64))",
        "Lower the largest [shapes] seq, or the static sizes in [io.inputs] dims.",
        max_memory_gb=max_memory_gb,
    )


def check_sweep_budget(
    spec: IOSpec,
    shapes: Iterable[tuple[int, int]],
    model: ModelConfig | None,
    weights_bytes: int,
    *,
    copies: int = _CASE_COPIES,
    what: str = "verify",
    max_memory_gb: float | None = None,
) -> None:
    """Refuse a verify/profile sweep whose largest (batch, seq) case cannot fit, before any case runs."""
    needed, batch, seq = _worst_case(spec, shapes, model)
    check_bytes(
        weights_bytes * 3 + needed * copies,
        f"{what} at batch {batch}, seq {seq}",
        "Choose smaller --batch/--seq values, or pass --max-memory-gb if this machine really has the memory.",
        max_memory_gb=max_memory_gb,
    )
