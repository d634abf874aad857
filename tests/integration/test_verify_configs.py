"""Every shipped config exports (with its self-check) and then passes ``verify`` over a reduced sweep.

Measured on 2 cores: every config, bench_reference included, exports and verifies in under 5 s, so
none is marked ``slow``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from seqdeploy.export.stage import export_model
from seqdeploy.manifest import Bundle
from seqdeploy.parity.run import VerifyOptions, verify

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
CONFIG_FILES = sorted(CONFIGS.glob("*.toml"))


def test_configs_are_found():
    assert {"default", "bench_reference", "lstm_cell_stack"} <= {p.stem for p in CONFIG_FILES}


@pytest.mark.parametrize("config", CONFIG_FILES, ids=[p.stem for p in CONFIG_FILES])
def test_export_of_every_config_passes_verify(config: Path, tmp_path: Path):
    out = tmp_path / config.stem
    result = export_model(config, out)
    assert result.report.passed, result.report.summary()

    report = verify(out, VerifyOptions(batches=(1, 3), seqs=(1, 9)))
    assert report.passed, report.summary()
    assert report.lint == [], report.lint
    assert report.warnings == [], report.warnings
    assert not [c.error for c in report.cases if c.error]
    full = [c for c in report.cases if c.mode == "full"]
    assert {(c.batch, c.seq) for c in full} == {(1, 1), (1, 9), (3, 1), (3, 9)}
    # Every output of the graph is compared, states included.
    outputs = set(Bundle.load(out).specs["sequence"].output_names)
    assert all(set(c.tensors) == outputs for c in full)
