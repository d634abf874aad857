"""One served model: its config, its runtime :class:`~seqdeploy.runtime.Predictor`, and the checks that turn a
parsed request into graph feeds (or a 4xx with Triton's message) before it may join a batch.

Checks run in Triton's order (core ``infer_request.cc`` ``ValidateRequestInputs`` and ``Normalize``): input
count, names, batch dim, ``max_batch_size``, dtype, shape against the config dims, then ``reshape``. After
them, the request alone goes through the runtime's own checks (``Predictor.check``: token ids inside the
vocabulary, ``lengths`` in ``[1, T]``, ``T`` inside the packaged range), so one bad request is refused on its
own and never fails a batch that it would have joined.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from seqdeploy.errors import InputError
from seqdeploy.runtime import Predictor
from seqdeploy.serve._config import IOConfig, ModelSettings
from seqdeploy.serve._protocol import DATATYPES, InferRequest, RequestTensor, invalid
from seqdeploy.spec import BATCH, SEQ

__all__ = ["OutputPlan", "Prepared", "ServedModel"]

VERSION = "1"
JSON_BYTES_PER_ELEMENT = 32
"""Room for one tensor element in a JSON request (``-0.12345678901234568, `` is 22 bytes), for the body limit
that the server derives from the package."""
JSON_OVERHEAD_BYTES = 64 << 10
"""Room for the rest of a JSON request (names, shapes, parameters, id)."""

_IMPLICIT_BATCH_NOTE = (
    "NOTE: Setting a non-zero max_batch_size in the model config requires a batch dimension to be prepended to "
    "each input shape. If you want to specify the full shape including the batch dim in your input dims config, "
    "try setting max_batch_size to zero. See the model configuration docs for more info on max_batch_size."
)


def _dims(d: tuple[int, ...] | list[int]) -> str:
    return "[" + ",".join(str(x) for x in d) + "]"


@dataclass(frozen=True)
class OutputPlan:
    """One output to send: name, protocol datatype, binary or JSON."""

    name: str
    datatype: str
    binary: bool


@dataclass
class Prepared:
    """A request checked and turned into graph feeds (batch-first, contract names).

    Attributes:
        feeds: The request's own graph inputs (for a stream model: without START and states).
        rows: Its batch size.
        seq: Its sequence length ``T`` (``None`` for a model without a sequence axis).
        key: Requests with equal keys may share one execution (different ``T`` share one only when the
            model has ``lengths``, by padding).
        outputs: What to send back.
    """

    feeds: dict[str, np.ndarray]
    rows: int
    seq: int | None
    key: tuple[Any, ...]
    outputs: list[OutputPlan]


class ServedModel:
    """A packaged model behind the HTTP API.

    Attributes:
        name: Model name (the package directory's sub-directory).
        version: ``"1"`` (packages have one version).
        predictor: The runtime model (shared by the scheduler's worker threads; it is thread-safe).
        settings: The config's I/O and scheduler settings.
        config_json: The config as Triton's JSON.
        kind: ``"stateless"`` or ``"stream"``.
    """

    def __init__(
        self, name: str, predictor: Predictor, settings: ModelSettings, config_json: Mapping[str, Any]
    ) -> None:
        self.name = name
        self.version = VERSION
        self.predictor = predictor
        self.settings = settings
        self.config_json = dict(config_json)
        sig = predictor.signature
        self.kind = sig.kind
        self.spec = sig.spec
        self._inputs = {i.name: i for i in settings.inputs}
        self._outputs = {o.name: o for o in settings.outputs}
        self._required = [i.name for i in settings.inputs if not i.optional]
        self.pad_lengths = self.spec.has("lengths")
        # The seq axis of each graph tensor (batch-first graphs: axis 1 when present).
        self.seq_axis = {t.name: t.axis(SEQ) for t in (*self.spec.inputs, *self.spec.outputs)}
        # What a padded step holds: the package's pad id for token ids (masked by `lengths` anyway), else 0.
        self.pad_value = {
            t.name: predictor.pad_id if t.name == "input" and t.dtype == "int64" else 0 for t in self.spec.inputs
        }
        unknown = [i.name for i in settings.inputs if not self.spec.has(i.name)]
        if unknown:
            raise ValueError(f"config inputs {unknown} are not inputs of the graph")
        # The most elements a valid request can hold per input (max_batch_size rows of the longest packaged T):
        # a declared shape beyond it is refused before its data is read.
        sizes = {BATCH: max(1, settings.max_batch_size), SEQ: sig.seq_range[1]}
        self.max_elements = {i.name: math.prod(self.spec.tensor(i.name).shape(sizes)) for i in settings.inputs}

    @property
    def max_request_bytes(self) -> int:
        """The largest valid request to this model as JSON (every input at its :attr:`max_elements`)."""
        return sum(self.max_elements.values()) * JSON_BYTES_PER_ELEMENT + JSON_OVERHEAD_BYTES

    # -- metadata ---------------------------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        """``GET /v2/models/{m}``: name, versions, platform, inputs and outputs with the batch dim as -1."""
        batch = [-1] if self.settings.max_batch_size > 0 else []

        def io(c: IOConfig) -> dict[str, Any]:
            return {"name": c.name, "datatype": c.datatype, "shape": batch + list(c.dims)}

        return {
            "name": self.name,
            "versions": [self.version],
            "platform": self.settings.platform,
            "inputs": [io(i) for i in self.settings.inputs],
            "outputs": [io(o) for o in self.settings.outputs],
        }

    # -- requests ---------------------------------------------------------------------------------------------
    def raw_input(self, req: InferRequest, body: bytes) -> None:
        """Resolve a raw binary request (``Inference-Header-Content-Length: 0``): the body is the only input."""
        if len(self.settings.inputs) != 1:
            raise invalid(
                f"Raw request must only have 1 input (found 1) to be deduced but got {len(self.settings.inputs)} "
                f"inputs in '{self.name}' model configuration"
            )
        cfg = self.settings.inputs[0]
        dtype = DATATYPES.get(cfg.datatype)
        dims = list(cfg.dims)
        if dtype is None:
            raise invalid(f"raw input '{cfg.name}' of datatype {cfg.datatype} is not supported")
        if dims.count(-1) > 1:
            raise invalid(
                f"The shape of the raw input '{cfg.name}' can not be deduced because there are more than one "
                "variable-sized dimension"
            )
        known = math.prod(d for d in dims if d != -1) * dtype.itemsize
        if known == 0 or len(body) % known:
            raise invalid(
                f"raw input '{cfg.name}': {len(body)} bytes do not fill a shape {_dims(dims)} of {cfg.datatype}"
            )
        shape = tuple([1] if self.settings.max_batch_size > 0 else []) + tuple(
            len(body) // known if d == -1 else d for d in dims
        )
        array = np.frombuffer(body, dtype=dtype).reshape(shape).copy()
        req.inputs = [RequestTensor(cfg.name, cfg.datatype, shape, array)]

    def prepare(self, req: InferRequest) -> Prepared:
        """Check a parsed request against the config and the runtime; return its graph feeds.

        Raises:
            ServeError: 400 with Triton's message for a wrong input count, name, batch, dtype or shape, or
                with the runtime's message for values it refuses (ids, lengths, T).
        """
        m = self.name
        seen: dict[str, RequestTensor] = {}
        for t in req.inputs:
            if t.name in seen:
                raise invalid(f"input '{t.name}' already exists in request")
            seen[t.name] = t
        missing = [n for n in self._required if n not in seen]
        count_ok = len(self._required) <= len(seen) <= len(self._inputs)
        if count_ok:
            for name in seen:
                if name not in self._inputs:
                    raise invalid(f"unexpected inference input '{name}' for model '{m}'")
        if not count_ok or missing:
            got = "[" + ",".join(f"'{n}'" for n in seen) + "]"
            want = "[" + ",".join(f"'{n}'" for n in missing) + "]"
            if len(self._required) == len(self._inputs):
                head = f"expected {len(self._inputs)} inputs but got {len(seen)} inputs for model '{m}'"
            else:
                head = (
                    f"expected number of inputs between {len(self._required)} and {len(self._inputs)} but got "
                    f"{len(seen)} inputs for model '{m}'"
                )
            raise invalid(
                f"{head}. Got input(s) {got}, but missing required input(s) {want}. Please provide all required "
                "input(s)."
            )
        batched = self.settings.max_batch_size > 0
        rows = 1
        if batched:
            first: int | None = None
            for t in req.inputs:
                if not t.shape:
                    raise invalid(f"input '{t.name}' has no shape but model requires batch dimension for '{m}'")
                if first is None:
                    first = t.shape[0]
                elif t.shape[0] != first:
                    raise invalid(f"input '{t.name}' batch size does not match other inputs for '{m}'")
            rows = first or 0
            if rows > self.settings.max_batch_size:
                raise invalid(f"inference request batch-size must be <= {self.settings.max_batch_size} for '{m}'")
        feeds: dict[str, np.ndarray] = {}
        for t in req.inputs:
            cfg = self._inputs[t.name]
            if t.datatype != cfg.datatype:
                raise invalid(
                    f"inference input '{t.name}' data-type is '{t.datatype}', but model '{m}' expects '{cfg.datatype}'"
                )
            dims = t.shape[1:] if batched else t.shape
            if len(dims) != len(cfg.dims) or any(c not in (-1, d) for c, d in zip(cfg.dims, dims, strict=False)):
                full = ([-1] if batched else []) + list(cfg.dims)
                raise invalid(
                    f"unexpected shape for input '{t.name}' for model '{m}'. Expected {_dims(full)}, got "
                    f"{_dims(t.shape)}. " + (_IMPLICIT_BATCH_NOTE if batched else "")
                )
            if t.array is None:
                raise invalid(f"input '{t.name}': datatype {t.datatype} is not supported by seqdeploy serve")
            array = t.array
            if cfg.reshape is not None:
                variable = iter(d for c, d in zip(cfg.dims, dims, strict=True) if c == -1)
                target = tuple(next(variable) if r == -1 else r for r in cfg.reshape)
                array = array.reshape(((rows,) if batched else ()) + target)
            feeds[t.name] = array
        seq = None
        key: list[Any] = []
        for name in sorted(feeds):
            shape: list[int | None] = list(feeds[name].shape[1:])
            axis = self.seq_axis.get(name)
            if axis is not None and axis >= 1:
                seq = int(feeds[name].shape[axis])
                if self.pad_lengths:
                    shape[axis - 1] = None
            key.append((name, tuple(shape)))
        self._runtime_check(feeds, rows)
        return Prepared(feeds, rows, seq, tuple(key), self.output_plan(req))

    def _runtime_check(self, feeds: dict[str, np.ndarray], rows: int) -> None:
        """The runtime's value checks on the request alone (states and START filled in as the scheduler will)."""
        full = dict(feeds)
        sig = self.predictor.signature
        for name, value in sig.zero_state(rows).items():
            full.setdefault(name, value)
        if sig.start is not None:
            full[sig.start] = np.ones((rows, 1), dtype=np.int32)
        try:
            self.predictor.check(full)
        except InputError as exc:
            raise invalid(f"inference request to model '{self.name}': {exc}") from None

    def output_plan(self, req: InferRequest) -> list[OutputPlan]:
        """The outputs to send and how (``binary_data`` per listed output; ``binary_data_output`` otherwise).

        Raises:
            ServeError: 400 for an output the model does not have.
        """
        if req.outputs is None:
            return [OutputPlan(o.name, o.datatype, req.binary_output) for o in self.settings.outputs]
        plans = []
        for o in req.outputs:
            cfg = self._outputs.get(o.name)
            if cfg is None:
                raise invalid(f"unexpected inference output '{o.name}' for model '{self.name}'")
            # A listed output without binary_data comes back as JSON (Triton's ParseJsonTritonIO).
            plans.append(OutputPlan(o.name, cfg.datatype, bool(o.binary)))
        return plans

    # -- execution --------------------------------------------------------------------------------------------
    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one execution (a whole batch) on the runtime.

        The fault-injection tests override this in a test-only subclass: production code has no test hooks.
        """
        # Every request was checked alone (prepare -> Predictor.check) and the batch is at most max_batch_size
        # rows padded to the longest T: nothing to validate again.
        return self.predictor.execute(feeds)

    def warmup(self) -> None:
        """One execution at batch 1 and the shortest packaged T, so the first request pays no first-call cost."""
        sig = self.predictor.signature
        lo = max(1, sig.seq_range[0])
        sizes = {BATCH: 1, SEQ: lo}
        feeds: dict[str, np.ndarray] = {}
        for t in self.spec.inputs:
            shape = t.shape(sizes)
            if t.name == "lengths":
                feeds[t.name] = np.full(shape, lo, dtype=t.dtype)
            elif t.name == sig.start:
                feeds[t.name] = np.ones(shape, dtype=t.dtype)
            else:
                feeds[t.name] = np.zeros(shape, dtype=t.dtype)
        self.predictor.run(feeds)
