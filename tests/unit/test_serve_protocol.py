"""The serving layer without a server: wire format, compression, config JSON, and the schedulers' rules
(driven with a fake model whose state is a running sum, so every ordering or reset mistake shows)."""

from __future__ import annotations

import gzip
import json
import threading
import time
import zlib
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

pytest.importorskip("tritonclient.grpc")

from seqdeploy.serve._config import config_to_json, parse_config_text, settings_from_config
from seqdeploy.serve._model import OutputPlan, Prepared
from seqdeploy.serve._protocol import (
    ServeError,
    decode_body,
    encode_infer_response,
    parse_infer_request,
    pick_encoding,
)
from seqdeploy.serve._scheduler import DynamicScheduler, Job, Outcome, SequenceScheduler

# -- compression --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "want"),
    [
        (None, "identity"),
        ("gzip", "gzip"),
        ("deflate", "deflate"),
        ("gzip;q=0.5, deflate", "deflate"),
        ("gzip;q=0, deflate;q=0", "identity"),
        ("br", "identity"),
        ("identity;q=1, gzip;q=0.9", "identity"),
        ("gzip;q=abc, deflate;q=0.1", "deflate"),
        ("GZIP", "gzip"),
    ],
)
def test_accept_encoding_like_triton(header: str | None, want: str) -> None:
    assert pick_encoding(header) == want


def test_request_decompression_and_limits() -> None:
    body = b'{"inputs": []}' * 10
    assert decode_body(gzip.compress(body), "gzip", 1 << 20) == body
    assert decode_body(zlib.compress(body), "deflate", 1 << 20) == body  # tritonclient: zlib-wrapped
    raw = zlib.compressobj(wbits=-15)
    assert decode_body(raw.compress(body) + raw.flush(), "deflate", 1 << 20) == body  # raw deflate too
    assert decode_body(body, None, 1) == body  # identity is not limited here (the reader limits it)
    with pytest.raises(ServeError) as e:
        decode_body(body, "br", 1 << 20)
    assert e.value.status == 501
    bomb = gzip.compress(bytes(5 << 20))
    assert len(bomb) < 10_000
    with pytest.raises(ServeError, match="decompressed request body exceeds") as e:
        decode_body(bomb, "gzip", 1 << 20)
    assert e.value.status == 400
    with pytest.raises(ServeError, match="not valid gzip"):
        decode_body(b"nope", "gzip", 1 << 20)
    with pytest.raises(ServeError, match="truncated"):
        decode_body(gzip.compress(body)[:-12], "gzip", 1 << 20)


# -- requests -----------------------------------------------------------------------------------------------


def _binary_request(arrays: dict[str, np.ndarray], extra: bytes = b"", **doc: Any) -> tuple[bytes, int]:
    dtypes = {np.dtype("int64"): "INT64", np.dtype("float32"): "FP32"}
    inputs = [
        {"name": n, "datatype": dtypes[a.dtype], "shape": list(a.shape), "parameters": {"binary_data_size": a.nbytes}}
        for n, a in arrays.items()
    ]
    head = json.dumps({"inputs": inputs, **doc}).encode()
    return head + b"".join(a.tobytes() for a in arrays.values()) + extra, len(head)


