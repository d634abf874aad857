"""``ort-trt`` / ``ort-trt-fp16``: ONNX Runtime's TensorRT provider, configured from the TensorRT plan.

So that ``ort-trt`` and ``trt`` build the same network, the provider gets the plan's settings: explicit
profiles for **every** dynamic input (the recorded plan's when it was made for this graph file, else the
same :func:`~seqdeploy.engine.plan.profile_for` over the config's ``[shapes]``), the workspace and the
optimization level; fp16 runs ``model.fp16.onnx``. Its engine cache goes to ``DIR/cache/ort-trt/...``:
inside the bundle, never listed in ``files`` nor read as a bundle file (:data:`ORT_TRT_CACHE_DIR`).

ORT's provider builds **weakly typed** networks (no strongly typed option), so ``ort-trt-fp16`` passes
``trt_fp16_enable``; the native ``trt-fp16`` builds the same file strongly typed. The numbers can differ.
"""

from __future__ import annotations

import json
from importlib import metadata
from typing import Any

from seqdeploy.backends.base import BaseRunner
from seqdeploy.engine.plan import KIT_DIR, PLAN_FILE, axis_bounds, profile_for
from seqdeploy.engine.target import ort_trt_cache_dir, ort_trt_options
from seqdeploy.errors import UsageError
from seqdeploy.manifest import Bundle, sha256

__all__ = ["installed_version", "make_ort_trt", "plan_settings"]

_DEFAULT_BUILDER = {"workspace_gib": 2, "optimization_level": 3}


def installed_version(*distributions: str) -> str | None:
    """The version of the first installed distribution among ``distributions`` (no import), else ``None``."""
    for dist in distributions:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def plan_settings(bundle: Bundle, graph: str, onnx_file: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """``(profile, builder settings, source)`` for the TensorRT provider on ``onnx_file``.

    The recorded plan (``DIR/trt/plan.json``) is used when it was made for this graph and this file at
    its current sha256 (``source`` = ``"plan"``); otherwise the profile is derived exactly as the plan
    derives it, from the IOSpec and the config's ``[shapes]`` (``source`` = ``"config"``).
    """
    rec = bundle.manifest.get("trt") or {}
    if rec.get("onnx") == onnx_file and rec.get("graph", "sequence") == graph:
        plan = json.loads(bundle.file(f"{KIT_DIR}/{PLAN_FILE}").read_text(encoding="utf-8"))
        if plan.get("onnx_sha256") == sha256(bundle.file(onnx_file)):
            return dict(plan["profiles"][0]), dict(plan["builder"]), "plan"
    cfg = bundle.config
    bounds = axis_bounds(cfg.shapes.batch, cfg.shapes.seq)
    return profile_for(bundle.specs[graph], bounds), dict(_DEFAULT_BUILDER), "config"


def _graph_file(bundle: Bundle, name: str, graph: str, precision: str) -> str:
    if precision == "fp32":
        return str(bundle.manifest["graphs"][graph]["file"])
    variant = bundle.variant("fp16")
    if variant is None:
        raise UsageError(
            f"backend '{name}' runs the fp16 variant, which {bundle.path} does not have; create it with "
            f"'seqdeploy optimize {bundle.path} --fp16'"
        )
    files: dict[str, str] = variant.get("graphs") or {variant["graph"]: variant["file"]}
    if graph not in files:
        raise UsageError(
            f"backend '{name}': the fp16 variant of {bundle.path} has no '{graph}' graph (it has {sorted(files)}); "
            f"re-create it with 'seqdeploy optimize {bundle.path} --fp16'"
        )
    return files[graph]


def make_ort_trt(name: str, bundle: Bundle, graph: str, threads: int | None, *, precision: str) -> BaseRunner:
    """An ``OrtRunner`` on the TensorRT provider with the plan's options (not yet entered)."""
    from seqdeploy.backends.onnxrt import OrtRunner

    onnx_file = _graph_file(bundle, name, graph, precision)
    profile, builder, _ = plan_settings(bundle, graph, onnx_file)
    path = bundle.file(onnx_file)
    cache = ort_trt_cache_dir(
        precision,
        sha256(path),
        installed_version("onnxruntime-gpu", "onnxruntime") or "unknown",
        installed_version("tensorrt", "tensorrt-cu12", "tensorrt-cu13", "tensorrt-cu12-libs", "tensorrt-cu13-libs"),
    )
    opts = ort_trt_options(
        profile,
        precision=precision,
        cache_path=str(bundle.path / cache),
        workspace_gib=int(builder.get("workspace_gib", 2)),
        opt_level=int(builder.get("optimization_level", 3)),
    )
    return OrtRunner(
        name,
        bundle.specs[graph],
        path,
        device="trt",
        threads=threads,
        provider_options=opts,
        cache_dir=bundle.path / cache,
    )
