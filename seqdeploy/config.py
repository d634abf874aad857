"""Frozen, validated configuration dataclasses.

The TOML key names are a public contract (see ``docs/config.md``): keys may be added, never renamed.
Field-level type checks happen in :mod:`seqdeploy.config_io`; the cross-field checks below run in
``__post_init__`` and raise :class:`~seqdeploy.errors.ConfigError` with the key *relative* to the
table, which the loader prefixes with the table's path.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from seqdeploy.errors import ConfigError

CellName = Literal["rnn_tanh", "rnn_relu", "gru", "lstm", "rnn_cell", "gru_cell", "lstm_cell"]
CELLS: tuple[str, ...] = ("rnn_tanh", "rnn_relu", "gru", "lstm", "rnn_cell", "gru_cell", "lstm_cell")
STACK_CELLS: tuple[str, ...] = ("rnn_cell", "gru_cell", "lstm_cell")
"""Cells built as a Python loop of one ``nn.*Cell`` per layer (the PyTorch cell-stack idiom)."""
POOLINGS: tuple[str, ...] = ("last", "output_last", "mean", "max")

OMIT_DEFAULT = {"omit_default": True}
"""Field metadata: :func:`seqdeploy.config_io.config_to_dict` leaves the field out while it has its default
(keys added after the first release, so that manifests of configs that do not use them are unchanged)."""
FALSE_IS_NONE = {"false_is_none": True}
"""Field metadata: TOML ``false`` means ``None`` (TOML has no null), e.g. ``padding_idx = false``."""


def _fail(key: str, message: str) -> ConfigError:
    return ConfigError(f"{key}: {message}")


@dataclass(frozen=True, slots=True)
class EmbeddingConfig:
    """``[model.embedding]``: token ids in instead of float features."""

    vocab_size: int
    dim: int
    padding_idx: int | None = field(default=0, metadata=FALSE_IS_NONE)
    """The id whose row is zero; ``false`` in TOML (``None`` here) for no padding row."""
    vectors: str | None = None
    """GloVe, word2vec text or word2vec binary file, relative to the config file. Rows are matched through
    ``vocab``."""
    vocab: str | None = None
    """One token per line; line k is row k of the embedding. Required with ``vectors``."""
    vectors_format: Literal["auto", "glove", "word2vec", "word2vec_binary"] = "auto"
    oov: Literal["random", "zeros", "mean"] = "random"
    """How rows of tokens missing from ``vectors`` are initialised (padding row is always zero)."""
    freeze: bool = True

    def __post_init__(self) -> None:
        if self.vocab_size < 1:
            raise _fail("vocab_size", f"expected int >= 1, got {self.vocab_size}")
        if self.dim < 1:
            raise _fail("dim", f"expected int >= 1, got {self.dim}")
        if self.padding_idx is not None and not 0 <= self.padding_idx < self.vocab_size:
            raise _fail(
                "padding_idx",
                f"expected an id in [0, vocab_size - 1 = {self.vocab_size - 1}], got {self.padding_idx}",
            )
        if self.vectors is not None and self.vocab is None:
            raise _fail(
                "vocab",
                "required when 'vectors' is set: a text file with one token per line, line k = row k",
            )


@dataclass(frozen=True, slots=True)
class HeadConfig:
    """``[model.head]``: what turns recurrent output into the model's ``output`` tensor."""

    task: Literal["none", "classify", "tag"] = "none"
    num_classes: int | None = None
    pooling: Literal["last", "output_last", "mean", "max"] = "last"
    """classify only. ``last``: the top layer's final state per direction (``cat(h_n[-2], h_n[-1])`` when
    bidirectional); ``output_last``: the recurrent output at each row's last valid step (the tutorial's
    ``out[-1]``, length-aware); ``mean``/``max`` over valid steps."""
    labels: tuple[str, ...] | None = None
    """Class names, one per class in class order (classify/tag); packages and ``predict`` report them."""

    def __post_init__(self) -> None:
        if self.task == "none":
            if self.num_classes is not None:
                raise _fail("num_classes", "only valid with task = 'classify' or 'tag'")
        elif self.num_classes is None or self.num_classes < 1:
            raise _fail("num_classes", f"expected int >= 1 for task '{self.task}', got {self.num_classes}")
        if self.pooling != "last" and self.task != "classify":
            raise _fail("pooling", f"only valid with task = 'classify', not '{self.task}'")
        if self.labels is not None:
            if self.task == "none":
                raise _fail("labels", "only valid with task = 'classify' or 'tag'")
            if len(self.labels) != self.num_classes:
                raise _fail("labels", f"expected {self.num_classes} names (num_classes), got {len(self.labels)}")
            for k, label in enumerate(self.labels):
                if not label.strip():
                    raise _fail(f"labels[{k}]", "expected a non-empty name")
            dupes = sorted({x for x in self.labels if self.labels.count(x) > 1})
            if dupes:
                raise _fail("labels", f"names must be unique, {dupes} repeat")


