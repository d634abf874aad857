"""``seqdeploy.runtime`` and ``seqdeploy predict``: torch-free, checked before loading, thread-safe, strict."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from seqdeploy.cli import cli
from seqdeploy.errors import BackendUnavailable, InputError, IntegrityError, UsageError
from seqdeploy.package.check import check_package
from seqdeploy.package.manifest import read_manifest
from seqdeploy.runtime import load
from tests.integration._packages import copy_package, package_for, run_blocked

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pkg(tmp_path_factory: pytest.TempPathFactory, export_tiny: Callable[..., Path]) -> Callable[[str], Path]:
    def get(name: str) -> Path:
        return package_for(name, tmp_path_factory, export_tiny)[1]

    return get


def test_runtime_path_never_imports_torch(pkg: Callable[[str], Path], tmp_path: Path) -> None:
    out = pkg("lstm_text")
    code = f"""
import sys
import numpy as np
from seqdeploy import runtime
p = runtime.load({str(out)!r})
r = p.predict_text(["The film was good, not great!", "a bad movie"])
assert r["labels"][0] in ("neg", "neutral", "pos"), r["labels"]
assert r["probabilities"].shape == (2, 3) and np.allclose(r["probabilities"].sum(1), 1, atol=1e-6)
s = runtime.load({str(out)!r}, model="lstm_text_stream").stream()
s.feed(np.array([[2, 4, 5]], dtype=np.int64))
from seqdeploy.cli import main
sys.argv = ["seqdeploy", "predict", {str(out)!r}, "--text", "a fine film"]
try:
    main()
except SystemExit as e:
    assert e.code == 0, e.code
heavy = [m for m in ("torch", "onnx", "tritonclient") if m in sys.modules]
print("HEAVY:" + ",".join(heavy))
"""
    r = run_blocked(code, ("torch", "onnx", "onnxscript", "tritonclient"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "HEAVY:\n" in r.stdout or r.stdout.rstrip().endswith("HEAVY:")
    assert "'a fine film' -> " in r.stdout


def test_export_without_the_export_extra_exits_3(tmp_path: Path) -> None:
    code = f"""
import sys
from seqdeploy.cli import main
sys.argv = ["seqdeploy", "export", {str(REPO / "configs" / "default.toml")!r}, "-o", {str(tmp_path / "x")!r}]
main()
"""
    r = run_blocked(code, ("torch", "onnx"))
    assert r.returncode == 3, r.stderr
    assert "seqdeploy[cpu,export]" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x").exists()


def test_package_check_without_tritonclient_exits_3(pkg: Callable[[str], Path]) -> None:
    code = f"""
