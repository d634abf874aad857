"""The TensorRT build plan: every decision a T4 build needs, made on the CPU, as plain tested functions.

A plan (``DIR/trt/plan.json``) names the ONNX file to build (fp16 → ``model.fp16.onnx``), the precision,
the TensorRT lines it targets and how each line is driven, one optimization profile with ``min``/``opt``/
``max`` shapes for **every** dynamic input — derived from the IOSpec's named axes and the config's
``[shapes]`` (or ``--shapes``), so inputs that share ``batch`` or ``seq`` always get the same bounds —,
per-output tolerances and the hand-off kit's cases. Building on the target (``seqdeploy compile``,
``trtexec.sh``, ``polygraphy.sh``) is then mechanical: read the plan, call TensorRT.

No onnx, torch or TensorRT (only the tolerance table's NumPy-backed module): the plan is pure data.
"""

from __future__ import annotations

import datetime as dt
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from seqdeploy.errors import InternalError, UsageError
from seqdeploy.parity.compare import DEFAULT_TOLERANCES
from seqdeploy.spec import BATCH, SEQ, IOSpec, TensorSpec

__all__ = [
    "DEFAULT_OPT_LEVEL",
    "DEFAULT_WORKSPACE_GIB",
    "ENGINE_TEMPLATE",
    "KIT_DIR",
    "KIT_FILES",
    "KIT_TOLERANCES",
    "PLAN_FILE",
    "PLAN_VERSION",
    "PRECISIONS",
    "TRT_LINES",
    "AxisBounds",
    "KitCase",
    "TrtLine",
    "axis_bounds",
    "build_plan",
    "engine_file",
    "graph_file",
    "kit_cases",
    "parse_profile_shapes",
    "polygraphy_shapes",
    "profile_for",
    "render_polygraphy",
    "render_trtexec",
    "shape_problems",
    "tolerances_for",
    "trtexec_shapes",
]

PLAN_VERSION = 1
KIT_DIR = "trt"
PLAN_FILE = "plan.json"
KIT_FILES = {
    "plan": "plan.json",
    "trtexec": "trtexec.sh",
    "polygraphy": "polygraphy.sh",
    "inputs": "inputs.json",
    "golden": "golden.json",
}
"""Kit files inside ``DIR/trt/`` (plus ``opt/<input>.bin``: raw opt-shape inputs for ``trtexec --loadInputs``)."""
ENGINE_TEMPLATE = "engines/{graph}.{precision}.sm{sm}.trt{trt}.plan"
"""Where an engine built from the plan goes, relative to the export directory."""

Precision = Literal["fp32", "fp16"]
PRECISIONS: tuple[str, ...] = ("fp32", "fp16")


@dataclass(frozen=True, slots=True)
class TrtLine:
    """How one TensorRT release line builds the plan's graph.

    Every plan builds a **strongly typed** network on both lines, at both precisions (issue 8): the ONNX
    file's types are the precision, so an fp32 engine is fp32 and an fp16 one is ``model.fp16.onnx``
    exactly, whoever builds it (``seqdeploy compile``, ``trtexec.sh``, ``polygraphy.sh``).

    Attributes:
        line: ``"10.x"`` or ``"11.x"``.
        lint_target: The ``seqdeploy lint`` target with this line's parser rules.
        strongly_typed_flag: Whether the line needs the explicit flag (``--stronglyTyped``,
            ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``) to build strongly typed.
        notf32_flag: Whether ``--noTF32`` exists on this line (fp32 must mean fp32; T4 has no TF32 anyway).
    """

    line: str
    lint_target: str
    strongly_typed_flag: bool
    notf32_flag: bool


TRT_LINES: dict[str, TrtLine] = {
    # 10.x is weakly typed by default: the STRONGLY_TYPED flag makes it build the file's types (fp16 comes
    # from model.fp16.onnx, never BuilderFlag.FP16, which 11.x removed: one file, one meaning on both).
    "10.x": TrtLine("10.x", "trt10", True, True),
    # 11.x is always strongly typed; --stronglyTyped is a deprecated no-op and --fp16 is gone.
    "11.x": TrtLine("11.x", "trt11", False, False),
}

