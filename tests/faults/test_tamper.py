"""Every manifest field and every file of a bundle, tampered with, for every command that reads it.

Rule under test (issue 12, class 4): every file a command reads is listed and hashed, paths stay inside
the bundle, the manifest's own integrity is checked; a mismatch is exit 2 naming the file or field for
``verify``, ``profile`` and ``optimize --int8`` alike — before any work, leaving the bundle as it was.
``--allow-modified`` turns file mismatches into a warning, never a path outside the bundle or a
malformed manifest into anything but exit 2.

Manifest edits are re-stamped with a fresh ``manifest_sha256`` unless the case says otherwise: the
digest alone would catch any hand edit, and these cases prove the deeper checks (schema, spec vs config,
listed files, paths) catch it too — as they must when the writer itself was wrong.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx
import pytest

from seqdeploy.manifest import write_manifest
from tests.faults._cli import Cli, assert_clean_error, tree_digest

Manifest = dict[str, Any]


def _edit(d: Path, fn: Callable[[Manifest], object], *, restamp: bool = True) -> None:
    m = json.loads((d / "manifest.json").read_text())
    fn(m)
    if restamp:
        write_manifest(d / "manifest.json", m)
    else:  # the digest keeps the value of before the edit
        (d / "manifest.json").write_text(json.dumps(m, indent=2))


def _replace_both(d: Path, other: dict[str, Path]) -> None:
    for name in ("model.onnx", "model.pt"):
        shutil.copyfile(other["same-spec"] / name, d / name)


def _truncate(name: str) -> Callable[[Path, dict[str, Path]], None]:
    def apply(d: Path, other: dict[str, Path]) -> None:
        data = (d / name).read_bytes()
        (d / name).write_bytes(data[: len(data) // 2])

    return apply


def _symlinked_graph(d: Path, other: dict[str, Path]) -> None:
    elsewhere = d.parent / "elsewhere.onnx"
    shutil.copyfile(d / "model.onnx", elsewhere)  # the same bytes: only the link is wrong
    (d / "model.onnx").unlink()
    (d / "model.onnx").symlink_to(elsewhere)


def _graph_outside(d: Path, other: dict[str, Path]) -> None:
    (d.parent / "other").mkdir()
    shutil.copyfile(d / "model.onnx", d.parent / "other" / "model.onnx")

    def fn(m: Manifest) -> None:
        m["graphs"]["sequence"]["file"] = "../other/model.onnx"
        m["files"]["../other/model.onnx"] = m["files"]["model.onnx"]  # even listed with its right sha256

    _edit(d, fn)


def _unlisted_external_data(d: Path, other: dict[str, Path]) -> None:
    (d / "model.onnx.data").write_bytes(b"\0" * 64)
    _edit(d, lambda m: m["graphs"]["sequence"].__setitem__("external_data", ["model.onnx.data"]))


def _unlisted_variant_graph(d: Path, other: dict[str, Path]) -> None:
    """A variant's ``graphs`` mapping naming a file of the bundle that ``files`` does not list."""
    shutil.copyfile(d / "model.onnx", d / "other.onnx")
    _edit(d, _set("variants.fp16", {"file": "model.onnx", "graphs": {"sequence": "other.onnx"}}))


def _set(path: str, value: Any) -> Callable[[Manifest], None]:
    """Set ``a.b.0.c`` (ints index lists) in a manifest."""

    def fn(m: Manifest) -> None:
        *head, last = path.split(".")
        node: Any = m
        for k in head:
            node = node[int(k)] if isinstance(node, list) else node[k]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return fn


def _manifest(fn: Callable[[Manifest], object], *, restamp: bool = True) -> Callable[[Path, dict[str, Path]], None]:
    return lambda d, other: _edit(d, fn, restamp=restamp)


