"""The user's own ``nn.Module`` as the model and as the reference (``[model] source = "python"``).

``entry`` names a class or factory in a ``.py`` file or a dotted module; it is called with ``kwargs``.
**Importing it runs the user's code** (module top level and constructor): seqdeploy does it only for a
config or a bundle whose manifest says ``source = "python"``, and ``verify --no-import`` refuses instead.

:class:`UserModel` wraps the module so that it takes the graph inputs positionally in IOSpec order and
returns the graph outputs in IOSpec order, following ``[io] call`` (``(input, (h0, c0)) -> (output,
(h_n, c_n))``): the same wrapper is traced for export and run eagerly as the torch reference, so the
reference is the user's module itself, never a rebuild of it from a description.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import itertools
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from seqdeploy.config import CallNode, CallSignature, PipelineConfig, ResolvedEntry, resolve_entry
from seqdeploy.errors import ConfigError, ResourceLimitError, UsageError
from seqdeploy.models.registry import family
from seqdeploy.spec import BATCH, SEQ, DType, IOSpec, TensorSpec, io_inputs

__all__ = [
    "UserModel",
    "build_user_model",
    "import_entry",
    "meta_parameter_bytes",
    "probe_outputs",
    "recurrent_layers",
    "recurrent_summary",
]

_counter = itertools.count()
_DTYPES: dict[torch.dtype, DType] = {
    torch.float32: "float32",
    torch.float16: "float16",
    torch.int64: "int64",
    torch.int32: "int32",
}


@contextlib.contextmanager
def _search_path(dirs: tuple[str, ...]) -> Iterator[None]:
    # Only while importing: the user's files may import their neighbours (as `python file.py` allows).
    saved = list(sys.path)
    sys.path[:0] = list(dirs)
    try:
        yield
    finally:
        sys.path[:] = saved


def _user_frame(exc: BaseException, files: tuple[str, ...]) -> str:
    """``(at file:line)`` of the deepest frame of the user's own files, for messages without a traceback."""
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if f.filename in files] or frames[-1:]
    return f" (at {mine[-1].filename}:{mine[-1].lineno})" if mine else ""


def _load_module(entry: ResolvedEntry) -> Any:
    with _search_path(entry.search_path):
        if entry.is_file:
            path = Path(entry.target)
            if not path.is_file():
                raise ConfigError(f"model.entry: {path} does not exist (entry is relative to the config file)")
            # A fresh module object per load, under a private name: a file changed since the last import is
            # read again (verify after an edit must see the edit), and nothing shadows the user's packages.
            name = f"seqdeploy_user_{path.stem}_{next(_counter)}"
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                raise ConfigError(f"model.entry: {path} cannot be imported as a Python module")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module  # dataclasses and pickling inside the user's module look it up
            try:
                spec.loader.exec_module(module)
            except Exception as exc:  # noqa: BLE001 - the user's top-level code can raise anything
                del sys.modules[name]
                raise UsageError(
                    f"model.entry: importing {path} raised {type(exc).__name__}: {exc}{_user_frame(exc, (str(path),))}"
                ) from None
            return module
        try:
            return importlib.import_module(entry.target)
        except ModuleNotFoundError as exc:
            raise ConfigError(
                f"model.entry: cannot import module '{entry.target}' ({exc}); searched {list(entry.search_path)} "
                "first (model.python_path, relative to the config), then sys.path"
            ) from None
        except Exception as exc:  # noqa: BLE001 - the user's top-level code can raise anything
            raise UsageError(f"model.entry: importing '{entry.target}' raised {type(exc).__name__}: {exc}") from None


@dataclass(frozen=True)
class EntryInfo:
    """Where the user's module came from (recorded in the manifest's ``user_module``)."""

    resolved: ResolvedEntry
    source_file: str | None
    """The ``.py`` file that defines the entry's module (``None`` for a module without a file)."""


