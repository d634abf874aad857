"""Feeds from an IOSpec: seqdeploy/feeds.py."""

from __future__ import annotations

import re

import numpy as np
import pytest

from seqdeploy.errors import InputError
from seqdeploy.feeds import carry_state, check_feeds, make_feeds, select_rows, slice_seq, zero_state
from seqdeploy.spec import spec_from_config
from tests.conftest import tiny_config

LSTM_LEN = spec_from_config(tiny_config(export={"lengths": True}))  # input[seq,batch,5], lengths, h0, c0
IDS_BF = spec_from_config(
    tiny_config(cell="gru", batch_first=True, embedding={"vocab_size": 10, "dim": 5}, export={"lengths": True})
)  # input int64 [batch, seq] in [0, 9], lengths, h0
STACK = spec_from_config(tiny_config(cell="lstm_cell", hidden_sizes=[6, 4, 3]))


def _problem(spec, feeds) -> str:
    with pytest.raises(InputError) as info:
        check_feeds(spec, feeds)
    assert info.value.exit_code == 2
    msg = str(info.value)
    assert msg.startswith("feeds do not match the model's inputs:\n  - ")
    return msg


# ----------------------------------------------------------------------------------------------- make_feeds


def test_make_feeds_shapes_and_dtypes():
    f = make_feeds(LSTM_LEN, batch=3, seq=6, seed=0)
    assert list(f) == ["input", "lengths", "h0", "c0"]
    assert f["input"].shape == (6, 3, 5)
    assert f["input"].dtype == np.float32
    assert f["lengths"].shape == (3,)
    assert f["lengths"].dtype == np.int64
    assert f["h0"].shape == (1, 3, 4)
    assert f["h0"].dtype == np.float32
    assert f["c0"].shape == (1, 3, 4)
    assert check_feeds(LSTM_LEN, f) == {"seq": 6, "batch": 3}


def test_make_feeds_is_seeded():
    a = make_feeds(LSTM_LEN, 4, 7, seed=3)
    b = make_feeds(LSTM_LEN, 4, 7, seed=3)
    c = make_feeds(LSTM_LEN, 4, 7, seed=4)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    assert not np.array_equal(a["input"], c["input"])
    assert not np.array_equal(a["h0"], c["h0"])


def test_make_feeds_ids_cover_vocab_edges():
    for seed in range(5):
        f = make_feeds(IDS_BF, batch=3, seq=4, seed=seed)
        ids = f["input"]
        assert ids.dtype == np.int64
        assert ids.shape == (3, 4)
        assert ids.min() == 0
        assert ids.max() == 9
        assert 0 in ids
        assert 9 in ids
        assert 8 in ids  # vocab_size - 2 is placed too
        check_feeds(IDS_BF, f)


def test_make_feeds_ids_single_element():
    f = make_feeds(IDS_BF, batch=1, seq=1, seed=0)
    assert f["input"].shape == (1, 1)
    assert 0 <= f["input"][0, 0] <= 9
    assert f["lengths"].tolist() == [1]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_make_feeds_lengths(seed: int):
    f = make_feeds(LSTM_LEN, batch=5, seq=9, seed=seed)
    ln = f["lengths"]
    assert ln[0] == 9
    assert ln[1] == 1
    assert ln.min() >= 1
    assert ln.max() <= 9


def test_make_feeds_lengths_batch_one_is_full():
    assert make_feeds(LSTM_LEN, batch=1, seq=6)["lengths"].tolist() == [6]


def test_make_feeds_full_lengths():
    f = make_feeds(LSTM_LEN, batch=4, seq=6, full_lengths=True)
    assert f["lengths"].tolist() == [6, 6, 6, 6]
    assert f["lengths"].dtype == np.int64


def test_make_feeds_states_are_nonzero_and_scaled():
    f = make_feeds(LSTM_LEN, batch=64, seq=2, seed=0)
    for name in ("h0", "c0"):
        assert np.all(f[name] != 0)
        assert 0.3 < float(f[name].std()) < 0.7  # N(0, 0.5^2)
    assert 0.8 < float(f["input"].std()) < 1.2  # N(0, 1)


