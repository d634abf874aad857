"""A third, independent implementation: onnx's own NumPy ReferenceEvaluator runs the exported graphs
and must agree with PyTorch, so ORT and PyTorch cannot both be wrong the same way unnoticed.

Limits of onnx 1.23's reference ops, hence not covered here: `sequence_lens` is ignored (lengths
models) and the `Relu` RNN activation is unknown (rnn_relu).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx.reference import ReferenceEvaluator

from seqdeploy.backends import make_runner
from seqdeploy.feeds import make_feeds
from seqdeploy.manifest import Bundle

CASES = [
    (cell, bi, bf)
    for cell in ("lstm", "gru", "rnn_tanh", "lstm_cell", "gru_cell")
    for bi in (False, True)
    for bf in (False, True)
    if not (bi and cell.endswith("_cell"))
]


@pytest.mark.parametrize(("cell", "bi", "batch_first"), CASES)
def test_onnx_reference_evaluator_agrees_with_torch(export_tiny, cell: str, bi: bool, batch_first: bool) -> None:
    d = export_tiny(cell=cell, num_layers=2, bidirectional=bi, batch_first=batch_first)
    b = Bundle.load(d)
    spec = b.specs["sequence"]
    feeds = make_feeds(spec, 3, 7, seed=11)
    got = ReferenceEvaluator(onnx.load(str(d / "model.onnx"))).run(None, feeds)
    with make_runner("torch", b) as ref:
        want = ref.infer(feeds)
    for name, value in zip(spec.output_names, got, strict=True):
        np.testing.assert_allclose(value, want[name], atol=1e-5, rtol=1e-4, err_msg=name)
