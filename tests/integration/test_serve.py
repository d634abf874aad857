"""``seqdeploy serve`` against the real client: tritonclient.http (and raw HTTP where the wire matters).

Every server runs in a subprocess on 127.0.0.1 with an OS-chosen port; every loop is bounded in count and
every wait in time. Results are compared with the in-process runtime on the same package, request by
request: a served reply must equal the request run alone.
"""

from __future__ import annotations

import gzip
import json
import random
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from seqdeploy.runtime import Predictor, load
from tests.integration._packages import BLOCK_PRELUDE, package_for, run_blocked
from tests.integration._serve import HOOKED_SERVER, Server, infer_input, metric, wait_until

httpclient = pytest.importorskip("tritonclient.http")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
from tritonclient.utils import InferenceServerException  # noqa: E402

ATOL = 1e-5  # the package's fp32 tolerance; batching changes the GEMM row count, not the math
MODEL = "gru_tagger"
STREAM = "gru_tagger_stream"
FAULT, SLOW = 13, 12  # token ids the hook server treats as a crashing / slow backend call


@pytest.fixture(scope="module")
def pkg(tmp_path_factory: pytest.TempPathFactory, export_tiny: Callable[..., Path]) -> Path:
    return package_for(MODEL, tmp_path_factory, export_tiny)[1]


@pytest.fixture(scope="module")
def server(pkg: Path) -> Any:
    with Server(pkg, "--max-body-mb", "1") as s:
        yield s


@pytest.fixture(scope="module")
def client(server: Server) -> Any:
    c = httpclient.InferenceServerClient(server.url, concurrency=16, network_timeout=60)
    yield c
    c.close()


@pytest.fixture(scope="module")
def ref(pkg: Path) -> Predictor:
    return load(pkg, backend="ort-cpu")


@pytest.fixture(scope="module")
def ref_stream(pkg: Path) -> Predictor:
    return load(pkg, model=STREAM, backend="ort-cpu")


def stateless_inputs(ids: np.ndarray, lengths: np.ndarray, binary: bool = True) -> list[Any]:
    b = ids.shape[0]
    zeros = np.zeros((b, 1, 4), dtype=np.float32)
    return [
        infer_input("input", ids, binary),
        infer_input("lengths", lengths.reshape(b, 1).astype(np.int64), binary),
        infer_input("h0", zeros, binary),
    ]


