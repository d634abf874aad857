"""Pretrained word vectors from GloVe or word2vec files, matched to a vocabulary file.

Formats (``[model.embedding] vectors_format``; ``auto`` tells them apart by their first bytes):
  * ``glove``: ``token v1 v2 ... vd`` per line (UTF-8 text).
  * ``word2vec``: text, a header line ``count dim``, then the same rows (also fastText ``.vec``).
  * ``word2vec_binary``: the original C format (``.bin``): the ASCII header ``count dim``, then per word
    the UTF-8 token, a space and ``dim`` little-endian float32 values (a newline between entries or not).

Anything else (gzip/zip archives, pickles such as gensim ``.model``/``.kv``, ``.npy``) is refused with the
list of supported formats; nothing is ever unpickled or downloaded.

Rows are matched to the vocabulary (one token per line; line k is embedding row k). Vocabulary tokens
missing from the vectors are out-of-vocabulary (OOV) and initialised by the config's ``oov`` policy:
``random`` (seeded normal with the mean and std of the found vectors), ``zeros`` or ``mean`` (the
mean found vector). The padding row is zero; a vector the file has for the padding token is reported,
never dropped silently. Known traps are refused or reported: a UTF-8 byte-order mark is stripped, a
blank or space-padded vocabulary line is an error naming its line, and 0 % coverage is a warning.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np

from seqdeploy.errors import VectorsError

__all__ = ["SUPPORTED_FORMATS", "VectorsReport", "load_vocab", "sniff_vectors_format", "vectors_for_vocab"]

Format = Literal["glove", "word2vec", "word2vec_binary"]
SUPPORTED_FORMATS = (
    "GloVe text ('token v1 ... vd' per line), word2vec text (a 'count dim' header line, then the same rows; "
    "fastText .vec too) and word2vec binary (.bin, the original C format)"
)
BOM = b"\xef\xbb\xbf"

# First bytes of files people pass as "vectors" that are none of the supported formats.
_FOREIGN = (
    (b"\x1f\x8b", "a gzip archive: decompress it first (gunzip)"),
    (b"PK\x03\x04", "a zip archive: extract the vectors file from it first"),
    (b"BZh", "a bzip2 archive: decompress it first"),
    (b"\xfd7zXZ", "an xz archive: decompress it first"),
    (b"\x93NUMPY", "a NumPy .npy array (no tokens): export the vectors as word2vec text or binary"),
    (
        b"\x80",
        "a Python pickle (e.g. a gensim .model/.kv file), which seqdeploy never unpickles: save it with "
        "model.wv.save_word2vec_format(path, binary=True)",
    ),
)


@dataclass(frozen=True, slots=True)
class VectorsReport:
    """What loading vectors found: coverage, the OOV policy applied, and anything the user must know."""

    path: str
    format: Format
    dim: int
    vocab_size: int
    found: int
    oov: int
    oov_policy: str
    vectors_in_file: int
    padding_dropped: str | None = None
    """The padding token, when the file has a vector for it that the zero padding row replaced."""
    warnings: tuple[str, ...] = field(default=())
    """Loud problems that do not stop the export (0 % coverage, a dropped padding vector)."""
    vocab: str | None = None
    """The vocabulary file the rows were matched through (``package`` serves it to read text)."""

    @property
    def coverage(self) -> float:
        """Fraction of vocabulary rows (padding excluded) that got a pretrained vector."""
        denom = self.found + self.oov
        return self.found / denom if denom else 0.0

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form for the manifest."""
        return {
            "used": True,
            "path": self.path,
            "format": self.format,
            "dim": self.dim,
            "vocab_size": self.vocab_size,
            "found": self.found,
            "oov": self.oov,
            "coverage": round(self.coverage, 6),
            "oov_policy": self.oov_policy,
            "vectors_in_file": self.vectors_in_file,
            "padding_dropped": self.padding_dropped,
            "warnings": list(self.warnings),
            "vocab": self.vocab,
        }


