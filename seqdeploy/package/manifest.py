"""The package manifest ``PKG/seqdeploy.json``: what a package holds, and the integrity rules that guard it.

Torch-free and ONNX-free (stdlib only): the runtime, ``seqdeploy predict`` and ``seqdeploy package --check``
read packages through this module in an install that has only ``seqdeploy[cpu]``.

Integrity rules (checked before anything in a package is loaded):

* every file under the package directory is listed in ``files`` with its sha256 and size, except the
  manifest itself; an unlisted file, a missing file or a changed byte is an :class:`IntegrityError` that
  names the file;
* listed paths are relative POSIX paths inside the package (no ``..``, no absolute path);
* a package holds no symbolic links (a link could point anywhere; Triton would follow it);
* the manifest carries its own digest (``manifest_sha256``, as a bundle's does), so a hand edit of the
  manifest itself — a widened ``value_range``, a files table rewritten to match a changed graph — is
  refused too.

The schema is documented in ``docs/package.md``; ``schema_version`` changes only when a field changes
meaning.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from seqdeploy._atomic import STAGING_MARKER
from seqdeploy.errors import IntegrityError, UsageError
from seqdeploy.manifest import DIGEST_FIELD, file_entry, manifest_digest, sha256
from seqdeploy.spec import IOSpec, StatePair, TensorSpec

__all__ = [
    "PACKAGE_FORMAT",
    "PACKAGE_MANIFEST",
    "PACKAGE_SCHEMA_VERSION",
    "ModelEntry",
    "PackageManifest",
    "TextSpec",
    "TrtModelEntry",
    "file_table",
    "merges_requests",
    "read_manifest",
    "sha256_bytes",
    "sha256_file",
    "valid_name",
    "verify_files",
]

PACKAGE_MANIFEST = "seqdeploy.json"
PACKAGE_SCHEMA_VERSION = 1
PACKAGE_FORMAT = "seqdeploy-package"
ModelKind = Literal["stateless", "stream"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


sha256_file = sha256
"""Hex SHA-256 of a file, streamed: the bundle's own :func:`seqdeploy.manifest.sha256` (one implementation)."""


def merges_requests(precision: str) -> bool:
    """Whether requests to a model of ``precision`` may share one execution without changing their answers.

    Not for int8: its graphs quantize activations dynamically (``DynamicQuantizeLinear``,
    ``DynamicQuantizeLSTM``), with **one scale computed over the whole batch**, padding rows included, so a
    row's result depends on the rows it runs with (measured: max |alone - batched| 5.4e-3 on a tiny
    classifier). The int8 model's config has no ``dynamic_batching``, ``seqdeploy serve`` never merges its
    requests, and the runtime runs each row of ``predict_ids``/``predict_text`` alone.
    """
    return precision != "int8"


def valid_name(name: str) -> bool:
    """Whether ``name`` can be a Triton model name and a directory name on every platform."""
    return bool(_NAME.match(name)) and name not in (".", "..")


@dataclass(frozen=True, slots=True)
class TextSpec:
    """How text becomes token ids (``manifest["text"]``).

    Attributes:
        vocab: Package-relative path of the vocabulary (one token per line, line k = id k).
        vocab_size: Number of lines (= the embedding's rows).
        lowercase: Lower-case text before lookup.
        pattern: Regular expression whose matches are the tokens (``re.findall``).
        unk_token: Token that unknown words map to, or ``None``.
        unk_id: Its id, or ``None``.
        oov: ``"unk"`` (map unknown words to ``unk_id``) or ``"error"`` (refuse them).
        pad_id: Id written past each row's length in a padded batch.
    """

    vocab: str
    vocab_size: int
    lowercase: bool
    pattern: str
    unk_token: str | None
    unk_id: int | None
    oov: Literal["unk", "error"]
    pad_id: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "vocab": self.vocab,
            "vocab_size": self.vocab_size,
            "lowercase": self.lowercase,
            "pattern": self.pattern,
            "unk_token": self.unk_token,
            "unk_id": self.unk_id,
            "oov": self.oov,
            "pad_id": self.pad_id,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TextSpec:
        """Inverse of :meth:`to_dict`."""
        oov = data["oov"]
        if oov not in ("unk", "error"):
            raise ValueError(f"text.oov must be 'unk' or 'error', got {oov!r}")
        return cls(
            vocab=str(data["vocab"]),
            vocab_size=int(data["vocab_size"]),
            lowercase=bool(data["lowercase"]),
            pattern=str(data["pattern"]),
            unk_token=data.get("unk_token"),
            unk_id=data.get("unk_id"),
            oov=oov,
            pad_id=int(data["pad_id"]),
        )