def test_make_feeds_per_layer_states():
    f = make_feeds(STACK, batch=2, seq=3)
    assert {n: f[n].shape for n in f} == {
        "input": (3, 2, 5),
        "h0.0": (1, 2, 6),
        "h0.1": (1, 2, 4),
        "h0.2": (1, 2, 3),
        "c0.0": (1, 2, 6),
        "c0.1": (1, 2, 4),
        "c0.2": (1, 2, 3),
    }


def test_make_feeds_step_spec():
    spec = spec_from_config(tiny_config(cell="gru"), "step")
    f = make_feeds(spec, batch=3, seed=0)
    assert f["input"].shape == (3, 5)
    assert f["h0"].shape == (1, 3, 4)


@pytest.mark.parametrize(("batch", "seq"), [(0, 3), (2, 0), (-1, 1)])
def test_make_feeds_rejects_empty(batch: int, seq: int):
    with pytest.raises(InputError, match=re.escape(f"batch and seq must be >= 1, got batch={batch}, seq={seq}")):
        make_feeds(LSTM_LEN, batch, seq)


# ---------------------------------------------------------------------------------------------- check_feeds


def test_check_feeds_returns_axis_sizes_batch_first():
    f = make_feeds(IDS_BF, batch=2, seq=5)
    assert check_feeds(IDS_BF, f) == {"batch": 2, "seq": 5}


def test_check_feeds_missing_input():
    f = make_feeds(LSTM_LEN, 2, 3)
    del f["c0"]
    msg = _problem(LSTM_LEN, f)
    assert "missing inputs ['c0']" in msg


def test_check_feeds_unexpected_input():
    f = make_feeds(LSTM_LEN, 2, 3)
    f["h1"] = f["h0"]
    msg = _problem(LSTM_LEN, f)
    assert "unexpected inputs ['h1'] (the graph takes ['input', 'lengths', 'h0', 'c0'])" in msg


def test_check_feeds_collects_several_problems():
    f = make_feeds(LSTM_LEN, 2, 3)
    del f["lengths"]
    f["extra"] = f["h0"]
    f["h0"] = f["h0"].astype(np.float64)
    msg = _problem(LSTM_LEN, f)
    assert "missing inputs ['lengths']" in msg
    assert "unexpected inputs ['extra']" in msg
    assert "input 'h0': got dtype float64, expected float32" in msg
    assert msg.count("\n  - ") == 3


def test_check_feeds_wrong_dtype():
    f = make_feeds(IDS_BF, 2, 3)
    f["input"] = f["input"].astype(np.int32)
    msg = _problem(IDS_BF, f)
    assert "input 'input': got dtype int32, expected int64 (input: int64 (batch, seq))" in msg


def test_check_feeds_not_an_array():
    f = make_feeds(LSTM_LEN, 2, 3)
    f["h0"] = f["h0"].tolist()
    assert "input 'h0': expected a numpy array, got list" in _problem(LSTM_LEN, f)


def test_check_feeds_wrong_rank():
    f = make_feeds(LSTM_LEN, 2, 3)
    f["h0"] = f["h0"][0]
    msg = _problem(LSTM_LEN, f)
    assert "input 'h0': got shape (2, 4) (rank 2), expected rank 3: (1, batch, 4)" in msg


def test_check_feeds_wrong_static_dim():
    f = make_feeds(LSTM_LEN, 2, 3)
    f["input"] = np.zeros((3, 2, 6), np.float32)
    msg = _problem(LSTM_LEN, f)
    assert "input 'input': got shape (3, 2, 6), expected (seq, batch, 5); axis 2 must be 5" in msg


def test_check_feeds_wrong_state_layers():
    f = make_feeds(LSTM_LEN, 2, 3)
    f["c0"] = np.zeros((2, 2, 4), np.float32)
    assert "input 'c0': got shape (2, 2, 4), expected (1, batch, 4); axis 0 must be 1" in _problem(LSTM_LEN, f)


