"""The Triton config checks: every rule must catch its own mistake (mutations of a generated config)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from seqdeploy.package.manifest import read_manifest
from seqdeploy.package.triton import GraphIO, check_model_config, graph_io, render_pbtxt
from seqdeploy.spec import IOSpec, StatePair, TensorSpec
from tests.integration._packages import copy_package, package_for


@pytest.fixture(scope="module")
def stream_pkg(tmp_path_factory: pytest.TempPathFactory, export_tiny: Callable[..., Path]) -> Path:
    return package_for("lstm_text", tmp_path_factory, export_tiny)[1]


def _problems(pkg: Path, model: str) -> list[str]:
    m = read_manifest(pkg)
    e = m.models[model]
    io = graph_io(pkg / e.file)
    return check_model_config(
        pkg / model,
        io,
        spec=e.spec,
        kind=e.kind,
        max_batch=e.max_batch_size,
        start=e.start,
        cpu_only=e.precision == "int8",
        merge=e.merges_requests,
    )


def test_generated_configs_are_clean(stream_pkg: Path) -> None:
    for model in read_manifest(stream_pkg).models:
        assert _problems(stream_pkg, model) == [], model


STATELESS = "lstm_text"
STREAM = "lstm_text_stream"


@pytest.mark.parametrize(
    ("model", "old", "new", "expect"),
    [
        (STATELESS, 'name: "lstm_text"', 'name: "other"', "directory is 'lstm_text'"),
        (STATELESS, "max_batch_size: 6", "max_batch_size: 8", "manifest says 6"),
        (STATELESS, 'platform: "onnxruntime_onnx"', 'platform: "tensorflow_savedmodel"', "platform is"),
        (STATELESS, "dims: [ -1 ]", "dims: [ -1, 4 ]", "input 'input' is [batch] + [-1, 4]"),
        (STATELESS, "dims: [ -1 ]", "dimz: [ -1 ]", "does not parse"),
        (STATELESS, "data_type: TYPE_INT64\n  dims: [ -1 ]", "data_type: TYPE_FP33\n  dims: [ -1 ]", "does not parse"),
        (
            STATELESS,
            "data_type: TYPE_INT64\n  dims: [ -1 ]",
            "data_type: TYPE_INT32\n  dims: [ -1 ]",
            "TYPE_INT32 in the config but TYPE_INT64",
        ),
        (STATELESS, "dynamic_batching {", "sequence_batching { }\ndynamic_batching {", "does not parse"),
        ("lstm_text_int8", "instance_group {", "dynamic_batching { }\ninstance_group {", "must never be merged"),
        (
            STATELESS,
            "  max_queue_delay_microseconds: 100\n}",
            "  max_queue_delay_microseconds: 100\n  preferred_batch_size: [ 9 ]\n}",
            "preferred_batch_size 9",
        ),
        (
            STATELESS,
            "  reshape {\n    shape: [ ]\n  }\n",
            "",
            "input 'lengths' is [batch] + [1] in the config but [-1]",
        ),
        (STATELESS, "    shape: [ ]\n", "    shape: [ 2 ]\n", "hold different element counts"),
        (STATELESS, 'input_data_file: "lengths_t6.bin"', "zero_data: true", "lengths [0] must lie in [1, 6]"),
        (
            STATELESS,
            '  inputs {\n    key: "c0"',
            '  inputs {\n    key: "c0_typo"',
            "does not cover the graph inputs ['c0']",
        ),
        (STATELESS, 'name: "b1_t24"', 'name: "b1_t6"', "must be unique"),
        (
            STREAM,
            '  input_name: "c0"\n    output_name: "c_n"',
            '  input_name: "c0"\n    output_name: "h_n"',
            "differ from the manifest's pairs",
        ),
        (STREAM, "int32_false_true: [ 0, 1 ]", "int32_false_true: [ 1, 0 ]", "must be int32_false_true: [ 0, 1 ]"),
        (STREAM, 'name: "START"', 'name: "BEGIN"', "control 'BEGIN' is not an input of the graph"),
        (
            STREAM,
            '      zero_data: true\n      name: "c0_zero"',
            '      zero_data: true\n      name: ""',
            "needs a name",
        ),
        (
            STREAM,
            "    initial_state {\n      data_type: TYPE_FP32\n      dims: [ 2, 4 ]\n"
            '      zero_data: true\n      name: "h0_zero"\n    }\n',
            "",
            "needs exactly one initial_state",
        ),
        (
            STREAM,
            '      dims: [ 2, 4 ]\n      zero_data: true\n      name: "h0_zero"',
            '      dims: [ 2, -1 ]\n      zero_data: true\n      name: "h0_zero"',
            "must be fixed",
        ),
        (
            STREAM,
            "sequence_batching {",
            'input {\n  name: "START"\n  data_type: TYPE_INT32\n  dims: [ 1 ]\n}\nsequence_batching {',
            "also listed in input[]",
        ),
        (
            STREAM,
            "sequence_batching {",
            'model_warmup {\n  name: "w"\n  batch_size: 1\n  inputs {\n    key: "input"\n    value {\n'
            "      data_type: TYPE_INT64\n      dims: [ 6 ]\n      zero_data: true\n    }\n  }\n}\n"
            "sequence_batching {",
            "model_warmup on a model with implicit state",
        ),
    ],
    ids=lambda x: x if isinstance(x, str) and len(x) < 20 else None,
)
def test_each_mistake_is_caught(stream_pkg: Path, tmp_path: Path, model: str, old: str, new: str, expect: str) -> None:
    pkg = copy_package(stream_pkg, tmp_path)
    path = pkg / model / "config.pbtxt"
    text = path.read_text()
    assert old in text, f"mutation anchor {old!r} not in the generated config"
    path.write_text(text.replace(old, new, 1))
    problems = _problems(pkg, model)
    assert any(expect in p for p in problems), problems


def test_missing_warmup_file_and_version_dir(stream_pkg: Path, tmp_path: Path) -> None:
    pkg = copy_package(stream_pkg, tmp_path)
    (pkg / STATELESS / "warmup" / "lengths_t24.bin").unlink()
    (pkg / STATELESS / "2").mkdir()
    problems = _problems(pkg, STATELESS)
    assert any("lengths_t24.bin is missing" in p for p in problems), problems
    assert any("exactly one version directory '1', found ['1', '2']" in p for p in problems), problems


def _io(inputs: dict[str, tuple[str, tuple[int, ...]]], outputs: dict[str, tuple[str, tuple[int, ...]]]) -> GraphIO:
    return GraphIO(inputs, outputs)


def test_state_names_must_sort_into_their_pairs(tmp_path: Path) -> None:
    """server#8586: Triton has paired implicit states by sorted name. ``a_in -> z_out`` with ``b_in -> y_out``
    would be paired ``a_in -> y_out``; the check must refuse such names even when everything else is right.
    """
    spec = IOSpec(
        inputs=(
            TensorSpec("input", "float32", ("batch", "seq", 2)),
            TensorSpec("START", "int32", ("batch", 1), (0, 1)),
            TensorSpec("a_in", "float32", ("batch", 1, 3)),
            TensorSpec("b_in", "float32", ("batch", 1, 3)),
        ),
        outputs=(
            TensorSpec("output", "float32", ("batch", "seq", 3)),
            TensorSpec("z_out", "float32", ("batch", 1, 3)),
            TensorSpec("y_out", "float32", ("batch", 1, 3)),
        ),
        state=(StatePair("a_in", "z_out"), StatePair("b_in", "y_out")),
    )
    from seqdeploy.package.triton import stream_config

    model = tmp_path / "m"
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.onnx").write_bytes(b"")
    config = stream_config("m", spec, start="START", max_batch=2)
    assert "model_warmup" not in config
    (model / "config.pbtxt").write_text(render_pbtxt(config))
    io = _io(
        {
            "input": ("TYPE_FP32", (-1, -1, 2)),
            "START": ("TYPE_INT32", (-1, 1)),
            "a_in": ("TYPE_FP32", (-1, 1, 3)),
            "b_in": ("TYPE_FP32", (-1, 1, 3)),
        },
        {"output": ("TYPE_FP32", (-1, -1, 3)), "z_out": ("TYPE_FP32", (-1, 1, 3)), "y_out": ("TYPE_FP32", (-1, 1, 3))},
    )
    problems = check_model_config(model, io, spec=spec, kind="stream", max_batch=2, start="START")
    assert any("do not sort into the same pairs" in p for p in problems), problems
    assert not any("warmup" in p for p in problems), problems  # implicit state: no warmup, and none required
    # the same graph with names that sort alike passes the pairing rule
    text = (model / "config.pbtxt").read_text()
    (model / "config.pbtxt").write_text(text.replace("z_out", "a_out").replace("y_out", "b_out"))
    io2 = _io(io.inputs, {"output": io.outputs["output"], "a_out": io.outputs["z_out"], "b_out": io.outputs["y_out"]})
    spec2 = IOSpec(
        inputs=spec.inputs,
        outputs=(
            spec.outputs[0],
            TensorSpec("a_out", "float32", ("batch", 1, 3)),
            TensorSpec("b_out", "float32", ("batch", 1, 3)),
        ),
        state=(StatePair("a_in", "a_out"), StatePair("b_in", "b_out")),
    )
    problems = check_model_config(model, io2, spec=spec2, kind="stream", max_batch=2, start="START")
    assert not any("sort" in p for p in problems), problems


def test_render_pbtxt_escapes_and_parses() -> None:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    from seqdeploy.package.triton import Enum, Map

    text = render_pbtxt(
        {
            "name": 'we"ird\\name',
            "max_batch_size": 3,
            "input": [{"name": "x", "data_type": Enum("TYPE_FP32"), "dims": [-1, 2], "reshape": {"shape": []}}],
            "model_warmup": [
                {
                    "name": "w",
                    "batch_size": 1,
                    "inputs": Map(x={"data_type": Enum("TYPE_FP32"), "dims": [2], "zero_data": True}),
                }
            ],
        },
        header="line one\nline two",
    )
    cfg = text_format.Parse(text, mc.ModelConfig())
    assert cfg.name == 'we"ird\\name' and cfg.max_batch_size == 3
    assert list(cfg.input[0].dims) == [-1, 2] and cfg.input[0].HasField("reshape")
    assert cfg.model_warmup[0].inputs["x"].zero_data
    assert text.startswith("# line one\n# line two\n")
    assert re.search(r"shape: \[ \]", text)
