"""``seqdeploy optimize DIR --int8``."""

from __future__ import annotations

from pathlib import Path

import click

from seqdeploy.cli._options import allow_modified_option, max_memory_option
from seqdeploy.errors import ParityError


@click.command("optimize")
@click.argument("bundle_dir", metavar="DIR", type=click.Path(path_type=Path, file_okay=False))
@click.option("--int8", "int8", is_flag=True, help="Write model.int8.onnx (ONNX Runtime dynamic quantization).")
@allow_modified_option
@max_memory_option
def optimize_cmd(bundle_dir: Path, int8: bool, allow_modified: bool, max_memory_gb: float | None) -> None:
    """Write an optimized variant next to DIR/model.onnx and record it in the manifest.

    --int8: dynamic int8 quantization for CPU serving (LSTM -> DynamicQuantizeLSTM; GRU/RNN stay fp32,
    ONNX Runtime has no int8 kernel for them). The variant is verified against the fp32 PyTorch
    reference at the int8 tolerance before it is recorded; it then runs as backend ort-cpu-int8.
    Exit codes: 0 ok, 1 the variant failed its tolerance (nothing recorded), 2 usage, 3 onnxruntime missing,
    130 interrupted (nothing recorded).
    """
    from seqdeploy.errors import UsageError
    from seqdeploy.optimize import quantize_int8
    from seqdeploy.parity.report import render_table

    if not int8:
        raise UsageError("nothing to do: choose a variant, e.g. 'seqdeploy optimize DIR --int8'")
    try:
        result = quantize_int8(bundle_dir, allow_modified=allow_modified, max_memory_gb=max_memory_gb)
    except ParityError as exc:
        if exc.report is not None:
            click.echo(render_table(exc.report, failures_only=True), err=True)
        raise
    e = result.entry
    click.echo(f"wrote {result.path} (quantized ops: {e['quantized_ops'] or 'none'})")
    if e["fp32_recurrent_ops"]:
        click.echo(f"note: {e['fp32_recurrent_ops']} stay fp32: ONNX Runtime has no int8 GRU/RNN kernel")
    worst = ", ".join(f"{k} {v:.2g}" for k, v in e["max_abs_vs_fp32"].items())
    click.echo(f"verified vs fp32 torch: {result.report.summary()}; max_abs: {worst}")
    click.echo(f"use it as backend 'ort-cpu-int8' in verify and profile ({result.duration_s:.1f} s)")
