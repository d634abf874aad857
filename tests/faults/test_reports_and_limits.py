"""Report paths checked before the run, and sizes refused before anything is allocated.

Issue 12, class 7: ``verify D --json D/manifest.json`` (or ``--markdown D/model.onnx``, ``profile --json
D/model.pt``) silently destroyed the export; a report directory that cannot be written was found only
after the run. Classes 5/6: sizes that cannot fit in memory end with exit 2 and the estimate, quickly,
with nothing allocated (the child's peak RSS, from ``wait4``, stays that of a bare ``import torch``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.conftest import tiny_raw
from tests.faults._cli import Cli, assert_clean_error, leftovers, tree_digest, write_config

# A long verify sweep (~10 s here): a refusal that returns well before this did not run it.
LONG_VERIFY = ("--batch", "1,2,3,4,5,6", "--seq", ",".join(str(s) for s in range(1, 25)))
FAST_S = 6.0


@pytest.mark.parametrize(
    ("command", "option", "victim"),
    [
        ("verify", "--json", "manifest.json"),
        ("verify", "--markdown", "model.onnx"),
        ("profile", "--json", "model.pt"),
        ("profile", "--markdown", "manifest.json"),
        ("profile", "--plot", "model.onnx"),
        ("verify", "--json", "model.int8.onnx"),
    ],
)
def test_a_report_path_onto_a_bundle_file_is_refused_before_any_work(
    cli: Cli, bundle_copy, command: str, option: str, victim: str
) -> None:
    d = bundle_copy(int8=True)
    before = tree_digest(d)
    r = cli.run(command, d, option, d / victim, *LONG_VERIFY)
    assert_clean_error(r)
    assert f"would overwrite {victim}, a file of the bundle" in r.stderr, r
    assert r.stdout == "" and r.wall_s < FAST_S, r
    assert tree_digest(d) == before


def test_a_report_through_a_symlink_onto_a_bundle_file_is_refused(cli: Cli, bundle_copy, tmp_path: Path) -> None:
    d = bundle_copy()
    before = tree_digest(d)
    link = tmp_path / "report.json"
    link.symlink_to(d / "model.pt")
    r = cli.run("verify", d, "--json", link, "--batch", "1", "--seq", "2")
    assert_clean_error(r)
    assert "would overwrite model.pt" in r.stderr, r
    assert tree_digest(d) == before


def test_two_reports_on_one_path_are_refused(cli: Cli, bundle_copy, tmp_path: Path) -> None:
    d = bundle_copy()
    out = tmp_path / "r.txt"
    r = cli.run("verify", d, "--json", out, "--markdown", out, *LONG_VERIFY)
    assert_clean_error(r)
    assert "the same file as --json" in r.stderr and r.wall_s < FAST_S, r
    assert not out.exists()


def _unwritable_dirs(tmp_path: Path) -> dict[str, Path]:
    ro = tmp_path / "read-only"
    ro.mkdir()
    ro.chmod(0o500)
    dirs = {"a-file": tmp_path / "a-file"}
    (tmp_path / "a-file").write_text("not a directory")
    if os.geteuid() != 0:  # root writes through any mode bits
        dirs["read-only"] = ro
    if sys.platform == "linux":  # refuses new files whatever the mode bits and whoever asks
        dirs["procfs"] = Path("/proc")
    return dirs


@pytest.mark.parametrize("where", ["a-file", "read-only", "procfs"])
def test_an_unwritable_report_directory_fails_before_the_run(
    cli: Cli, bundle_copy, tmp_path: Path, where: str
) -> None:
    dirs = _unwritable_dirs(tmp_path)
    if where not in dirs:
        pytest.skip("root writes through mode bits" if where == "read-only" else "needs Linux /proc")
    d = bundle_copy()
    for command in ("verify", "profile"):
        extra = LONG_VERIFY if command == "verify" else ("--batch", "1,2,3", "--seq", "1,2,3,4")
        r = cli.run(command, d, "--json", dirs[where] / "report.json", *extra)
        assert_clean_error(r)
        assert "--json" in r.stderr and "report.json" in r.stderr, r
        assert r.stdout == "" and r.wall_s < FAST_S, r  # refused before the sweep, not after it


# -- sizes that cannot fit ---------------------------------------------------------------------------------

BARE_TORCH_MB = 900
"""Peak RSS bound for a refusal: python + torch + onnx imported (~400 MB here), nothing model-sized."""

HUGE_CONFIGS = {
    "hidden_size=1e9": tiny_raw(hidden_size=1_000_000_000),
    "vocab_size=1e12": tiny_raw(embedding={"vocab_size": 10**12, "dim": 8}),
    "seq max 1e9": tiny_raw(shapes={"batch": [1, 3, 6], "seq": [1, 6, 1_000_000_000]}),
    "cell stack 1e9": tiny_raw(cell="gru_cell", hidden_sizes=[4, 1_000_000_000]),
}


@pytest.mark.parametrize("case", HUGE_CONFIGS)
def test_an_export_that_cannot_fit_is_refused_with_its_estimate(cli: Cli, tmp_path: Path, case: str) -> None:
    cfg = write_config(tmp_path / "huge.toml", HUGE_CONFIGS[case])
    out = tmp_path / "w" / "exp"
    r = cli.run("export", cfg, "-o", out, timeout=60)
    assert_clean_error(r)
    assert "needs an estimated" in r.stderr and "over the limit of" in r.stderr, r
    assert r.wall_s < 15 and r.maxrss_mb < BARE_TORCH_MB, r
    assert not out.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("command", "args", "needle"),
    [
        ("verify", ("--seq", "10000000", "--batch", "64"), "verify at batch 64, seq 10000000"),
        ("profile", ("--seq", "10000000", "--batch", "64", "--allow-outside-range"), "at batch 64, seq 10000000"),
    ],
)
def test_a_sweep_that_cannot_fit_is_refused_before_it_allocates(
    cli: Cli, bundle_copy, command: str, args: tuple[str, ...], needle: str
) -> None:
    d = bundle_copy()
    r = cli.run(command, d, *args, "--max-memory-gb", "4", timeout=60)
    assert_clean_error(r)
    assert needle in r.stderr and "set by --max-memory-gb" in r.stderr, r
    assert r.wall_s < 15 and r.maxrss_mb < BARE_TORCH_MB, r


def test_the_limit_comes_from_the_environment_and_is_checked(cli: Cli, tiny_toml: Path, tmp_path: Path) -> None:
    out = tmp_path / "exp"
    r = cli.run("export", tiny_toml, "-o", out, env={"SEQDEPLOY_MAX_MEMORY_GB": "0.000001"})
    assert_clean_error(r)
    assert "set by SEQDEPLOY_MAX_MEMORY_GB" in r.stderr, r
    r = cli.run("export", tiny_toml, "-o", out, env={"SEQDEPLOY_MAX_MEMORY_GB": "lots"})
    assert_clean_error(r)
    assert "SEQDEPLOY_MAX_MEMORY_GB='lots': expected a number of gigabytes" in r.stderr, r
    assert not out.exists()


def test_a_limit_raised_past_the_machine_ends_as_out_of_memory_not_a_bug(cli: Cli, tmp_path: Path) -> None:
    """--max-memory-gb lets a 160 GB model through; the allocator then fails (RLIMIT_AS makes that
    immediate and safe on any machine). torch raises it as RuntimeError: still exit 2, not 70.
    """
    import resource

    cfg = write_config(tmp_path / "big.toml", tiny_raw(hidden_size=100_000))
    out = tmp_path / "exp"
    child = cli.start("export", cfg, "-o", out, "--max-memory-gb", "100000", rlimits={resource.RLIMIT_AS: 8 << 30})
    r = child.finish(60)
    assert_clean_error(r)
    assert "out of memory" in r.stderr, r
    assert not out.exists() and leftovers(tmp_path) == []
