"""A full disk: a per-process file-size limit (``RLIMIT_FSIZE``) and the ``enospc`` fault action.

``RLIMIT_FSIZE`` works unprivileged (no loop or tmpfs mount): Python ignores SIGXFSZ, so a write past the
limit fails with EFBIG exactly like a write on a full disk fails with ENOSPC. The limits are chosen from
the real sizes of the tiny bundle's files, so each one stops a different write (the staging marker, the
graph, the weights, the manifest). Rule under test (issue 12, class 5): exit 2 naming the path, nothing
left behind, an earlier good artifact untouched — never exit 1 ("the export failed its checks") or 70.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults._cli import Cli, assert_clean_error, leftovers, tree_digest


@pytest.fixture(scope="module")
def sizes(_bundles: dict[str, Path]) -> dict[str, int]:
    plain, int8 = _bundles["plain"], _bundles["int8"]
    out = {p.name: p.stat().st_size for p in plain.iterdir()}
    out["model.int8.onnx"] = (int8 / "model.int8.onnx").stat().st_size
    out["manifest.json+int8"] = (int8 / "manifest.json").stat().st_size
    return out


EXPORT_STOPS = {
    # name -> (limit, the file whose write it stops: every file written before that one fits under it)
    "nothing-fits": (lambda s: 0, ".seqdeploy-staging"),
    "staging-marker": (lambda s: 8, ".seqdeploy-staging"),  # the marker is {"pid": N}: over 8 bytes
    "model.onnx": (lambda s: s["model.onnx"] // 2, "model.onnx"),
    "model.pt": (lambda s: (s["model.onnx"] + s["model.pt"]) // 2, "model.pt"),
    "manifest.json": (lambda s: s["manifest.json"] - 1, "manifest.json"),
}


def test_each_limit_stops_the_write_it_names(sizes: dict[str, int]) -> None:
    limit = {k: f(sizes) for k, (f, _) in EXPORT_STOPS.items()}
    assert 200 < limit["model.onnx"] < sizes["model.onnx"]  # the marker (~15 bytes) fits, the graph does not
    assert sizes["model.onnx"] < limit["model.pt"] < sizes["model.pt"]
    assert sizes["model.pt"] < limit["manifest.json"] < sizes["manifest.json"]


@pytest.mark.parametrize("stop", EXPORT_STOPS)
def test_export_on_a_full_disk_names_the_path_and_leaves_nothing(
    cli: Cli, tiny_toml: Path, bundle_copy, sizes: dict[str, int], stop: str
) -> None:
    limit, victim = EXPORT_STOPS[stop][0](sizes), EXPORT_STOPS[stop][1]
    d = bundle_copy()  # --force over an earlier export: it must survive
    before = tree_digest(d)
    r = cli.run("export", tiny_toml, "-o", d, "--force", fsize_limit=limit)
    assert_clean_error(r)
    assert "File too large (EFBIG)" in r.stderr and "ulimit -f" in r.stderr, r
    assert f"{d.parent}/.{d.name}." in r.stderr and f"/{victim}: " in r.stderr, r  # the path it could not write
    assert tree_digest(d) == before
    assert leftovers(d.parent) == []


def test_optimize_on_a_full_disk_records_nothing(cli: Cli, bundle_copy, sizes: dict[str, int]) -> None:
    for limit in (sizes["model.int8.onnx"] // 2, sizes["manifest.json+int8"] - 1):
        d = bundle_copy(int8=limit > sizes["model.int8.onnx"])  # the second: over an earlier variant
        assert limit >= sizes["manifest.json"] or limit < sizes["model.int8.onnx"]
        before = tree_digest(d)
        r = cli.run("optimize", d, "--int8", fsize_limit=limit)
        assert_clean_error(r)
        assert "(EFBIG)" in r.stderr and str(d) in r.stderr, r
        assert tree_digest(d) == before
        assert leftovers(d.parent) == []
        d.rename(d.with_name(f"done-{limit}"))


ENOSPC_AT = {
    "export": ("export:model-built", "export:onnx-written", "export:self-check", "commit"),
    "optimize": ("optimize:int8-written", "commit"),
}


@pytest.mark.parametrize(
    ("command", "point"), [(c, p) for c, points in ENOSPC_AT.items() for p in points], ids=lambda v: str(v)
)
def test_enospc_at_every_write_stage(cli: Cli, tiny_toml: Path, bundle_copy, command: str, point: str) -> None:
    d = bundle_copy(int8=command == "optimize")
    before = tree_digest(d)
    if command == "export":
        args: tuple[object, ...] = ("export", tiny_toml, "-o", d, "--force")
    else:
        args = ("optimize", d, "--int8")
    r = cli.run(*args, fault_at=point, action="enospc")
    assert_clean_error(r)
    assert f"<fault point {point}>: No space left on device (ENOSPC)" in r.stderr, r
    assert "nothing half-written was left behind" in r.stderr
    assert tree_digest(d) == before
    assert leftovers(d.parent) == []
