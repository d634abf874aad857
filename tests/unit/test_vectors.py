"""Pretrained vectors: seqdeploy/models/vectors.py and its use in seqdeploy/models/build.py."""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from seqdeploy.config_io import load_config
from seqdeploy.errors import VectorsError
from seqdeploy.models.vectors import VectorsReport, load_vocab, vectors_for_vocab
from tests.conftest import CONFIGS

VOCAB = ["<pad>", "<unk>", "cat", "dog", "fish", "bird"]
# GloVe rows: cat, dog, bird are in the vocabulary; "zebra" is not. "fish" and "<unk>" are OOV.
ROWS = {
    "cat": [0.5, -1.0, 2.0],
    "zebra": [9.0, 9.0, 9.0],
    "dog": [1.5, 0.0, -2.0],
    "bird": [-0.5, 4.0, 1.0],
}
FOUND = ["cat", "dog", "bird"]


def _write_glove(path: Path, rows=ROWS, header: str | None = None) -> Path:
    lines = [header] if header is not None else []
    lines += [" ".join([tok, *(f"{v:g}" for v in vec)]) for tok, vec in rows.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def glove(tmp_path: Path) -> Path:
    return _write_glove(tmp_path / "vectors.txt")


@pytest.fixture
def w2v(tmp_path: Path) -> Path:
    return _write_glove(tmp_path / "w2v.txt", header=f"{len(ROWS)} 3")


def _found_mean() -> np.ndarray:
    return np.mean([ROWS[t] for t in FOUND], axis=0).astype(np.float32)


# ------------------------------------------------------------------------------------------------ loading


@pytest.mark.parametrize("fmt", ["auto", "glove"])
def test_glove_rows_match_file(glove: Path, fmt: str):
    m, rep = vectors_for_vocab(glove, VOCAB, 3, fmt=fmt, oov="zeros")
    assert m.shape == (6, 3)
    assert m.dtype == np.float32
    for tok in FOUND:
        np.testing.assert_array_equal(m[VOCAB.index(tok)], np.float32(ROWS[tok]))
    assert rep == VectorsReport(
        path=str(glove),
        format="glove",
        dim=3,
        vocab_size=6,
        found=3,
        oov=2,
        oov_policy="zeros",
        vectors_in_file=4,
    )
    assert rep.coverage == pytest.approx(3 / 5)  # padding excluded from the denominator
    d = rep.to_dict()
    assert d["coverage"] == 0.6
    assert d["found"] == 3
    assert d["oov"] == 2
    assert d["format"] == "glove"


@pytest.mark.parametrize("fmt", ["auto", "word2vec"])
def test_word2vec_header(w2v: Path, fmt: str):
    m, rep = vectors_for_vocab(w2v, VOCAB, 3, fmt=fmt, oov="zeros")
    assert rep.format == "word2vec"
    assert rep.vectors_in_file == 4  # header not counted
    assert (rep.found, rep.oov) == (3, 2)
    np.testing.assert_array_equal(m[VOCAB.index("dog")], np.float32(ROWS["dog"]))


def test_word2vec_header_dim_mismatch(w2v: Path):
    with pytest.raises(VectorsError) as info:
        vectors_for_vocab(w2v, VOCAB, 4)
    msg = str(info.value)
    assert msg.startswith(f"{w2v}:1: word2vec header says dim 3")
    assert "embedding.dim = 4" in msg
    assert info.value.exit_code == 2


def test_word2vec_format_without_header(glove: Path):
    with pytest.raises(VectorsError, match=re.escape(f"{glove}:1: expected a word2vec header 'count dim'")):
        vectors_for_vocab(glove, VOCAB, 3, fmt="word2vec")


def test_padding_row_is_zero_even_when_in_file(tmp_path: Path):
    path = _write_glove(tmp_path / "v.txt", {"<pad>": [7.0, 7.0, 7.0], **ROWS})
    for oov in ("zeros", "mean", "random"):
        m, rep = vectors_for_vocab(path, VOCAB, 3, oov=oov)
        assert not m[0].any()
        assert rep.found == 3  # padding not counted as found
        assert rep.oov == 2


def test_no_padding_row(glove: Path):
    m, rep = vectors_for_vocab(glove, VOCAB, 3, oov="mean", padding_idx=None)
    assert rep.oov == 3  # <pad> is just another OOV token now
    assert rep.found + rep.oov == 6
    np.testing.assert_allclose(m[0], _found_mean(), rtol=1e-6)


def test_oov_zeros(glove: Path):
    m, _ = vectors_for_vocab(glove, VOCAB, 3, oov="zeros")
    for tok in ("<pad>", "<unk>", "fish"):
        assert not m[VOCAB.index(tok)].any()


def test_oov_mean(glove: Path):
    m, rep = vectors_for_vocab(glove, VOCAB, 3, oov="mean")
    assert rep.oov_policy == "mean"
    want = _found_mean()  # "zebra" is not in the vocabulary, so it is not part of the mean
    np.testing.assert_allclose(m[VOCAB.index("<unk>")], want, rtol=1e-6)
    np.testing.assert_allclose(m[VOCAB.index("fish")], want, rtol=1e-6)
    assert not m[0].any()


def test_oov_random_seeded(glove: Path):
    a, rep = vectors_for_vocab(glove, VOCAB, 3, oov="random", seed=7)
    b, _ = vectors_for_vocab(glove, VOCAB, 3, oov="random", seed=7)
    c, _ = vectors_for_vocab(glove, VOCAB, 3, oov="random", seed=8)
    assert rep.oov_policy == "random"
    np.testing.assert_array_equal(a, b)
    oov_rows = [VOCAB.index("<unk>"), VOCAB.index("fish")]
    assert not np.array_equal(a[oov_rows], c[oov_rows])
    assert np.all(a[oov_rows] != 0)
    assert not np.array_equal(a[oov_rows[0]], a[oov_rows[1]])
    for tok in FOUND:  # found rows untouched by the policy
        np.testing.assert_array_equal(a[VOCAB.index(tok)], np.float32(ROWS[tok]))
        np.testing.assert_array_equal(c[VOCAB.index(tok)], np.float32(ROWS[tok]))
    assert not a[0].any()
    assert not c[0].any()


def test_oov_random_matches_documented_distribution(glove: Path):
    m, _ = vectors_for_vocab(glove, VOCAB, 3, oov="random", seed=3)
    found = np.array([ROWS[t] for t in FOUND], dtype=np.float32)
    rng = np.random.default_rng(3)
    want = found.mean(0) + rng.standard_normal((2, 3)) * float(found.std())
    np.testing.assert_allclose(m[[1, 4]], want.astype(np.float32), rtol=1e-5)


def test_repeated_token_first_occurrence_wins(tmp_path: Path):
    path = tmp_path / "v.txt"
    path.write_text("cat 1 2 3\ncat 4 5 6\n")
    m, rep = vectors_for_vocab(path, VOCAB, 3, oov="zeros")
    np.testing.assert_array_equal(m[2], [1, 2, 3])
    assert rep.vectors_in_file == 2
    assert rep.found == 1


def test_blank_lines_and_trailing_spaces_ignored(tmp_path: Path):
    path = tmp_path / "v.txt"
    path.write_text("cat 1 2 3 \n\ndog 4 5 6\n\n")
    m, rep = vectors_for_vocab(path, VOCAB, 3, oov="zeros")
    assert rep.found == 2
    assert rep.vectors_in_file == 2
    np.testing.assert_array_equal(m[3], [4, 5, 6])


def test_nothing_found(tmp_path: Path):
    path = _write_glove(tmp_path / "v.txt", {"zebra": [1.0, 2.0, 3.0]})
    m, rep = vectors_for_vocab(path, VOCAB, 3, oov="mean")
    assert rep.found == 0
    assert rep.oov == 5
    assert rep.coverage == 0.0
    assert not m.any()  # mean of nothing is zero


# ------------------------------------------------------------------------------------------------- errors


def test_row_with_wrong_width_names_line(tmp_path: Path):
    path = tmp_path / "v.txt"
    path.write_text("cat 1 2 3\nzebra 1 2\ndog 1 2 3\n")
    with pytest.raises(VectorsError) as info:
        vectors_for_vocab(path, VOCAB, 3)
    msg = str(info.value)
    assert msg.startswith(f"{path}:2: expected a token and 3 numbers (embedding.dim = 3), got 2 numbers")
    assert "should embedding.dim be 2?" in msg


def test_wrong_width_on_word2vec_file_counts_header_line(tmp_path: Path):
    path = tmp_path / "v.txt"
    path.write_text("2 3\ncat 1 2 3\ndog 1 2 3 4\n")
    with pytest.raises(VectorsError, match=re.escape(f"{path}:3: expected a token and 3 numbers")):
        vectors_for_vocab(path, VOCAB, 3)


def test_non_numeric_value(tmp_path: Path):
    path = tmp_path / "v.txt"
    path.write_text("cat 1 2 3\ndog 1 two 3\n")
    with pytest.raises(VectorsError) as info:
        vectors_for_vocab(path, VOCAB, 3)
    msg = str(info.value)
    assert msg.startswith(f"{path}:2: a value is not a number:")
    assert "dog 1 two 3" in msg


def test_missing_vectors_file(tmp_path: Path):
    path = tmp_path / "nope.txt"
    with pytest.raises(VectorsError, match=re.escape(f"{path}: vectors file not found")):
        vectors_for_vocab(path, VOCAB, 3)


def test_load_vocab(tmp_path: Path):
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    assert load_vocab(path) == VOCAB


def test_load_vocab_duplicate(tmp_path: Path):
    path = tmp_path / "vocab.txt"
    path.write_text("<pad>\ncat\ndog\ncat\n")
    with pytest.raises(VectorsError) as info:
        load_vocab(path)
    assert str(info.value) == f"{path}:4: token 'cat' already appears on line 2"
    assert info.value.exit_code == 2


def test_load_vocab_missing(tmp_path: Path):
    with pytest.raises(VectorsError, match="vocabulary file not found"):
        load_vocab(tmp_path / "nope.txt")


def test_load_vocab_not_utf8(tmp_path: Path):
    path = tmp_path / "vocab.txt"
    path.write_bytes(b"cat\n\xff\xfe\n")
    with pytest.raises(VectorsError, match="not UTF-8"):
        load_vocab(path)


# ----------------------------------------------------------------------------------------- model builder


def _shipped_rows() -> dict[str, np.ndarray]:
    rows = {}
    for line in (CONFIGS / "data" / "tiny-glove.txt").read_text().splitlines():
        tok, *vals = line.split()
        rows[tok] = np.asarray(vals, dtype=np.float32)
    return rows


def test_build_model_loads_shipped_vectors():
    from seqdeploy.models.build import build_model

    cfg = load_config(CONFIGS / "gru_glove_classifier.toml")
    model, report = build_model(cfg)
    assert report is not None
    assert (report.found, report.oov) == (52, 11)
    assert report.found + report.oov == 63
    assert report.coverage == pytest.approx(52 / 63)
    assert report.vocab_size == 64
    assert report.vectors_in_file == 60
    assert report.format == "glove"
    assert report.oov_policy == "random"

    weight = model.embedding.weight.detach().numpy()
    assert weight.shape == (64, 16)
    vocab = (CONFIGS / "data" / "tiny-vocab.txt").read_text().splitlines()
    rows = _shipped_rows()
    for word in ("the", "of", "them", "only"):
        np.testing.assert_array_equal(weight[vocab.index(word)], rows[word])
    assert not weight[0].any()  # padding
    assert weight[vocab.index("<unk>")].any()  # random OOV row
    assert not model.training


def test_build_model_without_vectors_has_no_report():
    from seqdeploy.models.build import build_model

    cfg = load_config(CONFIGS / "gru_glove_classifier.toml")
    model, report = build_model(cfg, load_vectors=False)
    assert report is None
    vocab = (CONFIGS / "data" / "tiny-vocab.txt").read_text().splitlines()
    assert not np.array_equal(model.embedding.weight.detach().numpy()[vocab.index("the")], _shipped_rows()["the"])


def test_build_model_vocab_size_mismatch(tmp_path: Path):
    from seqdeploy.models.build import build_model

    data = tmp_path / "data"
    shutil.copytree(CONFIGS / "data", data)
    vocab = data / "tiny-vocab.txt"
    vocab.write_text(vocab.read_text() + "extra\n")
    cfg = load_config(CONFIGS / "gru_glove_classifier.toml")
    cfg = dataclasses.replace(cfg, base_dir=str(tmp_path))
    with pytest.raises(VectorsError) as info:
        build_model(cfg)
    msg = str(info.value)
    assert msg.startswith(f"{vocab}: has 65 tokens but model.embedding.vocab_size = 64")
    assert "set vocab_size = 65" in msg


def test_build_model_missing_vectors_file(tmp_path: Path):
    from seqdeploy.models.build import build_model

    (tmp_path / "data").mkdir()
    shutil.copy(CONFIGS / "data" / "tiny-vocab.txt", tmp_path / "data" / "tiny-vocab.txt")
    cfg = dataclasses.replace(load_config(CONFIGS / "gru_glove_classifier.toml"), base_dir=str(tmp_path))
    with pytest.raises(VectorsError, match="vectors file not found"):
        build_model(cfg)


# ------------------------------------------------------------------------ traps (issue 11) and hardening


def _hello_files(tmp_path: Path) -> tuple[Path, Path]:
    """A vocabulary whose id 0 is a real word ('hello'), as when ids come from a tokenizer without padding."""
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("hello\nworld\nfoo\n", encoding="utf-8")
    vectors = _write_glove(tmp_path / "glove.txt", {"hello": [1.0, 2.0, 3.0], "world": [4.0, 5.0, 6.0]})
    return vocab, vectors


def _emb_config(tmp_path: Path, **emb: object):
    from seqdeploy.config_io import config_from_dict

    raw = {"model": {"cell": "gru", "hidden_size": 2, "embedding": {"vocab_size": 3, "dim": 3, **emb}}}
    return config_from_dict(raw, base_dir=str(tmp_path))


def test_padding_idx_false_keeps_row_zero(tmp_path: Path):
    from seqdeploy.models.build import build_model

    vocab, vectors = _hello_files(tmp_path)
    cfg = _emb_config(tmp_path, padding_idx=False, vectors=vectors.name, vocab=vocab.name, oov="zeros")
    assert cfg.model.embedding.padding_idx is None
    model, report = build_model(cfg)
    np.testing.assert_array_equal(model.embedding.weight.detach().numpy()[0], [1, 2, 3])  # 'hello' kept
    assert model.embedding.padding_idx is None
    assert report.found == 2 and report.oov == 1  # row 0 counts: it is a word
    assert report.padding_dropped is None and not report.warnings


def test_padding_idx_true_is_refused():
    from seqdeploy.config_io import config_from_dict
    from seqdeploy.errors import ConfigError

    raw = {"model": {"cell": "gru", "hidden_size": 2, "embedding": {"vocab_size": 3, "dim": 3, "padding_idx": True}}}
    with pytest.raises(ConfigError, match=r"model.embedding.padding_idx: expected an int or false"):
        config_from_dict(raw)


def test_a_vector_dropped_at_padding_idx_is_reported(tmp_path: Path):
    vocab, vectors = _hello_files(tmp_path)
    m, rep = vectors_for_vocab(vectors, load_vocab(vocab), 3, oov="zeros", padding_idx=0)
    assert not m[0].any()
    assert rep.padding_dropped == "hello"
    assert rep.warnings == (
        "vector for 'hello' at padding_idx 0 dropped (the padding row is zero) — set padding_idx = false to keep it",
    )
    assert rep.to_dict()["padding_dropped"] == "hello"


def test_utf8_bom_is_stripped_from_vocab_and_vectors(tmp_path: Path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_bytes(b"\xef\xbb\xbfcat\ndog\n")
    assert load_vocab(vocab) == ["cat", "dog"]
    vectors = tmp_path / "v.txt"
    vectors.write_bytes(b"\xef\xbb\xbfcat 1 2 3\ndog 4 5 6\n")
    m, rep = vectors_for_vocab(vectors, ["<pad>", "cat", "dog"], 3)
    assert rep.found == 2  # 'cat' (first line, after the BOM) is found
    np.testing.assert_array_equal(m[1], [1, 2, 3])
    w2v = tmp_path / "w.txt"
    w2v.write_bytes(b"\xef\xbb\xbf2 3\ncat 1 2 3\ndog 4 5 6\n")
    _, rep = vectors_for_vocab(w2v, ["<pad>", "cat", "dog"], 3)
    assert rep.format == "word2vec" and rep.found == 2


@pytest.mark.parametrize(("text", "line"), [("a\nb\n\n", 3), ("a\n\nb\n", 2), ("a\n \nb", 2), ("a\r\n\r\nb\r\n", 2)])
def test_blank_vocab_lines_are_refused_with_the_line_number(tmp_path: Path, text: str, line: int):
    path = tmp_path / "vocab.txt"
    path.write_bytes(text.encode())
    with pytest.raises(VectorsError) as info:
        load_vocab(path)
    assert str(info.value).startswith(f"{path}:{line}: blank line")
    assert "vocab_size" not in str(info.value)  # never "grow vocab_size" for a stray blank line


def test_vocab_ending_with_crlf_and_no_final_newline(tmp_path: Path):
    (tmp_path / "a.txt").write_bytes(b"a\r\nb\r\n")
    (tmp_path / "b.txt").write_bytes(b"a\nb")
    assert load_vocab(tmp_path / "a.txt") == ["a", "b"] == load_vocab(tmp_path / "b.txt")


def test_vocab_token_with_surrounding_spaces_is_refused(tmp_path: Path):
    path = tmp_path / "vocab.txt"
    path.write_text("a\nb \n")
    with pytest.raises(VectorsError, match=r"vocab.txt:2: token 'b ' has leading or trailing whitespace"):
        load_vocab(path)


def _write_w2v_bin(path: Path, rows: dict[str, list[float]], *, newline: bool, header: bytes | None = None) -> Path:
    dim = len(next(iter(rows.values())))
    data = header if header is not None else f"{len(rows)} {dim}\n".encode()
    for tok, vec in rows.items():
        data += tok.encode() + b" " + np.asarray(vec, dtype="<f4").tobytes() + (b"\n" if newline else b"")
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("newline", [True, False], ids=["c-tool", "gensim"])
@pytest.mark.parametrize("fmt", ["auto", "word2vec_binary"])
def test_binary_word2vec_is_read_natively(tmp_path: Path, newline: bool, fmt: str):
    rows = {**ROWS, "\u00e9t\u00e9": [0.25, 0.5, -1.0]}
    path = _write_w2v_bin(tmp_path / "v.bin", rows, newline=newline)
    vocab = [*VOCAB, "\u00e9t\u00e9"]
    m, rep = vectors_for_vocab(path, vocab, 3, fmt=fmt, oov="zeros")
    assert rep.format == "word2vec_binary"
    assert rep.vectors_in_file == 5 and rep.found == 4
    for tok in [*FOUND, "\u00e9t\u00e9"]:
        np.testing.assert_array_equal(m[vocab.index(tok)], np.float32(rows[tok]))


def test_binary_word2vec_errors(tmp_path: Path):
    path = _write_w2v_bin(tmp_path / "v.bin", ROWS, newline=True, header=b"5 3\n")  # claims 5, has 4
    with pytest.raises(VectorsError, match=r"entry 5 of 5 .*ends early"):
        vectors_for_vocab(path, VOCAB, 3)
    path = _write_w2v_bin(tmp_path / "w.bin", ROWS, newline=True)
    with pytest.raises(VectorsError, match=r"word2vec header says dim 3, but the config has embedding.dim = 4"):
        vectors_for_vocab(path, VOCAB, 4)


@pytest.mark.parametrize(
    ("head", "what"),
    [
        (b"\x1f\x8b\x08\x00rest", "a gzip archive"),
        (b"PK\x03\x04rest", "a zip archive"),
        (b"\x80\x04\x95rest", "a Python pickle"),
        (b"\x93NUMPY\x01\x00", "a NumPy .npy array"),
    ],
)
def test_other_formats_are_refused_listing_the_supported_ones(tmp_path: Path, head: bytes, what: str):
    path = tmp_path / "vectors.dat"
    path.write_bytes(head)
    with pytest.raises(VectorsError) as info:
        vectors_for_vocab(path, VOCAB, 3)
    msg = str(info.value)
    assert what in msg
    assert "Supported: GloVe text" in msg and "word2vec binary (.bin" in msg


def test_binary_without_header_is_refused_listing_formats(tmp_path: Path):
    path = tmp_path / "v.bin"
    path.write_bytes(b"cat " + np.float32([1, 2, 3]).tobytes() + b"\xff\xfe\n")
    with pytest.raises(VectorsError, match="Supported: GloVe text"):
        vectors_for_vocab(path, VOCAB, 3)


def test_vectors_or_vocab_path_that_is_a_directory(tmp_path: Path):
    with pytest.raises(VectorsError, match="is a directory"):
        vectors_for_vocab(tmp_path, VOCAB, 3)
    with pytest.raises(VectorsError, match="is a directory"):
        load_vocab(tmp_path)


def test_zero_coverage_warns(tmp_path: Path):
    path = _write_glove(tmp_path / "v.txt", {"Cat": [1.0, 2.0, 3.0]})  # case differs from the vocabulary
    _, rep = vectors_for_vocab(path, VOCAB, 3)
    assert rep.coverage == 0.0
    assert len(rep.warnings) == 1 and rep.warnings[0].startswith("0 of 5 vocabulary tokens have a vector")
    assert rep.to_dict()["warnings"] == list(rep.warnings)


def test_unused_vectors_are_still_checked(tmp_path: Path):
    from seqdeploy.models.build import check_unused_vectors

    vocab, vectors = _hello_files(tmp_path)
    record = check_unused_vectors(_emb_config(tmp_path, vectors=vectors.name, vocab=vocab.name))
    assert record is not None
    assert record["used"] is False and "checkpoint's embedding weights win" in str(record["reason"])
    with pytest.raises(VectorsError, match="vectors file not found"):
        check_unused_vectors(_emb_config(tmp_path, vectors="nope.txt", vocab=vocab.name))
    (tmp_path / "blank.txt").write_text("a\n\nb\n")
    with pytest.raises(VectorsError, match="blank line"):
        check_unused_vectors(_emb_config(tmp_path, vectors=vectors.name, vocab="blank.txt"))


def _vocab_only(tmp_path: Path, vocab: str | None) -> Path:
    (tmp_path / "z.toml").write_text(
        '[model]\ncell = "gru"\nhidden_size = 4\n[model.embedding]\nvocab_size = 5\ndim = 3\n'
        + (f'vocab = "{vocab}"\n' if vocab else "")
    )
    return tmp_path / "z.toml"


def test_a_vocab_without_vectors_is_checked_and_recorded(tmp_path: Path):
    """B4: `vocab` alone was never read — a path that does not exist exported with exit 0."""
    from seqdeploy.models.build import build_model, check_unused_vectors

    cfg = load_config(_vocab_only(tmp_path, "does-not-exist.txt"))
    with pytest.raises(VectorsError, match=r"does-not-exist\.txt: vocabulary file not found"):
        build_model(cfg)
    with pytest.raises(VectorsError, match=r"does-not-exist\.txt: vocabulary file not found"):
        check_unused_vectors(cfg)  # the --checkpoint path checks it too
    assert build_model(cfg, load_vectors=False)[1] is None  # rebuilding a bundle never needs it
    (tmp_path / "v.txt").write_text("a\nb\nc\nd\n")
    with pytest.raises(VectorsError, match=r"has 4 tokens but model\.embedding\.vocab_size = 5"):
        build_model(load_config(_vocab_only(tmp_path, "v.txt")))
    (tmp_path / "v.txt").write_text("a\nb\n\nd\ne\n")
    with pytest.raises(VectorsError, match=r"v.txt:3: blank line"):
        build_model(load_config(_vocab_only(tmp_path, "v.txt")))
    (tmp_path / "v.txt").write_text("a\nb\nc\nd\ne\n")
    cfg = load_config(_vocab_only(tmp_path, "v.txt"))
    _, report = build_model(cfg)
    assert report is not None and report.warnings == ()
    record = report.to_dict()
    assert record["used"] is False and record["vocab"] == str(tmp_path / "v.txt") and record["vocab_tokens"] == 5
    assert check_unused_vectors(cfg) == record
    assert build_model(load_config(_vocab_only(tmp_path, None)))[1] is None


def test_the_vectors_record_names_its_vocabulary():
    from seqdeploy.models.build import build_model

    cfg = load_config(CONFIGS / "gru_glove_classifier.toml")
    _, report = build_model(cfg)
    assert report is not None and report.to_dict()["vocab"] == str(CONFIGS / "data" / "tiny-vocab.txt")


@pytest.mark.parametrize("what", ["vectors", "vocab"])
def test_one_wording_for_files_that_cannot_be_read(tmp_path: Path, what: str):
    """C2: the missing-file / directory wording is shared by the vocabulary, the sniffer and the reader."""
    from seqdeploy.models.vectors import sniff_vectors_format

    (tmp_path / "d").mkdir()
    calls = (
        [lambda p: sniff_vectors_format(p), lambda p: vectors_for_vocab(p, ["a"], 3, fmt="glove")]
        if what == "vectors"
        else [load_vocab]
    )
    label = "vectors" if what == "vectors" else "vocabulary"
    for call in calls:
        with pytest.raises(VectorsError, match=f"nope: {label} file not found"):
            call(tmp_path / "nope")
        with pytest.raises(VectorsError, match=f"d: is a directory; expected a {label} file"):
            call(tmp_path / "d")
