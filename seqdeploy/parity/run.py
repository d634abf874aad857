"""``verify``: run every check mode for every backend against the reference and collect one report.

Modes (``docs/parity.md`` explains each and what bug it catches):

* ``full`` — whole sequences, every backend vs the reference.
* ``chunked`` — the sequence fed in k chunks with ``h_n``/``c_n`` carried into ``h0``/``c0``; equals the
  full run (vs itself, and vs the reference). Unidirectional models with state inputs only.
* ``batch`` — each row run alone equals that row inside the batch (baked batch, cross-row leaks).
* ``padding`` — (``lengths`` models) a padded row of length L equals the unpadded row of seq L, and
  outputs past L are zero.
* ``identities`` — (head ``none``) the last valid step of ``output`` equals the top layer of ``h_n``
  (forward half at the last step and backward half at the first step when bidirectional).
* ``step`` — (``--step`` exports) looping the step graph over the sequence equals the sequence graph.
* ``expected`` — (``--expected FILE.npz``) every backend against outputs the user computed with their own
  model, instead of the reference and the other modes.

For a ``source = "python"`` bundle the ``torch`` reference is the user's own module (imported from the
manifest's entry, which runs their code; ``no_import`` refuses that), and the modes adapt to a module
whose semantics seqdeploy does not know: ``chunked`` compares the state outputs and per-step outputs
(not pooled ones), ``padding`` compares the valid steps only, and ``identities`` does not apply.

Failures are collected, never raised one by one; :func:`verify` returns the report and the caller
decides (the CLI exits 1, export raises :class:`~seqdeploy.errors.ParityError`).
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seqdeploy.backends import BACKENDS, BaseRunner, get_backend, make_runner
from seqdeploy.budget import check_sweep_budget
from seqdeploy.config import ModelConfig
from seqdeploy.errors import InputError, UsageError
from seqdeploy.feeds import carry_state, check_feeds, make_feeds, select_rows, slice_seq
from seqdeploy.lint.findings import Finding
from seqdeploy.manifest import Bundle
from seqdeploy.npz import read_npz
from seqdeploy.parity.compare import DEFAULT_TOLERANCES, Tolerance, Tolerances, compare_tensor
from seqdeploy.parity.report import CaseResult, ParityReport, Skip
from seqdeploy.spec import BATCH, SEQ, IOSpec

__all__ = [
    "MODES",
    "ExpectedCase",
    "VerifyOptions",
    "default_sweep",
    "importing_backends",
    "load_expected",
    "load_inputs",
    "not_streamable_reason",
    "sweep_budget_facts",
    "tracer_warnings_note",
    "verify",
]

MODES: tuple[str, ...] = ("full", "chunked", "batch", "padding", "identities", "step")
Arrays = dict[str, np.ndarray]
Progress = Callable[[int, int], None]


def importing_backends() -> frozenset[str]:
    """Backends that build the torch model (``TorchRunner``): for a ``source = "python"`` bundle they import the
    user's module. Read from the registry — the backends whose factory is its torch factory — so that a new
    torch backend is never missed.
    """
    return frozenset(n for n, info in BACKENDS.items() if info.factory.__qualname__.startswith("_torch."))


def not_streamable_reason(b: Bundle) -> str:
    """Why a bundle cannot be fed a sequence in pieces with the state carried (:attr:`Bundle.streamable` is
    false): the one wording of verify's skipped ``chunked`` mode and profile's skipped streaming.
    """
    if b.bidirectional:
        return "a bidirectional model cannot be fed in pieces: its backward direction needs the whole sequence"
    if b.is_python:
        return "the module has no state pairs ([io] call / [io] state)"
    return "the graph has no state inputs (export.initial_state = false)"


def sweep_budget_facts(b: Bundle) -> tuple[ModelConfig | None, int]:
    """What :func:`seqdeploy.budget.check_sweep_budget` needs of a bundle: the zoo model's config (``None``
    for a user's module, whose size is its weights) and the bytes of its files.
    """
    return (None if b.is_python else b.config.model), sum(int(e["bytes"]) for e in b.manifest["files"].values())


def tracer_warnings_note(b: Bundle) -> str | None:
    """The warning every verify of a bundle exported with ``[export] allow_tracer_warnings = true`` repeats:
    values the user's forward read in Python were frozen at trace time, which random inputs may never show.
    """
    if not (b.is_python and b.config.export.allow_tracer_warnings):
        return None
    where = b.user_module.get("tracer_warnings") or []
    lines = "; ".join(str(x) for x in where) if where else "see the export's output"
    return (
        "exported with [export] allow_tracer_warnings = true: values your forward reads in Python were frozen at "
        f"trace time ({lines}); random inputs may never take the other branch, so check with --expected FILE.npz "
        "holding real data (docs/your-model.md)"
    )


@dataclass(frozen=True)
class ExpectedCase:
    """One ``--expected`` file: inputs and the outputs the user's own model computed for them."""

    name: str
    inputs: Mapping[str, np.ndarray]
    outputs: Mapping[str, np.ndarray]
    sizes: Mapping[str, int] | None = None
    """``{"batch": B, "seq": T}`` of the inputs, found once when the file is read (``None``: found when used)."""

    def shape(self, spec: IOSpec) -> tuple[int, int]:
        """``(batch, seq)`` of the case (the inputs checked against ``spec`` only if not done on reading)."""
        sizes = self.sizes if self.sizes is not None else check_feeds(spec, self.inputs)
        return sizes[BATCH], sizes.get(SEQ, 1)