@contextlib.contextmanager
def _reading(path: Path, what: str) -> Iterator[None]:
    """Turn the OS errors of opening or reading ``path`` into one :class:`VectorsError` wording."""
    try:
        yield
    except FileNotFoundError:
        raise VectorsError(f"{path}: {what} file not found") from None
    except IsADirectoryError:
        hint = f" ({SUPPORTED_FORMATS})" if what == "vectors" else ""
        raise VectorsError(f"{path}: is a directory; expected a {what} file{hint}") from None
    except OSError as exc:
        raise VectorsError(f"{path}: cannot read the {what} file: {exc.strerror or exc}") from None


def _read_bytes(path: Path, what: str, limit: int = -1) -> bytes:
    with _reading(path, what), path.open("rb") as fh:
        return fh.read(limit)


def load_vocab(path: Path) -> list[str]:
    """Tokens of a vocabulary file, one per line (line k = id k).

    A UTF-8 byte-order mark is stripped (it would glue itself to the first token, which then matches no
    vector); one final newline is allowed. Refused with the line number: blank lines (each would be a
    token, shifting every later id), tokens with leading or trailing whitespace (no vectors file has
    them) and duplicates.
    """
    raw = _read_bytes(path, "vocabulary")
    try:
        text = raw.removeprefix(BOM).decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise VectorsError(f"{path}:{line}: vocabulary file is not UTF-8 text: {exc}") from None
    # Split on "\n" only: str.splitlines would also split inside tokens at \x0b, \x1c, \u2028, ...
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    tokens = [line.removesuffix("\r") for line in lines]
    seen: dict[str, int] = {}
    for i, tok in enumerate(tokens):
        if not tok.strip():
            raise VectorsError(
                f"{path}:{i + 1}: blank line; a vocabulary has one token per line (line k = id k), so a blank "
                "line would become a token and shift the ids after it. Remove it"
            )
        if tok != tok.strip():
            raise VectorsError(
                f"{path}:{i + 1}: token {tok!r} has leading or trailing whitespace, which no vectors file "
                "token has; remove it"
            )
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


def _is_number_bytes(text: bytes) -> bool:
    try:
        return _is_number(text.decode("ascii"))
    except UnicodeDecodeError:
        return False


def _w2v_header(line: bytes) -> tuple[int, int] | None:
    """``(count, dim)`` of a word2vec header line, or ``None`` when the line is not one."""
    parts = line.strip().split(b" ")
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        return int(parts[0]), int(parts[1])
    return None


def _check_header(path: Path, line: bytes, dim: int) -> int:
    """The entry count of a word2vec file's header line, which must say ``dim``."""
    header = _w2v_header(line.removeprefix(BOM))
    if header is None:
        raise VectorsError(f"{path}:1: expected a word2vec header 'count dim', got {line[:60]!r}")
    count, file_dim = header
    if file_dim != dim:
        raise VectorsError(
            f"{path}:1: word2vec header says dim {file_dim}, but the config has embedding.dim = {dim}; "
            f"set embedding.dim = {file_dim}"
        )
    return count


def sniff_vectors_format(path: Path, head: bytes | None = None) -> Format:
    """The format of a vectors file from its first bytes (``auto``).

    Raises:
        VectorsError: The file is missing, a directory, empty, or none of the supported formats (the message
            says what it looks like and lists the supported ones).
    """
    if head is None:
        head = _read_bytes(path, "vectors", 1 << 16)
    head = head.removeprefix(BOM)
    if not head.strip():
        raise VectorsError(f"{path}: the vectors file is empty")
    for magic, what in _FOREIGN:
        if head.startswith(magic):
            raise VectorsError(f"{path}: is {what}. Supported: {SUPPORTED_FORMATS}")
    first, newline, rest = head.partition(b"\n")
    header = _w2v_header(first)
    if header is not None and newline:
        # Binary and text word2vec share the header; after the first token come either float32 bytes or
        # the numbers of a text row.
        _, _, values = rest.lstrip(b"\n").partition(b" ")
        fields = values.split(b"\n", 1)[0].split()
        dim = header[1]
        if len(fields) >= dim and all(_is_number_bytes(f) for f in fields[len(fields) - dim :]):
            return "word2vec"
        return "word2vec_binary"
    try:
        first.decode("utf-8")
    except UnicodeDecodeError:
        raise VectorsError(
            f"{path}: is not a text vectors file (line 1 is not UTF-8) and has no word2vec header. "
            f"Supported: {SUPPORTED_FORMATS}"
        ) from None
    return "glove"


