"""The user's own ``nn.Module`` as the model and as the reference (``[model] source = "python"``).

``entry`` names an ``nn.Module`` subclass, or a factory function defined in the entry's own module, in a
``.py`` file or a dotted module; it is called with ``kwargs``. Anything else (``os:system``, a library's
function, a builtin) is refused before it is called. **Importing it runs the user's code** (module top
level and constructor): seqdeploy does it only for a config or a bundle whose manifest says ``source =
"python"``; ``verify --no-import`` refuses instead, and so does every command while the environment
variable :data:`NO_IMPORT_ENV` is set.

:class:`UserModel` wraps the module so that it takes the graph inputs positionally in IOSpec order and
returns the graph outputs in IOSpec order, following ``[io] call`` (``(input, (h0, c0)) -> (output,
(h_n, c_n))``): the same wrapper is traced for export and run eagerly as the torch reference, so the
reference is the user's module itself, never a rebuild of it from a description.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import inspect
import itertools
import os
import site
import sys
import sysconfig
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn

from seqdeploy.config import DTYPES, CallNode, CallSignature, PipelineConfig, ResolvedEntry, resolve_entry
from seqdeploy.errors import ConfigError, ResourceLimitError, UsageError
from seqdeploy.spec import BATCH, SEQ, DType, IOSpec, TensorSpec, io_inputs

__all__ = [
    "NO_IMPORT_ENV",
    "UserModel",
    "build_user_model",
    "import_entry",
    "meta_parameter_bytes",
    "probe_outputs",
    "recurrent_layers",
    "recurrent_summary",
]

NO_IMPORT_ENV = "SEQDEPLOY_NO_IMPORT"
"""While this environment variable is set (to anything but ``""`` or ``0``), no command imports a user's
module: export of a ``source = "python"`` config and every torch reference of such a bundle (verify,
profile, package, optimize, compile) refuse with exit 2 instead."""

_counter = itertools.count()
# Serveable torch dtypes, by the config's names (config.DTYPES is the one list).
_DTYPES: dict[torch.dtype, DType] = {getattr(torch, name): cast(DType, name) for name in DTYPES}
_loaded_by_us: dict[str, set[str]] = {}
"""``{entry file or module: names of the modules its import added to sys.modules}``: evicted before the next
load of any entry (see :func:`_evict_previous`), so an edit to a neighbour module (``from layers import
Block``) is seen too, and another config's neighbour of the same name is never reused."""


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


def imports_refused() -> bool:
    """Whether :data:`NO_IMPORT_ENV` forbids importing users' modules in this process."""
    return os.environ.get(NO_IMPORT_ENV, "") not in ("", "0")


def _evict_previous(entry: ResolvedEntry) -> None:
    """Forget the modules that earlier loads added from users' directories — of this entry and of every
    other one — before this load: a neighbour module of another config (``helper`` of ``a/`` when this
    is ``b/net.py``, or ``mypkg`` of another ``python_path``) must not stand in for this one's, and this
    entry's own are read again after an edit. Another entry's private ``seqdeploy_user_*`` module stays
    registered until that entry is loaded again: no other entry can import it by name, and pickling and
    ``inspect`` of a model already built from it look it up there.
    """
    for name in _loaded_by_us.pop(entry.target, set()):
        sys.modules.pop(name, None)
    for names in _loaded_by_us.values():
        shared = {n for n in names if not n.startswith("seqdeploy_user_")}
        for name in shared:
            sys.modules.pop(name, None)
        names -= shared


def _remember_new(key: str, before: set[str], dirs: tuple[str, ...]) -> None:
    """Record the modules this load added from the user's own directories (never a library it imported)."""
    roots = tuple(os.path.join(os.path.realpath(d), "") for d in dirs)
    # Never a library or seqdeploy itself, even when the config's directory holds a virtualenv or a checkout:
    # evicting those would make two copies of their classes.
    foreign = (*_library_dirs(), os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(__file__))), ""))
    added = set()
    for name in set(sys.modules) - before:
        file = getattr(sys.modules.get(name), "__file__", None)
        if name.startswith("seqdeploy_user_"):
            added.add(name)
        elif file and file.endswith(".py"):
            real = os.path.realpath(file)
            if real.startswith(roots) and not real.startswith(foreign):
                added.add(name)
    _loaded_by_us[key] = added