@dataclass(frozen=True)
class VerifyOptions:
    """What to check. ``None`` fields take their defaults from the manifest's ``[shapes]``.

    Attributes:
        backends: Backends compared with the reference (the reference is added if missing).
        reference: The backend whose outputs are the truth (fp32 PyTorch by default).
        batches / seqs: The sweep; default :func:`default_sweep`.
        atol / rtol: Default tolerances (``None`` = per-precision defaults of each backend).
        atol_per_tensor / rtol_per_tensor: Overrides by tensor name (``h_n`` also covers ``h_n.k``).
        modes: Which check modes to run (those that do not apply are reported as skipped).
        inputs: User feeds (e.g. from ``--inputs FILE.npz``) replacing the random sweep.
        chunks: Number of chunks in ``chunked`` mode.
        max_rows: Rows checked one by one in ``batch`` and ``padding`` modes.
        seed: Seed of the random feeds.
        threads: Threads per backend (``None`` = library default).
        max_memory_gb: Memory limit for the sweep's largest case (default: :mod:`seqdeploy.budget`).
        expected: Golden cases (``--expected``): every backend is compared with them, nothing else runs.
        no_import: Refuse to import a ``source = "python"`` bundle's module (the torch backends need it).
    """

    backends: tuple[str, ...] = ("torch", "ort-cpu")
    reference: str = "torch"
    batches: tuple[int, ...] | None = None
    seqs: tuple[int, ...] | None = None
    atol: float | None = None
    rtol: float | None = None
    atol_per_tensor: Mapping[str, float] = field(default_factory=dict)
    rtol_per_tensor: Mapping[str, float] = field(default_factory=dict)
    modes: tuple[str, ...] = MODES
    inputs: Mapping[str, np.ndarray] | None = None
    chunks: int = 3
    max_rows: int = 4
    seed: int = 0
    threads: int | None = None
    max_memory_gb: float | None = None
    expected: tuple[ExpectedCase, ...] = ()
    no_import: bool = False


def default_sweep(shapes: tuple[tuple[int, int, int], tuple[int, int, int]]) -> tuple[list[int], list[int]]:
    """Batches ``{min, opt, opt+1, max}`` (B+1 next to B proves a dynamic batch on one file) and seqs
    ``{min, opt, max}``, sorted and unique.
    """
    (b_lo, b_opt, b_hi), (s_lo, s_opt, s_hi) = shapes
    batches = sorted({b_lo, b_opt, min(b_opt + 1, b_hi), b_hi})
    seqs = sorted({s_lo, s_opt, s_hi})
    return batches, seqs


def _as_feeds(raw: Mapping[str, np.ndarray], spec: IOSpec) -> Arrays:
    return {
        name: _to_spec_dtype(name, v, spec.tensor(name).dtype if spec.has(name) else None) for name, v in raw.items()
    }


def load_inputs(path: Path, spec: IOSpec) -> Arrays:
    """Feeds from an ``.npz`` keyed by input names (never unpickled). Integer inputs are widened to
    int64 (refusing values that do not fit) and float64/float16 narrowed or widened to float32 when
    lossless; everything is then checked against ``spec``.

    Raises:
        UsageError: The file cannot be read, or is not an ``.npz`` (the message says what it is).
        InputError: The arrays do not fit the model (names, dtypes, shapes, ids, lengths).
    """
    feeds = _as_feeds(read_npz(path, what="inputs"), spec)
    check_feeds(spec, feeds)
    return feeds


