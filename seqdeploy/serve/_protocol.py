"""Triton's HTTP/REST inference protocol (KServe v2 + the binary tensor, sequence and parameters extensions).

Pure functions over bytes and numpy arrays, no web framework: :func:`decode_body` undoes the request's
``Content-Encoding``, :func:`parse_infer_request` reads the JSON header and the binary tensors behind it,
:func:`encode_infer_response` writes the reply (JSON or binary outputs) and :func:`compress_body` compresses it
as ``Accept-Encoding`` asks. Errors are :class:`ServeError` carrying the HTTP status and Triton's message.

Wire facts (``shared/docs/serving-notes.md``, server ``src/http_server.cc``): tritonclient sends no
``Content-Type``; ``Inference-Header-Content-Length`` gives the JSON size when binary data follows (0 means the
whole body is one raw input); binary tensors follow in ``inputs`` order; error bodies are ``{"error": msg}``
with the status of Triton's ``HttpCodeFromError`` (>= 2.42): 400 invalid argument, 404 not found, 500
internal, 501 unsupported, 503 unavailable.
"""

from __future__ import annotations

import gzip
import json
import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "DATATYPES",
    "HEADER_LENGTH",
    "InferRequest",
    "RequestTensor",
    "RequestedOutput",
    "ServeError",
    "compress_body",
    "decode_body",
    "encode_infer_response",
    "error_body",
    "parse_infer_request",
    "pick_encoding",
]

HEADER_LENGTH = "inference-header-content-length"
"""The binary extension's header (lower case: ASGI header names are lower case)."""

DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
"""Protocol datatype -> little-endian numpy dtype. ``BYTES`` and ``BF16`` are known but have no numpy form here:
no packaged graph takes them, so a request using them is refused by the dtype check."""

_KNOWN = {*DATATYPES, "BYTES", "BF16"}
_SLACK_ELEMENTS = 4096


class ServeError(Exception):
    """A request that fails, with its HTTP status and Triton's message (sent as ``{"error": message}``).

    Attributes:
        status: HTTP status code (400, 404, 500, 501, 503, ...).
        message: What went wrong and what was expected.
        reason: The failure reason for ``nv_inference_request_failure`` (``REJECTED``, ``BACKEND``, ``OTHER``).
    """

    def __init__(self, status: int, message: str, reason: str = "OTHER") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason


def invalid(message: str) -> ServeError:
    """Triton's INVALID_ARG: HTTP 400."""
    return ServeError(400, message)


def error_body(message: str) -> bytes:
    """The JSON error body Triton sends: ``{"error": "<message>"}``."""
    return json.dumps({"error": message}).encode()


# -- compression --------------------------------------------------------------------------------------------


