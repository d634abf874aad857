"""Profile maths on synthetic numbers: statistics, throughput, FLOP formulas, speed-ups and winners."""

from __future__ import annotations

import math

import numpy as np
import pytest

from seqdeploy.profile.flops import recurrent_flops_per_token, stack_flops_per_token
from seqdeploy.profile.report import ProfileCase, ProfileReport, render_markdown, render_table
from seqdeploy.profile.timing import LatencyStats, throughput
from tests.conftest import tiny_config


def test_latency_stats_by_hand() -> None:
    s = LatencyStats.from_samples([4.0, 1.0, 3.0, 2.0, 10.0])
    assert (s.n, s.min_ms, s.max_ms, s.mean_ms) == (5, 1.0, 10.0, 4.0)
    assert s.p50_ms == 3.0
    assert s.p90_ms == pytest.approx(7.6)  # linear interpolation between 4 (rank 3) and 10 (rank 4)
    assert s.p99_ms == pytest.approx(9.76)
    assert s.std_ms == pytest.approx(math.sqrt((0 + 9 + 1 + 4 + 36) / 4))


def test_latency_stats_single_sample_and_empty() -> None:
    s = LatencyStats.from_samples([2.5])
    assert (s.std_ms, s.p50_ms, s.p99_ms) == (0.0, 2.5, 2.5)
    with pytest.raises(ValueError, match="no latency samples"):
        LatencyStats.from_samples([])


def test_throughput() -> None:
    assert throughput(2.0, batch=8, seq=32) == (4000.0, 128000.0)
    seqs, toks = throughput(0.0, 1, 1)
    assert math.isnan(seqs) and math.isnan(toks)


def test_lstm_flops_match_the_reference_model() -> None:
    # export-notes.md: embedding 128 -> biLSTM 256 x 2 = 4.72 MFLOP/token = 2*4*H*(I+H) per layer and direction.
    cfg = tiny_config(
        cell="lstm", hidden_size=256, num_layers=2, bidirectional=True, embedding={"vocab_size": 1000, "dim": 128}
    )
    per_token = 2 * (2 * 4 * 256 * (128 + 256)) + 2 * (2 * 4 * 256 * (512 + 256))
    assert per_token == 4_718_592
    assert recurrent_flops_per_token(cfg.model) == per_token
    assert stack_flops_per_token("lstm", 128, (256, 256), 2) == per_token  # the helper user modules use too


@pytest.mark.parametrize(("cell", "gates"), [("gru", 3), ("rnn_tanh", 1), ("rnn_relu", 1), ("lstm", 4)])
def test_gates_per_family(cell: str, gates: int) -> None:
    cfg = tiny_config(cell=cell, input_size=10, hidden_size=20, num_layers=1)
    assert recurrent_flops_per_token(cfg.model) == 2 * gates * 20 * (10 + 20)


def test_cell_stack_with_unequal_sizes() -> None:
    cfg = tiny_config(cell="lstm_cell", input_size=80, hidden_sizes=[50, 20, 10])
    expected = 2 * 4 * (50 * (80 + 50) + 20 * (50 + 20) + 10 * (20 + 10))
    assert recurrent_flops_per_token(cfg.model) == expected


def _case(backend: str, batch: int, seq: int, p50: float, mode: str = "sequence") -> ProfileCase:
    stats = LatencyStats.from_samples([p50] * 3)
    return ProfileCase(
        backend,
        mode,
        "sequence",
        batch,
        seq,
        stats,
        None,
        gflop=1.0,
        gflops=1.0 / (p50 * 1e-3),
        sgemm_gflops=100.0,
        pct_of_sgemm=100 * 1.0 / (p50 * 1e-3) / 100.0,
    )


def test_speedups_and_winners() -> None:
    rep = ProfileReport(baseline="torch", backends=["torch", "ort-cpu", "ort-cpu-int8"])
    rep.cases = [
        _case("torch", 1, 32, 3.0),
        _case("ort-cpu", 1, 32, 1.5),
        _case("ort-cpu-int8", 1, 32, 0.5),
        _case("torch", 32, 128, 100.0),
        _case("ort-cpu", 32, 128, 125.0),
        _case("torch", 1, 1, 0.2, mode="streaming"),
        _case("ort-cpu", 1, 1, 0.05, mode="streaming"),
    ]
    rep.finish()
    got = {(c.backend, c.batch, c.seq, c.mode): (c.speedup, c.winner) for c in rep.cases}
    assert got[("ort-cpu", 1, 32, "sequence")] == (2.0, False)
    assert got[("ort-cpu-int8", 1, 32, "sequence")] == (6.0, True)
    assert got[("torch", 1, 32, "sequence")] == (1.0, False)
    assert got[("ort-cpu", 32, 128, "sequence")] == (0.8, False)
    assert got[("torch", 32, 128, "sequence")] == (1.0, True)
    assert got[("ort-cpu", 1, 1, "streaming")] == (4.0, True)
    table = render_table(rep)
    assert "6.00×" in table and "winner" in table
    md = render_markdown(rep, plot="p.png")
    assert "![latency vs sequence length](p.png)" in md
    assert "batch 1, seq 32: **ort-cpu-int8**" in md
    d = rep.to_dict()
    assert d["schema_version"] == 1
    assert d["cases"][2]["speedup_vs_baseline"] == 6.0
    assert d["cases"][0]["host_ms"]["p50_ms"] == pytest.approx(3.0)


def test_percent_of_sgemm_keeps_small_values_visible() -> None:
    rep = ProfileReport(baseline="torch", backends=["torch"])
    rep.cases = [_case("torch", 1, 8, 1.0), _case("torch", 1, 16, 1.0)]
    rep.finish()
    rep.cases[0].pct_of_sgemm = 0.0146
    rep.cases[1].pct_of_sgemm = 57.4
    rows = render_markdown(rep)
    assert "| 0.015 |" in rows and "| 57 |" in rows


def test_missing_baseline_gives_no_speedup() -> None:
    rep = ProfileReport(baseline="torch", backends=["ort-cpu"])
    rep.cases = [_case("ort-cpu", 1, 8, 1.0)]
    rep.finish()
    assert rep.cases[0].speedup is None
    assert rep.cases[0].to_dict()["speedup_vs_baseline"] is None


def test_nonfinite_numbers_are_null_in_json() -> None:
    c = _case("torch", 1, 1, 1.0)
    c.gflops = float(np.nan)
    assert c.to_dict()["gflops"] is None
