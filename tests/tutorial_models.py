"""Plain-PyTorch models as a standard RNN tutorial writes them (tutorial attribute names: ``rnn``, ``lstm``,
``fc``, ``cell_1``…), used as users' own modules (``source = "python"``) and as the source of raw
``state_dict``s for zoo models. Nothing here knows about seqdeploy.
"""

from __future__ import annotations

import torch
from torch import nn


class RNNTagger(nn.Module):
    """nn.RNN (1 or 4 layers) with a per-step linear layer."""

    def __init__(self, input_size: int = 10, hidden_size: int = 20, num_layers: int = 1, output_size: int = 5):
        super().__init__()
        self.rnn = nn.RNN(input_size, hidden_size, num_layers)
        self.fc = nn.Linear(hidden_size, output_size)

    def forward(self, x, h0):
        out, h = self.rnn(x, h0)
        return self.fc(out), h


class LSTMNet(nn.Module):
    """nn.LSTM (1 or 4 layers, optionally bidirectional) with a per-step linear layer."""

    def __init__(
        self,
        input_size: int = 10,
        hidden_size: int = 20,
        num_layers: int = 1,
        output_size: int = 5,
        bidirectional: bool = False,
    ):
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers, bidirectional=bidirectional)
        self.fc = nn.Linear(hidden_size * (2 if bidirectional else 1), output_size)

    def forward(self, x, state):
        out, (h, c) = self.lstm(x, state)
        return self.fc(out), (h, c)


class BatchFirstGRU(nn.Module):
    """nn.GRU with batch_first=True and a packed batch (lengths), returning the raw output."""

    def __init__(self, input_size: int = 6, hidden_size: int = 8):
        super().__init__()
        self.gru = nn.GRU(input_size, hidden_size, num_layers=2, batch_first=True)

    def forward(self, x, lengths, h0):
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, h = self.gru(packed, h0)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
        return out, h


class RNNCellStack(nn.Module):
    """nn.RNNCell layers looped over time in Python: 80 -> 50 -> 20 -> 10, or 80 x 3."""

    def __init__(self, sizes: tuple[int, ...] = (80, 50, 20, 10)):
        super().__init__()
        self.sizes = tuple(sizes)
        for k in range(len(sizes) - 1):
            setattr(self, f"cell_{k + 1}", nn.RNNCell(sizes[k], sizes[k + 1]))

    def forward(self, x, hs):
        hs = list(hs)
        outs = []
        for t in range(x.size(0)):
            inp = x[t]
            for k in range(len(self.sizes) - 1):
                hs[k] = getattr(self, f"cell_{k + 1}")(inp, hs[k])
                inp = hs[k]
            outs.append(inp)
        return torch.stack(outs), hs


class LSTMCellStack(nn.Module):
    """nn.LSTMCell layers looped over time in Python (10 -> 20 -> 20)."""

    def __init__(self, input_size: int = 10, hidden_size: int = 20):
        super().__init__()
        self.cell_1 = nn.LSTMCell(input_size, hidden_size)
        self.cell_2 = nn.LSTMCell(hidden_size, hidden_size)

    def forward(self, x, state):
        (h1, c1), (h2, c2) = state
        outs = []
        for t in range(x.size(0)):
            h1, c1 = self.cell_1(x[t], (h1, c1))
            h2, c2 = self.cell_2(h1, (h2, c2))
            outs.append(h2)
        return torch.stack(outs), ((h1, c1), (h2, c2))


class SentimentNet(nn.Module):
    """A GloVe-initialised bidirectional LSTM classifier whose head reads ``out[-1]``."""

    def __init__(self, vocab_size: int = 52, dim: int = 10, hidden: int = 6, classes: int = 3):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim)
        self.lstm = nn.LSTM(dim, hidden, bidirectional=True)
        self.fc = nn.Linear(2 * hidden, classes)

    def forward(self, x, state):
        out, (h, c) = self.lstm(self.embedding(x), state)
        return self.fc(out[-1]), (h, c)


def trained(module: nn.Module, seed: int = 7) -> nn.Module:
    """``module`` with trained-looking weights: seeded, away from the initialisation, in eval mode.

    The perturbation scales with 1/sqrt(fan-in), like the initialisation, so wide recurrent layers stay
    out of the chaotic regime where fp32 rounding alone (a batch of 1 vs 3 in PyTorch itself) grows past
    fp32 tolerances over a long sequence.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            fan_in = p.shape[-1] if p.dim() > 1 else p.shape[0]
            p.add_(torch.randn(p.shape, generator=gen) * 0.5 / fan_in**0.5)
    return module.eval()
