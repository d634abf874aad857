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