def _to_spec_dtype(name: str, value: np.ndarray, want: str | None) -> np.ndarray:
    """``value`` in the spec's dtype when the conversion loses nothing; otherwise unchanged (and then
    :func:`check_feeds` reports the dtype) or an :class:`InputError` for integers that do not fit.
    """
    if want == "int64" and np.issubdtype(value.dtype, np.integer):
        if value.size and value.dtype.kind == "u" and int(value.max()) > np.iinfo(np.int64).max:
            bad = int(value.max())
            raise InputError(
                f"input '{name}': value {bad} does not fit int64 (the file holds {value.dtype}); token ids and "
                "lengths must be int64 values inside the model's range"
            )
        return value.astype(np.int64)
    if want == "float32" and value.dtype in (np.float64, np.float16):
        narrowed = value.astype(np.float32)
        if value.dtype == np.float16 or np.array_equal(narrowed.astype(np.float64), value, equal_nan=True):
            return narrowed
    return value


def load_expected(path: Path, spec: IOSpec) -> ExpectedCase:
    """One ``--expected`` case: an ``.npz`` holding every input and the expected outputs by contract name
    (inputs and outputs never share a name). Never unpickled.

    Raises:
        UsageError: The file cannot be read, holds a name that is neither an input nor an output of the
            model, no ``output`` (the model's main output is always compared), a non-numeric array, or NaN/Inf
            in an expected output (NaN would compare equal to NaN, proving nothing).
        InputError: The inputs do not fit the model (names, dtypes, shapes, ids, lengths).
    """
    raw = read_npz(path, what="expected outputs")
    unknown = sorted(k for k in raw if not spec.has(k))
    if unknown:
        raise UsageError(
            f"{path}: {unknown} are neither inputs nor outputs of this model; name the arrays by the contract: "
            f"inputs {list(spec.input_names)}, outputs {list(spec.output_names)}"
        )
    outputs = {k: v for k, v in raw.items() if k in spec.output_names}
    if not outputs:
        raise UsageError(
            f"{path}: holds no expected output (outputs are {list(spec.output_names)}); save what your model "
            "returned next to its inputs"
        )
    if "output" not in outputs:
        # A file of states only would pass without the one tensor a deployment is for ever being compared.
        raise UsageError(
            f"{path}: holds no expected 'output' (it has {sorted(outputs)}); save your model's main output as "
            "'output' next to the states"
        )
    for k, v in outputs.items():
        if not (np.issubdtype(v.dtype, np.number) or v.dtype == np.bool_):
            raise UsageError(f"{path}: expected output '{k}' is {v.dtype}, not numbers")
    bad = {
        k: int(v.size - np.isfinite(v).sum())
        for k, v in outputs.items()
        if np.issubdtype(v.dtype, np.inexact) and not np.isfinite(v).all()
    }
    if bad:
        what = ", ".join(f"'{k}' has {n} NaN/Inf value(s)" for k, n in bad.items())
        raise UsageError(
            f"{path}: {what}; a backend's NaN would compare equal to it, so nothing would be proven. Save "
            "outputs of inputs your model computes finite values for"
        )
    inputs = _as_feeds({k: v for k, v in raw.items() if k in spec.input_names}, spec)
    sizes = check_feeds(spec, inputs)
    return ExpectedCase(path.name, inputs, outputs, sizes)


def _tolerances(opts: VerifyOptions, backend: str) -> Tolerances:
    info = get_backend(backend)
    # TensorRT backends carry their plan's tolerance (fp32 1e-4: other accumulation order than the CPU).
    base = Tolerance(*info.tolerance) if info.tolerance else DEFAULT_TOLERANCES[info.precision]
    default = Tolerance(
        opts.atol if opts.atol is not None else base.atol,
        opts.rtol if opts.rtol is not None else base.rtol,
    )
    return Tolerances(default, dict(opts.atol_per_tensor), dict(opts.rtol_per_tensor))