@dataclass(frozen=True)
class ModelEntry:
    """One Triton model of a package (``manifest["models"][name]``).

    Attributes:
        name: Triton model name = its directory.
        kind: ``"stateless"`` (dynamic batching) or ``"stream"`` (sequence batching, implicit state).
        precision: ``"fp32"``, ``"int8"`` or ``"fp16"``.
        platform: Triton platform (``"onnxruntime_onnx"``).
        file: Package-relative path of the graph.
        config: Package-relative path of ``config.pbtxt``.
        spec: Batch-first I/O of the graph (contract names; ``START`` included for stream models).
        start: Name of the START control input, or ``None``.
        max_batch_size: Triton's ``max_batch_size``; also the largest batch the runtime accepts.
        seq_range: ``(min, max)`` sequence length the graph was proven at and accepts.
        raw: The manifest entry as stored.
    """

    name: str
    kind: ModelKind
    precision: str
    platform: str
    file: str
    config: str
    spec: IOSpec
    start: str | None
    max_batch_size: int
    seq_range: tuple[int, int]
    raw: Mapping[str, Any]

    @property
    def state(self) -> tuple[StatePair, ...]:
        """State pairs (``h0 → h_n``) in I/O order."""
        return self.spec.state

    @property
    def merges_requests(self) -> bool:
        """Whether separate requests may share one execution (see :func:`merges_requests`)."""
        return merges_requests(self.precision)

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any]) -> ModelEntry:
        """Parse one ``models`` entry; ``KeyError``/``TypeError``/``ValueError`` on a malformed one."""
        kind = data["kind"]
        if kind not in ("stateless", "stream"):
            raise ValueError(f"models.{name}.kind must be 'stateless' or 'stream', got {kind!r}")
        spec = IOSpec(
            inputs=tuple(TensorSpec.from_dict(t) for t in data["inputs"]),
            outputs=tuple(TensorSpec.from_dict(t) for t in data["outputs"]),
            state=tuple(StatePair(p["input"], p["output"]) for p in data["state"]),
        )
        lo, hi = data["ranges"]["seq"]
        start = data.get("control", {}).get("start")
        return cls(
            name=name,
            kind=kind,
            precision=str(data["precision"]),
            platform=str(data["platform"]),
            file=_rel(data["file"]),
            config=_rel(data["config"]),
            spec=spec,
            start=start,
            max_batch_size=int(data["max_batch_size"]),
            seq_range=(int(lo), int(hi)),
            raw=data,
        )


