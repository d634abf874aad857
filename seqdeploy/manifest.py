"""The export directory's ``manifest.json``: what was exported, from what, with which versions.

An export directory (a *bundle*) holds ``model.onnx``, ``model.pt`` (the exported state_dict),
optionally ``step.onnx`` and variants such as ``model.int8.onnx``, and ``manifest.json``. Its schema is
documented in ``docs/manifest.md``; ``schema_version`` changes only when a field changes meaning.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import platform
import re
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from seqdeploy.config import PipelineConfig
from seqdeploy.config_io import config_from_dict
from seqdeploy.errors import ConfigError, IntegrityError, UsageError
from seqdeploy.spec import IOSpec

__all__ = [
    "DIGEST_FIELD",
    "MANIFEST",
    "SCHEMA_VERSION",
    "Bundle",
    "BundleChanged",
    "Problem",
    "file_entry",
    "inside",
    "library_versions",
    "manifest_digest",
    "referenced_files",
    "sha256",
    "validate_manifest",
    "write_json",
    "write_manifest",
]

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
    if "seqdeploy" in out and out["seqdeploy"] is None:
        # Run from a checkout on sys.path (no pip install, as on a GPU machine that cannot reach PyPI): the
        # source still knows its version, and a report that says "None" hides which code produced it.
        from seqdeploy import __version__

        out["seqdeploy"] = __version__
    return out


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (see :func:`seqdeploy._atomic.write_atomic`): a reader never sees half a file."""
    from seqdeploy._atomic import write_atomic

    write_atomic(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


DIGEST_FIELD = "manifest_sha256"
"""The manifest's own checksum: sha256 of its canonical JSON without this field. A hand edit (a flipped
``batch_first``, a widened ``value_range``, a deleted ``files`` table) no longer matches it."""


def manifest_digest(manifest: dict[str, Any]) -> str:
    """sha256 of the canonical JSON (sorted keys, no spaces) of ``manifest`` without :data:`DIGEST_FIELD`."""
    body = {k: v for k, v in manifest.items() if k != DIGEST_FIELD}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """Stamp ``manifest`` with its digest and write it atomically to ``path`` (a bundle's manifest.json)."""
    manifest[DIGEST_FIELD] = manifest_digest(manifest)
    write_json(path, manifest)


_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_DTYPES = ("float32", "float16", "int64", "int32")


class _Schema:
    """Collects every problem of a manifest (path-named), so one error lists them all."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def need(self, data: Any, key: str, kind: type | tuple[type, ...], where: str, *, optional: bool = False) -> Any:
        if not isinstance(data, dict) or key not in data:
            if not optional:
                self.problems.append(f"{where}.{key}: missing")
            return None
        value = data[key]
        if value is None and optional:
            return None
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            self.problems.append(f"{where}.{key}: expected {_kind_name(kind)}, got {value!r}")
            return None
        if not isinstance(value, kind):
            self.problems.append(f"{where}.{key}: expected {_kind_name(kind)}, got {type(value).__name__}")
            return None
        return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {dict: "an object", list: "an array", str: "a string", int: "an integer", float: "a number"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _check_tensor(sc: _Schema, t: Any, where: str) -> None:
    if not isinstance(t, dict):
        sc.problems.append(f"{where}: expected an object, got {type(t).__name__}")
        return
    name = sc.need(t, "name", str, where)
    if name is not None and not name:
        sc.problems.append(f"{where}.name: empty")
    dtype = sc.need(t, "dtype", str, where)
    if dtype is not None and dtype not in _DTYPES:
        sc.problems.append(f"{where}.dtype: expected one of {', '.join(_DTYPES)}, got {dtype!r}")
    dims = sc.need(t, "dims", list, where)
    for i, d in enumerate(dims or []):
        if isinstance(d, bool) or not (
            (isinstance(d, int) and d >= 1) or (isinstance(d, str) and re.fullmatch(r"[A-Za-z_][\w.]*", d))
        ):
            sc.problems.append(f"{where}.dims[{i}]: expected an int >= 1 or an axis name, got {d!r}")
    vr = sc.need(t, "value_range", list, where, optional=True)
    if vr is not None:
        ok = (
            len(vr) == 2
            and isinstance(vr[0], int)
            and not isinstance(vr[0], bool)
            and ((isinstance(vr[1], int) and not isinstance(vr[1], bool) and vr[1] >= vr[0]) or isinstance(vr[1], str))
        )
        if not ok:
            sc.problems.append(f"{where}.value_range: expected [low, high] with low <= high, got {vr!r}")


def _check_spec(sc: _Schema, spec: Any, where: str) -> None:
    if not isinstance(spec, dict):
        sc.problems.append(f"{where}: expected an object")
        return
    kind = sc.need(spec, "kind", str, where, optional=True)
    if kind is not None and kind not in ("sequence", "step"):
        sc.problems.append(f"{where}.kind: expected 'sequence' or 'step', got {kind!r}")
    names: list[str] = []
    for side in ("inputs", "outputs"):
        tensors = sc.need(spec, side, list, where)
        if tensors is not None and not tensors:
            sc.problems.append(f"{where}.{side}: empty")
        for i, t in enumerate(tensors or []):
            _check_tensor(sc, t, f"{where}.{side}[{i}]")
            if isinstance(t, dict) and isinstance(t.get("name"), str):
                names.append(t["name"])
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        sc.problems.append(f"{where}: duplicate tensor names {dupes}")
    by_name: dict[str, Any] = {}
    for side in ("inputs", "outputs"):
        tensors = spec.get(side)
        for t in tensors if isinstance(tensors, list) else []:
            if isinstance(t, dict) and isinstance(t.get("name"), str):
                by_name[t["name"]] = t
    for i, pair in enumerate(sc.need(spec, "state", list, where, optional=True) or []):
        w = f"{where}.state[{i}]"
        if not isinstance(pair, dict):
            sc.problems.append(f"{w}: expected an object")
            continue
        src, dst = sc.need(pair, "input", str, w), sc.need(pair, "output", str, w)
        if src is not None and dst is not None:
            if src not in by_name or dst not in by_name:
                sc.problems.append(f"{w}: '{src}' -> '{dst}' names a tensor the graph does not have")
            elif by_name[src].get("dims") != by_name[dst].get("dims"):
                sc.problems.append(f"{w}: '{src}' and '{dst}' have different dims")


def validate_manifest(manifest: Any) -> list[str]:
    """Every schema problem of a bundle manifest (``docs/manifest.md``), as ``field: what is wrong``."""
    sc = _Schema()
    if not isinstance(manifest, dict):
        return [f"expected a JSON object, got {type(manifest).__name__}"]
    where = "manifest"
    sc.need(manifest, "config", dict, where)
    graphs = sc.need(manifest, "graphs", dict, where)
    if graphs is not None and "sequence" not in graphs:
        sc.problems.append(f"{where}.graphs: has no 'sequence' graph (graphs: {sorted(graphs)})")
    for name, g in (graphs or {}).items():
        w = f"{where}.graphs.{name}"
        if not isinstance(g, dict):
            sc.problems.append(f"{w}: expected an object")
            continue
        sc.need(g, "file", str, w)
        _check_spec(sc, sc.need(g, "spec", dict, w), f"{w}.spec")
    sc.need(manifest, "weights", str, where)
    files = sc.need(manifest, "files", dict, where)
    for name, entry in (files or {}).items():
        w = f"{where}.files[{name!r}]"
        digest = sc.need(entry, "sha256", str, w)
        if digest is not None and not _HEX64.match(digest):
            sc.problems.append(f"{w}.sha256: expected 64 lowercase hex digits")
        size = sc.need(entry, "bytes", int, w)
        if size is not None and size < 0:
            sc.problems.append(f"{w}.bytes: expected >= 0")
    for name, v in (sc.need(manifest, "variants", dict, where, optional=True) or {}).items():
        sc.need(v, "file", str, f"{where}.variants.{name}")
    sc.need(manifest, "self_check", dict, where, optional=True)
    config = manifest.get("config")
    model = config.get("model") if isinstance(config, dict) else None
    if isinstance(model, dict) and model.get("source") == "python":
        _check_user_module(sc, sc.need(manifest, "user_module", dict, where), f"{where}.user_module")
    return sc.problems


def _check_user_module(sc: _Schema, um: Any, where: str) -> None:
    """The ``user_module`` record of a ``source = "python"`` bundle (``docs/manifest.md``)."""
    if um is None:
        return
    sc.need(um, "entry", str, where)
    sc.need(um, "resolved", str, where)
    sc.need(um, "call", str, where)
    sc.need(um, "kwargs", dict, where)
    sc.need(um, "source_file", str, where, optional=True)
    digest = sc.need(um, "source_sha256", str, where, optional=True)
    if digest is not None and not _HEX64.match(digest):
        sc.problems.append(f"{where}.source_sha256: expected 64 lowercase hex digits")
    files = sc.need(um, "source_files", dict, where, optional=True)
    for path, file_digest in (files or {}).items():
        if not (isinstance(file_digest, str) and _HEX64.match(file_digest)):
            sc.problems.append(f"{where}.source_files[{path!r}]: expected 64 lowercase hex digits")
    frozen = sc.need(um, "tracer_warnings", list, where, optional=True)
    for i, line in enumerate(frozen or []):
        if not isinstance(line, str):
            sc.problems.append(f"{where}.tracer_warnings[{i}]: expected a string, got {type(line).__name__}")
    sc.need(um, "bidirectional", bool, where)
    sc.need(um, "recurrent", list, where)
    flops = sc.need(um, "flops_per_token", int, where)
    if flops is not None and flops < 0:
        sc.problems.append(f"{where}.flops_per_token: expected >= 0")


def referenced_files(manifest: dict[str, Any]) -> list[str]:
    """Every file the manifest points at (graphs, weights, variants, external data, engines, kits).

    Rule: under ``graphs``, ``variants``, ``engines`` and ``trt``, the value of any key named ``file`` (a
    string), ``files``/``external_data`` (a list of strings), and the string values of a ``graphs``
    mapping (a variant's ``{"sequence": "model.fp16.onnx", ...}``); plus ``weights``. Writers that add a
    kind of artifact follow this rule, so the integrity check covers it without knowing it.
    """
    out: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "file" and isinstance(v, str):
                    out.append(v)
                elif k in ("external_data", "files") and isinstance(v, list):
                    out.extend(x for x in v if isinstance(x, str))
                elif k == "graphs" and isinstance(v, dict):
                    # A graph name -> file mapping (variants): its strings are files a backend opens.
                    out.extend(x for x in v.values() if isinstance(x, str))
                    walk({g: x for g, x in v.items() if not isinstance(x, str)})
                elif k != "spec":
                    walk(v)
        elif isinstance(node, list):
            for x in node:
                walk(x)

    for section in ("graphs", "variants", "engines", "trt"):
        walk(manifest.get(section))
    if isinstance(manifest.get("weights"), str):
        out.append(manifest["weights"])
    return list(dict.fromkeys(out))


def inside(root: Path, rel: str) -> Path | None:
    """``root/rel`` if ``rel`` is a plain relative path that stays inside ``root`` (symlinks resolved)."""
    pure = Path(rel)
    if not rel or pure.is_absolute() or ".." in pure.parts or "\\" in rel:
        return None
    full = root / pure
    try:
        if not full.resolve().is_relative_to(root.resolve()):
            return None
    except (OSError, RuntimeError):
        return None
    return full


def _not_json(name: str) -> Any:
    """``NaN``/``Infinity`` are Python's JSON extensions, never in a manifest seqdeploy wrote (it writes with
    ``allow_nan=False``): refuse them at parse time, as malformed JSON.
    """
    raise ValueError(f"{name} is not a JSON number (a manifest written by seqdeploy never holds one)")


class BundleChanged(IntegrityError):
    """The bundle was swapped or updated between loading it and reading its files: load it again."""


def _listed(manifest: dict[str, Any]) -> list[str]:
    """The ``files`` table's names, in a fixed order (what the identity covers)."""
    files = manifest.get("files")
    return sorted(files) if isinstance(files, dict) else []


def _file_stat(full: Path | None) -> tuple[int, int, int]:
    """(inode, mtime_ns, size) of a bundle file, never following a symlink; zeros for a missing one."""
    if full is None:
        return (0, 0, 0)
    try:
        st = os.lstat(full)
    except OSError:
        return (0, 0, 0)
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _identity(path: Path, listed: list[str] | None = None) -> tuple[int, ...]:
    """(device, inode of the directory, inode/mtime/size of the manifest) and, for every listed file, its
    (inode, mtime_ns, size): a swap, a commit, or a file rewritten in place after it was hashed all
    change it.
    """
    d = os.stat(path)
    m = os.stat(path / MANIFEST)
    out = [d.st_dev, d.st_ino, m.st_ino, m.st_mtime_ns, m.st_size]
    for rel in listed or ():
        out.extend(_file_stat(inside(path, rel)))
    return tuple(out)


# sha256 of files already hashed in this process, by (device, inode, size, mtime_ns, ctime_ns): a command
# that loads one bundle several times (compile: to plan, to build, to commit) hashes each file once. The
# ctime cannot be set by a user and changes with any write, so an unchanged key means unchanged bytes.
_HASHES: dict[tuple[int, int, int, int, int], str] = {}
_HASHES_MAX = 1024


def _cached_sha256(full: Path, st: os.stat_result) -> str:
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    digest = _HASHES.get(key)
    if digest is None:
        digest = sha256(full)
        if len(_HASHES) >= _HASHES_MAX:
            _HASHES.clear()
        _HASHES[key] = digest
    return digest


@dataclass(frozen=True)
class Problem:
    """One integrity problem of a bundle: ``kind`` decides whether ``--allow-modified`` may accept it.

    Kinds: ``modified`` (a listed file's bytes differ from its sha256) and ``missing`` (a listed file is
    gone) are the files' own state, which ``--allow-modified`` accepts; ``manifest`` (its digest, or specs
    the config would not produce), ``unlisted`` (a referenced file not in ``files``), ``outside`` (a path
    out of the bundle) and ``not-a-file`` (a symlink, a directory, a FIFO) never are: a bundle is never
    read through a manifest that was edited, or outside its directory.
    """

    kind: str
    text: str

    @property
    def acceptable(self) -> bool:
        """Whether ``--allow-modified`` accepts it."""
        return self.kind in ("modified", "missing")


def _is_staging(path: Path) -> bool:
    from seqdeploy._atomic import STAGING_MARKER, is_staging_name

    return (path / STAGING_MARKER).exists() or is_staging_name(path.name)


@dataclass(frozen=True)
class Bundle:
    """A loaded export directory.

    Attributes:
        path: The directory.
        manifest: The parsed ``manifest.json``.
        config: The config the model was built from.
        specs: IOSpec per graph (``"sequence"``, and ``"step"`` when exported with ``--step``).
        modified: Integrity problems accepted with ``allow_modified=True`` (``file: why``); empty otherwise.
    """

    path: Path
    manifest: dict[str, Any]
    config: PipelineConfig
    specs: dict[str, IOSpec]
    modified: tuple[str, ...] = ()
    identity: tuple[int, ...] = ()
    """When loaded from disk: (device, inode of the directory, inode/mtime/size of the manifest) and the
    (inode, mtime_ns, size) of every listed file as it was hashed; empty for an in-memory bundle."""

    @classmethod
    def load(cls, path: str | Path, *, allow_modified: bool = False) -> Bundle:
        """Read and check ``DIR/manifest.json`` and every file it lists.

        Checks: the manifest's schema and its own digest; every referenced file (graphs, weights,
        variants, external data, engines…) is listed in ``files`` and stays inside the directory; every
        listed file exists and matches its sha256; the specs agree with the config. Runs under the
        bundle's shared read lock, so a concurrent ``--force`` or commit is seen before or after, never
        in between.

        Args:
            path: The export directory.
            allow_modified: Accept files that differ from the manifest (recorded in :attr:`modified`);
                schema problems and paths outside the bundle are still refused.

        Raises:
            UsageError: ``path`` is not an export directory (or is a staging directory), or its manifest
                is unreadable or malformed.
            IntegrityError: A file is missing, unlisted, outside the bundle or differs from its sha256, or
                the manifest was edited by hand; the message names the file.
        """
        from seqdeploy._atomic import reading

        path = Path(path)
        if path.is_dir() and _is_staging(path):
            raise UsageError(
                f"{path}: is an unfinished staging directory of an interrupted seqdeploy run, not an export; "
                "it is removed by the next run that writes the same target. Re-export"
            )
        mpath = path / MANIFEST
        if not mpath.is_file():
            raise UsageError(
                f"{path}: not a seqdeploy export directory (no {MANIFEST}); create one with "
                f"'seqdeploy export CONFIG -o {path}'"
            )
        with reading(path):
            return cls._load_locked(path, mpath, allow_modified=allow_modified)

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Hold the bundle's shared read lock while runners load its files, checking before and after
        that it is still the bundle that was loaded: a ``--force`` swap or a commit in between raises
        :class:`BundleChanged` (before any work), and the caller loads it again — a reader never mixes two
        bundles.
        """
        from seqdeploy._atomic import fault_point, reading

        if not self.identity:  # an in-memory bundle (an export checking itself): nothing can swap it
            yield
            return
        fault_point("bundle:loaded")  # loaded and checked; its runners are not loaded yet
        with reading(self.path):
            self._check_unchanged()
            fault_point("bundle:checked")
            # Again once the files are read: a writer that does not share our lock directory (another user,
            # another TMPDIR) is not held off by the lock, and may have swapped the bundle meanwhile — and
            # a runner that failed on a mix of two bundles ("model.pt does not fit") is that, not its error.
            try:
                yield
            except Exception:
                self._check_unchanged()
                raise
            self._check_unchanged()
        fault_point("bundle:runners-loaded")  # the block (loading runners) is done; the work starts

    def _check_unchanged(self) -> None:
        try:
            same = _identity(self.path, _listed(self.manifest)) == self.identity
        except OSError:  # moved aside mid-swap, or deleted
            same = False
        if not same:
            raise BundleChanged(
                f"{self.path}: was replaced or updated (or one of its files rewritten) by another process while "
                "this command was starting; run it again"
            )

    @classmethod
    def from_manifest(cls, path: Path, manifest: dict[str, Any]) -> Bundle:
        """A bundle from a manifest held in memory (an export checking itself before it is committed).

        The schema is validated; file integrity is not (the caller has just written the files).
        """
        return cls._from_dict(path, path / MANIFEST, manifest)

    @classmethod
    def _load_locked(cls, path: Path, mpath: Path, *, allow_modified: bool) -> Bundle:
        try:
            base = _identity(path)  # before the manifest is read: a commit after this changes it
            manifest = json.loads(mpath.read_text(encoding="utf-8"), parse_constant=_not_json)
        except (OSError, ValueError) as exc:
            raise UsageError(f"{mpath}: unreadable manifest: {exc}") from None
        bundle = cls._from_dict(path, mpath, manifest)
        problems, stats = bundle._problems()
        bundle = dataclasses.replace(bundle, identity=base + tuple(x for st in stats for x in st))
        if problems:
            fatal = [p for p in problems if not p.acceptable]
            if fatal or not allow_modified:
                if not fatal:
                    advice = "Re-export it, or pass --allow-modified to use the files as they are now"
                elif any(p.kind == "outside" for p in fatal):
                    advice = "A bundle never reads files outside its own directory; re-export it"
                else:
                    advice = (
                        "Its manifest was changed after seqdeploy wrote it (or points at files it does not list): "
                        "re-export it. --allow-modified accepts files that differ from the manifest, never an "
                        "edited manifest"
                    )
                raise IntegrityError(
                    f"{path}: does not match its manifest:\n  " + "\n  ".join(p.text for p in problems) + "\n" + advice
                )
            bundle = dataclasses.replace(bundle, modified=tuple(p.text for p in problems))
        return bundle

    @classmethod
    def _from_dict(cls, path: Path, mpath: Path, manifest: Any) -> Bundle:
        if not isinstance(manifest, dict):
            raise UsageError(f"{mpath}: malformed manifest (expected a JSON object, got {type(manifest).__name__})")
        version = manifest.get("schema_version")
        if version != SCHEMA_VERSION:
            raise UsageError(
                f"{mpath}: schema_version {version!r} is not supported by this seqdeploy "
                f"(expects {SCHEMA_VERSION}); re-export with this version"
            )
        problems = validate_manifest(manifest)
        if problems:
            raise UsageError(
                f"{mpath}: malformed manifest ({len(problems)} problem(s)):\n  "
                + "\n  ".join(problems[:20])
                + "\nRe-export the bundle; manifests are written by seqdeploy, not by hand"
            )
        try:
            config = config_from_dict(manifest["config"], base_dir=str(path))
        except ConfigError as exc:
            raise UsageError(f"{mpath}: malformed manifest: config: {exc}") from None
        specs = {k: IOSpec.from_dict(g["spec"]) for k, g in manifest["graphs"].items()}
        return cls(path=path, manifest=manifest, config=config, specs=specs)

    def integrity_problems(self) -> list[str]:
        """Every integrity problem, as ``file: why`` (empty: the bundle is exactly what was exported)."""
        return [p.text for p in self._problems()[0]]

    def _problems(self) -> tuple[list[Problem], list[tuple[int, int, int]]]:
        """Every integrity problem, and the (inode, mtime_ns, size) of each listed file (in :func:`_listed`
        order) as it was when it was hashed — what :attr:`identity` records.
        """
        m = self.manifest
        problems: list[Problem] = []
        digest = m.get(DIGEST_FIELD)
        if digest is None:
            problems.append(
                Problem("manifest", f"{MANIFEST}: has no {DIGEST_FIELD} (written by hand or by an older seqdeploy)")
            )
        elif digest != manifest_digest(m):
            problems.append(
                Problem("manifest", f"{MANIFEST}: was edited after seqdeploy wrote it ({DIGEST_FIELD} does not match)")
            )
        files: dict[str, Any] = m["files"]
        for rel in referenced_files(m):
            if inside(self.path, rel) is None:
                problems.append(Problem("outside", f"{rel}: points outside the bundle"))
            elif rel not in files:
                problems.append(
                    Problem("unlisted", f"{rel}: is used by the bundle but not listed (with its sha256) in 'files'")
                )
        stats: list[tuple[int, int, int]] = []
        for rel in _listed(m):
            entry = files[rel]
            full = inside(self.path, rel)
            try:
                st = os.lstat(full) if full is not None else None
            except FileNotFoundError:
                st = None
                problems.append(Problem("missing", f"{rel}: is missing"))
            except OSError as exc:
                st = None
                problems.append(Problem("not-a-file", f"{rel}: cannot be read ({exc.strerror or exc})"))
            stats.append((st.st_ino, st.st_mtime_ns, st.st_size) if st is not None else (0, 0, 0))
            if full is None:
                if rel not in referenced_files(m):  # referenced ones were reported above
                    problems.append(Problem("outside", f"{rel}: points outside the bundle"))
            elif st is None:
                continue
            elif not stat.S_ISREG(st.st_mode):
                problems.append(Problem("not-a-file", f"{rel}: is not a regular file (a symlink, a directory...)"))
            elif st.st_size != entry["bytes"] or _cached_sha256(full, st) != entry["sha256"]:
                # The recorded size first: a truncated or grown file is caught without reading it.
                problems.append(Problem("modified", f"{rel}: differs from the manifest (sha256 mismatch)"))
        problems.extend(Problem("manifest", p) for p in self._spec_problems())
        return problems, stats

    def _spec_problems(self) -> list[str]:
        """Specs the config would not produce (a hand-edited dtype, range or layout)."""
        from seqdeploy.spec import spec_from_config

        if self.is_python:
            return self._python_spec_problems()
        out = []
        for kind, spec in self.specs.items():
            if kind not in ("sequence", "step"):
                continue
            try:
                want = spec_from_config(self.config, kind)  # type: ignore[arg-type]
            except Exception:  # noqa: BLE001 - an impossible combination is itself the problem
                want = None
            if want is None or want.to_dict() != spec.to_dict():
                out.append(f"{MANIFEST}: graphs.{kind}.spec does not match the config it was exported from")
        return out

    def _python_spec_problems(self) -> list[str]:
        """A user's module's outputs are found by running it, which loading a bundle never does: what the
        config does determine — the inputs (``[io.inputs]``), the output names (``[io] call``) and the state
        pairs — must match; output dims and dtypes are covered by the manifest's digest.
        """
        from seqdeploy.spec import io_inputs

        out = []
        assert self.config.io is not None
        for kind, spec in self.specs.items():
            where = f"{MANIFEST}: graphs.{kind}.spec"
            if kind != "sequence":
                out.append(f"{where}: a source = 'python' bundle has only a sequence graph")
                continue
            if [t.to_dict() for t in io_inputs(self.config)] != [t.to_dict() for t in spec.inputs]:
                out.append(f"{where}: inputs do not match the [io] declarations it was exported from")
            if self.config.io.signature.output_names != spec.output_names:
                out.append(f"{where}: outputs do not match [io] call = {self.config.io.call!r}")
            pairs = [(p.input, p.output) for p in spec.state]
            if pairs != self.config.io.state_pairs():
                out.append(f"{where}: state pairs do not match [io] (declared or by name)")
        return out

    def file(self, rel: str) -> Path:
        """The path of a bundle file, refusing anything outside the bundle."""
        full = inside(self.path, rel)
        if full is None:
            raise IntegrityError(f"{self.path}: {rel!r} points outside the bundle")
        return full

    def graph_path(self, graph: str = "sequence") -> Path:
        """Path of a graph's ONNX file."""
        try:
            rel = str(self.manifest["graphs"][graph]["file"])
        except KeyError:
            raise UsageError(
                f"{self.path}: has no '{graph}' graph (graphs: {sorted(self.manifest['graphs'])}); "
                + ("re-export with --step" if graph == "step" else "re-export it")
            ) from None
        return self.file(rel)

    def variant(self, name: str) -> dict[str, Any] | None:
        """The manifest entry of a variant (e.g. ``"int8"``), or ``None``."""
        variants: dict[str, dict[str, Any]] = self.manifest.get("variants") or {}
        return variants.get(name)

    @property
    def is_python(self) -> bool:
        """Whether the model is the user's own module (``[model] source = "python"``): the torch reference
        imports it, which runs the user's code.
        """
        return self.config.model.is_python

    @property
    def user_module(self) -> dict[str, Any]:
        """The manifest's ``user_module`` record (``source = "python"`` bundles; empty otherwise)."""
        record = self.manifest.get("user_module")
        return record if isinstance(record, dict) else {}

    @property
    def bidirectional(self) -> bool:
        """Whether the model has a backward direction (its outputs depend on the whole sequence). For a
        user's module: whether export found a bidirectional recurrent submodule in it.
        """
        if self.is_python:
            return bool(self.user_module.get("bidirectional"))
        return self.config.model.bidirectional

    @property
    def flops_per_token(self) -> int:
        """Recurrent FLOPs for one token of one sequence (``seqdeploy.profile.flops``; for a user's module,
        from the recurrent submodules found at export).
        """
        if self.is_python:
            return int(self.user_module.get("flops_per_token") or 0)
        from seqdeploy.profile.flops import recurrent_flops_per_token

        return recurrent_flops_per_token(self.config.model)

    def model_summary(self) -> dict[str, Any]:
        """What reports say about the model (verify and profile ``model`` fields)."""
        m = self.config.model
        if self.is_python:
            um = self.user_module
            layers = um.get("recurrent") or []
            return {
                "source": "python",
                "entry": um.get("resolved"),
                "class": um.get("class"),
                "recurrent": [f"{x.get('name')}: {x.get('type')}" for x in layers if isinstance(x, dict)],
                "layers": sum(int(x.get("num_layers", 1)) for x in layers if isinstance(x, dict)),
                "bidirectional": self.bidirectional,
                "graphs": sorted(self.specs),
                "lengths": self.specs["sequence"].has("lengths"),
                "initial_state": bool(self.specs["sequence"].state),
            }
        return {
            "cell": m.cell,
            "layers": len(m.layer_sizes),
            "hidden": list(m.layer_sizes),
            "bidirectional": m.bidirectional,
            "batch_first": m.batch_first,
            "head": m.head.task,
            "lengths": self.config.export.lengths,
            "initial_state": self.config.export.initial_state,
            "graphs": sorted(self.specs),
        }

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
        return self.file(str(self.manifest["weights"]))

    def tampered_files(self) -> list[str]:
        """Integrity problems accepted at load (``--allow-modified``), as ``file: why``."""
        return list(self.modified)
