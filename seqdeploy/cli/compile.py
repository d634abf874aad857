"""``seqdeploy compile DIR [--precision fp32|fp16] [--shapes MIN,OPT,MAX] [--plan-only | build options]``."""

from __future__ import annotations

from pathlib import Path

import click

from seqdeploy.cli._options import allow_modified_option, max_memory_option
from seqdeploy.engine.plan import DEFAULT_OPT_LEVEL, DEFAULT_WORKSPACE_GIB
from seqdeploy.engine.target import MAX_OPT_LEVEL
from seqdeploy.errors import ParityError


@click.command("compile")
@click.argument("bundle_dir", metavar="DIR", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--precision",
    type=click.Choice(["fp32", "fp16"]),
    default="fp32",
    show_default=True,
    help="fp32 builds model.onnx; fp16 builds model.fp16.onnx (make it with 'seqdeploy optimize DIR --fp16').",
)
@click.option(
    "--shapes",
    metavar="BxS,BxS,BxS",
    help="Profile min,opt,max as BATCHxSEQ pairs, e.g. 1x1,8x64,64x512 (default: the recorded plan's, or the "
    "config's [shapes]).",
)
@click.option("--plan-only", is_flag=True, help="Write the plan and the hand-off kit (DIR/trt/); no TensorRT needed.")
@click.option(
    "--workspace-gib",
    type=click.IntRange(min=1),
    help=f"Builder workspace limit in GiB [default: the plan's, {DEFAULT_WORKSPACE_GIB}].",
)
@click.option(
    "--opt-level",
    type=click.IntRange(0, MAX_OPT_LEVEL),
    help=f"Builder optimization level 0-{MAX_OPT_LEVEL} [default: the plan's, {DEFAULT_OPT_LEVEL}].",
)
@click.option(
    "--timing-cache",
    type=click.Path(path_type=Path, dir_okay=False),
    help="TensorRT timing cache file (outside DIR): read if it exists, rewritten after the build.",
)
@click.option("--force", is_flag=True, help="Rebuild an engine already recorded for this GPU and TensorRT version.")
@click.option(
    "--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Seed of the kit's and proof's inputs."
)
@click.option("--threads", type=click.IntRange(min=1), help="Threads of the CPU reference in the proof.")
@click.option("--verbose", is_flag=True, help="Also keep TensorRT's info messages (shown when a build fails).")
@allow_modified_option
@max_memory_option
def compile_cmd(
    bundle_dir: Path,
    precision: str,
    shapes: str | None,
    plan_only: bool,
    workspace_gib: int | None,
    opt_level: int | None,
    timing_cache: Path | None,
    force: bool,
    seed: int,
    threads: int | None,
    verbose: bool,
    allow_modified: bool,
    max_memory_gb: float | None,
) -> None:
    """Build, prove and record a TensorRT engine for DIR on this GPU (or, with --plan-only, plan it anywhere).

    Without --plan-only (on the target GPU, with TensorRT 10.x or 11.x: pip install 'seqdeploy[gpu]'):
    makes or reuses the plan DIR/trt/plan.json, builds a strongly typed engine from it with TensorRT's
    Python API, writes DIR/engines/<graph>.<precision>.sm<cc>.trt<version>.plan, verifies it against
    fp32 PyTorch (backend trt or trt-fp16, every mode that fits the profile, shapes including the
    profile's min, opt and max, at the precision's tolerance) and only then records it in the manifest.
    A failing engine is deleted, never recorded. Engines only run on the GPU compute capability and the
    TensorRT version that built them.

    With --plan-only (any machine, no GPU): DIR/trt/plan.json (graph file, precision, TensorRT 10.x/11.x
    settings, one optimization profile covering every dynamic input, per-output tolerances),
    trtexec.sh (build/run), polygraphy.sh with inputs.json and golden.json (fp32 PyTorch outputs at the
    profile's min/opt/max shapes and a padded batch), all recorded in the manifest.

    Exit codes: 0 ok, 1 the graph fails a TensorRT lint or parser, or the engine failed its proof
    (no engine recorded), 2 usage, 3 TensorRT, a CUDA device or another needed library is missing
    (nothing written), 130 interrupted: the engine is not recorded; a plan this run committed stays and is
    named.
    """
    from seqdeploy.engine.plan import parse_profile_shapes
    from seqdeploy.errors import UsageError

    profile_shapes = parse_profile_shapes(shapes) if shapes else None
    if plan_only:
        if timing_cache is not None or force:
            raise UsageError("--timing-cache and --force apply to building an engine, not to --plan-only")
        _plan(bundle_dir, precision, profile_shapes, seed, allow_modified, workspace_gib, opt_level)
        return
    from seqdeploy.engine.compile import compile_engine
    from seqdeploy.parity.report import render_table

    try:
        result = compile_engine(
            bundle_dir,
            precision=precision,
            shapes=profile_shapes,
            workspace_gib=workspace_gib,
            opt_level=opt_level,
            timing_cache=timing_cache,
            force=force,
            seed=seed,
            threads=threads,
            allow_modified=allow_modified,
            max_memory_gb=max_memory_gb,
            verbose=verbose,
        )
    except ParityError as exc:
        if exc.report is not None:
            click.echo(render_table(exc.report, failures_only=True), err=True)
        raise
    e = result.entry
    click.echo(f"plan: {'reused' if result.plan_reused else 'written'} trt/plan.json ({e['onnx']}, {e['precision']})")
    for name, prof in e["profiles"][0].items():
        click.echo(f"  profile {name}: min {prof['min']} opt {prof['opt']} max {prof['max']}")
    click.echo(
        f"built {e['file']} with TensorRT {e['tensorrt']} on {e['gpu_name']} (compute capability "
        f"{e['compute_capability']}) in {e['build_seconds']:.1f} s"
    )
    for w in result.warnings[:5]:
        click.echo(f"  tensorrt {w}")
    v = e["verified"]
    worst = ", ".join(f"{k} {val:.2g}" for k, val in v["max_abs_vs_fp32"].items())
    click.echo(
        f"verified vs fp32 torch ({v['backend']}, atol {v['atol']:g} rtol {v['rtol']:g}, batches {v['batches']}, "
        f"seqs {v['seqs']}, modes {', '.join(v['modes'])}): {result.report.summary()}; max_abs: {worst}"
    )
    for skipped in v["skipped_modes"]:
        click.echo(f"  not run: {skipped}")
    click.echo(f"recorded in the manifest ({result.duration_s:.1f} s); run it with --backends {v['backend']}")


