"""SIGINT and SIGTERM at every named stage of ``export`` and ``optimize --int8``, and during ``verify``.

Rule under test (issue 12, class 1): an interrupted proof is never recorded. Export and optimize exit 130
with "interrupted: nothing was written or recorded", leave no staging/moved-aside/temp path, and leave
the target absent or the earlier good artifact byte-identical; no JSON anywhere says "passed" for the
interrupted run. A signal that lands after the commit exits 0 and says the artifact is complete.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests.faults._cli import Cli, leftovers, no_json_says_passed, tree_digest

EXPORT_POINTS = ("export:model-built", "export:onnx-written", "export:self-check", "commit")
SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM}
NOTHING = "interrupted: nothing was written or recorded"


@pytest.mark.parametrize("sig", SIGNALS)
@pytest.mark.parametrize("point", EXPORT_POINTS)
def test_export_interrupted_at_each_point_over_an_earlier_export(
    cli: Cli, tiny_toml: Path, bundle_copy, point: str, sig: str
) -> None:
    target = bundle_copy()
    before = tree_digest(target)
    child = cli.start("export", tiny_toml, "-o", target, "--force", fault_at=point)
    assert child.wait_ready() == point
    child.send(SIGNALS[sig])
    r = child.finish()
    assert r.code == 130, r
    assert NOTHING in r.stderr, r
    assert "Traceback" not in r.text, r
    assert tree_digest(target) == before  # the earlier good export is untouched, byte for byte
    assert leftovers(target.parent) == []
    assert sorted(p.name for p in target.parent.iterdir()) == ["exp"]


@pytest.mark.parametrize(("point", "sig"), [("export:self-check", "SIGINT"), ("commit", "SIGTERM")])
def test_export_interrupted_leaves_no_target(cli: Cli, tiny_toml: Path, tmp_path: Path, point: str, sig: str) -> None:
    out = tmp_path / "work" / "exp"
    child = cli.start("export", tiny_toml, "-o", out, fault_at=point)
    child.wait_ready()
    child.send(SIGNALS[sig])
    r = child.finish()
    assert r.code == 130, r
    assert NOTHING in r.stderr
    assert not (tmp_path / "work").exists() or list((tmp_path / "work").iterdir()) == []
    assert no_json_says_passed(tmp_path) == []


def test_export_interrupted_during_the_self_check_at_a_sweep_of_delays(
    cli: Cli, slow_check_toml: Path, tmp_path: Path
) -> None:
    """The signal lands somewhere inside the self-check (not at a pause): delays from the moment it
    starts. Each run either was interrupted (130, nothing written) or finished first (0, a complete
    proof with every comparison) — never a bundle recording a partial self-check.
    """
    outcomes = []
    for i, delay in enumerate((0.0, 0.5, 1.2)):
        out = tmp_path / f"w{i}" / "exp"
        child = cli.start("export", slow_check_toml, "-o", out, fault_at="export:self-check", pause_s=0)
        child.wait_ready()
        time.sleep(delay)
        child.send(signal.SIGINT)
        r = child.finish()
        outcomes.append(r.code)
        assert "Traceback" not in r.text, r
        assert leftovers(out.parent) == []
        if r.code == 130:
            assert NOTHING in r.stderr, r
            assert not out.exists()
            assert no_json_says_passed(out.parent) == []
        else:  # finished before the signal (which is then ignored, or reported as after the commit)
            assert r.code == 0, r
            check = json.loads((out / "manifest.json").read_text())["self_check"]
            assert check["passed"] is True and check["comparisons"] == 36, check
    # The sweep really exercised the interrupted path: this self-check takes ~2 s.
    assert outcomes[0] == 130 and outcomes.count(130) >= 2, outcomes


INT8_POINTS = ("optimize:int8-written", "commit")


@pytest.mark.parametrize("sig", SIGNALS)
@pytest.mark.parametrize("point", INT8_POINTS)
def test_optimize_int8_interrupted_records_nothing(cli: Cli, bundle_copy, point: str, sig: str) -> None:
    earlier = sig == "SIGTERM"  # over a bundle without a variant, and over one with an earlier good variant
    d = bundle_copy(int8=earlier)
    before = tree_digest(d)
    child = cli.start("optimize", d, "--int8", fault_at=point)
    assert child.wait_ready() == point
    child.send(SIGNALS[sig])
    r = child.finish()
    assert r.code == 130, r
    assert NOTHING in r.stderr, r
    assert tree_digest(d) == before  # manifest and files (an earlier variant included) byte-identical
    assert leftovers(d.parent) == []
    assert (d / "model.int8.onnx").exists() == earlier


@pytest.mark.parametrize(
    ("command", "point"),
    [(("export",), "export:committed"), (("optimize", "--int8"), "optimize:committed")],
    ids=["export", "optimize"],
)
def test_a_signal_after_the_commit_says_the_artifact_is_complete(
    cli: Cli, tiny_toml: Path, bundle_copy, tmp_path: Path, command: tuple[str, ...], point: str
) -> None:
    if command[0] == "export":
        out = tmp_path / "exp"
        args: tuple[object, ...] = ("export", tiny_toml, "-o", out)
    else:
        out = bundle_copy()
        args = ("optimize", out, "--int8")
    child = cli.start(*args, fault_at=point)
    child.wait_ready()
    child.send(signal.SIGTERM)
    r = child.finish()
    assert r.code == 0, r
    assert "was written and proven (it is complete)" in r.stderr, r
    assert NOTHING not in r.text
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["self_check"]["passed"] is True and leftovers(out.parent) == []
    if command[0] == "optimize":
        assert manifest["variants"]["int8"]["file"] == "model.int8.onnx"
        assert (out / "model.int8.onnx").is_file()


@pytest.mark.parametrize("sig", SIGNALS)
def test_verify_interrupted_writes_a_partial_report_that_never_passed(
    cli: Cli, bundle_copy, tmp_path: Path, sig: str
) -> None:
    d = bundle_copy()
    before = tree_digest(d)
    report = tmp_path / "report.json"
    md = tmp_path / "report.md"
    seqs = ",".join(str(s) for s in range(1, 25))
    args = ("verify", d, "--batch", "1,2,3,4,5,6", "--seq", seqs, "--json", report, "--markdown", md)
    if sig == "SIGINT":  # at the pause: runners not loaded, zero comparisons
        child = cli.start(*args, fault_at="bundle:loaded")
        child.wait_ready()
    else:  # mid-sweep: the runners are loaded and the sweep is far longer than the delay
        child = cli.start(*args, fault_at="bundle:runners-loaded", pause_s=0)
        child.wait_ready()
        time.sleep(0.5)
    child.send(SIGNALS[sig])
    r = child.finish()
    assert r.code == 130, r
    assert "Traceback" not in r.text
    rep = json.loads(report.read_text())
    assert rep["partial"] is True
    assert rep["passed"] is False
    assert rep["summary"].startswith("PARTIAL (interrupted)")
    full_sweep = 6 * 24
    assert len({(c["batch"], c["seq"]) for c in rep["cases"]}) < full_sweep
    if sig == "SIGTERM":
        assert rep["cases"], "the signal landed mid-sweep: some comparisons were done"
    assert "PARTIAL" in md.read_text()
    assert tree_digest(d) == before


def test_profile_interrupted_writes_a_partial_report(cli: Cli, bundle_copy, tmp_path: Path) -> None:
    d = bundle_copy()
    before = tree_digest(d)
    report = tmp_path / "p.json"
    child = cli.start(
        "profile", d, "--batch", "1,2,3", "--seq", "1,2,4,8", "--iters", "200", "--json", report,
        fault_at="bundle:runners-loaded", pause_s=0,
    )  # fmt: skip
    child.wait_ready()
    time.sleep(0.5)
    child.send(signal.SIGTERM)
    r = child.finish()
    assert r.code == 130, r
    assert "Traceback" not in r.text
    rep = json.loads(report.read_text())
    assert rep["partial"] is True and len(rep["cases"]) < 2 * 12
    assert tree_digest(d) == before
