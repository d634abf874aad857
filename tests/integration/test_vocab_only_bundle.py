"""A zoo config with ``[model.embedding] vocab`` and no ``vectors`` (B4 follow-ups): the export says it checked
the vocabulary, and ``package`` finds it through the path the export recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from seqdeploy.cli import cli

TOKENS = ["<pad>", "<unk>", "good", "bad", "film", "plot"]


def run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.output


def _config(root: Path) -> Path:
    cfg_dir = root / "cfg"
    cfg_dir.mkdir()
    (cfg_dir / "v.txt").write_text("\n".join(TOKENS) + "\n")
    path = cfg_dir / "m.toml"
    path.write_text(
        '[model]\ncell = "gru"\nhidden_size = 4\n'
        f'[model.embedding]\nvocab_size = {len(TOKENS)}\ndim = 3\npadding_idx = 0\nvocab = "v.txt"\n'
        '[model.head]\ntask = "classify"\nnum_classes = 2\n'
        "[shapes]\nbatch = [1, 2, 4]\nseq = [1, 6, 12]\n"
    )
    return path


def test_a_vocab_only_bundle_says_so_and_packages_its_vocabulary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The export printed nothing about the vocab (the comment claimed "vectors: PATH not loaded"), and
    `package OUT -o PKG` failed: "the config's vocabulary 'v.txt' was not found (looked at OUT/v.txt)" — the
    recorded, resolved vocab path was never a candidate (only a vectors path was)."""
    cfg = _config(tmp_path)
    vocab = tmp_path / "cfg" / "v.txt"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # neither the config's dir nor the bundle's: only the record can find v.txt
    code, text = run("export", str(cfg), "-o", str(tmp_path / "out"))
    assert code == 0, text
    assert f"vocab: {vocab} ({len(TOKENS)} tokens) checked" in text
    assert "not loaded" not in text
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert m["embedding_vectors"]["vocab"] == str(vocab) and m["embedding_vectors"]["used"] is False

    # With --checkpoint: the same line, not "vectors: v.txt not loaded" (there are no vectors to load).
    code, text = run(
        "export", str(cfg), "-o", str(tmp_path / "out2"), "--checkpoint", str(tmp_path / "out" / "model.pt")
    )
    assert code == 0, text
    assert f"vocab: {vocab} ({len(TOKENS)} tokens) checked" in text
    assert "not loaded" not in text

    code, text = run("package", str(tmp_path / "out"), "-o", str(tmp_path / "pkg"))
    assert code == 0, text
    assert (tmp_path / "pkg" / "vocab.txt").read_text().split() == TOKENS
    manifest = json.loads((tmp_path / "pkg" / "seqdeploy.json").read_text())
    assert manifest["text"]["vocab_size"] == len(TOKENS)
