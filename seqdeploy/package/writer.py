"""``seqdeploy package DIR -o PKG``: one proven artifact that the runtime loads and Triton serves as it is.

Stages, all inside a staging directory beside ``PKG`` that is renamed into place only at the end
(:func:`seqdeploy._atomic.staged_dir`; a failure or Ctrl-C/SIGTERM leaves nothing):

1. build the packaged graphs by surgery on the bundle's ``model.onnx`` (:mod:`seqdeploy.package.surgery`):
   ``NAME`` (stateless, batch-first), ``NAME_stream`` (START + implicit state; unidirectional models with
   state inputs only), and the variants ``NAME_int8`` / ``NAME_fp16`` when asked;
2. prove every graph against the bundle's PyTorch runner (:mod:`seqdeploy.package.prove`); a failure
   raises :class:`~seqdeploy.errors.ParityError` and nothing appears;
3. write each model's ``config.pbtxt`` and warmup data, ``vocab.txt`` for text models, the model card
   ``README.md`` and ``seqdeploy.json`` (sha256 of every file);
4. check the staged package exactly as ``seqdeploy package --check`` does (Triton's protobuf, the graph
   cross-checks, the file table); a failure here is a seqdeploy bug;
5. rename into place; with ``tar``, also write ``PKG.tar.gz`` (deterministic) through a temp file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seqdeploy import __version__
from seqdeploy._atomic import staged_dir, staged_file
from seqdeploy._lazy import require
from seqdeploy.errors import InternalError, Interrupted, ParityError, UsageError
from seqdeploy.manifest import DIGEST_FIELD, MANIFEST, Bundle, library_versions, manifest_digest, sha256
from seqdeploy.package.engines import (
    TRT_PLATFORM,
    PackagedEngine,
    engines_to_package,
    profile_ranges,
    trt_config,
    trt_model_name,
)
from seqdeploy.package.layout import START, axis_meanings, batch_first_spec, stream_spec
from seqdeploy.package.manifest import (
    PACKAGE_FORMAT,
    PACKAGE_MANIFEST,
    PACKAGE_SCHEMA_VERSION,
    TextSpec,
    file_table,
    merges_requests,
    valid_name,
)
from seqdeploy.package.triton import (
    render_pbtxt,
    stateless_config,
    stream_config,
    warmup_files,
    warmup_samples,
)
from seqdeploy.parity.compare import DEFAULT_TOLERANCES
from seqdeploy.parity.report import ParityReport
from seqdeploy.spec import IOSpec

__all__ = ["VARIANTS", "PackageOptions", "PackageResult", "write_package"]

VARIANTS = ("fp32", "int8", "fp16")
TOKEN_PATTERN = r"\w+|[^\w\s]"
"""Words (letters, digits, underscore) and single punctuation marks, as ``re.findall`` returns them."""
UNK_CANDIDATES = ("<unk>", "[UNK]", "<UNK>", "UNK", "<oov>", "[OOV]")
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class PackageOptions:
    """How to package a bundle.

    Attributes:
        name: Package and default model name (default: the bundle directory's name, sanitised).
        max_batch: Triton ``max_batch_size`` and the largest batch proven (default: ``[shapes] batch`` max).
        variants: Precisions to package; ``fp32`` is always the default model.
        tar: Also write ``PKG.tar.gz``.
        force: Replace an existing package (and archive) — only once the new one is proven.
        vocab: Vocabulary file for text models (default: the config's ``[model.embedding] vocab``).
        unk_token: Token that unknown words map to (default: the first of ``<unk>``, ``[UNK]``, … present).
        profile: A ``seqdeploy profile --json`` report of the bundle, summarised in the manifest and card.
        threads: ONNX Runtime / torch threads for the proof.
        seed: Seed of the proof's random feeds.
        max_memory_gb: Memory limit of the proof's largest case (default: :mod:`seqdeploy.budget`'s).
        engines: Package the bundle's proven TensorRT engines as ``NAME_trt/`` (``--no-engines``: leave them
            out, e.g. for a Triton whose TensorRT version differs).
    """

    name: str | None = None
    max_batch: int | None = None
    variants: tuple[str, ...] = ("fp32",)
    tar: bool = False
    force: bool = False
    vocab: Path | None = None
    unk_token: str | None = None
    profile: Path | None = None
    threads: int | None = None
    seed: int = 0
    max_memory_gb: float | None = None
    engines: bool = True


@dataclass(frozen=True)
class PackageResult:
    """What :func:`write_package` produced."""

    path: Path
    archive: Path | None
    manifest: dict[str, Any]
    report: ParityReport
    warnings: tuple[str, ...]
    duration_s: float


@dataclass
class _Graph:
    name: str
    kind: str
    precision: str
    model: Any  # onnx.ModelProto
    spec: IOSpec
    start: str | None
    source: str

    @property
    def file(self) -> str:
        return f"{self.name}/1/model.onnx"


def _default_name(path: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", path.resolve().name).lstrip("._-")
    return name or "model"


def _variants(values: tuple[str, ...]) -> tuple[str, ...]:
    unknown = [v for v in values if v not in VARIANTS]
    if unknown:
        raise UsageError(
            f"--variants: unknown {unknown}; choose from {', '.join(VARIANTS)}, e.g. --variants fp32,int8"
        )
    if "fp32" not in values:
        raise UsageError("--variants must include fp32: it is the package's default model (e.g. --variants fp32,int8)")
    return tuple(v for v in VARIANTS if v in values)


def _id_range(bundle: Bundle) -> int | None:
    """The vocabulary size the graph accepts (``input``'s value range), or ``None`` for float features."""
    t = bundle.specs["sequence"].tensor("input")
    if t.dtype != "int64" or t.value_range is None or not isinstance(t.value_range[1], int):
        return None
    return t.value_range[1] + 1


def _vocab_file(bundle: Bundle, explicit: Path | None) -> tuple[Path | None, str | None]:
    """The vocabulary to package, or ``(None, why not)``. Read from the IOSpec, so that a user's own
    module (``source = "python"``) taking token ids can be given ``--vocab`` too.
    """
    if _id_range(bundle) is None:
        if explicit is not None:
            raise UsageError("--vocab: this model takes float features, not token ids; it has no vocabulary")
        return None, "the model takes float features, not token ids"
    if explicit is not None:
        if not explicit.is_file():
            raise UsageError(f"--vocab {explicit}: file not found")
        return explicit, None
    emb = None if bundle.is_python else bundle.config.model.embedding
    if emb is None or emb.vocab is None:
        return None, "the config names no [model.embedding] vocab; package with --vocab FILE to read text"
    rel = Path(emb.vocab)
    candidates = [rel] if rel.is_absolute() else [bundle.path / rel]
    vectors = bundle.manifest.get("embedding_vectors") or {}
    vpath = str(vectors.get("path") or "")
    if emb.vectors and vpath.endswith(emb.vectors) and not rel.is_absolute():
        # The export recorded the vectors file's resolved path; the vocab sits relative to the same config dir.
        candidates.append(Path(vpath[: -len(emb.vectors)]) / rel)
    recorded = vectors.get("vocab")
    if isinstance(recorded, str) and recorded and Path(recorded) not in candidates:
        # The export recorded the vocabulary's resolved path (every embedding_vectors record has it, the
        # vocab-only one too: no vectors path to derive the config dir from).
        candidates.append(Path(recorded))
    for c in candidates:
        if c.is_file():
            return c, None
    raise UsageError(
        f"the config's vocabulary {emb.vocab!r} was not found (looked at {', '.join(map(str, candidates))}); "
        "pass it with --vocab FILE"
    )


def _text_spec(bundle: Bundle, path: Path, unk_token: str | None) -> tuple[TextSpec, bytes]:
    from seqdeploy.runtime._text import parse_vocab

    vocab_size = _id_range(bundle)
    assert vocab_size is not None
    emb = None if bundle.is_python else bundle.config.model.embedding
    data = path.read_bytes()
    try:
        tokens = parse_vocab(data, where=str(path))
    except Exception as exc:  # noqa: BLE001 - IntegrityError from the parser is a usage problem here
        raise UsageError(f"--vocab {path}: {exc}") from None
    if len(tokens) != vocab_size:
        raise UsageError(
            f"{path}: has {len(tokens)} tokens but the model takes token ids in [0, {vocab_size - 1}] "
            f"(vocab_size = {vocab_size}); the vocabulary must list one token per id, in id order"
        )
    if unk_token is not None and unk_token not in tokens:
        raise UsageError(f"--unk-token {unk_token!r} is not in the vocabulary {path}")
    unk = unk_token or next((t for t in UNK_CANDIDATES if t in tokens), None)
    special = re.compile(r"^[<\[].*[>\]]$")
    cased = any(t != t.lower() for t in tokens if not special.match(t))
    spec = TextSpec(
        vocab="vocab.txt",
        vocab_size=len(tokens),
        lowercase=not cased,
        pattern=TOKEN_PATTERN,
        unk_token=unk,
        unk_id=tokens.index(unk) if unk is not None else None,
        oov="unk" if unk is not None else "error",
        pad_id=emb.padding_idx if emb is not None and emb.padding_idx is not None else 0,
    )
    return spec, ("\n".join(tokens) + "\n").encode("utf-8")


def _latency(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
        cases = report["cases"]
        if report.get("partial"):
            raise UsageError(f"--profile {path}: is a partial (interrupted) profile; profile again to record latency")
        rows = [
            {
                "backend": c["backend"],
                "mode": c["mode"],
                "graph": c.get("graph"),
                "batch": c["batch"],
                "seq": c["seq"],
                "p50_ms": c["host_ms"]["p50_ms"],
                "p90_ms": c["host_ms"]["p90_ms"],
                "p99_ms": c["host_ms"]["p99_ms"],
            }
            for c in cases
        ]
    except UsageError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(
            f"--profile {path}: not a 'seqdeploy profile --json' report ({type(exc).__name__}: {exc})"
        ) from None
    env = report.get("env", {})
    return {
        "source": path.name,
        "note": "measured by 'seqdeploy profile' on the source bundle's graphs (the packaged graphs add only "
        "Transposes at the edges)",
        "env": {k: env.get(k) for k in ("cpu", "cores", "threads", "gpu") if k in env},
        "cases": rows,
    }


def _int8_graph(bundle: Bundle, fp32: Any, spec: IOSpec, name: str) -> _Graph:
    import onnx

    from seqdeploy.package.surgery import batch_first_graph

    bf = batch_first_spec(spec)
    variant = bundle.variant("int8")
    if variant is not None:
        # The bundle's own int8 variant, already proven by 'seqdeploy optimize': the same bytes, batch-first.
        model = batch_first_graph(onnx.load(str(bundle.file(variant["file"]))), spec)
        return _Graph(f"{name}_int8", "stateless", "int8", model, bf, None, str(variant["file"]))
    from seqdeploy.optimize import quiet_onnxruntime_tools

    quant = require("onnxruntime.quantization", extra="cpu", purpose="the int8 variant")
    with tempfile.TemporaryDirectory(prefix="seqdeploy-int8-") as td:
        src, dst = Path(td) / "fp32.onnx", Path(td) / "int8.onnx"
        src.write_bytes(fp32.SerializeToString())
        with quiet_onnxruntime_tools():
            quant.quantize_dynamic(str(src), str(dst), weight_type=quant.QuantType.QInt8)
        model = onnx.load(str(dst))
    return _Graph(f"{name}_int8", "stateless", "int8", model, bf, None, "quantize_dynamic(QInt8) of the fp32 graph")


def _fp16_graph(bundle: Bundle, fp32: Any, spec: IOSpec, name: str) -> _Graph:
    import onnx

    from seqdeploy.fp16 import convert_to_fp16
    from seqdeploy.package.surgery import batch_first_graph, toposort

    bf = batch_first_spec(spec)
    variant = bundle.variant("fp16")
    if variant is not None:
        # The bundle's own fp16 variant (seqdeploy optimize --fp16, already proven; the file TensorRT builds
        # for fp16): the same computation, batch-first.
        rel = (variant.get("graphs") or {}).get("sequence") or variant["file"]
        model = batch_first_graph(onnx.load(str(bundle.file(rel))), spec)
        return _Graph(f"{name}_fp16", "stateless", "fp16", model, bf, None, str(rel))
    # seqdeploy's own fp16 pass (fp32 at the edges, type-consistent; ORT's converter breaks the bi-LSTM
    # classifier, docs/tensorrt.md) on the batch-first graph.
    model = toposort(convert_to_fp16(fp32))
    return _Graph(f"{name}_fp16", "stateless", "fp16", model, bf, None, "seqdeploy fp16 pass on the fp32 graph")


def _build_graphs(bundle: Bundle, name: str, variants: tuple[str, ...]) -> tuple[list[_Graph], str | None]:
    import onnx

    from seqdeploy.package.surgery import batch_first_graph, stream_graph

    spec = bundle.specs["sequence"]
    bf = batch_first_spec(spec)
    graph_file = bundle.manifest["graphs"]["sequence"]["file"]
    fp32 = batch_first_graph(onnx.load(str(bundle.graph_path("sequence"))), spec)
    graphs = [_Graph(name, "stateless", "fp32", fp32, bf, None, graph_file)]
    stream_reason = None
    if bundle.streamable:
        graphs.append(
            _Graph(
                f"{name}_stream",
                "stream",
                "fp32",
                stream_graph(fp32, bf, START),
                stream_spec(bf, START),
                START,
                graph_file,
            )
        )
    elif bundle.bidirectional:
        stream_reason = "bidirectional: the backward direction needs the whole sequence, so it cannot be streamed"
    else:
        stream_reason = "the graph takes no state inputs (exported with initial_state = false)"
    if "int8" in variants:
        graphs.append(_int8_graph(bundle, fp32, spec, name))
    if "fp16" in variants:
        graphs.append(_fp16_graph(bundle, fp32, spec, name))
    return graphs, stream_reason


def _check_onnx(g: _Graph) -> None:
    from seqdeploy.package.surgery import check_graph

    if any(op.domain not in ("", "ai.onnx") for op in g.model.opset_import):
        return  # contrib ops (com.microsoft int8): the checker has no schema for them; the ORT proof runs them
    check_graph(g.model)


def _reference_cases(
    bundle: Bundle, ref: Any, max_batch: int, seed: int
) -> tuple[list[tuple[int, int, dict[str, np.ndarray], dict[str, np.ndarray]]], list[int], list[int]]:
    from seqdeploy.feeds import make_feeds
    from seqdeploy.package.prove import stateless_cases

    spec = bundle.specs["sequence"]
    batches, seqs = stateless_cases(max_batch, bundle.config.shapes.seq)
    out = []
    for i, (b, s) in enumerate((b, s) for b in batches for s in seqs):
        feeds = make_feeds(spec, b, s, seed=seed + i)
        out.append((b, s, feeds, ref.infer(feeds)))
    return out, batches, seqs


def _stream_output_mode(bundle: Bundle) -> str | None:
    """How the stream proof compares ``output``: per step, the last chunk's, or not at all (states only)."""
    if bundle.specs["sequence"].tensor("output").seq_axis is not None:
        return "steps"
    if bundle.is_python:
        return None  # a pooled output of the user's own head: whether it depends on the last step only is unknown
    # the zoo's classifier: the last state (or the last valid step's output) is what the last chunk ends with
    return "last" if bundle.config.model.head.pooling in ("last", "output_last") else None


def _check_budget(bundle: Bundle, max_batch: int, max_memory_gb: float | None) -> None:
    """Refuse a proof whose largest case cannot fit, before a graph is built (``--max-memory-gb``).

    The proof holds the feeds and reference outputs of every stateless case at once (``_reference_cases``),
    plus one case's packaged-graph outputs and comparisons; the stream proof runs the reference on each
    whole sequence at batch 1.
    """
    from seqdeploy.budget import check_sweep_budget
    from seqdeploy.package.prove import stateless_cases, stream_plan

    cfg = bundle.config
    batches, seqs = stateless_cases(max_batch, cfg.shapes.seq)
    shapes = [(b, s) for b in batches for s in seqs]
    if bundle.streamable:
        seq_range = (cfg.shapes.seq[0], cfg.shapes.seq[2])
        plan = stream_plan(max_batch, seq_range, has_lengths=bundle.specs["sequence"].has("lengths"))
        shapes.append((1, max(plan.lengths)))
    check_sweep_budget(
        bundle.specs["sequence"],
        shapes,
        None if bundle.is_python else cfg.model,
        sum(int(e["bytes"]) for e in bundle.manifest["files"].values()),
        copies=6 + 2 * len(shapes),
        what=f"the package proof (--max-batch {max_batch}, [shapes] seq max {cfg.shapes.seq[2]})",
        max_memory_gb=max_memory_gb,
    )


def _prove(
    bundle: Bundle,
    ref: Any,
    graphs: list[_Graph],
    stage: Path,
    max_batch: int,
    opts: PackageOptions,
    progress: Progress | None,
) -> tuple[ParityReport, dict[str, dict[str, Any]]]:
    from seqdeploy.package.prove import prove_stateless, prove_stream, stream_plan

    spec = bundle.specs["sequence"]
    lo, _, hi = bundle.config.shapes.seq
    report = ParityReport(reference="torch", backends=[g.name for g in graphs], seed=opts.seed)
    summaries: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    cases, batches, seqs = _reference_cases(bundle, ref, max_batch, opts.seed)
    for k, g in enumerate(graphs):
        tol = DEFAULT_TOLERANCES[g.precision]
        before = len(report.cases)
        path = stage / g.file
        if g.kind == "stream":
            assert g.start is not None
            plan = stream_plan(max_batch, (lo, hi), has_lengths=g.spec.has("lengths"))
            prove_stream(
                report, g.name, path, g.spec, g.start, ref, spec, plan, tol,
                compare_output=_stream_output_mode(bundle), seed=opts.seed, threads=opts.threads,
            )  # fmt: skip
            shapes = {
                "rows_per_request": plan.rows,
                "sequence_lengths": list(plan.lengths),
                "chunks": list(plan.chunks),
            }
        else:
            prove_stateless(report, g.name, path, g.spec, spec, cases, tol, threads=opts.threads)
            shapes = {"batches": batches, "seqs": seqs}
        mine = report.cases[before:]
        summaries[g.name] = {
            "passed": bool(mine) and all(c.passed for c in mine),
            "reference": "torch (the bundle's PyTorch runner, fp32)",
            "backend": "onnxruntime CPUExecutionProvider",
            "mode": "stream" if g.kind == "stream" else "batch-first",
            "comparisons": len(mine),
            "max_abs": {
                n: max((c.tensors[n].max_abs for c in mine if n in c.tensors), default=0.0)
                for n in dict.fromkeys(n for c in mine for n in c.tensors)
            },
            "tolerance": {"atol": tol.atol, "rtol": tol.rtol},
            **shapes,
        }
        if progress is not None:
            progress(k + 1, len(graphs))
    report.duration_s = time.perf_counter() - t0
    return report, summaries


def _tensor_entry(t: Any, head: str) -> dict[str, Any]:
    out: dict[str, Any] = dict(t.to_dict())
    out["axes"] = axis_meanings(t, head=head)
    return out


def _model_entry(
    g: _Graph, max_batch: int, seq: tuple[int, int], parity: dict[str, Any], head: str, samples: list[Any]
) -> dict[str, Any]:
    states = {p.input for p in g.spec.state}
    return {
        "kind": g.kind,
        "precision": g.precision,
        "platform": "onnxruntime_onnx",
        "file": g.file,
        "config": f"{g.name}/config.pbtxt",
        "source_graph": g.source,
        "scheduler": (
            "sequence_batching"
            if g.kind == "stream"
            else "dynamic_batching"
            if merges_requests(g.precision)
            else "none"  # int8: each request alone (package.manifest.merges_requests)
        ),
        "max_batch_size": max_batch,
        "ranges": {"batch": [1, max_batch], "seq": list(seq)},
        "inputs": [_tensor_entry(t, head) for t in g.spec.inputs],
        "outputs": [_tensor_entry(t, head) for t in g.spec.outputs],
        "state": [{"input": p.input, "output": p.output} for p in g.spec.state],
        "control": {"start": g.start} if g.start else {},
        "triton": {
            "inputs": [
                t.name for t in g.spec.inputs if g.kind != "stream" or (t.name not in states and t.name != g.start)
            ],
            "implicit_state": g.kind == "stream",
            "warmup": [s.name for s in samples] if g.kind != "stream" else [],
        },
        "tolerance": parity["tolerance"],
        "parity": parity,
    }


def _model_info(bundle: Bundle) -> dict[str, Any]:
    """What the package says about the model; read from the IOSpec and the bundle's own summary, so that a
    user's module (``source = "python"``) is described as well as a zoo model.
    """
    spec = bundle.specs["sequence"]
    inp = spec.tensor("input")
    head = "none" if bundle.is_python else bundle.config.model.head.task
    out = spec.tensor("output")
    classes = out.dims[-1] if head in ("classify", "tag") else None
    return {
        "source": "python" if bundle.is_python else "zoo",
        "summary": bundle.model_summary(),
        "bidirectional": bundle.bidirectional,
        "streamable": bundle.streamable,
        "head": head,
        "num_classes": classes,
        "pooling": bundle.config.model.head.pooling if head == "classify" else None,
        "vocab_size": _id_range(bundle),
        "feature_size": inp.dims[-1] if inp.dtype != "int64" else None,
        "lengths": spec.has("lengths"),
        "source_layout": "batch_first" if inp.batch_axis == 0 else "time_major",
    }


def _check_archive_target(path: Path, force: bool, root: str) -> None:
    if not path.exists() and not path.is_symlink():
        return
    if not force:
        raise UsageError(f"{path}: already exists; pass --force to replace it (only once the new package is proven)")
    import tarfile

    try:
        with tarfile.open(path, "r:gz") as tf:
            names = tf.getnames()
    except (tarfile.TarError, OSError, EOFError):
        names = []
    if path.is_symlink() or not path.is_file() or f"{root}/{PACKAGE_MANIFEST}" not in names:
        raise UsageError(f"{path}: exists and is not a package archive of '{root}'; --force only replaces those")


def write_package(
    bundle_dir: str | Path,
    out: str | Path,
    opts: PackageOptions | None = None,
    *,
    progress: Progress | None = None,
) -> PackageResult:
    """Package an export directory: graphs built, proven against PyTorch, configs checked, then ``out``.

    Args:
        bundle_dir: The export directory (``seqdeploy export``), checked file by file on load.
        out: The package directory to create (a Triton model repository).
        opts: See :class:`PackageOptions`.
        progress: Called as ``progress(done, total)`` after each model is proven.

    Raises:
        UsageError: Bad options, an existing ``out`` without ``force``, a vocabulary that does not fit.
        IntegrityError: The bundle does not match its manifest.
        BackendUnavailable: torch/onnx (extra ``export``), onnxruntime (``cpu``) or tritonclient
            (``triton``) is missing — all are needed to build and prove a package.
        ParityError: A packaged graph differs from the PyTorch reference; ``.report`` has every comparison.
            Nothing is written.
        Interrupted: Ctrl-C or SIGTERM; nothing is written.
    """
    start = time.perf_counter()
    opts = opts or PackageOptions()
    require("torch", extra="export", purpose="proving packaged graphs against PyTorch")
    require("onnx", extra="export", purpose="building the packaged graphs")
    require("onnxruntime", extra="cpu", purpose="running the packaged graphs")
    require("tritonclient.grpc.model_config_pb2", extra="triton", purpose="checking config.pbtxt with Triton's schema")
    bundle = Bundle.load(bundle_dir)
    cfg = bundle.config
    name = opts.name or _default_name(bundle.path)
    if not valid_name(name) or len(name) > 100:
        raise UsageError(f"--name {name!r}: use letters, digits, '_', '-' and '.', starting with a letter or digit")
    max_batch = opts.max_batch if opts.max_batch is not None else cfg.shapes.batch[2]
    if max_batch < 1:
        raise UsageError(f"--max-batch must be >= 1, got {max_batch}")
    variants = _variants(opts.variants)
    _check_budget(bundle, max_batch, opts.max_memory_gb)
    vocab_path, text_reason = _vocab_file(bundle, opts.vocab)
    text, vocab_bytes = _text_spec(bundle, vocab_path, opts.unk_token) if vocab_path is not None else (None, b"")
    latency = _latency(opts.profile)
    labels = cfg.model.head.labels
    out = Path(out)
    archive = out.with_name(f"{out.name}.tar.gz") if opts.tar else None
    if archive is not None:
        _check_archive_target(archive, opts.force, out.name)
    warnings: list[str] = []
    if bundle.manifest.get("trt") and not bundle.manifest.get("engines"):
        warnings.append(
            "the bundle has a TensorRT plan/kit (compile --plan-only) but no engine: a kit is not packaged; build the "
            "engine on the target GPU with 'seqdeploy compile DIR' and package again to get NAME_trt/"
        )
    seq_range = (cfg.shapes.seq[0], cfg.shapes.seq[2])
    with contextlib.ExitStack() as stack:
        tar_tmp = stack.enter_context(staged_file(archive)) if archive is not None else None
        stage = stack.enter_context(staged_dir(out, force=opts.force, kind=PACKAGE_MANIFEST))
        try:
            from seqdeploy.backends import make_runner

            with contextlib.ExitStack() as runners:
                # Under the bundle's read lock, and only if it is still the bundle whose hashes were checked:
                # the graphs are read and the reference loaded from exactly what Bundle.load verified. The
                # lock is held only for that: the proof runs on what is in memory, so an 'export --force',
                # 'optimize' or 'compile' of the bundle meanwhile commits at once instead of waiting on us.
                with bundle.snapshot():
                    source_manifest_sha = sha256(bundle.path / MANIFEST)
                    graphs, stream_reason = _build_graphs(bundle, name, variants)
                    engines: list[PackagedEngine] = []
                    if opts.engines:
                        engines, skipped = engines_to_package(
                            bundle.manifest, lambda rel: bundle.file(rel).read_bytes(), precisions=variants
                        )
                        warnings.extend(skipped)
                    ref = runners.enter_context(make_runner("torch", bundle, "sequence", threads=opts.threads))
                for g in graphs:
                    _check_onnx(g)
                    (stage / g.name / "1").mkdir(parents=True)
                    (stage / g.file).write_bytes(g.model.SerializeToString())
                report, parity = _prove(bundle, ref, graphs, stage, max_batch, opts, progress)
        except KeyboardInterrupt:
            raise Interrupted(
                "interrupted while building and proving the packaged graphs; nothing was written"
            ) from None
        if not report.passed:
            raise ParityError(f"package proof failed, nothing was written: {report.summary()}", report)
        samples = warmup_samples(max_batch, seq_range, cfg.shapes.seq[1])
        models: dict[str, Any] = {}
        header = f"Generated by seqdeploy {__version__} ('seqdeploy package'); its sha256 is in ../{PACKAGE_MANIFEST}."
        for g in graphs:
            if g.kind == "stream":
                assert g.start is not None
                config = stream_config(g.name, g.spec, start=g.start, max_batch=max_batch)
            else:
                config = stateless_config(
                    g.name,
                    g.spec,
                    max_batch=max_batch,
                    samples=samples,
                    cpu_only=g.precision == "int8",
                    merge=merges_requests(g.precision),
                )
            (stage / g.name / "config.pbtxt").write_text(render_pbtxt(config, header), encoding="utf-8")
            # A stream model has no warmup (implicit state: triton.stream_config), so no warmup data either.
            files = warmup_files(g.spec, samples) if g.kind != "stream" else {}
            if files:
                (stage / g.name / "warmup").mkdir()
                for fname, data in files.items():
                    (stage / g.name / "warmup" / fname).write_bytes(data)
            models[g.name] = _model_entry(g, max_batch, seq_range, parity[g.name], cfg.model.head.task, samples)
        trt_models = _write_engines(stage, bundle, name, engines, header, warnings)
        if text is not None:
            (stage / text.vocab).write_bytes(vocab_bytes)
        stream_name = next((g.name for g in graphs if g.kind == "stream"), None)
        manifest: dict[str, Any] = {
            "format": PACKAGE_FORMAT,
            "schema_version": PACKAGE_SCHEMA_VERSION,
            "name": name,
            "created_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "seqdeploy_version": __version__,
            "default_model": name,
            "source": {
                "bundle": str(bundle.path.resolve()),
                "manifest_sha256": bundle.manifest.get(DIGEST_FIELD),
                "manifest_file_sha256": source_manifest_sha,
                "graph": bundle.manifest["graphs"]["sequence"]["file"],
            },
            "model": _model_info(bundle),
            "models": models,
            "stream": {"model": stream_name} if stream_name else {"model": None, "reason": stream_reason},
            "text": text.to_dict() if text is not None else None,
            "text_unavailable": text_reason if text is None else None,
            "labels": list(labels) if labels is not None else None,
            "tolerances": {p: {"atol": t.atol, "rtol": t.rtol} for p, t in DEFAULT_TOLERANCES.items()},
            "latency": latency,
            "versions": library_versions("seqdeploy", "torch", "onnx", "onnxruntime", "numpy", "tritonclient"),
            "trt": {"models": trt_models, "note": TRT_NOTE},
        }
        from seqdeploy.package.card import render_card

        (stage / "README.md").write_text(render_card(manifest, report), encoding="utf-8")
        manifest["files"] = file_table(stage)
        manifest[DIGEST_FIELD] = manifest_digest(manifest)
        (stage / PACKAGE_MANIFEST).write_text(json.dumps(manifest, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        _self_check(stage)
        if tar_tmp is not None:
            from seqdeploy._atomic import STAGING_MARKER
            from seqdeploy.runtime._archive import write_tar

            write_tar(stage, tar_tmp, root=out.name, skip=frozenset({STAGING_MARKER}))
    return PackageResult(out, archive, manifest, report, tuple(warnings), time.perf_counter() - start)


TRT_NOTE = (
    "TensorRT engines are the ones 'seqdeploy compile' built and proved on the target GPU from the bundle's graph; "
    "they keep the bundle's layout, so their Triton models have max_batch_size 0 (no Triton batching: server#808). "
    "An engine loads only on the compute capability and with the exact TensorRT version that built it; elsewhere "
    "start tritonserver with --exit-on-error=false or load the other models explicitly."
)


def _trt_tensor(t: Any, head: str) -> dict[str, Any]:
    """A bundle-layout tensor's manifest entry: dims as exported, axes meanings moved from batch-first."""
    from seqdeploy.package.layout import outer_perm
    from seqdeploy.spec import TensorSpec

    perm = outer_perm(t)
    bf = TensorSpec(t.name, t.dtype, tuple(t.dims[i] for i in perm), t.value_range)
    meanings = axis_meanings(bf, head=head)
    axes = [""] * t.rank
    for i, p in enumerate(perm):
        axes[p] = meanings[i]
    out: dict[str, Any] = dict(t.to_dict())
    out["axes"] = axes
    return out


def _write_engines(
    stage: Path, bundle: Bundle, name: str, engines: list[PackagedEngine], header: str, warnings: list[str]
) -> dict[str, Any]:
    """``NAME_trt/`` (and ``NAME_trt_fp16/``): the plan files, ``config.pbtxt`` and their manifest entries."""
    spec = bundle.specs["sequence"]
    head = bundle.config.model.head.task
    out: dict[str, Any] = {}
    for precision in dict.fromkeys(e.precision for e in engines):
        group = [e for e in engines if e.precision == precision]
        model = trt_model_name(name, precision)
        try:
            ranges = profile_ranges(spec, [e.entry for e in group])
        except ValueError as exc:
            warnings.append(f"TensorRT engines of {model} are not packaged: {exc}")
            continue
        (stage / model / "1").mkdir(parents=True)
        for e in group:
            (stage / model / "1" / e.basename).write_bytes(e.data)
        config = trt_config(model, spec, group)
        (stage / model / "config.pbtxt").write_text(render_pbtxt(config, header), encoding="utf-8")
        out[model] = {
            "for_model": name if precision == "fp32" else f"{name}_{precision}",
            "precision": precision,
            "platform": TRT_PLATFORM,
            "config": f"{model}/config.pbtxt",
            "max_batch_size": 0,
            "layout": "the bundle's (as exported): input "
            + ("batch-first" if spec.tensor("input").batch_axis == 0 else "time-major")
            + ", states with the batch on axis 1",
            "inputs": [_trt_tensor(t, head) for t in spec.inputs],
            "outputs": [_trt_tensor(t, head) for t in spec.outputs],
            "state": [{"input": p.input, "output": p.output} for p in spec.state],
            "ranges": ranges,
            "engines": [
                {
                    **{k: v for k, v in e.entry.items() if k != "file"},
                    "file": f"{model}/1/{e.basename}",
                    "source_file": e.entry["file"],
                }
                for e in group
            ],
            "triton": {"cc_model_filenames": {e.compute_capability: e.basename for e in group}, "batching": False},
            "parity": {
                "passed": True,
                "reference": "torch (the bundle's PyTorch runner, fp32)",
                "proven_by": "seqdeploy compile on the GPU that built each engine (verify --backends torch,trt); not "
                "re-run by seqdeploy package, which has no TensorRT",
                "engines": {f"{model}/1/{e.basename}": e.entry.get("verified") for e in group},
            },
        }
    return out


def _self_check(stage: Path) -> None:
    from seqdeploy.package.check import check_package

    result = check_package(stage, staging=True)
    if not result.passed:
        raise InternalError("the package seqdeploy just wrote fails its own checks:\n" + result.render())