_ZOO_ONLY = {
    # key: (default, what the user should do instead with source = "python")
    "cell": (None, "your module defines its recurrent layers"),
    "input_size": (None, "declare the input in [io.inputs.input] dims"),
    "hidden_size": (None, "pass sizes to your module in [model] kwargs"),
    "hidden_sizes": (None, "pass sizes to your module in [model] kwargs"),
    "num_layers": (None, "pass sizes to your module in [model] kwargs"),
    "bidirectional": (False, "seqdeploy finds bidirectional layers by inspecting your module"),
    "batch_first": (False, 'declare [io.inputs.input] dims = ["batch", "seq", ...]'),
    "dropout": (0.0, "your module defines its dropout (export runs it in eval mode)"),
    "nonlinearity": ("tanh", "your module defines its layers"),
    "embedding": (None, "your module defines its embedding; load trained weights with --checkpoint"),
}


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """``[model]``: the recurrent model.

    ``source = "zoo"`` (the default) builds the model from these keys: whole-sequence cells (``rnn_tanh``,
    ``rnn_relu``, ``gru``, ``lstm``) take ``hidden_size`` and ``num_layers``; cell stacks (``*_cell``) take
    either the same or ``hidden_sizes`` (one per layer). ``source = "python"`` uses the user's own
    ``nn.Module``: ``entry`` names it, ``kwargs`` are passed to it, and ``[io]`` says how it is called.
    """

    cell: CellName | None = None
    """Required for ``source = "zoo"``."""
    input_size: int | None = None
    hidden_size: int | None = None
    hidden_sizes: tuple[int, ...] | None = None
    num_layers: int | None = None
    """Layers (default 1). With ``hidden_sizes`` it may be omitted or must equal ``len(hidden_sizes)``."""
    bidirectional: bool = False
    batch_first: bool = False
    dropout: float = 0.0
    nonlinearity: Literal["tanh", "relu"] = "tanh"
    """Only for ``rnn_cell`` (``rnn_tanh``/``rnn_relu`` name it in the cell)."""
    seed: int = 0
    embedding: EmbeddingConfig | None = None
    head: HeadConfig = field(default_factory=HeadConfig)
    source: Literal["zoo", "python"] = field(default="zoo", metadata=OMIT_DEFAULT)
    """``zoo``: built from the keys above; ``python``: the user's module named by ``entry``."""
    entry: str | None = None
    """``"path/to/file.py:Name"`` (relative to the config) or ``"dotted.module:Name"``: a class or a factory
    function returning an ``nn.Module``, called with ``kwargs``. Importing it runs the user's code."""
    kwargs: dict[str, Any] = field(default_factory=dict, metadata=OMIT_DEFAULT)
    """Keyword arguments for ``entry`` (numbers, strings, booleans, arrays, tables)."""
    python_path: tuple[str, ...] = field(default=(".",), metadata=OMIT_DEFAULT)
    """Directories put first on ``sys.path`` while ``entry`` is imported, relative to the config (default:
    the config's directory). A file entry's own directory is always searched first."""

    def __post_init__(self) -> None:
        if not 0 <= self.seed < 2**63:
            # torch.manual_seed and numpy's default_rng (OOV vectors) both need it.
            raise _fail("seed", f"expected an int in [0, 2**63 - 1], got {self.seed}")
        if self.source == "python":
            self._check_python()
            return
        for key in ("entry", "kwargs", "python_path"):
            if getattr(self, key) != _DEFAULTS[key]:
                raise _fail(key, "only valid with source = 'python' (a module of your own)")
        if self.cell is None:
            raise _fail(
                "cell",
                "required key is missing (or set source = 'python' and entry = 'file.py:Class' to use your own "
                "nn.Module)",
            )
        self._check_zoo(self.cell)

    def _check_python(self) -> None:
        for key, (default, instead) in _ZOO_ONLY.items():
            if getattr(self, key) != default:
                raise _fail(key, f"only for source = 'zoo'; with source = 'python' {instead}")
        if self.head != HeadConfig():
            raise _fail("head", "only for source = 'zoo'; with source = 'python' your module defines its head")
        if self.entry is None:
            raise _fail(
                "entry",
                "required with source = 'python': 'path/to/file.py:ClassOrFactory' (relative to the config) "
                "or 'dotted.module:ClassOrFactory'",
            )
        parse_entry(self.entry)
        check_kwargs(self.kwargs, "kwargs")
        for k, d in enumerate(self.python_path):
            if not d:
                raise _fail(f"python_path[{k}]", "expected a directory, got an empty string")

    def _check_zoo(self, cell: str) -> None:
        is_stack = cell in STACK_CELLS
        if self.embedding is None and self.input_size is None:
            raise _fail("input_size", "required when there is no [model.embedding] table")
        if self.embedding is not None and self.input_size is not None and self.input_size != self.embedding.dim:
            raise _fail(
                "input_size",
                f"{self.input_size} contradicts embedding.dim = {self.embedding.dim}; omit input_size",
            )
        if self.input_size is not None and self.input_size < 1:
            raise _fail("input_size", f"expected int >= 1, got {self.input_size}")
        if self.hidden_sizes is not None:
            if not is_stack:
                raise _fail(
                    "hidden_sizes",
                    f"only valid for cell stacks ({', '.join(STACK_CELLS)}); use hidden_size and num_layers "
                    f"for cell = '{cell}'",
                )
            if self.hidden_size is not None:
                raise _fail("hidden_sizes", "give either hidden_size (+ num_layers) or hidden_sizes, not both")
            if not self.hidden_sizes:
                raise _fail("hidden_sizes", "expected at least one size")
            for k, size in enumerate(self.hidden_sizes):
                if size < 1:
                    raise _fail(f"hidden_sizes[{k}]", f"expected int >= 1, got {size}")
        elif self.hidden_size is None:
            raise _fail("hidden_size", "required (or hidden_sizes = [...] for a cell stack)")
        elif self.hidden_size < 1:
            raise _fail("hidden_size", f"expected int >= 1, got {self.hidden_size}")
        if self.num_layers is not None and self.num_layers < 1:
            raise _fail("num_layers", f"expected int >= 1, got {self.num_layers}")
        if self.hidden_sizes is not None and self.num_layers not in (None, len(self.hidden_sizes)):
            raise _fail(
                "num_layers",
                f"{self.num_layers} contradicts hidden_sizes (one size per layer: {len(self.hidden_sizes)} layers); "
                "omit num_layers",
            )
        if not 0.0 <= self.dropout < 1.0:
            raise _fail("dropout", f"expected a float in [0, 1), got {self.dropout}")
        if is_stack and self.bidirectional:
            raise _fail(
                "bidirectional",
                f"cell stacks ('{cell}') are unidirectional; use cell = "
                f"'{cell.removesuffix('_cell').replace('rnn', 'rnn_tanh')}' for a bidirectional model",
            )
        if self.nonlinearity != "tanh" and cell != "rnn_cell":
            raise _fail("nonlinearity", f"only valid for cell = 'rnn_cell', not '{cell}'")

    @property
    def is_python(self) -> bool:
        """Whether the model is the user's own module (``source = "python"``)."""
        return self.source == "python"

    @property
    def zoo_cell(self) -> str:
        """``cell`` of a zoo model. The zoo-only properties below need it: asking them of a user's module is a
        seqdeploy bug (ask the bundle, which inspected the module at export).
        """
        if self.cell is None:
            from seqdeploy.errors import InternalError

            raise InternalError("a zoo-model property was asked of a source = 'python' model")
        return self.cell

    @property
    def is_cell_stack(self) -> bool:
        """Whether the model is a Python loop over one ``nn.*Cell`` per layer."""
        return self.cell in STACK_CELLS

    @property
    def base_cell(self) -> Literal["rnn", "gru", "lstm"]:
        """The recurrence family: ``rnn``, ``gru`` or ``lstm``."""
        cell = self.zoo_cell
        if "lstm" in cell:
            return "lstm"
        if "gru" in cell:
            return "gru"
        return "rnn"

    @property
    def activation(self) -> Literal["tanh", "relu"]:
        """The Elman RNN non-linearity (``tanh`` for GRU/LSTM, where it does not apply)."""
        if self.cell == "rnn_relu" or (self.cell == "rnn_cell" and self.nonlinearity == "relu"):
            return "relu"
        return "tanh"

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """Hidden size of each layer (equal for whole-sequence cells)."""
        self.zoo_cell  # noqa: B018 - raises for a user's module
        if self.hidden_sizes is not None:
            return self.hidden_sizes
        assert self.hidden_size is not None  # guaranteed by __post_init__
        return (self.hidden_size,) * (self.num_layers or 1)

    @property
    def num_directions(self) -> int:
        """2 for bidirectional models, else 1."""
        return 2 if self.bidirectional else 1

    @property
    def feature_size(self) -> int:
        """Size of the vector fed to the first recurrent layer."""
        self.zoo_cell  # noqa: B018 - raises for a user's module
        if self.embedding is not None:
            return self.embedding.dim
        assert self.input_size is not None
        return self.input_size

    @property
    def per_layer_state(self) -> bool:
        """Whether states are one tensor per layer (``h0.0``, ``h0.1``, ...): cell stacks of unequal sizes."""
        return len(set(self.layer_sizes)) > 1


