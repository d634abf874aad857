"""Every shipped config, end to end on the CPU: export → TensorRT lint passes → optimize --fp16 (proven) →
compile --plan-only for fp32 and fp16, whose profile covers every dynamic input of the graph.

default and lstm_cell_stack (per-layer states, a step graph) run in the default suite; the others,
bench_reference (seq 512) included, are ``slow``.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from seqdeploy.engine.compile import plan_only
from seqdeploy.export.stage import export_model
from seqdeploy.lint import lint_path
from seqdeploy.manifest import Bundle
from seqdeploy.optimize import make_fp16

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.toml"))
FAST = {"default", "lstm_cell_stack"}


@pytest.mark.parametrize(
    "config",
    [pytest.param(c, marks=() if c.stem in FAST else pytest.mark.slow, id=c.stem) for c in CONFIGS],
)
def test_shipped_config_is_tensorrt_ready_on_the_cpu(config: Path, tmp_path: Path):
    d = tmp_path / config.stem
    export_model(config, d)
    for target in ("trt10", "trt11"):
        report = lint_path(d, target)
        assert report.passed and report.findings == [], [f.to_dict() for f in report.findings]

    result = make_fp16(d)
    entry = result.entry
    max_seq = Bundle.load(d).config.shapes.seq[2]
    assert [r["seq"] for r in entry["error_vs_seq"]] == sorted({1, 64, max_seq})
    for row in entry["error_vs_seq"]:
        assert all(v < 1e-2 for v in row["max_abs"].values()), row
    assert lint_path(d, "trt11").passed

    # The dynamic inputs as the exported graph declares them (a dim without a fixed value), not as
    # profile_for derives them from the IOSpec: the profile must cover what TensorRT will see.
    graph = onnx.load(str(d / "model.onnx"), load_external_data=False).graph
    weights = {i.name for i in graph.initializer}
    dynamic = [
        i.name
        for i in graph.input
        if i.name not in weights and any(not x.HasField("dim_value") for x in i.type.tensor_type.shape.dim)
    ]
    assert dynamic
    for precision in ("fp32", "fp16"):
        plan = plan_only(d, precision=precision).plan
        assert plan["onnx"] == ("model.onnx" if precision == "fp32" else "model.fp16.onnx")
        assert list(plan["profiles"][0]) == dynamic
        recorded = json.loads((d / "trt" / "plan.json").read_text())
        assert recorded["precision"] == precision
    Bundle.load(d)  # the bundle with variant and kit is intact