def _parse_line(
    path: Path, lineno: int, line: str, dim: int, fmt: str
) -> tuple[str, list[str]] | Literal["header"] | None:
    """One line: ``(token, values)``, ``"header"`` for a word2vec header, ``None`` for a blank line."""
    parts = line.rstrip("\r\n").rstrip(" ").split(" ")
    if lineno == 1 and fmt == "word2vec":
        _check_header(path, line.encode("utf-8"), dim)
        return "header"
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


def _text_rows(path: Path, fh: BinaryIO, dim: int, fmt: str) -> Iterator[tuple[int, str, list[str] | None]]:
    """``(line, token, values)`` per row; ``values`` is ``None`` for the header."""
    for lineno, raw in enumerate(fh, start=1):
        if lineno == 1:
            raw = raw.removeprefix(BOM)  # else the BOM glues itself to the first token
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise VectorsError(
                f"{path}:{lineno}: not UTF-8 text ({exc}); if this is a binary word2vec file, set "
                f"vectors_format = 'word2vec_binary' or 'auto'. Supported: {SUPPORTED_FORMATS}"
            ) from None
        parsed = _parse_line(path, lineno, line, dim, fmt)
        if parsed is None:
            continue
        if parsed == "header":
            yield lineno, "", None
            continue
        yield lineno, parsed[0], parsed[1]


