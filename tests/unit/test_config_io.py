"""Config loading and validation: seqdeploy/config.py and seqdeploy/config_io.py."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from seqdeploy.config import (
    CELLS,
    EmbeddingConfig,
    ExportConfig,
    HeadConfig,
    ModelConfig,
    PipelineConfig,
    ShapesConfig,
)
from seqdeploy.config_io import config_from_dict, config_to_dict, load_config
from seqdeploy.errors import ConfigError, SeqdeployError
from tests.conftest import CONFIGS, tiny_config, tiny_raw

CONFIG_FILES = sorted(CONFIGS.glob("*.toml"))


def _raises(raw: dict[str, Any], *fragments: str) -> str:
    """config_from_dict(raw) must raise ConfigError whose message contains every fragment."""
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw)
    msg = str(info.value)
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"
    assert info.value.exit_code == 2
    assert isinstance(info.value, SeqdeployError)
    assert isinstance(info.value, ValueError)
    return msg


# --------------------------------------------------------------------------------------------- shipped configs


def test_there_are_shipped_configs():
    names = {p.name for p in CONFIG_FILES}
    assert {"default.toml", "gru_glove_classifier.toml", "lstm_cell_stack.toml"} <= names


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.name)
def test_every_shipped_config_loads(path: Path):
    cfg = load_config(path)
    assert isinstance(cfg, PipelineConfig)
    assert cfg.base_dir == str(path.resolve().parent)
    assert cfg.model.cell in CELLS


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.name)
def test_every_shipped_config_round_trips(path: Path):
    cfg = load_config(path)
    again = config_from_dict(config_to_dict(cfg), base_dir=cfg.base_dir)
    assert again == cfg


def test_shipped_values_are_read():
    cfg = load_config(CONFIGS / "lstm_cell_stack.toml")
    assert cfg.model.cell == "lstm_cell"
    assert cfg.model.input_size == 80
    assert cfg.model.hidden_sizes == (50, 20, 10)
    assert cfg.model.layer_sizes == (50, 20, 10)
    assert cfg.model.per_layer_state is True
    assert cfg.export.step is True
    assert cfg.shapes.batch == (1, 4, 16)
    assert cfg.shapes.seq == (1, 32, 256)

    glove = load_config(CONFIGS / "gru_glove_classifier.toml")
    emb = glove.model.embedding
    assert emb is not None
    assert (emb.vocab_size, emb.dim, emb.padding_idx) == (64, 16, 0)
    assert emb.vectors == "data/tiny-glove.txt"
    assert emb.vocab == "data/tiny-vocab.txt"
    assert glove.model.head == HeadConfig(task="classify", num_classes=5, pooling="mean")
    assert glove.model.input_size is None
    assert glove.model.feature_size == 16
    # defaults for keys that the file omits
    assert glove.export.opset == 17
    assert glove.export.initial_state is True
    assert glove.export.lengths is True


# ----------------------------------------------------------------------------------------- error messages


def test_unknown_key_suggests_and_lists_valid_keys():
    msg = _raises(tiny_raw(hiden_size=3), "model.hiden_size: unknown key", "did you mean 'hidden_size'?")
    valid = msg.split("valid keys here: ", 1)[1]
    assert valid.split(", ") == sorted(f.name for f in dataclasses.fields(ModelConfig))


def test_unknown_key_without_close_match_has_no_suggestion():
    msg = _raises(tiny_raw(zzzzzz=1), "model.zzzzzz: unknown key;", "valid keys here: batch_first")
    assert "did you mean" not in msg


def test_unknown_key_in_nested_table_names_full_path():
    raw = tiny_raw(head={"task": "classify", "num_clases": 3})
    msg = _raises(raw, "model.head.num_clases: unknown key", "did you mean 'num_classes'?")
    assert "valid keys here: labels, num_classes, pooling, task" in msg


def test_unknown_top_level_table():
    raw = tiny_raw()
    raw["exprot"] = {}
    _raises(
        raw, "exprot: unknown key", "did you mean 'export'?", "valid keys here: checkpoint, export, io, model, shapes"
    )


def test_unknown_cell_lists_allowed_values():
    msg = _raises(tiny_raw(cell="lstmm"), "model.cell: expected one of", "got str 'lstmm'")
    for cell in CELLS:
        assert repr(cell) in msg


def test_hidden_size_zero():
    _raises(tiny_raw(hidden_size=0), "model.hidden_size: expected int >= 1, got 0")


def test_hidden_sizes_entry_zero_names_index():
    _raises(tiny_raw(cell="gru_cell", hidden_sizes=[4, 0]), "model.hidden_sizes[1]: expected int >= 1, got 0")


def test_dropout_out_of_range():
    _raises(tiny_raw(dropout=1.5), "model.dropout: expected a float in [0, 1), got 1.5")


def test_dropout_negative():
    _raises(tiny_raw(dropout=-0.1), "model.dropout:", "got -0.1")


def test_bool_for_int_rejected():
    _raises(tiny_raw(num_layers=True), "model.num_layers: expected int, got bool True")


def test_bool_for_float_rejected():
    _raises(tiny_raw(dropout=False), "model.dropout: expected float, got bool False")


def test_int_for_bool_rejected():
    _raises(tiny_raw(bidirectional=1), "model.bidirectional: expected true or false, got int 1")


def test_int_accepted_for_float():
    cfg = config_from_dict(tiny_raw(dropout=0))
    assert cfg.model.dropout == 0.0
    assert type(cfg.model.dropout) is float


def test_float_rejected_for_int():
    _raises(tiny_raw(hidden_size=4.0), "model.hidden_size: expected int, got float 4.0")


def test_string_for_int():
    _raises(tiny_raw(hidden_size="4"), "model.hidden_size: expected int, got str '4'")


def test_table_for_int_described_as_table():
    _raises(tiny_raw(hidden_size={"a": 1}), "model.hidden_size: expected int, got a table")


def test_missing_required_cell():
    raw = tiny_raw()
    del raw["model"]["cell"]
    _raises(raw, "model.cell: required key is missing")


def test_missing_model_table():
    _raises({"export": {}}, "model: required key is missing")


def test_missing_input_size_without_embedding():
    raw = tiny_raw()
    del raw["model"]["input_size"]
    _raises(raw, "model.input_size: required when there is no [model.embedding] table")


def test_table_expected():
    _raises({"model": {"cell": "lstm", "input_size": 5, "hidden_size": 4}, "export": 3}, "export: expected a table")


def test_shapes_wrong_length():
    _raises(tiny_raw(shapes={"batch": [1, 2], "seq": [1, 2, 3]}), "shapes.batch: expected an array of 3 values")


def test_shapes_element_type_names_index():
    _raises(tiny_raw(shapes={"batch": [1, "2", 3], "seq": [1, 2, 3]}), "shapes.batch[1]: expected int, got str '2'")


def test_hidden_sizes_with_non_stack_cell():
    _raises(
        tiny_raw(hidden_sizes=[4, 3]),
        "model.hidden_sizes: only valid for cell stacks (rnn_cell, gru_cell, lstm_cell)",
        "cell = 'lstm'",
    )


def test_hidden_size_and_hidden_sizes_together():
    raw = tiny_raw(cell="gru_cell")
    raw["model"]["hidden_sizes"] = [4, 3]  # tiny_raw drops hidden_size when given hidden_sizes; add it back
    assert "hidden_size" in raw["model"]
    _raises(raw, "model.hidden_sizes: give either hidden_size (+ num_layers) or hidden_sizes, not both")


def test_empty_hidden_sizes():
    _raises(tiny_raw(cell="rnn_cell", hidden_sizes=[]), "model.hidden_sizes: expected at least one size")


@pytest.mark.parametrize(
    ("cell", "suggestion"), [("lstm_cell", "lstm"), ("gru_cell", "gru"), ("rnn_cell", "rnn_tanh")]
)
def test_bidirectional_cell_stack_rejected(cell: str, suggestion: str):
    _raises(
        tiny_raw(cell=cell, bidirectional=True),
        f"model.bidirectional: cell stacks ('{cell}') are unidirectional",
        f"use cell = '{suggestion}'",
    )


def test_nonlinearity_only_for_rnn_cell():
    _raises(tiny_raw(cell="gru", nonlinearity="relu"), "model.nonlinearity: only valid for cell = 'rnn_cell'")


def test_head_classify_without_num_classes():
    _raises(tiny_raw(head={"task": "classify"}), "model.head.num_classes: expected int >= 1 for task 'classify'")


def test_head_none_with_num_classes():
    _raises(tiny_raw(head={"num_classes": 3}), "model.head.num_classes: only valid with task = 'classify' or 'tag'")


def test_pooling_with_tag_task():
    _raises(
        tiny_raw(head={"task": "tag", "num_classes": 3, "pooling": "mean"}),
        "model.head.pooling: only valid with task = 'classify', not 'tag'",
    )


def test_shapes_min_greater_than_opt():
    _raises(
        tiny_raw(shapes={"batch": [1, 3, 6], "seq": [5, 2, 24]}),
        "shapes.seq: expected [min, opt, max] with min <= opt <= max, got [5, 2, 24]",
    )


def test_shapes_min_zero():
    _raises(tiny_raw(shapes={"batch": [0, 3, 6], "seq": [1, 2, 24]}), "shapes.batch: expected min >= 1")


def test_opset_out_of_range():
    _raises(tiny_raw(export={"opset": 13}), "export.opset: expected an int in [14, 20], got 13")


def test_padding_idx_out_of_range():
    _raises(
        tiny_raw(embedding={"vocab_size": 10, "dim": 5, "padding_idx": 10}),
        "model.embedding.padding_idx: expected an id in [0, vocab_size - 1 = 9], got 10",
    )


def test_padding_idx_negative():
    _raises(tiny_raw(embedding={"vocab_size": 10, "dim": 5, "padding_idx": -1}), "model.embedding.padding_idx:")


def test_vectors_without_vocab():
    _raises(
        tiny_raw(embedding={"vocab_size": 10, "dim": 5, "vectors": "x.txt"}),
        "model.embedding.vocab: required when 'vectors' is set",
    )


def test_input_size_contradicting_embedding_dim():
    raw = tiny_raw(embedding={"vocab_size": 10, "dim": 5})
    raw["model"]["input_size"] = 6
    _raises(raw, "model.input_size: 6 contradicts embedding.dim = 5")


def test_step_with_bidirectional():
    _raises(
        tiny_raw(bidirectional=True, export={"step": True}),
        "export.step: a bidirectional model has no single-step form",
    )


def test_step_with_lengths():
    _raises(tiny_raw(export={"step": True, "lengths": True}), "export.step:", "lengths do not apply")


def test_step_without_initial_state():
    _raises(tiny_raw(export={"step": True, "initial_state": False}), "export.step: a step graph needs states")


def test_step_with_mean_pooling():
    _raises(
        tiny_raw(head={"task": "classify", "num_classes": 2, "pooling": "max"}, export={"step": True}),
        "export.step: a step graph cannot pool 'max' over time",
    )


def test_python_level_validation_uses_relative_key():
    with pytest.raises(ConfigError, match=r"^hidden_size: expected int >= 1, got -2$"):
        ModelConfig(cell="gru", input_size=3, hidden_size=-2)


# ------------------------------------------------------------------------------------------------ files


def test_invalid_toml_names_file(tmp_path: Path):
    p = tmp_path / "bad.toml"
    p.write_text("[model\ncell = 'lstm'\n")
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert str(info.value).startswith(f"{p}: invalid TOML:")
    assert info.value.exit_code == 2


def test_missing_file(tmp_path: Path):
    p = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=re.escape(f"{p}: config file not found")):
        load_config(p)


def test_directory_instead_of_file(tmp_path: Path):
    with pytest.raises(ConfigError, match=re.escape(f"{tmp_path}: is a directory")):
        load_config(tmp_path)


def test_file_errors_prefix_path_and_key(tmp_path: Path):
    p = tmp_path / "c.toml"
    p.write_text('[model]\ncell = "gru"\ninput_size = 3\nhidden_size = 0\n')
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert str(info.value) == f"{p}: model.hidden_size: expected int >= 1, got 0"


def test_load_from_file_sets_base_dir(tmp_path: Path):
    sub = tmp_path / "sub"
    sub.mkdir()
    p = sub / "c.toml"
    p.write_text('[model]\ncell = "rnn_relu"\ninput_size = 3\nhidden_size = 2\n')
    cfg = load_config(str(p))
    assert cfg.base_dir == str(sub.resolve())
    assert cfg.model.activation == "relu"
    assert cfg.export == ExportConfig()
    assert cfg.shapes == ShapesConfig()


# ------------------------------------------------------------------------------------------- round trip


ROUND_TRIP = {
    "tiny": {},
    "stack": {"cell": "lstm_cell", "hidden_sizes": [6, 4, 3]},
    "rnn_relu_cell": {"cell": "rnn_cell", "nonlinearity": "relu", "num_layers": 2},
    "embedding": {
        "cell": "gru",
        "batch_first": True,
        "embedding": {"vocab_size": 12, "dim": 5, "padding_idx": 3, "oov": "mean", "freeze": False},
        "head": {"task": "classify", "num_classes": 3, "pooling": "max"},
        "export": {"lengths": True, "initial_state": False, "opset": 18},
    },
    "tagger": {"cell": "rnn_tanh", "bidirectional": True, "dropout": 0.25, "head": {"task": "tag", "num_classes": 4}},
    "step": {"cell": "gru_cell", "hidden_sizes": [4, 4], "export": {"step": True}},
}


@pytest.mark.parametrize("overrides", ROUND_TRIP.values(), ids=list(ROUND_TRIP))
def test_round_trip(overrides: dict[str, Any]):
    cfg = tiny_config(**overrides)
    d = config_to_dict(cfg)
    assert "base_dir" not in d
    again = config_from_dict(d)
    assert again == cfg
    assert config_to_dict(again) == d


def test_to_dict_shape():
    cfg = tiny_config(cell="lstm_cell", hidden_sizes=[6, 4, 3])
    d = config_to_dict(cfg)
    assert d["model"]["hidden_sizes"] == [6, 4, 3]  # tuples become lists
    assert "hidden_size" not in d["model"]  # None omitted
    assert "embedding" not in d["model"]
    assert d["shapes"] == {"batch": [1, 3, 6], "seq": [1, 6, 24]}
    assert d["model"]["head"] == {"task": "none", "pooling": "last"}


def test_round_trip_ignores_base_dir():
    cfg = config_from_dict(tiny_raw(), base_dir="/somewhere")
    again = config_from_dict(config_to_dict(cfg))
    assert again.base_dir == "."
    assert dataclasses.replace(again, base_dir="/somewhere") == cfg


def test_round_trip_padding_idx_none():
    """A config built in Python with no padding row must survive config_to_dict -> config_from_dict
    (the manifest stores config_to_dict(cfg))."""
    cfg = tiny_config(embedding={"vocab_size": 10, "dim": 5})
    emb = dataclasses.replace(cfg.model.embedding, padding_idx=None)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, embedding=emb))
    again = config_from_dict(config_to_dict(cfg))
    assert again.model.embedding.padding_idx is None
    assert again == cfg


# ------------------------------------------------------------------------------------------- properties


@pytest.mark.parametrize(
    ("overrides", "sizes", "per_layer", "base", "activation", "dirs"),
    [
        ({"cell": "lstm", "num_layers": 3}, (4, 4, 4), False, "lstm", "tanh", 1),
        ({"cell": "gru", "bidirectional": True, "num_layers": 2}, (4, 4), False, "gru", "tanh", 2),
        ({"cell": "rnn_tanh"}, (4,), False, "rnn", "tanh", 1),
        ({"cell": "rnn_relu", "bidirectional": True}, (4,), False, "rnn", "relu", 2),
        ({"cell": "rnn_cell", "nonlinearity": "relu", "num_layers": 2}, (4, 4), False, "rnn", "relu", 1),
        ({"cell": "rnn_cell"}, (4,), False, "rnn", "tanh", 1),
        ({"cell": "gru_cell", "hidden_sizes": [5, 5]}, (5, 5), False, "gru", "tanh", 1),
        ({"cell": "lstm_cell", "hidden_sizes": [6, 4, 3]}, (6, 4, 3), True, "lstm", "tanh", 1),
        ({"cell": "gru_cell", "hidden_sizes": [3, 7]}, (3, 7), True, "gru", "tanh", 1),
    ],
)
def test_model_properties(overrides, sizes, per_layer, base, activation, dirs):
    m = tiny_config(**overrides).model
    assert m.layer_sizes == sizes
    assert m.per_layer_state is per_layer
    assert m.base_cell == base
    assert m.activation == activation
    assert m.num_directions == dirs
    assert m.is_cell_stack is overrides["cell"].endswith("_cell")


def test_feature_size_from_embedding():
    m = tiny_config(embedding={"vocab_size": 10, "dim": 7}).model
    assert m.input_size is None
    assert m.feature_size == 7
    assert m.embedding == EmbeddingConfig(vocab_size=10, dim=7)


def test_configs_are_frozen():
    cfg = tiny_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.model.hidden_size = 8  # type: ignore[misc]
