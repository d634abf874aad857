"""Frozen, validated configuration dataclasses.

The TOML key names are a public contract (see ``docs/config.md``): keys may be added, never renamed.
Field-level type checks happen in :mod:`seqdeploy.config_io`; the cross-field checks below run in
``__post_init__`` and raise :class:`~seqdeploy.errors.ConfigError` with the key *relative* to the
table, which the loader prefixes with the table's path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from seqdeploy.errors import ConfigError

CellName = Literal["rnn_tanh", "rnn_relu", "gru", "lstm", "rnn_cell", "gru_cell", "lstm_cell"]
CELLS: tuple[str, ...] = ("rnn_tanh", "rnn_relu", "gru", "lstm", "rnn_cell", "gru_cell", "lstm_cell")
STACK_CELLS: tuple[str, ...] = ("rnn_cell", "gru_cell", "lstm_cell")
"""Cells built as a Python loop of one ``nn.*Cell`` per layer (the PyTorch cell-stack idiom)."""


def _fail(key: str, message: str) -> ConfigError:
    return ConfigError(f"{key}: {message}")


@dataclass(frozen=True, slots=True)
class EmbeddingConfig:
    """``[model.embedding]``: token ids in instead of float features."""

    vocab_size: int
    dim: int
    padding_idx: int | None = 0
    vectors: str | None = None
    """GloVe or word2vec *text* file, relative to the config file. Rows are matched through ``vocab``."""
    vocab: str | None = None
    """One token per line; line k is row k of the embedding. Required with ``vectors``."""
    vectors_format: Literal["auto", "glove", "word2vec"] = "auto"
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
    pooling: Literal["last", "mean", "max"] = "last"
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


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """``[model]``: the recurrent model.

    Whole-sequence cells (``rnn_tanh``, ``rnn_relu``, ``gru``, ``lstm``) take ``hidden_size`` and
    ``num_layers``. Cell stacks (``*_cell``) take either the same or ``hidden_sizes`` (one per layer).
    """

    cell: CellName
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

    def __post_init__(self) -> None:
        is_stack = self.cell in STACK_CELLS
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
                    f"for cell = '{self.cell}'",
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
                f"cell stacks ('{self.cell}') are unidirectional; use cell = "
                f"'{self.cell.removesuffix('_cell').replace('rnn', 'rnn_tanh')}' for a bidirectional model",
            )
        if self.nonlinearity != "tanh" and self.cell != "rnn_cell":
            raise _fail("nonlinearity", f"only valid for cell = 'rnn_cell', not '{self.cell}'")

    @property
    def is_cell_stack(self) -> bool:
        """Whether the model is a Python loop over one ``nn.*Cell`` per layer."""
        return self.cell in STACK_CELLS

    @property
    def base_cell(self) -> Literal["rnn", "gru", "lstm"]:
        """The recurrence family: ``rnn``, ``gru`` or ``lstm``."""
        if "lstm" in self.cell:
            return "lstm"
        if "gru" in self.cell:
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


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    """A whole config file."""

    model: ModelConfig
    export: ExportConfig = field(default_factory=ExportConfig)
    shapes: ShapesConfig = field(default_factory=ShapesConfig)
    base_dir: str = "."
    """Directory the config was read from; relative file paths in it resolve against this."""

    def __post_init__(self) -> None:
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
        if self.export.step and self.model.head.task == "classify" and self.model.head.pooling != "last":
            raise _fail(
                "export.step",
                f"a step graph cannot pool '{self.model.head.pooling}' over time; use model.head.pooling = 'last'",
            )
