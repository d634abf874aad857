"""Lint targets: what consumes a graph, and the facts about that consumer the rules depend on.

Facts from ``../shared/docs/tensorrt-notes.md`` (onnx-tensorrt operator tables, 10.x vs 11.x): the
TensorRT 10.0/10.1 parser table covers opsets 9-20, the 11.2 table 9-24; TensorRT 11 networks are
always strongly typed, and seqdeploy builds fp16 engines on 10.x strongly typed too (the precision
comes from ``model.fp16.onnx``), so both TensorRT targets need type-consistent fp16 graphs.
"""

from __future__ import annotations

from dataclasses import dataclass

from seqdeploy.errors import UsageError

__all__ = ["DEFAULT_TARGET", "TARGETS", "Target", "get_target"]


@dataclass(frozen=True, slots=True)
class Target:
    """A consumer of ONNX graphs.

    Attributes:
        name: ``ort``, ``trt10`` or ``trt11``.
        description: One line for ``--help`` and reports.
        tensorrt: Whether TensorRT's ONNX parser reads the graph (enables the TensorRT rules).
        opsets: Inclusive range of default-domain opsets the parser has importers for (``None``: any).
        line: The TensorRT release line (``"10.x"``), or ``None``.
    """

    name: str
    description: str
    tensorrt: bool
    opsets: tuple[int, int] | None
    line: str | None


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("ort", "ONNX Runtime (the export's own checks)", False, None, None),
        Target("trt10", "TensorRT 10.x ONNX parser (opsets 9-20; fp16 built strongly typed)", True, (9, 20), "10.x"),
        Target("trt11", "TensorRT 11.x ONNX parser (opsets 9-24; always strongly typed)", True, (9, 24), "11.x"),
    )
}
DEFAULT_TARGET = "trt10"


def get_target(name: str) -> Target:
    """The target called ``name``.

    Raises:
        UsageError: Unknown name; the message lists the known ones.
    """
    try:
        return TARGETS[name]
    except KeyError:
        raise UsageError(f"unknown lint target '{name}'; known targets: {', '.join(TARGETS)}") from None
