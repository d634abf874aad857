"""Pretrained word vectors from GloVe or word2vec *text* files, matched to a vocabulary file.

Formats:
  * GloVe: ``token v1 v2 ... vd`` per line.
  * word2vec text: a header line ``count dim``, then the same rows.

Rows are matched to the vocabulary (one token per line; line k is embedding row k). Vocabulary tokens
missing from the vectors are out-of-vocabulary (OOV) and initialised by the config's ``oov`` policy:
``random`` (seeded normal with the mean and std of the found vectors), ``zeros`` or ``mean`` (the
mean found vector). The padding row is always zero. Nothing is ever downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from seqdeploy.errors import VectorsError

__all__ = ["VectorsReport", "load_vocab", "vectors_for_vocab"]


@dataclass(frozen=True, slots=True)
class VectorsReport:
    """What loading vectors found: coverage and the OOV policy applied."""

    path: str
    format: Literal["glove", "word2vec"]
    dim: int
    vocab_size: int
    found: int
    oov: int
    oov_policy: str
    vectors_in_file: int

    @property
    def coverage(self) -> float:
        """Fraction of vocabulary rows (padding excluded) that got a pretrained vector."""
        denom = self.found + self.oov
        return self.found / denom if denom else 0.0

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form for the manifest."""
        return {
            "path": self.path,
            "format": self.format,
            "dim": self.dim,
            "vocab_size": self.vocab_size,
            "found": self.found,
            "oov": self.oov,
            "coverage": round(self.coverage, 6),
            "oov_policy": self.oov_policy,
            "vectors_in_file": self.vectors_in_file,
        }


def load_vocab(path: Path) -> list[str]:
    """Tokens of a vocabulary file, one per line (line k = id k). Duplicates are an error."""
    try:
        tokens = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise VectorsError(f"{path}: vocabulary file not found") from None
    except UnicodeDecodeError as exc:
        raise VectorsError(f"{path}: vocabulary file is not UTF-8 text: {exc}") from None
    seen: dict[str, int] = {}
    for i, tok in enumerate(tokens):
        if tok in seen:
            raise VectorsError(f"{path}:{i + 1}: token {tok!r} already appears on line {seen[tok] + 1}")
        seen[tok] = i
    return tokens


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parse_line(
    path: Path, lineno: int, line: str, dim: int, fmt: str
) -> tuple[str, list[str]] | Literal["header"] | None:
    """One line: ``(token, values)``, ``"header"`` for a word2vec header, ``None`` for a blank line."""
    parts = line.rstrip("\r\n").rstrip(" ").split(" ")
    if lineno == 1 and fmt != "glove" and len(parts) == 2 and all(p.isdigit() for p in parts):
        if int(parts[1]) != dim:
            raise VectorsError(
                f"{path}:1: word2vec header says dim {parts[1]}, but the config has embedding.dim = {dim}; "
                f"set embedding.dim = {parts[1]}"
            )
        return "header"
    if lineno == 1 and fmt == "word2vec":
        raise VectorsError(f"{path}:1: expected a word2vec header 'count dim', got {line[:60]!r}")
    if parts == [""]:
        return None
    extra = len(parts) - (dim + 1)
    # Some large GloVe files have tokens with spaces (". . ."): the last `dim` fields are the vector.
    # Extra leading fields count as part of the token only if they are not numbers, so a row that is
    # simply one number too wide is still reported as a width error.
    if extra > 0 and not any(_is_number(p) for p in parts[1 : 1 + extra]):
        return " ".join(parts[: 1 + extra]), parts[1 + extra :]
    if extra != 0:
        got = len(parts) - 1
        raise VectorsError(
            f"{path}:{lineno}: expected a token and {dim} numbers (embedding.dim = {dim}), got {got} numbers; "
            f"is this the right file, or should embedding.dim be {got}?"
        )
    return parts[0], parts[1:]


def vectors_for_vocab(
    vectors_path: Path,
    vocab: list[str],
    dim: int,
    *,
    fmt: Literal["auto", "glove", "word2vec"] = "auto",
    oov: Literal["random", "zeros", "mean"] = "random",
    padding_idx: int | None = 0,
    seed: int = 0,
) -> tuple[np.ndarray, VectorsReport]:
    """An embedding matrix ``[len(vocab), dim]`` from a vectors file, and a coverage report.

    Raises:
        VectorsError: The file is missing, a row's width is not ``dim``, a value of a vocabulary token's row
            is not a number (rows of other tokens are only counted, not parsed: vectors files are large), or
            a word2vec header disagrees with ``dim``. The message gives the line number.
    """
    index = {tok: i for i, tok in enumerate(vocab)}
    matrix = np.zeros((len(vocab), dim), dtype=np.float32)
    found = np.zeros(len(vocab), dtype=bool)
    try:
        fh = vectors_path.open("rb")  # decoded line by line, so a bad byte is reported with its line number
    except FileNotFoundError:
        raise VectorsError(f"{vectors_path}: vectors file not found") from None
    detected: Literal["glove", "word2vec"] = "glove"
    count = 0
    with fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise VectorsError(f"{vectors_path}:{lineno}: not UTF-8 text ({exc})") from None
            parsed = _parse_line(vectors_path, lineno, line, dim, fmt)
            if parsed is None:
                continue
            if parsed == "header":
                detected = "word2vec"
                continue
            token, values = parsed
            count += 1
            row = index.get(token)
            if row is None or found[row]:
                continue  # not in the vocabulary, or a repeated token (the first occurrence wins)
            try:
                vec = np.asarray(values, dtype=np.float32)
            except ValueError:
                raise VectorsError(f"{vectors_path}:{lineno}: a value is not a number: {line[:80]!r}") from None
            if not np.isfinite(vec).all():
                raise VectorsError(f"{vectors_path}:{lineno}: the vector of {token!r} has NaN/Inf values")
            matrix[row] = vec
            found[row] = True
    is_pad = np.zeros(len(vocab), dtype=bool)
    if padding_idx is not None and padding_idx < len(vocab):
        is_pad[padding_idx] = True
    missing = ~found & ~is_pad
    if found.any():
        mean = matrix[found].mean(0)
        std = float(matrix[found].std()) or 1.0
    else:
        mean, std = np.zeros(dim, dtype=np.float32), 1.0
    if oov == "random":
        rng = np.random.default_rng(seed)
        matrix[missing] = (mean + rng.standard_normal((int(missing.sum()), dim)) * std).astype(np.float32)
    elif oov == "mean":
        matrix[missing] = mean
    if padding_idx is not None:
        matrix[padding_idx] = 0.0
    report = VectorsReport(
        path=str(vectors_path),
        format=detected,
        dim=dim,
        vocab_size=len(vocab),
        found=int((found & ~is_pad).sum()),
        oov=int(missing.sum()),
        oov_policy=oov,
        vectors_in_file=count,
    )
    return matrix, report