def _load_module(entry: ResolvedEntry) -> Any:
    # Every load reads the user's code again: an entry file or module changed since the last load (verify
    # after an edit, a notebook) is seen, and so are the neighbour modules it imported from the user's own
    # directories — those that an earlier load of any entry imported are evicted first. A module the
    # caller imported itself beforehand stays as it is (documented in docs/your-model.md).
    _evict_previous(entry)
    before = set(sys.modules)
    try:
        return _import(entry)
    finally:
        _remember_new(entry.target, before, entry.search_path)


def _import(entry: ResolvedEntry) -> Any:
    with _search_path(entry.search_path):
        if entry.is_file:
            path = Path(entry.target)
            if not path.is_file():
                raise ConfigError(f"model.entry: {path} does not exist (entry is relative to the config file)")
            # A fresh module object per load, under a private name, so that nothing shadows the user's packages.
            name = f"seqdeploy_user_{path.stem}_{next(_counter)}"
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                raise ConfigError(f"model.entry: {path} cannot be imported as a Python module")
            module = importlib.util.module_from_spec(spec)
            # Dataclasses, pickling and inspect.getsourcefile look the module up by name: it stays registered
            # until the next load of this file evicts it (one entry per file, not one per load).
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except Exception as exc:  # noqa: BLE001 - the user's top-level code can raise anything
                del sys.modules[name]
                raise UsageError(
                    f"model.entry: importing {path} raised {type(exc).__name__}: {exc}{_user_frame(exc, (str(path),))}"
                ) from None
            return module
        if entry.target.split(".")[0] in sys.stdlib_module_names:
            # Refused before importing: the standard library holds no model, some of its modules run code when
            # imported (antigravity opens a browser), and others hold callables that run anything (os).
            raise ConfigError(
                f"model.entry: '{entry.target}' is the standard library, not your code; name your own module: "
                "'path/to/file.py:Class' or 'your_package.module:Class'"
            )
        try:
            return importlib.import_module(entry.target)
        except ModuleNotFoundError as exc:
            raise ConfigError(
                f"model.entry: cannot import module '{entry.target}' ({exc}); searched {list(entry.search_path)} "
                "first (model.python_path, relative to the config), then sys.path"
            ) from None
        except Exception as exc:  # noqa: BLE001 - the user's top-level code can raise anything
            raise UsageError(f"model.entry: importing '{entry.target}' raised {type(exc).__name__}: {exc}") from None


@functools.lru_cache(maxsize=1)
def _library_dirs() -> tuple[str, ...]:
    """Where the interpreter's standard library and installed packages live."""
    dirs = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    with contextlib.suppress(AttributeError):  # site.getsitepackages is missing in some virtualenv builds
        dirs.update(site.getsitepackages())
    return tuple(os.path.join(os.path.realpath(d), "") for d in dirs if d)


def _check_callable(obj: Any, module: Any, entry: ResolvedEntry) -> None:
    """Only an ``nn.Module`` subclass, or a plain function defined in the entry's own module (the user's code,
    not an installed library's), is ever called: a bundle's manifest names the entry, and a bundle may come
    from someone else (``entry = "os:system"`` with ``kwargs = { command = ... }`` would run a shell).
    """
    attr = entry.attr
    if isinstance(obj, nn.Module):
        raise ConfigError(
            f"model.entry: '{attr}' is a module instance; name its class (or a factory function) so that "
            "seqdeploy can build it again from kwargs"
        )
    if isinstance(obj, type):
        if issubclass(obj, nn.Module):
            return
        raise ConfigError(f"model.entry: '{attr}' is a class but not a torch.nn.Module subclass")
    if not inspect.isfunction(obj):
        what = "a builtin function" if inspect.isbuiltin(obj) else f"a {type(obj).__name__}"
        raise ConfigError(
            f"model.entry: '{attr}' is {what}; expected an nn.Module subclass or a factory function defined in "
            f"{entry.target}"
        )
    if obj.__module__ != getattr(module, "__name__", None):
        raise ConfigError(
            f"model.entry: '{attr}' is a function of module '{obj.__module__}', imported into {entry.target}; a "
            "factory function must be defined in the entry's own module (or name the nn.Module class)"
        )
    source = inspect.getsourcefile(obj)
    if source is None or os.path.realpath(source).startswith(_library_dirs()):
        raise ConfigError(
            f"model.entry: '{attr}' is a function of an installed library ({source or 'no source file'}), not "
            "your code; name the nn.Module class instead, or a factory defined in your own file"
        )


