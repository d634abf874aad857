"""Bad inputs and odd situations end in a clear error with a documented exit code, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from seqdeploy.cli import cli
from seqdeploy.config_io import config_from_dict
from seqdeploy.errors import ConfigError, VectorsError
from seqdeploy.manifest import sha256
from seqdeploy.models.vectors import vectors_for_vocab


def run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.output


def test_int8_variant_that_fails_its_tolerance_is_never_recorded(export_tiny, copy_export, monkeypatch) -> None:
    import seqdeploy.parity.compare as compare
    from seqdeploy.parity.compare import Tolerance

    d = copy_export(export_tiny(num_layers=2))
    before = (d / "manifest.json").read_text()
    monkeypatch.setitem(compare.DEFAULT_TOLERANCES, "int8", Tolerance(1e-7, 1e-7))
    code, text = run("optimize", str(d), "--int8")
    assert code == 1, text
    assert "nothing was recorded" in text
    assert not (d / "model.int8.onnx").exists()
    assert not list(d.glob(".*tmp"))
    assert (d / "manifest.json").read_text() == before


def test_a_good_int8_variant_is_replaced_only_by_a_proven_one(export_tiny, copy_export, monkeypatch) -> None:
    import seqdeploy.parity.compare as compare
    from seqdeploy.parity.compare import Tolerance

    d = copy_export(export_tiny(num_layers=2))
    assert run("optimize", str(d), "--int8")[0] == 0
    good = sha256(d / "model.int8.onnx")
    manifest = (d / "manifest.json").read_text()
    monkeypatch.setitem(compare.DEFAULT_TOLERANCES, "int8", Tolerance(1e-7, 1e-7))
    assert run("optimize", str(d), "--int8")[0] == 1
    assert sha256(d / "model.int8.onnx") == good
    assert (d / "manifest.json").read_text() == manifest


def test_truncated_onnx_file_is_a_clear_usage_error(export_tiny, copy_export) -> None:
    d = copy_export(export_tiny())
    data = (d / "model.onnx").read_bytes()
    (d / "model.onnx").write_bytes(data[: len(data) // 3])
    code, text = run("verify", str(d), "--batch", "1", "--seq", "2")
    assert code == 2, text
    assert "model.onnx: differs from the manifest" in text and "Re-export" in text
    # Accepted as modified, the truncated graph still ends in a clear error, not a traceback.
    code, text = run("verify", str(d), "--batch", "1", "--seq", "2", "--allow-modified")
    assert code == 2, text
    assert "cannot load" in text and "Re-export" in text


def test_malformed_manifest(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("[1, 2]")
    code, text = run("verify", str(tmp_path))
    assert code == 2
    assert "expected a JSON object" in text


def test_non_utf8_config(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_bytes(b"[model]\ncell = '\xff\xfe'\n")
    code, text = run("export", str(cfg), "-o", str(tmp_path / "x"))
    assert code == 2
    assert "UTF-8" in text


def test_unknown_per_tensor_tolerance_is_refused(export_tiny) -> None:
    code, text = run("verify", str(export_tiny()), "--atol", "hn=1e-3", "--batch", "1", "--seq", "2")
    assert code == 2
    assert "unknown tensor(s) ['hn']" in text and "'h_n'" in text


def test_inputs_and_sweep_are_exclusive(export_tiny, tmp_path: Path) -> None:
    npz = tmp_path / "x.npz"
    np.savez(npz, input=np.zeros((2, 1, 5), np.float32))
    code, text = run("verify", str(export_tiny()), "--inputs", str(npz), "--batch", "1")
    assert code == 2
    assert "--inputs replaces" in text


def test_only_the_reference_warns_that_nothing_is_compared_with_it(export_tiny) -> None:
    code, text = run("verify", str(export_tiny()), "--backends", "torch", "--batch", "2", "--seq", "3")
    assert code == 0, text
    assert "WARNING: only the reference 'torch' was given" in text


def test_non_finite_reference_fails(export_tiny, tmp_path: Path) -> None:
    d = export_tiny()
    npz = tmp_path / "x.npz"
    x = np.ones((3, 2, 5), np.float32)
    x[1, 0, 2] = np.nan
    np.savez(npz, input=x, h0=np.zeros((1, 2, 4), np.float32), c0=np.zeros((1, 2, 4), np.float32))
    code, text = run("verify", str(d), "--inputs", str(npz))
    assert code == 1, text
    assert "the reference produced NaN/Inf" in text


def test_checkpoint_with_nan_is_refused(tmp_path: Path) -> None:
    from seqdeploy.models.build import build_model

    raw = {"model": {"cell": "gru", "input_size": 3, "hidden_size": 2}}
    cfg_path = tmp_path / "m.toml"
    cfg_path.write_text("[model]\ncell = 'gru'\ninput_size = 3\nhidden_size = 2\n")
    model, _ = build_model(config_from_dict(raw))
    state = model.state_dict()
    state["core.rnn.weight_hh_l0"][0, 0] = float("nan")
    torch.save(state, tmp_path / "c.pt")
    code, text = run("export", str(cfg_path), "-o", str(tmp_path / "x"), "--checkpoint", str(tmp_path / "c.pt"))
    assert code == 2
    assert "NaN/Inf" in text and "core.rnn.weight_hh_l0" in text


def test_vectors_edge_cases(tmp_path: Path) -> None:
    vocab = ["<pad>", "a b", "c"]
    ok = tmp_path / "ok.txt"
    ok.write_text("a b 1 2\nc 3 4\n")  # a token with a space, as in some large GloVe files
    m, rep = vectors_for_vocab(ok, vocab, 2)
    np.testing.assert_array_equal(m[1], [1, 2])
    assert rep.found == 2
    wide = tmp_path / "wide.txt"
    wide.write_text("c 3 4 5\n")  # one number too many is a width error, not a token "c 3"
    with pytest.raises(VectorsError, match=r"wide.txt:1: expected a token and 2 numbers"):
        vectors_for_vocab(wide, vocab, 2)
    nan = tmp_path / "nan.txt"
    nan.write_text("c nan 1\n")
    with pytest.raises(VectorsError, match=r"nan.txt:1: .*NaN/Inf"):
        vectors_for_vocab(nan, vocab, 2)
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"c 1 2\n\xe9t\xe9 3 4\n")
    with pytest.raises(VectorsError, match=r"latin.txt:2: not UTF-8"):
        vectors_for_vocab(latin, vocab, 2)


def test_num_layers_contradicting_hidden_sizes() -> None:
    raw = {"model": {"cell": "lstm_cell", "input_size": 3, "hidden_sizes": [4, 2], "num_layers": 4}}
    with pytest.raises(ConfigError, match=r"model.num_layers: 4 contradicts hidden_sizes"):
        config_from_dict(raw)
    raw["model"]["num_layers"] = 2
    assert config_from_dict(raw).model.layer_sizes == (4, 2)


def test_profile_rejects_non_finite_min_time(export_tiny) -> None:
    code, text = run("profile", str(export_tiny()), "--min-time", "nan")
    assert code == 2
    assert "finite" in text


def test_unexpected_exception_is_reported_as_an_internal_error(export_tiny, monkeypatch) -> None:
    import seqdeploy.parity.run as prun

    def boom(*a: object, **k: object) -> None:
        raise RuntimeError("planted bug")

    monkeypatch.setattr(prun, "_run", boom)
    code, text = run("verify", str(export_tiny()), "--batch", "1", "--seq", "2")
    assert code == 70
    assert "internal error (a seqdeploy bug" in text and "planted bug" in text


def test_verify_interrupted_writes_a_partial_report(export_tiny, tmp_path, monkeypatch) -> None:
    import seqdeploy.parity.run as prun

    real = prun._chunked

    def interrupt(*a: object, **k: object) -> None:
        real(*a, **k)  # type: ignore[arg-type]
        raise KeyboardInterrupt

    monkeypatch.setattr(prun, "_chunked", interrupt)
    j = tmp_path / "r.json"
    code, text = run("verify", str(export_tiny()), "--batch", "2", "--seq", "3,4", "--json", str(j))
    assert code == 130, text
    rep = json.loads(j.read_text())
    assert rep["partial"] is True
    assert rep["summary"].startswith("PARTIAL (interrupted)")
    assert {c["seq"] for c in rep["cases"]} == {3}


def test_profile_loads_every_runner_in_one_snapshot(export_tiny, monkeypatch) -> None:
    """Finding 13: the streaming runners were loaded in a second snapshot after the whole sweep, so an
    ``optimize`` commit during a long profile threw the finished sweep away (BundleChanged, restart).
    """
    import contextlib

    from seqdeploy.manifest import Bundle
    from seqdeploy.profile.run import ProfileOptions, profile

    b = Bundle.load(export_tiny())
    assert b.streamable
    snapshots: list[str] = []
    real = Bundle.snapshot

    @contextlib.contextmanager
    def counting(self: Bundle):  # type: ignore[no-untyped-def]
        snapshots.append("taken")
        with real(self):
            yield

    monkeypatch.setattr(Bundle, "snapshot", counting)
    opts = ProfileOptions(
        backends=("ort-cpu",), baseline="ort-cpu", batches=(1,), seqs=(2,), warmup=0, iters=2,
        streaming=True, streaming_steps=2, sgemm_n=0,
    )  # fmt: skip
    report = profile(b, opts)
    assert {c.mode for c in report.cases} == {"sequence", "streaming"}
    assert snapshots == ["taken"]


def test_profile_interrupted_report_summary_says_partial_once(export_tiny, tmp_path, monkeypatch) -> None:
    """Finding 21, through the CLI: the verify summary of an interrupted run names PARTIAL once."""
    import seqdeploy.parity.run as parity_run

    calls = {"n": 0}
    real = parity_run._Verifier.cases

    def interrupting(self):  # type: ignore[no-untyped-def]
        for case in real(self):
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt
            yield case

    monkeypatch.setattr(parity_run._Verifier, "cases", interrupting)
    code, text = run("verify", str(export_tiny()), "--batch", "1", "--seq", "2,3", "--json", str(tmp_path / "r.json"))
    assert code == 130, text
    summary = json.loads((tmp_path / "r.json").read_text())["summary"]
    assert summary.startswith("PARTIAL (interrupted) NOT PROVEN:") and "interrupted after" not in summary, summary