class _Verifier:
    """One verify run: holds the runners, the reference outputs and the report being built."""

    def __init__(self, bundle: Bundle, opts: VerifyOptions, report: ParityReport, progress: Progress | None) -> None:
        self.bundle = bundle
        self.opts = opts
        self.report = report
        self.spec = bundle.specs["sequence"]
        self.cfg = bundle.config
        self.progress = progress
        self.done = 0
        self.total = 1

    # -- tolerance ---------------------------------------------------------------------------------
    def tolerances(self, backend: str) -> Tolerances:
        return _tolerances(self.opts, backend)

    def compare(
        self,
        backend: str,
        mode: str,
        batch: int,
        seq: int,
        against: str,
        ref: Mapping[str, np.ndarray],
        got: Mapping[str, np.ndarray],
        detail: str = "",
    ) -> CaseResult:
        tol = self.tolerances(backend)
        tensors = {n: compare_tensor(n, ref[n], got[n], tol.for_tensor(n.split("[")[0])) for n in ref}
        case = CaseResult(backend, mode, batch, seq, against, tensors, detail)
        self.report.cases.append(case)
        return case

    def error(
        self, backend: str, mode: str, batch: int, seq: int, against: str, exc: Exception, detail: str = ""
    ) -> None:
        msg = f"{type(exc).__name__}: {exc}"
        self.report.cases.append(CaseResult(backend, mode, batch, seq, against, {}, detail, error=msg))

    def tick(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)

    # -- inputs --------------------------------------------------------------------------------------
    def shapes(self) -> list[tuple[int, int]]:
        """The sweep's (batch, seq) pairs, before any feed is made."""
        if self.opts.expected:
            return [case.shape(self.spec) for case in self.opts.expected]
        if self.opts.inputs is not None:
            sizes = check_feeds(self.spec, self.opts.inputs)
            return [(sizes[BATCH], sizes.get(SEQ, 1))]
        batches, seqs = default_sweep((self.cfg.shapes.batch, self.cfg.shapes.seq))
        return [(b, s) for b in (self.opts.batches or batches) for s in (self.opts.seqs or seqs)]

    def cases(self) -> Iterator[tuple[int, int, Arrays]]:
        """Feeds per case, made one at a time (a sweep never holds every case's inputs at once)."""
        if self.opts.inputs is not None:
            (b, s) = self.shapes()[0]
            yield b, s, dict(self.opts.inputs)
            return
        for i, (b, s) in enumerate(self.shapes()):
            yield b, s, make_feeds(self.spec, b, s, seed=self.opts.seed + i)


_AGAINST = {"full": "reference", "expected": "reference"}
"""What a mode's comparisons are against, for a case that raised instead: ``reference`` (the reference's or
the golden file's outputs) or, for every other mode, ``self`` (the backend's own full run)."""


def _guard(
    v: _Verifier, backend: str, mode: str, batch: int, seq: int, detail: str = ""
) -> contextlib.AbstractContextManager[None]:
    """Record a backend's exception as a failed case instead of aborting the whole run."""

    @contextlib.contextmanager
    def guard() -> Iterator[None]:
        try:
            yield
        except InputError:
            raise  # the user's feeds are wrong: that is a usage error, not a parity failure
        except Exception as exc:  # noqa: BLE001 - ORT/TRT raise many types; each becomes a FAILED case
            v.error(backend, mode, batch, seq, _AGAINST.get(mode, "self"), exc, detail)

    return guard()


def _split_points(seq: int, k: int) -> list[tuple[int, int]]:
    k = max(1, min(k, seq))
    edges = np.linspace(0, seq, k + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges) if b > a]


def _seq_outputs(spec: IOSpec) -> list[str]:
    return [t.name for t in spec.outputs if t.seq_axis is not None]


def _chunked(
    v: _Verifier,
    runners: dict[str, BaseRunner],
    ref_name: str,
    batch: int,
    seq: int,
    feeds: Arrays,
    fulls: Mapping[str, Arrays],
) -> None:
    spec, cfg = v.spec, v.cfg
    full_feeds = dict(feeds)
    same_feeds = not spec.has("lengths")  # then the whole-sequence runs of 'full' are reused, not repeated
    if spec.has("lengths"):
        # A row that ends inside chunk 1 would have length 0 in chunk 2, which no graph accepts: chunk
        # with full lengths (padding semantics have their own mode).
        full_feeds["lengths"] = np.full_like(feeds["lengths"], seq)
    outputs = spec.output_names
    if v.bundle.is_python:
        # A user's module: seqdeploy does not know what its pooled outputs mean; the states and the
        # per-step outputs are what carrying state must reproduce.
        carried = set(spec.state_outputs)
        compare_names = [n for n in outputs if n in carried or spec.tensor(n).seq_axis is not None]
    else:
        pooled = cfg.model.head.task == "classify"
        at_end = cfg.model.head.pooling in ("last", "output_last")
        compare_names = [n for n in outputs if not (pooled and n == "output" and not at_end)]
    ref_full: Arrays | None = None
    for name, runner in runners.items():
        detail = f"{len(_split_points(seq, v.opts.chunks))} chunks"
        with _guard(v, name, "chunked", batch, seq, detail):
            full = fulls[name] if same_feeds and name in fulls else runner.infer(full_feeds)
            if name == ref_name:
                ref_full = full
            state = {p.input: full_feeds[p.input] for p in spec.state}
            pieces: dict[str, list[np.ndarray]] = {n: [] for n in _seq_outputs(spec)}
            last: Arrays = {}
            for a, b in _split_points(seq, v.opts.chunks):
                chunk = slice_seq(spec, full_feeds, a, b)
                chunk.update(state)
                if spec.has("lengths"):
                    chunk["lengths"] = np.full_like(full_feeds["lengths"], b - a)
                last = runner.infer(chunk)
                state = carry_state(last, spec)
                for n, parts in pieces.items():
                    parts.append(last[n])
            got = {
                n: np.concatenate(pieces[n], axis=spec.tensor(n).seq_axis) if n in pieces else last[n]
                for n in compare_names
            }
            v.compare(name, "chunked", batch, seq, "self", {n: full[n] for n in compare_names}, got, detail)
            if name != ref_name and ref_full is not None:
                v.compare(
                    name, "chunked", batch, seq, "reference", {n: ref_full[n] for n in compare_names}, got, detail
                )
        v.tick()


