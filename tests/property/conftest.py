"""Bundles shared by the property suites, and the summary of how many generated cases ran."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import tiny_raw
from tests.property._support import TALLY

BUNDLE_CONFIGS = {
    # LSTM with initial states: float features, h0/c0 in, output/h_n/c_n out.
    "lstm": tiny_raw(),
    # Token ids (value_range), lengths, a bidirectional GRU, a classifier head.
    "ids": tiny_raw(
        cell="gru",
        bidirectional=True,
        embedding={"vocab_size": 12, "dim": 4},
        head={"task": "classify", "num_classes": 3},
        export={"lengths": True},
    ),
    # A cell stack of unequal sizes (per-layer states) with a step graph.
    "stack": tiny_raw(cell="rnn_cell", hidden_sizes=[4, 3], export={"step": True}),
}


@pytest.fixture(scope="session")
def property_bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from seqdeploy.config_io import config_from_dict
    from seqdeploy.export.stage import export_model

    root = tmp_path_factory.mktemp("property-bundles")
    out = {}
    for name, raw in BUNDLE_CONFIGS.items():
        out[name] = root / name
        export_model(config_from_dict(raw), out[name])
    return out


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TALLY:
        return
    terminalreporter.section("property suites: generated cases")
    total = 0
    for name, codes in sorted(TALLY.items()):
        n = sum(codes.values())
        total += n
        hist = ", ".join(f"exit {c}: {k}" for c, k in sorted(codes.items()))
        terminalreporter.write_line(f"{name}: {n} cases ({hist})")
    bad = sum(k for codes in TALLY.values() for c, k in codes.items() if c not in (0, 1, 2, 3))
    verdict = "none" if not bad else f"{bad}"
    terminalreporter.write_line(f"total: {total} generated cases; {verdict} ended outside exit 0/1/2/3")