import sys
from seqdeploy.cli import main
sys.argv = ["seqdeploy", "package", "--check", {str(pkg("bidir"))!r}]
main()
"""
    r = run_blocked(code, ("tritonclient",))
    assert r.returncode == 3, r.stderr
    assert "seqdeploy[triton]" in r.stderr


def test_predictions_and_stream_match_the_full_run(pkg: Callable[[str], Path]) -> None:
    p = load(pkg("gru_tagger"))
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 20, size=(3, 11), dtype=np.int64)
    full = p.predict(ids)
    s = p.stream(batch=3)
    outs = [s.feed(ids[:, a:b]) for a, b in ((0, 4), (4, 5), (5, 11))]
    np.testing.assert_allclose(np.concatenate([o["output"] for o in outs], axis=1), full["output"], atol=1e-6)
    np.testing.assert_allclose(outs[-1]["h_n"], full["h_n"], atol=1e-6)
    np.testing.assert_allclose(s.states["h0"], full["h_n"], atol=1e-6)
    s.reset()
    np.testing.assert_allclose(s.feed(ids)["h_n"], full["h_n"], atol=1e-6)
    # rows of different lengths: predict_ids pads and batches with lengths; each row equals its own run
    rows = [[1, 2, 3, 4, 5], [6], [7, 8]]
    res = p.predict_ids(rows)
    for i, row in enumerate(rows):
        alone = p.predict(np.array([row], dtype=np.int64))
        np.testing.assert_allclose(res["output"][i, : len(row)], alone["output"][0], atol=1e-6)
        assert not res["output"][i, len(row) :].any()
        assert len(res["labels"][i]) == len(row)


def test_stream_model_driven_like_the_sequence_batcher(pkg: Callable[[str], Path]) -> None:
    """Two sequences share each batch of the stream model; one starts later on NaN-filled state memory."""
    out = pkg("lstm_text")
    stateless, stream = load(out), load(out, model="lstm_text_stream")
    a = np.array([[2, 4, 5, 6, 9, 10, 3]], dtype=np.int64)
    b = np.array([[3, 12, 5, 7, 11]], dtype=np.int64)
    sig = stream.signature
    nan = {p.input: np.full((1, *sig.spec.tensor(p.input).dims[1:]), np.nan, np.float32) for p in sig.state}
    # request 1: a[0:3] starts alone
    r1 = stream.run({"input": a[:, :3], "lengths": np.array([3]), "START": np.ones((1, 1), np.int32), **nan})
    state_a = {p.input: r1[p.output] for p in sig.state}
    # request 2: a[3:5] continues (row 1) next to b[0:2] starting (row 0) on NaN memory
    feeds = {
        "input": np.concatenate([b[:, :2], a[:, 3:5]]),
        "lengths": np.array([2, 2]),
        "START": np.array([[1], [0]], np.int32),
        **{k: np.concatenate([nan[k], state_a[k]]) for k in state_a},
    }
    r2 = stream.run(feeds)
    state_b = {p.input: r2[p.output][:1] for p in sig.state}
    state_a = {p.input: r2[p.output][1:] for p in sig.state}
    # request 3: the rest of both, padded to T = 3 (b has 3 left, a has 2)
    feeds = {
        "input": np.concatenate([a[:, 5:7], np.zeros((1, 1), np.int64)], axis=1),
        "lengths": np.array([2]),
        "START": np.zeros((1, 1), np.int32),
        **state_a,
    }
    feeds = {
        "input": np.concatenate([feeds["input"], b[:, 2:5]]),
        "lengths": np.array([2, 3]),
        "START": np.zeros((2, 1), np.int32),
        **{k: np.concatenate([state_a[k], state_b[k]]) for k in state_a},
    }
    r3 = stream.run(feeds)
    for row, seq in ((0, a), (1, b)):
        want = stateless.predict(seq)
        for p in sig.state:
            np.testing.assert_allclose(r3[p.output][row : row + 1], want[p.output], atol=1e-5)
        np.testing.assert_allclose(r3["output"][row : row + 1], want["output"], atol=1e-5)  # classifier: last state
    assert not np.isnan(r3["h_n"]).any()


def test_eight_threads_share_one_predictor(pkg: Callable[[str], Path]) -> None:
    p = load(pkg("lstm_text"), threads=1)
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 16, size=(2, int(rng.integers(1, 24))), dtype=np.int64) for _ in range(6)]
    serial = [p.predict(x) for x in batches]
    errors: list[str] = []

    def work(k: int) -> None:
        for i in range(60):
            j = (i + k) % len(batches)
            got = p.predict(batches[j])
            if any(not np.array_equal(got[n], serial[j][n]) for n in got):
                errors.append(f"thread {k} call {i}")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and not any(t.is_alive() for t in threads)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda p: p.predict(np.array([[1, 2]], dtype=np.int32)), "got dtype int32, expected int64"),
        (lambda p: p.predict(np.array([1, 2], dtype=np.int64)), "expected a numpy array"),
        (lambda p: p.predict([[1, 2]]), "expected a numpy array"),
        (lambda p: p.predict(np.array([[1, 16]], dtype=np.int64)), "in the vocabulary in \\[0, 15\\]"),
        (lambda p: p.predict(np.array([[1, 2]], dtype=np.int64), lengths=np.array([0])), "lengths"),
        (lambda p: p.predict(np.array([[1, 2]], dtype=np.int64), lengths=np.array([3])), "lengths"),
        (lambda p: p.predict(np.ones((1, 25), dtype=np.int64)), "outside the packaged range \\[1, 24\\]"),
        (lambda p: p.predict(np.ones((7, 3), dtype=np.int64)), "exceeds model 'lstm_text''s max_batch_size 6"),
        (
            lambda p: p.predict(np.ones((1, 3), dtype=np.int64), states={"h0": np.zeros((1, 2, 4), np.float32)}),
            "states must be exactly",
        ),
        (
            lambda p: p.predict(
                np.ones((1, 3), dtype=np.int64),
                states={"h0": np.zeros((1, 2, 4), np.float32), "c0": np.zeros((1, 3, 4), np.float32)},
            ),
            "axis 1 must be 2",
        ),
        (lambda p: p.predict_text(["zzz qqq"]), None),  # unknown words map to <unk>: fine
        (lambda p: p.predict_text([" ,"]), None),
        (lambda p: p.predict_text(["   "]), "has no tokens"),
        (lambda p: p.predict_text("a film"), "list of texts"),
        (lambda p: p.predict_text(["film " * 30]), "row 0 has 30 tokens"),
        (lambda p: p.stream(batch=7), "stream batch"),
    ],
)
def test_bad_input_is_refused_with_what_was_expected(
    pkg: Callable[[str], Path], call: Callable[..., object], match: str | None
) -> None:
    p = load(pkg("lstm_text"))
    if match is None:
        call(p)
        return
    with pytest.raises((InputError, UsageError), match=match):
        call(p)


def test_stream_flag_must_be_0_or_1(pkg: Callable[[str], Path]) -> None:
    s = load(pkg("lstm_text"), model="lstm_text_stream")
    z = s.signature.zero_state(1)
    with pytest.raises(InputError, match="START flag must be 0"):
        s.run(
            {"input": np.ones((1, 2), np.int64), "lengths": np.array([2]), "START": np.full((1, 1), 2, np.int32), **z}
        )
    with pytest.raises(InputError, match="missing inputs \\['START'\\]"):
        s.run({"input": np.ones((1, 2), np.int64), "lengths": np.array([2]), **z})


def test_models_backends_and_capabilities(pkg: Callable[[str], Path]) -> None:
    out = pkg("lstm_text")
    with pytest.raises(UsageError, match="has no model 'nope'; its models are lstm_text, lstm_text_int8"):
        load(out, model="nope")
    with pytest.raises(UsageError, match="unknown runtime backend 'tensorrt'"):
        load(out, backend="tensorrt")
    with pytest.raises(BackendUnavailable, match="no TensorRT engine for model 'lstm_text'"):
        load(out, backend="trt")  # a backend now; this package has no engines (see test_package_trt.py)
    with pytest.raises(BackendUnavailable, match="seqdeploy\\[gpu\\]"):
        load(out, backend="ort-cuda")
    with pytest.raises(UsageError, match="CPU only"):
        load(out, model="lstm_text_int8", backend="ort-cuda")
    p8 = load(out, model="lstm_text_int8")
    assert p8.backend == "ort-cpu" and p8.signature.precision == "int8"
    with pytest.raises(UsageError, match="cannot stream"):
        load(pkg("bidir")).stream()
    with pytest.raises(UsageError, match="cannot stream"):
        load(pkg("nostate")).stream()
    feats = load(pkg("bidir"))
    with pytest.raises(UsageError, match="float features"):
        feats.predict_ids([[1, 2]])
    with pytest.raises(UsageError, match="no vocabulary"):
        load(pkg("gru_tagger")).predict_text(["a"])
    with pytest.raises(InputError, match="no 'lengths' input"):
        feats.predict(np.zeros((2, 3, 5), np.float32), lengths=np.array([3, 2]))
    assert feats.predict(np.zeros((2, 3, 5), np.float32), lengths=np.array([3, 3]))["output"].shape == (2, 3, 40 // 5)


def test_text_rules_and_labels(pkg: Callable[[str], Path]) -> None:
    p = load(pkg("lstm_text"))
    r = p.predict_text(["The FILM, was GOOD!", "zzz film"])
    assert r["tokens"] == [["the", "film", ",", "was", "good", "!"], ["zzz", "film"]]
    assert r["ids"].tolist() == [[2, 4, 10, 5, 6, 11], [1, 4, 0, 0, 0, 0]]  # <unk> = 1, padded with <pad> = 0
    assert r["lengths"].tolist() == [6, 2]
    assert all(label in ("neg", "neutral", "pos") for label in r["labels"])
    direct = p.predict(np.array([[2, 4, 10, 5, 6, 11]], dtype=np.int64))
    np.testing.assert_allclose(r["output"][:1], direct["output"], atol=1e-6)


def test_int8_rows_run_alone(pkg: Callable[[str], Path]) -> None:
    """int8's dynamic quantization uses one scale per execution: each text's answer must be its own run's."""
    p8 = load(pkg("lstm_text"), model="lstm_text_int8")
    texts = ["the film was good !", "bad", "not a great movie , the plot was fine ."]
    r = p8.predict_text(texts)
    for i, text in enumerate(texts):
        alone = p8.predict_text([text])
        np.testing.assert_array_equal(r["output"][i], alone["output"][0], err_msg=text)
        assert r["labels"][i] == alone["labels"][0]


