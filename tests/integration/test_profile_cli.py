"""``seqdeploy profile`` and ``seqdeploy optimize --int8`` through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from seqdeploy.cli import cli
from seqdeploy.parity.run import VerifyOptions, verify

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.output


@pytest.fixture(scope="module")
def lstm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from seqdeploy.export.stage import export_model
    from tests.conftest import tiny_config

    out = tmp_path_factory.mktemp("prof") / "lstm"
    export_model(
        tiny_config(
            cell="lstm", hidden_size=8, num_layers=2, export={"step": True}, embedding={"vocab_size": 50, "dim": 6}
        ),
        out,
    )
    return out


def test_profile_two_backends_writes_reports_and_plot(lstm_dir: Path, tmp_path: Path) -> None:
    j, md, png = tmp_path / "p.json", tmp_path / "p.md", tmp_path / "p.png"
    code, text = run(
        "profile",
        str(lstm_dir),
        "--backends",
        "torch,ort-cpu",
        "--batch",
        "1,3",
        "--seq",
        "2,6",
        "--iters",
        "3",
        "--warmup",
        "1",
        "--streaming",
        "--json",
        str(j),
        "--markdown",
        str(md),
        "--plot",
        str(png),
    )
    assert code == 0, text
    assert "winner" in text and "sgemm reference" in text
    rep = json.loads(j.read_text())
    assert rep["schema_version"] == 1 and rep["partial"] is False
    assert rep["baseline"] == "torch"
    assert set(rep["env"]) >= {"cpu", "cores", "threads", "gpu", "versions"}
    assert set(rep["sgemm_gflops"]) == {"torch-cpu", "ort-cpu"}
    assert all(v > 0 for v in rep["sgemm_gflops"].values())
    seq_cases = [c for c in rep["cases"] if c["mode"] == "sequence"]
    assert len(seq_cases) == 2 * 2 * 2
    for c in seq_cases:
        h = c["host_ms"]
        assert h["n"] == 3
        assert 0 < h["min_ms"] <= h["p50_ms"] <= h["p90_ms"] <= h["p99_ms"] <= h["max_ms"]
        assert c["tokens_per_s"] == pytest.approx(c["sequences_per_s"] * c["seq"])
        assert c["gflop"] > 0 and c["pct_of_sgemm"] > 0
        assert c["speedup_vs_baseline"] > 0
    torch_cases = [c for c in seq_cases if c["backend"] == "torch"]
    assert all(c["speedup_vs_baseline"] == 1.0 for c in torch_cases)
    for shape in {(c["batch"], c["seq"]) for c in seq_cases}:
        assert sum(c["winner"] for c in seq_cases if (c["batch"], c["seq"]) == shape) == 1
    streaming = [c for c in rep["cases"] if c["mode"] == "streaming"]
    assert {c["graph"] for c in streaming} == {"step"}
    assert {c["batch"] for c in streaming} == {1, 3}
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert "![latency vs sequence length](p.png)" in md.read_text()


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["--backends", "torch,nope"], 2, "known backends: torch"),
        (["--backends", "ort-cuda"], 3, "seqdeploy[gpu]"),
        (["--batch", "1000"], 2, "outside the export's [shapes] range"),
        (["--seq", "0"], 2, "integers >= 1"),
        (["--iters", "2", "--min-time", "1"], 2, "exclusive"),
    ],
)
def test_profile_bad_input(lstm_dir: Path, args: list[str], code: int, needle: str) -> None:
    got, text = (
        run("profile", str(lstm_dir), "--iters", "1", *args)
        if "--iters" not in args
        else run("profile", str(lstm_dir), *args)
    )
    assert got == code, text
    assert needle in text


def test_outside_range_allowed_on_request(lstm_dir: Path) -> None:
    code, text = run(
        "profile",
        str(lstm_dir),
        "--backends",
        "ort-cpu",
        "--batch",
        "100",
        "--seq",
        "3",
        "--iters",
        "2",
        "--allow-outside-range",
    )
    assert code == 0, text


def test_ctrl_c_writes_a_partial_report(lstm_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import seqdeploy.profile.run as prun

    real = prun._time_calls
    calls = {"n": 0}

    def interrupt_second(*a: object, **k: object) -> object:
        # iters 2 -> 2 rounds of 1 call per shape: call 3 is the first block of the second shape.
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(prun, "_time_calls", interrupt_second)
    j = tmp_path / "p.json"
    code, text = run(
        "profile",
        str(lstm_dir),
        "--backends",
        "torch",
        "--batch",
        "1",
        "--seq",
        "2,4",
        "--iters",
        "2",
        "--json",
        str(j),
    )
    assert code == 130
    assert "PARTIAL" in text
    rep = json.loads(j.read_text())
    assert rep["partial"] is True
    assert len(rep["cases"]) == 1


def test_bidirectional_streaming_is_skipped_with_a_reason(export_tiny: object) -> None:
    d = export_tiny(bidirectional=True)  # type: ignore[operator]
    code, text = run(
        "profile", str(d), "--backends", "torch", "--batch", "1", "--seq", "2", "--iters", "2", "--streaming"
    )
    assert code == 0, text
    assert "SKIPPED [streaming]: a bidirectional model" in text


def test_int8_variant_passes_its_tolerance_and_fails_fp32(lstm_dir: Path, copy_export: object) -> None:
    d = copy_export(lstm_dir)  # type: ignore[operator]
    code, text = run("optimize", str(d), "--int8")
    assert code == 0, text
    assert "DynamicQuantizeLSTM" in text
    manifest = json.loads((d / "manifest.json").read_text())
    assert manifest["variants"]["int8"]["file"] == "model.int8.onnx"
    assert manifest["files"]["model.int8.onnx"]["sha256"]
    ok = verify(d, VerifyOptions(backends=("ort-cpu-int8",), batches=(1, 3), seqs=(1, 6)))
    assert ok.passed, ok.summary()
    assert ok.tolerances["ort-cpu-int8"]["default"] == {"atol": 5e-2, "rtol": 5e-2}
    strict = verify(
        d,
        VerifyOptions(backends=("ort-cpu-int8",), batches=(1, 3), seqs=(1, 6), atol=1e-5, rtol=1e-4, modes=("full",)),
    )
    assert not strict.passed
    assert "h_n" in strict.failing_tensors()
    # and it profiles as a backend
    code, text = run("profile", str(d), "--backends", "ort-cpu-int8", "--batch", "1", "--seq", "6", "--iters", "2")
    assert code == 0, text
    assert "ort-cpu-int8" in text


def test_int8_backend_without_variant_is_a_usage_error(lstm_dir: Path) -> None:
    code, text = run("verify", str(lstm_dir), "--backends", "ort-cpu-int8", "--batch", "1", "--seq", "2")
    assert code == 2
    assert "seqdeploy optimize" in text


def test_optimize_without_a_variant_flag(lstm_dir: Path) -> None:
    code, text = run("optimize", str(lstm_dir))
    assert code == 2
    assert "--int8" in text


def test_explicit_shapes_replace_the_grid(lstm_dir: Path, tmp_path: Path) -> None:
    j = tmp_path / "p.json"
    code, text = run(
        "profile", str(lstm_dir), "--backends", "ort-cpu", "--shapes", "1x2,3x6", "--iters", "2", "--json", str(j)
    )
    assert code == 0, text
    rep = json.loads(j.read_text())
    assert rep["options"]["shapes"] == [[1, 2], [3, 6]]
    assert sorted((c["backend"], c["batch"], c["seq"]) for c in rep["cases"]) == [
        ("ort-cpu", 1, 2),
        ("ort-cpu", 3, 6),
        ("torch", 1, 2),
        ("torch", 3, 6),
    ]
    code, text = run("profile", str(lstm_dir), "--shapes", "1x2", "--batch", "1")
    assert code == 2 and "--shapes replaces" in text


def test_the_report_names_the_gpu_a_runner_found_after_loading(
    lstm_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Seen on the first GPU run: torch-cuda imports torch only when its runner loads, after the report's
    # environment was taken, so the GPU profile said "gpu": null. The GPU is asked for again once runners exist.
    import seqdeploy.profile.run as prun

    loaded = {"yes": False}
    real_make = prun.make_runner

    def make(*a: object, **k: object) -> object:
        loaded["yes"] = True
        return real_make(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(prun, "make_runner", make)
    monkeypatch.setattr(prun, "_gpu_name", lambda: "Fake GPU 9000" if loaded["yes"] else None)
    j = tmp_path / "p.json"
    code, text = run(
        "profile", str(lstm_dir), "--backends", "torch", "--batch", "1", "--seq", "2", "--iters", "1", "--json", str(j)
    )
    assert code == 0, text
    env = json.loads(j.read_text())["env"]
    assert env["gpu"] == "Fake GPU 9000"
    assert env["versions"]["seqdeploy"]  # never None, also when run from a checkout on sys.path
