"""FLOPs of the recurrent part of a model, from its config (no torch).

Per token, layer and direction a gate block costs two matrix-vector products, ``W·x`` and ``R·h``:
``2 · gates · H · (I + H)`` FLOPs, with ``gates`` = 4 (LSTM), 3 (GRU), 1 (RNN), ``I`` the layer's
input width (the feature size for layer 0, ``directions · H_prev`` above) and ``H`` its hidden size.
Element-wise gate maths, the embedding and the head are excluded: they are small and not matmuls, and
this number is compared with a matrix-multiply rate.
"""

from __future__ import annotations

from seqdeploy.config import ModelConfig
from seqdeploy.models.registry import family

__all__ = ["recurrent_flops", "recurrent_flops_per_token"]


def recurrent_flops_per_token(cfg: ModelConfig) -> int:
    """Recurrent FLOPs for one token of one sequence, all layers and directions."""
    gates = family(cfg.base_cell).gates
    dirs = cfg.num_directions
    total = 0
    in_size = cfg.feature_size
    for h in cfg.layer_sizes:
        total += dirs * 2 * gates * h * (in_size + h)
        in_size = dirs * h
    return total


def recurrent_flops(cfg: ModelConfig, batch: int, seq: int) -> int:
    """Recurrent FLOPs of one call on ``batch`` sequences of ``seq`` tokens."""
    return recurrent_flops_per_token(cfg) * batch * seq
