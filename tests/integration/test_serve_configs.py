"""`seqdeploy serve` on a package from every shipped config (slow: exports and packages each one).

For each config: export, package, serve, then with tritonclient.http: metadata and config, binary and
JSON requests of two different lengths at once (batched by the server) equal to in-process `predict`, and,
when the package has a stream model, two interleaved sequences fed in chunks equal to one full run each.
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from seqdeploy.package.manifest import read_manifest
from seqdeploy.runtime import Predictor, load
from tests.integration._serve import Server, infer_input

httpclient = pytest.importorskip("tritonclient.http")
pytest.importorskip("starlette")

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted(p.stem for p in (REPO / "configs").glob("*.toml"))
SEQDEPLOY = [sys.executable, "-m", "seqdeploy"]


def _feeds(ref: Predictor, t: int, rng: np.random.Generator, rows: int = 1) -> dict[str, np.ndarray]:
    """A request of ``rows`` rows of length ``t`` for the stateless model (zero states)."""
    feeds: dict[str, np.ndarray] = {}
    for spec in ref.signature.inputs:
        if spec.name == "input":
            if spec.dtype == "int64":
                feeds["input"] = rng.integers(1, 4, size=(rows, t)).astype(np.int64)
            else:
                feeds["input"] = rng.standard_normal((rows, t, int(spec.dims[2]))).astype(np.float32)
        elif spec.name == "lengths":
            feeds["lengths"] = np.full(rows, t, dtype=np.int64)
    feeds.update(ref.signature.zero_state(rows))
    return feeds


def _as_request(feeds: dict[str, np.ndarray], binary: bool) -> list[Any]:
    return [infer_input(k, v.reshape(-1, 1) if k == "lengths" else v, binary) for k, v in feeds.items()]


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS)
def test_serve_every_shipped_config(config: str, tmp_path: Path) -> None:
    export, pkg = tmp_path / "export", tmp_path / "pkg"
    for cmd in (
        [*SEQDEPLOY, "export", str(REPO / "configs" / f"{config}.toml"), "-o", str(export)],
        [*SEQDEPLOY, "package", str(export), "-o", str(pkg), "--name", config],
    ):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, check=False)
        assert r.returncode == 0, r.stderr
    manifest = read_manifest(pkg)
    ref = load(pkg, backend="ort-cpu")
    lo, hi = ref.signature.seq_range
    rng = np.random.default_rng(0)
    with Server(pkg) as s:
        c = httpclient.InferenceServerClient(s.url, concurrency=4, network_timeout=120)
        assert c.is_server_ready()
        for name in manifest.models:
            assert c.is_model_ready(name)
            assert c.get_model_config(name)["name"] == name
        meta = c.get_model_metadata(config)
        assert [i["name"] for i in meta["inputs"]] == [t.name for t in ref.signature.inputs]

        # Two lengths at once: the server may batch them (padding only with `lengths`); each equals predict.
        t1, t2 = max(lo, min(hi, 5)), max(lo, min(hi, 9))
        requests = [_feeds(ref, t1, rng), _feeds(ref, t2, rng, rows=2), _feeds(ref, t2, rng)]

        def call(i: int) -> float:
            feeds = requests[i]
            own = httpclient.InferenceServerClient(s.url, network_timeout=120)  # a client per thread (gevent)
            try:
                r = own.infer(config, _as_request(feeds, binary=i != 1))
            finally:
                own.close()
            want = ref.run(feeds)  # complete graph feeds, exactly what the server ran for this request
            return max(float(np.abs(r.as_numpy(k) - v).max()) for k, v in want.items())

        with ThreadPoolExecutor(3) as pool:
            assert max(pool.map(call, range(3), timeout=300)) <= 1e-5

        stream = (manifest.raw.get("stream") or {}).get("model")
        assert (stream is not None) == manifest.streamable, manifest.raw.get("stream")
        if stream is not None:
            sref = load(pkg, model=stream, backend="ort-cpu")
            seqs = [_feeds(ref, max(lo, min(hi, 7)), rng)["input"] for _ in range(2)]
            finals: list[Any] = [None, None]
            for step, (a, b) in enumerate(((0, 3), (3, 4), (4, 7))):
                for k, ids in enumerate(seqs):
                    part = ids[:, a:b]
                    inputs = [infer_input("input", part)]
                    if sref.signature.spec.has("lengths"):
                        inputs.append(infer_input("lengths", np.array([[part.shape[1]]], dtype=np.int64)))
                    finals[k] = c.infer(
                        stream, inputs, sequence_id=k + 1, sequence_start=step == 0, sequence_end=step == 2
                    )
            for k, ids in enumerate(seqs):
                full = sref.predict(ids)
                for p in sref.signature.state:
                    assert float(np.abs(finals[k].as_numpy(p.output) - full[p.output]).max()) <= 1e-5
        c.close()