@dataclass(frozen=True)
class TrtModelEntry:
    """A TensorRT model of a package (``manifest["trt"]["models"][name]``, ``PKG/NAME_trt/``).

    Attributes:
        name: Triton model name = its directory.
        for_model: The package model it computes (``NAME``, or ``NAME_fp16`` for fp16 engines): same tensors,
            but in the bundle's layout.
        precision: ``"fp32"`` or ``"fp16"``.
        config: Package-relative path of its ``config.pbtxt``.
        spec: The engines' I/O in the **bundle's** layout (time-major input when the export was, states with
            the batch on axis 1): what the engine takes and returns.
        ranges: ``{"batch": (lo, hi), "seq": (lo, hi)}`` that every engine's profile covers.
        engines: Every engine as recorded (``file`` package-relative, ``compute_capability``, ``tensorrt``,
            ``profiles``, ``plan_sha256``, ``onnx_sha256``, ``verified``, ...).
        raw: The manifest entry as stored.
    """

    name: str
    for_model: str
    precision: str
    config: str
    spec: IOSpec
    ranges: Mapping[str, tuple[int, int]]
    engines: tuple[Mapping[str, Any], ...]
    raw: Mapping[str, Any]

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any]) -> TrtModelEntry:
        """Parse one ``trt.models`` entry; ``KeyError``/``TypeError``/``ValueError`` on a malformed one."""
        spec = IOSpec(
            inputs=tuple(TensorSpec.from_dict(t) for t in data["inputs"]),
            outputs=tuple(TensorSpec.from_dict(t) for t in data["outputs"]),
            state=tuple(StatePair(p["input"], p["output"]) for p in data["state"]),
        )
        engines = tuple(dict(e) for e in data["engines"])
        if not engines:
            raise ValueError(f"trt.models.{name} lists no engine")
        for e in engines:
            rel = _rel(e["file"])
            if not rel.startswith(f"{name}/1/") or rel.count("/") != 2:
                raise ValueError(f"trt.models.{name}: engine file {rel!r} is not inside {name}/1/")
            if not isinstance(e.get("plan_sha256"), str) or not isinstance(e.get("compute_capability"), str):
                raise TypeError(f"trt.models.{name}: engine {rel} needs plan_sha256 and compute_capability")
        ranges = {axis: (int(data["ranges"][axis][0]), int(data["ranges"][axis][1])) for axis in ("batch", "seq")}
        return cls(
            name=name,
            for_model=str(data["for_model"]),
            precision=str(data["precision"]),
            config=_rel(data["config"]),
            spec=spec,
            ranges=ranges,
            engines=engines,
            raw=data,
        )


@dataclass(frozen=True)
class PackageManifest:
    """A parsed ``seqdeploy.json``.

    Attributes:
        path: The package directory.
        raw: The JSON document.
        name: The package (and default model) name.
        default_model: Model loaded when none is named.
        models: Every Triton model of the package by name.
        text: Tokenizer rules and vocabulary, or ``None`` (the model takes ids or features only).
        labels: Class names of a classifier or tagger head, or ``None``.
        head: The head task (``"none"``, ``"classify"`` or ``"tag"``).
        streamable: Whether a sequence may be fed in chunks with the state carried (a unidirectional model
            with state inputs); a bidirectional model takes states but its backward half needs the whole
            sequence.
        files: ``{relative path: {"sha256", "bytes"}}``.
        trt_models: The TensorRT models (``PKG/NAME_trt/``) by name; empty when the bundle had no engines.
    """

    path: Path
    raw: Mapping[str, Any]
    name: str
    default_model: str
    models: dict[str, ModelEntry]
    text: TextSpec | None
    labels: tuple[str, ...] | None
    head: str
    streamable: bool
    files: Mapping[str, Mapping[str, Any]]
    trt_models: Mapping[str, TrtModelEntry] = dataclasses.field(default_factory=dict)

    def trt_for(self, model: str) -> TrtModelEntry | None:
        """The TensorRT model that computes ``model`` (``NAME_trt`` for ``NAME``), or ``None``."""
        return next((t for t in self.trt_models.values() if t.for_model == model), None)

    def model(self, name: str | None = None) -> ModelEntry:
        """The model called ``name`` (the default model when ``None``).

        Raises:
            UsageError: No such model; the message lists the package's models.
        """
        key = self.default_model if name is None else name
        try:
            return self.models[key]
        except KeyError:
            trt = self.trt_models.get(key)
            if trt is not None:
                raise UsageError(
                    f"{self.path}: '{key}' is the TensorRT form of '{trt.for_model}': load model '{trt.for_model}' "
                    "with backend 'trt' (or 'auto', which picks it on a GPU it was built for)"
                ) from None
            raise UsageError(
                f"{self.path}: package has no model '{key}'; its models are {', '.join(sorted(self.models))}"
            ) from None


