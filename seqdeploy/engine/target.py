"""Decisions on the target GPU, as plain tested functions: which TensorRT line runs, where an engine goes,
what the manifest records about it, whether a recorded engine may run here, what its proof covers, and
how ONNX Runtime's TensorRT provider is configured from the same plan.

Everything here is pure (stdlib only, no TensorRT, no torch): the TensorRT-facing code
(:mod:`seqdeploy.engine._trt`, :mod:`seqdeploy.engine.build`, :mod:`seqdeploy.backends.trt`) only calls
TensorRT with what these functions decided, so every decision is tested on a CPU.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqdeploy.engine.plan import KIT_TOLERANCES, PRECISIONS, TRT_LINES, AxisBounds, engine_file, trtexec_shapes
from seqdeploy.errors import BackendUnavailable, UsageError
from seqdeploy.lint.findings import Finding
from seqdeploy.spec import BATCH, SEQ, IOSpec

__all__ = [
    "ENGINES_DIR",
    "GPU_EXTRA_TENSORRT",
    "MAX_OPT_LEVEL",
    "NUMPY_FROM_TRT",
    "ORT_TRT_CACHE_DIR",
    "GpuTarget",
    "ParserFailure",
    "ProofPlan",
    "compatibility_problems",
    "engine_entry",
    "engine_io_problems",
    "engine_path",
    "explain_parser_errors",
    "line_typed",
    "listed_sha256",
    "network_creation_flags",
    "no_tensorrt_message",
    "ort_trt_cache_dir",
    "ort_trt_options",
    "plan_strongly_typed",
    "proof_plan",
    "select_engine",
    "stale_reason",
    "stray_engine_files",
    "trt_line",
    "unresolved_outputs",
]

GPU_EXTRA_TENSORRT = "tensorrt-cu12==10.16.1.11"
"""What the ``gpu`` extra pins (pyproject.toml; a test keeps the two equal): engines are tied to it."""

ENGINES_DIR = "engines"
"""Engines live in ``DIR/engines/``; every file there is listed in the manifest (``files``) with its sha256."""

ORT_TRT_CACHE_DIR = "cache/ort-trt"
"""ONNX Runtime's TensorRT engine cache, inside the bundle but never part of it: not listed in ``files``,
never referenced by a ``file`` key, never read as a bundle file (``docs/manifest.md``). Safe to delete."""


def stray_engine_files(bundle_path: Path, manifest: Mapping[str, Any]) -> list[str]:
    """Files in ``bundle_path/engines/`` that ``manifest`` does not record as engines (made by hand, or by an
    older kit's ``trtexec.sh``): a commit that replaces ``engines/`` as a whole would lose them.
    """
    recorded = {str(e.get("file")) for e in manifest.get("engines") or []}
    edir = bundle_path / ENGINES_DIR
    found = sorted(f"{ENGINES_DIR}/{p.name}" for p in (edir.iterdir() if edir.is_dir() else []))
    return [f for f in found if f not in recorded]


MAX_OPT_LEVEL = 5
"""TensorRT's builder optimization levels are 0..5 (default 3) on 10.x and 11.x."""

NUMPY_FROM_TRT: dict[str, str] = {
    # TensorRT DataType member name -> NumPy dtype name. Only the types seqdeploy graphs can have at their
    # I/O (IOSpec dtypes) plus BOOL/INT8/UINT8 so that an unexpected engine is named, not mis-read.
    "FLOAT": "float32",
    "HALF": "float16",
    "INT32": "int32",
    "INT64": "int64",
    "BOOL": "bool",
    "INT8": "int8",
    "UINT8": "uint8",
}


# -- the TensorRT line (10.x / 11.x) --------------------------------------------------------------------


def trt_line(version: str) -> str:
    """``"10.x"`` or ``"11.x"`` for a TensorRT ``__version__`` (``"10.16.1.11"``).

    Raises:
        BackendUnavailable: A version seqdeploy does not drive (before 10.0: implicit batch and
            ``IRNNv2Layer`` era; 12 and later: not released when this was written).
    """
    m = re.match(r"^(\d+)\.(\d+)", version.strip())
    if m is None:
        raise BackendUnavailable(f"cannot read the TensorRT version {version!r}")
    line = f"{int(m.group(1))}.x"
    if line not in TRT_LINES:
        raise BackendUnavailable(
            f"TensorRT {version} is not supported: seqdeploy builds with TensorRT {' or '.join(TRT_LINES)} "
            f"(pip install 'seqdeploy[gpu]' installs {GPU_EXTRA_TENSORRT}; 11.x is driven too when installed)"
        )
    return line


def network_creation_flags(line: str, strongly_typed_bit: int, *, strongly_typed: bool = True) -> int:
    """The ``Builder.create_network`` flags for a TensorRT line — **the one 10.x/11.x branch of the build**.

    seqdeploy's plans build strongly typed networks on both lines (the ONNX file's types are the
    precision: fp16 means ``model.fp16.onnx``, never ``BuilderFlag.FP16``, which 11.x removed); the plan's
    ``per_line[line]["strongly_typed"]`` says so and is passed here. 10.x is weakly typed unless
    ``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` is set; 11.x is always strongly typed and marks that
    flag deprecated, so it gets none (a plan cannot make 11.x weakly typed). Explicit batch is the only
    mode on both (``EXPLICIT_BATCH`` is ignored by 10.x and removed in 11.x), so it is never passed.

    Args:
        line: ``"10.x"`` or ``"11.x"`` (:func:`trt_line`).
        strongly_typed_bit: ``int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)`` (1 on both lines).
        strongly_typed: The plan's choice for this line.
    """
    if line == "10.x":
        return 1 << strongly_typed_bit if strongly_typed else 0
    if line == "11.x":
        return 0
    raise BackendUnavailable(f"unknown TensorRT line {line!r} (known: {', '.join(TRT_LINES)})")


def plan_strongly_typed(plan: Mapping[str, Any], line: str) -> bool:
    """Whether ``plan`` builds a strongly typed network on ``line`` (its ``per_line`` entry; a plan without
    one, written before per-line flags existed, says it once for all lines).
    """
    per_line = (plan.get("tensorrt") or {}).get("per_line") or {}
    entry = per_line.get(line) or {}
    return bool(entry.get("strongly_typed", plan.get("strongly_typed", True)))


# -- the running GPU --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GpuTarget:
    """What an engine is tied to: the GPU's compute capability and the TensorRT version (plus facts
    recorded for people: the GPU's name and the CUDA runtime).

    Attributes:
        tensorrt: ``tensorrt.__version__`` (engines need exactly this version to deserialize).
        compute_capability: ``"7.5"`` for a T4.
        gpu_name: ``"Tesla T4"``.
        cuda: The CUDA runtime version of the process (torch's build), e.g. ``"12.8"``.
    """

    tensorrt: str
    compute_capability: str
    gpu_name: str
    cuda: str | None

    @property
    def sm(self) -> str:
        """``"75"`` for compute capability 7.5 (the engine file name's ``sm75``)."""
        return self.compute_capability.replace(".", "")

    @property
    def line(self) -> str:
        """``"10.x"`` or ``"11.x"``."""
        return trt_line(self.tensorrt)


def engine_path(plan: Mapping[str, Any], target: GpuTarget) -> str:
    """``engines/<graph>.<precision>.sm<major><minor>.trt<version>.plan`` for this plan on this GPU."""
    return engine_file(plan, sm=target.sm, trt=target.tensorrt)


def engine_entry(
    *,
    file: str,
    plan: Mapping[str, Any],
    target: GpuTarget,
    plan_sha256: str,
    build_seconds: float,
    timing_cache: str | None,
    builder: Mapping[str, Any],
    verified: Mapping[str, Any],
) -> dict[str, Any]:
    """The manifest's record of one proven engine (one element of ``manifest["engines"]``).

    ``file`` is the key the bundle's integrity check reads (the engine must be listed in ``files`` with
    its sha256); ``profiles`` are the plan's, so a runner checks shapes against what was really built.
    """
    return {
        "file": file,
        "graph": plan["graph"],
        "precision": plan["precision"],
        "onnx": plan["onnx"],
        "onnx_sha256": plan["onnx_sha256"],
        "tensorrt": target.tensorrt,
        "tensorrt_line": target.line,
        "cuda": target.cuda,
        "gpu_name": target.gpu_name,
        "compute_capability": target.compute_capability,
        "hardware_compatibility": "none",
        "strongly_typed": line_typed(plan, target),
        "profiles": [dict(p) for p in plan["profiles"]],
        "plan_sha256": plan_sha256,
        "build_seconds": build_seconds,
        "timing_cache": timing_cache,
        "builder": dict(builder),
        "tolerances": dict(plan["tolerances"]),
        "verified": dict(verified),
    }


def line_typed(plan: Mapping[str, Any], target: GpuTarget) -> bool:
    """Whether an engine of ``plan`` built on ``target`` is strongly typed (11.x: always)."""
    return target.line == "11.x" or plan_strongly_typed(plan, target.line)


def compatibility_problems(entry: Mapping[str, Any], target: GpuTarget) -> list[str]:
    """Why the recorded engine ``entry`` cannot run on ``target``; empty = it can.

    TensorRT engines run only on the compute capability and the exact TensorRT version that built them
    (this project never builds with hardware or version compatibility: ``AMPERE_PLUS`` excludes Turing,
    and version-compatible engines need the lean runtime). Each problem says how to fix it.
    """
    problems = []
    built_cc, here_cc = str(entry.get("compute_capability")), target.compute_capability
    if built_cc != here_cc:
        problems.append(
            f"engine {entry.get('file')} was built for compute capability {built_cc} "
            f"({entry.get('gpu_name', 'unknown GPU')}), this GPU ({target.gpu_name}) is {here_cc}: TensorRT engines "
            "only run on the compute capability that built them"
        )
    built_trt = str(entry.get("tensorrt"))
    if built_trt != target.tensorrt:
        problems.append(
            f"engine {entry.get('file')} was built with TensorRT {built_trt}, this is TensorRT {target.tensorrt}: "
            "engines deserialize only in the TensorRT version that built them"
        )
    return problems


def listed_sha256(manifest: Mapping[str, Any]) -> dict[str, str]:
    """``{file: sha256}`` as the manifest's ``files`` table records them."""
    files = manifest.get("files") or {}
    return {str(k): str(v["sha256"]) for k, v in files.items() if isinstance(v, Mapping) and "sha256" in v}


def stale_reason(entry: Mapping[str, Any], current: Mapping[str, str]) -> str | None:
    """Why a recorded engine (or plan) was built from another version of its ONNX file than the bundle holds
    now (``current``: file -> sha256 of the file as it is, :func:`listed_sha256` or measured); ``None``: it
    was built from the current file.

    ``optimize --fp16`` run again replaces ``model.fp16.onnx``: an engine built from the old file would run
    the old model under the new file's name.
    """
    onnx = str(entry.get("onnx"))
    now = current.get(onnx)
    if now is None:
        return f"{entry.get('file')} was built from {onnx}, which the bundle no longer has"
    built = str(entry.get("onnx_sha256"))
    if built != now:
        return (
            f"{entry.get('file')} was built from an earlier {onnx} (sha256 {built[:12]}…; the bundle's {onnx} is "
            f"now {now[:12]}…)"
        )
    return None


def select_engine(
    manifest: Mapping[str, Any],
    *,
    graph: str,
    precision: str,
    target: GpuTarget,
    backend: str,
    bundle_dir: str,
    current_sha256: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The recorded engine a ``trt``/``trt-fp16`` runner uses on ``target``: one built from the graph file
    as it is now (``current_sha256``: file -> sha256 as measured; default the manifest's ``files`` table),
    for this compute capability and TensorRT version.

    Raises:
        UsageError: No engine of that graph and precision is recorded (says how to build one), or every one
            was built from an earlier version of its ONNX file (a stale engine never runs).
        BackendUnavailable: Engines are recorded, but none was built for this GPU and TensorRT version
            (each one's mismatch is listed, with the rebuild command).
    """
    rebuild = f"seqdeploy compile {bundle_dir}" + ("" if precision == "fp32" else f" --precision {precision}")
    recorded = [
        e for e in manifest.get("engines") or [] if e.get("graph") == graph and e.get("precision") == precision
    ]
    if not recorded:
        raise UsageError(
            f"backend '{backend}' needs a {precision} TensorRT engine of the '{graph}' graph, and {bundle_dir} has "
            f"none recorded; build it on this GPU with '{rebuild}'"
        )
    current = listed_sha256(manifest) if current_sha256 is None else current_sha256
    stale = [why for why in (stale_reason(e, current) for e in recorded) if why is not None]
    engines = [e for e in recorded if stale_reason(e, current) is None]
    if not engines:
        raise UsageError(
            f"backend '{backend}': no recorded {precision} engine was built from the graph file this bundle holds "
            "now:\n  " + "\n  ".join(stale) + f"\nRebuild it on this GPU with '{rebuild}'"
        )
    why: list[str] = list(stale)
    for e in engines:
        problems = compatibility_problems(e, target)
        if not problems:
            return dict(e)
        why.extend(problems)
    raise BackendUnavailable(
        f"backend '{backend}': no recorded {precision} engine can run here:\n  "
        + "\n  ".join(why)
        + f"\nRebuild it on this GPU with '{rebuild}' (the other engines stay recorded)"
    )


# -- the engine's I/O against the IOSpec ------------------------------------------------------------------


def engine_io_problems(spec: IOSpec, io: Mapping[str, tuple[str, str, int]]) -> list[str]:
    """Why an engine's I/O (``name -> (mode, TensorRT dtype name, rank)``, mode ``"INPUT"``/``"OUTPUT"``)
    differs from the IOSpec it must serve; empty = it serves it exactly.

    The fp16 file keeps the fp32/int64 I/O contract (casts inside the graph), so an fp16 engine has the
    same I/O dtypes as an fp32 one; a difference means the engine was not built from this export.
    """
    problems = []
    want = {t.name: ("INPUT", t) for t in spec.inputs} | {t.name: ("OUTPUT", t) for t in spec.outputs}
    for name, (mode, t) in want.items():
        if name not in io:
            problems.append(f"{mode.lower()} '{name}' is missing from the engine (it has {sorted(io)})")
            continue
        got_mode, got_dtype, got_rank = io[name]
        if got_mode != mode:
            problems.append(f"'{name}' is an {got_mode.lower()} of the engine, the IOSpec has it as an {mode.lower()}")
        numpy = NUMPY_FROM_TRT.get(got_dtype)
        if numpy is None:
            problems.append(f"'{name}' has TensorRT type {got_dtype}, which seqdeploy does not map to NumPy")
        elif numpy != t.dtype:
            problems.append(f"'{name}' is {numpy} in the engine, {t.dtype} in the IOSpec")
        if got_rank != t.rank:
            problems.append(f"'{name}' has rank {got_rank} in the engine, {t.rank} in the IOSpec")
    extra = sorted(set(io) - set(want))
    if extra:
        problems.append(f"the engine has I/O tensors the IOSpec does not: {extra}")
    return problems


def unresolved_outputs(shapes: Mapping[str, Sequence[int]]) -> list[str]:
    """Outputs whose shape still has a ``-1`` after every input shape was set (data-dependent shapes,
    which no seqdeploy graph has): their buffers cannot be sized before the launch.
    """
    return [f"output '{n}' has shape {list(s)} after the input shapes were set" for n, s in shapes.items() if -1 in s]


# -- parser errors explained by the lint ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParserFailure:
    """One error of TensorRT's ONNX parser (``OnnxParser.get_error(i)``)."""

    node: str
    """The ONNX node name (``ParserError.node_name()``), ``""`` when the error is not about a node."""
    code: str
    """The error code's name (``ParserError.code().name``, e.g. ``UNSUPPORTED_NODE``)."""
    message: str
    """``ParserError.desc()``."""
    operator: str = ""
    """The node's op type (``ParserError.node_operator()``), ``""`` when the error is not about a node."""


def explain_parser_errors(errors: Sequence[ParserFailure], findings: Sequence[Finding], onnx_file: str) -> list[str]:
    """One line per parser error, each followed by the lint findings on the same node (or, for errors not
    about a node, the graph-level findings) that explain it — or a plain statement that none does.
    """
    lines = []
    for err in errors:
        where = (
            (f"{err.operator} node '{err.node}'" if err.operator else f"node '{err.node}'")
            if err.node
            else "the graph"
        )
        lines.append(f"{onnx_file}: {where}: {err.message} [{err.code}]")
        related = [f for f in findings if f.graph in ("", onnx_file) and f.node == err.node]
        if related:
            lines += [f"    explained by lint {f.code} ({f.severity}): {f.message}" for f in related]
        else:
            lines.append(
                "    no seqdeploy lint rule predicts this error: please report it with the graph "
                "(and try 'polygraphy surgeon sanitize --fold-constants', NVIDIA/TensorRT#1177)"
            )
    return lines


# -- what an engine's proof covers ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProofPlan:
    """The verify run that must pass before an engine is recorded.

    Attributes:
        batches: The profile's batch min, opt, opt+1 (a dynamic batch on one engine) and max.
        seqs: The profile's seq min, opt and max.
        modes: Check modes whose every sub-shape lies inside the profile.
        skipped: ``mode: why`` for the modes left out.
        atol / rtol: The precision's tolerances (the plan's, ``engine.plan.KIT_TOLERANCES``).
    """

    batches: tuple[int, ...]
    seqs: tuple[int, ...]
    modes: tuple[str, ...]
    skipped: tuple[str, ...]
    atol: float
    rtol: float


def proof_plan(bounds: Mapping[str, AxisBounds], precision: str, *, streamable: bool, lengths: bool) -> ProofPlan:
    """Which shapes and modes prove an engine built with ``bounds``: every shape includes the profile's
    min, opt and max, and a mode runs only if all the shapes it derives stay inside the profile (the
    runner refuses the others before launching, which would fail the proof for the wrong reason).

    * ``batch`` runs each row alone (batch 1): needs batch min 1;
    * ``padding`` runs a row alone at its own length (any of 1..seq): needs seq min 1;
    * ``chunked`` runs chunks of about seq/3 steps: needs seq min 1 (streamable models only);
    * ``full`` and ``identities`` use the sweep's shapes; ``step`` needs a step engine (not built).
    """
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision '{precision}'; choose one of {', '.join(PRECISIONS)}")
    b, s = bounds[BATCH], bounds[SEQ]
    batches = tuple(sorted({b.min, b.opt, min(b.opt + 1, b.max), b.max}))
    seqs = tuple(sorted({s.min, s.opt, s.max}))
    modes = ["full"]
    skipped = ["step: engines are built for the sequence graph only"]
    if b.min == 1:
        modes.append("batch")
    else:
        skipped.append(f"batch: rows run alone at batch 1, below the profile's min batch {b.min}")
    if streamable:
        if s.min == 1:
            modes.append("chunked")
        else:
            skipped.append(f"chunked: chunks are shorter than the profile's min seq {s.min}")
    if lengths:
        if s.min == 1:
            modes.append("padding")
        else:
            skipped.append(f"padding: rows run alone at their own length, below the profile's min seq {s.min}")
    modes.append("identities")
    atol, rtol = KIT_TOLERANCES[precision]
    return ProofPlan(batches, seqs, tuple(modes), tuple(skipped), atol, rtol)


# -- the TensorRT provider of ONNX Runtime, from the same plan ---------------------------------------------


def ort_trt_cache_dir(precision: str, onnx_sha256: str, ort_version: str, trt_version: str | None) -> str:
    """``cache/ort-trt/<precision>-<sha>-ort<v>-trt<v>``: one cache per graph file, ORT and TensorRT version.

    ONNX Runtime keys its cached engines by the model's name and structure, not by its weights, and
    does not rebuild for another TensorRT version on its own; keying the directory by the file's sha256
    and both versions means a re-exported model or an upgraded library never reuses a stale engine.
    """
    trt = trt_version or "unknown"
    return f"{ORT_TRT_CACHE_DIR}/{precision}-{onnx_sha256[:16]}-ort{ort_version}-trt{trt}"


def ort_trt_options(
    profile: Mapping[str, Mapping[str, Sequence[int]]],
    *,
    precision: str,
    cache_path: str | None,
    workspace_gib: int,
    opt_level: int,
) -> dict[str, str]:
    """``TensorrtExecutionProvider`` options that build the network the plan describes.

    Explicit profiles for every dynamic input (the same min/opt/max strings as ``trtexec``: ORT requires
    all three for every dynamic input, or it falls back to profiles grown from the shapes it sees),
    the plan's workspace and optimization level, and an engine + timing cache under ``cache_path``.
    fp16 runs ``model.fp16.onnx`` (chosen by the caller) with ``trt_fp16_enable``: ORT's provider builds
    weakly typed, so without the flag TensorRT would not pick fp16 kernels for the fp16 file.
    """
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision '{precision}'; choose one of {', '.join(PRECISIONS)}")
    opts = {
        "trt_max_workspace_size": str(int(workspace_gib) << 30),
        "trt_builder_optimization_level": str(int(opt_level)),
        "trt_fp16_enable": "True" if precision == "fp16" else "False",
    }
    if profile:
        opts["trt_profile_min_shapes"] = trtexec_shapes(profile, "min")
        opts["trt_profile_opt_shapes"] = trtexec_shapes(profile, "opt")
        opts["trt_profile_max_shapes"] = trtexec_shapes(profile, "max")
    if cache_path is not None:
        opts |= {
            "trt_engine_cache_enable": "True",
            "trt_engine_cache_path": cache_path,
            "trt_timing_cache_enable": "True",
            "trt_timing_cache_path": cache_path,
        }
    return opts


# -- exit 3 -----------------------------------------------------------------------------------------------


def no_tensorrt_message(why: str, bundle_dir: str, precision: str = "fp32") -> str:
    """What ``seqdeploy compile DIR`` says (exit 3) on a machine without TensorRT or without a CUDA device."""
    flag = "" if precision == "fp32" else f" --precision {precision}"
    return (
        f"cannot build a TensorRT engine here: {why}.\n"
        "Building needs TensorRT's Python package and a CUDA device: install the 'gpu' extra "
        "(pip install 'seqdeploy[gpu]', on a machine that can reach NVIDIA's package index, or an NGC image "
        "with TensorRT) on the GPU machine.\n"
        "Engines must be built on the GPU that will run them (or one of the same compute capability, with the "
        "same TensorRT version): a T4 engine is compute capability 7.5, and an engine built elsewhere will not "
        "load there.\n"
        f"On this machine, run 'seqdeploy compile {bundle_dir}{flag} --plan-only' to write the plan and the "
        f"hand-off kit; on the target, run 'seqdeploy compile {bundle_dir}{flag}', or without Python "
        f"'{bundle_dir}/trt/trtexec.sh build 10' (or '{bundle_dir}/trt/polygraphy.sh'). Nothing was written"
    )
