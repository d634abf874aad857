"""IOSpec derivation: seqdeploy/spec.py ``spec_from_config``."""

from __future__ import annotations

import json

import pytest

from seqdeploy.config_io import load_config
from seqdeploy.errors import InputError, InternalError
from seqdeploy.spec import BATCH, SEQ, IOSpec, StatePair, TensorSpec, spec_from_config
from tests.conftest import CONFIGS, tiny_config


def _dims(spec: IOSpec) -> dict[str, tuple]:
    return {t.name: t.dims for t in (*spec.inputs, *spec.outputs)}


# ----------------------------------------------------------------------------------------------- inputs


def test_features_input_time_major():
    spec = spec_from_config(tiny_config())
    x = spec.tensor("input")
    assert x == TensorSpec("input", "float32", (SEQ, BATCH, 5))
    assert x.value_range is None
    assert x.seq_axis == 0
    assert x.batch_axis == 1
    assert spec.kind == "sequence"


def test_features_input_batch_first():
    spec = spec_from_config(tiny_config(batch_first=True))
    x = spec.tensor("input")
    assert x.dims == (BATCH, SEQ, 5)
    assert x.batch_axis == 0
    assert x.seq_axis == 1
    assert spec.tensor("output").dims == (BATCH, SEQ, 4)


def test_embedding_ids_input():
    spec = spec_from_config(tiny_config(embedding={"vocab_size": 11, "dim": 5}))
    x = spec.tensor("input")
    assert x.dtype == "int64"
    assert x.dims == (SEQ, BATCH)
    assert x.value_range == (0, 10)


def test_embedding_ids_batch_first():
    spec = spec_from_config(tiny_config(embedding={"vocab_size": 7, "dim": 5}, batch_first=True))
    assert spec.tensor("input").dims == (BATCH, SEQ)
    assert spec.tensor("input").value_range == (0, 6)


def test_lengths_input():
    spec = spec_from_config(tiny_config(export={"lengths": True}))
    assert spec.input_names == ("input", "lengths", "h0", "c0")
    ln = spec.tensor("lengths")
    assert ln == TensorSpec("lengths", "int64", (BATCH,), (1, SEQ))
    assert ln.value_range == (1, "seq")
    assert ln.batch_axis == 0
    assert ln.seq_axis is None


def test_no_lengths_by_default():
    spec = spec_from_config(tiny_config())
    assert not spec.has("lengths")
    with pytest.raises(InputError, match="no tensor named 'lengths'"):
        spec.tensor("lengths")


# ----------------------------------------------------------------------------------------------- states


def test_lstm_has_c_states():
    spec = spec_from_config(tiny_config(cell="lstm"))
    assert spec.input_names == ("input", "h0", "c0")
    assert spec.output_names == ("output", "h_n", "c_n")
    assert spec.state == (StatePair("h0", "h_n"), StatePair("c0", "c_n"))
    assert spec.state_outputs == ("h_n", "c_n")


@pytest.mark.parametrize("cell", ["gru", "rnn_tanh", "rnn_relu", "gru_cell", "rnn_cell"])
def test_gru_and_rnn_have_no_c_states(cell: str):
    spec = spec_from_config(tiny_config(cell=cell))
    assert spec.input_names == ("input", "h0")
    assert spec.output_names == ("output", "h_n")
    assert spec.state == (StatePair("h0", "h_n"),)
    assert not spec.has("c0")
    assert not spec.has("c_n")


@pytest.mark.parametrize(
    ("overrides", "rows", "hidden"),
    [
        ({"num_layers": 3}, 3, 4),
        ({"num_layers": 2, "bidirectional": True}, 4, 4),
        ({"num_layers": 2, "bidirectional": True, "batch_first": True}, 4, 4),
        ({"cell": "gru", "hidden_size": 7, "batch_first": True}, 1, 7),
        ({"cell": "lstm_cell", "hidden_sizes": [5, 5]}, 2, 5),
    ],
)
def test_state_dims(overrides, rows: int, hidden: int):
    spec = spec_from_config(tiny_config(**overrides))
    for pair in spec.state:
        for name in (pair.input, pair.output):
            t = spec.tensor(name)
            assert t.dims == (rows, BATCH, hidden)
            assert t.dtype == "float32"
            assert t.batch_axis == 1  # even for batch_first
            assert t.seq_axis is None


