"""The config schema for the user's own module (source = "python", [io], [checkpoint]) and the zoo additions
(padding_idx = false, pooling = "output_last"): seqdeploy/config.py, config_io.py and spec.py."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import pytest

from seqdeploy.config import parse_call, resolve_entry
from seqdeploy.config_io import config_from_dict, config_to_dict, load_config
from seqdeploy.errors import ConfigError
from seqdeploy.spec import TensorSpec, io_inputs, spec_from_config, spec_from_io
from tests.conftest import tiny_raw

ISSUE_EXAMPLE = """
[model]
source = "python"                     # default "zoo": today's config-built models, unchanged
entry = "models/net.py:SentimentNet"  # a .py file (relative to the config) or a dotted module
kwargs = { vocab_size = 52, dim = 100, hidden = 20 }

[io]
# forward's positional arguments, then its return value, as nested tuples of contract tensor names
call = "(input, (h0, c0)) -> (output, (h_n, c_n))"
""" + (
    'inputs = { input = { dtype = "int64", dims = ["seq", "batch"], range = [0, 51] }, '
    'h0 = { dims = [2, "batch", 20] }, c0 = { dims = [2, "batch", 20] } }\n'
)


def _raw() -> dict[str, Any]:
    return tomllib.loads(ISSUE_EXAMPLE)


def _raises(raw: dict[str, Any], *fragments: str) -> str:
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw)
    msg = str(info.value)
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"
    return msg


def test_the_issues_example_loads(tmp_path: Path):
    path = tmp_path / "net.toml"
    path.write_text(ISSUE_EXAMPLE)
    cfg = load_config(path)
    m = cfg.model
    assert m.is_python and m.cell is None
    assert m.kwargs == {"vocab_size": 52, "dim": 100, "hidden": 20}
    assert cfg.io is not None
    assert cfg.io.signature.input_names == ("input", "h0", "c0")
    assert cfg.io.signature.output_names == ("output", "h_n", "c_n")
    assert cfg.io.state_pairs() == [("h0", "h_n"), ("c0", "c_n")]
    entry = resolve_entry(m, cfg.base_dir)
    assert entry.is_file and entry.target == str(tmp_path / "models" / "net.py")
    assert entry.search_path == (str(tmp_path / "models"), str(tmp_path))
    assert [t.to_dict() for t in io_inputs(cfg)] == [
        {"name": "input", "dtype": "int64", "dims": ["seq", "batch"], "value_range": [0, 51]},
        {"name": "h0", "dtype": "float32", "dims": [2, "batch", 20]},
        {"name": "c0", "dtype": "float32", "dims": [2, "batch", 20]},
    ]


def test_python_config_round_trips_and_zoo_dicts_are_unchanged():
    cfg = config_from_dict(_raw())
    d = config_to_dict(cfg)
    assert config_from_dict(copy.deepcopy(d)) == cfg
    assert d["model"]["source"] == "python" and d["io"]["inputs"]["input"]["range"] == [0, 51]
    zoo = config_to_dict(config_from_dict(tiny_raw()))
    assert not {"source", "entry", "kwargs", "python_path"} & set(zoo["model"])  # new keys omitted at default
    assert "io" not in zoo and "checkpoint" not in zoo


def test_spec_from_config_refuses_python_and_spec_from_io_pairs_states():
    cfg = config_from_dict(_raw())
    with pytest.raises(ConfigError, match="found by running your module"):
        spec_from_config(cfg)
    outs = (
        TensorSpec("output", "float32", ("batch", 3)),
        TensorSpec("h_n", "float32", (2, "batch", 20)),
        TensorSpec("c_n", "float32", (2, "batch", 20)),
    )
    spec = spec_from_io(cfg, outs)
    assert [(p.input, p.output) for p in spec.state] == [("h0", "h_n"), ("c0", "c_n")]
    bad = (outs[0], TensorSpec("h_n", "float32", (1, "batch", 20)), outs[2])
    # A config mistake (exit 2) naming its key, like every other: io.call for pairs by name...
    with pytest.raises(
        ConfigError, match=r"^io.call: state pair h0 -> h_n: the module returns h_n: float32 \(1, batch, 20\)"
    ):
        spec_from_io(cfg, bad)
    # ... io.state.NAME for a declared pair.
    raw = _raw()
    raw["io"]["state"] = {"h0": "h_n", "c0": "c_n"}
    with pytest.raises(ConfigError, match=r"^io.state.h0: state pair h0 -> h_n"):
        spec_from_io(config_from_dict(raw), bad)


@pytest.mark.parametrize(
    ("call", "args", "returns"),
    [
        ("(input) -> output", ("input",), "output"),
        ("(input, lengths, h0) -> (output, h_n)", ("input", "lengths", "h0"), ("output", "h_n")),
        ("(input, (h0.0, c0.0)) -> (output, _, (h_n.0, c_n.0))", ("input", ("h0.0", "c0.0")), None),
        ("  ( input , ( h0 , c0 ) , )->( output ,( h_n , c_n ) )", ("input", ("h0", "c0")), None),
    ],
)
def test_parse_call(call: str, args: tuple[Any, ...], returns: Any):
    sig = parse_call(call)
    assert sig.args == args
    if returns is not None:
        assert sig.returns == returns
    assert parse_call(sig.describe()) == sig
    assert "_" not in sig.output_names


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        ("input -> output", "expected the arguments in parentheses first"),
        ("(input)", "expected -> but found the end"),
        ("(input) -> (output", "expected ) but found the end"),
        ("(input) -> output extra", "unexpected 'extra' after the return value"),
        ("(input, x) -> output", "argument 'x' is not a contract input name"),
        ("(input, h0) -> (output, h0)", "named both an argument and a return value"),
        ("(input) -> (output, output)", "appear twice"),
        ("(h0) -> output", "no argument is named 'input'"),
        ("(input) -> logits", "no return value is named 'output'"),
        ("(input, h0, h0.1) -> output", "mixes 'h0' and per-layer 'h0.k'"),
        ("(input) -> (output, c0)", "named 'c0', an input name"),
        ("(input; h0) -> output", "unexpected ';"),
    ],
)
def test_bad_calls_name_the_key(call: str, fragment: str):
    raw = _raw()
    raw["io"]["call"] = call
    raw["io"]["inputs"].setdefault("h0.1", {"dims": [1, "batch", 20]}) if "h0.1" in call else None
    if "h0" not in call:
        raw["io"]["inputs"].pop("h0")
    if "c0" not in call:
        raw["io"]["inputs"].pop("c0")
    msg = _raises(raw, fragment)
    assert msg.startswith(("io.call:", "io.inputs"))


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda r: r["io"]["inputs"].pop("c0"), "io.inputs.c0: required key is missing"),
        (lambda r: r["io"]["inputs"].update(lengths={"dims": ["batch"]}), "io.inputs.lengths: not an argument"),
        (lambda r: r["io"]["inputs"]["input"].pop("range"), "io.inputs.input.range: required for integer ids"),
        (lambda r: r["io"]["inputs"]["input"].update(dims=["batch"]), "io.inputs.input.dims: has no 'seq' axis"),
        (lambda r: r["io"]["inputs"]["h0"].update(dims=[2, "seq", 20]), "io.inputs.h0.dims: has no 'batch' axis"),
        (lambda r: r["io"]["inputs"]["h0"].update(dims=[2, "batch", "seq"]), "a state has no 'seq' axis"),
        (
            lambda r: r["io"]["inputs"]["h0"].update(dims=[0, "batch", 20]),
            "io.inputs.h0.dims[0]: expected an int >= 1",
        ),
        (lambda r: r["io"]["inputs"]["h0"].update(dims=["time", "batch"]), "expected an int >= 1 or one of"),
        (lambda r: r["io"]["inputs"]["h0"].update(dims=[1.5]), "io.inputs.h0.dims[0]: expected int or string"),
        (lambda r: r["io"]["inputs"]["h0"].update(range=[0, 3]), "range: only for integer inputs"),
        (lambda r: r["io"]["inputs"]["input"].update(range=[5, 1]), "low <= high"),
        (lambda r: r["io"]["inputs"]["input"].update(range=[0, 2**63 - 1]), "does not fit int64"),
        (lambda r: r["model"].update(seed=-1), "model.seed: expected an int in [0, 2**63 - 1], got -1"),
        (lambda r: r["io"]["inputs"]["input"].update(dtype="float64"), "io.inputs.input.dtype: expected one of"),
        (lambda r: r["io"].update(state={"h0": "nope"}), "io.state.h0: 'nope' is not a return value"),
        (lambda r: r["io"].update(state={"input": "h_n"}), "io.state.input: expected a state argument"),
        (lambda r: r.pop("io"), "io: required with model.source = 'python'"),
        (lambda r: r["model"].pop("entry"), "model.entry: required with source = 'python'"),
        (lambda r: r["model"].update(entry="net.py"), "model.entry: expected 'path/to/file.py:ClassOrFactory'"),
        (lambda r: r["model"].update(entry="my-net:Net"), "is neither a .py file nor a dotted module"),
        (lambda r: r["model"].update(cell="lstm"), "model.cell: only for source = 'zoo'"),
        (lambda r: r["model"].update(hidden_size=20), "model.hidden_size: only for source = 'zoo'"),
        (lambda r: r["model"].update(batch_first=True), 'declare [io.inputs.input] dims = ["batch", "seq", ...]'),
        (lambda r: r["model"].update(head={"task": "tag", "num_classes": 2}), "model.head: only for source = 'zoo'"),
        (lambda r: r["model"].update(source="torchscript"), "model.source: expected one of 'zoo', 'python'"),
        (lambda r: r["model"]["kwargs"].update(lr=float("nan")), "model.kwargs.lr: expected a finite number"),
        (lambda r: r.update(export={"step": True}), "export.step: no step graph for source = 'python'"),
        (lambda r: r.update(export={"lengths": True}), "add 'lengths' to [io] call instead"),
        (lambda r: r.update(export={"initial_state": False}), "export.initial_state"),
    ],
)
def test_bad_python_configs_name_the_key(edit: Any, fragment: str):
    raw = _raw()
    edit(raw)
    _raises(raw, fragment)


def test_kwargs_with_a_date_is_refused():
    raw = tomllib.loads(ISSUE_EXAMPLE.replace("hidden = 20", "hidden = 20, when = 2024-01-01"))
    _raises(raw, "model.kwargs.when: expected a number, string, boolean, array or table, got date")


def test_declared_state_pairs_and_no_pairs():
    raw = _raw()
    raw["io"]["call"] = "(input, (h0, c0)) -> (output, (hidden, cell))"
    raw["io"]["state"] = {"h0": "hidden", "c0": "cell"}
    assert config_from_dict(raw).io.state_pairs() == [("h0", "hidden"), ("c0", "cell")]
    raw = _raw()
    raw["io"]["state"] = {}
    assert config_from_dict(raw).io.state_pairs() == []


def test_lengths_need_no_declaration():
    raw = _raw()
    raw["io"]["call"] = "(input, lengths, (h0, c0)) -> (output, (h_n, c_n))"
    cfg = config_from_dict(raw)
    lengths = io_inputs(cfg)[1]
    assert lengths.to_dict() == {"name": "lengths", "dtype": "int64", "dims": ["batch"], "value_range": [1, "seq"]}
    raw["io"]["inputs"]["lengths"] = {"dims": ["batch"], "dtype": "int32"}
    _raises(raw, "io.inputs.lengths: lengths are int64 [batch]")


def test_zoo_configs_refuse_python_keys_and_io():
    _raises(tiny_raw(entry="net.py:Net"), "model.entry: only valid with source = 'python'")
    _raises(tiny_raw(kwargs={"a": 1}), "model.kwargs: only valid with source = 'python'")
    raw = tiny_raw()
    raw["io"] = _raw()["io"]
    _raises(raw, "io: only with model.source = 'python'")
    raw = tiny_raw()
    del raw["model"]["cell"]
    _raises(raw, "model.cell: required key is missing (or set source = 'python'")


def test_checkpoint_map():
    raw = tiny_raw()
    raw["checkpoint"] = {"map": {"lstm.": "core.rnn.", "fc.weight": "head.weight"}}
    cfg = config_from_dict(raw)
    assert cfg.checkpoint.map == {"lstm.": "core.rnn.", "fc.weight": "head.weight"}
    assert config_to_dict(cfg)["checkpoint"] == raw["checkpoint"]
    raw["checkpoint"] = {"map": {"lstm.": "core.rnn"}}
    _raises(raw, "checkpoint.map.lstm.: a prefix maps to a prefix: expected 'core.rnn.'")
    raw["checkpoint"] = {"map": {"lstm.": 3}}
    _raises(raw, "checkpoint.map.lstm.: expected string")
    raw["checkpoint"] = {"mapping": {}}
    _raises(raw, "checkpoint.mapping: unknown key (did you mean 'map'?)")


def test_padding_idx_false_round_trips_as_false():
    raw = tiny_raw(embedding={"vocab_size": 10, "dim": 5, "padding_idx": False})
    cfg = config_from_dict(raw)
    assert cfg.model.embedding.padding_idx is None
    d = config_to_dict(cfg)
    assert d["model"]["embedding"]["padding_idx"] is False  # TOML-writable
    assert config_from_dict(d) == cfg


def test_output_last_pooling():
    head = {"task": "classify", "num_classes": 3, "pooling": "output_last"}
    cfg = config_from_dict(tiny_raw(head=head, export={"step": True}))
    assert cfg.model.head.pooling == "output_last"
    _raises(tiny_raw(head={"task": "tag", "num_classes": 3, "pooling": "output_last"}), "model.head.pooling")