def test_binary_inputs_in_order_and_exact_sizes() -> None:
    ids = np.arange(6, dtype=np.int64).reshape(2, 3)
    h = np.linspace(0, 1, 8, dtype=np.float32).reshape(2, 1, 4)
    body, n = _binary_request({"input": ids, "h0": h}, id="x", parameters={"binary_data_output": True, "k": 1})
    req = parse_infer_request(body, n, "m")
    assert req.id == "x" and req.binary_output and req.parameters == {"k": 1}
    assert [t.name for t in req.inputs] == ["input", "h0"]
    assert np.array_equal(req.inputs[0].array, ids) and np.array_equal(req.inputs[1].array, h)
    with pytest.raises(ServeError, match="unexpected additional input data for model 'm'"):
        parse_infer_request(body + b"\0", n, "m")
    with pytest.raises(ServeError, match="unexpected size for input 'h0', expecting 4 additional bytes"):
        parse_infer_request(body[:-4], n, "m")
    with pytest.raises(ServeError, match="must specify valid 'Infer-Header-Content-Length'"):
        parse_infer_request(body[:n], None, "m")
    with pytest.raises(ServeError, match=r"inference header size should be in range \(0, "):
        parse_infer_request(body, len(body) + 1, "m")


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"id": 3, "inputs": []}, "Unable to parse 'id'"),
        ({"inputs": {}}, "Unable to parse 'inputs'"),
        ({}, "the request has no 'inputs' array"),
        ({"inputs": [], "parameters": {"triton_x": 1}}, "parameter keys starting with 'triton_' are reserved"),
        ({"inputs": [], "parameters": {"sequence_start": 1}}, "Unable to parse 'sequence_start'"),
        ({"inputs": [], "parameters": {"sequence_id": -1}}, "Unable to parse 'sequence_id'"),
        ({"inputs": [], "parameters": {"x": [1]}}, "parameter 'x' has invalid type"),
        ({"inputs": [{"name": "a", "datatype": "FP32", "shape": [1]}]}, "But no field is set"),
        (
            {
                "inputs": [
                    {"name": "a", "datatype": "FP32", "shape": [1], "data": [1], "parameters": {"binary_data_size": 4}}
                ]
            },
            "But set 'data' 'binary_data_size'",
        ),
        ({"inputs": [{"name": "a", "datatype": "FP16", "shape": [1], "data": [1.0]}]}, "receiving FP16 data via JSON"),
        ({"inputs": [{"name": "a", "datatype": "FP33", "shape": [1], "data": [1.0]}]}, "invalid datatype for input a"),
        (
            {"inputs": [{"name": "a", "datatype": "INT64", "shape": [2], "data": [1]}]},
            "Shape does not match true shape",
        ),
        ({"inputs": [{"name": "a", "datatype": "INT64", "shape": [1], "data": [1.5]}]}, "INT64 data must be integers"),
        ({"inputs": [{"name": "a", "datatype": "INT64", "shape": [-1], "data": [1]}]}, "Unable to parse 'shape'"),
        ({"inputs": [], "outputs": [{"name": "o", "parameters": {"classification": 2}}]}, "classification extension"),
    ],
)
def test_json_request_errors(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ServeError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        parse_infer_request(json.dumps(doc).encode(), None, "m")
    assert e.value.status in (400, 501)


def test_json_data_nested_or_flat_and_sequence_parameters() -> None:
    doc = {
        "inputs": [
            {"name": "a", "datatype": "INT64", "shape": [2, 2], "data": [[1, 2], [3, 4]]},
            {"name": "b", "datatype": "FP32", "shape": [2, 2], "data": [1, 2.5, 3, 4]},
            {"name": "c", "datatype": "BOOL", "shape": [1], "data": [True]},
        ],
        "parameters": {"sequence_id": "s-1", "sequence_start": True, "sequence_end": False, "timeout": 5},
        "outputs": [{"name": "o"}, {"name": "p", "parameters": {"binary_data": True}}],
    }
    req = parse_infer_request(json.dumps(doc).encode(), None, "m")
    assert req.inputs[0].array.tolist() == [[1, 2], [3, 4]] and req.inputs[0].array.dtype == np.int64
    assert req.inputs[1].array.dtype == np.float32 and req.inputs[1].array[0, 1] == 2.5
    assert req.in_sequence and req.sequence_id == "s-1" and req.sequence_start and not req.sequence_end
    assert req.timeout_us == 5 and [(o.name, o.binary) for o in req.outputs or []] == [("o", None), ("p", True)]
    with pytest.raises(ServeError, match="failed to parse the request JSON buffer"):
        parse_infer_request(b'{"inputs": [}', None, "m")


def test_response_layout() -> None:
    a = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    b = np.array([[7]], dtype=np.int64)
    body, n = encode_infer_response(
        model="m", version="1", request_id="", outputs=[("a", "FP32", a, True), ("b", "INT64", b, False)]
    )
    assert n is not None
    head = json.loads(body[:n])
    assert "id" not in head and head["model_version"] == "1"
    assert head["outputs"][0] == {
        "name": "a",
        "datatype": "FP32",
        "shape": [1, 2, 3],
        "parameters": {"binary_data_size": 24},
    }
    assert head["outputs"][1]["data"] == [7] and "parameters" not in head["outputs"][1]
    assert np.array_equal(np.frombuffer(body[n:], "<f4").reshape(1, 2, 3), a)
    body, n = encode_infer_response(model="m", version="1", request_id="r", outputs=[("b", "INT64", b, False)])
    assert n is None and json.loads(body)["id"] == "r"


# -- config -------------------------------------------------------------------------------------------------

_CONFIG = """
name: "m"
platform: "onnxruntime_onnx"
max_batch_size: 4
input [ { name: "input" data_type: TYPE_INT64 dims: [ -1 ] } ]
output [ { name: "output" data_type: TYPE_FP32 dims: [ -1, 3 ] } ]
dynamic_batching {
  max_queue_delay_microseconds: 250
  preferred_batch_size: [ 2, 4 ]
  priority_levels: 2
  priority_queue_policy { key: 1 value: { default_timeout_microseconds: 9000000000 } }
}
model_warmup [ { name: "w" batch_size: 1
  inputs { key: "input" value: { data_type: TYPE_INT64 dims: [ 3 ] zero_data: true } } } ]
"""


def test_config_json_is_tritons_form() -> None:
    cfg = parse_config_text(_CONFIG)
    doc = config_to_json(cfg)
    db = doc["dynamic_batching"]
    assert db["max_queue_delay_microseconds"] == 250 and db["priority_levels"] == 2  # int64 as numbers
    assert db["priority_queue_policy"]["1"]["default_timeout_microseconds"] == 9_000_000_000
    assert doc["input"][0] == {
        "name": "input",
        "data_type": "TYPE_INT64",
        "format": "FORMAT_NONE",
        "dims": [-1],
        "is_shape_tensor": False,
        "allow_ragged_batch": False,
        "optional": False,
        "is_non_linear_format_io": False,
    }
    assert doc["model_warmup"][0]["inputs"]["input"]["dims"] == [3]
    json.dumps(doc)  # plain JSON all the way down
    s = settings_from_config(cfg)
    assert s.scheduler == "dynamic" and s.queue_delay_us == 250 and s.preferred_batch_sizes == (2, 4)
    assert s.inputs[0].datatype == "INT64" and s.outputs[0].dims == (-1, 3)
    with pytest.raises(ValueError, match="does not parse as Triton's ModelConfig"):
        parse_config_text('name: "m" dimz: [1]')


# -- schedulers ---------------------------------------------------------------------------------------------


class _Sig:
    start = "START"
    state = (SimpleNamespace(input="h0", output="h_n"),)

    def zero_state(self, batch: int) -> dict[str, np.ndarray]:
        return {"h0": np.zeros((batch, 1), np.float64)}


class FakeModel:
    """A stream 'graph' whose state is the running sum of the ids (reset per row by START)."""

    def __init__(
        self, *, max_batch: int = 4, delay_us: int = 2000, candidates: int = 2, idle_us: int = 60_000_000
    ) -> None:
        self.name = "fake"
        self.settings = SimpleNamespace(
            max_batch_size=max_batch,
            preferred_batch_sizes=(),
            queue_delay_us=delay_us,
            max_candidate_sequences=candidates,
            sequence_idle_us=idle_us,
            start="START",
        )
        self.predictor = SimpleNamespace(signature=_Sig())
        self.seq_axis = {"input": 1, "output": 1, "lengths": None, "h_n": None}
        self.pad_value = {"input": 0}
        self.executions: list[int] = []
        self.fail_on: int | None = None
        self.gate = threading.Event()
        self.gate.set()

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.gate.wait(10)
        ids, lengths = feeds["input"], feeds["lengths"]
        if self.fail_on is not None and (ids == self.fail_on).any():
            raise RuntimeError("boom")
        self.executions.append(ids.shape[0])
        mask = np.arange(ids.shape[1])[None, :] < lengths[:, None]
        zeros = np.zeros((ids.shape[0], 1))
        h = np.where(feeds.get("START", zeros) != 0, 0.0, feeds.get("h0", zeros))
        out = h + np.cumsum(ids * mask, axis=1)
        return {"output": out, "h_n": h + (ids * mask).sum(axis=1, keepdims=True)}


def _job(ids: list[int], seq: Any = None, start: bool = False, end: bool = False) -> tuple[Job, list[Outcome]]:
    got: list[Outcome] = []
    arr = np.array([ids], dtype=np.int64)
    prepared = Prepared(
        {"input": arr, "lengths": np.array([len(ids)])},
        1,
        len(ids),
        (("input", (None,)),),
        [OutputPlan("h_n", "FP64", True)],
    )
    return Job(prepared, got.append, seq_id=seq, start=start, end=end), got


def _wait(got: list[Outcome], timeout: float = 10) -> Outcome:
    deadline = time.monotonic() + timeout
    while not got:
        assert time.monotonic() < deadline, "no outcome"
        time.sleep(0.001)
    return got[0]


def test_dynamic_batches_pads_and_isolates_a_failure() -> None:
    m = FakeModel(delay_us=50_000)
    s = DynamicScheduler(m, max_queue=3)  # type: ignore[arg-type]
    jobs = [_job([1, 2, 3]), _job([4]), _job([5, 6])]
    for j, _ in jobs:
        s.submit(j)
    with pytest.raises(ServeError) as e:  # the queue holds 3
        s.submit(_job([1])[0])
    assert e.value.status == 503 and "Exceeds maximum queue size" in e.value.message
    s.start()
    try:
        outs = [_wait(got) for _, got in jobs]
        assert m.executions == [3]  # one execution of 3 rows
        assert [o.outputs["output"].shape for o in outs if o.outputs] == [(1, 3), (1, 1), (1, 2)]
        assert outs[1].outputs is not None and outs[1].outputs["output"].tolist() == [[4]]  # cut back to its own T
        m.fail_on = 9
        jobs = [_job([1, 1]), _job([9]), _job([2])]
        for j, _ in jobs:
            s.submit(j)
        outs = [_wait(got) for _, got in jobs]
        assert outs[1].error is not None and outs[1].error.status == 500 and outs[1].error.reason == "BACKEND"
        assert outs[0].outputs is not None and outs[0].outputs["h_n"].tolist() == [[2]]
        assert outs[2].outputs is not None and outs[2].outputs["h_n"].tolist() == [[2]]
    finally:
        s.stop(10)


def test_sequences_order_reset_bounds_and_reaping() -> None:
    m = FakeModel(delay_us=20_000, candidates=2, idle_us=60_000_000)
    s = SequenceScheduler(m, slot_wait_s=0.3)  # type: ignore[arg-type]
    s.start()
    try:
        with pytest.raises(ServeError, match="must specify the START flag"):
            s.submit(_job([1], seq=1)[0])
        # Two sequences, queued back to back: one execution per step, both rows, in order per sequence.
        m.gate.clear()
        a = [_job([1], 1, start=True), _job([2], 1), _job([3], 1)]
        b = [_job([10], "b", start=True), _job([20], "b")]
        for j, _ in [a[0], b[0], a[1], b[1], a[2]]:
            s.submit(j)
        m.gate.set()
        assert [_wait(g).outputs["h_n"].item() for _, g in a] == [1, 3, 6]  # type: ignore[index]
        assert [_wait(g).outputs["h_n"].item() for _, g in b] == [10, 30]  # type: ignore[index]
        assert m.executions[:3] == [2, 2, 1]
        # START on an active sequence restarts it.
        j, g = _job([5], 1, start=True)
        s.submit(j)
        assert _wait(g).outputs["h_n"].item() == 5  # type: ignore[index]
        # Both slots are taken: a third sequence waits 0.3 s, then 503.
        t0 = time.monotonic()
        j, g = _job([1], 3, start=True)
        s.submit(j)
        out = _wait(g)
        assert out.error is not None and out.error.status == 503 and time.monotonic() - t0 >= 0.25
        # END frees a slot for a waiting sequence.
        j3, g3 = _job([7], 3, start=True)
        s.submit(j3)
        j, g = _job([1], "b", end=True)
        s.submit(j)
        assert _wait(g).outputs["h_n"].item() == 31  # type: ignore[index]
        assert _wait(g3).outputs["h_n"].item() == 7  # type: ignore[index]
        with pytest.raises(ServeError, match="sequence b to model 'fake' must specify the START flag"):
            s.submit(_job([1], "b")[0])
        # A failed request leaves its sequence's state as it was.
        m.fail_on = 99
        j, g = _job([99], 3)
        s.submit(j)
        assert _wait(g).error is not None
        j, g = _job([1], 3)
        s.submit(j)
        assert _wait(g).outputs["h_n"].item() == 8  # type: ignore[index]
        # Idle sequences are freed once idle longer than max_sequence_idle (made 0.3 s now).
        with s._cv:
            s.idle_ns = 300_000_000
            s._cv.notify_all()
        deadline = time.monotonic() + 10
        while s.live and time.monotonic() < deadline:
            time.sleep(0.05)
        assert s.live == 0
        with pytest.raises(ServeError, match="must specify the START flag"):
            s.submit(_job([1], 3)[0])
    finally:
        s.stop(10)


def test_new_sequences_beyond_the_backlog_are_refused_at_once() -> None:
    """A burst of STARTs must not fill the queue that live sequences' requests need (review finding 7)."""
    m = FakeModel(candidates=1)
    s = SequenceScheduler(m, max_backlog=2, slot_wait_s=5)  # type: ignore[arg-type]
    # Not started: every job stays queued, so the slot and backlog counts are exact.
    s.submit(_job([1], 1, start=True)[0])  # takes the only slot
    s.submit(_job([1], 2, start=True)[0])  # backlog 1
    s.submit(_job([1], 3, start=True)[0])  # backlog 2
    t0 = time.monotonic()
    with pytest.raises(ServeError) as e:
        s.submit(_job([1], 4, start=True)[0])
    assert e.value.status == 503 and "2 new sequences already wait for a slot" in e.value.message
    assert time.monotonic() - t0 < 1  # at once, not after slot_wait_s
    s.submit(_job([2], 1)[0])  # the live sequence still gets in
    assert s.gauges()["backlog_sequences"] == 2 and s.queued == 4
    assert SequenceScheduler(m).max_backlog == 1  # default: max_sequences  # type: ignore[arg-type]


def test_an_internal_error_fails_its_batch_only_and_the_loop_goes_on() -> None:
    """A bug in picking or splitting a batch answers those requests with 500; the model keeps serving."""
    m = FakeModel(delay_us=0)
    s = DynamicScheduler(m)  # type: ignore[arg-type]
    calls = {"split": 0}
    armed = {"select": False}
    split, select = s._split, s._select

    def bad_split(batch: Any, outs: Any) -> Any:
        calls["split"] += 1
        if calls["split"] == 1:
            raise KeyError("planted bug in _split")
        return split(batch, outs)

    def bad_select() -> Any:
        if armed["select"] and s._queue:
            armed["select"] = False
            raise ValueError("planted bug in _select")
        return select()

    s._split = bad_split  # type: ignore[method-assign]
    s._select = bad_select  # type: ignore[method-assign]
    s.start()
    try:
        j, g = _job([1, 2])
        s.submit(j)
        out = _wait(g)
        assert out.error is not None and out.error.status == 500 and "planted bug in _split" in out.error.message
        assert s.healthy
        j, g = _job([3])
        s.submit(j)
        assert _wait(g).outputs["h_n"].tolist() == [[3]]  # type: ignore[index]
        armed["select"] = True
        j, g = _job([4])
        s.submit(j)
        out = _wait(g)
        assert out.error is not None and out.error.status == 500 and "planted bug in _select" in out.error.message
        assert s.healthy
        j, g = _job([6])
        s.submit(j)
        assert _wait(g).outputs["h_n"].tolist() == [[6]]  # type: ignore[index]
    finally:
        s.stop(10)
    assert s.healthy  # stopped: not a failure


def test_cancel_withdraws_a_queued_request() -> None:
    m = FakeModel()
    s = SequenceScheduler(m)  # type: ignore[arg-type]
    j, g = _job([1], 7, start=True)
    s.submit(j)
    assert s.cancel(j) and s.queued == 0 and not g
    assert not s.cancel(j)


def test_a_declared_shape_far_beyond_the_model_is_refused_before_its_data() -> None:
    """A huge JSON body must not be turned into Python lists and arrays just to be refused (finding 5)."""
    limits = {"input": 144, "lengths": 6}
    doc = {"inputs": [{"name": "input", "datatype": "INT64", "shape": [1, 10**9], "data": [1, 2, 3]}]}
    with pytest.raises(ServeError, match=r"holds 1000000000 elements, far more than model 'm' accepts \(144"):
        parse_infer_request(json.dumps(doc).encode(), None, "m", max_elements=limits)
    doc = {"inputs": [{"name": "other", "datatype": "INT64", "shape": [10**6], "data": [1]}]}
    with pytest.raises(ServeError, match="far more than model 'm' accepts"):  # unknown names: the largest limit
        parse_infer_request(json.dumps(doc).encode(), None, "m", max_elements=limits)
    # A near miss (batch 7 for 6) is left to the model's own checks, which name the rule it breaks.
    doc = {"inputs": [{"name": "lengths", "datatype": "INT64", "shape": [7, 1], "data": [1] * 7}]}
    assert parse_infer_request(json.dumps(doc).encode(), None, "m", max_elements=limits).inputs[0].shape == (7, 1)


def test_byte_budget_waits_then_refuses() -> None:
    import asyncio

    from seqdeploy.serve._app import ByteBudget

    async def scenario() -> None:
        budget = ByteBudget(100)
        a = await budget.acquire(60, 1)
        waiter = asyncio.ensure_future(budget.acquire(50, 5))
        await asyncio.sleep(0.05)
        assert not waiter.done()  # 60 + 50 > 100: waits for a release
        await budget.release(a)
        assert await waiter == 50 and budget.used == 50
        t0 = time.monotonic()
        with pytest.raises(ServeError) as e:
            await budget.acquire(60, 0.2)
        assert e.value.status == 503 and "--max-inflight-mb" in e.value.message
        assert time.monotonic() - t0 >= 0.15
        await budget.release(50)
        assert await budget.acquire(10**9, 1) == 100  # one request may always use the whole budget

    asyncio.run(scenario())


def test_withdrawing_a_queued_request_keeps_its_sequence_busy() -> None:
    """cancel() (a request's deadline) of a queued request must not free its sequence while another of its
    requests executes: the next one would run on the state from before that execution (or get a false 400)."""
    m = FakeModel(delay_us=0)
    s = SequenceScheduler(m, instances=2)  # type: ignore[arg-type]
    a, ga = _job([1], 7, start=True)
    s.submit(a)
    with s._cv:
        batch = s._take()
    assert batch == [a]
    s._execute(batch)
    with s._cv:
        s._executing -= len(batch)
    assert ga[0].outputs is not None and ga[0].outputs["h_n"].item() == 1
    (b, gb), (c, gc), (d, gd) = _job([2], 7), _job([3], 7), _job([4], 7)
    for j in (b, c, d):
        s.submit(j)
    with s._cv:
        batch = s._take()  # B is claimed: it executes on worker 1 ...
    assert batch == [b]
    assert s.cancel(c) and not gc  # ... while C's caller gives up
    with s._cv:
        assert s._select() == []  # worker 2 must not take D before B's state is in
        assert s._seqs[7].busy and s._seqs[7].pending == 2
    s._execute(batch)
    with s._cv:
        s._executing -= len(batch)
        assert s._select() == [d]
        batch = s._take()
    s._execute(batch)
    assert gb[0].outputs is not None and gb[0].outputs["h_n"].item() == 3
    assert gd[0].outputs is not None and gd[0].outputs["h_n"].item() == 7  # 1 + 2 + 4: on B's state


def test_withdrawing_a_queued_end_leaves_the_sequence_live() -> None:
    """A withdrawn END never ran: the sequence keeps its state (the client may send END again)."""
    m = FakeModel(delay_us=0)
    s = SequenceScheduler(m)  # type: ignore[arg-type]
    a, _ = _job([5], 3, start=True)
    s.submit(a)
    with s._cv:
        batch = s._take()
    s._execute(batch)
    e, ge = _job([1], 3, end=True)
    s.submit(e)
    assert s.cancel(e) and not ge
    assert s.live == 1
    s.start()
    try:
        j, g = _job([1], 3, end=True)
        s.submit(j)
        assert _wait(g).outputs["h_n"].item() == 6  # type: ignore[index]
    finally:
        s.stop(10)
    assert s.live == 0