@dataclass(frozen=True, slots=True)
class ExportConfig:
    """``[export]``: how the ONNX graph is produced."""

    opset: int = 17
    lengths: bool = False
    initial_state: bool = True
    step: bool = False
    """Also write ``step.onnx``, a single-time-step graph with states in and out (``--step``)."""
    allow_tracer_warnings: bool = field(default=False, metadata=OMIT_DEFAULT)
    """``source = "python"`` only. The tracer warns when a ``forward`` reads tensor values in Python (an ``if``
    on a value, ``int(t)``, iterating over a tensor): the graph freezes what they were at trace time, and no
    check on random inputs may notice. Export refuses such a module, naming each ``file:line``; ``true``
    exports it anyway: the export prints them, the manifest records them (``user_module.tracer_warnings``) and
    every verify repeats them."""

    def __post_init__(self) -> None:
        # 14 is the first opset with LSTM `layout`; below that the TorchScript exporter's RNN
        # symbolics are untested here. 20 is the newest opset measured in export-notes.md.
        if not 14 <= self.opset <= 20:
            raise _fail("opset", f"expected an int in [14, 20], got {self.opset}")


@dataclass(frozen=True, slots=True)
class ShapesConfig:
    """``[shapes]``: ``[min, opt, max]`` per dynamic axis; drives checks and (later) TensorRT profiles."""

    batch: tuple[int, int, int] = (1, 8, 64)
    seq: tuple[int, int, int] = (1, 64, 512)

    def __post_init__(self) -> None:
        for name in ("batch", "seq"):
            lo, opt, hi = getattr(self, name)
            if lo < 1:
                raise _fail(name, f"expected min >= 1, got {list(getattr(self, name))}")
            if not lo <= opt <= hi:
                raise _fail(name, f"expected [min, opt, max] with min <= opt <= max, got {[lo, opt, hi]}")