DEFAULT_WORKSPACE_GIB = 2
"""The builder's workspace pool limit when neither the plan nor ``--workspace-gib`` says otherwise."""
DEFAULT_OPT_LEVEL = 3
"""The builder optimization level by default (TensorRT's own default, on 10.x and 11.x)."""

# Plan tolerances per precision — the one table for TensorRT backends (compile's proof, trt/trt-fp16,
# ort-trt/ort-trt-fp16, polygraphy.sh, gpu-check's targets). An element passes when
# |Δ| <= max(atol, rtol·|ref|) (Polygraphy's rule: it fails only if both are exceeded).
# fp32: issue 8's target for a TensorRT fp32 engine vs torch, max|Δ| <= 1e-4, as atol and rtol alike:
# 1e-4 absolute up to |ref| = 1 (states h, most outputs), 1e-4 relative beyond; looser than verify's
# CPU-vs-CPU 1e-5 because TensorRT's GEMM tactics accumulate in another order.
# fp16: verify's fp16 tolerance (parity.compare.DEFAULT_TOLERANCES), the one the fp16 variant was
# proven at on the CPU — taken from there, never restated.
KIT_TOLERANCES: dict[str, tuple[float, float]] = {
    "fp32": (1e-4, 1e-4),
    "fp16": (DEFAULT_TOLERANCES["fp16"].atol, DEFAULT_TOLERANCES["fp16"].rtol),
}


@dataclass(frozen=True, slots=True)
class AxisBounds:
    """``min <= opt <= max`` of one named axis."""

    min: int
    opt: int
    max: int

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.opt <= self.max:
            raise UsageError(f"axis bounds must satisfy 1 <= min <= opt <= max, got {self.to_list()}")

    def to_list(self) -> list[int]:
        """``[min, opt, max]``."""
        return [self.min, self.opt, self.max]


def parse_profile_shapes(text: str) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """``"1x1,8x64,64x512"`` → min, opt and max as ``(batch, seq)`` pairs.

    Raises:
        UsageError: Not exactly three ``BATCHxSEQ`` pairs of integers >= 1, or not non-decreasing.
    """
    parts = [p.strip() for p in text.split(",") if p.strip()]
    pairs: list[tuple[int, int]] = []
    for part in parts:
        b, sep, s = part.lower().partition("x")
        try:
            pairs.append((int(b), int(s)))
        except ValueError:
            sep = ""
        if not sep or min(pairs[-1]) < 1:
            raise UsageError(
                f"--shapes {text!r}: expected three BATCHxSEQ pairs min,opt,max, e.g. --shapes 1x1,8x64,64x512"
            )
    if len(pairs) != 3:
        raise UsageError(f"--shapes {text!r}: expected exactly three BATCHxSEQ pairs (min,opt,max), got {len(pairs)}")
    lo, opt, hi = pairs
    for i, axis in enumerate((BATCH, SEQ)):
        if not lo[i] <= opt[i] <= hi[i]:
            raise UsageError(f"--shapes {text!r}: {axis} must satisfy min <= opt <= max, got {[lo[i], opt[i], hi[i]]}")
    return lo, opt, hi


def axis_bounds(
    batch: Sequence[int],
    seq: Sequence[int],
    override: tuple[tuple[int, int], tuple[int, int], tuple[int, int]] | None = None,
) -> dict[str, AxisBounds]:
    """Bounds per named axis, from ``[shapes] batch/seq`` (``[min, opt, max]``) or ``--shapes``."""
    if override is not None:
        batch = [p[0] for p in override]
        seq = [p[1] for p in override]
    return {BATCH: AxisBounds(*batch), SEQ: AxisBounds(*seq)}


def _shape(t: TensorSpec, bounds: Mapping[str, AxisBounds], which: str) -> list[int]:
    out = []
    for d in t.dims:
        if isinstance(d, int):
            out.append(d)
        elif d in bounds:
            out.append(int(getattr(bounds[d], which)))
        else:
            raise InternalError(f"input '{t.name}' has axis '{d}', which has no bounds (known: {sorted(bounds)})")
    return out


