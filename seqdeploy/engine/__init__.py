"""TensorRT engines: the build plan and its hand-off kit (CPU side), and the build on the target GPU.

* :mod:`~seqdeploy.engine.plan` — pure decisions: profiles for every dynamic input from the IOSpec,
  precision → ONNX file, TensorRT lines and their flags, tolerances, kit cases, script rendering.
* :mod:`~seqdeploy.engine.target` — pure decisions on the target: the TensorRT line and its one
  10.x/11.x branch, engine names, the manifest entry, compatibility, engine selection, proof sweep.
* :mod:`~seqdeploy.engine.kit` — inputs and golden outputs in Polygraphy's own JSON formats.
* :mod:`~seqdeploy.engine.compile` — :func:`plan_only` writes ``DIR/trt/``; :func:`compile_engine`
  builds, proves and records an engine.
* :mod:`~seqdeploy.engine.build` and :mod:`~seqdeploy.engine._trt` — the only TensorRT calls of the
  builder, typed against TensorRT's API; TensorRT is imported on first use only.
"""