# ------------------------------------------------------------------------------------------ source = "python"

_DEFAULTS: dict[str, Any] = {"entry": None, "kwargs": {}, "python_path": (".",)}
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_DOTTED = re.compile(rf"^{_IDENT}(?:\.{_IDENT})*$")
INPUT_NAME = re.compile(r"^(?:input|lengths|h0|c0|h0\.[0-9]+|c0\.[0-9]+)$")
"""Contract names a module's inputs may have."""
OUTPUT_NAME = re.compile(rf"^{_IDENT}(?:\.[0-9]+)?$")
"""Output names: ``output``, ``h_n``, ``c_n``, ``h_n.k``, ``c_n.k``, or any identifier for extra outputs."""
STATE_INPUT = re.compile(r"^(?:h0|c0)(?:\.[0-9]+)?$")
AXES: tuple[str, ...] = ("batch", "seq")
DTYPES: tuple[str, ...] = ("float32", "float16", "int64", "int32")


def parse_entry(entry: str) -> tuple[str, str, bool]:
    """Split ``entry`` into ``(file or module, attribute path, is_file)``.

    Raises:
        ConfigError: Not ``"file.py:Name"`` or ``"dotted.module:Name"`` (key ``entry``).
    """
    target, sep, attr = entry.rpartition(":")
    if not sep or not target or not _DOTTED.match(attr):
        raise _fail(
            "entry",
            f"expected 'path/to/file.py:ClassOrFactory' or 'dotted.module:ClassOrFactory', got {entry!r}",
        )
    is_file = target.endswith(".py")
    if not is_file and not _DOTTED.match(target):
        raise _fail(
            "entry",
            f"{target!r} is neither a .py file nor a dotted module name; expected 'path/to/file.py:{attr}' "
            f"or 'package.module:{attr}'",
        )
    return target, attr, is_file


