"""The export directory's ``manifest.json``: what was exported, from what, with which versions.

An export directory (a *bundle*) holds ``model.onnx``, ``model.pt`` (the exported state_dict),
optionally ``step.onnx`` and variants such as ``model.int8.onnx``, and ``manifest.json``. Its schema is
documented in ``docs/manifest.md``; ``schema_version`` changes only when a field changes meaning.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from seqdeploy.config import PipelineConfig
from seqdeploy.config_io import config_from_dict
from seqdeploy.errors import ConfigError, UsageError
from seqdeploy.spec import IOSpec

__all__ = ["MANIFEST", "SCHEMA_VERSION", "Bundle", "file_entry", "library_versions", "sha256", "write_json"]

MANIFEST = "manifest.json"
SCHEMA_VERSION = 1


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file, streamed."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_entry(path: Path) -> dict[str, Any]:
    """``{"sha256": ..., "bytes": ...}`` for the manifest's ``files`` table."""
    return {"sha256": sha256(path), "bytes": path.stat().st_size}


def library_versions(*names: str) -> dict[str, str | None]:
    """Installed versions of ``names`` plus Python and the platform (``None`` = not installed)."""
    out: dict[str, str | None] = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file + rename): a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


@dataclass(frozen=True)
class Bundle:
    """A loaded export directory.

    Attributes:
        path: The directory.
        manifest: The parsed ``manifest.json``.
        config: The config the model was built from.
        specs: IOSpec per graph (``"sequence"``, and ``"step"`` when exported with ``--step``).
    """

    path: Path
    manifest: dict[str, Any]
    config: PipelineConfig
    specs: dict[str, IOSpec]

    @classmethod
    def load(cls, path: str | Path) -> Bundle:
        """Read ``DIR/manifest.json``.

        Raises:
            UsageError: ``path`` is not an export directory or its manifest is unreadable.
        """
        path = Path(path)
        mpath = path / MANIFEST
        if not mpath.is_file():
            raise UsageError(
                f"{path}: not a seqdeploy export directory (no {MANIFEST}); create one with "
                f"'seqdeploy export CONFIG -o {path}'"
            )
        try:
            manifest = json.loads(mpath.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(f"{mpath}: unreadable manifest: {exc}") from None
        if not isinstance(manifest, dict):
            raise UsageError(f"{mpath}: malformed manifest (expected a JSON object, got {type(manifest).__name__})")
        version = manifest.get("schema_version")
        if version != SCHEMA_VERSION:
            raise UsageError(
                f"{mpath}: schema_version {version!r} is not supported by this seqdeploy "
                f"(expects {SCHEMA_VERSION}); re-export with this version"
            )
        try:
            config = config_from_dict(manifest["config"], base_dir=str(path))
            specs = {k: IOSpec.from_dict(g["spec"]) for k, g in manifest["graphs"].items()}
        except (KeyError, TypeError, ConfigError) as exc:
            raise UsageError(f"{mpath}: malformed manifest ({type(exc).__name__}: {exc})") from None
        return cls(path=path, manifest=manifest, config=config, specs=specs)

    def graph_path(self, graph: str = "sequence") -> Path:
        """Path of a graph's ONNX file."""
        try:
            return self.path / str(self.manifest["graphs"][graph]["file"])
        except KeyError:
            raise UsageError(
                f"{self.path}: has no '{graph}' graph (graphs: {sorted(self.manifest['graphs'])}); "
                + ("re-export with --step" if graph == "step" else "re-export it")
            ) from None

    def variant(self, name: str) -> dict[str, Any] | None:
        """The manifest entry of a variant (e.g. ``"int8"``), or ``None``."""
        variants: dict[str, dict[str, Any]] = self.manifest.get("variants", {})
        return variants.get(name)

    @property
    def bidirectional(self) -> bool:
        """Whether the model has a backward direction (its outputs depend on the whole sequence)."""
        return self.config.model.bidirectional

    @property
    def streamable(self) -> bool:
        """Whether a sequence can be fed in pieces with the state carried between calls: a unidirectional
        model whose sequence graph takes its states as inputs. Chunked verify, streaming profiles and
        stream packages all ask this one question.
        """
        return not self.bidirectional and bool(self.specs["sequence"].state)

    @property
    def weights_path(self) -> Path:
        """The exported state_dict (``model.pt``)."""
        return self.path / str(self.manifest["weights"])

    def tampered_files(self) -> list[str]:
        """Files whose sha256 no longer matches the manifest (or that are missing)."""
        bad = []
        for name, entry in self.manifest.get("files", {}).items():
            p = self.path / name
            if not p.is_file() or sha256(p) != entry.get("sha256"):
                bad.append(name)
        return bad