@dataclass(frozen=True)
class EntryInfo:
    """Where the user's module came from (recorded in the manifest's ``user_module``)."""

    resolved: ResolvedEntry
    source_file: str | None
    """The ``.py`` file that defines the class or factory (``inspect.getsourcefile``; the entry module's own
    file when that is unknown): what ``source_sha256`` hashes, so an edit to the class is noticed even when
    the entry re-exports it (``mypkg:Net`` from ``mypkg/__init__.py``, ``from layers import Net``)."""
    source_files: tuple[str, ...] = ()
    """Every file the entry is read from: the defining file, then the entry module's own file if different."""


def _file_of(obj: Any) -> str | None:
    try:
        found = inspect.getsourcefile(obj)
    except TypeError:  # a builtin or a class of a module without a file
        return None
    return str(Path(found).resolve()) if found else None


def import_entry(cfg: PipelineConfig) -> tuple[Callable[..., Any], EntryInfo]:
    """Import ``[model] entry`` (runs the user's code) and return the class or factory it names.

    Raises:
        ConfigError: The file or module does not exist, or has no such name, or names something that is not
            an ``nn.Module`` subclass or a factory function of the entry's own module.
        UsageError: Importing it raised, or :data:`NO_IMPORT_ENV` forbids importing.
    """
    entry = resolve_entry(cfg.model, cfg.base_dir)
    if imports_refused():
        raise UsageError(
            f"{NO_IMPORT_ENV} is set: seqdeploy does not import {entry.text} (a source = 'python' model is your "
            f"own code, and importing it runs that code). Unset {NO_IMPORT_ENV} to allow it; to check a bundle "
            "without importing, use: seqdeploy verify DIR --no-import --expected FILE.npz"
        )
    module = _load_module(entry)
    obj: Any = module
    for part in entry.attr.split("."):
        if not hasattr(obj, part):
            names = sorted(n for n, v in vars(module).items() if isinstance(v, type) and issubclass(v, nn.Module))
            raise ConfigError(
                f"model.entry: {entry.target} has no '{entry.attr}'; nn.Module classes there: {names or 'none'}"
            )
        obj = getattr(obj, part)
    if inspect.ismodule(obj):
        raise ConfigError(f"model.entry: '{entry.attr}' is a module, not a class or factory function")
    _check_callable(obj, module, entry)
    module_file = getattr(module, "__file__", None)
    files = [f for f in (_file_of(obj), str(Path(module_file).resolve()) if module_file else None) if f]
    files = list(dict.fromkeys(files))
    return obj, EntryInfo(entry, files[0] if files else None, tuple(files))


def _construct(factory: Callable[..., Any], cfg: PipelineConfig, entry: EntryInfo) -> nn.Module:
    kwargs = cfg.model.kwargs
    where = (entry.resolved.target, *entry.source_files)
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
    wrapper = UserModel(net, cfg.io.signature, info, allow_tracer_warnings=cfg.export.allow_tracer_warnings)
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
        allow_tracer_warnings: ``[export] allow_tracer_warnings``: export records the tracer's warnings about
            the user's code in :attr:`tracer_warnings` instead of refusing the graph
            (:func:`seqdeploy.export.onnx.export_onnx`).
    """

    def __init__(
        self,
        net: nn.Module,
        signature: CallSignature,
        entry: EntryInfo | None = None,
        *,
        allow_tracer_warnings: bool = False,
    ) -> None:
        super().__init__()
        self.net = net
        self.signature = signature
        self.label = entry.resolved.attr if entry is not None else type(net).__name__
        self.source_files: tuple[str, ...] = entry.source_files if entry is not None else ()
        self.allow_tracer_warnings = allow_tracer_warnings
        self.tracer_warnings: list[str] = []
        """``file:line: message`` of each value the trace froze in the user's code (export fills it)."""
        # Computed once: forward runs for every inference of the torch reference.
        self._input_names = signature.input_names
        self._output_names = signature.output_names

    def forward(self, *flat: Tensor) -> tuple[Tensor, ...]:
        values = dict(zip(self._input_names, flat, strict=True))
        args = [_nest(node, values) for node in self.signature.args]
        result = self.net(*args)
        found: dict[str, Tensor] = {}
        self._match(self.signature.returns, result, found, "the return value")
        return tuple(found[n] for n in self._output_names)

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
SHORT_ROWS = 4
"""With ``lengths``: a third run at the second shape with every row shorter than seq (at most this long), so
that an axis following the longest row (``pad_packed_sequence`` without ``total_length``) is not taken
for seq — the first two runs have a full-length row, where the two agree."""


