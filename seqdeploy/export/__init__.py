"""ONNX export: tracing (``onnx``), structural lints (``lint``), the export stage (``stage``)."""
