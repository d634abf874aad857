"""``scripts/gpu-check``: its analysis (parity targets, the per-shape winner, the trt-fp16 vs cuDNN target at
B >= 8 and the crossover batch per T) on synthetic reports, and — slow — a whole run on this CPU machine
that must finish with exit 0, saying what it skipped and why.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "scripts" / "gpu_check.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = mod  # dataclasses look their module up while the class is created
    spec.loader.exec_module(mod)
    return mod


gc = _load()


def _case(backend, b, t, ms):
    return {"backend": backend, "mode": "sequence", "batch": b, "seq": t, "host_ms": {"p50_ms": ms}}


def test_crossover_finds_where_tensorrt_starts_to_beat_cudnn():
    # #4490's shape: TensorRT loses at batch 1, wins from batch 8 at short T and only at 32 at long T.
    ms = {
        (1, 16): (0.5, 1.0),
        (8, 16): (0.9, 0.6),
        (32, 16): (1.5, 0.8),
        (1, 512): (10.0, 20.0),
        (8, 512): (12.0, 13.0),
        (32, 512): (30.0, 20.0),
    }
    cases = [
        c
        for (b, t), (cudnn, trt) in ms.items()
        for c in (_case("torch-cuda", b, t, cudnn), _case("trt-fp16", b, t, trt))
    ]
    out = gc.crossover({"cases": cases, "sgemm_gflops": {"torch-cuda": 8000.0}})
    assert out["crossover_batch"] == {"trt-fp16": {"16": 8, "512": 32}}
    rows = {(r["batch"], r["seq"]): r for r in out["rows"]}
    assert rows[(1, 16)]["winner"] == "torch-cuda" and "target_trt_fp16_beats_cudnn" not in rows[(1, 16)]
    assert rows[(8, 16)]["target_trt_fp16_beats_cudnn"] is True
    assert rows[(8, 512)]["target_trt_fp16_beats_cudnn"] is False  # reported as missed, not hidden
    assert rows[(32, 512)]["trt_fp16_speedup_vs_torch_cuda"] == pytest.approx(1.5)


def test_parity_summary_checks_the_issue_targets_on_every_output():
    report = {
        "passed": True,
        "summary": "PASSED",
        "cases": [
            {
                "backend": "trt",
                "against": "reference",
                "tensors": {"output": {"max_abs": 2e-5}, "h_n": {"max_abs": 3e-5}},
            },
            {"backend": "trt", "against": "reference", "tensors": {"c_n": {"max_abs": 2e-4}}},
            {"backend": "trt", "against": "self", "tensors": {"c_n": {"max_abs": 1.0}}},  # not vs the reference
            {"backend": "torch", "against": "reference", "tensors": {"c_n": {"max_abs": 5.0}}},
        ],
    }
    s = gc.parity_summary(report, "trt")
    assert s["max_abs"] == {"output": 2e-5, "h_n": 3e-5, "c_n": 2e-4}
    assert s["target"] == 1e-4 and s["target_met"] is False  # passed at atol 1e-4 + rtol, missed the 1e-4 target
    assert gc.parity_summary(report, "ort-cuda")["target_met"] is None


def test_render_names_the_crossover_and_the_target(tmp_path):
    check = gc.Check(tmp_path / "out", 60)
    check.env = {"gpu": "Tesla T4", "compute_capability": "7.5", "cuda_available": True, "backends": {}}
    check.add(gc.Step("default: compile fp16", "ok", "built", 3.0))
    cases = [_case("torch-cuda", 8, 16, 1.0), _case("trt-fp16", 8, 16, 0.5)]
    text = gc.render(check, [{"config": "configs/default.toml", "profile": gc.crossover({"cases": cases})}], 100.0)
    assert "| 8 | 16 | 1.000 | 0.500 | trt-fp16 | 2.00× (target met) |" in text
    assert "trt-fp16 beats torch-cuda (cuDNN) from: T=16: B≥8 (NVIDIA/TensorRT#4490)" in text
    assert "≤ 8 min — met" in text


def test_targets_are_the_plans_tolerances():
    from seqdeploy.engine.plan import KIT_TOLERANCES

    assert gc.targets() == {"trt": KIT_TOLERANCES["fp32"][0], "trt-fp16": KIT_TOLERANCES["fp16"][0]}
    assert gc.targets() == {"trt": 1e-4, "trt-fp16": 1e-2}  # issue 8's numbers


def test_out_is_cleared_only_when_gpu_check_made_it(tmp_path):
    mine = tmp_path / "data"
    mine.mkdir()
    (mine / "precious.txt").write_text("keep me")
    assert "did not make" in gc.prepare_out(mine)  # was: shutil.rmtree(--out), whatever it was
    assert (mine / "precious.txt").read_text() == "keep me"
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert "not a directory" in gc.prepare_out(afile) and afile.read_text() == "x"
    fresh = tmp_path / "new" / "report"
    assert gc.prepare_out(fresh) is None and (fresh / gc.MARKER).is_file()
    (fresh / "old-report.md").write_text("stale")
    assert gc.prepare_out(fresh) is None  # an earlier gpu-check's directory is cleared and reused
    assert sorted(p.name for p in fresh.iterdir()) == [gc.MARKER]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert gc.prepare_out(empty) is None


def _main(monkeypatch, *args):
    monkeypatch.setattr(sys, "argv", ["gpu_check.py", *args])
    return gc.main()


def test_a_refused_out_exits_2_without_a_traceback(tmp_path, monkeypatch, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert _main(monkeypatch, "--out", str(afile)) == 2  # was: NotADirectoryError outside the try
    err = capsys.readouterr().err
    assert "gpu-check: --out" in err and "Traceback" not in err
    assert _main(monkeypatch, "--out", str(tmp_path)) == 2 and afile.read_text() == "x"  # was: deleted


def test_a_crash_while_rendering_is_reported_not_raised(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gc, "environment", lambda backends: {"backends": {}})
    monkeypatch.setattr(gc, "per_config", lambda check, config, min_time: {"config": config})

    def broken(*a, **kw):
        raise KeyError("profile")

    monkeypatch.setattr(gc, "render", broken)
    out = tmp_path / "out"
    assert _main(monkeypatch, "--out", str(out), "--skip-tests", "--configs", "x.toml") == 2
    assert "KeyError" in (out / "logs" / "gpu-check-crash.log").read_text()
    report = json.loads((out / "report.json").read_text())  # what ran is still reported
    assert [s["name"] for s in report["steps"]] == ["tests (gpu, trt markers)"]


@pytest.mark.slow
def test_gpu_check_runs_to_completion_on_a_cpu_machine(tmp_path):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(
        '[model]\ncell = "lstm"\ninput_size = 5\nhidden_size = 4\n[export]\nlengths = true\n'
        "[shapes]\nbatch = [1, 3, 6]\nseq = [1, 6, 24]\n"
    )
    out = tmp_path / "report"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "gpu_check.py"),
            "--out",
            str(out),
            "--configs",
            str(cfg),
            "--backends",
            "torch-cuda,ort-cpu,trt,trt-fp16",
            "--batches",
            "1,3",
            "--seqs",
            "4",
            "--min-time",
            "0.05",
            "--skip-tests",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    status = {s["name"]: s["status"] for s in report["steps"]}
    assert (
        status["tiny: export"] == "ok" and status["tiny: verify ort-cpu"] == "ok" and status["tiny: profile"] == "ok"
    )
    if importlib.util.find_spec("tensorrt") is None:
        assert status["tiny: compile fp32"] == "skipped" and status["tiny: verify trt"] == "skipped"
        assert "TensorRT" in next(s["detail"] for s in report["steps"] if s["name"] == "tiny: compile fp32")
    assert (out / "report.md").read_text().count("| tiny: ") == len(report["steps"]) - 1
    assert (out / "reports" / "tiny-profile.json").is_file()
