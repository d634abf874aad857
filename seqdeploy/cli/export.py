"""``seqdeploy export CONFIG -o DIR``."""

from __future__ import annotations

from pathlib import Path

import click

from seqdeploy.cli._options import max_memory_option
from seqdeploy.errors import ParityError


@click.command("export")
@click.argument("config", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "-o",
    "--output",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Export directory to create (model.onnx, model.pt, manifest.json).",
)
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path, dir_okay=False),
    help="state_dict to load (torch.load(weights_only=True)); training-checkpoint wrappers and 'module.' "
    "prefixes are unwrapped, names mapped by structure or [checkpoint] map (printed).",
)
@click.option("--force", is_flag=True, help="Replace DIR if it exists (only after the new export passed).")
@click.option(
    "--step/--no-step", default=None, help="Also export step.onnx, one time step with states in and out (streaming)."
)
@max_memory_option
def export_cmd(
    config: Path, out_dir: Path, checkpoint: Path | None, force: bool, step: bool | None, max_memory_gb: float | None
) -> None:
    """Export CONFIG's model to ONNX in DIR and prove the export.

    The export is checked (ONNX checker, graph lints, ONNX Runtime vs PyTorch at batch 1 and 3,
    seq 1, 7 and a long seq, on output and every state) before DIR appears. On failure nothing is
    left behind. With [model] source = "python" the model is your own nn.Module (importing it runs its
    code) and the self-check compares ONNX Runtime with that module. Exit codes: 0 ok, 1 export check
    failed, 2 bad config/usage (or the model would not fit in memory), 3 onnxruntime missing, 130
    interrupted (Ctrl-C or SIGTERM: nothing written).
    """
    from seqdeploy.export.stage import export_model
    from seqdeploy.parity.report import render_table

    try:
        result = export_model(
            config, out_dir, checkpoint=checkpoint, force=force, step=step, max_memory_gb=max_memory_gb
        )
    except ParityError as exc:
        if exc.report is not None:
            click.echo(render_table(exc.report, failures_only=True), err=True)
        raise
    m = result.manifest
    for line in result.messages:
        click.echo(line)
    for name, entry in m["files"].items():
        click.echo(f"wrote {result.path / name} ({entry['bytes']:,} bytes, sha256 {entry['sha256'][:12]})")
    vec = m.get("embedding_vectors")
    if vec and vec.get("used", True):
        click.echo(
            f"vectors: {vec['path']} ({vec['format']}, dim {vec['dim']}): {vec['found']}/{vec['found'] + vec['oov']} "
            f"vocabulary rows found ({vec['coverage']:.1%}), {vec['oov']} OOV initialised '{vec['oov_policy']}'"
        )
    elif vec and "vocab_tokens" in vec:
        # A vocab without vectors: checked (exists, one token per id) and recorded for `package`, loads nothing.
        click.echo(f"vocab: {vec['vocab']} ({vec['vocab_tokens']} tokens) checked; no vectors file, nothing loaded")
    for warning in result.warnings:
        click.echo(f"WARNING: {warning}", err=True)
    worst = ", ".join(f"{k} {v:.2g}" for k, v in m["self_check"]["max_abs"].items())
    click.echo(f"self-check: {result.report.summary()}; ort-cpu vs torch max_abs: {worst}")
    click.echo(f"exported in {result.duration_s:.1f} s -> {result.path}")