def test_per_layer_states_for_unequal_stack():
    spec = spec_from_config(tiny_config(cell="lstm_cell", hidden_sizes=[6, 4, 3]))
    assert spec.input_names == ("input", "h0.0", "h0.1", "h0.2", "c0.0", "c0.1", "c0.2")
    assert spec.output_names == ("output", "h_n.0", "h_n.1", "h_n.2", "c_n.0", "c_n.1", "c_n.2")
    for k, size in enumerate((6, 4, 3)):
        for name in (f"h0.{k}", f"c0.{k}", f"h_n.{k}", f"c_n.{k}"):
            assert spec.tensor(name).dims == (1, BATCH, size)
    assert spec.state == tuple(StatePair(f"{s}0.{k}", f"{s}_n.{k}") for s in "hc" for k in range(3))
    assert spec.tensor("output").dims == (SEQ, BATCH, 3)  # top layer's size
    assert not spec.has("h0")
    assert spec.state_outputs == ("h_n.0", "h_n.1", "h_n.2", "c_n.0", "c_n.1", "c_n.2")


def test_per_layer_states_gru_stack():
    spec = spec_from_config(tiny_config(cell="gru_cell", hidden_sizes=[2, 8]))
    assert spec.input_names == ("input", "h0.0", "h0.1")
    assert _dims(spec)["h_n.1"] == (1, BATCH, 8)


@pytest.mark.parametrize("cell", ["lstm", "gru", "lstm_cell"])
def test_no_initial_state(cell: str):
    overrides = {"cell": cell, "export": {"initial_state": False}}
    if cell == "lstm_cell":
        overrides["hidden_sizes"] = [4, 3]
    spec = spec_from_config(tiny_config(**overrides))
    assert spec.input_names == ("input",)
    assert spec.state == ()
    full = spec_from_config(tiny_config(**{k: v for k, v in overrides.items() if k != "export"}))
    assert spec.outputs == full.outputs  # h_n / c_n still returned
    assert len(spec.outputs) > 1
    assert all(n.split(".")[0] in ("output", "h_n", "c_n") for n in spec.output_names)


# ------------------------------------------------------------------------------------------------ heads


def test_head_none_width_is_directions_times_top():
    spec = spec_from_config(tiny_config(bidirectional=True, hidden_size=6))
    assert spec.tensor("output").dims == (SEQ, BATCH, 12)


def test_head_classify():
    spec = spec_from_config(tiny_config(batch_first=True, head={"task": "classify", "num_classes": 3}))
    out = spec.tensor("output")
    assert out.dims == (BATCH, 3)
    assert out.dtype == "float32"
    assert out.seq_axis is None


@pytest.mark.parametrize("batch_first", [False, True])
def test_head_tag(batch_first: bool):
    spec = spec_from_config(tiny_config(batch_first=batch_first, head={"task": "tag", "num_classes": 9}))
    want = (BATCH, SEQ, 9) if batch_first else (SEQ, BATCH, 9)
    assert spec.tensor("output").dims == want


# ------------------------------------------------------------------------------------------------- step


def test_step_kind_has_no_seq_axis():
    cfg = tiny_config(cell="gru", export={"step": True})
    spec = spec_from_config(cfg, "step")
    assert spec.kind == "step"
    assert spec.tensor("input").dims == (BATCH, 5)
    assert spec.tensor("output").dims == (BATCH, 4)
    assert spec.tensor("h0").dims == (1, BATCH, 4)
    assert all(SEQ not in t.dims for t in (*spec.inputs, *spec.outputs))
    assert spec.state == (StatePair("h0", "h_n"),)


def test_step_kind_ids_and_tag_head():
    cfg = tiny_config(embedding={"vocab_size": 9, "dim": 5}, batch_first=True, head={"task": "tag", "num_classes": 2})
    spec = spec_from_config(cfg, "step")
    assert spec.tensor("input") == TensorSpec("input", "int64", (BATCH,), (0, 8))
    assert spec.tensor("output").dims == (BATCH, 2)


def test_step_kind_keeps_states_without_initial_state():
    # the config loader refuses step + initial_state=false, but a step spec always has states in
    cfg = tiny_config(export={"initial_state": False})
    spec = spec_from_config(cfg, "step")
    assert spec.input_names == ("input", "h0", "c0")
    assert len(spec.state) == 2