# name -> (bundle, tamper, what the error must say)
TAMPERS: dict[str, tuple[str, Callable[[Path, dict[str, Path]], None], tuple[str, ...]]] = {
    "replace-model.onnx-and-model.pt": (
        "plain",
        _replace_both,
        ("model.onnx: differs from the manifest", "model.pt: differs from the manifest"),
    ),
    "truncated-model.onnx": ("plain", _truncate("model.onnx"), ("model.onnx: differs",)),
    "truncated-model.pt": ("plain", _truncate("model.pt"), ("model.pt: differs",)),
    "deleted-model.pt": ("plain", lambda d, o: (d / "model.pt").unlink(), ("model.pt: is missing",)),
    "symlinked-model.onnx": ("plain", _symlinked_graph, ("model.onnx:",)),
    "truncated-int8-variant": ("int8", _truncate("model.int8.onnx"), ("model.int8.onnx: differs",)),
    "manifest-edited-not-restamped": (
        "plain",
        _manifest(_set("created_utc", "1999-01-01T00:00:00+00:00"), restamp=False),
        ("manifest.json: was edited after seqdeploy wrote it",),
    ),
    "files-deleted": ("plain", _manifest(lambda m: m.pop("files")), ("manifest.files: missing",)),
    "files-entry-dropped": (
        "plain",
        _manifest(lambda m: m["files"].pop("model.pt")),
        ("model.pt: is used by the bundle but not listed",),
    ),
    "files-entry-bad-sha256": (
        "plain",
        _manifest(lambda m: m["files"]["model.pt"].__setitem__("sha256", "0" * 63)),
        ("manifest.files['model.pt'].sha256: expected 64 lowercase hex digits",),
    ),
    "graph-file-outside": ("plain", _graph_outside, ("../other/model.onnx: points outside the bundle",)),
    "variant-file-outside": (
        "int8",
        _manifest(_set("variants.int8.file", "../model.int8.onnx")),
        ("../model.int8.onnx: points outside the bundle",),
    ),
    "absolute-weights-path": ("plain", _manifest(_set("weights", "/etc/passwd")), ("/etc/passwd: points outside",)),
    "value-range-widened": (
        "embedding",
        _manifest(_set("graphs.sequence.spec.inputs.0.value_range", [0, 1000])),
        ("graphs.sequence.spec does not match the config",),
    ),
    "value-range-inverted": (
        "embedding",
        _manifest(_set("graphs.sequence.spec.inputs.0.value_range", [19, 0])),
        ("value_range: expected [low, high] with low <= high",),
    ),
    "batch-first-flipped": (
        "plain",
        _manifest(_set("config.model.batch_first", True)),
        ("graphs.sequence.spec does not match the config",),
    ),
    "duplicate-tensor-names": (
        "plain",
        _manifest(_set("graphs.sequence.spec.outputs.1.name", "output")),
        ("duplicate tensor names ['output']",),
    ),
    "weights-removed": ("plain", _manifest(lambda m: m.pop("weights")), ("manifest.weights: missing",)),
    "graphs-empty": ("plain", _manifest(_set("graphs", {})), ("has no 'sequence' graph",)),
    "unlisted-external-data": (
        "plain",
        _unlisted_external_data,
        ("model.onnx.data: is used by the bundle but not listed",),
    ),
    "schema-version": ("plain", _manifest(_set("schema_version", 2)), ("schema_version 2 is not supported",)),
    "manifest-truncated": (
        "plain",
        lambda d, o: (d / "manifest.json").write_text((d / "manifest.json").read_text()[:200]),
        ("unreadable manifest",),
    ),
    "state-pair-unknown-tensor": (
        "plain",
        _manifest(_set("graphs.sequence.spec.state.0.output", "h_x")),
        ("names a tensor the graph does not have",),
    ),
    "dims-not-an-axis": (
        "plain",
        _manifest(_set("graphs.sequence.spec.inputs.0.dims.0", "seq len")),
        ("dims[0]: expected an int >= 1 or an axis name",),
    ),
    "dtype-unknown": (
        "plain",
        _manifest(_set("graphs.sequence.spec.inputs.0.dtype", "complex64")),
        ("dtype: expected one of",),
    ),
    "input-dtype-int64": (
        "plain",
        _manifest(_set("graphs.sequence.spec.inputs.0.dtype", "int64")),
        ("graphs.sequence.spec does not match the config",),
    ),
    "variant-graphs-outside": (
        "plain",
        _manifest(_set("variants.fp16", {"file": "model.onnx", "graphs": {"sequence": "../elsewhere.onnx"}})),
        ("../elsewhere.onnx: points outside the bundle",),
    ),
    "variant-graphs-unlisted": (
        "plain",
        _unlisted_variant_graph,
        ("other.onnx: is used by the bundle but not listed",),
    ),
}
COMMANDS = {
    "verify": ("verify", "--batch", "1", "--seq", "2"),
    "profile": ("profile", "--iters", "1", "--warmup", "0", "--batch", "1", "--seq", "2"),
    "optimize": ("optimize", "--int8"),
}
OUTSIDE = {
    "graph-file-outside",
    "variant-file-outside",
    "variant-graphs-outside",
    "absolute-weights-path",
    "symlinked-model.onnx",
}
EDITED_MANIFEST = (
    "batch-first-flipped",
    "value-range-widened",
    "input-dtype-int64",
    "manifest-edited-not-restamped",
    "variant-graphs-unlisted",
)
"""Hand edits --allow-modified must never accept: they crashed with exit 70 (RuntimeError, ValueError)."""


