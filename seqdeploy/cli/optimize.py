"""``seqdeploy optimize DIR --int8 | --fp16``."""

from __future__ import annotations

from pathlib import Path

import click

from seqdeploy.cli._options import allow_modified_option, max_memory_option
from seqdeploy.errors import ParityError


@click.command("optimize")
@click.argument("bundle_dir", metavar="DIR", type=click.Path(path_type=Path, file_okay=False))
@click.option("--int8", "int8", is_flag=True, help="Write model.int8.onnx (ONNX Runtime dynamic quantization).")
@click.option(
    "--fp16", "fp16", is_flag=True, help="Write model.fp16.onnx (+ step.fp16.onnx): the fp16 file for TensorRT."
)
@click.option("--threads", type=click.IntRange(min=1), help="Threads of the proof's verify run (each variant).")
@allow_modified_option
@max_memory_option
def optimize_cmd(
    bundle_dir: Path,
    int8: bool,
    fp16: bool,
    threads: int | None,
    allow_modified: bool,
    max_memory_gb: float | None,
) -> None:
    """Write a variant next to DIR/model.onnx, verify it, and only then record it in the manifest.

    --int8: dynamic int8 quantization for CPU serving (LSTM -> DynamicQuantizeLSTM; GRU/RNN stay fp32,
    ONNX Runtime has no int8 kernel for them); runs as backend ort-cpu-int8. CPU-only: TensorRT cannot
    parse it.

    --fp16: weights and compute in fp16 with the I/O contract unchanged (fp32 states/outputs, int64
    ids; the casts are inside the graph). It is the file a TensorRT fp16 engine is built from, and runs
    on the CPU as backend ort-cpu-fp16. Refused (exit 1) when a weight or an activation exceeds the fp16
    range, naming the tensor. Prints max|Δ| vs fp32 PyTorch at seq 1, 64 and the config's max seq.

    Each variant is verified against the fp32 PyTorch reference at its tolerance before it is
    recorded, each in its own commit (with both flags: int8 first, then fp16). Exit codes: 0 ok, 1 a
    variant failed (it is not recorded; one committed before it in the same run stays, and the message
    names it), 2 usage, 3 onnxruntime missing, 130 interrupted (the variant being made is not recorded).
    """
    from seqdeploy.errors import UsageError
    from seqdeploy.optimize import make_fp16, quantize_int8, render_error_vs_seq
    from seqdeploy.parity.report import render_table

    if not (int8 or fp16):
        raise UsageError("nothing to do: choose a variant, e.g. 'seqdeploy optimize DIR --fp16' (or --int8)")
    try:
        if int8:
            result = quantize_int8(
                bundle_dir, threads=threads, allow_modified=allow_modified, max_memory_gb=max_memory_gb
            )
            _warn(result.report.warnings)
            e = result.entry
            click.echo(f"wrote {result.path} (quantized ops: {e['quantized_ops'] or 'none'})")
            if e["fp32_recurrent_ops"]:
                click.echo(f"note: {e['fp32_recurrent_ops']} stay fp32: ONNX Runtime has no int8 GRU/RNN kernel")
            worst = ", ".join(f"{k} {v:.2g}" for k, v in e["max_abs_vs_fp32"].items())
            click.echo(f"verified vs fp32 torch: {result.report.summary()}; max_abs: {worst}")
            click.echo(f"use it as backend 'ort-cpu-int8' in verify and profile ({result.duration_s:.1f} s)")
        if fp16:
            result = make_fp16(bundle_dir, threads=threads, allow_modified=allow_modified, max_memory_gb=max_memory_gb)
            _warn(result.report.warnings)
            e = result.entry
            click.echo(f"wrote {', '.join(e['graphs'].values())} (fp16 weights and compute; I/O unchanged)")
            click.echo(f"verified vs fp32 torch: {result.report.summary()}")
            for line in render_error_vs_seq(e):
                click.echo(line)
            click.echo(
                f"use it as backend 'ort-cpu-fp16'; 'seqdeploy compile {bundle_dir} --precision fp16 --plan-only' "
                f"plans the TensorRT build ({result.duration_s:.1f} s)"
            )
    except ParityError as exc:
        if exc.report is not None:
            click.echo(render_table(exc.report, failures_only=True), err=True)
        raise


def _warn(warnings: list[str]) -> None:
    """The proof's warnings (e.g. ``--allow-modified``: what differs from the manifest), never silent."""
    for w in warnings:
        click.echo(f"WARNING: {w}", err=True)