def decode_body(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo ``Content-Encoding`` (``gzip`` or ``deflate``), never producing more than ``limit`` bytes.

    ``deflate`` is zlib-wrapped (what tritonclient's ``zlib.compress`` and Triton send); a raw deflate
    stream is accepted too, since some HTTP clients send that.

    Raises:
        ServeError: 501 for an unknown encoding (as Triton), 400 for a corrupt body or one that expands
            past ``limit`` (a compression bomb is refused before it is held in memory).
    """
    enc = (encoding or "").strip().lower()
    if enc in ("", "identity"):
        return body
    if enc == "gzip":
        wbits = 16 + zlib.MAX_WBITS
    elif enc == "deflate":
        wbits = (
            zlib.MAX_WBITS if body[:1] and (body[0] & 0x0F) == 8 and int.from_bytes(body[:2], "big") % 31 == 0 else -15
        )
    else:
        raise ServeError(
            501, f"Unsupported compression type '{encoding}': send gzip, deflate or identity (Content-Encoding)"
        )
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as exc:
        raise invalid(f"the request body is not valid {enc} data ({exc})") from None
    if len(out) > limit or d.unconsumed_tail:
        raise invalid(
            f"the decompressed request body exceeds the maximum allowed size of {limit} bytes "
            "(seqdeploy serve --max-body-mb)"
        )
    if not d.eof:
        raise invalid(f"the request body is truncated {enc} data")
    return out


def pick_encoding(accept: str | None) -> str:
    """The response encoding for an ``Accept-Encoding`` header: ``gzip``, ``deflate`` or ``identity``.

    As Triton's ``CompressionTypeUsed``: the supported coding with the highest ``q`` wins (the first one on a
    tie); ``q=0`` never wins; malformed entries are skipped.
    """
    if not accept:
        return "identity"
    best, weight = "identity", 0.0
    for entry in accept.split(","):
        name, _, params = entry.strip().partition(";")
        q = 1.0
        for p in params.split(";"):
            key, _, value = p.strip().partition("=")
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = -1.0
        if not math.isfinite(q):
            continue
        name = name.strip().lower()
        if name in ("identity", "gzip", "deflate") and q > weight:
            best, weight = name, q
    return best


def compress_body(body: bytes, encoding: str) -> bytes:
    """Compress a reply for ``Content-Encoding: encoding`` (``deflate`` is zlib-wrapped, as Triton sends it)."""
    if encoding == "gzip":
        return gzip.compress(body, compresslevel=6, mtime=0)
    if encoding == "deflate":
        return zlib.compress(body, 6)
    return body


# -- requests -----------------------------------------------------------------------------------------------


@dataclass
class RequestTensor:
    """One request input as sent: ``array`` is ``None`` for datatypes that have no numpy form (BYTES, BF16)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    array: np.ndarray | None


@dataclass(frozen=True)
class RequestedOutput:
    """An entry of the request's ``outputs``: ``binary`` is the ``binary_data`` parameter (``None``: not given)."""

    name: str
    binary: bool | None


@dataclass
class InferRequest:
    """A parsed inference request.

    Attributes:
        id: The request id (``""`` when none was sent); echoed in the reply when non-empty.
        inputs: The inputs in request order.
        outputs: The requested outputs, or ``None`` (every output).
        binary_output: ``binary_data_output``: the default for outputs not listed.
        sequence_id: ``sequence_id`` (uint64 or string; ``0`` / ``""`` = none).
        sequence_start: ``sequence_start`` flag.
        sequence_end: ``sequence_end`` flag.
        timeout_us: ``timeout`` parameter in microseconds (0 = none).
        parameters: The other (custom) parameters.
    """

    id: str = ""
    inputs: list[RequestTensor] = field(default_factory=list)
    outputs: list[RequestedOutput] | None = None
    binary_output: bool = False
    sequence_id: int | str = 0
    sequence_start: bool = False
    sequence_end: bool = False
    timeout_us: int = 0
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def in_sequence(self) -> bool:
        """Whether the request names a sequence (a non-zero id or a non-empty string id)."""
        return self.sequence_id not in (0, "")


def _is_uint(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**64


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


def _parameters(req: InferRequest, params: Any) -> None:
    if not isinstance(params, dict):
        raise invalid(f"Unable to parse 'parameters': expected a JSON object, got {_json_type(params)}")
    for key, value in params.items():
        if key == "sequence_id":
            if not (_is_uint(value) or isinstance(value, str)):
                raise invalid(
                    f"Unable to parse 'sequence_id': expected an unsigned integer or a string, got {value!r}"
                )
            if isinstance(value, str) and len(value) > 128:
                raise ServeError(501, "string correlation ID cannot be longer than 128 characters")
            req.sequence_id = value
        elif key in ("sequence_start", "sequence_end", "binary_data_output"):
            if not isinstance(value, bool):
                raise invalid(f"Unable to parse '{key}': expected a boolean, got {value!r}")
            if key == "sequence_start":
                req.sequence_start = value
            elif key == "sequence_end":
                req.sequence_end = value
            else:
                req.binary_output = value
        elif key in ("priority", "timeout"):
            if not _is_uint(value):
                raise invalid(f"Unable to parse '{key}': expected an unsigned integer, got {value!r}")
            if key == "timeout":
                req.timeout_us = int(value)
        elif key.startswith("triton_"):
            raise invalid(
                "parameter keys starting with 'triton_' are reserved for Triton usage and should not be specified."
            )
        elif isinstance(value, (str, int, float, bool)):
            req.parameters[key] = value
        else:
            raise invalid(f"parameter '{key}' has invalid type. It should be either 'int', 'bool', or 'string'.")


def _flatten(data: Any, name: str) -> list[Any]:
    """Row-major elements of a (possibly nested) JSON array, iteratively (no recursion limit to hit)."""
    out: list[Any] = []
    stack: list[Any] = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                if len(stack) > 64:
                    raise invalid(f"Unable to parse 'data' of input '{name}': nested deeper than 64 levels")
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def _from_json(name: str, datatype: str, shape: tuple[int, ...], data: Any) -> np.ndarray | None:
    if datatype in ("FP16", "BF16"):
        raise invalid(
            f"receiving {datatype} data via JSON is not supported. Please use the binary data format for input {name}"
        )
    if datatype not in DATATYPES:
        return None  # BYTES: refused by the model's dtype check, with the expected type named
    if not isinstance(data, list):
        data = [data]
    flat = _flatten(data, name)
    count = math.prod(shape)
    if len(flat) != count:
        raise invalid(
            f"Unable to parse 'data': Shape does not match true shape of 'data' field for input '{name}': shape "
            f"{list(shape)} holds {count} elements, 'data' has {len(flat)}"
        )
    dtype = DATATYPES[datatype]
    kind = dtype.kind
    for v in flat:
        ok = (
            isinstance(v, bool)
            if kind == "b"
            else (isinstance(v, int) and not isinstance(v, bool))
            if kind in "iu"
            else (isinstance(v, (int, float)) and not isinstance(v, bool))
        )
        if not ok:
            want = {"b": "booleans", "i": "integers", "u": "unsigned integers"}.get(kind, "numbers")
            raise invalid(f"Unable to parse 'data' of input '{name}': {datatype} data must be {want}, got {v!r}")
    try:
        arr = np.array(flat, dtype=dtype)
    except OverflowError:
        raise invalid(f"Unable to parse 'data' of input '{name}': a value does not fit {datatype}") from None
    return arr.reshape(shape)


def parse_infer_request(
    body: bytes, header_length: int | None, model: str, *, max_elements: Mapping[str, int] | None = None
) -> InferRequest:
    """Parse an inference request body (already decompressed).

    Args:
        body: The request body.
        header_length: ``Inference-Header-Content-Length`` (``None`` when absent: the whole body is JSON).
            ``0`` (a raw binary body, the model's single input) has no JSON to parse: callers resolve it
            against the model (``ServedModel.raw_input``) instead of calling this.
        model: The model name, for messages.
        max_elements: The most elements the model accepts per input (an unknown name: the largest); a
            declared ``shape`` beyond it is refused before its ``data`` is flattened and converted to an array
            (a huge JSON body must not take seconds of CPU to be refused). The JSON itself is parsed first
            (``json.loads``): callers parse bodies over ``INLINE_PARSE_BYTES`` in a worker thread.

    Raises:
        ServeError: 400 with Triton's message for malformed JSON, a bad field, binary sizes that do not add
            up, FP16 in JSON, ...; 501 for shared memory and classification (not implemented).
    """
    if header_length is None:
        header_length = len(body)
    if header_length < 0 or header_length > len(body):
        raise invalid(f"inference header size should be in range (0, {len(body)}), got: {header_length}")
    try:
        doc = json.loads(body[:header_length])
    except UnicodeDecodeError as exc:
        raise invalid(f"failed to parse the request JSON buffer: Invalid encoding in string. at {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise invalid(f"failed to parse the request JSON buffer: {exc.msg} at {exc.pos}") from None
    except RecursionError:
        raise invalid("failed to parse the request JSON buffer: nested too deeply") from None
    if not isinstance(doc, dict):
        raise invalid(f"failed to parse the request JSON buffer: expected a JSON object, got {_json_type(doc)}")
    req = InferRequest()
    if "id" in doc:
        if not isinstance(doc["id"], str):
            raise invalid(f"Unable to parse 'id': expected a JSON string, got {_json_type(doc['id'])}")
        req.id = doc["id"]
    if "parameters" in doc:
        _parameters(req, doc["parameters"])
    inputs = doc.get("inputs")
    if not isinstance(inputs, list):
        raise invalid(
            "Unable to parse 'inputs': "
            + (
                "the request has no 'inputs' array"
                if inputs is None
                else f"expected an array, got {_json_type(inputs)}"
            )
        )
    binary = memoryview(body)[header_length:]
    offset = 0
    has_header = header_length != len(body)
    for i, entry in enumerate(inputs):
        tensor, size = _input(entry, i, has_header, model, max_elements)
        if size is not None:
            if offset + size > len(binary):
                raise invalid(
                    f"unexpected size for input '{tensor.name}', expecting {offset + size - len(binary)} additional "
                    f"bytes for model '{model}'"
                )
            tensor.array = _from_binary(tensor, binary[offset : offset + size], model)
            offset += size
        req.inputs.append(tensor)
    if offset != len(binary):
        raise invalid(f"unexpected additional input data for model '{model}'")
    if "outputs" in doc:
        req.outputs = _outputs(doc["outputs"])
    return req


def _input(
    entry: Any, i: int, has_header: bool, model: str, max_elements: Mapping[str, int] | None
) -> tuple[RequestTensor, int | None]:
    if not isinstance(entry, dict):
        raise invalid(f"Unable to parse 'inputs': input {i} is not a JSON object")
    params = entry.get("parameters", {})
    if not isinstance(params, dict):
        raise invalid(f"Unable to parse 'parameters' of input {i}: expected a JSON object")
    has = [k for k in ("data",) if k in entry] + [
        k for k in ("binary_data_size", "shared_memory_region") if k in params
    ]
    if len(has) != 1:
        raise invalid(
            "Input must set only one of the following fields: 'data', 'binary_data_size' in 'parameters', "
            "'shared_memory_region' in 'parameters'. But "
            + ("no field is set" if not has else "set " + " ".join(f"'{k}'" for k in has))
        )
    name = entry.get("name")
    if not isinstance(name, str):
        raise invalid(f"Unable to parse 'name' of input {i}: expected a string")
    datatype = entry.get("datatype")
    if not isinstance(datatype, str):
        raise invalid(f"Unable to parse 'datatype' of input '{name}': expected a string")
    if datatype not in _KNOWN:
        raise invalid(f"invalid datatype for input {name}: '{datatype}' (expected one of {sorted(_KNOWN)})")
    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(_is_uint(d) for d in shape):
        raise invalid(
            f"Unable to parse 'shape' of input '{name}': expected an array of unsigned integers, got {shape!r}"
        )
    dims = tuple(int(d) for d in shape)
    if max_elements:
        most = max_elements.get(name, max(max_elements.values()))
        count = math.prod(dims)
        # Far beyond what the model takes: refused before `data` is read. (A near miss — a batch of 7 for 6 —
        # is left to the model's checks, which name the exact rule that it breaks, as Triton does.)
        if count > 2 * most + _SLACK_ELEMENTS:
            raise invalid(
                f"input '{name}': shape {list(dims)} holds {count} elements, far more than model '{model}' accepts "
                f"({most}: max_batch_size rows of the longest packaged sequence)"
            )
    if has[0] == "shared_memory_region":
        raise ServeError(501, f"input '{name}': shared memory is not supported by seqdeploy serve; send the data")
    if has[0] == "data":
        return RequestTensor(name, datatype, dims, _from_json(name, datatype, dims, entry["data"])), None
    size = params["binary_data_size"]
    if not _is_uint(size):
        raise invalid(f"Unable to parse 'binary_data_size' of input '{name}': expected an unsigned integer")
    if not has_header and size:
        raise invalid(
            "must specify valid 'Infer-Header-Content-Length' in request header and 'binary_data_size' when "
            "passing inputs in binary data format"
        )
    return RequestTensor(name, datatype, dims, None), int(size)


def _from_binary(t: RequestTensor, data: memoryview, model: str) -> np.ndarray | None:
    dtype = DATATYPES.get(t.datatype)
    if dtype is None:
        return None  # BYTES / BF16: refused by the model's dtype check
    expected = math.prod(t.shape) * dtype.itemsize
    if len(data) != expected:
        raise invalid(
            f"input byte size mismatch for input '{t.name}' for model '{model}'. Expected {expected}, got {len(data)}"
        )
    # A copy: the request body is released once parsed, and the arrays are padded/stacked later anyway.
    return np.frombuffer(data, dtype=dtype).reshape(t.shape).copy()


def _outputs(value: Any) -> list[RequestedOutput]:
    if not isinstance(value, list):
        raise invalid(f"Unable to parse 'outputs': expected an array, got {_json_type(value)}")
    out: list[RequestedOutput] = []
    for i, entry in enumerate(value):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise invalid(f"Unable to parse 'outputs': output {i} must be an object with a string 'name'")
        params = entry.get("parameters", {})
        if not isinstance(params, dict):
            raise invalid(f"Unable to parse 'parameters' of output '{entry['name']}': expected a JSON object")
        if "shared_memory_region" in params:
            raise ServeError(501, f"output '{entry['name']}': shared memory is not supported by seqdeploy serve")
        if params.get("classification"):
            raise ServeError(
                501,
                f"output '{entry['name']}': the classification extension is not supported by seqdeploy serve; "
                "request the raw output (class_count=0) and take the top classes on the client",
            )
        binary = params.get("binary_data")
        if binary is not None and not isinstance(binary, bool):
            raise invalid(f"Unable to parse 'binary_data' of output '{entry['name']}': expected a boolean")
        out.append(RequestedOutput(entry["name"], binary))
    return out


# -- responses ----------------------------------------------------------------------------------------------


def encode_infer_response(
    *,
    model: str,
    version: str,
    request_id: str,
    outputs: Sequence[tuple[str, str, np.ndarray, bool]],
    parameters: Mapping[str, Any] | None = None,
) -> tuple[bytes, int | None]:
    """The reply body and, when any output is binary, the JSON header's length.

    Args:
        model: Model name.
        version: Model version (a string, as Triton writes it).
        request_id: Echoed as ``id`` when non-empty.
        outputs: ``(name, datatype, array, binary)`` in the order they are written.
        parameters: Response parameters (omitted when empty).

    Raises:
        ServeError: 400 for an FP16/BF16 output requested as JSON (as Triton).
    """
    doc: dict[str, Any] = {}
    if request_id:
        doc["id"] = request_id
    doc["model_name"] = model
    doc["model_version"] = version
    if parameters:
        doc["parameters"] = dict(parameters)
    entries: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, datatype, array, binary in outputs:
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": [int(d) for d in array.shape]}
        if binary:
            raw = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            if datatype in ("FP16", "BF16"):
                raise invalid(
                    f"sending {datatype} data via JSON is not supported. Please use the binary data format for output"
                )
            entry["data"] = array.ravel().tolist()
        entries.append(entry)
    doc["outputs"] = entries
    head = json.dumps(doc, separators=(",", ":")).encode()
    if not blobs:
        return head, None
    return b"".join([head, *blobs]), len(head)
