"""The package manifest reader, the tokenizer, and the ``[model.head] labels`` config key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from seqdeploy.config_io import config_from_dict
from seqdeploy.errors import ConfigError, InputError, IntegrityError, UsageError
from seqdeploy.manifest import manifest_digest
from seqdeploy.package.manifest import TextSpec, file_table, read_manifest, verify_files
from seqdeploy.runtime._text import Tokenizer, parse_vocab
from tests.conftest import tiny_raw


def _tensor(name: str, dtype: str, dims: list[Any]) -> dict[str, Any]:
    return {"name": name, "dtype": dtype, "dims": dims}


def _write(root: Path, contents: dict[str, bytes], **override: Any) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for rel, data in contents.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    manifest: dict[str, Any] = {
        "format": "seqdeploy-package",
        "schema_version": 1,
        "name": "m",
        "default_model": "m",
        "model": {"head": "none", "streamable": True},
        "models": {
            "m": {
                "kind": "stateless",
                "precision": "fp32",
                "platform": "onnxruntime_onnx",
                "file": "m/1/model.onnx",
                "config": "m/config.pbtxt",
                "max_batch_size": 2,
                "ranges": {"batch": [1, 2], "seq": [1, 8]},
                "inputs": [
                    _tensor("input", "float32", ["batch", "seq", 3]),
                    _tensor("h0", "float32", ["batch", 1, 3]),
                ],
                "outputs": [
                    _tensor("output", "float32", ["batch", "seq", 3]),
                    _tensor("h_n", "float32", ["batch", 1, 3]),
                ],
                "state": [{"input": "h0", "output": "h_n"}],
                "control": {},
            }
        },
        "text": None,
        "labels": None,
        "files": file_table(root),
    }
    manifest.update(override)
    manifest["manifest_sha256"] = manifest_digest(manifest)
    (root / "seqdeploy.json").write_text(json.dumps(manifest))
    return root


FILES = {"m/1/model.onnx": b"graph", "m/config.pbtxt": b"cfg", "README.md": b"card"}


def test_reads_and_verifies(tmp_path: Path) -> None:
    root = _write(tmp_path / "p", FILES)
    m = read_manifest(root)
    assert m.model().name == "m" and m.model().spec.input_names == ("input", "h0") and m.streamable
    kept = verify_files(m, keep=["m/1/model.onnx"])
    assert kept == {"m/1/model.onnx": b"graph"}
    with pytest.raises(UsageError, match="has no model 'x'; its models are m"):
        m.model("x")


@pytest.mark.parametrize(
    ("override", "error", "match"),
    [
        ({"schema_version": 2}, UsageError, "schema_version 2 is not supported"),
        ({"format": "other"}, UsageError, "not a seqdeploy package manifest"),
        ({"default_model": "zz"}, IntegrityError, "default_model 'zz'"),
        ({"files": {"../x": {"sha256": "0" * 64}}}, IntegrityError, "not a plain relative path"),
        ({"files": {"/etc/passwd": {"sha256": "0" * 64}}}, IntegrityError, "not a plain relative path"),
        (
            {
                "text": {
                    "vocab": "../v.txt",
                    "vocab_size": 1,
                    "lowercase": True,
                    "pattern": "x",
                    "oov": "unk",
                    "pad_id": 0,
                }
            },
            IntegrityError,
            "not a plain relative path",
        ),
        ({"model": {"head": "none"}}, IntegrityError, "malformed"),
    ],
)
def test_malformed_manifests(tmp_path: Path, override: dict[str, Any], error: type[Exception], match: str) -> None:
    root = _write(tmp_path / "p", FILES, **override)
    with pytest.raises(error, match=match):
        read_manifest(root)


def _trt(**override: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "for_model": "m",
        "precision": "fp32",
        "config": "m_trt/config.pbtxt",
        "inputs": [_tensor("input", "float32", ["seq", "batch", 3]), _tensor("h0", "float32", [1, "batch", 3])],
        "outputs": [_tensor("output", "float32", ["seq", "batch", 3]), _tensor("h_n", "float32", [1, "batch", 3])],
        "state": [{"input": "h0", "output": "h_n"}],
        "ranges": {"batch": [1, 2], "seq": [1, 8]},
        "engines": [{"file": "m_trt/1/a.plan", "compute_capability": "7.5", "plan_sha256": "0" * 64}],
    }
    entry.update(override)
    return {"models": {"m_trt": entry}, "note": ""}


def test_tensorrt_models_are_read_and_checked(tmp_path: Path) -> None:
    # packages made before TensorRT models were packaged say "models": []
    assert read_manifest(_write(tmp_path / "old", FILES, trt={"models": [], "note": "x"})).trt_models == {}
    m = read_manifest(_write(tmp_path / "new", FILES, trt=_trt()))
    t = m.trt_models["m_trt"]
    assert m.trt_for("m") is t and m.trt_for("m_stream") is None
    assert t.spec.tensor("input").batch_axis == 1 and t.ranges == {"batch": (1, 2), "seq": (1, 8)}
    with pytest.raises(UsageError, match="TensorRT form of 'm'"):
        m.model("m_trt")
    for override, match in (
        ({"for_model": "zz"}, "for_model 'zz'"),
        ({"engines": []}, "lists no engine"),
        ({"engines": [{"file": "m/1/a.plan", "compute_capability": "7.5", "plan_sha256": "0"}]}, "not inside"),
        ({"engines": [{"file": "../a.plan", "compute_capability": "7.5", "plan_sha256": "0"}]}, "not a plain"),
    ):
        with pytest.raises(IntegrityError, match=match):
            read_manifest(_write(tmp_path / match.replace(" ", "_"), FILES, trt=_trt(**override)))


def test_digest_and_not_a_package(tmp_path: Path) -> None:
    root = _write(tmp_path / "p", FILES)
    raw = json.loads((root / "seqdeploy.json").read_text())
    raw["models"]["m"]["max_batch_size"] = 64
    (root / "seqdeploy.json").write_text(json.dumps(raw))
    with pytest.raises(IntegrityError, match="edited after seqdeploy wrote it"):
        read_manifest(root)
    (root / "seqdeploy.json").write_text("{not json")
    with pytest.raises(IntegrityError, match="unreadable"):
        read_manifest(root)
    with pytest.raises(UsageError, match="not a package directory"):
        read_manifest(tmp_path / "missing")
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "manifest.json").write_text("{}")
    with pytest.raises(UsageError, match="this is an export directory"):
        read_manifest(tmp_path / "export")


def test_verify_files_names_the_file(tmp_path: Path) -> None:
    root = _write(tmp_path / "p", FILES)
    (root / "m" / "config.pbtxt").write_bytes(b"cfG")
    with pytest.raises(IntegrityError, match=r"'m/config\.pbtxt' was modified"):
        verify_files(read_manifest(root))


def test_tokenizer_rules() -> None:
    vocab = ["<pad>", "<unk>", "hello", "world", "!", "Big"]
    spec = TextSpec("vocab.txt", 6, True, r"\w+|[^\w\s]", "<unk>", 1, "unk", 0)
    tok = Tokenizer(spec, vocab)
    assert tok.encode("Hello, WORLD!") == (["hello", ",", "world", "!"], [2, 1, 3, 4])
    strict = Tokenizer(TextSpec("vocab.txt", 6, False, r"\w+|[^\w\s]", None, None, "error", 0), vocab)
    assert strict.encode("Big hello")[1] == [5, 2]  # case kept
    with pytest.raises(InputError, match=r"not in the vocabulary.*\['nope'\]"):
        strict.encode("hello nope", index=3)
    with pytest.raises(InputError, match=r"text 0 .* has no tokens"):
        tok.encode("   ")
    with pytest.raises(IntegrityError, match="vocab_size = 7"):
        Tokenizer(TextSpec("v", 7, True, "x", None, None, "error", 0), vocab)
    assert parse_vocab(b"a\nb\n", where="v") == ["a", "b"] and parse_vocab(b"a\nb", where="v") == ["a", "b"]
    with pytest.raises(IntegrityError, match="lines 1 and 3"):
        parse_vocab(b"a\nb\na\n", where="v")
    with pytest.raises(IntegrityError, match="not UTF-8"):
        parse_vocab(b"\xff\n", where="v")


def test_labels_config_key() -> None:
    head = {"task": "classify", "num_classes": 2, "labels": ["neg", "pos"]}
    cfg = config_from_dict(tiny_raw(head=head))
    assert cfg.model.head.labels == ("neg", "pos")
    for bad, match in (
        ({"task": "classify", "num_classes": 3, "labels": ["a", "b"]}, "labels: expected 3 names"),
        ({"task": "tag", "num_classes": 2, "labels": ["a", "a"]}, "labels: names must be unique"),
        ({"task": "tag", "num_classes": 2, "labels": ["a", " "]}, "labels\\[1\\]: expected a non-empty"),
        ({"task": "none", "labels": ["a"]}, "labels: only valid with task"),
        ({"task": "classify", "num_classes": 2, "labels": ["a", 2]}, "labels\\[1\\]: expected string"),
    ):
        with pytest.raises(ConfigError, match=f"model.head.{match}"):
            config_from_dict(tiny_raw(head=bad))