def _rel(path: object) -> str:
    """A listed path, checked to be a relative POSIX path inside the package.

    A pure check of the manifest's string (no filesystem access, unlike :func:`seqdeploy.manifest.inside`,
    which resolves symlinks under a root): it also refuses ``./x``, ``a//b`` and trailing slashes, so that
    every listed path has exactly one spelling and matches the walk of the directory.
    """
    if not isinstance(path, str) or not path:
        raise ValueError(f"expected a relative path, got {path!r}")
    p = PurePosixPath(path)
    if p.is_absolute() or "\\" in path or any(part in ("..", "") for part in path.split("/")) or p.as_posix() != path:
        raise IntegrityError(
            f"manifest lists the path {path!r}, which is not a plain relative path inside the package; "
            "the manifest was edited or the package is malicious: rebuild it with 'seqdeploy package'"
        )
    return path


def read_manifest(path: str | Path, *, staging: bool = False) -> PackageManifest:
    """Read and validate ``PKG/seqdeploy.json`` (without checking file hashes; see :func:`verify_files`).

    Args:
        path: The package directory.
        staging: Accept an unfinished staging directory (the writer checking its own work).

    Raises:
        UsageError: ``path`` is not a package, or its manifest is unreadable, of another schema version or
            malformed.
        IntegrityError: The manifest lists a path outside the package.
    """
    root = Path(path)
    mpath = root / PACKAGE_MANIFEST
    if not root.is_dir():
        raise UsageError(
            f"{root}: not a package directory (expected a directory made by 'seqdeploy package DIR -o {root}', "
            "or its .tar.gz)"
        )
    if not staging and (root / STAGING_MARKER).exists():
        raise UsageError(
            f"{root}: is the unfinished staging directory of an interrupted 'seqdeploy package' run, not a "
            "package; it is removed by the next run that writes the same target"
        )
    if not mpath.is_file():
        hint = (
            " (this is an export directory: package it with 'seqdeploy package')"
            if (root / "manifest.json").is_file()
            else ""
        )
        raise UsageError(f"{root}: not a seqdeploy package (no {PACKAGE_MANIFEST}){hint}")
    try:
        raw = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IntegrityError(f"{mpath}: unreadable package manifest: {exc}") from None
    if not isinstance(raw, dict):
        raise IntegrityError(f"{mpath}: malformed package manifest (expected a JSON object)")
    if raw.get("format") != PACKAGE_FORMAT:
        raise UsageError(f"{mpath}: not a seqdeploy package manifest (format {raw.get('format')!r})")
    version = raw.get("schema_version")
    if raw.get(DIGEST_FIELD) != manifest_digest(raw):
        raise IntegrityError(
            f"{mpath}: was edited after seqdeploy wrote it ({DIGEST_FIELD} does not match its content); "
            "rebuild the package with 'seqdeploy package'"
        )
    if version != PACKAGE_SCHEMA_VERSION:
        raise UsageError(
            f"{mpath}: package schema_version {version!r} is not supported by this seqdeploy (reads "
            f"{PACKAGE_SCHEMA_VERSION}); repackage it with this version or upgrade seqdeploy"
        )
    try:
        models = {name: ModelEntry.from_dict(name, entry) for name, entry in raw["models"].items()}
        for name in models:
            if not valid_name(name):
                raise ValueError(f"model name {name!r} is not a valid directory name")
        default = str(raw["default_model"])
        if default not in models:
            raise ValueError(f"default_model {default!r} is not one of the models {sorted(models)}")
        text = TextSpec.from_dict(raw["text"]) if raw.get("text") is not None else None
        if text is not None:
            _rel(text.vocab)
        labels = tuple(str(x) for x in raw["labels"]) if raw.get("labels") is not None else None
        files = raw["files"]
        if not isinstance(files, dict):
            raise TypeError("files must be an object")
        for rel, entry in files.items():
            _rel(rel)
            if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
                raise TypeError(f"files[{rel!r}] must hold a sha256")
        head = str(raw["model"]["head"])
        streamable = raw["model"]["streamable"]
        if not isinstance(streamable, bool):
            raise TypeError("model.streamable must be true or false")
        trt_raw = (raw.get("trt") or {}).get("models") or {}
        if isinstance(trt_raw, list):  # packages before TensorRT models were packaged: "models": []
            trt_raw = {}
        trt_models = {name: TrtModelEntry.from_dict(name, entry) for name, entry in trt_raw.items()}
        for name, t in trt_models.items():
            if not valid_name(name) or name in models:
                raise ValueError(f"TensorRT model name {name!r} is not a valid directory name of its own")
            if t.for_model not in models:
                raise ValueError(f"trt.models.{name}.for_model {t.for_model!r} is not one of the models")
    except IntegrityError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise IntegrityError(f"{mpath}: malformed package manifest ({type(exc).__name__}: {exc})") from None
    return PackageManifest(
        path=root,
        raw=raw,
        name=str(raw.get("name", default)),
        default_model=default,
        models=models,
        text=text,
        labels=labels,
        head=head,
        streamable=streamable,
        files=files,
        trt_models=trt_models,
    )


