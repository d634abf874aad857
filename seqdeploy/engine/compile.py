"""``seqdeploy compile``: today the CPU half, ``--plan-only`` — the build plan and the hand-off kit.

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
import datetime as dt
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqdeploy._atomic import bundle_transaction, fault_point
from seqdeploy.engine.plan import (
    KIT_DIR,
    KIT_FILES,
    TRT_LINES,
    KitCase,
    axis_bounds,
    build_plan,
    graph_file,
    render_polygraphy,
    render_trtexec,
)
from seqdeploy.errors import ExportError
from seqdeploy.manifest import Bundle, sha256, write_json

__all__ = ["PlanResult", "plan_only"]


@dataclass(frozen=True)
class PlanResult:
    """What ``plan_only`` wrote."""

    path: Path
    plan: dict[str, Any]
    files: list[str]
    duration_s: float


def plan_only(
    bundle_dir: str | Path,
    *,
    precision: str = "fp32",
    shapes: tuple[tuple[int, int], tuple[int, int], tuple[int, int]] | None = None,
    seed: int = 0,
    allow_modified: bool = False,
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

    Raises:
        UsageError: Not an export, unknown precision, no fp16 variant, bad shapes (exit 2).
        ExportError: The graph fails a TensorRT line's lint (exit 1); the findings are listed.
        BackendUnavailable: onnx or polygraphy is missing (exit 3).
    """
    from seqdeploy.backends import make_runner
    from seqdeploy.engine.kit import kit_feeds, save_golden, save_inputs, write_raw
    from seqdeploy.lint import lint_manifest, render_findings

    start = time.perf_counter()
    with bundle_transaction(bundle_dir) as tx:
        bundle = Bundle.load(bundle_dir, allow_modified=allow_modified)
        cfg = bundle.config
        bounds = axis_bounds(cfg.shapes.batch, cfg.shapes.seq, shapes)
        onnx_name = graph_file(bundle.manifest, precision)
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
