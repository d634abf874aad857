"""Recurrent sequence models built from a config: an optional embedding, a recurrent core, a head.

``SequenceModel.forward`` takes the graph inputs positionally in IOSpec order and returns the graph
outputs in IOSpec order, so the same module is the eager reference *and* the thing that is traced.

Cores all work time-major (``[seq, batch, feature]``); ``batch_first`` is a transpose at the edges,
which the TorchScript exporter emits as ``Transpose`` (never LSTM ``layout=1``, which TensorRT rejects).
States travel as a list in IOSpec order.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqdeploy.config import ModelConfig
from seqdeploy.models.registry import family

__all__ = ["CellStackCore", "LayerChainCore", "NativeCore", "SequenceModel", "StepModel"]


class Core(nn.Module):
    """A recurrent core: ``(x [T, B, F], lengths | None, states) -> (y [T, B, D*H_top], states_out)``."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.sizes: tuple[int, ...] = cfg.layer_sizes
        self.dirs = cfg.num_directions
        self.has_c = family(cfg.base_cell).has_cell_state
        self.per_layer = cfg.per_layer_state

    def zero_states(self, x: Tensor) -> list[Tensor]:
        """Zero states sized from ``x``'s batch axis (``x.size(1)`` keeps batch dynamic in the trace)."""
        batch = x.size(1)
        kinds = 2 if self.has_c else 1
        if self.per_layer:
            return [x.new_zeros(1, batch, size) for _ in range(kinds) for size in self.sizes]
        rows = len(self.sizes) * self.dirs
        return [x.new_zeros(rows, batch, self.sizes[0]) for _ in range(kinds)]

    def split_layers(self, states: list[Tensor]) -> tuple[list[Tensor], list[Tensor] | None]:
        """Per-layer ``[dirs, B, H_k]`` views of IOSpec-ordered states: ``(hs, cs)``."""
        n = len(self.sizes)
        if self.per_layer:
            hs = states[:n]
            cs = states[n:] if self.has_c else None
        else:
            d = self.dirs
            hs = [states[0][k * d : (k + 1) * d] for k in range(n)]
            cs = [states[1][k * d : (k + 1) * d] for k in range(n)] if self.has_c else None
        return hs, cs

    def join_layers(self, hs: list[Tensor], cs: list[Tensor] | None) -> list[Tensor]:
        """Inverse of :meth:`split_layers`."""
        if self.per_layer:
            return [*hs, *(cs or [])]
        out = [torch.cat(hs, 0)]
        if cs is not None:
            out.append(torch.cat(cs, 0))
        return out

    def top_hidden(self, states_out: list[Tensor]) -> Tensor:
        """The top layer's final hidden state, directions concatenated: ``[B, D*H_top]``."""
        hs, _ = self.split_layers(states_out)
        top = hs[-1]
        return torch.cat([top[i] for i in range(self.dirs)], dim=-1)


def _run_module(
    module: nn.Module, x: Tensor, lengths: Tensor | None, hx: Tensor | tuple[Tensor, Tensor]
) -> tuple[Tensor, Tensor | tuple[Tensor, Tensor]]:
    """Run one ``nn.RNN``/``nn.GRU``/``nn.LSTM``, packing when ``lengths`` is given.

    pack → RNN → pad inside one module is the shape the TorchScript exporter folds into the
    ``sequence_lens`` input of the ONNX op (export-notes.md, "Variable-length batches").
    ``enforce_sorted=False`` so users need not sort batches; the exporter adds the sort/unsort ops.
    """
    if lengths is None:
        y, h = module(x, hx)
        return y, h
    total = x.size(0)
    if lengths.device.type != "cpu":
        # pack_padded_sequence wants CPU lengths; everything else (masks, pooling) uses them on the model's
        # device. The condition is Python, so nothing is recorded when tracing on the CPU.
        lengths = lengths.cpu()
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    y_packed, h = module(packed, hx)
    y, _ = pad_packed_sequence(y_packed, total_length=total)
    return y, h