def _probe(model: UserModel, inputs: tuple[TensorSpec, ...], feeds: dict[str, Any]) -> tuple[Tensor, ...]:
    args = [torch.from_numpy(feeds[t.name]) for t in inputs]
    try:
        with torch.inference_mode():
            return tuple(model(*args))
    except CallMismatch as exc:
        raise ConfigError(f"io.call: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - the user's forward can raise anything
        shapes = ", ".join(f"{t.name} {list(feeds[t.name].shape)} {t.dtype}" for t in inputs)
        lengths = f" with lengths {feeds['lengths'].tolist()}" if "lengths" in feeds else ""
        raise ConfigError(
            f"io: {model.label}.forward failed on inputs shaped as [io] declares ({shapes}){lengths}: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            f"{_user_frame(exc, model.source_files)}. "
            "Check [io] call and [io.inputs] dims/dtype"
        ) from None


def probe_outputs(model: UserModel, cfg: PipelineConfig) -> tuple[TensorSpec, ...]:
    """Run the module at two shapes and derive each output's dtype and dims (``batch``, ``seq`` or static).

    Raises:
        ConfigError: The module fails on inputs shaped as ``[io.inputs]`` declares, returns something
            ``[io] call`` does not describe, a dtype seqdeploy cannot serve, an axis that is neither batch,
            seq nor static, or a seq axis that follows the longest row instead of seq.
    """
    from seqdeploy.feeds import make_feeds

    inputs = io_inputs(cfg)
    in_spec = IOSpec(inputs=inputs, outputs=())
    runs = [
        _probe(model, inputs, make_feeds(in_spec, batch, seq, seed=100 + k))
        for k, (batch, seq) in enumerate(PROBE_SHAPES)
    ]
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
    if any(t.name == "lengths" for t in inputs):
        _check_short_rows(model, inputs, in_spec, tuple(out))
    return tuple(out)


def _check_short_rows(
    model: UserModel, inputs: tuple[TensorSpec, ...], in_spec: IOSpec, outputs: tuple[TensorSpec, ...]
) -> None:
    """Every row shorter than seq: a seq axis must still have seq steps (see :data:`SHORT_ROWS`)."""
    from seqdeploy.feeds import make_feeds

    batch, seq = PROBE_SHAPES[1]
    feeds = make_feeds(in_spec, batch, seq, seed=102)
    feeds["lengths"] = (feeds["lengths"] % SHORT_ROWS) + 1  # in [1, SHORT_ROWS], all < seq
    feeds["lengths"][0] = SHORT_ROWS
    got = _probe(model, inputs, feeds)
    x_seq_axis = next(t.dims.index(SEQ) for t in inputs if t.name == "input")
    for spec, value in zip(outputs, got, strict=True):
        for axis, dim in enumerate(spec.dims):
            if dim != SEQ or value.dim() <= axis or value.shape[axis] == seq:
                continue
            found = int(value.shape[axis])
            why = (
                f"it follows the longest row ({found} of seq {seq}) — pad_packed_sequence without total_length "
                f"returns max(lengths) steps. Pass total_length=x.size({x_seq_axis}) (input's seq axis) to "
                "pad_packed_sequence, so that it always returns seq steps"
                if found == SHORT_ROWS
                else f"it has {found} steps when every row is shorter than seq {seq}"
            )
            raise ConfigError(
                f"io.call: output '{spec.name}' axis {axis} has seq steps only while some row is full length: {why}"
            )


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
    """``(bidirectional, recurrent FLOPs per token)`` of :func:`recurrent_layers`' result (the formula of
    :mod:`seqdeploy.profile.flops`).
    """
    from seqdeploy.profile.flops import stack_flops_per_token

    flops = sum(
        stack_flops_per_token(
            layer["family"],
            layer["input_size"],
            (layer["hidden_size"],) * layer["num_layers"],
            2 if layer["bidirectional"] else 1,
        )
        for layer in layers
    )
    return any(layer["bidirectional"] for layer in layers), flops
