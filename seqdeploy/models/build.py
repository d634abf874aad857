"""Build models from configs, load checkpoints, and derive the modules that are traced for export."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from seqdeploy.config import PipelineConfig
from seqdeploy.errors import CheckpointError, VectorsError
from seqdeploy.models.seq_model import CellStackCore, LayerChainCore, SequenceModel, StepModel
from seqdeploy.models.vectors import VectorsReport, load_vocab, vectors_for_vocab

__all__ = ["build_model", "exportable", "load_checkpoint", "step_module"]


def build_model(cfg: PipelineConfig, *, load_vectors: bool = True) -> tuple[SequenceModel, VectorsReport | None]:
    """A seeded, eval-mode :class:`SequenceModel` for ``cfg`` (and the vectors report, if any).

    Args:
        cfg: The validated config.
        load_vectors: Read ``[model.embedding] vectors``. Off when weights come from a state_dict anyway
            (rebuilding an exported model must not need the original vectors file).
    """
    torch.manual_seed(cfg.model.seed)
    model = SequenceModel(cfg.model, lengths=cfg.export.lengths, initial_state=cfg.export.initial_state)
    report = None
    emb = cfg.model.embedding
    if load_vectors and emb is not None and emb.vectors is not None and model.embedding is not None:
        assert emb.vocab is not None  # EmbeddingConfig guarantees it
        base = Path(cfg.base_dir)
        vocab = load_vocab(base / emb.vocab)
        if len(vocab) != emb.vocab_size:
            raise VectorsError(
                f"{base / emb.vocab}: has {len(vocab)} tokens but model.embedding.vocab_size = "
                f"{emb.vocab_size}; set vocab_size = {len(vocab)}"
            )
        matrix, report = vectors_for_vocab(
            base / emb.vectors,
            vocab,
            emb.dim,
            fmt=emb.vectors_format,
            oov=emb.oov,
            padding_idx=emb.padding_idx,
            seed=cfg.model.seed,
        )
        with torch.no_grad():
            model.embedding.weight.copy_(torch.from_numpy(matrix))
    # Export in eval: dropout must not reach the graph (pytorch#103681: eval() after capture is too late).
    model.eval()
    return model, report


def load_checkpoint(model: SequenceModel, path: str | Path) -> None:
    """Load a state_dict into ``model`` with ``torch.load(weights_only=True)`` (never unpickles code).

    Raises:
        CheckpointError: The file is missing or not a state_dict, or its keys or shapes do not fit; the
            message lists the missing and unexpected keys.
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint not found") from None
    except Exception as exc:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError, EOFError, ... for bad files
        raise CheckpointError(
            f"{path}: cannot be read as a weights-only state_dict ({type(exc).__name__}: {exc}). Save it with "
            "torch.save(model.state_dict(), path); seqdeploy never unpickles arbitrary objects."
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a state_dict (a dict of tensors), got {type(state).__name__}")
    nonfinite = sorted(k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all()))
    if nonfinite:
        raise CheckpointError(f"{path}: tensors with NaN/Inf values: {', '.join(nonfinite)}")
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if state[k].shape != own[k].shape
    ]
    if missing or unexpected or wrong:
        lines = []
        if missing:
            lines.append(f"missing keys ({len(missing)}): {', '.join(missing)}")
        if unexpected:
            lines.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected)}")
        if wrong:
            lines.append(f"shape mismatches ({len(wrong)}): {'; '.join(wrong)}")
        raise CheckpointError(
            f"{path}: does not fit the model built from the config:\n  "
            + "\n  ".join(lines)
            + "\nCheck that [model] matches the model the checkpoint was trained with."
        )
    model.load_state_dict(state)
    model.eval()


def exportable(model: SequenceModel) -> SequenceModel:
    """The module to trace for the sequence graph: ``model`` itself, or for cell stacks a copy whose loop
    over time is replaced by a chain of one-layer recurrent modules with the same weights.

    The TorchScript exporter would unroll a Python loop at the traced length (a silently fixed ``seq``);
    the chain exports as native ONNX ops with a dynamic ``seq``.
    """
    if not isinstance(model.core, CellStackCore):
        return model
    clone = copy.deepcopy(model)
    clone.core = LayerChainCore(model.cfg, model.core)
    clone.eval()
    return clone


def step_module(model: SequenceModel) -> StepModel:
    """The single-time-step module (streaming) of a unidirectional ``model``."""
    return StepModel(model).eval()
