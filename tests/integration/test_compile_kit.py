"""``seqdeploy compile --plan-only``: the kit is written and recorded atomically, and Polygraphy itself —
run on the CPU with ONNX Runtime through the kit's own ``polygraphy.sh onnxrt`` — passes on a correct
export and fails on a copy with one perturbed weight. (``--trt`` needs TensorRT: never run here.)
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from seqdeploy.cli import cli
from seqdeploy.errors import IntegrityError
from seqdeploy.manifest import Bundle, sha256
from tests.integration._onnx_surgery import perturb_weight

BIN = Path(sys.executable).parent
LSTM_LEN = {"export": {"lengths": True}}


def compile_(d: Path, *args: str) -> tuple[int, str]:
    res = CliRunner().invoke(cli, ["compile", str(d), *args])
    return res.exit_code, res.output


def polygraphy(d: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "POLYGRAPHY": str(BIN / "polygraphy")}
    return subprocess.run(
        ["bash", str(d / "trt" / "polygraphy.sh"), "onnxrt", *args], capture_output=True, text=True, env=env
    )


def test_plan_only_writes_and_records_the_kit(export_tiny, copy_export):
    d = copy_export(export_tiny(**LSTM_LEN))
    code, out = compile_(d, "--plan-only")
    assert code == 0, out
    assert "profile h0: min [1, 1, 4] opt [1, 3, 4] max [1, 6, 4]" in out
    kit = sorted(str(p.relative_to(d)) for p in (d / "trt").rglob("*") if p.is_file())
    assert kit == [
        "trt/golden.json",
        "trt/inputs.json",
        "trt/opt/c0.bin",
        "trt/opt/h0.bin",
        "trt/opt/input.bin",
        "trt/opt/lengths.bin",
        "trt/plan.json",
        "trt/polygraphy.sh",
        "trt/trtexec.sh",
    ]
    manifest = json.loads((d / "manifest.json").read_text())
    for f in kit:
        assert manifest["files"][f]["sha256"] == sha256(d / f), f
    plan = json.loads((d / "trt/plan.json").read_text())
    assert manifest["trt"]["file"] == "trt/plan.json" and manifest["trt"]["onnx"] == "model.onnx"
    assert manifest["trt"]["files"] == kit
    assert plan["onnx_sha256"] == sha256(d / "model.onnx")
    assert set(plan["profiles"][0]) == {"input", "lengths", "h0", "c0"}
    assert [c["name"] for c in plan["kit"]["cases"]] == ["min", "opt", "max", "padded"]
    assert set(plan["lint"]) == {"trt10", "trt11"} and all(r["passed"] for r in plan["lint"].values())
    assert not [p for p in d.iterdir() if p.name.startswith(".")]  # no temp directory left behind
    assert Bundle.load(d).tampered_files() == []  # every kit file is listed with its sha256
    (d / "trt/golden.json").write_text("{}")
    with pytest.raises(IntegrityError, match=r"trt/golden\.json"):
        Bundle.load(d)


def test_kit_data_is_polygraphy_format_and_the_raw_opt_inputs_match(export_tiny, copy_export):
    from polygraphy.comparator import RunResults
    from polygraphy.json import load_json

    d = copy_export(export_tiny(**LSTM_LEN))
    assert compile_(d, "--plan-only")[0] == 0
    inputs = load_json(str(d / "trt/inputs.json"))
    golden = RunResults.load(str(d / "trt/golden.json"))
    assert [tuple(f["input"].shape) for f in inputs] == [(1, 1, 5), (6, 3, 5), (24, 6, 5), (24, 3, 5)]
    lengths = [f["lengths"].tolist() for f in inputs]
    assert lengths[0] == [1] and lengths[2] == [24] * 6  # profile shapes are full length
    assert lengths[3][0] == 24 and lengths[3][1] == 1  # the padded case really is padded
    ((runner, iterations),) = list(golden.items())
    assert runner == "seqdeploy-torch-fp32" and len(iterations) == 4
    assert set(iterations[2].keys()) == {"output", "h_n", "c_n"}
    assert iterations[2]["h_n"].shape == (1, 6, 4)
    # padded steps of output are zero in the golden output (the recurrent op's Y past the length)
    assert np.all(iterations[3]["output"][1:, 1] == 0)
    opt = inputs[1]
    for name in ("input", "lengths", "h0", "c0"):
        raw = np.fromfile(d / "trt/opt" / f"{name}.bin", dtype=opt[name].dtype).reshape(opt[name].shape)
        assert np.array_equal(raw, opt[name]), name


@pytest.mark.parametrize("overrides", [LSTM_LEN, {"cell": "gru", "bidirectional": True}])
def test_polygraphy_passes_on_the_export_and_fails_on_one_perturbed_weight(export_tiny, copy_export, overrides):
    d = copy_export(export_tiny(**overrides))
    assert compile_(d, "--plan-only")[0] == 0
    ok = polygraphy(d)
    assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-3000:]
    assert "PASSED | Runtime" in ok.stdout + ok.stderr
    n = len(json.loads((d / "trt/plan.json").read_text())["kit"]["cases"])
    assert f"Passed: {n}/{n} iterations" in ok.stdout + ok.stderr

    perturb_weight(d / "model.onnx", delta=1e-2)
    bad = polygraphy(d)
    text = bad.stdout + bad.stderr
    assert bad.returncode != 0, text[-3000:]
    assert "FAILED | Output: 'h_n'" in text or "FAILED | Output: 'output'" in text


def test_fp16_kit_passes_at_fp16_tolerance_and_fails_when_perturbed(export_tiny, copy_export):
    d = copy_export(export_tiny(**LSTM_LEN))
    assert CliRunner().invoke(cli, ["optimize", str(d), "--fp16"]).exit_code == 0
    code, out = compile_(d, "--plan-only", "--precision", "fp16")
    assert code == 0, out
    plan = json.loads((d / "trt/plan.json").read_text())
    assert plan["onnx"] == "model.fp16.onnx" and plan["strongly_typed"] is True
    assert plan["tolerances"]["c_n"] == {"atol": 1e-2, "rtol": 1e-2}
    ok = polygraphy(d)
    assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-3000:]
    # One weight off by 0.05 (5x the tolerance, not 50x): the kit must be sharp enough to see it.
    perturb_weight(d / "model.fp16.onnx", delta=0.05)
    bad = polygraphy(d)
    assert bad.returncode != 0 and "FAILED | Output:" in bad.stdout + bad.stderr


def test_shapes_option_sets_every_input(export_tiny, copy_export):
    d = copy_export(export_tiny(batch_first=True, **LSTM_LEN))
    code, out = compile_(d, "--plan-only", "--shapes", "1x2,4x8,5x16")
    assert code == 0, out
    prof = json.loads((d / "trt/plan.json").read_text())["profiles"][0]
    assert prof["input"]["max"] == [5, 16, 5] and prof["lengths"]["max"] == [5] and prof["c0"]["opt"] == [1, 4, 4]
    assert compile_(d, "--plan-only", "--shapes", "1x2,4x8")[0] == 2


def test_replanning_replaces_the_kit_and_its_manifest_entries(export_tiny, copy_export):
    d = copy_export(export_tiny(**LSTM_LEN))
    assert compile_(d, "--plan-only")[0] == 0
    first = json.loads((d / "manifest.json").read_text())["files"]["trt/golden.json"]["sha256"]
    assert compile_(d, "--plan-only", "--seed", "5")[0] == 0
    files = json.loads((d / "manifest.json").read_text())["files"]
    assert files["trt/golden.json"]["sha256"] != first
    assert files["trt/golden.json"]["sha256"] == sha256(d / "trt/golden.json")


def test_trtexec_script_drives_trtexec_with_the_plan(export_tiny, copy_export, tmp_path):
    d = copy_export(export_tiny(**LSTM_LEN))
    assert compile_(d, "--plan-only")[0] == 0
    fake = tmp_path / "trtexec"
    log = tmp_path / "args.txt"
    fake.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" > {log}\n')
    fake.chmod(0o755)
    env = {**os.environ, "TRTEXEC": str(fake)}
    run = lambda *a: subprocess.run(["bash", str(d / "trt/trtexec.sh"), *a], capture_output=True, text=True, env=env)  # noqa: E731
    build = run("build", "10")
    assert build.returncode == 0, build.stderr
    args = log.read_text().splitlines()
    assert args[:4] == [
        "--onnx=model.onnx",
        "--minShapes=input:1x1x5,lengths:1,h0:1x1x4,c0:1x1x4",
        "--optShapes=input:6x3x5,lengths:3,h0:1x3x4,c0:1x3x4",
        "--maxShapes=input:24x6x5,lengths:6,h0:1x6x4,c0:1x6x4",
    ]
    # fp32 is built strongly typed too (the plan's network: compile builds it so); was weakly typed on 10.x.
    assert "--noTF32" in args and "--stronglyTyped" in args and "--skipInference" in args
    # The engine and the timing cache go outside the bundle (was: DIR/engines/, DIR/trt/timing.cache, which
    # the next 'seqdeploy compile' refused as strays and '--plan-only' wiped).
    out = f"{d.resolve()}.trt-out"
    assert f"--timingCacheFile={out}/timing.cache" in args
    assert any(
        a.startswith(f"--saveEngine={out}/engines/sequence.fp32.sm") and a.endswith(".trt10.plan") for a in args
    )
    assert Path(out, "engines").is_dir() and not (d / "engines").exists()
    assert run("build", "11").returncode == 0 and "--noTF32" not in log.read_text()
    custom = tmp_path / "elsewhere"
    env["TRT_OUT"] = str(custom)
    assert run("build", "10").returncode == 0 and f"--saveEngine={custom}/engines/" in log.read_text()
    del env["TRT_OUT"]
    assert run("run", "10").returncode == 0
    assert "--loadInputs=input:trt/opt/input.bin,lengths:trt/opt/lengths.bin,h0:trt/opt/h0.bin,c0:trt/opt/c0.bin" in (
        log.read_text()
    )
    assert run("build").returncode == 2  # the TensorRT line is required


def test_polygraphy_script_builds_strongly_typed_outside_the_bundle(export_tiny, copy_export, tmp_path):
    d = copy_export(export_tiny(**LSTM_LEN))
    assert compile_(d, "--plan-only")[0] == 0
    before = {p.name for p in d.iterdir()}
    fake = tmp_path / "polygraphy"
    log = tmp_path / "args.txt"
    fake.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" > {log}\n')
    fake.chmod(0o755)
    env = {**os.environ, "POLYGRAPHY": str(fake)}
    res = subprocess.run(["bash", str(d / "trt/polygraphy.sh")], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    args = log.read_text().splitlines()
    assert args[:3] == ["run", "model.onnx", "--trt"] and "--strongly-typed" in args  # fp32 too
    out = f"{d.resolve()}.trt-out"
    assert args[args.index("--load-timing-cache") + 1] == args[args.index("--save-timing-cache") + 1]
    assert args[args.index("--save-timing-cache") + 1] == f"{out}/timing.cache"
    assert args[args.index("--save-engine") + 1].startswith(f"{out}/engines/sequence.fp32.sm")
    assert {p.name for p in d.iterdir()} == before and Path(out, "engines").is_dir()


def test_exit_codes(export_tiny, copy_export, tmp_path):
    d = copy_export(export_tiny())
    if importlib.util.find_spec("tensorrt") is None:  # with TensorRT (and a GPU) compile builds an engine
        code, out = compile_(d)
        assert code == 3 and "--plan-only" in out and "TensorRT" in out
        assert not (d / "trt").exists()
    code, out = compile_(d, "--plan-only", "--precision", "fp16")
    assert code == 2 and f"seqdeploy optimize {d} --fp16" in out
    assert compile_(tmp_path / "nope", "--plan-only")[0] == 2


def test_graph_rejected_by_the_tensorrt_lint_gets_no_plan(export_tiny, copy_export):
    from tests.integration._onnx_surgery import edit_onnx

    d = copy_export(export_tiny())
    with edit_onnx(d / "model.onnx") as model:
        next(o for o in model.opset_import if o.domain in ("", "ai.onnx")).version = 21
    before = (d / "manifest.json").read_text()
    code, out = compile_(d, "--plan-only")
    assert code == 1 and "opset-range" in out and "no plan written" in out
    assert not (d / "trt").exists() and (d / "manifest.json").read_text() == before
