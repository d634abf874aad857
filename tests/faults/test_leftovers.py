"""What a killed run leaves, and how the next run treats it (issue 12, class 2).

SIGKILL cannot be handled, so a run killed by it leaves its staging directory (or staged file) behind:
readers must refuse it, and the next writer of the same target must clean it — or, for an old artifact
moved aside by a killed ``--force``, restore it. ``--force`` through a symlink and ``-o .`` never leave
or destroy anything.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.faults._cli import Cli, assert_clean_error, leftovers, tree_digest


def _hidden(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.startswith("."))


def test_a_killed_export_leaves_a_staging_dir_that_readers_refuse_and_the_next_export_cleans(
    cli: Cli, tiny_toml: Path, tmp_path: Path
) -> None:
    work = tmp_path / "w"
    out = work / "exp"
    child = cli.start("export", tiny_toml, "-o", out, fault_at="export:self-check")
    child.wait_ready()
    child.send(signal.SIGKILL)
    assert child.finish().code == -signal.SIGKILL
    (staging,) = [work / n for n in _hidden(work)]
    assert staging.name.startswith(".exp.") and staging.name.endswith(".partial")
    assert (staging / "manifest.json").exists() is False and (staging / "model.onnx").is_file()
    assert not out.exists()
    for command in (("verify",), ("profile", "--iters", "1"), ("optimize", "--int8")):
        r = cli.run(command[0], staging, *command[1:])
        assert_clean_error(r)
        assert "unfinished staging directory" in r.stderr, r
    assert _hidden(work) == [staging.name]  # readers never delete it
    r = cli.run("export", tiny_toml, "-o", out)
    assert r.code == 0, r
    assert _hidden(work) == []  # the next writer of the same target cleaned it
    assert (out / "manifest.json").is_file()


def test_a_killed_force_export_keeps_the_old_export_and_is_cleaned(cli: Cli, tiny_toml: Path, bundle_copy) -> None:
    d = bundle_copy()
    before = tree_digest(d)
    child = cli.start("export", tiny_toml, "-o", d, "--force", fault_at="commit")
    child.wait_ready()
    child.send(signal.SIGKILL)
    child.finish()
    assert tree_digest(d) == before  # the old export, byte for byte
    assert len(_hidden(d.parent)) == 1
    r = cli.run("export", tiny_toml, "-o", d, "--force")
    assert r.code == 0, r
    assert _hidden(d.parent) == []


def test_killed_between_the_two_renames_of_a_swap_the_old_export_is_restored(
    cli: Cli, gru_toml: Path, bundle_copy
) -> None:
    """The one moment a ``--force`` target is missing: the old export is aside, the new one staged. The
    next run must restore the old one (the only copy) and decide on it, not on an empty target.
    """
    d = bundle_copy()
    before = tree_digest(d)
    child = cli.start("export", gru_toml, "-o", d, "--force", fault_at="commit:swapping")
    child.wait_ready()
    child.send(signal.SIGTERM)  # held: the swap is shielded from SIGINT/SIGTERM
    child.send(signal.SIGKILL)
    child.finish()
    assert not d.exists()
    assert sorted(n.split(".")[2].split("-")[0] for n in _hidden(d.parent)) == sorted(["old", str(child.pid)])
    r = cli.run("export", gru_toml, "-o", d)  # no --force: the restored export is not replaced
    assert_clean_error(r)
    assert "already exists" in r.stderr, r
    assert tree_digest(d) == before
    assert _hidden(d.parent) == []


def test_a_killed_optimize_leaves_a_staged_file_the_bundle_ignores_and_the_next_optimize_cleans(
    cli: Cli, bundle_copy
) -> None:
    d = bundle_copy()
    before = tree_digest(d)
    child = cli.start("optimize", d, "--int8", fault_at="optimize:int8-written")
    child.wait_ready()
    child.send(signal.SIGKILL)
    child.finish()
    (staged,) = _hidden(d)
    assert staged.startswith(".model.int8.onnx.stage-")
    assert {k: v for k, v in tree_digest(d).items() if k != staged} == before
    assert cli.run("verify", d, "--batch", "1", "--seq", "2").code == 0  # an unlisted file is never read
    r = cli.run("optimize", d, "--int8")
    assert r.code == 0, r
    assert _hidden(d) == []
    assert "int8" in json.loads((d / "manifest.json").read_text())["variants"]


def test_force_through_a_symlink_replaces_its_target_and_leaves_nothing_aside(
    cli: Cli, gru_toml: Path, bundle_copy, tmp_path: Path
) -> None:
    real = bundle_copy(tmp_path / "store" / "v1")
    link_dir = tmp_path / "links"
    link_dir.mkdir()
    link = link_dir / "current"
    link.symlink_to(real)
    r = cli.run("export", gru_toml, "-o", link, "--force")
    assert r.code == 0, r
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert leftovers(tmp_path) == [] and _hidden(real.parent) == [] and _hidden(link_dir) == []
    assert json.loads((link / "manifest.json").read_text())["config"]["model"]["cell"] == "gru"
    v = cli.run("verify", link, "--batch", "1", "--seq", "2")
    assert v.code == 0, v


@pytest.mark.parametrize("where", [".", ".."])
def test_force_onto_the_working_directory_is_refused(cli: Cli, tiny_toml: Path, bundle_copy, where: str) -> None:
    d = bundle_copy()
    cwd = d if where == "." else d / "sub"
    cwd.mkdir(exist_ok=True)
    before = tree_digest(d)
    r = cli.run("export", tiny_toml, "-o", where, "--force", cwd=cwd)
    assert_clean_error(r)
    assert "current directory" in r.stderr, r
    assert tree_digest(d) == before
    assert _hidden(d) == [] and _hidden(d.parent) == []


def test_a_transaction_killed_between_its_renames_is_rolled_back_by_the_next_writer(cli: Cli, bundle_copy) -> None:
    """SIGKILL after ``optimize`` swapped the variant file but before it replaced the manifest: readers see
    a mismatch (exit 2, never a silent mix), and the next writer puts the earlier variant back.
    """
    import onnx

    from tests.integration._onnx_surgery import restamp

    d = bundle_copy(int8=True)
    earlier = onnx.load(str(d / "model.int8.onnx"))
    onnx.helper.set_model_props(earlier, {"planted": "an earlier variant, not what quantize writes now"})
    onnx.save(earlier, str(d / "model.int8.onnx"))
    restamp(d)
    before = tree_digest(d)
    child = cli.start("optimize", d, "--int8", fault_at="commit:swapping")
    child.wait_ready()
    child.send(signal.SIGKILL)
    child.finish()
    assert tree_digest(d)["model.int8.onnx"] != before["model.int8.onnx"]  # the new file is in place...
    assert any(".model.int8.onnx.old-" in n for n in _hidden(d))  # ...the earlier one aside
    r = cli.run("verify", d, "--backends", "torch,ort-cpu-int8", "--batch", "1", "--seq", "2")
    assert_clean_error(r)
    assert "model.int8.onnx: differs from the manifest" in r.stderr, r
    # The next writer recovers first; this one then fails (no space), so what we see is the recovery.
    r = cli.run("optimize", d, "--int8", fault_at="optimize:int8-written", action="enospc")
    assert_clean_error(r)
    assert tree_digest(d) == before
    assert cli.run("verify", d, "--backends", "torch,ort-cpu-int8", "--batch", "1", "--seq", "2").code == 0
