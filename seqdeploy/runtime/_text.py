"""Text to token ids, by the rules recorded in the package manifest (``manifest["text"]``)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from seqdeploy.errors import InputError, IntegrityError
from seqdeploy.package.manifest import TextSpec

__all__ = ["Tokenizer", "parse_vocab"]


def parse_vocab(data: bytes, *, where: str) -> list[str]:
    """Tokens of a vocabulary file (UTF-8, one per line, line k = id k; a final newline is optional).

    Raises:
        IntegrityError: Not UTF-8, or a token appears twice.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IntegrityError(f"{where}: vocabulary is not UTF-8 ({exc})") from None
    tokens = text.split("\n")
    if tokens and tokens[-1] == "":
        tokens.pop()
    seen: dict[str, int] = {}
    for i, tok in enumerate(tokens):
        if tok in seen:
            raise IntegrityError(f"{where}: token {tok!r} appears on lines {seen[tok] + 1} and {i + 1}")
        seen[tok] = i
    return tokens


class Tokenizer:
    """Split text with the package's pattern, map tokens to ids. Immutable, so safe to share between threads.

    Args:
        spec: The manifest's text rules.
        vocab: The vocabulary's tokens (line k = id k).
    """

    def __init__(self, spec: TextSpec, vocab: Sequence[str]) -> None:
        if len(vocab) != spec.vocab_size:
            raise IntegrityError(
                f"vocabulary has {len(vocab)} tokens but the manifest says vocab_size = {spec.vocab_size}"
            )
        self.spec = spec
        self.vocab = tuple(vocab)
        self._ids = {tok: i for i, tok in enumerate(vocab)}
        self._pattern = re.compile(spec.pattern)

    def tokens(self, text: str) -> list[str]:
        """The tokens of ``text`` (lower-cased first when the rules say so)."""
        return self._pattern.findall(text.lower() if self.spec.lowercase else text)

    def encode(self, text: str, *, index: int = 0) -> tuple[list[str], list[int]]:
        """``(tokens, ids)`` of one text.

        Raises:
            InputError: The text has no token, or (``oov = "error"``) holds words outside the vocabulary.
        """
        if not isinstance(text, str):
            raise InputError(f"text {index}: expected a str, got {type(text).__name__}")
        toks = self.tokens(text)
        if not toks:
            raise InputError(
                f"text {index} ({text[:40]!r}) has no tokens under the package's tokenizer "
                f"(pattern {self.spec.pattern!r}); every text needs at least one token"
            )
        ids: list[int] = []
        unknown: list[str] = []
        for tok in toks:
            i = self._ids.get(tok)
            if i is None:
                if self.spec.oov == "unk" and self.spec.unk_id is not None:
                    i = self.spec.unk_id
                else:
                    unknown.append(tok)
                    continue
            ids.append(i)
        if unknown:
            raise InputError(
                f"text {index}: {len(unknown)} token(s) are not in the vocabulary and this package has no "
                f"unknown-word token to map them to: {sorted(set(unknown))[:10]}; remove them or repackage with "
                "a vocabulary that has one (--unk-token)"
            )
        return toks, ids
