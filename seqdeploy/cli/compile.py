"""``seqdeploy compile DIR [--precision fp32|fp16] [--shapes MIN,OPT,MAX] --plan-only``."""

from __future__ import annotations

from pathlib import Path

import click

from seqdeploy.cli._options import allow_modified_option


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
    help="Profile min,opt,max as BATCHxSEQ pairs, e.g. 1x1,8x64,64x512 (default: the config's [shapes]).",
)
@click.option("--plan-only", is_flag=True, help="Write the plan and the hand-off kit (DIR/trt/); no TensorRT needed.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Seed of the kit's inputs.")
@allow_modified_option
def compile_cmd(
    bundle_dir: Path, precision: str, shapes: str | None, plan_only: bool, seed: int, allow_modified: bool
) -> None:
    """Plan a TensorRT engine build for DIR and write the hand-off kit for the target GPU.

    With --plan-only (any machine, no GPU): DIR/trt/plan.json (graph file, precision, TensorRT 10.x/11.x
    settings, one optimization profile covering every dynamic input, per-output tolerances),
    trtexec.sh (build/run), polygraphy.sh with inputs.json and golden.json (fp32 PyTorch outputs at the
    profile's min/opt/max shapes and a padded batch), all recorded in the manifest. On the target:
    'DIR/trt/trtexec.sh build 10' or 'DIR/trt/polygraphy.sh'.

    Building engines here is not available yet (exit 3). Exit codes: 0 ok, 1 the graph fails a TensorRT
    lint (nothing written), 2 usage, 3 a needed library (polygraphy, onnx) or TensorRT is missing.
    """
    from seqdeploy.errors import BackendUnavailable

    if not plan_only:
        raise BackendUnavailable(
            "building a TensorRT engine needs TensorRT ('pip install seqdeploy[gpu]') and the GPU that will run "
            "it: engines are tied to the compute capability and TensorRT version that built them. This "
            "seqdeploy does not build engines yet; run 'seqdeploy compile DIR --plan-only' here and build "
            "on the target with DIR/trt/trtexec.sh or DIR/trt/polygraphy.sh"
        )
    from seqdeploy.engine.compile import plan_only as make_plan
    from seqdeploy.engine.plan import parse_profile_shapes

    result = make_plan(
        bundle_dir,
        precision=precision,
        shapes=parse_profile_shapes(shapes) if shapes else None,
        seed=seed,
        allow_modified=allow_modified,
    )
    plan = result.plan
    click.echo(f"plan: {plan['onnx']} ({plan['precision']}) for TensorRT {', '.join(plan['tensorrt']['lines'])}")
    for name, prof in plan["profiles"][0].items():
        click.echo(f"  profile {name}: min {prof['min']} opt {prof['opt']} max {prof['max']}")
    cases = ", ".join(f"{c['name']} {c['batch']}x{c['seq']}" for c in plan["kit"]["cases"])
    click.echo(f"kit cases (batch x seq): {cases}; golden outputs from fp32 torch")
    click.echo(f"wrote {len(result.files)} files to {result.path} ({result.duration_s:.2f} s)")
    click.echo(f"on the target: {result.path}/trtexec.sh build 10   or   {result.path}/polygraphy.sh")
