"""The tiny-model matrix: cell x layers {1,3} x bidirectional x batch_first x lengths x initial_state.

Each configuration is exported once (which already runs its own self-check), then run in ONNX Runtime
at batch B and B+1 and three sequence lengths — none of them the traced shape — and compared with
PyTorch at fp32 (max abs <= 1e-5) on ``output``, ``h_n`` and ``c_n``.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import onnx
import pytest

from seqdeploy.config import CELLS, STACK_CELLS
from seqdeploy.export.stage import export_model
from seqdeploy.manifest import Bundle
from seqdeploy.parity.run import VerifyOptions, verify
from tests.conftest import tiny_config


def _matrix() -> list[tuple[str, int, bool, bool, bool, bool]]:
    out = []
    for cell, layers, bi, bf, lengths, init in itertools.product(
        CELLS, (1, 3), (False, True), (False, True), (False, True), (False, True)
    ):
        if bi and cell in STACK_CELLS:
            continue  # cell stacks are unidirectional by construction (config rejects it)
        out.append((cell, layers, bi, bf, lengths, init))
    return out


MATRIX = _matrix()


@pytest.mark.parametrize(
    ("cell", "layers", "bi", "batch_first", "lengths", "initial_state"),
    MATRIX,
    ids=[
        f"{c}-L{n}-{'bi' if b else 'uni'}-{'bf' if f else 'tm'}-{'len' if ln else 'nolen'}-{'h0' if i else 'noh0'}"
        for c, n, b, f, ln, i in MATRIX
    ],
)
def test_export_matches_torch_at_untraced_shapes(
    tmp_path: Path, cell: str, layers: int, bi: bool, batch_first: bool, lengths: bool, initial_state: bool
) -> None:
    overrides: dict[str, object] = {
        "cell": cell,
        "bidirectional": bi,
        "batch_first": batch_first,
        "export": {"lengths": lengths, "initial_state": initial_state},
    }
    if cell in STACK_CELLS and layers == 3:
        overrides["hidden_sizes"] = [6, 4, 3]  # unequal sizes: per-layer states h0.k
    else:
        overrides["num_layers"] = layers
    cfg = tiny_config(**overrides)
    out = tmp_path / "exp"
    export_model(cfg, out)

    bundle = Bundle.load(out)
    spec = bundle.specs["sequence"]
    model = onnx.load(str(out / "model.onnx"))
    declared = {
        v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in [*model.graph.input, *model.graph.output]
    }
    for t in (*spec.inputs, *spec.outputs):
        assert declared[t.name] == list(t.dims), f"{t.name}: graph declares {declared[t.name]}, spec {t.dims}"

    # B = 3 and B + 1 on the same file; seq 1, a short and a longer one (traced at batch 2, seq 5).
    report = verify(out, VerifyOptions(backends=("ort-cpu",), batches=(3, 4), seqs=(1, 6, 11), modes=("full",)))
    assert report.passed, report.summary()
    full = [c for c in report.cases if c.mode == "full"]
    assert len(full) == 6
    expected = set(spec.output_names)
    assert any(n.startswith("c_n") for n in expected) == (cell in ("lstm", "lstm_cell"))
    for case in full:
        assert set(case.tensors) == expected
        for name, diff in case.tensors.items():
            assert diff.max_abs <= 1e-5, f"{name} at batch {case.batch} seq {case.seq}: {diff.max_abs}"
            assert diff.shape == diff.got_shape
