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

from importlib import metadata
from typing import Any

from seqdeploy.backends.base import BaseRunner
from seqdeploy.engine.plan import DEFAULT_OPT_LEVEL, DEFAULT_WORKSPACE_GIB, axis_bounds, profile_for
from seqdeploy.engine.target import ort_trt_cache_dir, ort_trt_options
from seqdeploy.lint.bundle import variant_path
from seqdeploy.manifest import Bundle, sha256

__all__ = ["installed_version", "make_ort_trt", "plan_settings"]


def installed_version(*distributions: str) -> str | None:
    """The version of the first installed distribution among ``distributions`` (no import), else ``None``."""
    for dist in distributions:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def plan_settings(bundle: Bundle, graph: str, precision: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """``(profile, builder settings, source)`` for the TensorRT provider on ``graph`` at ``precision``.

    The recorded plan (:func:`seqdeploy.engine.compile.recorded_plan`: made for this graph and precision,
    from the graph file at its current sha256) is used when there is one (``source`` = ``"plan"``);
    otherwise the profile is derived exactly as the plan derives it, from the IOSpec and the config's
    ``[shapes]``, with the default builder settings (``source`` = ``"config"``).
    """
    from seqdeploy.engine.compile import recorded_plan

    plan = recorded_plan(bundle, precision, graph)
    if plan is not None:
        return dict(plan["profiles"][0]), dict(plan["builder"]), "plan"
    cfg = bundle.config
    bounds = axis_bounds(cfg.shapes.batch, cfg.shapes.seq)
    builder = {"workspace_gib": DEFAULT_WORKSPACE_GIB, "optimization_level": DEFAULT_OPT_LEVEL}
    return profile_for(bundle.specs[graph], bounds), builder, "config"


def make_ort_trt(name: str, bundle: Bundle, graph: str, threads: int | None, *, precision: str) -> BaseRunner:
    """An ``OrtRunner`` on the TensorRT provider with the plan's options (not yet entered)."""
    from seqdeploy.backends.onnxrt import OrtRunner

    if precision == "fp32":
        path = bundle.graph_path(graph)
    else:
        path = variant_path(bundle, precision, graph, needed_by=f"backend '{name}'")
    profile, builder, _ = plan_settings(bundle, graph, precision)
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
        workspace_gib=int(builder.get("workspace_gib", DEFAULT_WORKSPACE_GIB)),
        opt_level=int(builder.get("optimization_level", DEFAULT_OPT_LEVEL)),
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
