"""TensorRT engines in a package: ``PKG/NAME_trt/`` (``platform: "tensorrt_plan"``, plans by compute capability).

Where the engines come from. ``seqdeploy compile`` builds an engine on the target GPU from the **bundle's**
graph (``model.onnx``, or ``model.fp16.onnx`` for fp16), proves it against PyTorch there, and records it in
the bundle manifest's ``engines`` list (``engine.target.engine_entry``: file, compute capability, TensorRT
version, profiles, ``onnx_sha256``, ``plan_sha256``, the proof). Engines cannot be built or run here (no
TensorRT, no GPU), so the package carries those proven engines as they are.

Layout: an engine keeps the bundle's layout. Its inputs may be time-major (``input [T, B]``) and its states
always have the batch on axis 1 (``h0 [L·D, B, H]``). Triton batches on axis 0 of every tensor when
``max_batch_size > 0`` — a seq-first model served batched gives wrong answers (server#808) — so the TensorRT
model is written with ``max_batch_size: 0``: ``dims`` are the full shapes (``-1`` for the batch and
sequence axes), Triton does not batch or merge requests, and each request must carry whole tensors in the
bundle's layout. (Batching in Triton would need an engine built from the batch-first
``NAME/1/model.onnx`` of the package, on the target GPU; this version does not build engines.)

What the package records and checks (``seqdeploy.json`` ``trt.models``): the model it computes (``for_model``),
its signature in the bundle's layout, every engine (its file under ``NAME_trt/1/``, compute capability,
TensorRT version, profiles, ``plan_sha256``, ``onnx_sha256``, the compile proof) and the ranges every
engine's profile covers. ``package --check`` cross-checks ``config.pbtxt`` (parsed with Triton's protobuf)
against that record: names, dtypes, full dims, ``max_batch_size: 0``, no scheduler or warmup,
``cc_model_filenames`` keys = the recorded compute capabilities, each value the engine file whose sha256 is
the recorded ``plan_sha256``, and the profiles covering the recorded ranges.

Engines of a bundle that are **not** packaged (each with a warning): a stale one (built from a graph file
whose sha256 is no longer the bundle's), one whose recorded ``plan_sha256`` differs from the bundle's file
table, one without a recorded proof, an fp16 one when the fp16 variant is not packaged, and a second
engine for the same compute capability (``cc_model_filenames`` maps one file per capability: the newest
TensorRT version is kept).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from seqdeploy.package.triton import DTYPE_TO_TRITON, Enum, ScalarMap, dtype_name, read_model_config
from seqdeploy.spec import BATCH, SEQ, IOSpec, TensorSpec

__all__ = [
    "TRT_PLATFORM",
    "PackagedEngine",
    "check_trt_config",
    "engines_to_package",
    "profile_ranges",
    "trt_config",
    "trt_model_name",
]

TRT_PLATFORM = "tensorrt_plan"
_CC = re.compile(r"^\d+\.\d+$")


def trt_model_name(name: str, precision: str) -> str:
    """``NAME_trt`` (fp32 engines) or ``NAME_trt_fp16``."""
    return f"{name}_trt" if precision == "fp32" else f"{name}_trt_{precision}"


@dataclass(frozen=True)
class PackagedEngine:
    """A proven engine of the bundle, chosen for the package.

    Attributes:
        entry: Its record in the bundle manifest's ``engines`` (as ``seqdeploy compile`` wrote it).
        data: The engine file's bytes (read under the bundle's lock; sha256 = ``entry["plan_sha256"]``).
        basename: Its file name inside ``NAME_trt/1/``.
    """

    entry: Mapping[str, Any]
    data: bytes
    basename: str

    @property
    def precision(self) -> str:
        """``fp32`` or ``fp16``."""
        return str(self.entry["precision"])

    @property
    def compute_capability(self) -> str:
        """``"7.5"`` for a T4."""
        return str(self.entry["compute_capability"])


def _version_key(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v))


def engines_to_package(
    manifest: Mapping[str, Any], read: Any, *, precisions: Sequence[str]
) -> tuple[list[PackagedEngine], list[str]]:
    """The bundle's engines that go into the package, and a warning for each one that does not.

    Args:
        manifest: The bundle's manifest (``engines``, ``files``).
        read: ``read(rel) -> bytes`` of a bundle file (the caller holds the bundle's read lock).
        precisions: The precisions whose stateless model is packaged (``fp16`` only with ``--variants fp16``).
    """
    import hashlib

    files = manifest.get("files") or {}
    chosen: dict[tuple[str, str], PackagedEngine] = {}
    warnings: list[str] = []
    for e in manifest.get("engines") or []:
        rel = str(e.get("file", ""))
        precision = str(e.get("precision", ""))
        what = f"TensorRT engine {rel}"
        if e.get("graph") != "sequence":
            warnings.append(f"{what} is not packaged: it was built for the '{e.get('graph')}' graph, not 'sequence'")
            continue
        if precision not in precisions:
            warnings.append(
                f"{what} is not packaged: its {precision} model is not (add --variants fp32,{precision})"
                if precision == "fp16"
                else f"{what} is not packaged: unknown precision {precision!r}"
            )
            continue
        onnx = str(e.get("onnx", ""))
        current = (files.get(onnx) or {}).get("sha256")
        if current is None or e.get("onnx_sha256") != current:
            warnings.append(
                f"{what} is not packaged: it was built from an earlier {onnx} (its onnx_sha256 is not the bundle's "
                f"file); rebuild it on the GPU with 'seqdeploy compile DIR --force'"
            )
            continue
        listed = (files.get(rel) or {}).get("sha256")
        if listed is None or listed != e.get("plan_sha256"):
            warnings.append(f"{what} is not packaged: its recorded plan_sha256 is not the bundle's file table's")
            continue
        verified = e.get("verified") or {}
        if not verified.get("comparisons"):
            warnings.append(f"{what} is not packaged: no proof is recorded for it ('seqdeploy compile' proves it)")
            continue
        if not _CC.match(str(e.get("compute_capability", ""))):
            warnings.append(f"{what} is not packaged: compute capability {e.get('compute_capability')!r}")
            continue
        data = read(rel)
        if hashlib.sha256(data).hexdigest() != e["plan_sha256"]:  # the bundle changed under us: never package it
            warnings.append(f"{what} is not packaged: the file read does not match its recorded sha256")
            continue
        pe = PackagedEngine(dict(e), data, PurePosixPath(rel).name)
        key = (precision, pe.compute_capability)
        other = chosen.get(key)
        if other is not None:
            keep, drop = sorted(
                (other, pe), key=lambda x: _version_key(str(x.entry.get("tensorrt", ""))), reverse=True
            )
            chosen[key] = keep
            warnings.append(
                f"TensorRT engine {drop.entry['file']} is not packaged: {keep.entry['file']} serves compute "
                f"capability {pe.compute_capability} (cc_model_filenames maps one file per capability; the newest "
                "TensorRT version is kept)"
            )
            continue
        chosen[key] = pe
    return sorted(chosen.values(), key=lambda x: (x.precision, _version_key(x.compute_capability))), warnings


def profile_ranges(spec: IOSpec, engines: Sequence[Mapping[str, Any]]) -> dict[str, list[int]]:
    """``{"batch": [lo, hi], "seq": [lo, hi]}`` that every engine's profile covers (their intersection).

    Raises:
        ValueError: A profile lacks an input with a named axis, or the profiles share no batch or seq.
    """
    lo = {BATCH: 1, SEQ: 1}
    hi = {BATCH: 1 << 62, SEQ: 1 << 62}
    for e in engines:
        profile = (e.get("profiles") or [{}])[0]
        for t in spec.inputs:
            named = [(i, d) for i, d in enumerate(t.dims) if isinstance(d, str)]
            if not named:
                continue
            bounds = profile.get(t.name)
            if bounds is None:
                raise ValueError(f"engine {e.get('file')}: its profile has no entry for input '{t.name}'")
            for i, d in named:
                lo[d] = max(lo.get(d, 1), int(bounds["min"][i]))
                hi[d] = min(hi.get(d, 1 << 62), int(bounds["max"][i]))
    out = {axis: [lo[axis], hi[axis]] for axis in (BATCH, SEQ)}
    for axis, (a, b) in out.items():
        if a > b:
            raise ValueError(f"the engines' profiles share no {axis} (intersection {a}..{b})")
    return out


def _dims(t: TensorSpec) -> list[int]:
    return [d if isinstance(d, int) else -1 for d in t.dims]


def _io(t: TensorSpec) -> dict[str, Any]:
    return {"name": t.name, "data_type": Enum(DTYPE_TO_TRITON[t.dtype]), "dims": _dims(t)}


def trt_config(name: str, spec: IOSpec, engines: Sequence[PackagedEngine]) -> dict[str, Any]:
    """The config of a TensorRT model: ``max_batch_size: 0`` and full dims in the bundle's layout (see the module
    docstring), one plan per compute capability, GPU instances, no scheduler, no warmup.
    """
    return {
        "name": name,
        "platform": TRT_PLATFORM,
        "max_batch_size": 0,
        "cc_model_filenames": ScalarMap({e.compute_capability: e.basename for e in engines}),
        "input": [_io(t) for t in spec.inputs],
        "output": [_io(t) for t in spec.outputs],
        "instance_group": [{"count": 1, "kind": Enum("KIND_GPU")}],
    }


def check_trt_config(
    model_dir: Path,
    *,
    spec: IOSpec,
    engines: Sequence[Mapping[str, Any]],
    ranges: Mapping[str, Sequence[int]],
    files: Mapping[str, Mapping[str, Any]],
) -> list[str]:
    """Every problem of ``NAME_trt/config.pbtxt`` against Triton's schema and the manifest's engine record.

    The engine itself cannot be opened without TensorRT; what the manifest records about it (the signature
    and profiles ``seqdeploy compile`` checked against the engine's I/O, and the plan's sha256) is the
    reference, and the file table ties each plan file to its record.

    Args:
        model_dir: The model directory (its name is the model name).
        spec: The recorded signature (the bundle's layout).
        engines: The recorded engines (package-relative ``file``).
        ranges: The recorded ``{"batch": [lo, hi], "seq": [lo, hi]}``.
        files: The package's verified file table.
    """
    name = model_dir.name
    where = f"{name}/config.pbtxt"
    cfg, unreadable = read_model_config(model_dir)
    if cfg is None:
        return unreadable
    problems: list[str] = []
    add = problems.append
    if cfg.name != name:
        add(f"{where}: name is {cfg.name!r} but the directory is '{name}' (Triton requires them to match)")
    if cfg.platform != TRT_PLATFORM or cfg.backend not in ("", "tensorrt"):
        add(f"{where}: platform {cfg.platform!r} / backend {cfg.backend!r}, expected platform '{TRT_PLATFORM}'")
    if cfg.max_batch_size != 0:
        add(
            f"{where}: max_batch_size is {cfg.max_batch_size}, must be 0: the engine keeps the bundle's layout "
            "(time-major input or states with the batch on axis 1), which Triton's batching on axis 0 would read "
            "wrongly (server#808)"
        )
    if cfg.WhichOneof("scheduling_choice") is not None:
        add(f"{where}: has {cfg.WhichOneof('scheduling_choice')}; a max_batch_size 0 model is not batched")
    if cfg.model_warmup:
        add(f"{where}: model_warmup is not written for engines (a failed warmup would keep the model from loading)")
    versions = sorted(p.name for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())
    if versions != ["1"]:
        add(f"{where}: expected exactly one version directory '1', found {versions}")
    for side, tensors, listed in (("input", spec.inputs, cfg.input), ("output", spec.outputs, cfg.output)):
        got = {t.name: t for t in listed}
        if sorted(got) != sorted(t.name for t in tensors) or len(got) != len(listed):
            add(f"{where}: {side}s {[t.name for t in listed]} differ from the engine's {[t.name for t in tensors]}")
        for t in tensors:
            c = got.get(t.name)
            if c is None:
                continue
            if dtype_name(c.data_type) != DTYPE_TO_TRITON[t.dtype]:
                add(f"{where}: {side} '{t.name}' is {dtype_name(c.data_type)}, the engine's is {t.dtype}")
            if list(c.dims) != _dims(t) or c.HasField("reshape"):
                add(f"{where}: {side} '{t.name}' dims {list(c.dims)}, the engine's full shape is {_dims(t)}")
    by_cc = {str(e.get("compute_capability")): e for e in engines}
    cc_files = dict(cfg.cc_model_filenames)
    if sorted(cc_files) != sorted(by_cc):
        add(
            f"{where}: cc_model_filenames keys {sorted(cc_files)} are not the compute capabilities the engines were "
            f"built for {sorted(by_cc)} (a plan only runs on the compute capability that built it)"
        )
    for cc, fname in cc_files.items():
        e = by_cc.get(cc)
        rel = f"{name}/1/{fname}"
        if e is None:
            continue
        if str(e.get("file")) != rel:
            add(f"{where}: cc_model_filenames['{cc}'] is {fname!r}, the engine for {cc} is {e.get('file')}")
        entry = files.get(rel)
        if entry is None:
            add(f"{where}: cc_model_filenames['{cc}'] names {rel}, which is not a file of the package")
        elif entry.get("sha256") != e.get("plan_sha256"):
            add(f"{where}: {rel} is not the recorded engine (its sha256 differs from the engine's plan_sha256)")
    if cfg.default_model_filename and f"{name}/1/{cfg.default_model_filename}" not in files:
        add(f"{where}: default_model_filename {cfg.default_model_filename!r} is not a file of the package")
    for e in engines:
        if not _CC.match(str(e.get("compute_capability", ""))):
            add(f"{where}: engine {e.get('file')} has compute capability {e.get('compute_capability')!r}")
        try:
            covered = profile_ranges(spec, [e])
        except ValueError as exc:
            add(f"{where}: {exc}")
            continue
        for axis in (BATCH, SEQ):
            lo, hi = (int(x) for x in ranges[axis])
            if covered[axis][0] > lo or covered[axis][1] < hi:
                add(
                    f"{where}: engine {e.get('file')}'s profile covers {axis} {covered[axis]}, the recorded range is "
                    f"[{lo}, {hi}]"
                )
    return problems
