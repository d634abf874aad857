"""Recurrence families: the facts about RNN, GRU and LSTM that every stage shares (no torch import)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["FAMILIES", "Family", "family"]


@dataclass(frozen=True, slots=True)
class Family:
    """One recurrence family.

    Attributes:
        name: ``rnn``, ``gru`` or ``lstm``.
        gates: Number of gate blocks in ``weight_ih``/``weight_hh`` (FLOPs scale with it).
        has_cell_state: Whether the family carries ``c`` besides ``h``.
        module: ``torch.nn`` class of the whole-sequence module.
        cell: ``torch.nn`` class of the one-step cell.
        onnx_op: The ONNX operator the TorchScript exporter emits.
    """

    name: Literal["rnn", "gru", "lstm"]
    gates: int
    has_cell_state: bool
    module: str
    cell: str
    onnx_op: str


FAMILIES: dict[str, Family] = {
    "rnn": Family("rnn", 1, False, "RNN", "RNNCell", "RNN"),
    "gru": Family("gru", 3, False, "GRU", "GRUCell", "GRU"),
    "lstm": Family("lstm", 4, True, "LSTM", "LSTMCell", "LSTM"),
}


def family(name: str) -> Family:
    """The family called ``name``; an unknown name lists the known ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise KeyError(f"unknown recurrence family '{name}'; known: {', '.join(FAMILIES)}") from None
