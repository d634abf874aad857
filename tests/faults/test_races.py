"""Two writers on one ``-o``, a directory created at the target mid-run, readers during ``--force``.

Rule under test (issue 12, class 3): the existence/--force decision is taken at the rename, under a
per-target lock; a run that lost the race exits 2 and touches nothing; a reader sees the old bundle or
the new one, never a mix. Every race is made deterministic by pausing one run at a fault point.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from tests.faults._cli import Cli, Result, assert_clean_error, leftovers, tree_digest


def test_a_second_export_to_the_same_target_fails_at_once_and_touches_nothing(
    cli: Cli, tiny_toml: Path, gru_toml: Path, tmp_path: Path
) -> None:
    out = tmp_path / "w" / "exp"
    first = cli.start("export", tiny_toml, "-o", out, fault_at="export:self-check")
    first.wait_ready()
    staging = sorted(p.name for p in out.parent.iterdir())
    second = cli.run("export", gru_toml, "-o", out, "--force")  # even --force never steals a live target
    assert_clean_error(second)
    assert "another seqdeploy process" in second.stderr and f"pid {first.pid}" in second.stderr, second
    assert sorted(p.name for p in out.parent.iterdir()) == staging  # the first run's staging is intact
    first.resume()
    r = first.finish()
    assert r.code == 0, r
    assert json.loads((out / "manifest.json").read_text())["config"]["model"]["cell"] == "lstm"
    assert leftovers(out.parent) == []


def test_two_writers_that_do_not_share_a_lock_directory_race_to_the_rename(
    cli: Cli, tiny_toml: Path, gru_toml: Path, tmp_path: Path
) -> None:
    """Two TMPDIRs mean two lock directories: the decision taken at the rename is what decides."""
    out = tmp_path / "w" / "exp"
    first = cli.start("export", tiny_toml, "-o", out, fault_at="commit")
    first.wait_ready()
    other_tmp = tmp_path / "other-tmp"
    other_tmp.mkdir()
    second = cli.run("export", gru_toml, "-o", out, env={"TMPDIR": str(other_tmp)})
    assert second.code == 0, second
    winner = tree_digest(out)
    first.resume()
    r = first.finish()
    assert_clean_error(r)
    assert "appeared while this run was working" in r.stderr and "nothing was changed" in r.stderr, r
    assert tree_digest(out) == winner  # the winner's export is intact
    assert json.loads((out / "manifest.json").read_text())["config"]["model"]["cell"] == "gru"
    assert leftovers(out.parent) == []


def _user_dir_appears_mid_run(cli: Cli, toml: Path, out: Path, *extra: str) -> Result:
    child = cli.start("export", toml, "-o", out, *extra, fault_at="export:self-check")
    child.wait_ready()
    out.mkdir()
    (out / "notes.txt").write_text("my notes\n")
    child.resume()
    return child.finish()


def test_a_directory_created_at_the_target_mid_run_is_never_touched(cli: Cli, tiny_toml: Path, tmp_path: Path) -> None:
    out = tmp_path / "w" / "exp"
    r = _user_dir_appears_mid_run(cli, tiny_toml, out)
    assert_clean_error(r)
    assert "appeared while this run was working" in r.stderr, r
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert (out / "notes.txt").read_text() == "my notes\n"
    assert leftovers(out.parent) == []


def test_force_never_replaces_a_user_directory_that_appeared_mid_run(
    cli: Cli, tiny_toml: Path, tmp_path: Path
) -> None:
    out = tmp_path / "w" / "exp"
    r = _user_dir_appears_mid_run(cli, tiny_toml, out, "--force")
    assert_clean_error(r)
    assert "not a seqdeploy export" in r.stderr and "appeared while this run was working" in r.stderr, r
    assert (out / "notes.txt").read_text() == "my notes\n"
    assert leftovers(out.parent) == []


def test_a_reader_paused_across_a_force_swap_reads_the_new_bundle_whole(
    cli: Cli, bundle_copy, gru_toml: Path, tmp_path: Path
) -> None:
    """verify has loaded the LSTM bundle's manifest when ``export --force`` swaps in a GRU bundle: it must
    notice before loading any file and start over on the GRU bundle (no "model.pt does not fit").
    """
    d = bundle_copy()
    report = tmp_path / "r.json"
    reader = cli.start("verify", d, "--batch", "2", "--seq", "3", "--json", report, fault_at="bundle:loaded")
    reader.wait_ready()
    writer = cli.run("export", gru_toml, "-o", d, "--force")
    assert writer.code == 0, writer
    reader.resume()
    assert reader.wait_ready() == "bundle:loaded"  # it noticed the swap and loaded the bundle again
    reader.resume()
    r = reader.finish()
    assert r.code == 0, r
    rep = json.loads(report.read_text())
    assert rep["passed"] is True and rep["model"]["cell"] == "gru"  # the new bundle, whole
    assert leftovers(d.parent) == []


def test_verify_in_a_loop_during_a_force_export_always_passes(
    cli: Cli, bundle_copy, gru_toml: Path, tmp_path: Path
) -> None:
    """Unpaused: verifies back to back (bounded in count and time) while ``export --force`` replaces the
    LSTM bundle with a GRU one; each sees one whole bundle (the paused test above makes the race certain).

    The test proves the readers really overlapped the swap: one verify was running when the export ended
    (its commit is the export's last act), verifies read the LSTM bundle before and the GRU bundle after.
    """
    d = bundle_copy()
    runs: list[tuple[float, float, Result, Path]] = []
    stop = threading.Event()

    def reader() -> None:
        deadline = time.monotonic() + 120
        while not stop.is_set() and time.monotonic() < deadline and len(runs) < 40:
            report = tmp_path / f"r{len(runs)}.json"
            t0 = time.monotonic()
            r = cli.run("verify", d, "--batch", "1", "--seq", "2", "--modes", "full", "--json", report, timeout=60)
            runs.append((t0, time.monotonic(), r, report))

    t = threading.Thread(target=reader)
    t.start()
    try:
        time.sleep(0.5)  # the first verify is under way
        w_start = time.monotonic()
        w = cli.run("export", gru_toml, "-o", d, "--force")
        w_end = time.monotonic()
        assert w.code == 0, w
        # Let the readers go on until one has started after the swap (bounded by the reader's deadline).
        while t.is_alive() and not any(t0 > w_end for t0, _, _, _ in runs[-2:]):
            time.sleep(0.1)
    finally:
        stop.set()
        t.join(timeout=120)
    assert not t.is_alive()
    bad = [r for _, _, r, _ in runs if r.code != 0]
    assert bad == [], "\n\n".join(map(str, bad))
    assert any(t0 < w_end < t1 for t0, t1, _, _ in runs), "no verify was running when the bundle was swapped"
    assert any(t0 < w_start for t0, _, _, _ in runs) and any(t0 > w_end for t0, _, _, _ in runs)
    cells = [json.loads(report.read_text())["model"]["cell"] for _, _, _, report in runs]
    assert cells[0] == "lstm" and cells[-1] == "gru", cells  # each run read one whole bundle, old or new
    assert leftovers(d.parent) == []
    assert json.loads((d / "manifest.json").read_text())["config"]["model"]["cell"] == "gru"


def test_optimize_committing_while_a_reader_is_paused_is_seen_whole(cli: Cli, bundle_copy, tmp_path: Path) -> None:
    """An ``optimize --int8`` transaction commits (new file + manifest) between a reader's load and its
    runners: the reader starts over and sees the variant, never a manifest without its file or the reverse.
    """
    d = bundle_copy()
    report = tmp_path / "r.json"
    reader = cli.start(
        "verify", d, "--backends", "torch,ort-cpu", "--batch", "1", "--seq", "2", "--json", report,
        fault_at="bundle:loaded",
    )  # fmt: skip
    reader.wait_ready()
    assert cli.run("optimize", d, "--int8").code == 0
    reader.resume()
    assert reader.wait_ready() == "bundle:loaded"  # it noticed the commit and loaded the bundle again
    reader.resume()
    r = reader.finish()
    assert r.code == 0, r
    assert json.loads(report.read_text())["passed"] is True
    assert json.loads((d / "manifest.json").read_text())["variants"]["int8"]["file"] == "model.int8.onnx"


def test_a_swap_by_a_writer_that_does_not_share_the_lock_is_caught_after_loading(
    cli: Cli, bundle_copy, gru_toml: Path, tmp_path: Path
) -> None:
    """The read lock only holds off writers using the same lock directory. A writer with another TMPDIR
    swaps the bundle while the reader loads its runners (paused right after its check): the reader must
    notice once its files are read and start over, not run the LSTM manifest on the GRU files.
    """
    d = bundle_copy()
    report = tmp_path / "r.json"
    reader = cli.start("verify", d, "--batch", "2", "--seq", "3", "--json", report, fault_at="bundle:checked")
    reader.wait_ready()
    other_tmp = tmp_path / "other-tmp"
    other_tmp.mkdir()
    writer = cli.run("export", gru_toml, "-o", d, "--force", env={"TMPDIR": str(other_tmp)})
    assert writer.code == 0, writer
    reader.resume()
    assert reader.wait_ready() == "bundle:checked"  # started over
    reader.resume()
    r = reader.finish()
    assert r.code == 0, r
    rep = json.loads(report.read_text())
    assert rep["passed"] is True and rep["model"]["cell"] == "gru"