def test_every_tampered_file_is_refused_by_name(pkg: Callable[[str], Path], tmp_path: Path) -> None:
    src = pkg("lstm_text")
    names = [*sorted(read_manifest(src).files), "seqdeploy.json"]
    assert len(names) >= 12
    for i, rel in enumerate(names):
        out = copy_package(src, tmp_path / str(i))
        path = out / rel
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
        with pytest.raises(IntegrityError, match="seqdeploy.json" if rel == "seqdeploy.json" else f"'{rel}'"):
            load(out, model="lstm_text_int8" if "int8" in rel else None)
        result = check_package(out)
        assert not result.passed
        assert any(rel in p for item in result.items for p in item.problems), result.render()


def test_unlisted_missing_and_linked_files_are_refused(pkg: Callable[[str], Path], tmp_path: Path) -> None:
    src = pkg("bidir")
    out = copy_package(src, tmp_path / "a")
    (out / "bidir" / "1" / "extra.onnx").write_bytes(b"x")
    with pytest.raises(IntegrityError, match=r"'bidir/1/extra\.onnx' is not listed"):
        load(out)
    out = copy_package(src, tmp_path / "b")
    (out / "README.md").unlink()
    with pytest.raises(IntegrityError, match=r"'README\.md' listed in seqdeploy\.json is missing"):
        load(out)
    out = copy_package(src, tmp_path / "c")
    target = out / "README.md"
    moved = tmp_path / "elsewhere.md"
    target.rename(moved)
    os.symlink(moved, target)
    with pytest.raises(IntegrityError, match=r"'README\.md' is a symbolic link"):
        load(out)
    out = copy_package(src, tmp_path / "d")
    m = json.loads((out / "seqdeploy.json").read_text())
    m["models"]["bidir"]["ranges"]["seq"] = [1, 100000]  # widen the proven range by hand
    (out / "seqdeploy.json").write_text(json.dumps(m))
    with pytest.raises(IntegrityError, match="edited after seqdeploy wrote it"):
        load(out)
    out = copy_package(src, tmp_path / "e")
    (out / ".seqdeploy-staging").write_text("{}")
    with pytest.raises(UsageError, match="unfinished staging directory"):
        load(out)


