"""Regenerate configs/data/tiny-vocab.txt and tiny-glove.txt (deterministic; no download).

The vocabulary has 64 tokens: <pad>, <unk> and 62 words. The GloVe-format file has 16-dim vectors
for 52 of the vocabulary words plus 8 words outside the vocabulary, so loading it reports 52/63
coverage and exercises the OOV policy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

DIM = 16
WORDS = [
    "the",
    "a",
    "an",
    "of",
    "to",
    "and",
    "in",
    "is",
    "it",
    "that",
    "was",
    "for",
    "on",
    "are",
    "as",
    "with",
    "his",
    "they",
    "at",
    "be",
    "this",
    "from",
    "have",
    "or",
    "by",
    "one",
    "had",
    "not",
    "but",
    "what",
    "all",
    "were",
    "when",
    "we",
    "there",
    "can",
    "been",
    "has",
    "more",
    "if",
    "no",
    "out",
    "do",
    "so",
    "up",
    "said",
    "about",
    "than",
    "its",
    "into",
    "them",
    "only",
    "new",
    "some",
    "could",
    "time",
    "these",
    "two",
    "may",
    "then",
    "first",
    "way",
]


def main() -> None:
    out = Path(__file__).resolve().parent.parent / "configs" / "data"
    out.mkdir(parents=True, exist_ok=True)
    vocab = ["<pad>", "<unk>", *WORDS[:62]]
    assert len(vocab) == 64
    (out / "tiny-vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    rng = np.random.default_rng(2026)
    words_with_vectors = [*vocab[2:54], "zebra", "quartz", "nimbus", "fjord", "gossamer", "lumen", "oxide", "vortex"]
    lines = [w + " " + " ".join(f"{x:.5f}" for x in rng.standard_normal(DIM) * 0.4) for w in words_with_vectors]
    (out / "tiny-glove.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
