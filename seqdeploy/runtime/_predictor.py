"""``load`` → :class:`Predictor` → ``predict`` / ``predict_text`` / ``stream``: the torch-free runtime.

Imports numpy and (when a model is loaded) onnxruntime, never torch or onnx; a test runs it with torch
blocked. The package is checked before anything is loaded (every file's sha256, nothing unlisted, no
links, the manifest's own digest), and the graph is loaded from exactly the bytes that were hashed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seqdeploy._lazy import require
from seqdeploy.errors import BackendUnavailable, InputError, IntegrityError, UsageError
from seqdeploy.feeds import check_feeds
from seqdeploy.package.manifest import ModelEntry, PackageManifest, merges_requests, read_manifest, verify_files
from seqdeploy.runtime._archive import package_dir
from seqdeploy.runtime._ort import ort_session
from seqdeploy.runtime._text import Tokenizer, parse_vocab
from seqdeploy.spec import BATCH, SEQ, IOSpec, StatePair, TensorSpec

__all__ = [
    "BACKENDS",
    "Predictor",
    "Signature",
    "Stream",
    "VerifiedPackage",
    "build_predictor",
    "load",
    "open_package",
]

BACKENDS = ("auto", "ort-cpu", "ort-cuda", "trt")
"""Runtime backends. ``auto``: a packaged TensorRT engine built for this GPU's compute capability with this
TensorRT version (``PKG/NAME_trt``), else ONNX Runtime CUDA when this onnxruntime has it and it initialises
(and the model is not int8), else the CPU. ``trt`` asks for the engine and fails with the reason when it cannot
run (the TensorRT path has never run: no machine here has TensorRT; see ``runtime/_trt.py``). The int8 and fp16
variants are separate models of the package, chosen by name (fp16: ``NAME_trt_fp16``)."""

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class Signature:
    """What one packaged model takes and returns (batch-first, contract names).

    Attributes:
        model: Model name in the package (= Triton model name).
        kind: ``"stateless"`` or ``"stream"`` (the latter has the ``start`` control input).
        precision: ``"fp32"``, ``"int8"`` or ``"fp16"``.
        spec: Every graph input and output with dtype and dims (``"batch"``, ``"seq"`` named).
        start: Name of the START control input (stream models), else ``None``.
        max_batch_size: Largest batch accepted (Triton's ``max_batch_size``).
        seq_range: ``(min, max)`` sequence length accepted (what the package was proven at).
        head: ``"none"``, ``"classify"`` or ``"tag"``.
        labels: Class names, or ``None``.
        text: Whether :meth:`Predictor.predict_text` is available (the package has a vocabulary).
        streamable: Whether :meth:`Predictor.stream` is available: a unidirectional model with state inputs.
    """

    model: str
    kind: str
    precision: str
    spec: IOSpec
    start: str | None
    max_batch_size: int
    seq_range: tuple[int, int]
    head: str
    labels: tuple[str, ...] | None
    text: bool
    streamable: bool

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        """Graph inputs in order (state inputs and START included)."""
        return self.spec.inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        """Graph outputs in order."""
        return self.spec.outputs

    @property
    def state(self) -> tuple[StatePair, ...]:
        """State pairs (``h0 → h_n``); empty when the model takes no state."""
        return self.spec.state

    def zero_state(self, batch: int) -> Arrays:
        """Zero states for ``batch`` rows, batch-first (``{"h0": [batch, L·D, H], ...}``)."""
        out: Arrays = {}
        for p in self.state:
            t = self.spec.tensor(p.input)
            out[p.input] = np.zeros(t.shape({BATCH: batch}), dtype=t.dtype)
        return out


def _signature(manifest: PackageManifest, entry: ModelEntry) -> Signature:
    return Signature(
        model=entry.name,
        kind=entry.kind,
        precision=entry.precision,
        spec=entry.spec,
        start=entry.start,
        max_batch_size=entry.max_batch_size,
        seq_range=entry.seq_range,
        head=manifest.head,
        labels=manifest.labels,
        text=manifest.text is not None,
        streamable=manifest.streamable and bool(entry.state),
    )


def _softmax(x: np.ndarray) -> np.ndarray:
    z = x.astype(np.float64) - x.max(axis=-1, keepdims=True)
    e = np.exp(z)
    out: np.ndarray = (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
    return out


class Predictor:
    """One model of a package on one ONNX Runtime session.

    Safe to share between threads: it holds no per-call state (ONNX Runtime's ``InferenceSession.run`` is
    thread-safe); a :class:`Stream` carries one caller's recurrent state. Create it with :func:`load`.

    Attributes:
        signature: What the model takes and returns.
        backend: The backend that was chosen (``"trt"``, ``"ort-cuda"`` or ``"ort-cpu"``).
        source: The package directory or archive it was loaded from.
        backend_notes: Why ``auto`` did not pick a faster backend (empty when it did, or one was asked for).
    """

    def __init__(
        self,
        signature: Signature,
        session: Any,
        backend: str,
        tokenizer: Tokenizer | None,
        source: Path,
        backend_notes: Sequence[str] = (),
    ) -> None:
        self.signature = signature
        self.backend = backend
        self.source = source
        self.backend_notes = tuple(backend_notes)
        self._session = session
        self._tokenizer = tokenizer
        self._outputs = list(signature.spec.output_names)
        self._state_inputs = tuple(p.input for p in signature.state)
        self._has_lengths = signature.spec.has("lengths")

    def __repr__(self) -> str:
        s = self.signature
        return f"Predictor(model={s.model!r}, kind={s.kind!r}, precision={s.precision!r}, backend={self.backend!r})"

    # -- raw feeds ------------------------------------------------------------------------------------------
    def run(self, feeds: Mapping[str, np.ndarray]) -> Arrays:
        """Run the graph on complete batch-first feeds keyed by the package's tensor names.

        Every graph input is required (``START`` and states of a stream model included): this is the
        entry point for a server that builds batches itself. Returns every output by name.

        Raises:
            InputError: A missing or unexpected input, a wrong dtype or rank, a static dim that differs,
                token ids outside the vocabulary, lengths outside ``[1, T]``, a START flag other than 0/1,
                a batch over ``max_batch_size`` or a T outside the packaged range. The message says what
                was expected.
        """
        self.check(feeds)
        return self.execute(feeds)

    def execute(self, feeds: Mapping[str, np.ndarray]) -> Arrays:
        """Run complete feeds **without** validating them: for a caller that already ran :meth:`check` on
        every part (a server checks each request alone, then merges them into one batch of at most
        ``max_batch_size`` rows, padded to the longest ``T``). Anything else should call :meth:`run`.
        """
        outs = self._session.run(self._outputs, dict(feeds))
        return dict(zip(self._outputs, outs, strict=True))

    @property
    def pad_id(self) -> int:
        """The token id written past a row's length (the package's ``text.pad_id``; 0 without a vocabulary)."""
        return self._tokenizer.spec.pad_id if self._tokenizer is not None else 0

    def check(self, feeds: Mapping[str, np.ndarray]) -> dict[str, int]:
        """Validate complete feeds exactly as :meth:`run` does, without running the graph.

        A server that merges requests into one batch calls this on each request alone first, so that one
        request's bad input is refused on its own instead of failing the batch it would have joined.

        Returns:
            The size bound to each named axis (``{"batch": B, "seq": T}``).

        Raises:
            InputError: See :meth:`run`.
        """
        start = self.signature.start
        flag = feeds.get(start) if start is not None else None
        if isinstance(flag, np.ndarray) and flag.dtype == np.int32 and flag.size and not np.isin(flag, (0, 1)).all():
            raise InputError(
                f"input '{start}': the START flag must be 0 (continue a sequence) or 1 (start one) per row"
            )
        sizes = check_feeds(self.signature.spec, feeds)
        self._check_sizes(sizes)
        return sizes

    def _check_sizes(self, sizes: Mapping[str, int]) -> None:
        sig = self.signature
        batch = sizes.get(BATCH, 1)
        if batch > sig.max_batch_size:
            raise InputError(
                f"batch {batch} exceeds model '{sig.model}''s max_batch_size {sig.max_batch_size} (the largest batch "
                f"the package was proven at); split it into batches of at most {sig.max_batch_size} rows"
            )
        seq = sizes.get(SEQ)
        lo, hi = sig.seq_range
        if seq is not None and not lo <= seq <= hi:
            raise InputError(
                f"sequence length T = {seq} is outside the packaged range [{lo}, {hi}] of model '{sig.model}' "
                "(the lengths it was proven at); "
                + ("split the sequence into chunks with stream()" if seq > hi else f"pad to at least {lo}")
            )

    # -- convenience ----------------------------------------------------------------------------------------
    def predict(
        self,
        input: np.ndarray,
        lengths: np.ndarray | None = None,
        states: Mapping[str, np.ndarray] | None = None,
    ) -> Arrays:
        """Run one batch; states default to zeros, lengths to full rows.

        Args:
            input: ``[B, T]`` int64 token ids or ``[B, T, F]`` float32 features (batch-first).
            lengths: ``[B]`` int64 valid lengths (models with a ``lengths`` input; default: all ``T``).
            states: Initial states by name (``{"h0": [B, L·D, H], "c0": ...}``); default zeros. For a stream
                model, giving states continues sequences (START = 0), omitting them starts new ones.

        Returns:
            Every output by contract name, batch-first (``output``, ``h_n``, ``c_n``, ...).

        Raises:
            InputError: See :meth:`run`, plus lengths for a model without a ``lengths`` input that are not
                all ``T``, and states for a model that takes none.
        """
        feeds: dict[str, Any] = {"input": input}
        batch, seq = self._batch_seq(input)
        if self._has_lengths:
            feeds["lengths"] = np.full(batch, seq, dtype=np.int64) if lengths is None else lengths
        elif lengths is not None:
            self._full_lengths_only(lengths, seq)
        if states is None:
            feeds.update(self.signature.zero_state(batch))
        else:
            if not self._state_inputs:
                raise InputError(
                    f"model '{self.signature.model}' takes no state inputs (exported with initial_state = false, "
                    "or a stream model's states are fed by the runtime); call predict() without states"
                )
            missing = [n for n in self._state_inputs if n not in states]
            unknown = sorted(set(states) - set(self._state_inputs))
            if missing or unknown:
                raise InputError(
                    f"states must be exactly {list(self._state_inputs)} (batch-first), got {sorted(states)}"
                )
            feeds.update(states)
        start = self.signature.start
        if start is not None:
            feeds[start] = np.full((batch, 1), 1 if states is None else 0, dtype=np.int32)
        return self.run(feeds)

    def _batch_seq(self, input: Any) -> tuple[int, int]:
        if not isinstance(input, np.ndarray) or input.ndim < 2:
            t = self.signature.spec.tensor("input")
            got = f"an array of shape {tuple(input.shape)}" if isinstance(input, np.ndarray) else type(input).__name__
            raise InputError(
                f"input: expected a numpy array {t.describe()} (batch-first), got {got}; e.g. "
                + (
                    "np.asarray([[3, 17, 5]], dtype=np.int64)"
                    if t.dtype == "int64"
                    else "an array [batch, seq, features]"
                )
            )
        return int(input.shape[0]), int(input.shape[1])

    def _full_lengths_only(self, lengths: Any, seq: int) -> None:
        values = np.asarray(lengths)
        if values.size and bool(np.all(values == seq)):
            return
        raise InputError(
            f"model '{self.signature.model}' has no 'lengths' input: it reads every row to its full length "
            f"T = {seq}; pass rows of equal length (or package a model exported with [export] lengths = true)"
        )

    def predict_ids(self, ids: Sequence[Sequence[int]]) -> dict[str, Any]:
        """Run rows of token ids of any lengths, batched as the model allows.

        Rows are padded and batched together when the model has a ``lengths`` input, else grouped by
        length (padding without ``lengths`` would change the result); batches never exceed
        ``max_batch_size``. An int8 model runs each row alone: its dynamic quantization computes one scale
        per execution, so a row's answer would depend on the rows it ran with. Sequence outputs are padded
        to the longest row (zeros past each row's length).

        Returns:
            ``{output names: arrays, "lengths": [B] int64, "ids": [B, T] int64}`` plus, for classifiers,
            ``"probabilities"`` ``[B, C]`` and ``"labels"`` (one name per row); for taggers
            ``"probabilities"`` ``[B, T, C]`` and ``"labels"`` (one name per valid token of each row).
        """
        sig = self.signature
        t = sig.spec.tensor("input")
        if t.dtype != "int64":
            raise UsageError(
                f"model '{sig.model}' takes float features, not token ids; use predict() or --inputs FILE.npz"
            )
        if not ids:
            raise InputError("expected at least one row of token ids")
        rows = []
        for i, row in enumerate(ids):
            arr = np.asarray(row)
            if arr.ndim != 1 or not (arr.size == 0 or np.issubdtype(arr.dtype, np.integer)):
                raise InputError(f"row {i}: expected a flat sequence of integer token ids, got {row!r}"[:200])
            rows.append(arr.astype(np.int64))
        return self._predict_rows(rows, self.pad_id)

    def predict_text(self, texts: Sequence[str]) -> dict[str, Any]:
        """Tokenize ``texts`` with the package's rules and run them (see :meth:`predict_ids`).

        Returns:
            What :meth:`predict_ids` returns, plus ``"tokens"``: the tokens of each text.

        Raises:
            UsageError: The package has no vocabulary (its model takes ids or features only).
            InputError: A text has no token, a word is unknown and the package has no unknown-word token,
                or a text is longer than the packaged range.
        """
        if self._tokenizer is None:
            raise UsageError(
                f"package model '{self.signature.model}' has no vocabulary, so it cannot read text: pass token ids "
                "(predict / predict_ids, --ids), or repackage with 'seqdeploy package DIR --vocab FILE'"
            )
        if isinstance(texts, str):
            raise InputError("predict_text takes a list of texts; wrap a single text in a list: [text]")
        encoded = [self._tokenizer.encode(text, index=i) for i, text in enumerate(texts)]
        out = self.predict_ids([ids for _, ids in encoded])
        out["tokens"] = [toks for toks, _ in encoded]
        return out

    def _predict_rows(self, rows: list[np.ndarray], pad: int) -> dict[str, Any]:
        sig = self.signature
        lo, hi = sig.seq_range
        lens = np.array([r.size for r in rows], dtype=np.int64)
        for i, n in enumerate(lens):
            if not lo <= n <= hi:
                raise InputError(
                    f"row {i} has {n} tokens, outside the packaged range [{lo}, {hi}] of model '{sig.model}'"
                    + ("; shorten it or use stream() to feed it in chunks" if n > hi else "")
                )
        order = np.arange(len(rows))
        if not merges_requests(sig.precision):
            # int8: one dynamic quantization scale per execution, so a row's answer would depend on the others.
            groups = [order[i : i + 1] for i in range(len(rows))]
        elif self._has_lengths:
            groups = [order[i : i + sig.max_batch_size] for i in range(0, len(rows), sig.max_batch_size)]
        else:
            groups = []
            for n in sorted(set(lens.tolist())):
                same = order[lens == n]
                groups.extend(same[i : i + sig.max_batch_size] for i in range(0, same.size, sig.max_batch_size))
        t_max = int(lens.max())
        ids = np.full((len(rows), t_max), pad, dtype=np.int64)
        for i, r in enumerate(rows):
            ids[i, : r.size] = r
        result: dict[str, Any] = {}
        for idx in groups:
            t = int(lens[idx].max())
            out = self.predict(ids[idx, :t], lengths=lens[idx] if self._has_lengths else None)
            for name, arr in out.items():
                if name not in result:
                    shape = list(arr.shape)
                    shape[0] = len(rows)
                    if sig.spec.tensor(name).seq_axis == 1:
                        shape[1] = t_max
                    result[name] = np.zeros(shape, dtype=arr.dtype)
                if sig.spec.tensor(name).seq_axis == 1:
                    result[name][idx, :t] = arr
                else:
                    result[name][idx] = arr
        result["lengths"] = lens
        result["ids"] = ids
        self._decorate(result, lens)
        return result

    def _decorate(self, result: dict[str, Any], lens: np.ndarray) -> None:
        sig = self.signature
        if sig.head not in ("classify", "tag"):
            return
        logits = result["output"]
        names = sig.labels or tuple(str(k) for k in range(logits.shape[-1]))
        probs = _softmax(logits)
        result["probabilities"] = probs
        best = probs.argmax(axis=-1)
        if sig.head == "classify":
            result["labels"] = [names[int(k)] for k in best]
        else:
            result["labels"] = [[names[int(k)] for k in best[i, : int(n)]] for i, n in enumerate(lens)]

    def stream(self, batch: int = 1) -> Stream:
        """A :class:`Stream` that feeds ``batch`` sequences chunk by chunk, carrying their state."""
        return Stream(self, batch)


class Stream:
    """Feeds ``batch`` sequences in chunks, carrying ``h_n``/``c_n`` into the next chunk's ``h0``/``c0``.

    Belongs to one caller (it holds that caller's state); the :class:`Predictor` behind it may be shared.
    On a stream model the first chunk after :meth:`reset` is sent with START = 1 (the graph's own reset).

    Raises:
        UsageError: The model takes no state (bidirectional, or exported without state inputs), or
            ``batch`` is outside ``[1, max_batch_size]``.
    """

    def __init__(self, predictor: Predictor, batch: int = 1) -> None:
        sig = predictor.signature
        if not sig.streamable:
            why = (
                "it is bidirectional: its backward direction needs the whole sequence"
                if sig.state
                else "it takes no state inputs (exported with initial_state = false)"
            )
            raise UsageError(f"model '{sig.model}' cannot stream: {why}; use predict() on whole sequences")
        if not 1 <= batch <= sig.max_batch_size:
            raise UsageError(f"stream batch must be in [1, {sig.max_batch_size}], got {batch}")
        self._predictor = predictor
        self.batch = batch
        self._states: Arrays = {}
        self._fresh = True
        self.reset()

    def reset(self) -> None:
        """Start new sequences: zero states (and START = 1 on the next chunk of a stream model)."""
        self._states = self._predictor.signature.zero_state(self.batch)
        self._fresh = True

    @property
    def states(self) -> Arrays:
        """A copy of the current states (batch-first), as the next chunk will receive them."""
        return {k: v.copy() for k, v in self._states.items()}

    def feed(self, chunk: np.ndarray, lengths: np.ndarray | None = None) -> Arrays:
        """Run the next chunk ``[batch, T(, F)]`` of every sequence and carry the states.

        Args:
            chunk: The next ``T`` steps of each of the ``batch`` sequences.
            lengths: Valid steps per row (models with ``lengths``): a row whose chunk is shorter keeps its
                state from its last valid step.

        Returns:
            Every output of this chunk (``output`` for its steps, ``h_n``/``c_n`` after it).
        """
        p = self._predictor
        batch, seq = p._batch_seq(chunk)
        if batch != self.batch:
            raise InputError(f"chunk has {batch} rows, this stream feeds {self.batch} sequences")
        feeds: dict[str, Any] = {"input": chunk, **self._states}
        if p._has_lengths:
            feeds["lengths"] = np.full(batch, seq, dtype=np.int64) if lengths is None else lengths
        elif lengths is not None:
            p._full_lengths_only(lengths, seq)
        start = p.signature.start
        if start is not None:
            feeds[start] = np.full((batch, 1), 1 if self._fresh else 0, dtype=np.int32)
        out = p.run(feeds)
        self._states = {pair.input: np.ascontiguousarray(out[pair.output]) for pair in p.signature.state}
        self._fresh = False
        return out


def _session(
    model: bytes, backend: str, precision: str, threads: int | None, config: Mapping[str, str] | None = None
) -> tuple[Any, str]:
    """An ONNX Runtime session for ``backend`` and the backend it really runs on."""
    if backend not in BACKENDS:
        raise UsageError(f"unknown runtime backend '{backend}'; choose one of {', '.join(BACKENDS)}")
    ort = require("onnxruntime", extra="cpu" if backend != "ort-cuda" else "gpu", purpose="seqdeploy.runtime")
    common: dict[str, Any] = {"threads": threads, "config": config, "on_load_error": _load_error}
    if backend == "ort-cuda":
        if precision == "int8":
            raise UsageError("int8 models run on the CPU only (ONNX Runtime's int8 recurrent ops have no CUDA kernel)")
        # Explicit: no fallback, every failure is the caller's to see.
        return ort_session(model, device="cuda", what="backend 'ort-cuda'", **common), "ort-cuda"
    if backend == "auto" and precision != "int8" and "CUDAExecutionProvider" in ort.get_available_providers():
        try:
            return ort_session(model, device="cuda", what="backend 'auto'", **common), "ort-cuda"
        except BackendUnavailable:
            pass  # the CUDA provider exists but did not initialise (no driver/GPU): the CPU, as 'auto' promises
    return ort_session(model, device="cpu", what="seqdeploy.runtime", **common), "ort-cpu"


def _load_error(exc: Exception) -> Exception:
    return IntegrityError(
        f"ONNX Runtime cannot load the packaged graph ({type(exc).__name__}: {exc}); its sha256 matched, so the "
        "package was built for a newer onnxruntime: upgrade onnxruntime"
    )


@dataclass(frozen=True)
class VerifiedPackage:
    """A package read and checked once: its manifest and the verified bytes of the files that were asked for.

    Everything built from it (predictors, a server's configs) comes from exactly these bytes, so one sha256
    pass covers them all and nothing can change between the check and the load.

    Attributes:
        source: The package directory or archive as given.
        manifest: The package manifest (its ``path`` is gone once an archive's temp directory is removed).
        data: ``{package-relative path: verified bytes}``.
    """

    source: Path
    manifest: PackageManifest
    data: Mapping[str, bytes]


def open_package(
    path: str | Path, models: Sequence[str | None] | None = (None,), *, configs: bool = False, engines: bool = False
) -> VerifiedPackage:
    """Read a package's manifest and check every file's sha256 once (under the package's read lock, or in a
    private extraction of an archive), keeping the bytes of the graphs of ``models`` (an entry ``None``: the
    default model; ``models=None``: every model), of their ``config.pbtxt`` when ``configs``, of their
    TensorRT engine that can run here when ``engines`` (none without TensorRT, Polygraphy or a CUDA device:
    a CPU machine does not hold every plan in memory for nothing), and of the vocabulary.

    Raises:
        UsageError: ``path`` is not a package, or a model is not in it.
        IntegrityError: A file is missing, unlisted, a link, or differs from its sha256; the manifest was
            edited; an archive holds a link or an entry outside its directory. The message names the file.
    """
    src = Path(path)
    with package_dir(src) as root:
        manifest = read_manifest(root)
        entries = [manifest.model(m) for m in (models if models is not None else list(manifest.models))]
        keep = [e.file for e in entries] + [e.config for e in entries if configs]
        if engines:
            keep += _runnable_engines(manifest, entries)
        if manifest.text is not None:
            keep.append(manifest.text.vocab)
        data = verify_files(manifest, keep=keep)
    return VerifiedPackage(src, manifest, data)


def _runnable_engines(manifest: PackageManifest, entries: Sequence[ModelEntry]) -> list[str]:
    """The engine file of each entry that :func:`_trt_predictor` would pick on this machine (none when TensorRT
    cannot run here: it then refuses before it needs the bytes, with the same reason).
    """
    from seqdeploy.runtime import _trt

    models = [trt for trt in (manifest.trt_for(e.name) for e in entries) if trt is not None]
    if not models:
        return []
    try:
        target = _trt.probe()
    except BackendUnavailable:
        return []
    picked = (_trt.select_engine(trt.engines, target)[0] for trt in models)
    return [str(engine["file"]) for engine in picked if engine is not None]


def build_predictor(
    package: VerifiedPackage,
    model: str | None = None,
    backend: str = "auto",
    threads: int | None = None,
    *,
    session_config: Mapping[str, str] | None = None,
) -> Predictor:
    """A :class:`Predictor` for one model of a :class:`VerifiedPackage` (see :func:`load`)."""
    if threads is not None and threads < 1:
        raise UsageError(f"threads must be >= 1, got {threads}")
    manifest = package.manifest
    entry = manifest.model(model)
    tokenizer = None
    if manifest.text is not None:
        where = f"{package.source}/{manifest.text.vocab}"
        tokenizer = Tokenizer(manifest.text, parse_vocab(package.data[manifest.text.vocab], where=where))
    notes: list[str] = []
    if backend in ("auto", "trt"):
        try:
            return _trt_predictor(package, entry, tokenizer)
        except BackendUnavailable as exc:
            if backend == "trt":
                raise
            notes.append(f"TensorRT not used: {exc}")
    session, chosen = _session(package.data[entry.file], backend, entry.precision, threads, session_config)
    return Predictor(_signature(manifest, entry), session, chosen, tokenizer, package.source, notes)


def _trt_predictor(package: VerifiedPackage, entry: ModelEntry, tokenizer: Tokenizer | None) -> Predictor:
    """The model on its packaged TensorRT engine for this GPU (``runtime/_trt.py``; never run here).

    Raises:
        BackendUnavailable: No engine is packaged for the model, TensorRT/Polygraphy/a GPU is missing, no engine
            was built for this GPU and TensorRT version, or it does not load.
    """
    from seqdeploy.runtime import _trt

    manifest = package.manifest
    trt = manifest.trt_for(entry.name)
    if trt is None:
        raise BackendUnavailable(
            f"the package has no TensorRT engine for model '{entry.name}' (engines come from 'seqdeploy compile' on "
            "the target GPU; package the compiled export again)"
        )
    target = _trt.probe()
    engine, why = _trt.select_engine(trt.engines, target)
    if engine is None:
        raise BackendUnavailable(
            f"no packaged engine of {trt.name} runs here:\n  " + "\n  ".join(why) + "\nRebuild it on this GPU with "
            "'seqdeploy compile DIR' and package again"
        )
    base = _signature(manifest, entry)
    (blo, bhi), (tlo, thi) = trt.ranges["batch"], trt.ranges["seq"]
    lo, hi = max(base.seq_range[0], tlo), min(base.seq_range[1], thi)
    if blo > 1 or lo > hi:
        raise BackendUnavailable(
            f"engine {engine['file']}'s profile (batch {blo}..{bhi}, seq {tlo}..{thi}) does not cover batch 1 and "
            f"the packaged lengths {list(base.seq_range)} of '{entry.name}'"
        )
    data = package.data.get(str(engine["file"]))
    if data is None:
        raise BackendUnavailable(f"the engine {engine['file']} was not read with the package (open it with engines)")
    session = _trt.TrtSession(data, engine, trt.spec, make_runner=_TRT_RUNNER)
    signature = dataclasses.replace(base, max_batch_size=min(base.max_batch_size, bhi), seq_range=(lo, hi))
    return Predictor(signature, session, "trt", tokenizer, package.source)


_TRT_RUNNER: Any = None
"""The engine runner factory (``None``: Polygraphy's). Only the CPU tests replace it, with a fake engine."""


def load(
    path: str | Path,
    model: str | None = None,
    backend: str = "auto",
    threads: int | None = None,
    *,
    session_config: Mapping[str, str] | None = None,
) -> Predictor:
    """Load one model of a package for inference, without torch.

    Every file of the package is checked against its sha256 before anything is loaded, and the graph is
    loaded from exactly the bytes that were checked. An archive is extracted to a private temporary
    directory (links, absolute paths and ``..`` refused), which is removed once the model is in memory.

    Args:
        path: A package directory or its ``.tar.gz``.
        model: The model to load (default: the package's stateless fp32 model). Other models: the stream
            model ``NAME_stream`` and the variants ``NAME_int8``, ``NAME_fp16``.
        backend: ``"auto"`` (a packaged TensorRT engine built for this GPU and TensorRT version, else ONNX
            Runtime CUDA if this onnxruntime has it and it initialises, else CPU; int8 always CPU; the reasons
            a faster one was not used are in ``Predictor.backend_notes``), ``"trt"`` (the engine or an error
            saying why not), ``"ort-cpu"`` or ``"ort-cuda"``.
        threads: ONNX Runtime intra-op threads (``None``: its default).
        session_config: ONNX Runtime session config entries (``SessionOptions.add_session_config_entry``),
            e.g. ``{"session.intra_op.allow_spinning": "0"}`` for a server whose event loop shares the CPUs.

    Raises:
        UsageError: ``path`` is not a package, or there is no such model or backend.
        IntegrityError: A file is missing, unlisted, a link, or differs from its sha256; the manifest was
            edited; an archive holds a link or an entry outside its directory. The message names the file.
        BackendUnavailable: onnxruntime (or its CUDA provider for ``"ort-cuda"``) is not installed.
    """
    if threads is not None and threads < 1:
        raise UsageError(f"threads must be >= 1, got {threads}")
    if backend not in BACKENDS:
        raise UsageError(f"unknown runtime backend '{backend}'; choose one of {', '.join(BACKENDS)}")
    package = open_package(path, [model], engines=backend in ("auto", "trt"))
    return build_predictor(package, model, backend, threads, session_config=session_config)
