"""A stand-in for the parts of TensorRT's builder API that ``seqdeploy.engine.build`` calls.

It lets the CPU suite run the builder's control flow (flags per TensorRT line, parser errors, profile
coverage, builder settings, timing cache) without TensorRT. It is **not** TensorRT: whether the calls
exist with these signatures is what mypy checks against the real API's stubs (``scripts/check``), and
what they do is only ever checked on a GPU machine (``tests/gpu/test_trt_engine.py``).
"""

from __future__ import annotations

import enum
import types
from dataclasses import dataclass, field
from typing import Any


class _Severity(enum.IntEnum):
    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4


class ILogger:
    Severity = _Severity

    def __init__(self) -> None:
        pass

    def log(self, severity: Any, msg: str) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class NetworkDefinitionCreationFlag(enum.IntEnum):
    STRONGLY_TYPED = 1


class MemoryPoolType(enum.Enum):
    WORKSPACE = 0


class BuilderFlag(enum.Enum):
    TF32 = 6


class Dims(list):  # type: ignore[type-arg]
    pass


@dataclass
class Tensor:
    name: str
    shape: Dims


@dataclass
class ParserError:
    node: str
    text: str

    def node_name(self) -> str:
        return self.node

    def code(self) -> str:
        return "ErrorCode.UNSUPPORTED_NODE"  # how a pybind11 enum prints

    def node_operator(self) -> str:
        return "LSTM" if self.node else ""

    def desc(self) -> str:
        return self.text


@dataclass
class Network:
    flags: int
    inputs: list[Tensor] = field(default_factory=list)

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    def get_input(self, i: int) -> Tensor:
        return self.inputs[i]


class Profile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple[Any, Any, Any]] = {}

    def set_shape(self, name: str, lo: Dims, opt: Dims, hi: Dims) -> None:
        assert all(isinstance(d, Dims) for d in (lo, opt, hi))
        self.shapes[name] = (list(lo), list(opt), list(hi))


class TimingCache:
    def __init__(self, blob: bytes) -> None:
        self.blob = blob

    def serialize(self) -> bytes:
        return self.blob + b"+timed"


class Config:
    def __init__(self) -> None:
        self.pools: dict[Any, int] = {}
        self.builder_optimization_level = 3
        self.cleared: list[Any] = []
        self.profiles: list[Profile] = []
        self.cache: TimingCache | None = None
        self.ignore_mismatch: bool | None = None

    def set_memory_pool_limit(self, pool: Any, size: int) -> None:
        self.pools[pool] = size

    def clear_flag(self, flag: Any) -> None:
        self.cleared.append(flag)

    def add_optimization_profile(self, profile: Profile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, blob: bytes) -> TimingCache:
        return TimingCache(bytes(blob))

    def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
        self.cache, self.ignore_mismatch = cache, ignore_mismatch
        return True


def make_module(
    *,
    inputs: dict[str, list[int]],
    parse_errors: list[tuple[str, str]] | None = None,
    build_fails: bool = False,
    no_gpu: bool = False,
) -> types.ModuleType:
    """A fake ``tensorrt`` module; ``mod.calls`` records what the builder was asked."""
    mod = types.ModuleType("tensorrt")
    calls: dict[str, Any] = {}

    class Builder:
        def __init__(self, logger: ILogger) -> None:
            if no_gpu:
                logger.log(_Severity.ERROR, "CUDA initialization failure with error: 35")
                raise TypeError("pybind11::init(): factory function returned nullptr")
            self.logger = logger

        def create_network(self, flags: int = 0) -> Network:
            calls["network"] = net = Network(flags, [Tensor(n, Dims(s)) for n, s in inputs.items()])
            return net

        def create_builder_config(self) -> Config:
            calls["config"] = cfg = Config()
            return cfg

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: Config) -> bytes | None:
            if build_fails:
                self.logger.log(_Severity.ERROR, "out of workspace memory")
                return None
            self.logger.log(_Severity.WARNING, "a warning worth keeping")
            self.logger.log(_Severity.INFO, "an info message")
            return b"ENGINE:" + repr(sorted(config.profiles[0].shapes.items())).encode()

    class OnnxParser:
        def __init__(self, network: Network, logger: ILogger) -> None:
            self.errors = [ParserError(n, t) for n, t in parse_errors or []]

        def parse_from_file(self, path: str) -> bool:
            calls["parsed"] = path
            return not self.errors

        @property
        def num_errors(self) -> int:
            return len(self.errors)

        def get_error(self, i: int) -> ParserError:
            return self.errors[i]

    mod.__version__ = "10.16.1.11"  # type: ignore[attr-defined]
    for name, obj in {
        "ILogger": ILogger,
        "NetworkDefinitionCreationFlag": NetworkDefinitionCreationFlag,
        "MemoryPoolType": MemoryPoolType,
        "BuilderFlag": BuilderFlag,
        "Dims": Dims,
        "Builder": Builder,
        "OnnxParser": OnnxParser,
        "ParserError": ParserError,
        "calls": calls,
    }.items():
        setattr(mod, name, obj)
    return mod
