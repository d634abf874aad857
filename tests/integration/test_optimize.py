"""``seqdeploy optimize``: options reach the proof, and a replaced graph file takes what was built from it along."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import seqdeploy.optimize as optimize
from seqdeploy.cli import cli


@pytest.mark.parametrize("variant", ["--int8", "--fp16"])
def test_threads_reach_the_proof_of_every_variant(export_tiny, copy_export, monkeypatch, variant):
    seen: list[int | None] = []
    real = optimize.verify

    def spy(bundle, opts):
        seen.append(opts.threads)
        return real(bundle, opts)

    monkeypatch.setattr(optimize, "verify", spy)
    d = copy_export(export_tiny())
    res = CliRunner().invoke(cli, ["optimize", str(d), variant, "--threads", "2"])
    assert res.exit_code == 0, res.output
    assert seen == [2]  # was [None] for --int8: --threads was silently ignored


def test_a_failing_second_variant_names_the_first_one_recorded(export_tiny, copy_export, monkeypatch):
    """optimize --int8 --fp16: the int8 commit happens first; a failing fp16 proof must not claim that
    nothing was recorded (the CLI's exit status for that is the foundation's; the message is ours)."""
    import seqdeploy.fp16 as fp16
    from tests.integration._onnx_surgery import perturb_weight

    real = fp16.convert_to_fp16
    d = copy_export(export_tiny())

    def broken(model):
        m = real(model)
        import onnx

        tmp = d.parent / "broken.fp16.onnx"
        onnx.save(m, str(tmp))
        perturb_weight(tmp, delta=1.0)
        return onnx.load(str(tmp))

    monkeypatch.setattr(fp16, "convert_to_fp16", broken)
    res = CliRunner().invoke(cli, ["optimize", str(d), "--int8", "--fp16"])
    assert res.exit_code == 1, res.output
    assert "the fp16 variant was not recorded; this run recorded model.int8.onnx before it" in res.output
    assert (d / "model.int8.onnx").is_file() and not (d / "model.fp16.onnx").exists()
