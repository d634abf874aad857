"""Graph surgery helpers for the planted-bug integration tests.

Each helper edits an exported ONNX file in place (always on a ``copy_export`` copy), keeps the graph
valid for the ONNX checker, and leaves graph input/output names unchanged so that the IOSpec in the
manifest still applies. The bundle's manifest is re-stamped with the new file's sha256 (:func:`restamp`):
the tests model an *exporter* that produced a wrong graph — which the bundle's hashes would cover —
so that what they prove is that verify's comparisons catch it, not the integrity check.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

RECURRENT = ("LSTM", "GRU", "RNN")
# Inputs of the ONNX LSTM/GRU/RNN ops, by position.
X, W, R, B, SEQUENCE_LENS, INITIAL_H, INITIAL_C = range(7)
# ONNX gate order of an LSTM's W/R rows (PyTorch's is i, f, g, o).
LSTM_GATES = {"i": 0, "o": 1, "f": 2, "c": 3}


@contextlib.contextmanager
def edit_onnx(path: Path) -> Iterator[onnx.ModelProto]:
    """Load ``path``, yield the model for editing, check it and write it back."""
    model = onnx.load(str(path))
    yield model
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    if (path.parent / "manifest.json").is_file():
        restamp(path.parent)


def restamp(bundle: Path) -> None:
    """Record every listed file's current sha256 in ``bundle``'s manifest and re-stamp its digest."""
    import json

    from seqdeploy.manifest import file_entry, write_manifest

    manifest = json.loads((bundle / "manifest.json").read_text())
    for name in manifest["files"]:
        manifest["files"][name] = file_entry(bundle / name)
    write_manifest(bundle / "manifest.json", manifest)


def recurrent_nodes(model: onnx.ModelProto) -> list[Any]:
    """Every LSTM/GRU/RNN node of the main graph, in graph order."""
    nodes = [n for n in model.graph.node if n.op_type in RECURRENT]
    assert nodes, f"no recurrent node in {[n.op_type for n in model.graph.node]}"
    return nodes


def recurrent_node(model: onnx.ModelProto) -> Any:
    """The only (or first) recurrent node."""
    return recurrent_nodes(model)[0]


def _initializer(model: onnx.ModelProto, name: str) -> onnx.TensorProto:
    for init in model.graph.initializer:
        if init.name == name:
            return init
    raise AssertionError(f"'{name}' is not an initializer (a weight computed in the graph?)")


def get_weight(model: onnx.ModelProto, node: Any, slot: int) -> np.ndarray:
    """A copy of the initializer feeding input ``slot`` (``W``, ``R``, ``B``) of ``node``."""
    return numpy_helper.to_array(_initializer(model, node.input[slot])).copy()


def set_weight(model: onnx.ModelProto, node: Any, slot: int, value: np.ndarray) -> None:
    """Replace the initializer feeding input ``slot`` of ``node`` (same name, same dtype)."""
    init = _initializer(model, node.input[slot])
    old = numpy_helper.to_array(init)
    assert value.shape == old.shape, (value.shape, old.shape)
    init.CopyFrom(numpy_helper.from_array(value.astype(old.dtype), init.name))


def perturb_weight(path: Path, delta: float = 1e-3, index: tuple[int, ...] = (0, 0, 0)) -> None:
    """Add ``delta`` to one element of the first recurrent node's ``W``."""
    with edit_onnx(path) as model:
        node = recurrent_node(model)
        w = get_weight(model, node, W)
        w[index] += delta
        set_weight(model, node, W, w)


def swap_lstm_gates(path: Path, hidden: int, a: str = "o", b: str = "f") -> None:
    """Swap two gate blocks (``hidden`` rows each) of the LSTM's ``W`` and ``R``."""
    ia, ib = LSTM_GATES[a] * hidden, LSTM_GATES[b] * hidden
    with edit_onnx(path) as model:
        node = recurrent_node(model)
        assert node.op_type == "LSTM"
        for slot in (W, R):
            w = get_weight(model, node, slot)
            block_a = w[:, ia : ia + hidden].copy()
            w[:, ia : ia + hidden] = w[:, ib : ib + hidden]
            w[:, ib : ib + hidden] = block_a
            set_weight(model, node, slot, w)


def drop_input(path: Path, slot: int) -> None:
    """Disconnect an optional input (``sequence_lens``, ``initial_h``) of every recurrent node."""
    with edit_onnx(path) as model:
        for node in recurrent_nodes(model):
            assert len(node.input) > slot and node.input[slot], f"input {slot} of {node.name} is already empty"
            node.input[slot] = ""


def zero_direction(path: Path, direction: int) -> None:
    """Zero ``W``, ``R`` and ``B`` of one direction of the (bidirectional) recurrent node."""
    with edit_onnx(path) as model:
        node = recurrent_node(model)
        for slot in (W, R, B):
            w = get_weight(model, node, slot)
            assert w.shape[0] == 2, f"not bidirectional: {w.shape}"
            w[direction] = 0
            set_weight(model, node, slot, w)


def fix_input_dim(path: Path, name: str, axis: int, value: int) -> None:
    """Bake a graph input's (dynamic) axis to a fixed size."""
    with edit_onnx(path) as model:
        (inp,) = [i for i in model.graph.input if i.name == name]
        dim = inp.type.tensor_type.shape.dim[axis]
        dim.ClearField("dim_param")
        dim.dim_value = value


def _opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _reroute(model: onnx.ModelProto, name: str) -> str:
    """Rename the tensor ``name`` inside the graph so new nodes can produce ``name`` from it."""
    pre = f"{name}__before_surgery"
    for node in model.graph.node:
        for i, o in enumerate(node.output):
            if o == name:
                node.output[i] = pre
        for i, x in enumerate(node.input):
            if x == name:
                node.input[i] = pre
    return pre


def add_constant_to_output(path: Path, value: float, output: str = "output") -> None:
    """``output := output + value`` (graph output name unchanged)."""
    with edit_onnx(path) as model:
        pre = _reroute(model, output)
        const = f"{output}__offset"
        model.graph.node.extend(
            [
                helper.make_node(
                    "Constant", [], [const], value=numpy_helper.from_array(np.array(value, np.float32), const)
                ),
                helper.make_node("Add", [pre, const], [output]),
            ]
        )


def leak_across_batch(path: Path, batch_axis: int, output: str = "output") -> None:
    """``output := output + mean(output over the batch axis)``: each row now depends on the others."""
    with edit_onnx(path) as model:
        pre = _reroute(model, output)
        mean = f"{output}__batch_mean"
        if _opset(model) >= 18:
            axes = f"{output}__axes"
            nodes = [
                helper.make_node(
                    "Constant", [], [axes], value=numpy_helper.from_array(np.array([batch_axis], np.int64), axes)
                ),
                helper.make_node("ReduceMean", [pre, axes], [mean], keepdims=1),
            ]
        else:
            nodes = [helper.make_node("ReduceMean", [pre], [mean], axes=[batch_axis], keepdims=1)]
        model.graph.node.extend([*nodes, helper.make_node("Add", [pre, mean], [output])])