def profile_for(spec: IOSpec, bounds: Mapping[str, AxisBounds]) -> dict[str, dict[str, list[int]]]:
    """One optimization profile: ``{input: {"min", "opt", "max"}}`` for **every** input with a named axis.

    Shapes come from the IOSpec's dims with each named axis replaced by its bound, so every input on
    the ``batch`` axis (``input``, ``lengths``, ``h0``, ``c0``, ``h0.k`` — states on axis 1) gets the
    same batch bounds; static inputs need no profile entry.
    """
    return {
        t.name: {which: _shape(t, bounds, which) for which in ("min", "opt", "max")}
        for t in spec.inputs
        if any(isinstance(d, str) for d in t.dims)
    }


def shape_problems(
    profile: Mapping[str, Mapping[str, Sequence[int]]], shapes: Mapping[str, Sequence[int]]
) -> list[str]:
    """Why ``shapes`` (input name → shape) cannot run on an engine built with ``profile``; empty = it can.

    Every profile input must be given, with the profile's rank, and every axis inside ``[min, max]``;
    each problem says the allowed range per axis, which is what a runner tells the user before launching.
    """
    problems = []
    for name, bounds in profile.items():
        if name not in shapes:
            problems.append(f"input '{name}' is missing (the engine's profile has {sorted(profile)})")
            continue
        got, lo, hi = list(shapes[name]), list(bounds["min"]), list(bounds["max"])
        if len(got) != len(lo):
            problems.append(f"input '{name}': shape {got} has rank {len(got)}, the profile's is {len(lo)}")
            continue
        bad = [i for i, (g, a, b) in enumerate(zip(got, lo, hi, strict=True)) if not a <= g <= b]
        if bad:
            allowed = ", ".join(f"axis {i}: {lo[i]}..{hi[i]}" for i in range(len(lo)))
            problems.append(f"input '{name}': shape {got} is outside the profile ({allowed}); axis {bad} out of range")
    return problems


def graph_file(
    manifest: Mapping[str, Any], precision: str, graph: str = "sequence", *, bundle_dir: str = "DIR"
) -> str:
    """The ONNX file TensorRT builds for ``precision``: fp32 → the exported graph, fp16 → the fp16 variant
    (:func:`seqdeploy.lint.bundle.variant_file`, the one answer to "which file is the fp16 graph").

    A name as the manifest records it: open it through ``Bundle.file``, which refuses paths outside the bundle.

    Raises:
        UsageError: Unknown precision, no such graph, or no fp16 variant (says how to make one).
    """
    from seqdeploy.lint.bundle import variant_file

    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision '{precision}'; choose one of {', '.join(PRECISIONS)}")
    graphs = manifest.get("graphs", {})
    if graph not in graphs:
        raise UsageError(f"the export has no '{graph}' graph (graphs: {sorted(graphs)})")
    if precision == "fp32":
        return str(graphs[graph]["file"])
    return variant_file(manifest, "fp16", graph, needed_by=f"--precision {precision}", bundle_dir=bundle_dir)


def tolerances_for(spec: IOSpec, precision: str) -> dict[str, dict[str, float]]:
    """Per-output ``{"atol", "rtol"}`` for an engine of ``precision`` against the fp32 PyTorch reference."""
    atol, rtol = KIT_TOLERANCES[precision]
    return {name: {"atol": atol, "rtol": rtol} for name in spec.output_names}


@dataclass(frozen=True, slots=True)
class KitCase:
    """One iteration of the kit's inputs/golden outputs.

    ``padded``: rows of different lengths (row 0 full, the others shorter), else every row full length.
    """

    name: str
    batch: int
    seq: int
    padded: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"name": self.name, "batch": self.batch, "seq": self.seq, "padded": self.padded}


def kit_cases(spec: IOSpec, bounds: Mapping[str, AxisBounds]) -> list[KitCase]:
    """The profile's min, opt and max shapes, plus one padded batch at max seq when the graph has
    ``lengths`` (at least 2 rows where the profile allows it, and a seq > 1 so that a row can be shorter).
    """
    b, s = bounds[BATCH], bounds[SEQ]
    cases = [KitCase("min", b.min, s.min), KitCase("opt", b.opt, s.opt), KitCase("max", b.max, s.max)]
    if spec.has("lengths") and s.max > 1:
        cases.append(KitCase("padded", min(max(b.opt, 3), b.max), s.max, padded=True))
    return cases