@dataclass(frozen=True, slots=True)
class ResolvedEntry:
    """``[model] entry`` with every path made absolute (how the manifest records it).

    Attributes:
        target: The absolute ``.py`` file, or the dotted module name.
        attr: The class or factory inside it (``Outer.Inner`` allowed).
        is_file: Whether ``target`` is a file.
        search_path: Absolute directories put first on ``sys.path`` while importing (a file's own
            directory first, then ``python_path``).
    """

    target: str
    attr: str
    is_file: bool
    search_path: tuple[str, ...]

    @property
    def text(self) -> str:
        """``target:attr``."""
        return f"{self.target}:{self.attr}"


def resolve_entry(model: ModelConfig, base_dir: str) -> ResolvedEntry:
    """Resolve ``model.entry`` and ``model.python_path`` against the config's directory."""
    if model.entry is None:
        raise _fail("entry", "required with source = 'python'")
    target, attr, is_file = parse_entry(model.entry)
    base = Path(base_dir)
    search = [os.path.abspath(base / d) for d in model.python_path]
    if is_file:
        target = os.path.abspath(base / target)
        search.insert(0, os.path.dirname(target))
    return ResolvedEntry(target, attr, is_file, tuple(dict.fromkeys(search)))


def check_kwargs(value: Any, key: str) -> None:
    """Refuse ``kwargs`` values that JSON cannot hold (the manifest records them): dates, NaN/Inf."""
    if isinstance(value, dict):
        for k, v in value.items():
            check_kwargs(v, f"{key}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            check_kwargs(v, f"{key}[{i}]")
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise _fail(key, f"expected a finite number, got {value}")
    elif not isinstance(value, str | int | bool):
        raise _fail(key, f"expected a number, string, boolean, array or table, got {type(value).__name__}")


CallNode = str | tuple["CallNode", ...]


@dataclass(frozen=True, slots=True)
class CallSignature:
    """``[io] call`` parsed: ``forward``'s positional arguments and its return value, as nested tuples of
    tensor names (``_`` in the return value drops that element).
    """

    args: tuple[CallNode, ...]
    returns: CallNode

    @property
    def input_names(self) -> tuple[str, ...]:
        """Argument names in order (depth first)."""
        return tuple(_flatten(self.args))

    @property
    def output_names(self) -> tuple[str, ...]:
        """Returned names in order (depth first), ``_`` left out."""
        return tuple(n for n in _flatten(self.returns) if n != "_")

    def describe(self) -> str:
        """The canonical text form."""
        return f"{_render(self.args, top=True)} -> {_render(self.returns)}"


def _flatten(node: CallNode) -> list[str]:
    if isinstance(node, str):
        return [node]
    return [n for child in node for n in _flatten(child)]


def _render(node: CallNode, *, top: bool = False) -> str:
    if isinstance(node, str):
        return node
    inner = ", ".join(_render(c) for c in node)
    return f"({inner},)" if len(node) == 1 and not top else f"({inner})"


_TOKEN = re.compile(r"\s*(->|[(),]|[A-Za-z_][A-Za-z0-9_]*(?:\.[0-9]+)?)")


def parse_call(text: str) -> CallSignature:
    """Parse ``"(input, (h0, c0)) -> (output, (h_n, c_n))"``.

    Raises:
        ConfigError: Not of that form (key ``call``); the message shows where parsing stopped.
    """
    tokens: list[str] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None:
            raise _fail("call", f"unexpected {text[pos:].strip()[:20]!r} in {text!r}{_CALL_HELP}")
        tokens.append(m.group(1))
        pos = m.end()
    at = 0

    def peek() -> str | None:
        return tokens[at] if at < len(tokens) else None

    def take(want: str | None = None) -> str:
        nonlocal at
        tok = peek()
        if tok is None or (want is not None and tok != want):
            seen = "the end" if tok is None else repr(tok)
            raise _fail("call", f"expected {want or 'a name'} but found {seen} in {text!r}{_CALL_HELP}")
        at += 1
        return tok

    def node() -> CallNode:
        if peek() == "(":
            take("(")
            items: list[CallNode] = []
            while peek() != ")":
                items.append(node())
                if peek() == ",":
                    take(",")
                elif peek() != ")":
                    take(")")
            take(")")
            return tuple(items)
        tok = take()
        if tok in ("(", ")", ",", "->"):
            raise _fail("call", f"expected a name but found {tok!r} in {text!r}{_CALL_HELP}")
        return tok

    if peek() != "(":
        raise _fail("call", f"expected the arguments in parentheses first, got {text!r}{_CALL_HELP}")
    args = node()
    take("->")
    returns = node()
    if peek() is not None:
        raise _fail("call", f"unexpected {peek()!r} after the return value in {text!r}{_CALL_HELP}")
    assert isinstance(args, tuple)
    return CallSignature(args, returns)


@functools.lru_cache(maxsize=64)
def _parse_call_cached(text: str) -> CallSignature:
    return parse_call(text)  # CallSignature is frozen: sharing one parse is safe


_CALL_HELP = (
    "; expected forward's positional arguments then its return value as nested tuples of tensor names, "
    "e.g. '(input, (h0, c0)) -> (output, (h_n, c_n))'"
)


@dataclass(frozen=True, slots=True)
class InputDecl:
    """``[io.inputs.NAME]``: one input of the user's module."""

    dims: tuple[int | str, ...]
    """Static sizes as ints, dynamic axes as ``"batch"``/``"seq"``."""
    dtype: Literal["float32", "float16", "int64", "int32"] = "float32"
    range: tuple[int, int] | None = None
    """Inclusive ``[low, high]`` of integer ids (``[0, vocab_size - 1]``); required for integer inputs."""

    def __post_init__(self) -> None:
        if not self.dims:
            raise _fail("dims", "expected at least one axis")
        for k, d in enumerate(self.dims):
            if isinstance(d, int) and d < 1:
                raise _fail(f"dims[{k}]", f"expected an int >= 1 or one of {list(AXES)}, got {d}")
            if isinstance(d, str) and d not in AXES:
                raise _fail(f"dims[{k}]", f"expected an int >= 1 or one of {list(AXES)}, got {d!r}")
        for axis in AXES:
            if self.dims.count(axis) > 1:
                raise _fail("dims", f"axis '{axis}' appears twice in {list(self.dims)}")
        if self.range is not None:
            if self.dtype not in ("int64", "int32"):
                raise _fail("range", f"only for integer inputs (dtype 'int64' or 'int32'), not '{self.dtype}'")
            if self.range[0] > self.range[1]:
                raise _fail("range", f"expected [low, high] with low <= high, got {list(self.range)}")
            bits = 63 if self.dtype == "int64" else 31
            if self.range[0] < -(2**bits) or self.range[1] >= 2**bits - 1:
                raise _fail("range", f"{list(self.range)} does not fit {self.dtype}")


LENGTHS_DECL = InputDecl(dims=("batch",), dtype="int64")
"""``lengths`` needs no declaration: int64 ``[batch]``, each in ``[1, seq]``."""


@dataclass(frozen=True, slots=True)
class IOConfig:
    """``[io]`` (``source = "python"``): how the user's module is called and what its inputs are.

    Output shapes and dtypes are found by running the module; states pair by name (``h0`` → ``h_n``,
    ``c0`` → ``c_n``, ``h0.k`` → ``h_n.k``) unless ``state`` declares the pairs.
    """

    call: str
    inputs: dict[str, InputDecl] = field(default_factory=dict)
    state: dict[str, str] | None = None
    """``{input: output}`` state pairs carried between chunks; ``{}`` = none (the module is not streamed)."""

    def __post_init__(self) -> None:
        sig = parse_call(self.call)
        ins, outs = sig.input_names, sig.output_names
        for name in ins:
            if not INPUT_NAME.match(name):
                raise _fail(
                    "call",
                    f"argument {name!r} is not a contract input name; use input, lengths, h0, c0 (h0.k, c0.k "
                    "per layer)",
                )
        for name in outs:
            if not OUTPUT_NAME.match(name):
                raise _fail("call", f"return name {name!r} is not a valid tensor name")
        for names, side in ((ins, "argument"), (outs, "return")):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise _fail("call", f"{side} name(s) {dupes} appear twice in {self.call!r}")
        shared = sorted(set(ins) & set(outs))
        if shared:
            raise _fail(
                "call", f"{shared} named both an argument and a return value; inputs and outputs never share a name"
            )
        for name in outs:
            if INPUT_NAME.match(name):
                raise _fail("call", f"return value named {name!r}, an input name; name states h_n, c_n (h_n.k)")
        if "input" not in ins:
            raise _fail("call", f"no argument is named 'input' in {self.call!r}")
        if "output" not in outs:
            raise _fail("call", f"no return value is named 'output' in {self.call!r} (name the main output 'output')")
        for base in ("h0", "c0"):
            if base in ins and any(n.startswith(f"{base}.") for n in ins):
                raise _fail("call", f"mixes '{base}' and per-layer '{base}.k' arguments; use one form")
        for name in self.inputs:
            if name not in ins:
                raise _fail(f"inputs.{name}", f"not an argument in call = {self.call!r}")
        for name in ins:
            if name != "lengths" and name not in self.inputs:
                raise _fail(f"inputs.{name}", "required key is missing: declare its dims (and dtype, range)")
        for name, decl in self.declarations().items():
            _check_decl(name, decl)
        if self.state is not None:
            for src, dst in self.state.items():
                if src not in ins or not STATE_INPUT.match(src):
                    raise _fail(f"state.{src}", f"expected a state argument of call (h0, c0, h0.k, c0.k), got {src!r}")
                if dst not in outs:
                    raise _fail(f"state.{src}", f"{dst!r} is not a return value of call = {self.call!r}")

    @property
    def signature(self) -> CallSignature:
        """:attr:`call` parsed (once per distinct text: it is asked on every state and declaration lookup)."""
        return _parse_call_cached(self.call)

    def declarations(self) -> dict[str, InputDecl]:
        """Every argument's declaration in call order (``lengths`` gets :data:`LENGTHS_DECL` by default)."""
        return {n: self.inputs.get(n, LENGTHS_DECL) for n in self.signature.input_names}

    def state_pairs(self) -> list[tuple[str, str]]:
        """``(input, output)`` pairs: declared, or by name (``h0`` → ``h_n``, ``c0.k`` → ``c_n.k``)."""
        sig = self.signature
        if self.state is not None:
            return [(src, self.state[src]) for src in sig.input_names if src in self.state]
        outs = set(sig.output_names)
        pairs = []
        for src in sig.input_names:
            if STATE_INPUT.match(src):
                dst = src.replace("0", "_n", 1)
                if dst in outs:
                    pairs.append((src, dst))
        return pairs


def _check_decl(name: str, decl: InputDecl) -> None:
    where = f"inputs.{name}"
    if name == "lengths":
        if decl.dims != ("batch",) or decl.dtype != "int64" or decl.range is not None:
            raise _fail(
                where, 'lengths are int64 [batch] in [1, seq]: declare dims = ["batch"], dtype = "int64" or omit it'
            )
        return
    if "batch" not in decl.dims:
        raise _fail(f"{where}.dims", f"has no 'batch' axis: {list(decl.dims)}")
    if name == "input":
        if "seq" not in decl.dims:
            raise _fail(
                f"{where}.dims", f'has no \'seq\' axis: {list(decl.dims)} (batch_first: ["batch", "seq", ...])'
            )
        if decl.dtype in ("int64", "int32") and decl.range is None:
            raise _fail(f"{where}.range", "required for integer ids: [0, vocab_size - 1]")
    elif "seq" in decl.dims:
        raise _fail(f"{where}.dims", f"a state has no 'seq' axis: {list(decl.dims)}")
    elif decl.range is not None:
        raise _fail(f"{where}.range", "only for integer ids of 'input'")


@dataclass(frozen=True, slots=True)
class CheckpointConfig:
    """``[checkpoint]``: how a ``--checkpoint``'s keys map to the model's."""

    map: dict[str, str] = field(default_factory=dict)
    """``{"lstm." = "core.rnn."}``: a key ending in ``.`` renames that prefix, any other key one exact name.
    Overrides the automatic structural mapping."""

    def __post_init__(self) -> None:
        for src, dst in self.map.items():
            if not src:
                raise _fail("map", "an empty key would rename every tensor; name a prefix like 'lstm.'")
            if src.endswith(".") and dst and not dst.endswith("."):
                raise _fail(f"map.{src}", f"a prefix maps to a prefix: expected {dst + '.'!r} (or ''), got {dst!r}")


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    """A whole config file."""

    model: ModelConfig
    export: ExportConfig = field(default_factory=ExportConfig)
    shapes: ShapesConfig = field(default_factory=ShapesConfig)
    io: IOConfig | None = None
    """``[io]``: required with ``source = "python"``, refused otherwise."""
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig, metadata=OMIT_DEFAULT)
    base_dir: str = "."
    """Directory the config was read from; relative file paths in it resolve against this."""

    def __post_init__(self) -> None:
        if self.model.is_python:
            self._check_python()
            return
        if self.io is not None:
            raise _fail("io", "only with model.source = 'python'; a zoo model's tensors come from [model]")
        if self.export.allow_tracer_warnings:
            raise _fail(
                "export.allow_tracer_warnings",
                "only with model.source = 'python' (zoo models are checked by seqdeploy itself)",
            )
        if self.export.step and self.model.bidirectional:
            raise _fail(
                "export.step",
                "a bidirectional model has no single-step form (the backward direction "
                "needs the whole sequence); set export.step = false",
            )
        if self.export.step and self.export.lengths:
            raise _fail(
                "export.step",
                "the step graph processes one token per row; lengths do not apply. "
                "Set export.lengths = false or export.step = false",
            )
        if self.export.step and not self.export.initial_state:
            raise _fail("export.step", "a step graph needs states as inputs; set export.initial_state = true")
        head = self.model.head
        if self.export.step and head.task == "classify" and head.pooling not in ("last", "output_last"):
            raise _fail(
                "export.step",
                f"a step graph cannot pool '{head.pooling}' over time; use model.head.pooling = 'last'",
            )

    def _check_python(self) -> None:
        if self.io is None:
            raise _fail(
                "io",
                "required with model.source = 'python': call = '(input, (h0, c0)) -> (output, (h_n, c_n))' and "
                "[io.inputs.NAME] dims/dtype/range for each argument",
            )
        if self.export.lengths:
            raise _fail("export.lengths", "with source = 'python' add 'lengths' to [io] call instead")
        if not self.export.initial_state:
            raise _fail("export.initial_state", "with source = 'python' the states are those [io] call passes")
        if self.export.step:
            raise _fail(
                "export.step",
                "no step graph for source = 'python' (seqdeploy cannot derive one step of your module); stream "
                "the sequence graph in chunks instead (states carried), or set export.step = false",
            )