def import_entry(cfg: PipelineConfig) -> tuple[Callable[..., Any], EntryInfo]:
    """Import ``[model] entry`` (runs the user's code) and return the class or factory it names.

    Raises:
        ConfigError: The file or module does not exist, or has no such name, or names something that cannot
            build a module.
        UsageError: Importing it raised.
    """
    entry = resolve_entry(cfg.model, cfg.base_dir)
    module = _load_module(entry)
    obj: Any = module
    for part in entry.attr.split("."):
        if not hasattr(obj, part):
            names = sorted(n for n, v in vars(module).items() if isinstance(v, type) and issubclass(v, nn.Module))
            raise ConfigError(
                f"model.entry: {entry.target} has no '{entry.attr}'; nn.Module classes there: {names or 'none'}"
            )
        obj = getattr(obj, part)
    if isinstance(obj, nn.Module):
        raise ConfigError(
            f"model.entry: '{entry.attr}' is a module instance; name its class (or a factory function) so that "
            "seqdeploy can build it again from kwargs"
        )
    if not callable(obj):
        raise ConfigError(f"model.entry: '{entry.attr}' is a {type(obj).__name__}, not a class or factory function")
    source = getattr(module, "__file__", None)
    return obj, EntryInfo(entry, str(Path(source).resolve()) if source else None)