def engine_file(plan: Mapping[str, Any], *, sm: str, trt: str) -> str:
    """The engine path for this plan on a GPU of compute capability ``sm`` (``"75"``) and TensorRT ``trt``."""
    return ENGINE_TEMPLATE.format(graph=plan["graph"], precision=plan["precision"], sm=sm, trt=trt)


def build_plan(
    manifest: Mapping[str, Any],
    *,
    precision: str,
    bounds: Mapping[str, AxisBounds],
    onnx_sha256: str,
    lint: Mapping[str, Any],
    seed: int = 0,
    graph: str = "sequence",
    workspace_gib: int = DEFAULT_WORKSPACE_GIB,
    opt_level: int = DEFAULT_OPT_LEVEL,
) -> dict[str, Any]:
    """The plan (``plan.json``) for one graph of an export at one precision.

    Args:
        manifest: The export's manifest.
        precision: ``fp32`` or ``fp16``.
        bounds: Bounds per named axis (:func:`axis_bounds`).
        onnx_sha256: sha256 of the graph file, so a build can refuse a stale plan.
        lint: ``{target: LintReport.to_dict()}`` of the graph file for each TensorRT line.
        seed: Seed of the kit's inputs.
        graph: ``sequence`` (``step`` for streaming engines).
        workspace_gib: Builder workspace pool limit in GiB.
        opt_level: Builder optimization level (TensorRT's default is 3).
    """
    spec = IOSpec.from_dict(manifest["graphs"][graph]["spec"])
    onnx = graph_file(manifest, precision, graph)
    used = {d for t in spec.inputs for d in t.dims if isinstance(d, str)}
    return {
        "plan_version": PLAN_VERSION,
        "created_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "graph": graph,
        "onnx": onnx,
        "onnx_sha256": onnx_sha256,
        "opset": manifest.get("opset"),
        "precision": precision,
        # Read by every builder: compile (network flags), trtexec.sh (--stronglyTyped), polygraphy.sh.
        "strongly_typed": True,
        "tensorrt": {
            "lines": list(TRT_LINES),
            "per_line": {
                name: {
                    "lint_target": line.lint_target,
                    "strongly_typed": True,
                    "trtexec_flags": _trtexec_precision_flags(line, precision),
                }
                for name, line in TRT_LINES.items()
            },
        },
        "target_gpu": {
            "name": "NVIDIA T4",
            "compute_capability": "7.5",
            "hardware_compatibility": "none",
            "note": "engines only run on the GPU (compute capability) and TensorRT version that built them",
        },
        "builder": {"workspace_gib": workspace_gib, "optimization_level": opt_level, "tf32": False},
        "axes": {name: bounds[name].to_list() for name in sorted(used)},
        "profiles": [profile_for(spec, bounds)],
        "io": spec.to_dict(),
        "tolerances": tolerances_for(spec, precision),
        "lint": dict(lint),
        "kit": {
            "dir": KIT_DIR,
            "files": dict(KIT_FILES),
            "cases": [c.to_dict() for c in kit_cases(spec, bounds)],
            # Raw little-endian C-order arrays of the opt case, for `trtexec --loadInputs` (random ids
            # or lengths would be outside the vocabulary / [1, seq] and time a meaningless run).
            "opt_inputs": {name: f"{KIT_DIR}/opt/{name}.bin" for name in spec.input_names},
            "reference": {"backend": "torch", "precision": "fp32", "seed": seed},
        },
        "engine_template": ENGINE_TEMPLATE,
    }


def _trtexec_precision_flags(line: TrtLine, precision: str) -> list[str]:
    # Strongly typed at both precisions: fp32 stays fp32 and fp16 is the fp16 file's types (no --fp16).
    flags = []
    if line.strongly_typed_flag:
        flags.append("--stronglyTyped")
    if line.notf32_flag:
        flags.append("--noTF32")
    return flags


