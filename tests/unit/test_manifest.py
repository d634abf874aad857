"""Bundle loading (``seqdeploy.manifest``): which files are referenced, what ``--allow-modified`` may accept,
what the identity of a loaded bundle covers, and that a command hashes each file once.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

import seqdeploy.manifest as manifest_module
from seqdeploy.errors import IntegrityError
from seqdeploy.manifest import Bundle, BundleChanged, referenced_files, write_manifest


def test_referenced_files_include_a_variants_graphs_mapping() -> None:
    """Finding 4: an fp16 variant's ``graphs`` values are files a backend opens; they were never checked."""
    m: dict[str, Any] = {
        "graphs": {"sequence": {"file": "model.onnx", "spec": {"file": "not-a-file"}}},
        "weights": "model.pt",
        "variants": {
            "fp16": {
                "file": "model.fp16.onnx",
                "graphs": {"sequence": "model.fp16.onnx", "step": "step.fp16.onnx"},
                "files": ["model.fp16.onnx"],
            }
        },
    }
    assert referenced_files(m) == ["model.onnx", "model.fp16.onnx", "step.fp16.onnx", "model.pt"]


@pytest.fixture
def bundle(export_tiny, copy_export) -> Path:  # type: ignore[no-untyped-def]
    return copy_export(export_tiny())  # type: ignore[no-any-return]


def _edit(d: Path, **changes: Any) -> None:
    m = json.loads((d / "manifest.json").read_text())
    for path, value in changes.items():
        node = m
        *head, last = path.split("__")
        for k in head:
            node = node[k]
        node[last] = value
    write_manifest(d / "manifest.json", m)


def test_allow_modified_accepts_a_changed_file(bundle: Path) -> None:
    (bundle / "model.onnx").write_bytes((bundle / "model.onnx").read_bytes() + b"\0")
    with pytest.raises(IntegrityError, match="pass --allow-modified"):
        Bundle.load(bundle)
    b = Bundle.load(bundle, allow_modified=True)
    assert b.tampered_files() == ["model.onnx: differs from the manifest (sha256 mismatch)"]


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"config__model__batch_first": True}, "graphs.sequence.spec does not match the config"),
        ({"graphs__sequence__spec__inputs": None}, None),  # schema: refused whatever the flag says
    ],
)
def test_allow_modified_never_accepts_an_edited_manifest(
    bundle: Path, changes: dict[str, Any], needle: str | None
) -> None:
    """Finding 6: a flipped batch_first was accepted and then crashed in the runner (exit 70)."""
    _edit(bundle, **changes)
    with pytest.raises(Exception) as info:
        Bundle.load(bundle, allow_modified=True)
    assert isinstance(info.value, (IntegrityError, ValueError))
    if needle:
        assert needle in str(info.value) and "never an edited manifest" in str(info.value)


def test_a_symlinked_file_is_never_accepted(bundle: Path) -> None:
    shutil.copyfile(bundle / "model.pt", bundle / "real.pt")
    (bundle / "model.pt").unlink()
    (bundle / "model.pt").symlink_to("real.pt")  # inside the bundle, but not a regular file
    with pytest.raises(IntegrityError, match=r"model\.pt: is not a regular file"):
        Bundle.load(bundle, allow_modified=True)


def test_a_file_rewritten_after_it_was_hashed_is_caught_before_it_is_read(bundle: Path) -> None:
    """Finding 12: the identity covered the directory and the manifest only; a file rewritten in place
    between the hash check and the runner's read went unnoticed.
    """
    b = Bundle.load(bundle)
    data = (bundle / "model.pt").read_bytes()
    (bundle / "model.pt").write_bytes(data)  # same bytes even: a write is a change (mtime)
    os.utime(bundle / "model.pt", ns=(0, 1))
    with pytest.raises(BundleChanged), b.snapshot():
        pass
    with Bundle.load(bundle).snapshot():  # loaded again: consistent
        pass


def test_loading_a_bundle_again_hashes_nothing_again(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding 20: ``compile`` loads the bundle 3-4 times; each file is hashed once per process."""
    calls: list[str] = []
    real = manifest_module.sha256

    def counting(path: Path) -> str:
        calls.append(path.name)
        return real(path)

    monkeypatch.setattr(manifest_module, "_HASHES", {})
    monkeypatch.setattr(manifest_module, "sha256", counting)
    Bundle.load(bundle)
    first = sorted(calls)
    assert "model.pt" in first
    Bundle.load(bundle)
    Bundle.load(bundle)
    assert sorted(calls) == first
    (bundle / "model.onnx").write_bytes((bundle / "model.onnx").read_bytes())  # rewritten: hashed again
    Bundle.load(bundle)
    assert calls.count("model.onnx") == 2


def test_a_truncated_file_is_caught_by_its_size_without_hashing(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manifest_module, "_HASHES", {})
    data = (bundle / "model.pt").read_bytes()
    (bundle / "model.pt").write_bytes(data[:10])
    hashed: list[str] = []
    real = manifest_module.sha256
    monkeypatch.setattr(manifest_module, "sha256", lambda p: hashed.append(p.name) or real(p))
    with pytest.raises(IntegrityError, match=r"model\.pt: differs"):
        Bundle.load(bundle)
    assert "model.pt" not in hashed


def test_library_versions_names_seqdeploy_when_run_from_a_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    # A GPU machine with no PyPI runs seqdeploy from PYTHONPATH: metadata has no entry, the source has a version.
    import seqdeploy

    real = manifest_module.metadata.version

    def version(name: str) -> str:
        if name == "seqdeploy":
            raise manifest_module.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(manifest_module.metadata, "version", version)
    got = manifest_module.library_versions("seqdeploy", "numpy", "no-such-package-xyz")
    assert got["seqdeploy"] == seqdeploy.__version__
    assert got["numpy"] and got["no-such-package-xyz"] is None