def _construct(factory: Callable[..., Any], cfg: PipelineConfig, entry: EntryInfo) -> nn.Module:
    kwargs = cfg.model.kwargs
    where = (entry.resolved.target,) if entry.resolved.is_file else ((entry.source_file,) if entry.source_file else ())
    try:
        module = factory(**kwargs)
    except TypeError as exc:
        raise ConfigError(
            f"model.kwargs: {entry.resolved.attr}(**{kwargs}) raised TypeError: {exc}{_user_frame(exc, where)}"
        ) from None
    except MemoryError:
        raise ResourceLimitError(
            f"{entry.resolved.attr}(**{kwargs}) ran out of memory while building; check the sizes in model.kwargs"
        ) from None
    except RuntimeError as exc:
        if "alloc" in str(exc) or "memory" in str(exc):
            raise ResourceLimitError(
                f"{entry.resolved.attr}(**{kwargs}) could not allocate its weights ({str(exc).splitlines()[0]}); "
                "check the sizes in model.kwargs"
            ) from None
        raise UsageError(
            f"{entry.resolved.attr}(**{kwargs}) raised RuntimeError: {exc}{_user_frame(exc, where)}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - the user's constructor can raise anything
        raise UsageError(
            f"{entry.resolved.attr}(**{kwargs}) raised {type(exc).__name__}: {exc}{_user_frame(exc, where)}"
        ) from None
    if not isinstance(module, nn.Module):
        raise ConfigError(
            f"model.entry: {entry.resolved.attr}(**kwargs) returned a {type(module).__name__}, not a torch.nn.Module"
        )
    return module


def meta_parameter_bytes(factory: Callable[..., Any], cfg: PipelineConfig) -> int | None:
    """Bytes of the module's parameters and buffers, measured by building it on the ``meta`` device (no
    memory is allocated), so absurd ``kwargs`` sizes are refused before the real build. ``None`` when the
    constructor cannot run on ``meta`` (it then runs for real, guarded against allocation failures).
    """
    try:
        with torch.device("meta"):
            module = factory(**cfg.model.kwargs)
    except Exception as exc:  # noqa: BLE001 - some constructors need real data (e.g. from_numpy): no estimate then
        if "overflow" in str(exc):
            raise ResourceLimitError(
                f"{cfg.model.entry}(**{cfg.model.kwargs}): a weight's size overflows even before allocation "
                f"({str(exc).splitlines()[0]}); check the sizes in [model] kwargs"
            ) from None
        return None
    if not isinstance(module, nn.Module):
        return None
    tensors = itertools.chain(module.parameters(), module.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def build_user_model(
    cfg: PipelineConfig, imported: tuple[Callable[..., Any], EntryInfo] | None = None
) -> tuple[UserModel, EntryInfo]:
    """Import (unless ``imported`` is given) and build the user's module, seeded with ``[model] seed`` and
    wrapped as a :class:`UserModel` in eval mode. Weights are the constructor's; the caller loads a
    checkpoint or ``model.pt``.
    """
    factory, info = imported if imported is not None else import_entry(cfg)
    torch.manual_seed(cfg.model.seed)
    net = _construct(factory, cfg, info)
    assert cfg.io is not None
    wrapper = UserModel(net, cfg.io.signature, info)
    wrapper.eval()
    return wrapper, info


class CallMismatch(UsageError):
    """The module's return value does not have the structure ``[io] call`` declares."""


class UserModel(nn.Module):
    """The user's module with graph I/O: ``forward(*inputs in IOSpec order) -> outputs in IOSpec order``.

    Args:
        net: The user's module (its state_dict is what ``model.pt`` holds: keys as the user named them).
        signature: ``[io] call`` parsed.
        entry: Where it came from (for messages).
    """

    def __init__(self, net: nn.Module, signature: CallSignature, entry: EntryInfo | None = None) -> None:
        super().__init__()
        self.net = net
        self.signature = signature
        self.label = entry.resolved.attr if entry is not None else type(net).__name__
        self.source_files: tuple[str, ...] = (entry.source_file,) if entry is not None and entry.source_file else ()

    def forward(self, *flat: Tensor) -> tuple[Tensor, ...]:
        names = self.signature.input_names
        values = dict(zip(names, flat, strict=True))
        args = [_nest(node, values) for node in self.signature.args]
        result = self.net(*args)
        found: dict[str, Tensor] = {}
        self._match(self.signature.returns, result, found, "the return value")
        return tuple(found[n] for n in self.signature.output_names)

    def _match(self, node: CallNode, value: Any, found: dict[str, Tensor], where: str) -> None:
        if isinstance(node, str):
            if node == "_":
                return
            if not isinstance(value, Tensor):
                raise CallMismatch(
                    f"{self.label}.forward: {where} is a {type(value).__name__}, but [io] call = "
                    f"'{self.signature.describe()}' names it '{node}' (a tensor)"
                )
            found[node] = value
            return
        if not isinstance(value, tuple | list) or len(value) != len(node):
            got = (
                f"a {type(value).__name__} of {len(value)}"
                if isinstance(value, tuple | list)
                else f"a {type(value).__name__}"
            )
            raise CallMismatch(
                f"{self.label}.forward: {where} is {got}, but [io] call = '{self.signature.describe()}' expects a "
                f"tuple of {len(node)} there; fix [io] call (use '_' for values to ignore)"
            )
        for k, (child, v) in enumerate(zip(node, value, strict=True)):
            self._match(child, v, found, f"element {k} of {where}")


def _nest(node: CallNode, values: dict[str, Tensor]) -> Any:
    if isinstance(node, str):
        return values[node]
    return tuple(_nest(child, values) for child in node)


# ------------------------------------------------------------------------------------------- discovery


PROBE_SHAPES: tuple[tuple[int, int], ...] = ((2, 5), (3, 7))
"""(batch, seq) of the two runs that find output shapes: distinct numbers, so each axis that follows batch
or seq is seen to move with it, and one that stays put is static."""


def probe_outputs(model: UserModel, cfg: PipelineConfig) -> tuple[TensorSpec, ...]:
    """Run the module at two shapes and derive each output's dtype and dims (``batch``, ``seq`` or static).

    Raises:
        ConfigError: The module fails on inputs shaped as ``[io.inputs]`` declares, returns something
            ``[io] call`` does not describe, a dtype seqdeploy cannot serve, or an axis that is neither batch,
            seq nor static.
    """
    from seqdeploy.feeds import make_feeds

    inputs = io_inputs(cfg)
    in_spec = IOSpec(inputs=inputs, outputs=())
    runs: list[tuple[Tensor, ...]] = []
    for k, (batch, seq) in enumerate(PROBE_SHAPES):
        feeds = make_feeds(in_spec, batch, seq, seed=100 + k)
        args = [torch.from_numpy(feeds[t.name]) for t in inputs]
        try:
            with torch.inference_mode():
                runs.append(model(*args))
        except CallMismatch as exc:
            raise ConfigError(f"io.call: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - the user's forward can raise anything
            shapes = ", ".join(f"{t.name} {list(t.shape({BATCH: batch, SEQ: seq}))} {t.dtype}" for t in inputs)
            raise ConfigError(
                f"io: {model.label}.forward failed on inputs shaped as [io] declares ({shapes}): "
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                f"{_user_frame(exc, model.source_files)}. "
                "Check [io] call and [io.inputs] dims/dtype"
            ) from None
    names = model.signature.output_names
    out = []
    for i, name in enumerate(names):
        a, b = runs[0][i], runs[1][i]
        dtype = _DTYPES.get(a.dtype)
        if dtype is None:
            raise ConfigError(
                f"io.call: output '{name}' is {a.dtype}; seqdeploy serves {', '.join(_DTYPES.values())} — cast it "
                "in forward (e.g. .float())"
            )
        if a.dim() != b.dim():
            raise ConfigError(f"io.call: output '{name}' has rank {a.dim()} at one shape and {b.dim()} at another")
        dims: list[int | str] = []
        for axis, (x, y) in enumerate(zip(a.shape, b.shape, strict=True)):
            (b0, s0), (b1, s1) = PROBE_SHAPES
            if x == y:
                dims.append(int(x))
            elif (x, y) == (b0, b1):
                dims.append(BATCH)
            elif (x, y) == (s0, s1):
                dims.append(SEQ)
            else:
                raise ConfigError(
                    f"io.call: output '{name}' axis {axis} is {x} at batch {b0}, seq {s0} and {y} at batch {b1}, "
                    f"seq {s1}: it is neither batch, seq nor fixed (a flattened batch x seq?). Return it as "
                    "[seq, batch, ...] or [batch, seq, ...]"
                )
        out.append(TensorSpec(name, dtype, tuple(dims)))
    return tuple(out)


def recurrent_layers(module: nn.Module) -> list[dict[str, Any]]:
    """Every recurrent submodule (``nn.RNN``/``GRU``/``LSTM`` and their ``*Cell``), for the manifest."""
    found = []
    for name, m in module.named_modules():
        if isinstance(m, nn.RNNBase):
            kind = {"LSTM": "lstm", "GRU": "gru"}.get(m.mode, "rnn")
            found.append(
                {
                    "name": name,
                    "type": type(m).__name__,
                    "family": kind,
                    "input_size": int(m.input_size),
                    "hidden_size": int(m.hidden_size),
                    "num_layers": int(m.num_layers),
                    "bidirectional": bool(m.bidirectional),
                    "batch_first": bool(m.batch_first),
                }
            )
        elif isinstance(m, nn.RNNCellBase):
            kind = "lstm" if isinstance(m, nn.LSTMCell) else ("gru" if isinstance(m, nn.GRUCell) else "rnn")
            found.append(
                {
                    "name": name,
                    "type": type(m).__name__,
                    "family": kind,
                    "input_size": int(m.input_size),
                    "hidden_size": int(m.hidden_size),
                    "num_layers": 1,
                    "bidirectional": False,
                    "batch_first": False,
                }
            )
    return found


def recurrent_summary(layers: list[dict[str, Any]]) -> tuple[bool, int]:
    """``(bidirectional, recurrent FLOPs per token)`` of :func:`recurrent_layers`' result (the same formula as
    :mod:`seqdeploy.profile.flops`: ``2 · gates · H · (I + H)`` per layer and direction).
    """
    flops = 0
    for layer in layers:
        gates = family(layer["family"]).gates
        dirs = 2 if layer["bidirectional"] else 1
        in_size, h = layer["input_size"], layer["hidden_size"]
        for _ in range(layer["num_layers"]):
            flops += dirs * 2 * gates * h * (in_size + h)
            in_size = dirs * h
    return any(layer["bidirectional"] for layer in layers), flops