def _plan(
    bundle_dir: Path,
    precision: str,
    shapes: tuple[tuple[int, int], tuple[int, int], tuple[int, int]] | None,
    seed: int,
    allow_modified: bool,
    workspace_gib: int | None,
    opt_level: int | None,
) -> None:
    from seqdeploy.engine.compile import plan_only as make_plan

    result = make_plan(
        bundle_dir,
        precision=precision,
        shapes=shapes,
        seed=seed,
        allow_modified=allow_modified,
        workspace_gib=workspace_gib,
        opt_level=opt_level,
    )
    plan = result.plan
    click.echo(f"plan: {plan['onnx']} ({plan['precision']}) for TensorRT {', '.join(plan['tensorrt']['lines'])}")
    for name, prof in plan["profiles"][0].items():
        click.echo(f"  profile {name}: min {prof['min']} opt {prof['opt']} max {prof['max']}")
    cases = ", ".join(f"{c['name']} {c['batch']}x{c['seq']}" for c in plan["kit"]["cases"])
    click.echo(f"kit cases (batch x seq): {cases}; golden outputs from fp32 torch")
    click.echo(f"wrote {len(result.files)} files to {result.path} ({result.duration_s:.2f} s)")
    click.echo(f"on the target: {result.path}/trtexec.sh build 10   or   {result.path}/polygraphy.sh")
    out = f"{Path(bundle_dir).resolve()}.trt-out"
    click.echo(f"  (they write engines and the timing cache to $TRT_OUT, default {out}, not into the bundle)")