def _walk(root: Path, *, staging: bool = False) -> Iterable[tuple[str, Path]]:
    """Every file under ``root`` as ``(relative posix path, path)``, symlinks refused."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(dirpath)
        for name in [*dirnames, *filenames]:
            p = base / name
            rel = p.relative_to(root).as_posix()
            if staging and rel == STAGING_MARKER:
                continue
            if p.is_symlink():
                raise IntegrityError(
                    f"{root}: '{rel}' is a symbolic link; packages contain only regular files (a link can point "
                    "outside the package). Remove it or rebuild the package with 'seqdeploy package'"
                )
            if name in filenames:
                yield rel, p


def verify_files(manifest: PackageManifest, *, keep: Iterable[str] = (), staging: bool = False) -> dict[str, bytes]:
    """Check every file of the package against the manifest before anything is loaded.

    Args:
        manifest: The package's manifest (its ``path`` is the package directory).
        keep: Relative paths whose verified bytes are returned, so that the caller loads exactly the bytes
            that were hashed (no window between the check and the load).
        staging: Ignore the staging marker (the writer checking its own work).

    Returns:
        ``{relative path: bytes}`` for the paths in ``keep``.

    Raises:
        IntegrityError: A listed file is missing or differs from its sha256, a file is not listed, or the
            package holds a symbolic link. The message names the file.
    """
    root = manifest.path
    wanted = set(keep)
    listed = dict(manifest.files)
    present = {rel: p for rel, p in _walk(root, staging=staging) if rel != PACKAGE_MANIFEST}
    unlisted = sorted(set(present) - set(listed))
    if unlisted:
        raise IntegrityError(
            f"{root}: file '{unlisted[0]}' is not listed in {PACKAGE_MANIFEST}"
            + (f" (and {len(unlisted) - 1} more)" if len(unlisted) > 1 else "")
            + "; a package holds exactly the files it lists. Remove it, or rebuild the package with "
            "'seqdeploy package'"
        )
    kept: dict[str, bytes] = {}
    for rel in sorted(listed):
        entry = listed[rel]
        p = present.get(rel)
        if p is None:
            raise IntegrityError(
                f"{root}: file '{rel}' listed in {PACKAGE_MANIFEST} is missing; the package is incomplete"
            )
        if rel in wanted:
            data = p.read_bytes()
            digest = sha256_bytes(data)
            kept[rel] = data
        else:
            digest = sha256_file(p)
        if digest != entry["sha256"]:
            raise IntegrityError(
                f"{root}: file '{rel}' was modified: its sha256 is {digest[:16]}…, the manifest says "
                f"{str(entry['sha256'])[:16]}…. Do not edit packaged files; rebuild with 'seqdeploy package'"
            )
    missing = sorted(wanted - set(kept))
    if missing:
        raise IntegrityError(f"{root}: file '{missing[0]}' is needed but not listed in {PACKAGE_MANIFEST}")
    return kept


def file_table(root: Path) -> dict[str, dict[str, Any]]:
    """``{relative path: {"sha256", "bytes"}}`` of every file under ``root`` except the manifest and the
    staging marker (writer side: ``root`` is the staging directory).
    """
    return {rel: file_entry(p) for rel, p in sorted(_walk(root, staging=True)) if rel != PACKAGE_MANIFEST}