class _Chunks:
    """Buffered reads of a binary file: the next bytes up to a delimiter, or exactly ``n`` bytes."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.buf = b""
        self.pos = 0
        self.offset = 0  # file offset of buf[0]

    def _fill(self) -> bool:
        more = self.fh.read(1 << 20)
        if not more:
            return False
        self.offset += self.pos
        self.buf = self.buf[self.pos :] + more
        self.pos = 0
        return True

    def skip(self, chars: bytes) -> None:
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in chars:
                self.pos += 1
            if self.pos < len(self.buf) or not self._fill():
                return

    def until(self, delim: bytes, limit: int) -> bytes | None:
        while True:
            i = self.buf.find(delim, self.pos, self.pos + limit + 1)
            if i >= 0:
                out = self.buf[self.pos : i]
                self.pos = i + 1
                return out
            if len(self.buf) - self.pos > limit or not self._fill():
                return None

    def take(self, n: int) -> bytes | None:
        while len(self.buf) - self.pos < n:
            if not self._fill():
                return None
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out


def _binary_rows(path: Path, fh: BinaryIO, dim: int) -> Iterator[tuple[int, str, np.ndarray | None]]:
    """``(entry, token, vector)`` of a binary word2vec file; entry 0 (``vector`` ``None``) is the header."""
    count = _check_header(path, fh.readline(), dim)
    yield 0, "", None
    chunks = _Chunks(fh)
    width = 4 * dim
    for k in range(1, count + 1):
        chunks.skip(b"\n\r")  # the C tool ends each entry with "\n", gensim does not
        word = chunks.until(b" ", limit=4096)
        vec = chunks.take(width) if word is not None else None
        if word is None or vec is None:
            raise VectorsError(
                f"{path}: entry {k} of {count} (header 'count dim'): the file ends early or a token has no "
                f"space after it; is it truncated, or not binary word2vec? Supported: {SUPPORTED_FORMATS}"
            )
        try:
            token = word.decode("utf-8")
        except UnicodeDecodeError:
            raise VectorsError(
                f"{path}: entry {k} (byte {chunks.offset + chunks.pos - width - len(word) - 1}): token is not "
                "UTF-8; the file may be truncated or not binary word2vec"
            ) from None
        yield k, token, np.frombuffer(vec, dtype="<f4")


def vectors_for_vocab(
    vectors_path: Path,
    vocab: list[str],
    dim: int,
    *,
    fmt: Literal["auto", "glove", "word2vec", "word2vec_binary"] = "auto",
    oov: Literal["random", "zeros", "mean"] = "random",
    padding_idx: int | None = 0,
    seed: int = 0,
) -> tuple[np.ndarray, VectorsReport]:
    """An embedding matrix ``[len(vocab), dim]`` from a vectors file, and a coverage report.

    Raises:
        VectorsError: The file is missing, a directory or not a supported format, a row's width is not
            ``dim``, a value of a vocabulary token's row is not a number (rows of other tokens are only
            counted, not parsed: vectors files are large), or a word2vec header disagrees with ``dim``.
            The message gives the line (or entry) number.
    """
    detected: Format = sniff_vectors_format(vectors_path) if fmt == "auto" else fmt
    index = {tok: i for i, tok in enumerate(vocab)}
    matrix = np.zeros((len(vocab), dim), dtype=np.float32)
    found = np.zeros(len(vocab), dtype=bool)
    with _reading(vectors_path, "vectors"):
        fh = vectors_path.open("rb")  # decoded line by line, so a bad byte is reported with its line number
    count = 0
    with fh:
        rows: Iterator[tuple[int, str, list[str] | np.ndarray | None]] = (
            _binary_rows(vectors_path, fh, dim)
            if detected == "word2vec_binary"
            else _text_rows(vectors_path, fh, dim, detected)
        )
        for where, token, values in rows:
            if values is None:
                continue  # the word2vec header
            count += 1
            row = index.get(token)
            if row is None or found[row]:
                continue  # not in the vocabulary, or a repeated token (the first occurrence wins)
            label = f"{vectors_path}:{where}" if detected != "word2vec_binary" else f"{vectors_path}: entry {where}"
            try:
                vec = np.asarray(values, dtype=np.float32)
            except ValueError:
                shown = " ".join([token, *values]) if isinstance(values, list) else token
                raise VectorsError(f"{label}: a value is not a number: {shown[:80]!r}") from None
            if not np.isfinite(vec).all():
                raise VectorsError(f"{label}: the vector of {token!r} has NaN/Inf values")
            matrix[row] = vec
            found[row] = True
    is_pad = np.zeros(len(vocab), dtype=bool)
    if padding_idx is not None and padding_idx < len(vocab):
        is_pad[padding_idx] = True
    missing = ~found & ~is_pad
    real = found & ~is_pad
    if real.any():
        mean = matrix[real].mean(0)
        std = float(matrix[real].std()) or 1.0
    else:
        mean, std = np.zeros(dim, dtype=np.float32), 1.0
    if oov == "random":
        rng = np.random.default_rng(seed)
        matrix[missing] = (mean + rng.standard_normal((int(missing.sum()), dim)) * std).astype(np.float32)
    elif oov == "mean":
        matrix[missing] = mean
    warnings: list[str] = []
    dropped = None
    if padding_idx is not None and padding_idx < len(vocab):
        if found[padding_idx]:
            # The file had a real vector for this token (GloVe has one for 'hello' if id 0 is a word):
            # zeroing it is what padding_idx asks for, but never silently.
            dropped = vocab[padding_idx]
            warnings.append(
                f"vector for {dropped!r} at padding_idx {padding_idx} dropped (the padding row is zero) — set "
                "padding_idx = false to keep it"
            )
        matrix[padding_idx] = 0.0
    n_found, n_oov = int(real.sum()), int(missing.sum())
    if n_found == 0 and n_oov > 0:
        warnings.append(
            f"0 of {n_oov} vocabulary tokens have a vector in {vectors_path} (0 % coverage): every row is "
            f"'{oov}' OOV initialisation. Is it the right vectors/vocab pair (case, tokenisation, language)?"
        )
    report = VectorsReport(
        path=str(vectors_path),
        format=detected,
        dim=dim,
        vocab_size=len(vocab),
        found=n_found,
        oov=n_oov,
        oov_policy=oov,
        vectors_in_file=count,
        padding_dropped=dropped,
        warnings=tuple(warnings),
    )
    return matrix, report