def test_cli_predict(pkg: Callable[[str], Path]) -> None:
    runner = CliRunner()
    r = runner.invoke(cli, ["predict", str(pkg("lstm_text")), "--text", "a good film", "--text", "bad"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0] == "lstm_text (stateless, fp32, ort-cpu)"
    assert lines[1].startswith("'a good film' -> ") and "(p=" in lines[1]
    r = runner.invoke(cli, ["predict", str(pkg("gru_tagger")), "--ids", "3,17,5", "--ids", "9", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["lengths"] == [3, 1] and len(data["labels"][0]) == 3 and len(data["labels"][1]) == 1
    r = runner.invoke(cli, ["predict", str(pkg("gru_tagger")), "--ids", "3,17,5"])
    assert r.exit_code == 0 and r.output.splitlines()[1].startswith("row 0: 3/")
    r = runner.invoke(cli, ["predict", str(pkg("gru_tagger")), "--ids", "3,x"])
    assert r.exit_code == 2 and "comma-separated integer" in r.output
    r = runner.invoke(cli, ["predict", str(pkg("gru_tagger")), "--ids", "3,99"])
    assert r.exit_code == 2 and "vocabulary" in r.output
    r = runner.invoke(cli, ["predict", str(pkg("gru_tagger"))])
    assert r.exit_code == 2 and "exactly one of --text, --ids or --inputs" in r.output
    r = runner.invoke(cli, ["predict", str(pkg("gru_tagger")), "--text", "a"])
    assert r.exit_code == 2 and "no vocabulary" in r.output


def test_cli_predict_refuses_a_tampered_package(pkg: Callable[[str], Path], tmp_path: Path) -> None:
    out = copy_package(pkg("gru_tagger"), tmp_path)
    graph = out / "gru_tagger" / "1" / "model.onnx"
    graph.write_bytes(graph.read_bytes()[:-1])
    r = CliRunner().invoke(cli, ["predict", str(out), "--ids", "1,2"])
    assert r.exit_code == 2 and "'gru_tagger/1/model.onnx' was modified" in r.output


def test_cli_predict_npz(pkg: Callable[[str], Path], tmp_path: Path) -> None:
    out = pkg("cells")
    x = np.random.default_rng(1).standard_normal((2, 5, 5)).astype(np.float32)
    np.savez(tmp_path / "in.npz", input=x)
    r = CliRunner().invoke(cli, ["predict", str(out), "--inputs", str(tmp_path / "in.npz"), "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.output)
    want = load(out).predict(x)
    np.testing.assert_allclose(np.array(got["h_n.1"]), want["h_n.1"], atol=1e-6)
    r = CliRunner().invoke(cli, ["predict", str(out), "--inputs", str(tmp_path / "in.npz")])
    assert r.exit_code == 0 and "output: shape [5, 3], L2 norm" in r.output
    np.savez(tmp_path / "bad.npz", input=x.astype(np.float64) + 0.1234567891)
    r = CliRunner().invoke(cli, ["predict", str(out), "--inputs", str(tmp_path / "bad.npz")])
    assert r.exit_code == 2 and "float64, expected float32" in r.output