@pytest.fixture
def tampered(_bundles: dict[str, Path], other_bundles: dict[str, Path], tmp_path: Path) -> Callable[[str], Path]:
    def make(case: str) -> Path:
        kind, tamper, _ = TAMPERS[case]
        src = {**_bundles, **other_bundles}[kind]
        d = tmp_path / "work" / "exp"
        shutil.copytree(src, d)
        tamper(d, other_bundles)
        return d

    return make


@pytest.mark.parametrize("case", TAMPERS)
def test_every_command_refuses_a_tampered_bundle_naming_the_file_or_field(
    cli: Cli, tampered: Callable[[str], Path], case: str
) -> None:
    d = tampered(case)
    before = tree_digest(d)
    for name, args in COMMANDS.items():
        r = cli.run(args[0], d, *args[1:])
        assert_clean_error(r)
        for needle in TAMPERS[case][2]:
            assert needle in r.stderr, f"{name}: {r}"
        assert r.stdout == "", f"{name} did work before refusing: {r}"
        assert tree_digest(d) == before, name


@pytest.mark.parametrize(
    "case",
    [*sorted(OUTSIDE), "graphs-empty", "duplicate-tensor-names", *EDITED_MANIFEST],
)
def test_allow_modified_never_accepts_a_path_outside_or_a_malformed_manifest(
    cli: Cli, tampered: Callable[[str], Path], case: str
) -> None:
    d = tampered(case)
    for args in COMMANDS.values():
        r = cli.run(args[0], d, *args[1:], "--allow-modified")
        assert_clean_error(r)
        assert TAMPERS[case][2][0] in r.stderr, r


def _benign_edit(d: Path) -> None:
    """model.onnx re-saved with one more metadata entry: the same graph, other bytes."""
    m = onnx.load(str(d / "model.onnx"))
    onnx.helper.set_model_props(m, {"edited-by": "a user"})
    onnx.save(m, str(d / "model.onnx"))


WARNING = "--allow-modified: the bundle differs from its manifest (model.onnx: differs"


@pytest.mark.parametrize("command", ["verify", "profile"])
def test_allow_modified_turns_a_file_mismatch_into_a_warning(cli: Cli, bundle_copy, command: str) -> None:
    d = bundle_copy()
    _benign_edit(d)
    args = COMMANDS[command]
    refused = cli.run(args[0], d, *args[1:])
    assert_clean_error(refused)
    r = cli.run(args[0], d, *args[1:], "--allow-modified")
    assert r.code == 0, r
    assert WARNING in r.text, r


def test_optimize_with_allow_modified_never_launders_the_bundle(cli: Cli, bundle_copy) -> None:
    """The variant is recorded, but the modified file keeps its old sha256 in the table: a later reader
    without --allow-modified still refuses the bundle, naming the file.
    """
    d = bundle_copy()
    _benign_edit(d)
    r = cli.run("optimize", d, "--int8", "--allow-modified")
    assert r.code == 0, r
    assert "int8" in json.loads((d / "manifest.json").read_text())["variants"]
    later = cli.run("verify", d, "--batch", "1", "--seq", "2")
    assert_clean_error(later)
    assert "model.onnx: differs from the manifest" in later.stderr, later


def test_allow_modified_accepts_files_never_an_edited_manifest(cli: Cli, bundle_copy) -> None:
    """A hand-edited manifest (its digest no longer matches) is refused even with --allow-modified, by
    every command: its fields are what the runners trust. (Before, optimize accepted it — this test's
    earlier version pinned that — and an edit the schema allows, a flipped batch_first, then crashed.)
    """
    d = bundle_copy()
    _benign_edit(d)
    _edit(d, _set("checkpoint", "/hand/edited.pt"), restamp=False)
    before = tree_digest(d)
    for args in COMMANDS.values():
        r = cli.run(args[0], d, *args[1:], "--allow-modified")
        assert_clean_error(r)
        assert "manifest.json: was edited after seqdeploy wrote it" in r.stderr, r
        assert "never an edited manifest" in r.stderr, r
    assert tree_digest(d) == before


def test_optimize_with_allow_modified_warns(cli: Cli, bundle_copy) -> None:
    d = bundle_copy()
    _benign_edit(d)
    r = cli.run("optimize", d, "--int8", "--allow-modified")
    assert r.code == 0, r
    assert "model.onnx: differs" in r.text, r


@pytest.mark.parametrize("command", COMMANDS)
def test_a_bundle_that_does_not_exist(cli: Cli, tmp_path: Path, command: str) -> None:
    args = COMMANDS[command]
    r = cli.run(args[0], tmp_path / "nope", *args[1:])
    assert_clean_error(r)
    assert "export directory" in r.stderr and "ENOENT" not in r.stderr, r
    assert not (tmp_path / "nope").exists()
