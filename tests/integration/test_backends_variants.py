"""Variant files are found one way (``lint.bundle.variant_path``), through ``Bundle.file``: a manifest that
points a variant outside its bundle is refused by every reader, never opened."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from seqdeploy.cli import cli
from seqdeploy.errors import IntegrityError, UsageError
from seqdeploy.lint.bundle import variant_file
from seqdeploy.manifest import Bundle, write_manifest
from seqdeploy.optimize import make_fp16


@pytest.fixture
def evil_fp16(export_tiny, tmp_path):
    """An export whose fp16 variant's 'sequence' graph is recorded as ../outside/evil.onnx (re-stamped)."""
    d = tmp_path / "bundle"
    shutil.copytree(export_tiny(), d)
    make_fp16(d)
    (tmp_path / "outside").mkdir()
    shutil.copy(d / "model.fp16.onnx", tmp_path / "outside" / "evil.onnx")
    manifest = json.loads((d / "manifest.json").read_text())
    manifest["variants"]["fp16"]["graphs"]["sequence"] = "../outside/evil.onnx"
    write_manifest(d / "manifest.json", manifest)
    return d


def test_a_variant_outside_the_bundle_is_refused_by_every_reader(evil_fp16):
    d = evil_fp16
    res = CliRunner().invoke(cli, ["verify", str(d), "--backends", "torch,ort-cpu-fp16", "--batch", "1", "--seq", "3"])
    assert res.exit_code == 2, res.output  # was: exit 0, '../outside/evil.onnx' opened and run
    assert "../outside/evil.onnx: points outside the bundle" in res.output
    # The integrity check walks a variant's `graphs` values too, so no reader gets as far as a runner.
    with pytest.raises(IntegrityError, match="points outside the bundle"):
        Bundle.load(d)
    for args in (["lint", str(d)], ["compile", str(d), "--plan-only", "--precision", "fp16"]):
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 2 and "points outside the bundle" in res.output, (args, res.output)


def test_variant_file_is_the_one_answer(export_tiny):
    manifest = json.loads((export_tiny() / "manifest.json").read_text())
    with pytest.raises(
        UsageError, match=r"backend 'x' needs the fp16 variant, which D does not have.*optimize D --fp16"
    ):
        variant_file(manifest, "fp16", "sequence", needed_by="backend 'x'", bundle_dir="D")
    manifest["variants"] = {"fp16": {"file": "model.fp16.onnx", "graphs": {"sequence": "model.fp16.onnx"}}}
    assert variant_file(manifest, "fp16", "sequence", needed_by="x") == "model.fp16.onnx"
    with pytest.raises(UsageError, match=r"has no 'step' graph \(it has \['sequence'\]\)"):
        variant_file(manifest, "fp16", "step", needed_by="x")
    manifest["variants"] = {"int8": {"file": "model.int8.onnx", "graph": "sequence"}}  # the single-file form
    assert variant_file(manifest, "int8", "sequence", needed_by="x") == "model.int8.onnx"