def test_check_feeds_inconsistent_batch_between_input_and_h0():
    f = make_feeds(LSTM_LEN, 2, 3)
    f["h0"] = make_feeds(LSTM_LEN, 3, 3)["h0"]
    msg = _problem(LSTM_LEN, f)
    assert "input 'h0': axis 1 ('batch') is 3 but input 'input' set 'batch' = 2" in msg


def test_check_feeds_inconsistent_batch_lengths():
    f = make_feeds(IDS_BF, 2, 3)
    f["lengths"] = np.array([3, 3, 3], np.int64)
    assert "input 'lengths': axis 0 ('batch') is 3 but input 'input' set 'batch' = 2" in _problem(IDS_BF, f)


def test_check_feeds_empty_axis():
    f = {
        "input": np.zeros((0, 2, 5), np.float32),
        **{k: v for k, v in make_feeds(LSTM_LEN, 2, 3).items() if k != "input"},
    }
    f["lengths"] = np.array([1, 1], np.int64)
    assert "input 'input': axis 0 is empty; every axis must be >= 1" in _problem(LSTM_LEN, f)


def test_check_feeds_out_of_vocab_id_reports_index():
    f = make_feeds(IDS_BF, batch=2, seq=4, seed=0)
    f["input"][1, 2] = 10
    msg = _problem(IDS_BF, f)
    assert "input 'input': token ids must be in the vocabulary in [0, 9]" in msg
    assert "1 value(s) are outside, first 10 at index (1, 2)" in msg
    assert "OOV id" in msg


def test_check_feeds_negative_id_first_index():
    f = make_feeds(IDS_BF, batch=2, seq=4, seed=0)
    f["input"][0, 3] = -1
    f["input"][1, 0] = 99
    msg = _problem(IDS_BF, f)
    assert "2 value(s) are outside, first -1 at index (0, 3)" in msg


def test_check_feeds_lengths_zero():
    f = make_feeds(IDS_BF, batch=3, seq=4)
    f["lengths"] = np.array([4, 0, 2], np.int64)
    msg = _problem(IDS_BF, f)
    assert "input 'lengths': values must be in [1, 4]" in msg
    assert "first 0 at index (1,)" in msg
    assert "1 <= length <= seq (= 4)" in msg


def test_check_feeds_lengths_longer_than_seq():
    f = make_feeds(LSTM_LEN, batch=2, seq=4)
    f["lengths"] = np.array([5, 1], np.int64)
    msg = _problem(LSTM_LEN, f)
    assert "values must be in [1, 4], but 1 value(s) are outside, first 5 at index (0,)" in msg


def test_check_feeds_lengths_at_bounds_pass():
    f = make_feeds(LSTM_LEN, batch=2, seq=4)
    f["lengths"] = np.array([4, 1], np.int64)
    assert check_feeds(LSTM_LEN, f) == {"seq": 4, "batch": 2}


def test_check_feeds_per_layer_states():
    f = make_feeds(STACK, 2, 3)
    check_feeds(STACK, f)
    f["h0.1"] = np.zeros((1, 2, 6), np.float32)
    assert "input 'h0.1': got shape (1, 2, 6), expected (1, batch, 4); axis 2 must be 4" in _problem(STACK, f)


# ------------------------------------------------------------------------------------------ state helpers


def test_zero_state():
    z = zero_state(LSTM_LEN, batch=3)
    assert set(z) == {"h0", "c0"}
    for v in z.values():
        assert v.shape == (1, 3, 4)
        assert v.dtype == np.float32
        assert not v.any()


def test_zero_state_per_layer_and_none():
    z = zero_state(STACK, batch=2)
    assert {k: v.shape for k, v in z.items()} == {
        "h0.0": (1, 2, 6),
        "h0.1": (1, 2, 4),
        "h0.2": (1, 2, 3),
        "c0.0": (1, 2, 6),
        "c0.1": (1, 2, 4),
        "c0.2": (1, 2, 3),
    }
    assert zero_state(spec_from_config(tiny_config(export={"initial_state": False})), 2) == {}