@pytest.mark.parametrize("overrides", [{"bidirectional": True}, {"export": {"lengths": True}}])
def test_step_kind_refused_for_bidirectional_or_lengths(overrides):
    with pytest.raises(InternalError, match="step graphs exist only"):
        spec_from_config(tiny_config(**overrides), "step")


# ------------------------------------------------------------------------------------------ dynamic axes


def test_dynamic_axes_time_major_lstm_with_lengths():
    spec = spec_from_config(tiny_config(export={"lengths": True}))
    assert spec.dynamic_axes() == {
        "input": {0: SEQ, 1: BATCH},
        "lengths": {0: BATCH},
        "h0": {1: BATCH},
        "c0": {1: BATCH},
        "output": {0: SEQ, 1: BATCH},
        "h_n": {1: BATCH},
        "c_n": {1: BATCH},
    }


def test_dynamic_axes_batch_first_classifier():
    spec = spec_from_config(tiny_config(cell="gru", batch_first=True, head={"task": "classify", "num_classes": 2}))
    assert spec.dynamic_axes() == {
        "input": {0: BATCH, 1: SEQ},
        "h0": {1: BATCH},
        "output": {0: BATCH},
        "h_n": {1: BATCH},
    }


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.name)
def test_dynamic_axes_cover_every_named_axis(path):
    cfg = load_config(path)
    kinds = ["sequence", "step"] if cfg.export.step else ["sequence"]
    for kind in kinds:
        spec = spec_from_config(cfg, kind)
        axes = spec.dynamic_axes()
        for t in (*spec.inputs, *spec.outputs):
            named = {i: d for i, d in enumerate(t.dims) if isinstance(d, str)}
            assert axes.get(t.name, {}) == named
            if t.name.split(".")[0] in ("h0", "c0", "h_n", "c_n"):
                assert axes[t.name] == {1: BATCH}


# ---------------------------------------------------------------------------------------- serialisation


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"export": {"lengths": True}, "embedding": {"vocab_size": 10, "dim": 5}},
        {"cell": "lstm_cell", "hidden_sizes": [6, 4, 3]},
        {"cell": "gru", "export": {"initial_state": False}, "head": {"task": "classify", "num_classes": 2}},
    ],
)
def test_to_dict_round_trip(overrides):
    spec = spec_from_config(tiny_config(**overrides))
    data = json.loads(json.dumps(spec.to_dict()))
    again = IOSpec.from_dict(data)
    assert again == spec
    assert again.dynamic_axes() == spec.dynamic_axes()
    assert again.tensor("input").value_range == spec.tensor("input").value_range


def test_to_dict_content():
    spec = spec_from_config(tiny_config(cell="gru", export={"lengths": True}))
    assert spec.to_dict() == {
        "kind": "sequence",
        "inputs": [
            {"name": "input", "dtype": "float32", "dims": ["seq", "batch", 5]},
            {"name": "lengths", "dtype": "int64", "dims": ["batch"], "value_range": [1, "seq"]},
            {"name": "h0", "dtype": "float32", "dims": [1, "batch", 4]},
        ],
        "outputs": [
            {"name": "output", "dtype": "float32", "dims": ["seq", "batch", 4]},
            {"name": "h_n", "dtype": "float32", "dims": [1, "batch", 4]},
        ],
        "state": [{"input": "h0", "output": "h_n"}],
    }


def test_step_spec_round_trip_keeps_kind():
    spec = spec_from_config(tiny_config(cell="gru_cell", hidden_sizes=[4, 3], export={"step": True}), "step")
    again = IOSpec.from_dict(spec.to_dict())
    assert again.kind == "step"
    assert again == spec


# ------------------------------------------------------------------------------------------ TensorSpec


def test_tensor_spec_shape_and_describe():
    t = TensorSpec("h0", "float32", (2, BATCH, 4))
    assert t.shape({BATCH: 3, SEQ: 9}) == (2, 3, 4)
    assert t.rank == 3
    assert t.describe() == "h0: float32 (2, batch, 4)"
    with pytest.raises(InternalError, match="no size given for axis 'batch' of 'h0'"):
        t.shape({SEQ: 1})


def test_duplicate_names_rejected():
    t = TensorSpec("x", "float32", (BATCH,))
    with pytest.raises(InternalError, match="duplicate tensor names"):
        IOSpec(inputs=(t,), outputs=(t,))
