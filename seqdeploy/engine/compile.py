"""``seqdeploy compile``: the build plan and its hand-off kit (CPU), and the engine itself (target GPU).

:func:`compile_engine` (``seqdeploy compile DIR``) makes or reuses the plan, builds the engine with
TensorRT's Python API (:mod:`seqdeploy.engine.build`), proves it with ``verify --backends torch,trt``
(or ``trt-fp16``) at the plan's tolerances on shapes that include the profile's min, opt and max, and
only then records it: ``DIR/engines/<graph>.<precision>.sm<cc>.trt<version>.plan`` and its entry in
``manifest["engines"]`` appear together (a bundle transaction); a failing or interrupted engine is
deleted and never recorded. Without TensorRT or a CUDA device it exits 3 before writing anything.

:func:`plan_only` writes ``DIR/trt/`` as a whole (staged in a bundle transaction, renamed into place
with the manifest that records it):

* ``plan.json`` — :func:`seqdeploy.engine.plan.build_plan`;
* ``trtexec.sh`` — build (``build 10|11``) and time (``run 10|11``) with ``trtexec``;
* ``polygraphy.sh`` + ``inputs.json`` + ``golden.json`` — build with Polygraphy and compare every output
  of every kit case with the fp32 PyTorch reference (``polygraphy.sh onnxrt`` does the same on a CPU);
* ``opt/<input>.bin`` — the opt case's inputs as raw arrays for ``trtexec --loadInputs``.

The plan is refused (nothing written) when a TensorRT line's lint finds an error in the graph file:
a plan for a graph the parser rejects would only move the failure to the GPU machine.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
import os
import shutil
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seqdeploy._atomic import bundle_transaction, fault_point, staged_file
from seqdeploy.engine.plan import (
    DEFAULT_OPT_LEVEL,
    DEFAULT_WORKSPACE_GIB,
    KIT_DIR,
    KIT_FILES,
    PLAN_FILE,
    TRT_LINES,
    AxisBounds,
    KitCase,
    axis_bounds,
    build_plan,
    graph_file,
    render_polygraphy,
    render_trtexec,
)
from seqdeploy.engine.target import (
    ENGINES_DIR,
    MAX_OPT_LEVEL,
    GpuTarget,
    engine_entry,
    engine_path,
    explain_parser_errors,
    listed_sha256,
    no_tensorrt_message,
    plan_strongly_typed,
    proof_plan,
    stale_reason,
    stray_engine_files,
)
from seqdeploy.errors import BackendUnavailable, ExportError, InternalError, Interrupted, ParityError, UsageError
from seqdeploy.manifest import Bundle, sha256, write_json

if TYPE_CHECKING:
    from seqdeploy.engine.build import BuildResult
    from seqdeploy.engine.target import ProofPlan
    from seqdeploy.parity.report import ParityReport

__all__ = ["CompileResult", "PlanResult", "compile_engine", "plan_only", "trt_backend"]


@dataclass(frozen=True)
class PlanResult:
    """What ``plan_only`` wrote."""

    path: Path
    plan: dict[str, Any]
    files: list[str]
    duration_s: float


def _refuse_rebuild(
    bundle: Bundle, rel: str, current: dict[str, str], *, force: bool, bundle_dir: str | Path, kept: str = ""
) -> None:
    """Without ``force``, refuse to rebuild ``rel`` when it is recorded and built from the graph file as it is
    (``current``: file -> sha256); an entry built from an earlier version of its file is stale and rebuilt.
    """
    engines = bundle.manifest.get("engines") or []
    if not force and any(e.get("file") == rel and stale_reason(e, current) is None for e in engines):
        raise UsageError(
            f"{bundle_dir}: {rel} is already built and recorded for this GPU and TensorRT version; pass "
            f"--force to rebuild it (the recorded engine stays until the new one has passed its proof){kept}"
        )


def plan_only(
    bundle_dir: str | Path,
    *,
    precision: str = "fp32",
    shapes: tuple[tuple[int, int], tuple[int, int], tuple[int, int]] | None = None,
    seed: int = 0,
    allow_modified: bool = False,
    workspace_gib: int | None = None,
    opt_level: int | None = None,
) -> PlanResult:
    """Write ``DIR/trt/`` (plan + kit) for the sequence graph at ``precision`` and record it.

    Everything is staged inside a :func:`~seqdeploy._atomic.bundle_transaction`: the new kit and the
    manifest that lists it appear together; an error or an interruption leaves the bundle (an earlier
    kit included) exactly as it was.

    Args:
        bundle_dir: The export directory.
        precision: ``fp32`` (``model.onnx``) or ``fp16`` (``model.fp16.onnx``, made by ``optimize --fp16``).
        shapes: ``(min, opt, max)`` as ``(batch, seq)`` pairs; default the config's ``[shapes]``.
        seed: Seed of the kit's inputs.
        allow_modified: Plan for a bundle whose files differ from its manifest.
        workspace_gib: The builder's workspace limit written into the plan (and trtexec.sh/polygraphy.sh);
            default :data:`~seqdeploy.engine.plan.DEFAULT_WORKSPACE_GIB`.
        opt_level: The builder optimization level written into the plan (0..5); default
            :data:`~seqdeploy.engine.plan.DEFAULT_OPT_LEVEL`.

    Raises:
        UsageError: Not an export, unknown precision, no fp16 variant, bad shapes (exit 2).
        ExportError: The graph fails a TensorRT line's lint (exit 1); the findings are listed.
        BackendUnavailable: onnx or polygraphy is missing (exit 3).
    """
    from seqdeploy.backends import make_runner
    from seqdeploy.engine.kit import kit_feeds, save_golden, save_inputs, write_raw
    from seqdeploy.lint import lint_manifest, render_findings

    start = time.perf_counter()
    check_build_options(workspace_gib, opt_level)
    with bundle_transaction(bundle_dir) as tx:
        bundle = Bundle.load(bundle_dir, allow_modified=allow_modified)
        cfg = bundle.config
        bounds = axis_bounds(cfg.shapes.batch, cfg.shapes.seq, shapes)
        onnx_name = graph_file(bundle.manifest, precision, bundle_dir=str(bundle_dir))
        lint = {
            line.lint_target: lint_manifest(bundle.path, bundle.manifest, line.lint_target, only=[onnx_name])
            for line in TRT_LINES.values()
        }
        errors = [f for report in lint.values() for f in report.errors]
        if errors:
            raise ExportError(
                f"{onnx_name}: TensorRT's ONNX parser would reject this graph (no plan written):\n  "
                + "\n  ".join(render_findings(errors))
            )
        plan = build_plan(
            bundle.manifest,
            precision=precision,
            bounds=bounds,
            onnx_sha256=sha256(bundle.file(onnx_name)),
            lint={k: r.to_dict() for k, r in lint.items()},
            seed=seed,
            workspace_gib=DEFAULT_WORKSPACE_GIB if workspace_gib is None else workspace_gib,
            opt_level=DEFAULT_OPT_LEVEL if opt_level is None else opt_level,
        )
        spec = bundle.specs["sequence"]
        cases = [KitCase(**c) for c in plan["kit"]["cases"]]
        feeds = [kit_feeds(spec, c, seed + i) for i, c in enumerate(cases)]
        with make_runner("torch", bundle) as ref:
            golden = [ref.infer(f) for f in feeds]

        kit = tx.stage(KIT_DIR)
        kit.mkdir()
        write_json(kit / KIT_FILES["plan"], plan)
        for name, text in (
            (KIT_FILES["trtexec"], render_trtexec(plan)),
            (KIT_FILES["polygraphy"], render_polygraphy(plan)),
        ):
            script = kit / name
            script.write_text(text, encoding="utf-8")
            script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        save_inputs(kit / KIT_FILES["inputs"], feeds)
        save_golden(kit / KIT_FILES["golden"], golden)
        write_raw(kit / "opt", feeds[next(i for i, c in enumerate(cases) if c.name == "opt")])
        fault_point("compile:kit-written")
        files = sorted(f"{KIT_DIR}/{p.relative_to(kit).as_posix()}" for p in kit.rglob("*") if p.is_file())
        manifest = copy.deepcopy(bundle.manifest)
        # Under the key the manifest's integrity check reads ('trt': "file" and "files"), so a changed or
        # missing kit file is caught like any other bundle file.
        manifest["trt"] = {
            "file": f"{KIT_DIR}/{KIT_FILES['plan']}",
            "files": files,
            "graph": plan["graph"],
            "onnx": plan["onnx"],
            "onnx_sha256": plan["onnx_sha256"],
            "precision": plan["precision"],
            "created_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        tx.commit(manifest)
    return PlanResult(bundle.path / KIT_DIR, plan, files, time.perf_counter() - start)


# -- the engine (on the target GPU) -------------------------------------------------------------------------


@dataclass(frozen=True)
class CompileResult:
    """What ``compile_engine`` built, proved and recorded."""

    path: Path
    entry: dict[str, Any]
    report: ParityReport
    plan: dict[str, Any]
    plan_reused: bool
    duration_s: float
    warnings: list[str] = field(default_factory=list)


def trt_backend(precision: str) -> str:
    """The backend that runs an engine of ``precision``: ``trt`` or ``trt-fp16``."""
    return "trt" if precision == "fp32" else f"trt-{precision}"


def check_build_options(workspace_gib: int | None, opt_level: int | None) -> None:
    """Refuse builder settings TensorRT would reject (the CLI's ranges, for library callers too)."""
    if workspace_gib is not None and workspace_gib < 1:
        raise UsageError(f"--workspace-gib must be >= 1, got {workspace_gib}")
    if opt_level is not None and not 0 <= opt_level <= MAX_OPT_LEVEL:
        raise UsageError(
            f"--opt-level must be 0..{MAX_OPT_LEVEL} (TensorRT's default is {DEFAULT_OPT_LEVEL}), got {opt_level}"
        )


def _wanted_axes(bundle: Bundle, shapes: tuple[tuple[int, int], tuple[int, int], tuple[int, int]] | None) -> Any:
    cfg = bundle.config
    return {k: v.to_list() for k, v in axis_bounds(cfg.shapes.batch, cfg.shapes.seq, shapes).items()}


def recorded_plan(bundle: Bundle, precision: str, graph: str = "sequence") -> dict[str, Any] | None:
    """The recorded plan (``DIR/trt/plan.json``) when it was made for ``graph`` at ``precision`` from the
    graph file as it is now (same sha256), else ``None``. The one reader of a recorded plan: ``compile``
    reuses it, ``ort-trt`` takes its provider options from it.
    """
    rec = bundle.manifest.get("trt") or {}
    if (
        rec.get("precision") != precision
        or rec.get("graph", "sequence") != graph
        or rec.get("onnx") != graph_file(bundle.manifest, precision, graph, bundle_dir=str(bundle.path))
    ):
        return None
    path = bundle.file(f"{KIT_DIR}/{PLAN_FILE}")
    if not path.is_file():  # only with --allow-modified (Bundle.load refuses a missing listed file)
        return None
    plan: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if plan.get("onnx_sha256") != sha256(bundle.file(str(plan["onnx"]))):
        return None
    return plan


def _reusable(plan: dict[str, Any] | None, wanted_axes: Any, shapes_given: bool) -> bool:
    # Without --shapes an existing plan is reused as it is (its profile may come from an earlier --shapes).
    # A plan written before every line was strongly typed (10.x fp32 once was not) is made again: reused,
    # its engine would be recorded as weakly typed, against what the docs and the proof assume.
    if plan is None or not all(plan_strongly_typed(plan, line) for line in TRT_LINES):
        return False
    return not shapes_given or {k: plan["axes"].get(k) for k in wanted_axes} == wanted_axes


def _refuse_strays(bundle: Bundle) -> None:
    """Refuse files in ``engines/`` that the manifest does not record as engines: the commit replaces the
    directory as a whole, so they would be lost (an engine from ``trtexec.sh build``, for example).
    """
    strays = stray_engine_files(bundle.path, bundle.manifest)
    if strays:
        raise UsageError(
            f"{bundle.path}: {ENGINES_DIR}/ holds files seqdeploy did not build or record: {strays} (made by hand, "
            "or by the trtexec.sh/polygraphy.sh of an older kit, which wrote into the bundle?). Move them out of "
            "the bundle first: 'seqdeploy compile' replaces "
            f"{ENGINES_DIR}/ as a whole, and only runs engines it proved"
        )


def _copy_engine(src: Path, dst: Path) -> None:
    # A hard link costs nothing and survives the commit moving the old engines/ aside and deleting it.
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def compile_engine(
    bundle_dir: str | Path,
    *,
    precision: str = "fp32",
    shapes: tuple[tuple[int, int], tuple[int, int], tuple[int, int]] | None = None,
    workspace_gib: int | None = None,
    opt_level: int | None = None,
    timing_cache: Path | None = None,
    force: bool = False,
    seed: int = 0,
    threads: int | None = None,
    allow_modified: bool = False,
    max_memory_gb: float | None = None,
    probe: Callable[[str], GpuTarget] | None = None,
    verbose: bool = False,
) -> CompileResult:
    """Build the TensorRT engine of DIR's plan on this GPU, prove it, and record it.

    Args:
        bundle_dir: The export directory.
        precision: ``fp32`` (``model.onnx``) or ``fp16`` (``model.fp16.onnx``).
        shapes: ``(min, opt, max)`` as ``(batch, seq)``; a recorded plan with other axes is replaced.
        workspace_gib: Builder workspace (default: the plan's).
        opt_level: Builder optimization level 0..5 (default: the plan's).
        timing_cache: A timing cache file outside the bundle, read if it exists and rewritten after the build.
        force: Rebuild an engine already recorded for this graph, precision, GPU and TensorRT version.
        seed: Seed of the proof's inputs (and of a new plan's kit).
        threads: Threads of the CPU reference in the proof.
        allow_modified: Accept a bundle whose files differ from its manifest.
        max_memory_gb: Memory limit of the proof's sweep.
        probe: Returns the running GPU target (tests replace it; default: TensorRT + torch.cuda, and a
            TensorRT builder created once, so that a machine that cannot build fails before any write).
        verbose: Keep TensorRT's info messages in the build log.

    Raises:
        BackendUnavailable: No TensorRT, no CUDA device, or TensorRT cannot create a builder here (exit 3;
            checked before anything is written).
        UsageError: Bad options, no fp16 variant, or the engine is already recorded (without ``force``).
        ExportError: TensorRT's parser rejected the graph (each error with its node and the lint finding
            that explains it), or the build failed.
        ParityError: The engine disagrees with PyTorch beyond the precision's tolerance (deleted, unrecorded).
        Interrupted: Ctrl-C or SIGTERM before the commit (the engine is not recorded; a plan this run committed stays).
    """
    from seqdeploy.engine._trt import build_target

    start = time.perf_counter()
    check_build_options(workspace_gib, opt_level)
    bundle = Bundle.load(bundle_dir, allow_modified=allow_modified)
    onnx = graph_file(bundle.manifest, precision, bundle_dir=str(bundle_dir))  # no fp16 variant: a usage error first
    if timing_cache is not None and Path(os.path.realpath(timing_cache)).is_relative_to(os.path.realpath(bundle.path)):
        # engines/ and trt/ are replaced whole by later commits, and the bundle holds only listed files.
        raise UsageError(
            f"--timing-cache {timing_cache}: keep the timing cache outside {bundle_dir} (it is not a bundle file)"
        )
    _refuse_strays(bundle)
    try:
        # Before anything is written (the plan included): a machine that cannot build leaves the bundle as it was.
        target = (probe or build_target)(f"seqdeploy compile --precision {precision}")
    except BackendUnavailable as exc:
        raise BackendUnavailable(no_tensorrt_message(str(exc), str(bundle_dir), precision)) from exc

    # Before any write, the plan included: forgetting --force is an ordinary mistake and leaves the bundle
    # as it was. (Checked again under the lock below, against the plan as recorded.)
    _refuse_rebuild(
        bundle,
        engine_path({"graph": "sequence", "precision": precision}, target),
        {onnx: listed_sha256(bundle.manifest).get(onnx, "")},
        force=force,
        bundle_dir=bundle_dir,
    )
    plan = recorded_plan(bundle, precision)
    reused = _reusable(plan, _wanted_axes(bundle, shapes), shapes is not None)
    if not reused:
        plan_only(
            bundle_dir,
            precision=precision,
            shapes=shapes,
            seed=seed,
            allow_modified=allow_modified,
            workspace_gib=workspace_gib,
            opt_level=opt_level,
        )
        # As written and recorded (a JSON round trip), so the check under the lock below compares like with like.
        plan = recorded_plan(Bundle.load(bundle_dir, allow_modified=allow_modified), precision)
    if plan is None:
        raise InternalError(f"{bundle_dir}: compile --plan-only did not record a {precision} plan")
    # Errors from here on leave the plan this run committed (if it made one) recorded: they say so.
    kept = "" if reused else f"; the plan {KIT_DIR}/ written by this run stays recorded"
    rel = engine_path(plan, target)
    name = rel.split("/", 1)[1]

    with bundle_transaction(bundle_dir) as tx:
        bundle = Bundle.load(bundle_dir, allow_modified=allow_modified)
        if recorded_plan(bundle, precision) != plan:
            raise UsageError(f"{bundle_dir}: its plan changed while this compile was starting; run it again")
        engines: list[dict[str, Any]] = list(bundle.manifest.get("engines") or [])
        _refuse_rebuild(
            bundle, rel, {str(plan["onnx"]): str(plan["onnx_sha256"])}, force=force, bundle_dir=bundle_dir, kept=kept
        )
        others = [e for e in engines if e.get("file") != rel]
        _refuse_strays(bundle)
        staged = tx.stage(ENGINES_DIR)
        staged.mkdir()
        for e in others:
            _copy_engine(bundle.file(str(e["file"])), staged / Path(str(e["file"])).name)

        builder = {
            "workspace_gib": workspace_gib if workspace_gib is not None else int(plan["builder"]["workspace_gib"]),
            "optimization_level": opt_level if opt_level is not None else int(plan["builder"]["optimization_level"]),
            "tf32": False,
        }
        cache_in = timing_cache.read_bytes() if timing_cache is not None and timing_cache.is_file() else None
        result = _build(bundle, plan, target, builder, cache_in, verbose, kept=kept)
        (staged / name).write_bytes(result.plan)
        if timing_cache is not None and result.timing_cache is not None:
            # A cache shared by several compiles: the last writer wins (waiting for one that is writing
            # it), and it is no proven artifact of this run (never named as one if the proof then fails).
            with staged_file(timing_cache, force=True, record=False) as tmp:
                tmp.write_bytes(result.timing_cache)
        fault_point("compile:engine-written")

        candidate_entry = engine_entry(
            file=f"{staged.name}/{name}",
            plan=plan,
            target=target,
            plan_sha256=sha256(staged / name),
            build_seconds=result.seconds,
            timing_cache=str(timing_cache) if timing_cache is not None else None,
            builder=builder,
            verified={},
        )
        report, proof = _prove(bundle, plan, candidate_entry, others, seed, threads, max_memory_gb, kept)
        spec = bundle.specs[str(plan["graph"])]
        entry = {
            **candidate_entry,
            "file": rel,
            "verified": {
                "backend": trt_backend(precision),
                "batches": list(proof.batches),
                "seqs": list(proof.seqs),
                "modes": sorted({c.mode for c in report.cases}),
                "skipped_modes": list(proof.skipped),
                "comparisons": len(report.cases),
                "atol": proof.atol,
                "rtol": proof.rtol,
                "max_abs_vs_fp32": report.max_abs_by_tensor(spec.output_names, mode="full"),
                "seed": seed,
            },
        }
        manifest = copy.deepcopy(bundle.manifest)
        manifest["engines"] = [*others, entry]
        tx.commit(manifest)
    return CompileResult(
        path=bundle.path / rel,
        entry=entry,
        report=report,
        plan=plan,
        plan_reused=reused,
        duration_s=time.perf_counter() - start,
        warnings=result.warnings,
    )


def _build(
    bundle: Bundle,
    plan: dict[str, Any],
    target: GpuTarget,
    builder: dict[str, Any],
    cache: bytes | None,
    verbose: bool,
    kept: str = "",
) -> BuildResult:
    """``build_serialized`` with parser errors explained by the lint findings on the same nodes.

    ``kept``: what this run already recorded, for the message (``"; the plan trt/ ... stays recorded"``).
    """
    from seqdeploy.engine.build import ParseError, build_serialized
    from seqdeploy.lint import lint_manifest

    onnx_file = str(plan["onnx"])
    try:
        return build_serialized(
            bundle.file(onnx_file),
            plan["profiles"][0],
            line=target.line,
            workspace_gib=int(builder["workspace_gib"]),
            opt_level=int(builder["optimization_level"]),
            strongly_typed=plan_strongly_typed(plan, target.line),
            timing_cache=cache,
            verbose=verbose,
        )
    except ParseError as exc:
        lint_target = TRT_LINES[target.line].lint_target
        findings = lint_manifest(bundle.path, bundle.manifest, lint_target, only=[onnx_file]).findings
        lines = explain_parser_errors(exc.failures, findings, onnx_file)
        raise ExportError(
            f"TensorRT {target.tensorrt}'s ONNX parser rejected {onnx_file} (no engine was written{kept}):\n  "
            + "\n  ".join(lines)
        ) from None


def _prove(
    bundle: Bundle,
    plan: dict[str, Any],
    candidate: dict[str, Any],
    others: list[dict[str, Any]],
    seed: int,
    threads: int | None,
    max_memory_gb: float | None,
    kept: str = "",
) -> tuple[ParityReport, ProofPlan]:
    """Verify the staged engine against fp32 PyTorch on an in-memory manifest that records it.

    Raises:
        Interrupted: Ctrl-C or SIGTERM during the proof (the engine is not recorded).
        ParityError: The engine failed its tolerance (not recorded; the staged engine is deleted).
    """
    from seqdeploy.parity.run import VerifyOptions, verify

    precision = str(plan["precision"])
    bounds = {k: AxisBounds(*v) for k, v in plan["axes"].items()}
    spec = bundle.specs[str(plan["graph"])]
    proof = proof_plan(bounds, precision, streamable=bundle.streamable, lengths=spec.has("lengths"))
    candidate_manifest = copy.deepcopy(bundle.manifest)
    candidate_manifest["engines"] = [*others, candidate]
    backend = trt_backend(precision)
    opts = VerifyOptions(
        backends=("torch", backend),
        batches=proof.batches,
        seqs=proof.seqs,
        modes=proof.modes,
        atol=proof.atol,
        rtol=proof.rtol,
        seed=seed,
        threads=threads,
        max_memory_gb=max_memory_gb,
    )
    report = verify(dataclasses.replace(bundle, manifest=candidate_manifest, identity=()), opts)
    if report.partial:
        raise Interrupted(
            f"compile interrupted while proving {candidate['file']}; the engine was not recorded"
            + (kept or "; nothing was recorded")
        )
    if not report.passed:
        raise ParityError(
            f"the {precision} engine failed its proof against fp32 PyTorch at atol {proof.atol:g} / rtol "
            f"{proof.rtol:g} (it was deleted and "
            + (f"not recorded{kept}" if kept else "nothing was recorded")
            + f"): {report.summary()}",
            report,
        )
    return report, proof