def trtexec_shapes(profile: Mapping[str, Mapping[str, Sequence[int]]], which: str) -> str:
    """``input:1x1,lengths:1,h0:2x1x64`` for ``--minShapes``/``--optShapes``/``--maxShapes``/``--shapes``."""
    return ",".join(f"{name}:{'x'.join(str(d) for d in shapes[which])}" for name, shapes in profile.items())


def polygraphy_shapes(profile: Mapping[str, Mapping[str, Sequence[int]]], which: str) -> list[str]:
    """``["input:[1,1]", "h0:[2,1,64]"]`` for ``--trt-min-shapes``/``--trt-opt-shapes``/``--trt-max-shapes``."""
    return [f"{name}:[{','.join(str(d) for d in shapes[which])}]" for name, shapes in profile.items()]


_SCRIPT_HEAD = """#!/usr/bin/env bash
# Generated by `seqdeploy compile --plan-only` from trt/plan.json ({precision}, {onnx}). Do not edit:
# re-run compile --plan-only instead. Runs from the export directory, wherever it is called from.
# Engines are tied to the GPU (compute capability) and TensorRT version that built them: run this on
# the target (a T4 is compute capability 7.5).
set -euo pipefail
cd "$(dirname "${{BASH_SOURCE[0]}}")/.."
# Engines and the timing cache go OUTSIDE the export directory: $TRT_OUT, by default DIR.trt-out beside it.
# Inside it they would be files the manifest does not list ('seqdeploy compile' refuses unrecorded
# engines/, and 'compile --plan-only' replaces trt/ as a whole).
TRT_OUT="${{TRT_OUT:-$(pwd -P).trt-out}}"
"""


def render_trtexec(plan: Mapping[str, Any]) -> str:
    """``trtexec.sh``: build (``build 10|11``) and time (``run 10|11``) an engine per the plan."""
    prof = plan["profiles"][0]
    per_line = plan["tensorrt"]["per_line"]
    bins = ",".join(f"{name}:{path}" for name, path in plan["kit"]["opt_inputs"].items())
    q = shlex.quote
    lines = [
        _SCRIPT_HEAD.format(precision=plan["precision"], onnx=plan["onnx"]),
        "# usage: trt/trtexec.sh build 10|11   build the engine (TensorRT 10.x or 11.x trtexec on PATH, or $TRTEXEC)",
        "#                                     into $TRT_OUT/engines/ (default DIR.trt-out/engines/, outside DIR)",
        "#        trt/trtexec.sh run 10|11     time it at the profile's opt shapes on the kit's opt inputs",
        'TRTEXEC="${TRTEXEC:-trtexec}"',
        'cmd="${1:-}"; line="${2:-}"',
        'case "$line" in 10|11) ;; *) echo "usage: $0 build|run 10|11 (TensorRT major)" >&2; exit 2;; esac',
        'SM="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d .)" || true',
        'SM="${SM:-unknown}"',
        f'ENGINE="$TRT_OUT/engines/{plan["graph"]}.{plan["precision"]}.sm${{SM}}.trt${{line}}.plan"',
        'case "$line" in',
        f"  10) PRECISION_FLAGS=({' '.join(per_line['10.x']['trtexec_flags'])}) ;;",
        f"  11) PRECISION_FLAGS=({' '.join(per_line['11.x']['trtexec_flags'])}) ;;",
        "esac",
        'case "$cmd" in',
        "  build)",
        '    mkdir -p "$TRT_OUT/engines"',
        '    "$TRTEXEC" \\',
        f"      --onnx={q(plan['onnx'])} \\",
        f"      --minShapes={q(trtexec_shapes(prof, 'min'))} \\",
        f"      --optShapes={q(trtexec_shapes(prof, 'opt'))} \\",
        f"      --maxShapes={q(trtexec_shapes(prof, 'max'))} \\",
        # ${a[@]+"${a[@]}"}: an empty array under `set -u` is an error before bash 4.4.
        '      ${PRECISION_FLAGS[@]+"${PRECISION_FLAGS[@]}"} \\',
        f"      --memPoolSize=workspace:{int(plan['builder']['workspace_gib']) * 1024} \\",
        f"      --builderOptimizationLevel={int(plan['builder']['optimization_level'])} \\",
        '      --timingCacheFile="$TRT_OUT/timing.cache" \\',
        '      --saveEngine="$ENGINE" \\',
        "      --skipInference",
        '    echo "engine: $ENGINE"',
        "    ;;",
        "  run)",
        '    "$TRTEXEC" \\',
        '      --loadEngine="$ENGINE" \\',
        f"      --shapes={q(trtexec_shapes(prof, 'opt'))} \\",
        f"      --loadInputs={q(bins)} \\",
        "      --warmUp=200 --duration=3 --percentile=90,95,99",
        "    ;;",
        '  *) echo "usage: $0 build|run 10|11" >&2; exit 2 ;;',
        "esac",
    ]
    return "\n".join(lines) + "\n"