def _rows(batch: int, max_rows: int) -> list[int]:
    if batch <= max_rows:
        return list(range(batch))
    return sorted({0, 1, batch // 2, batch - 1} | set(range(max(0, max_rows - 4))))


def _batch_independence(
    v: _Verifier, name: str, runner: BaseRunner, batch: int, seq: int, feeds: Arrays, full: Arrays
) -> None:
    rows = _rows(batch, v.opts.max_rows)
    detail = f"rows {rows}"
    with _guard(v, name, "batch", batch, seq, detail):
        alone = [runner.infer(select_rows(v.spec, feeds, [r])) for r in rows]
        got = {n: np.concatenate([a[n] for a in alone], axis=v.spec.tensor(n).batch_axis or 0) for n in full}
        v.compare(name, "batch", batch, seq, "self", select_rows(v.spec, full, rows), got, detail)
    v.tick()


def _padding(v: _Verifier, name: str, runner: BaseRunner, batch: int, seq: int, feeds: Arrays, full: Arrays) -> None:
    spec = v.spec
    lengths = feeds["lengths"]
    rows = [r for r in _rows(batch, max(v.opts.max_rows, 2)) if lengths[r] < seq]
    detail = f"rows {rows}, lengths {[int(lengths[r]) for r in rows]}"
    with _guard(v, name, "padding", batch, seq, detail):
        ref: dict[str, list[np.ndarray]] = {}
        got: dict[str, list[np.ndarray]] = {}
        for r in rows:
            length = int(lengths[r])
            row_feeds = slice_seq(spec, select_rows(spec, feeds, [r]), 0, length)
            alone = runner.infer(row_feeds)
            in_batch = select_rows(spec, full, [r])
            for n in spec.output_names:
                axis = spec.tensor(n).seq_axis
                want = in_batch[n] if axis is None else np.take(in_batch[n], np.arange(length), axis=axis)
                ref.setdefault(n, []).append(want.reshape(-1))
                got.setdefault(n, []).append(alone[n].reshape(-1))
                if axis is not None and length < seq and not v.bundle.is_python:
                    # seqdeploy's models zero every output at padded steps; a user's module need not (a
                    # Linear after pad_packed_sequence adds its bias there), and its padded steps are still
                    # compared with the reference in 'full' mode.
                    tail = np.take(in_batch[n], np.arange(length, seq), axis=axis).reshape(-1)
                    ref.setdefault(f"{n}[padded steps]", []).append(np.zeros_like(tail))
                    got.setdefault(f"{n}[padded steps]", []).append(tail)
        v.compare(
            name,
            "padding",
            batch,
            seq,
            "self",
            {n: np.concatenate(a) for n, a in ref.items()},
            {n: np.concatenate(a) for n, a in got.items()},
            detail,
        )
    v.tick()


def _identities(v: _Verifier, name: str, batch: int, seq: int, feeds: Arrays, full: Arrays) -> None:
    spec, m = v.spec, v.cfg.model
    out = full["output"]
    if m.batch_first:
        out = out.transpose(1, 0, 2)  # -> [seq, batch, width]
    last = feeds["lengths"] - 1 if spec.has("lengths") else np.full(batch, seq - 1)
    rows = np.arange(batch)
    top = m.layer_sizes[-1]
    h_top = full[f"h_n.{len(m.layer_sizes) - 1}"] if m.per_layer_state else full["h_n"]
    ref: Arrays = {}
    got: Arrays = {}
    if m.bidirectional:
        ref["h_n[top, forward]"] = h_top[-2]
        got["h_n[top, forward]"] = out[last, rows, :top]
        ref["h_n[top, backward]"] = h_top[-1]
        got["h_n[top, backward]"] = out[0, rows, top:]
    else:
        ref["h_n[top]"] = h_top[-1]
        got["h_n[top]"] = out[last, rows, :]
    v.compare(name, "identities", batch, seq, "self", ref, got, "last valid step of output vs h_n")


def _step(
    v: _Verifier,
    name: str,
    step_runner: BaseRunner,
    batch: int,
    seq: int,
    feeds: Arrays,
    full: Arrays,
    ref_full: Arrays | None,
) -> None:
    spec = v.spec
    with _guard(v, name, "step", batch, seq):
        seq_axis = spec.tensor("input").seq_axis
        assert seq_axis is not None
        state = {p.input: feeds[p.input] for p in spec.state}
        steps: list[Arrays] = []
        for t in range(seq):
            x = np.ascontiguousarray(np.take(feeds["input"], t, axis=seq_axis))
            out = step_runner.infer({"input": x, **state})
            state = carry_state(out, step_runner.spec)
            steps.append(out)
        got: Arrays = {n: steps[-1][n] for n in spec.output_names}
        out_axis = spec.tensor("output").seq_axis
        if out_axis is not None:
            got["output"] = np.stack([s["output"] for s in steps], axis=out_axis)
        v.compare(name, "step", batch, seq, "self", {n: full[n] for n in got}, got, f"{seq} steps")
        if ref_full is not None:
            v.compare(name, "step", batch, seq, "reference", {n: ref_full[n] for n in got}, got, f"{seq} steps")
    v.tick()


def verify(
    bundle: Bundle | str | Path,
    opts: VerifyOptions | None = None,
    *,
    progress: Progress | None = None,
    lint: bool = True,
) -> ParityReport:
    """Check an export directory's backends against its reference; return the full report.

    Args:
        bundle: The export directory (or a loaded :class:`Bundle`).
        opts: What to check (defaults: torch vs ort-cpu over the manifest's sweep, all modes).
        progress: Called as ``progress(done, total)`` after each unit of work.
        lint: Also lint the ONNX files against the IOSpec.

    Raises:
        UsageError: Unknown backend or mode, a backend that cannot run a graph, or a bad sweep.
        BackendUnavailable: A requested backend cannot run here (before any work is done).
        InputError: User-given inputs do not fit the model.
    """
    start = time.perf_counter()
    opts = opts or VerifyOptions()
    b = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
    for mode in opts.modes:
        if mode not in MODES:
            raise UsageError(f"unknown check mode '{mode}'; known modes: {', '.join(MODES)}")
    names = list(dict.fromkeys([opts.reference, *opts.backends]))
    for n in names:
        get_backend(n)
    _check_tolerance_names(b.specs["sequence"], {**opts.atol_per_tensor, **opts.rtol_per_tensor})
    if not opts.expected and get_backend(opts.reference).precision != "fp32":
        raise UsageError(f"the reference must be an fp32 backend, not '{opts.reference}'")
    for vals, what in ((opts.batches, "batch"), (opts.seqs, "seq")):
        if vals is not None and (not vals or min(vals) < 1):
            raise UsageError(f"--{what} values must be integers >= 1, got {list(vals)}")
    expected = bool(opts.expected)
    if expected:
        names = list(dict.fromkeys(opts.backends))
    _check_imports(b, names, opts)
    report = ParityReport(
        reference="expected" if expected else opts.reference,
        backends=names,
        seed=opts.seed,
        model=b.model_summary(),
    )
    if b.is_python:
        _python_notes(b, names, report)
    report.tolerances = {
        n: {"default": {"atol": t.default.atol, "rtol": t.default.rtol}, "atol": dict(t.atol), "rtol": dict(t.rtol)}
        for n in names
        for t in [_tolerances(opts, n)]
    }
    if tampered := b.tampered_files():
        report.warnings.append(
            f"--allow-modified: the bundle differs from its manifest ({'; '.join(tampered)}); verifying the "
            "files as they are now"
        )
    if lint:
        report.lint.extend(_lint_bundle(b, names))
    if names == [opts.reference] and not expected:
        report.warnings.append(
            f"only the reference '{opts.reference}' was given: no backend is compared with it, only the "
            "self-consistency modes ran; add e.g. --backends ort-cpu"
        )
    v = _Verifier(b, opts, report, progress)
    check_sweep_budget(v.spec, v.shapes(), *sweep_budget_facts(b), max_memory_gb=opts.max_memory_gb)
    try:
        if expected:
            _run_expected(v, b, names, report)
        else:
            _run(v, b, names, report)
    except KeyboardInterrupt:
        report.partial = True  # the caller writes what was checked so far, marked partial
    report.duration_s = time.perf_counter() - start
    if not report.cases and not report.partial:
        raise UsageError(
            "nothing was compared: every requested mode was skipped ("
            + "; ".join(f"{s.mode}: {s.reason}" for s in report.skipped)
            + "); choose other --modes, --batch or --seq"
        )
    return report


def _check_imports(b: Bundle, names: Sequence[str], opts: VerifyOptions) -> None:
    """``no_import``: a torch backend of a ``source = "python"`` bundle would import (run) the user's code."""
    importing = [n for n in names if n in importing_backends()]
    if not (b.is_python and opts.no_import and importing):
        return
    raise UsageError(
        f"{b.path}: backend(s) {importing} would import your module {b.user_module.get('resolved')} (the torch "
        "reference of a source = 'python' bundle is your module itself), which runs its code; --no-import "
        "refuses. Check the deployment against outputs computed by your model instead: "
        f"seqdeploy verify {b.path} --no-import --expected FILE.npz (docs/your-model.md)"
    )


def _python_notes(b: Bundle, names: Sequence[str], report: ParityReport) -> None:
    """Say what the reference is, and warn when the module's source changed since export."""
    from seqdeploy.manifest import sha256

    um = b.user_module
    if note := tracer_warnings_note(b):
        report.warnings.append(note)
    if any(n in importing_backends() for n in names):
        report.notes.append(
            f"the torch reference is your module {um.get('resolved')} (class {um.get('class')}), imported and built "
            f"with kwargs {um.get('kwargs')} and the exported weights {b.manifest.get('weights')}"
        )
    # `source_files` ({path: sha256}: the defining file and the entry module's own) where the export
    # recorded it, else the one `source_file`.
    files = um.get("source_files")
    if not isinstance(files, dict) or not files:
        files = {um.get("source_file"): um.get("source_sha256")}
    for source, digest in files.items():
        if not (isinstance(source, str) and isinstance(digest, str)):
            continue
        path = Path(source)
        if not path.is_file():
            report.warnings.append(
                f"{source}: the module's source file is gone since export; the torch backends cannot import it "
                "(use --expected FILE.npz with --no-import)"
            )
        elif sha256(path) != digest:
            report.warnings.append(
                f"{source}: changed since export (sha256 differs); the reference is the module as it is now, so "
                "any change to its forward shows up as a parity failure"
            )


def _run_expected(v: _Verifier, b: Bundle, names: list[str], report: ParityReport) -> None:
    """Every backend against each ``--expected`` case's outputs (the files are the reference)."""
    spec = v.spec
    v.total = max(1, len(names) * len(v.opts.expected))
    for case in v.opts.expected:
        left = [n for n in spec.output_names if n not in case.outputs]
        if left:
            report.warnings.append(f"{case.name}: has no expected {left}; those outputs were not compared")
    with contextlib.ExitStack() as stack:
        with b.snapshot():
            runners = {n: stack.enter_context(make_runner(n, b, "sequence", threads=v.opts.threads)) for n in names}
        for case in v.opts.expected:
            batch, seq = case.shape(spec)
            for n, runner in runners.items():
                with _guard(v, n, "expected", batch, seq, case.name):
                    got = runner.infer(case.inputs)
                    v.compare(n, "expected", batch, seq, "reference", case.outputs, got, case.name)
                v.tick()


def _check_tolerance_names(spec: IOSpec, per_tensor: Mapping[str, float]) -> None:
    """A per-tensor tolerance for a tensor that does not exist is a typo that would silently do nothing."""
    known = set(spec.output_names) | {n.split(".")[0] for n in spec.output_names}
    unknown = sorted(set(per_tensor) - known)
    if unknown:
        raise UsageError(
            f"per-tensor tolerance for unknown tensor(s) {unknown}; this model's outputs are "
            f"{sorted(known)} (a base name like 'h_n' also covers 'h_n.0', 'h_n.1', ...)"
        )


def _lint_bundle(b: Bundle, names: Sequence[str]) -> list[Finding]:
    """The ``ort`` rules on every graph the run uses (variants only when their backend runs)."""
    from seqdeploy.lint import graph_files, lint_manifest

    variants = {n.split("ort-cpu-", 1)[1] for n in names if n.startswith("ort-cpu-")}
    files = [gf.file for gf in graph_files(b.manifest) if gf.variant is None or gf.variant in variants]
    return lint_manifest(b.path, b.manifest, "ort", only=files).findings


def _check_finite(v: _Verifier, reference: str, batch: int, seq: int, outputs: Arrays) -> None:
    """A reference with NaN/Inf makes every comparison meaningless (NaN == NaN counts as equal): fail."""
    bad = {n: int(np.size(a) - np.isfinite(a).sum()) for n, a in outputs.items() if not np.isfinite(a).all()}
    if bad:
        what = ", ".join(f"'{n}' has {k} non-finite value(s)" for n, k in bad.items())
        v.report.cases.append(
            CaseResult(
                reference,
                "full",
                batch,
                seq,
                "self",
                {},
                "reference outputs",
                error=f"the reference produced NaN/Inf: {what}; check the weights and inputs",
            )
        )


def _run(v: _Verifier, b: Bundle, names: list[str], report: ParityReport) -> None:
    spec, cfg, opts = v.spec, b.config, v.opts
    m = cfg.model
    want = set(opts.modes)
    chunk_ok = b.streamable
    if "chunked" in want and not chunk_ok:
        report.skipped.append(Skip("chunked", not_streamable_reason(b)))
    if "padding" in want and not spec.has("lengths"):
        where = "no 'lengths' in [io] call" if b.is_python else "export.lengths = false"
        report.skipped.append(Skip("padding", f"the model has no 'lengths' input ({where})"))
    if "identities" in want and b.is_python:
        report.skipped.append(
            Skip("identities", "output is your module's (source = 'python'): no identity with h_n is known")
        )
    elif "identities" in want and m.head.task != "none":
        report.skipped.append(Skip("identities", f"output is a '{m.head.task}' head, not the recurrent output"))
    has_step = "step" in b.specs
    if "step" in want and not has_step:
        how = "source = 'python' bundles have none" if b.is_python else "export with --step"
        report.skipped.append(Skip("step", f"no step graph in this export ({how})"))
    step_names = [n for n in names if "step" in get_backend(n).graphs] if has_step and "step" in want else []
    for n in names:
        if has_step and "step" in want and n not in step_names:
            report.skipped.append(Skip("step", "backend has no step graph", backend=n))
    n_cases = len(v.shapes())
    per_case = len(names) - 1 if "full" in want else 0
    per_case += len(names) * (("chunked" in want and chunk_ok) + ("batch" in want) + ("padding" in want))
    per_case += len(step_names)
    v.total = max(1, per_case * n_cases)

    with contextlib.ExitStack() as stack:
        with b.snapshot():  # every runner reads the bundle that was loaded, never a swapped-in one
            runners = {n: stack.enter_context(make_runner(n, b, "sequence", threads=opts.threads)) for n in names}
            steppers = {n: stack.enter_context(make_runner(n, b, "step", threads=opts.threads)) for n in step_names}
        ref = runners[opts.reference]
        for batch, seq, feeds in v.cases():
            ref_out = ref.infer(feeds)  # a failing reference is not a parity result: let it raise
            _check_finite(v, opts.reference, batch, seq, ref_out)
            fulls: dict[str, Arrays] = {opts.reference: ref_out}
            for n, runner in runners.items():
                if n == opts.reference:
                    continue
                with _guard(v, n, "full", batch, seq):
                    fulls[n] = runner.infer(feeds)
                    if "full" in want:
                        v.compare(n, "full", batch, seq, "reference", ref_out, fulls[n])
                if "full" in want:
                    v.tick()
            if "chunked" in want and chunk_ok:
                if seq > 1:
                    _chunked(v, runners, opts.reference, batch, seq, feeds, fulls)
                else:
                    report.skipped.append(Skip("chunked", "a single step has no chunks", batch=batch, seq=seq))
            padded = spec.has("lengths") and bool(np.any(feeds["lengths"] < seq))
            if "padding" in want and spec.has("lengths") and not padded:
                # Comparing a full-length row with itself could not fail: say so instead of "PASSED".
                report.skipped.append(Skip("padding", "no row is shorter than seq", batch=batch, seq=seq))
            for n, runner in runners.items():
                if n not in fulls:
                    continue  # its full run already failed with an error
                if "batch" in want and batch > 1:
                    _batch_independence(v, n, runner, batch, seq, feeds, fulls[n])
                if "padding" in want and padded:
                    _padding(v, n, runner, batch, seq, feeds, fulls[n])
                if "identities" in want and not b.is_python and m.head.task == "none":
                    _identities(v, n, batch, seq, feeds, fulls[n])
                if n in steppers:
                    _step(v, n, steppers[n], batch, seq, feeds, fulls[n], ref_out if n != opts.reference else None)
