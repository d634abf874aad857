"""FLOPs of the recurrent part of a model, from its config (no torch).

Per token, layer and direction a gate block costs two matrix-vector products, ``W·x`` and ``R·h``:
``2 · gates · H · (I + H)`` FLOPs, with ``gates`` = 4 (LSTM), 3 (GRU), 1 (RNN), ``I`` the layer's
input width (the feature size for layer 0, ``directions · H_prev`` above) and ``H`` its hidden size.
Element-wise gate maths, the embedding and the head are excluded: they are small and not matmuls, and
this number is compared with a matrix-multiply rate.
"""

from __future__ import annotations

from collections.abc import Sequence

from seqdeploy.config import ModelConfig
from seqdeploy.models.registry import family

__all__ = ["recurrent_flops_per_token", "stack_flops_per_token"]


def stack_flops_per_token(family_name: str, input_size: int, hidden_sizes: Sequence[int], directions: int) -> int:
    """Recurrent FLOPs for one token through a stack of layers of one family (``rnn``, ``gru``, ``lstm``):
    the one formula for zoo configs and the recurrent submodules found in a user's module.
    """
    gates = family(family_name).gates
    total = 0
    in_size = input_size
    for h in hidden_sizes:
        total += directions * 2 * gates * h * (in_size + h)
        in_size = directions * h
    return total


def recurrent_flops_per_token(cfg: ModelConfig) -> int:
    """Recurrent FLOPs for one token of one sequence, all layers and directions."""
    return stack_flops_per_token(cfg.base_cell, cfg.feature_size, cfg.layer_sizes, cfg.num_directions)