def render_polygraphy(plan: Mapping[str, Any]) -> str:
    """``polygraphy.sh``: build an engine with Polygraphy and check it against the golden outputs.

    ``polygraphy.sh`` (or ``trt``) runs TensorRT; ``polygraphy.sh onnxrt`` runs the same comparison with
    ONNX Runtime on the plan's ONNX file, which is how the kit itself is proven on a CPU.
    """
    prof = plan["profiles"][0]
    tol = plan["tolerances"]
    atol = " ".join(f"{n}:{t['atol']:g}" for n, t in tol.items())
    rtol = " ".join(f"{n}:{t['rtol']:g}" for n, t in tol.items())
    q = shlex.quote
    strongly = " --strongly-typed" if plan["strongly_typed"] else ""
    engine_name = f"{plan['graph']}.{plan['precision']}"
    lines = [
        _SCRIPT_HEAD.format(precision=plan["precision"], onnx=plan["onnx"]),
        "# usage: trt/polygraphy.sh [trt]   build a TensorRT engine (Polygraphy + TensorRT) and compare it",
        "#        trt/polygraphy.sh onnxrt  the same comparison with ONNX Runtime (no GPU needed)",
        "# The engine and the timing cache go to $TRT_OUT (default DIR.trt-out, outside DIR).",
        f"# Compares every output ({', '.join(tol)}) of every kit case "
        f"({', '.join(c['name'] for c in plan['kit']['cases'])}) with the fp32 PyTorch golden outputs,",
        f"# at the plan's {plan['precision']} tolerances; extra arguments go to polygraphy.",
        'POLYGRAPHY="${POLYGRAPHY:-polygraphy}"',
        'mode="${1:-trt}"; shift || true',
        "COMPARE=(",
        f"  --load-inputs {KIT_DIR}/inputs.json --load-outputs {KIT_DIR}/golden.json",
        f"  --atol {atol}",
        f"  --rtol {rtol}",
        "  --check-error-stat elemwise --validate",
        ")",
        'case "$mode" in',
        "  trt)",
        '    mkdir -p "$TRT_OUT/engines"',
        '    SM="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d .)" || true',
        f'    exec "$POLYGRAPHY" run {q(plan["onnx"])} --trt{strongly} \\',
        f"      --trt-min-shapes {' '.join(q(s) for s in polygraphy_shapes(prof, 'min'))} \\",
        f"      --trt-opt-shapes {' '.join(q(s) for s in polygraphy_shapes(prof, 'opt'))} \\",
        f"      --trt-max-shapes {' '.join(q(s) for s in polygraphy_shapes(prof, 'max'))} \\",
        f"      --pool-limit workspace:{int(plan['builder']['workspace_gib'])}G \\",
        f"      --builder-optimization-level {int(plan['builder']['optimization_level'])} \\",
        '      --load-timing-cache "$TRT_OUT/timing.cache" --save-timing-cache "$TRT_OUT/timing.cache" \\',
        f'      --save-engine "$TRT_OUT/engines/{engine_name}.sm${{SM:-unknown}}.polygraphy.plan" \\',
        '      "${COMPARE[@]}" "$@"',
        "    ;;",
        "  onnxrt)",
        f'    exec "$POLYGRAPHY" run {q(plan["onnx"])} --onnxrt "${{COMPARE[@]}}" "$@"',
        "    ;;",
        '  *) echo "usage: $0 [trt|onnxrt] [polygraphy options]" >&2; exit 2 ;;',
        "esac",
    ]
    return "\n".join(lines) + "\n"
