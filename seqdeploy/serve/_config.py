"""A packaged model's ``config.pbtxt`` as the server reads it: Triton's JSON form and the scheduler settings.

The file is parsed with the ``ModelConfig`` protobuf that tritonclient ships, by the same function
``seqdeploy package --check`` uses (:func:`seqdeploy.package.triton.parse_config_text`; no hand-written
parser). ``GET /v2/models/{m}/config`` returns it the way Triton's ``ModelConfigToJson`` writes it (core
``src/model_config_utils.cc``): protobuf JSON with the proto field names, every primitive field printed,
enums as names and the int64 fields as JSON **numbers** (protobuf's JSON writes them as strings; Triton
converts them back, and so do we, for every int64 field of the schema rather than a hand-kept list).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from seqdeploy._lazy import require
from seqdeploy.package import triton

__all__ = ["IOConfig", "ModelSettings", "config_to_json", "parse_config_text", "settings_from_config"]

# Triton's default when max_sequence_idle_microseconds is 0 or unset (common protobuf/model_config.proto).
DEFAULT_SEQUENCE_IDLE_US = 1_000_000


def parse_config_text(text: str) -> Any:
    """Parse ``config.pbtxt`` text into ``tritonclient.grpc.model_config_pb2.ModelConfig`` (extra ``serve``).

    Raises:
        BackendUnavailable: tritonclient is not installed (extra ``serve``).
        ValueError: The text does not parse as Triton's ModelConfig.
    """
    return triton.parse_config_text(text, extra="serve")


def _repeated(field: Any) -> bool:
    # protobuf >= 5.29 has is_repeated and deprecates label (a DeprecationWarning); older ones have only label.
    if hasattr(field, "is_repeated"):
        return bool(field.is_repeated)
    return bool(field.label == field.LABEL_REPEATED)


def _fix_int64(message: Any, doc: dict[str, Any]) -> None:
    """Turn protobuf-JSON int64 strings back into numbers, walking the message's own descriptor."""
    fd_type = require("google.protobuf.descriptor", extra="serve").FieldDescriptor
    wide = (fd_type.CPPTYPE_INT64, fd_type.CPPTYPE_UINT64)
    for field in message.DESCRIPTOR.fields:
        key = field.name
        if key not in doc:
            continue
        value = getattr(message, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            val_field = field.message_type.fields_by_name["value"]
            string_keys = field.message_type.fields_by_name["key"].type == fd_type.TYPE_STRING
            for k, v in doc[key].items():
                if val_field.message_type is not None:
                    _fix_int64(value[k if string_keys else int(k)], v)
                elif val_field.cpp_type in wide:
                    doc[key][k] = int(v)
        elif field.message_type is not None:
            if _repeated(field):
                for sub, d in zip(value, doc[key], strict=True):
                    _fix_int64(sub, d)
            else:
                _fix_int64(value, doc[key])
        elif field.cpp_type in wide:
            doc[key] = [int(v) for v in doc[key]] if _repeated(field) else int(doc[key])


def config_to_json(config: Any) -> dict[str, Any]:
    """The config as Triton's ``GET /v2/models/{m}/config`` returns it (the bare ModelConfig JSON)."""
    json_format = require("google.protobuf.json_format", extra="serve", purpose="writing Triton model configs")
    doc: dict[str, Any] = json_format.MessageToDict(
        config, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    _fix_int64(config, doc)
    return doc


@dataclass(frozen=True)
class IOConfig:
    """One ``input``/``output`` entry: protocol datatype (``INT64``), dims without the batch dim, reshape."""

    name: str
    datatype: str
    dims: tuple[int, ...]
    reshape: tuple[int, ...] | None
    optional: bool


@dataclass(frozen=True)
class ModelSettings:
    """What the schedulers need from one config.

    Attributes:
        platform: ``platform`` (or ``backend`` when no platform is set), as Triton reports it.
        max_batch_size: Largest batch of one execution.
        inputs: ``input[]`` in config order (what clients send).
        outputs: ``output[]`` in config order (what clients may request).
        scheduler: ``"dynamic"``, ``"sequence"`` or ``"none"``.
        queue_delay_us: ``max_queue_delay_microseconds`` of the batcher (dynamic or the sequence strategy).
        preferred_batch_sizes: ``preferred_batch_size`` of the batcher.
        max_queue_size: ``default_queue_policy.max_queue_size`` (0 = none configured).
        sequence_idle_us: ``max_sequence_idle_microseconds`` (Triton's 1 s default when 0).
        max_candidate_sequences: ``oldest.max_candidate_sequences`` (``direct``: ``max_batch_size``).
        start: Name of the ``CONTROL_SEQUENCE_START`` control input, or ``None``.
        states: ``(input_name, output_name)`` of every implicit state.
        controls_unsupported: Control kinds this server cannot drive (END, READY, CORRID), by input name.
    """

    platform: str
    max_batch_size: int
    inputs: tuple[IOConfig, ...]
    outputs: tuple[IOConfig, ...]
    scheduler: str
    queue_delay_us: int
    preferred_batch_sizes: tuple[int, ...]
    max_queue_size: int
    sequence_idle_us: int
    max_candidate_sequences: int
    start: str | None
    states: tuple[tuple[str, str], ...]
    controls_unsupported: Mapping[str, str]


def _datatype(enum_value: int) -> str:
    """The protocol datatype (``INT64``) of a config ``TYPE_*`` value (``TYPE_STRING`` is ``BYTES``)."""
    name = triton.dtype_name(enum_value)
    return "BYTES" if name == "TYPE_STRING" else name.removeprefix("TYPE_")


def _io(entry: Any, *, output: bool) -> IOConfig:
    reshape = tuple(int(d) for d in entry.reshape.shape) if entry.HasField("reshape") else None
    return IOConfig(
        name=entry.name,
        datatype=_datatype(entry.data_type),
        dims=tuple(int(d) for d in entry.dims),
        reshape=reshape,
        optional=False if output else bool(entry.optional),
    )


def settings_from_config(config: Any) -> ModelSettings:
    """Scheduler settings of a parsed config, with Triton's defaults where a field is unset."""
    mc = require("tritonclient.grpc.model_config_pb2", extra="serve")
    kind = config.WhichOneof("scheduling_choice")
    delay, queue_size = 0, 0
    preferred: tuple[int, ...] = ()
    idle, candidates, start = DEFAULT_SEQUENCE_IDLE_US, max(1, config.max_batch_size), None
    states: tuple[tuple[str, str], ...] = ()
    unsupported: dict[str, str] = {}
    if kind == "dynamic_batching":
        db = config.dynamic_batching
        delay, preferred = int(db.max_queue_delay_microseconds), tuple(int(p) for p in db.preferred_batch_size)
        queue_size = int(db.default_queue_policy.max_queue_size)
    elif kind == "sequence_batching":
        sb = config.sequence_batching
        idle = int(sb.max_sequence_idle_microseconds) or DEFAULT_SEQUENCE_IDLE_US
        strategy = sb.WhichOneof("strategy_choice")
        if strategy == "oldest":
            delay = int(sb.oldest.max_queue_delay_microseconds)
            preferred = tuple(int(p) for p in sb.oldest.preferred_batch_size)
            candidates = int(sb.oldest.max_candidate_sequences) or candidates
        elif strategy == "direct":
            delay = int(sb.direct.max_queue_delay_microseconds)
        start_kind = mc.ModelSequenceBatching.Control.CONTROL_SEQUENCE_START
        for ci in sb.control_input:
            for c in ci.control:
                if c.kind == start_kind:
                    start = ci.name
                else:
                    unsupported[ci.name] = str(mc.ModelSequenceBatching.Control.Kind.Name(c.kind))
        states = tuple((s.input_name, s.output_name) for s in sb.state)
    return ModelSettings(
        platform=config.platform or config.backend,
        max_batch_size=int(config.max_batch_size),
        inputs=tuple(_io(i, output=False) for i in config.input),
        outputs=tuple(_io(o, output=True) for o in config.output),
        scheduler={"dynamic_batching": "dynamic", "sequence_batching": "sequence"}.get(kind or "", "none"),
        queue_delay_us=delay,
        preferred_batch_sizes=preferred,
        max_queue_size=queue_size,
        sequence_idle_us=idle,
        max_candidate_sequences=candidates,
        start=start,
        states=states,
        controls_unsupported=unsupported,
    )
