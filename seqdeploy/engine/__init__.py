"""TensorRT engines: the build plan and its hand-off kit (CPU side); the build itself comes next.

* :mod:`~seqdeploy.engine.plan` — pure decisions: profiles for every dynamic input from the IOSpec,
  precision → ONNX file, TensorRT lines and their flags, tolerances, kit cases, script rendering.
* :mod:`~seqdeploy.engine.kit` — inputs and golden outputs in Polygraphy's own JSON formats.
* :mod:`~seqdeploy.engine.compile` — :func:`plan_only`: writes and records ``DIR/trt/``.

Nothing here imports TensorRT.
"""