def test_carry_state_maps_outputs_to_inputs():
    rng = np.random.default_rng(0)
    h = rng.standard_normal((1, 2, 4)).astype(np.float32)
    c = rng.standard_normal((1, 2, 4)).astype(np.float32)
    out = {"output": np.zeros((3, 2, 4), np.float32), "h_n": h, "c_n": c}
    carried = carry_state(out, LSTM_LEN)
    assert set(carried) == {"h0", "c0"}
    np.testing.assert_array_equal(carried["h0"], h)
    np.testing.assert_array_equal(carried["c0"], c)


def test_carry_state_makes_contiguous():
    h = np.zeros((4, 2, 1), np.float32).transpose(2, 1, 0)  # (1, 2, 4) non-contiguous
    assert not h.flags.c_contiguous
    spec = spec_from_config(tiny_config(cell="gru"))
    carried = carry_state({"h_n": h, "output": h}, spec)
    assert carried["h0"].flags.c_contiguous
    assert carried["h0"].shape == (1, 2, 4)


def test_carry_state_per_layer():
    outs = {f"{s}_n.{k}": np.full((1, 1, n), k, np.float32) for s in "hc" for k, n in enumerate((6, 4, 3))}
    carried = carry_state(outs, STACK)
    assert sorted(carried) == ["c0.0", "c0.1", "c0.2", "h0.0", "h0.1", "h0.2"]
    assert carried["h0.2"].shape == (1, 1, 3)
    assert carried["c0.1"][0, 0, 0] == 1


def test_carry_state_missing_output():
    with pytest.raises(InputError, match=re.escape("cannot carry state: outputs ['c_n'] are missing")):
        carry_state({"output": np.zeros(1), "h_n": np.zeros((1, 1, 4))}, LSTM_LEN)


def test_slice_seq_time_major():
    f = make_feeds(LSTM_LEN, batch=2, seq=6, seed=0)
    s = slice_seq(LSTM_LEN, f, 2, 5)
    np.testing.assert_array_equal(s["input"], f["input"][2:5])
    assert s["input"].flags.c_contiguous
    assert s["h0"] is f["h0"]
    assert s["lengths"] is f["lengths"]  # no seq axis: copied as is


def test_slice_seq_batch_first():
    f = make_feeds(IDS_BF, batch=3, seq=6, seed=1)
    s = slice_seq(IDS_BF, f, 1, 3)
    np.testing.assert_array_equal(s["input"], f["input"][:, 1:3])
    assert s["input"].shape == (3, 2)
    assert s["input"].flags.c_contiguous


def test_slice_seq_unknown_name_copied():
    extra = np.arange(3)
    s = slice_seq(LSTM_LEN, {"other": extra}, 0, 1)
    assert s["other"] is extra


def test_select_rows():
    f = make_feeds(LSTM_LEN, batch=4, seq=3, seed=0)
    s = select_rows(LSTM_LEN, f, [2, 0])
    np.testing.assert_array_equal(s["input"], f["input"][:, [2, 0]])
    np.testing.assert_array_equal(s["lengths"], f["lengths"][[2, 0]])
    np.testing.assert_array_equal(s["h0"], f["h0"][:, [2, 0]])  # states: batch is axis 1
    np.testing.assert_array_equal(s["c0"], f["c0"][:, [2, 0]])
    assert check_feeds(LSTM_LEN, s) == {"seq": 3, "batch": 2}


def test_select_rows_batch_first_and_outputs():
    spec = spec_from_config(tiny_config(batch_first=True, head={"task": "classify", "num_classes": 3}))
    f = make_feeds(spec, batch=3, seq=2, seed=0)
    out = {"output": np.arange(9, dtype=np.float32).reshape(3, 3), "h_n": f["h0"], "c_n": f["c0"]}
    s = select_rows(spec, {**f, **out}, np.array([1]))
    np.testing.assert_array_equal(s["input"], f["input"][[1]])
    np.testing.assert_array_equal(s["output"], [[3.0, 4.0, 5.0]])
    np.testing.assert_array_equal(s["h_n"], f["h0"][:, [1]])
