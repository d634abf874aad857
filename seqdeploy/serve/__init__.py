"""``seqdeploy serve``: a package served over Triton's HTTP/REST protocol, in one process.

The same package directory is a Triton model repository, so the same ``tritonclient.http`` code, ``curl``
scripts and ``perf_analyzer`` runs work against ``seqdeploy serve PKG`` here and ``tritonserver
--model-repository=PKG`` in a cluster. Install with ``pip install "seqdeploy[cpu,serve]"`` (Starlette, uvicorn
and tritonclient's config protobuf on top of the runtime). The serving layer builds on
:mod:`seqdeploy.runtime` and never imports torch or onnx (a test runs it with both blocked).

==================  ==============================================================================
module              what
==================  ==============================================================================
``_protocol``       the wire format: JSON and binary tensors, compression, Triton's error messages
``_config``         ``config.pbtxt`` through Triton's protobuf: the config JSON, scheduler settings
``_model``          one served model: request checks in Triton's order, then the runtime's
``_scheduler``      dynamic batching (exact variable-length by padding) and sequence batching
``_metrics``        ``/metrics`` with Triton's metric names
``_app``            the Starlette routes, bearer auth, body limits
``_server``         loading, warmup, binding, uvicorn, graceful SIGTERM
==================  ==============================================================================

::

    from seqdeploy.serve import ServeOptions, serve
    serve(ServeOptions(Path("pkg"), port=8000))      # blocks until SIGTERM / Ctrl-C
"""

from __future__ import annotations

from seqdeploy.serve._server import ServeOptions, load_models, serve

__all__ = ["ServeOptions", "load_models", "serve"]
