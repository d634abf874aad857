"""CUDA runners against the CPU reference. Skipped automatically without a CUDA device.

Not run in CI (no GPU); run on a GPU machine with ``python -m pytest -m gpu tests/gpu``.
"""

from __future__ import annotations

import pytest

from seqdeploy.backends import make_runner
from seqdeploy.manifest import Bundle
from seqdeploy.parity.run import VerifyOptions, verify
from seqdeploy.profile.run import ProfileOptions, profile

pytestmark = pytest.mark.gpu

CONFIGS = [
    {"cell": "lstm", "num_layers": 2, "bidirectional": True, "export": {"lengths": True}},
    {"cell": "gru", "num_layers": 2, "batch_first": True},
    {"cell": "lstm_cell", "hidden_sizes": [6, 4, 3], "export": {"step": True}},
]


@pytest.mark.parametrize("overrides", CONFIGS, ids=lambda o: o["cell"])
def test_torch_cuda_matches_the_cpu_reference_in_every_mode(export_tiny, overrides) -> None:
    report = verify(export_tiny(**overrides), VerifyOptions(backends=("torch-cuda",), batches=(1, 3), seqs=(1, 9)))
    assert report.passed, report.summary()


@pytest.mark.parametrize("overrides", CONFIGS, ids=lambda o: o["cell"])
def test_ort_cuda_matches_the_cpu_reference(export_tiny, overrides) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu with CUDAExecutionProvider is not installed")
    # pitfalls #20: ORT's cuDNN LSTM path was wrong on padded batches; padding mode runs here too.
    report = verify(export_tiny(**overrides), VerifyOptions(backends=("ort-cuda",), batches=(1, 3), seqs=(1, 9)))
    assert report.passed, report.summary()


def test_cuda_events_give_device_time(export_tiny) -> None:
    b = Bundle.load(export_tiny(cell="lstm", num_layers=2))
    rep = profile(b, ProfileOptions(backends=("torch-cuda",), batches=(3,), seqs=(16,), iters=5, sgemm_n=512))
    case = next(c for c in rep.cases if c.backend == "torch-cuda")
    assert case.device is not None and case.device.n == 5
    assert 0 < case.device.p50_ms <= case.host.p50_ms * 1.5
    assert rep.env["gpu"]
    with make_runner("torch-cuda", b) as r:
        assert r.last_device_ms is None
