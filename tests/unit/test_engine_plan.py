"""The build plan's decisions as plain functions: profiles from the IOSpec, file per precision, shapes,
tolerances, kit cases and the rendered scripts (no TensorRT, no GPU)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from seqdeploy.config_io import load_config
from seqdeploy.engine.plan import (
    KIT_TOLERANCES,
    TRT_LINES,
    AxisBounds,
    axis_bounds,
    build_plan,
    engine_file,
    graph_file,
    kit_cases,
    parse_profile_shapes,
    polygraphy_shapes,
    profile_for,
    render_polygraphy,
    render_trtexec,
    shape_problems,
    tolerances_for,
    trtexec_shapes,
)
from seqdeploy.errors import UsageError
from seqdeploy.spec import BATCH, IOSpec, spec_from_config
from tests.conftest import tiny_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.toml"))


def _manifest(spec: IOSpec, *, fp16: bool = False) -> dict:
    m = {"opset": 17, "graphs": {"sequence": {"file": "model.onnx", "spec": spec.to_dict()}}, "variants": {}}
    if fp16:
        m["variants"]["fp16"] = {
            "file": "model.fp16.onnx",
            "graph": "sequence",
            "graphs": {"sequence": "model.fp16.onnx"},
        }
    return m


@pytest.mark.parametrize("config", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_profile_covers_every_dynamic_input_of_every_shipped_config(config: Path):
    cfg = load_config(config)
    spec = spec_from_config(cfg)
    bounds = axis_bounds(cfg.shapes.batch, cfg.shapes.seq)
    prof = profile_for(spec, bounds)
    # Independent of profile_for's predicate: every input of our graphs has a batch axis, so every one of
    # them — the data, lengths when exported, every state — must have a profile entry.
    assert list(prof) == list(spec.input_names)
    assert "input" in prof and ("lengths" in prof) == cfg.export.lengths
    assert any(n.startswith("h0") for n in prof)
    for name, shapes in prof.items():
        t = spec.tensor(name)
        for which in ("min", "opt", "max"):
            assert len(shapes[which]) == t.rank
            # Every input on the batch axis gets the same bound (states: axis 1, even batch_first).
            assert shapes[which][t.batch_axis] == getattr(bounds[BATCH], which)
            if t.seq_axis is not None:
                assert shapes[which][t.seq_axis] == getattr(bounds["seq"], which)
            assert shapes[which] == [d if isinstance(d, int) else getattr(bounds[d], which) for d in t.dims]


def test_profile_of_a_per_layer_cell_stack_and_states_on_axis_1():
    spec = spec_from_config(tiny_config(cell="lstm_cell", hidden_sizes=[6, 3], batch_first=True))
    prof = profile_for(spec, axis_bounds((1, 4, 9), (2, 5, 30)))
    assert prof["input"] == {"min": [1, 2, 5], "opt": [4, 5, 5], "max": [9, 30, 5]}  # batch_first: [batch, seq, F]
    assert prof["h0.0"] == {"min": [1, 1, 6], "opt": [1, 4, 6], "max": [1, 9, 6]}
    assert prof["c0.1"] == {"min": [1, 1, 3], "opt": [1, 4, 3], "max": [1, 9, 3]}
    assert list(prof) == ["input", "h0.0", "h0.1", "c0.0", "c0.1"]


def test_step_graph_profile_has_no_seq():
    spec = spec_from_config(tiny_config(export={"step": True}), "step")
    prof = profile_for(spec, axis_bounds((1, 2, 8), (1, 9, 99)))
    assert prof["input"] == {"min": [1, 5], "opt": [2, 5], "max": [8, 5]}


def test_parse_profile_shapes_and_override():
    lo, opt, hi = parse_profile_shapes("1x1, 8x64 ,32X512")
    assert (lo, opt, hi) == ((1, 1), (8, 64), (32, 512))
    b = axis_bounds((1, 2, 3), (1, 2, 3), (lo, opt, hi))
    assert b == {"batch": AxisBounds(1, 8, 32), "seq": AxisBounds(1, 64, 512)}
    for bad, msg in [
        ("1x1,8x64", "exactly three"),
        ("1x1,8x64,4x512", "batch must satisfy min <= opt <= max"),
        ("1x1,8x64,32", "expected three BATCHxSEQ pairs"),
        ("0x1,8x64,32x512", "expected three BATCHxSEQ pairs"),
        ("ax1,8x64,32x512", "expected three BATCHxSEQ pairs"),
    ]:
        with pytest.raises(UsageError, match=msg):
            parse_profile_shapes(bad)
    with pytest.raises(UsageError, match="1 <= min <= opt <= max"):
        AxisBounds(2, 1, 3)


def test_graph_file_per_precision():
    spec = spec_from_config(tiny_config())
    assert graph_file(_manifest(spec), "fp32") == "model.onnx"
    assert graph_file(_manifest(spec, fp16=True), "fp16") == "model.fp16.onnx"
    with pytest.raises(UsageError, match="seqdeploy optimize DIR --fp16"):
        graph_file(_manifest(spec), "fp16")
    with pytest.raises(UsageError, match="unknown precision 'int8'"):
        graph_file(_manifest(spec), "int8")
    with pytest.raises(UsageError, match="no 'step' graph"):
        graph_file(_manifest(spec), "fp32", "step")


def test_tolerances_per_output():
    spec = spec_from_config(tiny_config(cell="lstm_cell", hidden_sizes=[6, 3]))
    tol = tolerances_for(spec, "fp16")
    assert list(tol) == list(spec.output_names) == ["output", "h_n.0", "h_n.1", "c_n.0", "c_n.1"]
    assert tol["c_n.1"] == {"atol": 1e-2, "rtol": 1e-2}
    assert tolerances_for(spec, "fp32")["output"] == {"atol": 1e-4, "rtol": 1e-4}  # issue 8's target


def test_kit_cases():
    lengths = spec_from_config(tiny_config(export={"lengths": True}))
    plain = spec_from_config(tiny_config())
    b = axis_bounds((1, 2, 6), (1, 6, 24))
    names = [(c.name, c.batch, c.seq, c.padded) for c in kit_cases(lengths, b)]
    assert names == [("min", 1, 1, False), ("opt", 2, 6, False), ("max", 6, 24, False), ("padded", 3, 24, True)]
    assert [c.name for c in kit_cases(plain, b)] == ["min", "opt", "max"]
    # A profile pinned to batch 1 still gets a padded case (one shortened row); seq 1 cannot pad.
    assert kit_cases(lengths, axis_bounds((1, 1, 1), (1, 4, 8)))[-1].batch == 1
    assert [c.name for c in kit_cases(lengths, axis_bounds((1, 1, 4), (1, 1, 1)))] == ["min", "opt", "max"]


def _plan(precision: str = "fp16") -> dict:
    spec = spec_from_config(tiny_config(export={"lengths": True}))
    return build_plan(
        _manifest(spec, fp16=True),
        precision=precision,
        bounds=axis_bounds((1, 2, 6), (1, 6, 24)),
        onnx_sha256="ab" * 32,
        lint={"trt10": {"target": "trt10", "passed": True, "findings": []}},
    )


def test_plan_content():
    plan = _plan("fp16")
    assert plan["onnx"] == "model.fp16.onnx" and plan["strongly_typed"] is True
    assert plan["tensorrt"]["lines"] == list(TRT_LINES) == ["10.x", "11.x"]
    assert plan["tensorrt"]["per_line"]["10.x"]["trtexec_flags"] == ["--stronglyTyped", "--noTF32"]
    assert plan["tensorrt"]["per_line"]["11.x"]["trtexec_flags"] == []
    assert plan["axes"] == {"batch": [1, 2, 6], "seq": [1, 6, 24]}
    assert plan["profiles"][0]["lengths"] == {"min": [1], "opt": [2], "max": [6]}
    assert plan["kit"]["opt_inputs"] == {n: f"trt/opt/{n}.bin" for n in ("input", "lengths", "h0", "c0")}
    # fp32 is strongly typed too, on both lines (issue 8; compile builds it so): the kit's trtexec and
    # polygraphy builds are the same network as seqdeploy's.
    fp32 = _plan("fp32")
    assert fp32["onnx"] == "model.onnx" and fp32["strongly_typed"] is True
    assert fp32["tensorrt"]["per_line"]["10.x"]["trtexec_flags"] == ["--stronglyTyped", "--noTF32"]
    assert all(fp32["tensorrt"]["per_line"][line]["strongly_typed"] is True for line in TRT_LINES)
    assert engine_file(plan, sm="75", trt="10.16.1") == "engines/sequence.fp16.sm75.trt10.16.1.plan"


def test_shape_strings():
    prof = _plan()["profiles"][0]
    assert trtexec_shapes(prof, "max") == "input:24x6x5,lengths:6,h0:1x6x4,c0:1x6x4"
    assert polygraphy_shapes(prof, "min") == ["input:[1,1,5]", "lengths:[1]", "h0:[1,1,4]", "c0:[1,1,4]"]


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_scripts_are_valid_bash_with_every_shape(precision, tmp_path):
    plan = _plan(precision)
    for name, text in (("trtexec.sh", render_trtexec(plan)), ("polygraphy.sh", render_polygraphy(plan))):
        p = tmp_path / name
        p.write_text(text)
        subprocess.run(["bash", "-n", str(p)], check=True)
        assert f"--{'minShapes' if name == 'trtexec.sh' else 'trt-min-shapes'}" in text
    trt = render_trtexec(plan)
    assert "--minShapes=input:1x1x5,lengths:1,h0:1x1x4,c0:1x1x4" in trt
    assert "--onnx=" + plan["onnx"] in trt
    poly = render_polygraphy(plan)
    assert " --trt --strongly-typed " in poly  # both precisions: the plan's network, not a weakly typed one
    atol = KIT_TOLERANCES[precision][0]
    assert f"--atol output:{atol:g} h_n:{atol:g} c_n:{atol:g}" in poly


def test_shape_problems_name_the_allowed_range():
    prof = _plan()["profiles"][0]
    ok = {"input": [6, 2, 5], "lengths": [2], "h0": [1, 2, 4], "c0": [1, 2, 4]}
    assert shape_problems(prof, ok) == []
    assert shape_problems(prof, {**ok, "input": [25, 2, 5]}) == [
        "input 'input': shape [25, 2, 5] is outside the profile (axis 0: 1..24, axis 1: 1..6, axis 2: 5..5); "
        "axis [0] out of range"
    ]
    missing = dict(ok)
    del missing["c0"]
    assert shape_problems(prof, missing) == [
        "input 'c0' is missing (the engine's profile has ['c0', 'h0', 'input', 'lengths'])"
    ]
    assert "rank 2" in shape_problems(prof, {**ok, "h0": [2, 4]})[0]
