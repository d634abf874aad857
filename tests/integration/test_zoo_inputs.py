"""Zoo models fed by the user's files through the CLI: tutorial checkpoints (mapping printed), vectors traps
(printed and recorded), and the ``output_last`` head that the tutorial's ``fc(out[-1])`` needs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from click.testing import CliRunner

from seqdeploy.cli import cli
from seqdeploy.manifest import Bundle
from tests.tutorial_models import SentimentNet, trained


def run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.output


SENTIMENT = """
[model]
cell = "lstm"
hidden_size = 6
bidirectional = true
[model.embedding]
vocab_size = 52
dim = 10
{embedding}
[model.head]
task = "classify"
num_classes = 3
pooling = "output_last"
[shapes]
batch = [1, 2, 4]
seq = [1, 8, 24]
"""


def _cfg(tmp_path: Path, embedding: str = "padding_idx = false", extra: str = "") -> Path:
    path = tmp_path / "zoo.toml"
    path.write_text(SENTIMENT.format(embedding=embedding) + extra)
    return path


def test_a_tutorial_checkpoint_loads_into_the_zoo_and_matches_the_users_module(tmp_path: Path):
    tut = trained(SentimentNet())
    ckpt = tmp_path / "train.pt"
    torch.save({"epoch": 3, "model_state_dict": {f"module.{k}": v for k, v in tut.state_dict().items()}}, ckpt)
    out = tmp_path / "b"
    code, text = run("export", str(_cfg(tmp_path)), "-o", str(out), "--checkpoint", str(ckpt))
    assert code == 0, text
    assert "checkpoint: took the state_dict under 'model_state_dict'" in text
    assert "checkpoint: stripped the 'module.' prefix" in text
    assert "'lstm.' -> 'core.rnn.', 'fc.' -> 'head.'" in text
    m = json.loads((out / "manifest.json").read_text())
    assert m["checkpoint_load"]["mapping"] == {"lstm.": "core.rnn.", "fc.": "head."}
    assert m["checkpoint_load"]["mapping_source"] == "structure"
    # The deployed graph computes the user's fc(out[-1]), checked with outputs of the user's own module.
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 52, (11, 3), generator=g)
    h0, c0 = torch.randn(2, 3, 6, generator=g), torch.randn(2, 3, 6, generator=g)
    with torch.no_grad():
        logits, (h_n, c_n) = tut(ids, (h0, c0))
    golden = tmp_path / "golden.npz"
    np.savez(
        golden,
        input=ids.numpy(),
        h0=h0.numpy(),
        c0=c0.numpy(),
        output=logits.numpy(),
        h_n=h_n.numpy(),
        c_n=c_n.numpy(),
    )
    code, text = run("verify", str(out), "--expected", str(golden), "--backends", "ort-cpu")
    assert code == 0, text


def test_an_ambiguous_checkpoint_is_refused_with_the_proposal(tmp_path: Path):
    sd = trained(SentimentNet()).state_dict()
    sd["fc2.weight"] = torch.zeros(3, 12)
    torch.save(sd, tmp_path / "c.pt")
    code, text = run("export", str(_cfg(tmp_path)), "-o", str(tmp_path / "b"), "--checkpoint", str(tmp_path / "c.pt"))
    assert code == 2
    assert "proposed mapping by structure" in text and "fc2.weight [3, 12]" in text
    assert not (tmp_path / "b").exists()


def test_checkpoint_map_in_the_config(tmp_path: Path):
    tut = trained(SentimentNet())
    torch.save(tut.state_dict(), tmp_path / "c.pt")
    cfg = _cfg(tmp_path, extra='[checkpoint]\nmap = { "lstm." = "core.rnn.", "fc." = "head." }\n')
    code, text = run("export", str(cfg), "-o", str(tmp_path / "b"), "--checkpoint", str(tmp_path / "c.pt"))
    assert code == 0, text
    assert "checkpoint: mapped by [checkpoint] map: 'lstm.' -> 'core.rnn.', 'fc.' -> 'head.'" in text


def _vectors(tmp_path: Path, rows: dict[str, list[float]], vocab: list[str]) -> str:
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (tmp_path / "glove.txt").write_text("".join(f"{t} {' '.join(map(str, v))}\n" for t, v in rows.items()))
    return 'vectors = "glove.txt"\nvocab = "vocab.txt"'


VOCAB = ["hello", *(f"w{i}" for i in range(51))]


def test_vectors_with_a_checkpoint_are_checked_and_reported_unused(tmp_path: Path):
    torch.save(trained(SentimentNet()).state_dict(), tmp_path / "c.pt")
    emb = _vectors(tmp_path, {"hello": [1.0] * 10}, VOCAB)
    cfg = _cfg(tmp_path, embedding=emb)
    code, text = run("export", str(cfg), "-o", str(tmp_path / "b"), "--checkpoint", str(tmp_path / "c.pt"))
    assert code == 0, text
    assert "glove.txt not loaded: --checkpoint was given: the checkpoint's embedding weights win" in text
    rec = json.loads((tmp_path / "b" / "manifest.json").read_text())["embedding_vectors"]
    assert rec["used"] is False and rec["format"] == "glove"
    (tmp_path / "glove.txt").unlink()  # a path that does not exist is never silently ignored
    code, text = run("export", str(cfg), "-o", str(tmp_path / "b2"), "--checkpoint", str(tmp_path / "c.pt"))
    assert code == 2 and "glove.txt: vectors file not found" in text


def test_vectors_traps_are_printed_and_recorded(tmp_path: Path):
    emb = _vectors(tmp_path, {"hello": [1.0] * 10, "w3": [2.0] * 10}, VOCAB)
    code, text = run("export", str(_cfg(tmp_path, embedding=emb + "\npadding_idx = 0")), "-o", str(tmp_path / "b"))
    assert code == 0, text
    assert "WARNING: vector for 'hello' at padding_idx 0 dropped" in text
    rec = json.loads((tmp_path / "b" / "manifest.json").read_text())["embedding_vectors"]
    assert rec["padding_dropped"] == "hello" and rec["found"] == 1
    code, text = run("export", str(_cfg(tmp_path, embedding=emb + "\npadding_idx = false")), "-o", str(tmp_path / "c"))
    assert code == 0, text
    assert "dropped" not in text and "2/52 vocabulary rows found" in text
    weight = torch.load(tmp_path / "c" / "model.pt", weights_only=True)["embedding.weight"]
    assert torch.equal(weight[0], torch.ones(10))  # 'hello' keeps its vector


def test_zero_coverage_is_a_loud_warning(tmp_path: Path):
    emb = _vectors(tmp_path, {"Hello": [1.0] * 10}, VOCAB)
    code, text = run("export", str(_cfg(tmp_path, embedding=emb)), "-o", str(tmp_path / "b"))
    assert code == 0, text
    assert "WARNING: 0 of 51 vocabulary tokens have a vector" in text
    rec = json.loads((tmp_path / "b" / "manifest.json").read_text())["embedding_vectors"]
    assert rec["coverage"] == 0.0 and rec["warnings"]


def test_a_vectors_path_that_is_a_directory_exits_2(tmp_path: Path):
    (tmp_path / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    (tmp_path / "vecs").mkdir()
    code, text = run(
        "export", str(_cfg(tmp_path, embedding='vectors = "vecs"\nvocab = "vocab.txt"')), "-o", str(tmp_path / "b")
    )
    assert code == 2, text
    assert "vecs: is a directory" in text and "Traceback" not in text


def test_output_last_with_lengths_exports_and_verifies(export_tiny: Callable[..., Path]):
    d = export_tiny(
        bidirectional=True,
        num_layers=2,
        head={"task": "classify", "num_classes": 3, "pooling": "output_last"},
        export={"lengths": True},
    )
    b = Bundle.load(d)
    assert b.manifest["self_check"]["passed"]
    code, text = run("verify", str(d), "--batch", "2,5", "--seq", "3,17")
    assert code == 0, text
    assert "[padding]" in text


def test_output_last_reads_each_rows_last_valid_step():
    from seqdeploy.models.build import build_model
    from tests.conftest import tiny_config

    cfg = tiny_config(
        bidirectional=True,
        head={"task": "classify", "num_classes": 3, "pooling": "output_last"},
        export={"lengths": True},
    )
    model, _ = build_model(cfg)
    x = torch.randn(6, 3, 5)
    lengths = torch.tensor([6, 2, 4])
    h0, c0 = torch.zeros(2, 3, 4), torch.zeros(2, 3, 4)
    with torch.no_grad():
        logits = model(x, lengths, h0, c0)[0]
        for row, n in enumerate(lengths.tolist()):
            y, _ = model.core.rnn(x[:n, row : row + 1], (h0[:, row : row + 1], c0[:, row : row + 1]))
            want = model.head(y[-1])  # the unpadded row's out[-1]
            assert torch.allclose(logits[row], want[0], atol=1e-6)