class NativeCore(Core):
    """``nn.RNN``/``nn.GRU``/``nn.LSTM`` with any number of layers and directions."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        fam = family(cfg.base_cell)
        cls = getattr(nn, fam.module)
        kwargs: dict[str, object] = {}
        if fam.name == "rnn":
            kwargs["nonlinearity"] = cfg.activation
        assert cfg.hidden_size is not None
        self.rnn = cls(
            cfg.feature_size,
            cfg.hidden_size,
            len(cfg.layer_sizes),
            bidirectional=cfg.bidirectional,
            # PyTorch warns about dropout on a single layer (it has no effect there).
            dropout=cfg.dropout if len(cfg.layer_sizes) > 1 else 0.0,
            **kwargs,
        )

    def forward(self, x: Tensor, lengths: Tensor | None, states: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        hx: Tensor | tuple[Tensor, Tensor] = (states[0], states[1]) if self.has_c else states[0]
        y, h = _run_module(self.rnn, x, lengths, hx)
        return y, list(h) if isinstance(h, tuple) else [h]


class CellStackCore(Core):
    """The PyTorch cell-stack idiom: one ``nn.*Cell`` per layer, a Python loop over time.

    Each layer's ``h`` feeds the next layer; sizes may differ per layer (80 → 50 → 20 → 10).
    With ``lengths``, a row's state is frozen after its last valid step and its output is zero there,
    matching ``pack_padded_sequence`` semantics.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        fam = family(cfg.base_cell)
        cls = getattr(nn, fam.cell)
        self.dropout = nn.Dropout(cfg.dropout)
        cells = []
        in_size = cfg.feature_size
        for size in self.sizes:
            kwargs: dict[str, object] = {"nonlinearity": cfg.activation} if fam.name == "rnn" else {}
            cells.append(cls(in_size, size, **kwargs))
            in_size = size
        self.cells = nn.ModuleList(cells)

    def forward(self, x: Tensor, lengths: Tensor | None, states: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        hs_in, cs_in = self.split_layers(states)
        hs = [h[0] for h in hs_in]
        cs = [c[0] for c in cs_in] if cs_in is not None else None
        steps = []
        for t in range(x.size(0)):
            inp = x[t]
            keep = None if lengths is None else (lengths > t).unsqueeze(1)
            for k, cell in enumerate(self.cells):
                if cs is not None:
                    h_new, c_new = cell(inp, (hs[k], cs[k]))
                    cs[k] = c_new if keep is None else torch.where(keep, c_new, cs[k])
                else:
                    h_new = cell(inp, hs[k])
                hs[k] = h_new if keep is None else torch.where(keep, h_new, hs[k])
                out = h_new if keep is None else torch.where(keep, h_new, torch.zeros_like(h_new))
                inp = self.dropout(out) if k + 1 < len(self.cells) else out
            steps.append(inp)
        y = torch.stack(steps, 0)
        return y, self.join_layers([h.unsqueeze(0) for h in hs], [c.unsqueeze(0) for c in cs] if cs else None)


class LayerChainCore(Core):
    """A cell stack rewritten as a chain of one-layer ``nn.RNN``/``nn.GRU``/``nn.LSTM`` modules.

    Exact (the weights are copied, gate order is the same in ``*Cell`` and the modules) and exportable
    with a dynamic ``seq``: the TorchScript exporter would unroll the cell loop at the traced length,
    but emits one native ONNX recurrent op per module.
    """

    def __init__(self, cfg: ModelConfig, stack: CellStackCore) -> None:
        super().__init__(cfg)
        fam = family(cfg.base_cell)
        cls = getattr(nn, fam.module)
        layers = []
        for cell in stack.cells:
            kwargs: dict[str, object] = {"nonlinearity": cfg.activation} if fam.name == "rnn" else {}
            layer = cls(cell.input_size, cell.hidden_size, 1, **kwargs)
            with torch.no_grad():
                layer.weight_ih_l0.copy_(cell.weight_ih)
                layer.weight_hh_l0.copy_(cell.weight_hh)
                layer.bias_ih_l0.copy_(cell.bias_ih)
                layer.bias_hh_l0.copy_(cell.bias_hh)
            layers.append(layer)
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor, lengths: Tensor | None, states: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        hs_in, cs_in = self.split_layers(states)
        hs: list[Tensor] = []
        cs: list[Tensor] = []
        y = x
        for k, layer in enumerate(self.layers):
            hx: Tensor | tuple[Tensor, Tensor] = (hs_in[k], cs_in[k]) if cs_in is not None else hs_in[k]
            y, h = _run_module(layer, y, lengths, hx)
            if isinstance(h, tuple):
                hs.append(h[0])
                cs.append(h[1])
            else:
                hs.append(h)
        return y, self.join_layers(hs, cs if cs_in is not None else None)


class SequenceModel(nn.Module):
    """Embedding (optional) → recurrent core → head, with graph I/O in IOSpec order.

    ``forward(input, [lengths], [h0, c0 | h0.0, ..., c0.0, ...]) -> (output, h_n, [c_n] | h_n.0, ...)``.
    """

    def __init__(self, cfg: ModelConfig, *, lengths: bool, initial_state: bool) -> None:
        super().__init__()
        self.cfg = cfg
        self.use_lengths = lengths
        self.initial_state = initial_state
        emb = cfg.embedding
        self.embedding = (
            nn.Embedding(emb.vocab_size, emb.dim, padding_idx=emb.padding_idx) if emb is not None else None
        )
        if self.embedding is not None and emb is not None and emb.freeze:
            self.embedding.weight.requires_grad_(False)
        self.core: Core = CellStackCore(cfg) if cfg.is_cell_stack else NativeCore(cfg)
        top = cfg.layer_sizes[-1] * cfg.num_directions
        head = cfg.head
        self.head = nn.Linear(top, head.num_classes) if head.task != "none" and head.num_classes else None
        fam = family(cfg.base_cell)
        self.num_state_inputs = (2 if fam.has_cell_state else 1) * (len(cfg.layer_sizes) if cfg.per_layer_state else 1)

    def forward(self, *args: Tensor) -> tuple[Tensor, ...]:
        x, lengths, states = self._unpack(list(args))
        if self.cfg.batch_first:
            x = x.transpose(0, 1)
        if self.embedding is not None:
            x = self.embedding(x)
        if states is None:
            states = self.core.zero_states(x)
        y, states_out = self.core(x, lengths, states)
        out = self._head(y, lengths, states_out)
        return (out, *states_out)

    def _unpack(self, args: list[Tensor]) -> tuple[Tensor, Tensor | None, list[Tensor] | None]:
        expected = 1 + int(self.use_lengths) + (self.num_state_inputs if self.initial_state else 0)
        if len(args) != expected:
            raise TypeError(f"SequenceModel.forward takes {expected} tensors in IOSpec order, got {len(args)}")
        x = args[0]
        lengths = args[1] if self.use_lengths else None
        rest = args[1 + int(self.use_lengths) :]
        return x, lengths, (rest if self.initial_state else None)

    def _head(self, y: Tensor, lengths: Tensor | None, states_out: list[Tensor]) -> Tensor:
        head = self.cfg.head
        mask = None
        if lengths is not None:
            steps = torch.arange(y.size(0), device=y.device).unsqueeze(1)
            mask = (steps < lengths.unsqueeze(0)).unsqueeze(2)  # [T, B, 1]
        if head.task == "classify":
            assert self.head is not None
            if head.pooling == "last":
                # The top layer's final state per direction: with lengths this is each row's last valid
                # step (forward) and its first step (backward), exactly as h_n holds them.
                pooled = self.core.top_hidden(states_out)
            elif head.pooling == "output_last":
                # The recurrent output at each row's last valid step (the tutorial's `fc(out[-1])`, made
                # length-aware). Bidirectional: the backward half there has seen only that one step, which
                # is what out[-1] holds — not h_n's backward state ("last").
                pooled = _last_valid_step(y, lengths)
            elif head.pooling == "mean":
                pooled = y.mean(0) if lengths is None else y.sum(0) / lengths.unsqueeze(1).to(y.dtype)
            else:
                if mask is not None:
                    y = y.masked_fill(~mask, float("-inf"))
                pooled = y.max(0).values
            logits: Tensor = self.head(pooled)
            return logits
        out = y if self.head is None else self.head(y)
        if mask is not None and self.head is not None:
            # Padded steps are zero in every output, as the recurrent op's Y is (not the head's bias).
            out = out * mask.to(out.dtype)
        return out.transpose(0, 1) if self.cfg.batch_first else out


def _last_valid_step(y: Tensor, lengths: Tensor | None) -> Tensor:
    """``y[lengths - 1, b]`` per row of a time-major ``[T, B, W]`` tensor (``y[-1]`` without lengths)."""
    if lengths is None:
        return y[-1]
    # gather, not advanced indexing: it exports as one GatherElements with dynamic batch and seq.
    idx = (lengths - 1).to(torch.long).view(1, -1, 1).expand(1, y.size(1), y.size(2))
    return y.gather(0, idx).squeeze(0)


class StepModel(nn.Module):
    """One time step of a unidirectional :class:`SequenceModel`, states in and out (streaming).

    ``forward(input_t, h0, [c0]) -> (output_t, h_n, [c_n])`` where ``input_t`` is ``[batch]`` ids or
    ``[batch, feature]`` features and ``output_t`` is ``[batch, width]``.
    """

    def __init__(self, model: SequenceModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, *args: Tensor) -> tuple[Tensor, ...]:
        x = args[0].unsqueeze(0)  # [1, B, ...]: one time step, time-major
        states = list(args[1:])
        m = self.model
        if m.embedding is not None:
            x = m.embedding(x)
        y, states_out = m.core(x, None, states)
        y = y[0]
        if m.head is not None:
            y = m.head(m.core.top_hidden(states_out) if m.cfg.head.task == "classify" else y)
        return (y, *states_out)
