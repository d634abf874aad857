"""Memory estimates made *before* anything is allocated: refuse what cannot fit, with the figures.

A ``hidden_size`` of 10⁹ or a ``verify --seq 10000000 --batch 64`` used to end inside torch's or
numpy's allocator (a traceback, or minutes of swapping). Every stage that allocates in proportion to a
user-given size asks this module first and raises :class:`~seqdeploy.errors.ResourceLimitError`
(exit 2) with the estimate, the limit, and how to change either.

The estimates are deliberately simple upper-ish bounds (weights × the copies a stage holds; activations
of every input, output and recurrent gate buffer × the copies a verify case holds), not allocator
models: their job is to tell 10 MB from 10 GB. The limit is ``--max-memory-gb``, else the environment
variable ``SEQDEPLOY_MAX_MEMORY_GB``, else 80 % of the memory available when the command starts (the
machine's, no more than what its container's cgroup and ``ulimit -v`` allow).
Stdlib only.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
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
    "parameter_count",
]

ENV_VAR = "SEQDEPLOY_MAX_MEMORY_GB"
_FRACTION = 0.8
_UNLIMITED = 1 << 60
"""cgroup v1 writes "no limit" as a huge page-rounded number (9223372036854771712); v2 writes ``max``."""
_FLOAT = 4
# Copies of the weights an export holds at its peak: the eager model, the traced copy (cell stacks),
# the exporter's graph and serialized proto, the saved state_dict, and the self-check's ORT session
# and torch runner.
_EXPORT_WEIGHT_COPIES = 6
# Copies of one case's tensors a verify holds at its peak: the feeds, the reference's and the backend's
# outputs (numpy and framework side), and the comparison's float64 difference arrays.
_CASE_COPIES = 6
# What a bundle's files hold besides the weights (ONNX graph structure, the pickle's framing): a margin so
# the export's estimate of its files is never below their real size.
_FILE_OVERHEAD = 1 << 20


def format_bytes(n: float) -> str:
    """``1.5 GB``-style (decimal units, as ``free -h`` users read them)."""
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"  # pragma: no cover - the loop always returns


def _meminfo_available(proc: Path) -> int | None:
    try:
        with open(proc / "meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _read_int(path: Path) -> int | None:
    """An integer file of the cgroup tree (``max``, or v1's huge "no limit" value: ``None``)."""
    try:
        value = int(path.read_text(encoding="ascii").strip())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return value if value < _UNLIMITED else None


def _stat_field(path: Path, name: str) -> int:
    try:
        for line in path.read_text(encoding="ascii").splitlines():
            key, _, value = line.partition(" ")
            if key == name:
                return int(value)
    except (OSError, UnicodeDecodeError, ValueError):
        pass
    return 0


def _cgroup_headroom(proc: Path, sys_cgroup: Path) -> int | None:
    """What this process's memory cgroups still allow (their limit − usage + reclaimable page cache), the
    tightest over the cgroup and its ancestors; ``None`` without a limit.

    Inside a container ``MemAvailable`` is the host's: a 4 GB container on a 512 GB host would otherwise be
    allowed 400 GB and end killed by the OOM killer instead of refused. cgroup v2 (``memory.max``) and v1
    (``memory.limit_in_bytes``) are both read.
    """
    try:
        lines = (proc / "self" / "cgroup").read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    best: int | None = None

    def consider(limit: int | None, usage: int | None, reclaimable: int) -> None:
        nonlocal best
        if limit is not None:
            room = max(0, limit - (usage or 0) + reclaimable)
            best = room if best is None else min(best, room)

    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        if controllers == "":  # v2: the unified hierarchy; the limits of every ancestor apply too
            leaf = sys_cgroup / rel.strip("/")
            for d in (leaf, *(p for p in leaf.parents if p.is_relative_to(sys_cgroup))):
                consider(
                    _read_int(d / "memory.max"),
                    _read_int(d / "memory.current"),
                    _stat_field(d / "memory.stat", "inactive_file"),
                )
        elif "memory" in controllers.split(","):  # v1: the memory controller's own hierarchy
            root = sys_cgroup / "memory"
            for d in (root / rel.strip("/"), root):
                consider(
                    _read_int(d / "memory.limit_in_bytes"),
                    _read_int(d / "memory.usage_in_bytes"),
                    _stat_field(d / "memory.stat", "total_inactive_file"),
                )
    return best


def _address_space_headroom(proc: Path) -> int | None:
    """``RLIMIT_AS`` (``ulimit -v``) minus this process's current virtual size (``None``: unlimited)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Linux
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY or soft < 0:
        return None
    vm = 0
    try:
        for line in (proc / "self" / "status").read_text(encoding="ascii").splitlines():
            if line.startswith("VmSize:"):
                vm = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        pass
    return max(0, soft - vm)


def _available_bytes(proc: Path = Path("/proc"), sys_cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """Memory this process can still use: the machine's ``MemAvailable``, no more than its cgroups'
    headroom (a container's limit) and its address-space limit (``ulimit -v``).
    """
    found = [
        x
        for x in (_meminfo_available(proc), _cgroup_headroom(proc, sys_cgroup), _address_space_headroom(proc))
        if x is not None
    ]
    if found:
        return min(found)
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
    except (OSError, ValueError, AttributeError):
        return 8 * 10**9  # unknown platform: assume a small machine


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
    return (
        int(_available_bytes() * _FRACTION),
        f"80 % of the memory available to this process (its container's limit included); raise it with "
        f"--max-memory-gb or {ENV_VAR}",
    )


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


def _self_check_shapes(
    opts: object, extra_batch: int | None = None, extra_seq: int | None = None
) -> list[tuple[int, int]]:
    batches = [*(getattr(opts, "batches", None) or (1,)), *([extra_batch] if extra_batch else [])]
    seqs = [*(getattr(opts, "seqs", None) or (1,)), *([extra_seq] if extra_seq else [])]
    return [(b, s) for b in batches for s in seqs]


_SELF_CHECK_FIX = (
    "Its longest seq is max([shapes] seq, 64): lower the largest [shapes] seq (the longest sequence the export "
    "is proven and served at), or pass --max-memory-gb if this machine really has the memory."
)


def check_export_budget(cfg: PipelineConfig, opts: object, *, max_memory_gb: float | None = None) -> None:
    """Refuse an export whose weights, or whose self-check's largest case, cannot fit in memory.

    ``opts`` is the self-check's :class:`~seqdeploy.parity.run.VerifyOptions` (batches and seqs). The
    self-check is estimated exactly as its own verify run will estimate it (:func:`check_sweep_budget`
    over the bundle's files: each graph file and ``model.pt`` hold the weights once), so it cannot refuse
    later — after the model was built — what was accepted here.
    """
    from seqdeploy.spec import spec_from_config

    weights = parameter_count(cfg.model) * _FLOAT
    check_bytes(
        weights * _EXPORT_WEIGHT_COPIES,
        f"exporting this model ({parameter_count(cfg.model):,} parameters, {format_bytes(weights)} of fp32 weights)",
        "Check [model] sizes (hidden_size, num_layers, embedding.vocab_size/dim), or pass --max-memory-gb if this "
        "machine really has the memory.",
        max_memory_gb=max_memory_gb,
    )
    graphs = 2 if cfg.export.step else 1
    check_sweep_budget(
        spec_from_config(cfg),
        _self_check_shapes(opts),
        cfg.model,
        weights * (graphs + 1) + _FILE_OVERHEAD,
        what="the export's self-check",
        fix=_SELF_CHECK_FIX,
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
    if spec is not None:
        # The whole self-check, estimated as its verify run will (model.onnx and model.pt: the weights twice).
        check_sweep_budget(
            spec,
            _self_check_shapes(opts, 3, 7),
            None,
            weights * 2 + _FILE_OVERHEAD,
            what="the export's self-check",
            fix="Lower the largest [shapes] seq, or the static sizes in [io.inputs] dims, or pass --max-memory-gb "
            "if this machine really has the memory.",
            max_memory_gb=max_memory_gb,
        )
        return
    # Only the inputs are known yet: the probe runs (batch 3, seq 7) and the self-check's inputs.
    needed, batch, seq = _worst_case(IOSpec(inputs=tuple(inputs), outputs=()), _self_check_shapes(opts, 3, 7), None)
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
    fix: str | None = None,
    max_memory_gb: float | None = None,
) -> None:
    """Refuse a verify/profile sweep whose largest (batch, seq) case cannot fit, before any case runs.

    The one estimate of a sweep: ``weights_bytes`` (the bundle's files) three times — the reference, the
    backend, the file being read — plus the largest case's tensors ``copies`` times. ``fix`` is the advice
    (default: the ``--batch``/``--seq`` options of verify and profile).
    """
    needed, batch, seq = _worst_case(spec, shapes, model)
    check_bytes(
        weights_bytes * 3 + needed * copies,
        f"{what} at batch {batch}, seq {seq}",
        fix or "Choose smaller --batch/--seq values, or pass --max-memory-gb if this machine really has the memory.",
        max_memory_gb=max_memory_gb,
    )
