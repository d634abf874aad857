"""Build models from configs, load checkpoints, and derive the modules that are traced for export."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from seqdeploy.config import PipelineConfig
from seqdeploy.errors import VectorsError
from seqdeploy.models.checkpoint import CheckpointLoad, load_checkpoint
from seqdeploy.models.seq_model import CellStackCore, LayerChainCore, SequenceModel, StepModel
from seqdeploy.models.vectors import VectorsReport, load_vocab, sniff_vectors_format, vectors_for_vocab

__all__ = [
    "CheckpointLoad",
    "VocabReport",
    "build_model",
    "check_unused_vectors",
    "exportable",
    "load_checkpoint",
    "step_module",
]


@dataclass(frozen=True, slots=True)
class VocabReport:
    """``[model.embedding] vocab`` without ``vectors``: the vocabulary was checked (it exists, is well formed
    and has ``vocab_size`` tokens) — ``package`` serves it to read text — and nothing was loaded from it.
    Recorded in the manifest's ``embedding_vectors`` (``used: false``) like vectors that were not used.
    """

    vocab: str
    tokens: int
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form for the manifest."""
        return {
            "used": False,
            "path": self.vocab,  # like every embedding_vectors record; export prints "vocab: PATH (N tokens) checked"
            "vocab": self.vocab,
            "vocab_tokens": self.tokens,
            "reason": f"no vectors file: the vocabulary was checked ({self.tokens} tokens, one per id) and "
            "initialises nothing",
        }


def build_model(
    cfg: PipelineConfig, *, load_vectors: bool = True
) -> tuple[SequenceModel, VectorsReport | VocabReport | None]:
    """A seeded, eval-mode :class:`SequenceModel` for ``cfg`` (and the vectors report, if any).

    Args:
        cfg: The validated config.
        load_vectors: Read ``[model.embedding] vectors`` (and check ``vocab``). Off when weights come from a
            state_dict anyway (rebuilding an exported model must not need the original files).

    Raises:
        VectorsError: A vectors or vocabulary file is missing, malformed or does not fit the config — a
            ``vocab`` alone too: a wrong path is never silently ignored.
    """
    torch.manual_seed(cfg.model.seed)
    model = SequenceModel(cfg.model, lengths=cfg.export.lengths, initial_state=cfg.export.initial_state)
    report: VectorsReport | VocabReport | None = None
    emb = cfg.model.embedding
    if load_vectors and emb is not None and emb.vectors is None and emb.vocab is not None:
        path = Path(cfg.base_dir) / emb.vocab
        report = VocabReport(str(path.resolve()), len(_vocab(cfg)))
    if load_vectors and emb is not None and emb.vectors is not None and model.embedding is not None:
        assert emb.vocab is not None  # EmbeddingConfig guarantees it
        base = Path(cfg.base_dir)
        vocab = _vocab(cfg)
        matrix, vectors = vectors_for_vocab(
            base / emb.vectors,
            vocab,
            emb.dim,
            fmt=emb.vectors_format,
            oov=emb.oov,
            padding_idx=emb.padding_idx,
            seed=cfg.model.seed,
        )
        report = dataclasses.replace(vectors, vocab=str((base / emb.vocab).resolve()))
        with torch.no_grad():
            model.embedding.weight.copy_(torch.from_numpy(matrix))
    # Export in eval: dropout must not reach the graph (pytorch#103681: eval() after capture is too late).
    model.eval()
    return model, report


def _vocab(cfg: PipelineConfig) -> list[str]:
    emb = cfg.model.embedding
    assert emb is not None and emb.vocab is not None
    path = Path(cfg.base_dir) / emb.vocab
    vocab = load_vocab(path)
    if len(vocab) != emb.vocab_size:
        raise VectorsError(
            f"{path}: has {len(vocab)} tokens but model.embedding.vocab_size = {emb.vocab_size}; set "
            f"vocab_size = {len(vocab)}"
        )
    return vocab


def check_unused_vectors(cfg: PipelineConfig) -> dict[str, object] | None:
    """With ``--checkpoint`` the checkpoint's embedding wins over ``vectors``: the files are still checked
    (they must exist and be readable, the vocabulary must fit) so that a wrong path is never silently
    ignored, and the returned record (for the manifest) says they were not used. A ``vocab`` without
    ``vectors`` is checked and recorded the same way (:class:`VocabReport`).

    Raises:
        VectorsError: A vectors or vocabulary file is missing, malformed or does not fit the config.
    """
    emb = cfg.model.embedding
    if emb is None or (emb.vectors is None and emb.vocab is None):
        return None
    tokens = len(_vocab(cfg))
    if emb.vectors is None:
        assert emb.vocab is not None
        return VocabReport(str((Path(cfg.base_dir) / emb.vocab).resolve()), tokens).to_dict()
    path = Path(cfg.base_dir) / emb.vectors
    sniffed = sniff_vectors_format(path)  # exists, is a file, is a supported format
    fmt = sniffed if emb.vectors_format == "auto" else emb.vectors_format
    return {
        "used": False,
        "path": str(path),
        "format": fmt,
        "vocab": str((Path(cfg.base_dir) / emb.vocab).resolve()) if emb.vocab else None,
        "reason": "--checkpoint was given: the checkpoint's embedding weights win over the vectors file",
    }


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