def random_request(rng: random.Random, avoid: tuple[int, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    b, t = rng.randint(1, 3), rng.randint(1, 24)
    vocab = [i for i in range(20) if i not in avoid]
    ids = np.array([[rng.choice(vocab) for _ in range(t)] for _ in range(b)], dtype=np.int64)
    lengths = np.array([rng.randint(1, t) for _ in range(b)], dtype=np.int64)
    lengths[0] = t
    return ids, lengths


# -- metadata -------------------------------------------------------------------------------------------------


def test_health_metadata_and_config(server: Server, client: Any, pkg: Path) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(MODEL) and client.is_model_ready(STREAM, "1")
    meta = client.get_server_metadata()
    assert set(meta["extensions"]) == {"binary_tensor_data", "model_configuration", "parameters", "sequence"}
    m = client.get_model_metadata(MODEL)
    assert m["versions"] == ["1"] and m["platform"] == "onnxruntime_onnx"
    assert {i["name"]: i["shape"] for i in m["inputs"]} == {"input": [-1, -1], "lengths": [-1, 1], "h0": [-1, 1, 4]}
    assert {o["name"]: (o["datatype"], o["shape"]) for o in m["outputs"]} == {
        "output": ("FP32", [-1, -1, 3]),
        "h_n": ("FP32", [-1, 1, 4]),
    }
    sm = client.get_model_metadata(STREAM)
    assert [i["name"] for i in sm["inputs"]] == ["input", "lengths"]  # START and h0 are the server's to fill

    cfg = client.get_model_config(STREAM)
    # Triton's JSON: proto field names, enums as names, int64 as numbers, primitive fields printed.
    sb = cfg["sequence_batching"]
    assert isinstance(sb["max_sequence_idle_microseconds"], int) and sb["max_sequence_idle_microseconds"] > 0
    assert isinstance(sb["oldest"]["max_queue_delay_microseconds"], int)
    assert sb["control_input"][0]["control"][0]["kind"] == "CONTROL_SEQUENCE_START"
    assert sb["state"][0]["data_type"] == "TYPE_FP32" and sb["state"][0]["dims"] == [1, 4]
    assert cfg["input"][1]["reshape"] == {"shape": []} and cfg["input"][1]["dims"] == [1]
    assert cfg["max_batch_size"] == 6 and cfg["backend"] == "" and cfg["platform"] == "onnxruntime_onnx"
    assert isinstance(client.get_model_config(MODEL)["dynamic_batching"]["max_queue_delay_microseconds"], int)

    for call in (lambda: client.get_model_metadata("nope"), lambda: client.get_model_metadata(MODEL, "2")):
        with pytest.raises(InferenceServerException) as e:
            call()
        assert e.value.status() == "404" and "Request for unknown model: " in e.value.message()
    status, body, _ = server.get("/v2/models/nope/ready")
    assert status == 404 and json.loads(body)["error"] == "Request for unknown model: 'nope' is not found"


def test_wire_details(server: Server) -> None:
    assert server.get("/v2/health/live")[:2] == (200, b"")
    status, body, headers = server.get("/v2/nothing/here")
    assert (status, json.loads(body)) == (404, {"error": "Not Found"}) and headers[
        "content-type"
    ] == "application/json"
    status, body, _ = server.get(f"/v2/models/{MODEL}/infer")
    assert (status, json.loads(body)) == (405, {"error": "Method Not Allowed"})
    assert server.get(f"/v2/models/{MODEL}/versions/x")[0] == 404  # a version must be digits
    status, body, headers = server.get("/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert f'nv_inference_request_success{{model="{MODEL}",version="1"}}' in body.decode()

    doc = {
        "id": "req-7",
        "inputs": [
            {"name": "input", "datatype": "INT64", "shape": [1, 3], "data": [[3, 4, 5]]},
            {"name": "lengths", "datatype": "INT64", "shape": [1, 1], "data": [3]},
            {"name": "h0", "datatype": "FP32", "shape": [1, 1, 4], "data": [0.0] * 4},
        ],
        "outputs": [{"name": "h_n"}],
    }
    body = json.dumps(doc).encode()
    # No Content-Type, as tritonclient sends it; JSON in, JSON out, id echoed, only the listed output.
    status, out, headers = server.request("POST", f"/v2/models/{MODEL}/infer", body)
    reply = json.loads(out)
    assert status == 200 and headers["content-type"] == "application/json", out
    assert (
        reply["id"] == "req-7" and reply["model_version"] == "1" and [o["name"] for o in reply["outputs"]] == ["h_n"]
    )
    assert reply["outputs"][0]["shape"] == [1, 1, 4] and len(reply["outputs"][0]["data"]) == 4
    # Accept-Encoding q-values: gzip refused (q=0), deflate (zlib-wrapped) chosen.
    status, out, headers = server.request(
        "POST", f"/v2/models/{MODEL}/infer", body, {"Accept-Encoding": "gzip;q=0, deflate;q=0.5"}
    )
    assert status == 200 and headers["content-encoding"] == "deflate"
    assert json.loads(zlib.decompress(out)) == reply
    status, out, _ = server.request("POST", f"/v2/models/{MODEL}/infer", body, {"Content-Encoding": "br"})
    assert status == 501 and "Unsupported compression type" in json.loads(out)["error"]
    # A binary output puts the JSON size in Inference-Header-Content-Length.
    doc["outputs"] = [{"name": "h_n", "parameters": {"binary_data": True}}]
    status, out, headers = server.request("POST", f"/v2/models/{MODEL}/infer", json.dumps(doc).encode())
    n = int(headers["inference-header-content-length"])
    assert status == 200 and headers["content-type"] == "application/octet-stream"
    head = json.loads(out[:n])
    assert head["outputs"][0]["parameters"]["binary_data_size"] == 16 and len(out) == n + 16
    assert np.allclose(np.frombuffer(out[n:], "<f4"), reply["outputs"][0]["data"])
    # A number as id is refused, as Triton does.
    doc["id"] = 7
    status, out, _ = server.request("POST", f"/v2/models/{MODEL}/infer", json.dumps(doc).encode())
    assert status == 400 and "Unable to parse 'id'" in json.loads(out)["error"]


# -- inference ------------------------------------------------------------------------------------------------


def test_infer_binary_json_compressed_and_subsets(client: Any, ref: Predictor) -> None:
    ids = np.array([[3, 4, 5, 6, 7], [8, 9, 2, 0, 0]], dtype=np.int64)
    lengths = np.array([5, 3], dtype=np.int64)
    want = ref.predict(ids, lengths=lengths)
    for binary in (True, False):
        r = client.infer(MODEL, stateless_inputs(ids, lengths, binary), request_id=f"b{binary}")
        assert r.get_response()["id"] == f"b{binary}"
        for name in ("output", "h_n"):
            assert np.array_equal(r.as_numpy(name), want[name]), name
    for req, resp in (("gzip", "deflate"), ("deflate", "gzip"), ("gzip", None)):
        r = client.infer(
            MODEL,
            stateless_inputs(ids, lengths),
            request_compression_algorithm=req,
            response_compression_algorithm=resp,
        )
        assert np.array_equal(r.as_numpy("output"), want["output"])
    # Outputs subset: only h_n, as JSON; then only output, binary.
    r = client.infer(
        MODEL, stateless_inputs(ids, lengths), outputs=[httpclient.InferRequestedOutput("h_n", binary_data=False)]
    )
    assert [o["name"] for o in r.get_response()["outputs"]] == ["h_n"] and r.as_numpy("output") is None
    assert np.allclose(r.as_numpy("h_n"), want["h_n"], atol=0, rtol=0)
    r = client.infer(MODEL, stateless_inputs(ids, lengths), outputs=[httpclient.InferRequestedOutput("output")])
    assert np.array_equal(r.as_numpy("output"), want["output"]) and r.as_numpy("h_n") is None


def test_sequences_match_one_full_run(client: Any, ref_stream: Predictor) -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 20, size=(1, 17)).astype(np.int64)
    b = rng.integers(0, 20, size=(1, 11)).astype(np.int64)
    full_a, full_b = ref_stream.predict(a), ref_stream.predict(b)

    def chunk(ids: np.ndarray, lo: int, hi: int, seq: Any, start: bool, end: bool) -> Any:
        part = ids[:, lo:hi]
        return client.infer(
            STREAM,
            [infer_input("input", part), infer_input("lengths", np.array([[part.shape[1]]], dtype=np.int64))],
            sequence_id=seq,
            sequence_start=start,
            sequence_end=end,
        )

    # Two interleaved sequences (an integer and a string id), chunks of different lengths.
    cuts_a, cuts_b = [0, 1, 5, 6, 12, 17], [0, 3, 4, 11]
    outs_a, outs_b = [], []
    last_a = last_b = None
    for i in range(max(len(cuts_a), len(cuts_b)) - 1):
        if i < len(cuts_a) - 1:
            last_a = chunk(a, cuts_a[i], cuts_a[i + 1], 1001, i == 0, i == len(cuts_a) - 2)
            outs_a.append(last_a.as_numpy("output"))
        if i < len(cuts_b) - 1:
            last_b = chunk(b, cuts_b[i], cuts_b[i + 1], "seq-b", i == 0, i == len(cuts_b) - 2)
            outs_b.append(last_b.as_numpy("output"))
    assert last_a is not None and last_b is not None
    np.testing.assert_allclose(np.concatenate(outs_a, axis=1), full_a["output"], atol=ATOL, rtol=0)
    np.testing.assert_allclose(np.concatenate(outs_b, axis=1), full_b["output"], atol=ATOL, rtol=0)
    np.testing.assert_allclose(last_a.as_numpy("h_n"), full_a["h_n"], atol=ATOL, rtol=0)
    np.testing.assert_allclose(last_b.as_numpy("h_n"), full_b["h_n"], atol=ATOL, rtol=0)

    # The sequences ended: continuing them without START is refused with Triton's message.
    for seq, text in ((1001, "1001"), ("seq-b", "seq-b"), (77, "77")):
        with pytest.raises(InferenceServerException) as e:
            chunk(a, 0, 2, seq, False, False)
        assert e.value.status() == "400"
        assert e.value.message() == (
            f"inference request for sequence {text} to model '{STREAM}' must specify the START flag on the first "
            "request of the sequence"
        )
    # START on an active sequence restarts it from zero state.
    chunk(a, 0, 4, 5, True, False)
    r = chunk(a, 0, 17, 5, True, True)
    np.testing.assert_allclose(r.as_numpy("h_n"), full_a["h_n"], atol=ATOL, rtol=0)
    # No sequence id, and a batch of 2, are refused.
    one = [infer_input("input", a[:, :2]), infer_input("lengths", np.array([[2]], dtype=np.int64))]
    with pytest.raises(InferenceServerException, match="must specify a non-zero or non-empty correlation ID"):
        client.infer(STREAM, one)
    two = [
        infer_input("input", np.vstack([a[:, :2], b[:, :2]])),
        infer_input("lengths", np.array([[2], [2]], dtype=np.int64)),
    ]
    with pytest.raises(InferenceServerException, match="must specify batch-size 1"):
        client.infer(STREAM, two, sequence_id=9, sequence_start=True)


def test_concurrent_clients_each_equal_to_predict(
    server: Server, client: Any, ref: Predictor, ref_stream: Predictor
) -> None:
    """16 threads x 50 stateless requests of random shapes (batched by the server, padded to the longest T)."""
    before = server.get("/metrics")[1].decode()

    def worker(seed: int) -> float:
        rng = random.Random(seed)
        c = httpclient.InferenceServerClient(server.url, network_timeout=60)
        worst = 0.0
        try:
            for _ in range(50):
                ids, lengths = random_request(rng)
                r = c.infer(MODEL, stateless_inputs(ids, lengths))
                want = ref.predict(ids, lengths=lengths)
                for name in ("output", "h_n"):
                    got = r.as_numpy(name)
                    assert got.shape == want[name].shape, (name, got.shape, want[name].shape)
                    worst = max(worst, float(np.abs(got - want[name]).max()))
        finally:
            c.close()
        return worst

    t0 = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        worst = max(pool.map(worker, range(16), timeout=600))
    assert worst <= ATOL, worst
    after = server.get("/metrics")[1].decode()
    done = metric(after, "nv_inference_request_success", MODEL) - metric(before, "nv_inference_request_success", MODEL)
    execs = metric(after, "nv_inference_exec_count", MODEL) - metric(before, "nv_inference_exec_count", MODEL)
    assert done == 800
    assert execs < done, f"no request was batched: {execs} executions for {done} requests"
    assert time.monotonic() - t0 < 600

    # 6 concurrent sequences of 12 one-token requests: every final state equals its full run.
    def sequence(seed: int) -> float:
        rng = np.random.default_rng(seed)
        ids = rng.integers(0, 20, size=(1, 12)).astype(np.int64)
        c = httpclient.InferenceServerClient(server.url, network_timeout=60)
        try:
            for t in range(12):
                r = c.infer(
                    STREAM,
                    [infer_input("input", ids[:, t : t + 1]), infer_input("lengths", np.ones((1, 1), np.int64))],
                    sequence_id=5000 + seed,
                    sequence_start=t == 0,
                    sequence_end=t == 11,
                )
        finally:
            c.close()
        return float(np.abs(r.as_numpy("h_n") - ref_stream.predict(ids)["h_n"]).max())

    with ThreadPoolExecutor(6) as pool:
        assert max(pool.map(sequence, range(6), timeout=300)) <= ATOL


def test_bad_requests_get_4xx_and_the_server_keeps_serving(server: Server, client: Any, ref: Predictor) -> None:
    ids = np.array([[3, 4, 5]], dtype=np.int64)
    good = stateless_inputs(ids, np.array([3]))

    def post(body: bytes, headers: dict[str, str] | None = None) -> tuple[int, str]:
        status, out, _ = server.request("POST", f"/v2/models/{MODEL}/infer", body, headers)
        return status, json.loads(out)["error"]

    assert post(b'{"inputs": [') == (400, "failed to parse the request JSON buffer: Expecting value at 12")
    status, msg = post(b"[1, 2]")
    assert status == 400 and "expected a JSON object" in msg
    status, msg = post(b'{"inputs": [{"name": "input", "datatype": "INT64", "shape": [1, 2]}]}')
    assert status == 400 and "Input must set only one of the following fields" in msg
    # A raw binary body (Inference-Header-Content-Length: 0) names no input: only a one-input model takes it.
    status, msg = post(ids.tobytes(), {"Inference-Header-Content-Length": "0"})
    assert status == 400 and "Raw request must only have 1 input" in msg and "3 inputs" in msg

    cases: list[tuple[list[Any], str]] = [
        (
            [infer_input("input", ids.astype(np.int32)), *good[1:]],
            f"inference input 'input' data-type is 'INT32', but model '{MODEL}' expects 'INT64'",
        ),
        (
            [infer_input("input", ids[..., None]), *good[1:]],
            f"unexpected shape for input 'input' for model '{MODEL}'. Expected [-1,-1], got [1,3,1]. NOTE: ",
        ),
        (
            [*good[:2], infer_input("h1", np.zeros((1, 1, 4), np.float32))],
            f"unexpected inference input 'h1' for model '{MODEL}'",
        ),
        (
            good[:2],
            f"expected 3 inputs but got 2 inputs for model '{MODEL}'. Got input(s) ['input','lengths'], but missing "
            "required input(s) ['h0']. Please provide all required input(s).",
        ),
        (
            stateless_inputs(np.array([[3, 20, 5]], dtype=np.int64), np.array([3])),
            "[0, 19], but 1 value(s) are outside",
        ),
        (stateless_inputs(ids, np.array([0])), "lengths"),
        (stateless_inputs(np.zeros((1, 25), np.int64), np.array([25])), "outside the packaged range [1, 24]"),
        (
            stateless_inputs(np.zeros((7, 2), np.int64), np.full(7, 2)),
            f"inference request batch-size must be <= 6 for '{MODEL}'",
        ),
        (
            [good[0], infer_input("lengths", np.array([[3], [3]], np.int64)), good[2]],
            f"input 'lengths' batch size does not match other inputs for '{MODEL}'",
        ),
    ]
    for inputs, expected in cases:
        with pytest.raises(InferenceServerException) as e:
            client.infer(MODEL, inputs)
        assert e.value.status() == "400", (expected, e.value)
        assert expected in e.value.message(), (expected, e.value.message())
    with pytest.raises(InferenceServerException) as e:
        client.infer(MODEL, good, outputs=[httpclient.InferRequestedOutput("logits")])
    assert (
        e.value.status() == "400" and f"unexpected inference output 'logits' for model '{MODEL}'" in e.value.message()
    )
    # Over the 1 MiB body limit (the server runs with --max-body-mb 1), plain and as a gzip bomb.
    big = np.zeros((6, 24), np.int64)
    big_inputs = [*stateless_inputs(big, np.full(6, 24))[:2], infer_input("h0", np.zeros((6, 1, 4), np.float32))]
    pad = {"name": "pad", "datatype": "UINT8", "shape": [2 << 20], "parameters": {"binary_data_size": 2 << 20}}
    doc = {"inputs": [pad]}
    head = json.dumps(doc).encode()
    status, msg = post(head + bytes(2 << 20), {"Inference-Header-Content-Length": str(len(head))})
    assert status == 400 and "exceeds the maximum allowed size of 1048576 bytes" in msg and "--max-body-mb" in msg
    status, msg = post(
        gzip.compress(head + bytes(2 << 20)),
        {"Inference-Header-Content-Length": str(len(head)), "Content-Encoding": "gzip"},
    )
    assert status == 400 and "decompressed request body exceeds" in msg
    # Still serving, and still right.
    r = client.infer(MODEL, big_inputs)
    assert np.array_equal(r.as_numpy("output"), ref.predict(big, lengths=np.full(6, 24))["output"])
    text = server.get("/metrics")[1].decode()
    assert metric(text, "nv_inference_request_failure", MODEL, "OTHER") >= len(cases) + 3


# -- more servers ---------------------------------------------------------------------------------------------


def test_bearer_token(pkg: Path, tmp_path: Path, ref: Predictor) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret-token-0123456789\n")
    with Server(pkg, "--token-file", str(token), "--model", MODEL) as s:
        assert s.get("/v2/health/live")[0] == 200 and s.get("/v2/health/ready")[0] == 200
        status, body, headers = s.get(f"/v2/models/{MODEL}")
        assert status == 401 and "missing bearer token" in json.loads(body)["error"]
        assert headers["www-authenticate"].startswith("Bearer")
        assert s.get(f"/v2/models/{MODEL}", {"Authorization": "Bearer wrong"})[0] == 401
        assert s.get("/metrics", {"Authorization": "Basic s3cret-token-0123456789"})[0] == 401
        c = httpclient.InferenceServerClient(s.url)
        with pytest.raises(InferenceServerException) as e:
            c.get_model_metadata(MODEL)
        assert e.value.status() == "401"
        auth = {"Authorization": "Bearer s3cret-token-0123456789"}
        assert c.get_model_metadata(MODEL, headers=auth)["name"] == MODEL
        ids = np.array([[1, 2, 3]], dtype=np.int64)
        r = c.infer(MODEL, stateless_inputs(ids, np.array([3])), headers=auth)
        assert np.array_equal(r.as_numpy("output"), ref.predict(ids)["output"])
        c.close()
        status, body, _ = s.get(f"/v2/models/{STREAM}", auth)
        assert status == 404  # --model served only the stateless model


def test_backend_fault_sigterm_and_sequence_bounds(pkg: Path, ref: Predictor, ref_stream: Predictor) -> None:
    """One server with a test-only model subclass (a crashing and a slow token), 2 sequence slots, a short idle
    time."""
    hooked = HOOKED_SERVER.format(fault=FAULT, slow=SLOW, slow_s=2)
    s = Server(pkg, "--max-sequences", "2", "--sequence-wait-s", "0.5", "--sequence-idle-s", "1.5", code=hooked)
    try:
        c = httpclient.InferenceServerClient(s.url, concurrency=8, network_timeout=60)
        rng = np.random.default_rng(1)

        def step(seq: int, ids: np.ndarray, start: bool = False, end: bool = False) -> Any:
            return c.infer(
                STREAM,
                [infer_input("input", ids), infer_input("lengths", np.array([[ids.shape[1]]], np.int64))],
                sequence_id=seq,
                sequence_start=start,
                sequence_end=end,
            )

        # A sequence in progress on the server; it must survive everything below.
        seq_ids = rng.integers(0, 12, size=(1, 9)).astype(np.int64)
        step(1, seq_ids[:, :4], start=True)

        # A poisoned request among good ones that are batched with it: 500 for it alone.
        goods = [rng.integers(0, 12, size=(1, int(t))).astype(np.int64) for t in (3, 5, 7, 2, 6)]
        bad = np.array([[2, FAULT, 4]], dtype=np.int64)
        jobs = [c.async_infer(MODEL, stateless_inputs(g, np.array([g.shape[1]]))) for g in goods[:2]]
        jobs.append(c.async_infer(MODEL, stateless_inputs(bad, np.array([3]))))
        jobs += [c.async_infer(MODEL, stateless_inputs(g, np.array([g.shape[1]]))) for g in goods[2:]]
        results: list[Any] = []
        for j in jobs:
            try:
                results.append(j.get_result(timeout=60))
            except InferenceServerException as e:
                results.append(e)
        err = results[2]
        assert isinstance(err, InferenceServerException) and err.status() == "500", err
        assert "injected backend fault" in err.message() and f"model '{MODEL}'" in err.message()
        for g, r in zip(goods, results[:2] + results[3:], strict=True):
            assert not isinstance(r, Exception), r
            np.testing.assert_allclose(r.as_numpy("output"), ref.predict(g)["output"], atol=ATOL, rtol=0)
        # A poisoned sequence request: 500, its sequence's state untouched (the next chunk continues it).
        with pytest.raises(InferenceServerException) as e:
            step(1, np.array([[FAULT, 1]], np.int64))
        assert e.value.status() == "500"
        step(1, seq_ids[:, 4:6])
        r = step(1, seq_ids[:, 6:], end=True)
        np.testing.assert_allclose(r.as_numpy("h_n"), ref_stream.predict(seq_ids)["h_n"], atol=ATOL, rtol=0)
        text = s.get("/metrics")[1].decode()
        assert metric(text, "nv_inference_request_failure", MODEL, "BACKEND") == 1
        assert metric(text, "nv_inference_request_failure", STREAM, "BACKEND") == 1

        # Bounded live sequences: 2 slots; a third START waits 0.5 s, then 503.
        step(10, seq_ids[:, :2], start=True)
        step(11, seq_ids[:, :2], start=True)
        t0 = time.monotonic()
        with pytest.raises(InferenceServerException) as e:
            step(12, seq_ids[:, :2], start=True)
        assert e.value.status() == "503" and "--max-sequences" in e.value.message()
        assert 0.4 < time.monotonic() - t0 < 10
        # A slot freed by an END lets the next sequence in.
        step(10, seq_ids[:, 2:3], end=True)
        step(12, seq_ids[:, :2], start=True)
        # Idle sequences are freed after 1.5 s without a request; then they are unknown.
        wait_until(
            lambda: metric(s.get("/metrics")[1].decode(), "seqdeploy_live_sequences", STREAM) == 0, 10, "reaping"
        )
        with pytest.raises(InferenceServerException, match="must specify the START flag"):
            step(11, seq_ids[:, 2:3])

        # SIGTERM with a request in flight (the slow token holds it 2 s): it completes, then exit 0.
        slow = np.array([[1, SLOW, 3]], dtype=np.int64)
        box: dict[str, Any] = {}

        def call() -> None:
            try:
                box["result"] = httpclient.InferenceServerClient(s.url, network_timeout=60).infer(
                    MODEL, stateless_inputs(slow, np.array([3]))
                )
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                box["error"] = exc

        t = threading.Thread(target=call)
        t.start()
        wait_until(lambda: metric(s.get("/metrics")[1].decode(), "seqdeploy_executing", MODEL) == 1, 20, "in flight")
        code = s.terminate(timeout=60)
        t.join(60)
        assert code == 0, s.log
        assert "error" not in box, box.get("error")
        np.testing.assert_allclose(box["result"].as_numpy("output"), ref.predict(slow)["output"], atol=ATOL, rtol=0)
        assert "Traceback" not in s.log, s.log
        c.close()
    finally:
        s.kill()


def test_model_without_lengths_merges_equal_t_only(
    tmp_path_factory: pytest.TempPathFactory, export_tiny: Callable[..., Path]
) -> None:
    """Float features, no lengths, no states: concurrent requests of mixed T each equal their own run."""
    _, nostate = package_for("nostate", tmp_path_factory, export_tiny)
    ref = load(nostate, backend="ort-cpu")
    with Server(nostate) as s:
        meta = httpclient.InferenceServerClient(s.url).get_model_metadata("nostate")
        assert [i["name"] for i in meta["inputs"]] == ["input"]

        def worker(seed: int) -> float:
            rng = np.random.default_rng(seed)
            c = httpclient.InferenceServerClient(s.url, network_timeout=60)
            worst = 0.0
            try:
                for _ in range(15):
                    x = rng.standard_normal((int(rng.integers(1, 4)), int(rng.integers(2, 5)), 5)).astype(np.float32)
                    r = c.infer("nostate", [infer_input("input", x)])
                    # Every output: a unidirectional RNN padded at the end keeps `output` on the valid steps
                    # but not h_n, so comparing `output` alone would not see a merge across different T.
                    for name, want in ref.predict(x).items():
                        worst = max(worst, float(np.abs(r.as_numpy(name) - want).max()))
            finally:
                c.close()
            return worst

        with ThreadPoolExecutor(8) as pool:
            assert max(pool.map(worker, range(8), timeout=300)) <= ATOL

        # A raw binary request (Inference-Header-Content-Length: 0): the body is the single input, its shape
        # [1, T, 5] deduced from the config, every output binary.
        x = np.random.default_rng(5).standard_normal((1, 4, 5)).astype(np.float32)
        status, body, headers = s.request(
            "POST", "/v2/models/nostate/infer", x.tobytes(), {"Inference-Header-Content-Length": "0"}
        )
        assert status == 200, body
        size = int(headers["inference-header-content-length"])
        doc = json.loads(body[:size])
        want = ref.predict(x)
        offset = size
        for out in doc["outputs"]:
            n = out["parameters"]["binary_data_size"]
            got = np.frombuffer(body[offset : offset + n], dtype=np.float32).reshape(out["shape"])
            offset += n
            np.testing.assert_array_equal(got, want[out["name"]])
        assert offset == len(body) and {o["name"] for o in doc["outputs"]} == set(want)

        # No --max-body-mb: the limit is derived from the package (its largest valid request as JSON, >= 1 MiB),
        # so a multi-MB body is refused at once instead of being buffered and parsed.
        status, body, _ = s.request("POST", "/v2/models/nostate/infer", b"[" + b"1," * (3 << 20) + b"1]")
        assert status == 400, body
        assert "exceeds the maximum allowed size of 1048576 bytes" in json.loads(body)["error"]


def test_int8_requests_are_never_merged(
    tmp_path_factory: pytest.TempPathFactory, export_tiny: Callable[..., Path]
) -> None:
    """int8 graphs quantize with one scale per execution (padding rows included): a merged request's answer
    would depend on its batch companions. Queued before the workers start, the requests must still run alone."""
    from seqdeploy.serve import ServeOptions, load_models
    from seqdeploy.serve._metrics import Metrics
    from seqdeploy.serve._protocol import InferRequest, RequestTensor
    from seqdeploy.serve._scheduler import Job, Outcome

    _, out = package_for("lstm_text", tmp_path_factory, export_tiny)
    name = "lstm_text_int8"
    metrics = Metrics([(name, "1")])
    model, sched = load_models(out, ServeOptions(out, models=(name,), queue_delay_us=200_000), metrics)[name]
    checks: list[int] = []
    check = model.predictor.check
    model.predictor.check = lambda feeds: checks.append(1) or check(feeds)  # type: ignore[method-assign]
    rng = np.random.default_rng(3)
    sent: list[tuple[np.ndarray, np.ndarray, list[Outcome]]] = []
    for t in (6, 2, 4, 5):
        ids = rng.integers(0, 16, size=(1, t)).astype(np.int64)
        lengths = np.array([[t]], dtype=np.int64)
        zeros = np.zeros((1, 2, 4), np.float32)
        req = InferRequest(
            inputs=[
                RequestTensor("input", "INT64", ids.shape, ids),
                RequestTensor("lengths", "INT64", (1, 1), lengths),
                RequestTensor("h0", "FP32", zeros.shape, zeros),
                RequestTensor("c0", "FP32", zeros.shape, zeros),
            ]
        )
        box: list[Outcome] = []
        sched.submit(Job(model.prepare(req), box.append))
        sent.append((ids, lengths, box))
    sched.start()
    try:
        wait_until(lambda: all(box for *_, box in sent), 60, "int8 outcomes")
        assert len(checks) == len(sent)  # each request checked once, alone; executions are not re-validated
        for ids, lengths, box in sent:
            outputs = box[0].outputs
            assert outputs is not None, box[0].error
            alone = model.predictor.predict(ids, lengths=lengths.reshape(-1))
            for n, arr in alone.items():
                np.testing.assert_array_equal(outputs[n], arr, err_msg=n)
        assert metrics.value("nv_inference_exec_count", name) == len(sent)
    finally:
        sched.stop(10)


def test_startup_verifies_the_package_once(
    tmp_path_factory: pytest.TempPathFactory, export_tiny: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One sha256 pass and one read lock for every model's config and graph (finding 13)."""
    import seqdeploy.runtime._predictor as predictor_module
    from seqdeploy.serve import ServeOptions, load_models

    _, out = package_for("lstm_text", tmp_path_factory, export_tiny)
    calls: list[tuple[str, ...]] = []
    verify = predictor_module.verify_files

    def counting(manifest: Any, *, keep: Any = (), staging: bool = False) -> Any:
        calls.append(tuple(sorted(keep)))
        return verify(manifest, keep=keep, staging=staging)

    monkeypatch.setattr(predictor_module, "verify_files", counting)
    models = load_models(out, ServeOptions(out))
    assert sorted(models) == ["lstm_text", "lstm_text_int8", "lstm_text_stream"]
    assert len(calls) == 1, calls
    for name in models:
        assert f"{name}/config.pbtxt" in calls[0] and f"{name}/1/model.onnx" in calls[0]


def test_serving_imports_no_torch(pkg: Path, tmp_path: Path) -> None:
    """The whole server (CLI, load, schedulers, HTTP) with torch and onnx blocked; SIGTERM -> exit 0."""
    code = (
        'BLOCKED = {"torch", "onnx", "onnxscript"}\n'
        + BLOCK_PRELUDE
        + """
from seqdeploy.cli import main
sys.argv = ["seqdeploy"] + sys.argv[1:]
main()
"""
    )
    with Server(pkg, "--model", MODEL, code=code) as s:
        body = json.dumps(
            {
                "inputs": [
                    {"name": "input", "datatype": "INT64", "shape": [1, 2], "data": [1, 2]},
                    {"name": "lengths", "datatype": "INT64", "shape": [1, 1], "data": [2]},
                    {"name": "h0", "datatype": "FP32", "shape": [1, 1, 4], "data": [0, 0, 0, 0]},
                ]
            }
        ).encode()
        assert s.request("POST", f"/v2/models/{MODEL}/infer", body)[0] == 200
        assert s.terminate() == 0, s.log
        assert "blocked by the test" not in s.log


def test_missing_serve_extra_exits_3(pkg: Path, tmp_path: Path) -> None:
    r = run_blocked(
        "import sys\nfrom seqdeploy.cli import main\nsys.argv = ['seqdeploy', 'serve', "
        + repr(str(pkg))
        + "]\nmain()",
        ("starlette", "uvicorn"),
        cwd=tmp_path,
    )
    assert r.returncode == 3, r.stderr
    assert "pip install 'seqdeploy[serve]'" in r.stderr
