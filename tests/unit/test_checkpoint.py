"""Checkpoints that load as trained (seqdeploy/models/checkpoint.py): raw tutorial-style state_dicts load into
zoo models without a rename script, the mapping is reported, and anything ambiguous or partial is refused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from seqdeploy.config_io import config_from_dict
from seqdeploy.errors import CheckpointError
from seqdeploy.models.build import build_model
from seqdeploy.models.checkpoint import load_checkpoint
from tests.tutorial_models import LSTMCellStack, LSTMNet, RNNCellStack, RNNTagger, SentimentNet, trained

B, T = 3, 7


def _zoo(**model: Any) -> Any:
    return config_from_dict({"model": model})


def _x(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _state(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return _x(shape, seed) * 0.5


# Each case: tutorial module, zoo config, expected renames, and (tutorial call, zoo call) on the same data.
Run = Callable[[nn.Module, nn.Module], tuple[list[torch.Tensor], list[torch.Tensor]]]


def _run_rnn_tagger(layers: int) -> Run:
    def run(tut: nn.Module, zoo: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        x, h0 = _x((T, B, 10)), _state((layers, B, 20), 1)
        y, h = tut(x, h0)
        out = zoo(x, h0)
        return [y, h], list(out)

    return run


def _run_lstm(layers: int, dirs: int) -> Run:
    def run(tut: nn.Module, zoo: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        x = _x((T, B, 10))
        h0, c0 = _state((layers * dirs, B, 20), 1), _state((layers * dirs, B, 20), 2)
        y, (h, c) = tut(x, (h0, c0))
        return [y, h, c], list(zoo(x, h0, c0))

    return run


def _run_rnn_cells(sizes: tuple[int, ...], per_layer: bool) -> Run:
    def run(tut: nn.Module, zoo: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        x = _x((T, B, sizes[0]))
        hs = [_state((B, s), 10 + k) for k, s in enumerate(sizes[1:])]
        y, h_out = tut(x, hs)
        if per_layer:
            out = zoo(x, *(h.unsqueeze(0) for h in hs))
            return [y, *(h.unsqueeze(0) for h in h_out)], list(out)
        out = zoo(x, torch.stack(hs))
        return [y, torch.stack(h_out)], list(out)

    return run


def _run_lstm_cells(tut: nn.Module, zoo: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    x = _x((T, B, 10))
    h1, c1, h2, c2 = (_state((B, 20), 20 + k) for k in range(4))
    y, ((a, b), (c, d)) = tut(x, ((h1, c1), (h2, c2)))
    out = zoo(x, torch.stack([h1, h2]), torch.stack([c1, c2]))
    return [y, torch.stack([a, c]), torch.stack([b, d])], list(out)


def _run_sentiment(tut: nn.Module, zoo: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    ids = torch.randint(0, 52, (T, B), generator=torch.Generator().manual_seed(3))
    h0, c0 = _state((2, B, 6), 4), _state((2, B, 6), 5)
    y, (h, c) = tut(ids, (h0, c0))
    return [y, h, c], list(zoo(ids, h0, c0))


TAG = {"task": "tag", "num_classes": 5}
CASES: dict[str, tuple[Callable[[], nn.Module], dict[str, Any], dict[str, str], Run]] = {
    "rnn-1-layer": (
        lambda: RNNTagger(num_layers=1),
        {"cell": "rnn_tanh", "input_size": 10, "hidden_size": 20, "head": TAG},
        {"rnn.": "core.rnn.", "fc.": "head."},
        _run_rnn_tagger(1),
    ),
    "rnn-4-layers": (
        lambda: RNNTagger(num_layers=4),
        {"cell": "rnn_tanh", "input_size": 10, "hidden_size": 20, "num_layers": 4, "head": TAG},
        {"rnn.": "core.rnn.", "fc.": "head."},
        _run_rnn_tagger(4),
    ),
    "rnn-cells-80-50-20-10": (
        lambda: RNNCellStack((80, 50, 20, 10)),
        {"cell": "rnn_cell", "input_size": 80, "hidden_sizes": [50, 20, 10]},
        {"cell_1.": "core.cells.0.", "cell_2.": "core.cells.1.", "cell_3.": "core.cells.2."},
        _run_rnn_cells((80, 50, 20, 10), per_layer=True),
    ),
    "rnn-cells-80x3": (
        lambda: RNNCellStack((80, 80, 80, 80)),
        {"cell": "rnn_cell", "input_size": 80, "hidden_size": 80, "num_layers": 3},
        {"cell_1.": "core.cells.0.", "cell_2.": "core.cells.1.", "cell_3.": "core.cells.2."},
        _run_rnn_cells((80, 80, 80, 80), per_layer=False),
    ),
    "lstm-1-layer": (
        lambda: LSTMNet(num_layers=1),
        {"cell": "lstm", "input_size": 10, "hidden_size": 20, "head": TAG},
        {"lstm.": "core.rnn.", "fc.": "head."},
        _run_lstm(1, 1),
    ),
    "lstm-4-layers": (
        lambda: LSTMNet(num_layers=4),
        {"cell": "lstm", "input_size": 10, "hidden_size": 20, "num_layers": 4, "head": TAG},
        {"lstm.": "core.rnn.", "fc.": "head."},
        _run_lstm(4, 1),
    ),
    "lstm-bidirectional": (
        lambda: LSTMNet(num_layers=2, bidirectional=True),
        {"cell": "lstm", "input_size": 10, "hidden_size": 20, "num_layers": 2, "bidirectional": True, "head": TAG},
        {"lstm.": "core.rnn.", "fc.": "head."},
        _run_lstm(2, 2),
    ),
    "lstm-cells": (
        LSTMCellStack,
        {"cell": "lstm_cell", "input_size": 10, "hidden_size": 20, "num_layers": 2},
        {"cell_1.": "core.cells.0.", "cell_2.": "core.cells.1."},
        _run_lstm_cells,
    ),
    "glove-bilstm-out-last": (
        SentimentNet,
        {
            "cell": "lstm",
            "hidden_size": 6,
            "bidirectional": True,
            "embedding": {"vocab_size": 52, "dim": 10, "padding_idx": 0},
            "head": {"task": "classify", "num_classes": 3, "pooling": "output_last"},
        },
        {"lstm.": "core.rnn.", "fc.": "head."},
        _run_sentiment,
    ),
}


def _wrap(kind: str, sd: dict[str, torch.Tensor]) -> object:
    if kind == "plain":
        return sd
    if kind == "training":
        return {"epoch": 3, "model_state_dict": sd, "optimizer_state_dict": {"lr": 0.1}, "loss": 0.25}
    if kind == "dataparallel":
        return {f"module.{k}": v for k, v in sd.items()}
    if kind == "lightning-like":
        return {"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 1}
    raise AssertionError(kind)


@pytest.mark.parametrize("wrapper", ["plain", "training", "dataparallel", "lightning-like"])
@pytest.mark.parametrize("case", list(CASES))
def test_tutorial_state_dicts_load_into_zoo_models_as_trained(case: str, wrapper: str, tmp_path: Path):
    make, raw, renames, run = CASES[case]
    tut = trained(make())
    path = tmp_path / "ckpt.pt"
    torch.save(_wrap(wrapper, tut.state_dict()), path)
    zoo, _ = build_model(_zoo(**raw))
    result = load_checkpoint(zoo, path)
    assert result.mapping == renames
    assert result.mapping_source == "structure"
    assert result.stripped_prefix == (None if wrapper in ("plain", "training") else "module.")
    assert result.unwrapped == {"training": ("model_state_dict",), "lightning-like": ("state_dict",)}.get(wrapper, ())
    lines = "\n".join(result.describe())
    for a, b in renames.items():
        assert f"'{a}' -> '{b}'" in lines  # the mapping is printed
    with torch.no_grad():
        want, got = run(tut, zoo)
    assert len(want) == len(got)
    for w, g in zip(want, got, strict=True):
        assert w.shape == g.shape
        assert float((w - g).abs().max()) < 1e-5  # loaded as trained: the zoo model computes the tutorial's outputs


def test_exact_names_need_no_mapping(tmp_path: Path):
    zoo, _ = build_model(_zoo(cell="gru", input_size=3, hidden_size=2))
    torch.save(zoo.state_dict(), tmp_path / "c.pt")
    result = load_checkpoint(zoo, tmp_path / "c.pt")
    assert result.mapping == {}
    assert result.mapping_source == "exact"
    assert result.describe() == []


def _ckpt_80x3(tmp_path: Path, order: list[int]) -> tuple[Path, nn.Module]:
    tut = trained(RNNCellStack((80, 80, 80, 80)))
    sd = tut.state_dict()
    shuffled = {k: sd[k] for i in order for k in sd if k.startswith(f"cell_{i}.")}
    path = tmp_path / "c.pt"
    torch.save(shuffled, path)
    return path, tut


def test_equal_cells_saved_out_of_order_are_refused_with_a_proposal(tmp_path: Path):
    path, _ = _ckpt_80x3(tmp_path, [2, 1, 3])
    zoo, _ = build_model(_zoo(cell="rnn_cell", input_size=80, hidden_size=80, num_layers=3))
    before = {k: v.clone() for k, v in zoo.state_dict().items()}
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(zoo, path)
    msg = str(info.value)
    assert "no unique mapping" in msg
    assert "ambiguous: cell_2, cell_1, cell_3 have the same structure" in msg
    assert "proposed mapping by structure" in msg and "'cell_2.' -> 'core.cells.0.'" in msg
    assert "[checkpoint] map" in msg
    assert all(torch.equal(before[k], v) for k, v in zoo.state_dict().items())  # nothing half-loaded


def test_checkpoint_map_overrides_the_structure(tmp_path: Path):
    path, tut = _ckpt_80x3(tmp_path, [2, 1, 3])
    zoo, _ = build_model(_zoo(cell="rnn_cell", input_size=80, hidden_size=80, num_layers=3))
    key_map = {"cell_1.": "core.cells.0.", "cell_2.": "core.cells.1.", "cell_3.": "core.cells.2."}
    result = load_checkpoint(zoo, path, key_map=key_map)
    assert result.mapping_source == "config"
    assert result.mapping == key_map
    assert torch.equal(zoo.state_dict()["core.cells.1.weight_hh"], tut.state_dict()["cell_2.weight_hh"])


def test_a_wrong_checkpoint_map_is_refused_with_what_is_left(tmp_path: Path):
    tut = trained(LSTMNet())
    torch.save(tut.state_dict(), tmp_path / "c.pt")
    zoo, _ = build_model(_zoo(cell="lstm", input_size=10, hidden_size=20, head=TAG))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(zoo, tmp_path / "c.pt", key_map={"lstm.": "core.rnn."})
    msg = str(info.value)
    assert "after [checkpoint] map it still does not fit" in msg
    assert "unexpected keys (2): fc.bias, fc.weight" in msg
    assert "'fc.' -> 'head.'" in msg  # the proposal still helps


def test_extra_tensors_are_refused_not_dropped(tmp_path: Path):
    sd = trained(SentimentNet()).state_dict()
    sd["fc2.weight"] = torch.zeros(3, 12)
    sd["fc2.bias"] = torch.zeros(3)
    torch.save(sd, tmp_path / "c.pt")
    zoo, _ = build_model(_zoo(**CASES["glove-bilstm-out-last"][1]))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(zoo, tmp_path / "c.pt")
    msg = str(info.value)
    assert "left over in the checkpoint" in msg and "fc2.weight [3, 12]" in msg
    assert "'lstm.' -> 'core.rnn.'" in msg


def test_a_missing_head_is_refused(tmp_path: Path):
    sd = {k: v for k, v in trained(LSTMNet()).state_dict().items() if not k.startswith("fc.")}
    torch.save(sd, tmp_path / "c.pt")
    zoo, _ = build_model(_zoo(cell="lstm", input_size=10, hidden_size=20, head=TAG))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(zoo, tmp_path / "c.pt")
    msg = str(info.value)
    assert "left over in the model" in msg and "head.weight [5, 20]" in msg


def test_wrong_sizes_are_refused(tmp_path: Path):
    torch.save(trained(LSTMNet(hidden_size=16)).state_dict(), tmp_path / "c.pt")
    zoo, _ = build_model(_zoo(cell="lstm", input_size=10, hidden_size=20, head=TAG))
    with pytest.raises(CheckpointError, match="no unique mapping"):
        load_checkpoint(zoo, tmp_path / "c.pt")


def test_same_names_wrong_shapes_list_the_shapes(tmp_path: Path):
    small, _ = build_model(_zoo(cell="gru", input_size=3, hidden_size=2))
    torch.save(small.state_dict(), tmp_path / "c.pt")
    big, _ = build_model(_zoo(cell="gru", input_size=3, hidden_size=4))
    with pytest.raises(CheckpointError, match=r"shape mismatches \(4\): core.rnn.bias_hh_l0: checkpoint \(6,\)"):
        load_checkpoint(big, tmp_path / "c.pt")


# --------------------------------------------------------------------------------- files that are not weights


def _zoo_gru() -> nn.Module:
    return build_model(_zoo(cell="gru", input_size=3, hidden_size=2))[0]


def _load_error(tmp_path: Path, obj: object) -> str:
    path = tmp_path / "c.pt"
    torch.save(obj, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(_zoo_gru(), path)
    assert info.value.exit_code == 2
    return str(info.value)


def test_meta_tensors_are_refused(tmp_path: Path):
    sd = {k: torch.empty(v.shape, device="meta") for k, v in _zoo_gru().state_dict().items()}
    msg = _load_error(tmp_path, sd)
    assert "meta tensor" in msg and "core.rnn.weight_ih_l0" in msg


def test_complex_tensors_are_refused_never_truncated(tmp_path: Path):
    sd = _zoo_gru().state_dict()
    sd["core.rnn.weight_ih_l0"] = sd["core.rnn.weight_ih_l0"].to(torch.complex64) * (1 + 1j)
    msg = _load_error(tmp_path, sd)
    assert "complex" in msg and "imaginary part" in msg


def test_a_whole_pickled_model_is_refused_without_torchs_unsafe_advice(tmp_path: Path):
    msg = _load_error(tmp_path, nn.Linear(2, 2))
    assert "pickled Python object of type torch.nn.modules.linear.Linear" in msg
    assert "torch.save(model.state_dict(), path)" in msg
    assert "weights_only=False" not in msg and "weights_only` set to `False`" not in msg
    assert "safe_globals" not in msg


def test_a_mixed_dict_is_refused(tmp_path: Path):
    sd = dict(_zoo_gru().state_dict())
    sd["epoch"] = 3  # type: ignore[assignment]
    msg = _load_error(tmp_path, sd)
    assert "mixes tensors with other values (epoch)" in msg


def test_two_different_state_dicts_are_refused(tmp_path: Path):
    a = _zoo_gru().state_dict()
    b = {k: v + 1 for k, v in a.items()}
    msg = _load_error(tmp_path, {"model": a, "state_dict": b})
    assert "several different state_dicts" in msg


def test_a_dict_without_weights_names_the_wrappers(tmp_path: Path):
    msg = _load_error(tmp_path, {"epoch": 3, "optimizer": {"lr": 1.0}})
    assert "'model_state_dict'" in msg and "['epoch', 'optimizer']" in msg


def test_a_directory_and_a_missing_file(tmp_path: Path):
    with pytest.raises(CheckpointError, match="is a directory"):
        load_checkpoint(_zoo_gru(), tmp_path)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(_zoo_gru(), tmp_path / "nope.pt")


def test_a_file_that_is_not_a_checkpoint(tmp_path: Path):
    (tmp_path / "c.pt").write_text("hello")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(_zoo_gru(), tmp_path / "c.pt")
    assert "weights-only state_dict" in str(info.value)
    assert "weights_only=False" not in str(info.value)


def test_pooling_last_is_not_the_tutorials_out_last(tmp_path: Path):
    """The trap of the issue: the closest head before 'output_last' was 'last' (h_n's backward state), which
    is a different model. Loading must not make it look right."""
    tut = trained(SentimentNet())
    torch.save(tut.state_dict(), tmp_path / "c.pt")
    raw = dict(CASES["glove-bilstm-out-last"][1])
    raw["head"] = {"task": "classify", "num_classes": 3, "pooling": "last"}
    zoo, _ = build_model(_zoo(**raw))
    load_checkpoint(zoo, tmp_path / "c.pt")
    with torch.no_grad():
        want, got = _run_sentiment(tut, zoo)
    assert float((want[0] - got[0]).abs().max()) > 1e-2  # logits differ
    assert float((want[1] - got[1]).abs().max()) < 1e-5  # the recurrent part is the same


# ------------------------------------------------------------------------ mapping by structure: review fixes (B3)


def _cells(*names: str) -> dict[str, torch.Tensor]:
    sd: dict[str, torch.Tensor] = {}
    for k, name in enumerate(names):
        cell = trained(nn.LSTMCell(20, 20), seed=k)
        sd.update({f"{name}.{key}": v for key, v in cell.state_dict().items()})
    return sd


def _model_cells(prefix: str = "core.cells") -> dict[str, tuple[int, ...]]:
    sd = _cells(f"{prefix}.0", f"{prefix}.1")
    return {k: tuple(v.shape) for k, v in sd.items()}


@pytest.mark.parametrize(
    ("names", "why"),
    [
        (("top", "bottom"), "top, bottom have the same structure"),  # (A) registered top-first, applied bottom-first
        (("cell_2", "cell"), "cell_2, cell have the same structure"),  # (B) partly numbered
        (("cell_2", "cell_1"), "cell_2, cell_1 have the same structure"),  # numbering against the file order
        (("blocks.1.rnn", "blocks.0.rnn"), "blocks.1.rnn, blocks.0.rnn have the same structure"),  # the same
        (("layers.0.rnn", "extra.rnn"), "layers.0.rnn, extra.rnn have the same structure"),  # partly numbered
        (("a.0.rnn", "b.1.rnn"), "a.0.rnn, b.1.rnn have the same structure"),  # numbered, but not one list
    ],
)
def test_equal_layers_whose_names_do_not_say_the_order_are_refused(names: tuple[str, ...], why: str):
    """(A) and (B) of the review: paired by file order alone, the layers were swapped and accepted."""
    from seqdeploy.models.checkpoint import fit_state_dict

    with pytest.raises(CheckpointError) as info:
        fit_state_dict(Path("c.pt"), _cells(*names), _model_cells())
    msg = str(info.value)
    assert f"ambiguous: {why}" in msg and "[checkpoint] map" in msg
    assert "proposed mapping by structure" in msg


def test_a_layer_already_named_as_the_models_stays_where_it_is():
    """(D) of the review: `core.cells.1` (the model's own name) then `foo`: by file order `core.cells.1` went to
    cells.0 and `foo` to cells.1 — swapped, accepted, and exported."""
    from seqdeploy.models.checkpoint import fit_state_dict

    sd = _cells("core.cells.1", "foo")
    mapped, renames, how = fit_state_dict(Path("c.pt"), sd, _model_cells())
    assert how == "structure" and renames == {"foo.": "core.cells.0."}
    assert torch.equal(mapped["core.cells.1.weight_hh"], sd["core.cells.1.weight_hh"])
    assert torch.equal(mapped["core.cells.0.weight_hh"], sd["foo.weight_hh"])


def test_numbered_layers_in_order_still_pair():
    from seqdeploy.models.checkpoint import fit_state_dict

    sd = _cells("cell_1", "cell_2")
    mapped, renames, _ = fit_state_dict(Path("c.pt"), sd, _model_cells())
    assert renames == {"cell_1.": "core.cells.0.", "cell_2.": "core.cells.1."}
    assert torch.equal(mapped["core.cells.1.bias_ih"], sd["cell_2.bias_ih"])


def test_a_module_list_of_blocks_pairs_by_its_index():
    """`layers.0.rnn`, `layers.1.rnn` (a ModuleList of blocks) counted as unnumbered: only a number at the end
    of the name did, so equal-shaped layers were refused as ambiguous though the proposal was right."""
    from seqdeploy.models.checkpoint import fit_state_dict

    sd = _cells("layers.0.rnn", "layers.1.rnn", "layers.2.rnn")
    own = {k: tuple(v.shape) for k, v in _cells("core.cells.0", "core.cells.1", "core.cells.2").items()}
    mapped, renames, how = fit_state_dict(Path("c.pt"), sd, own)
    assert how == "structure"
    assert renames == {f"layers.{i}.rnn.": f"core.cells.{i}." for i in range(3)}
    for i in range(3):
        assert torch.equal(mapped[f"core.cells.{i}.weight_hh"], sd[f"layers.{i}.rnn.weight_hh"])


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.RNNCell(80, 80)


class _BlockStack(nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(_Block() for _ in range(n))


def test_a_module_list_checkpoint_loads_into_the_zoo_cells(tmp_path: Path):
    tut = trained(_BlockStack(3))
    torch.save(tut.state_dict(), tmp_path / "c.pt")
    zoo, _ = build_model(_zoo(cell="rnn_cell", input_size=80, hidden_size=80, num_layers=3))
    result = load_checkpoint(zoo, tmp_path / "c.pt")
    assert result.mapping_source == "structure"
    assert result.mapping == {f"blocks.{i}.rnn.": f"core.cells.{i}." for i in range(3)}
    for i in range(3):
        assert torch.equal(
            zoo.state_dict()[f"core.cells.{i}.weight_ih"], tut.state_dict()[f"blocks.{i}.rnn.weight_ih"]
        )


def test_a_model_layer_name_sent_elsewhere_by_shape_is_refused():
    """`fc` exists in the model with other shapes: pairing the checkpoint's `fc` with another layer of its
    shape would load it where its name says it does not belong."""
    from seqdeploy.models.checkpoint import fit_state_dict

    state = {"fc.weight": torch.zeros(3, 4), "out.weight": torch.zeros(5, 4)}
    own = {"fc.weight": (5, 4), "head.weight": (3, 4)}  # by shape alone: fc -> head, out -> fc
    with pytest.raises(CheckpointError, match="'fc' is a layer of the model too, with other shapes"):
        fit_state_dict(Path("c.pt"), state, own)


def test_unused_checkpoint_map_entries_are_refused(tmp_path: Path):
    """R7: an entry matching nothing was accepted and reported as applied."""
    tut = trained(LSTMNet())
    torch.save(tut.state_dict(), tmp_path / "c.pt")
    zoo, _ = build_model(_zoo(cell="lstm", input_size=10, hidden_size=20, head=TAG))
    key_map = {"lstm.": "core.rnn.", "fc.": "head.", "lstm_typo.": "core.rnn.", "fc.bias_x": "head.bias"}
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(zoo, tmp_path / "c.pt", key_map=key_map)
    msg = str(info.value)
    assert "map entries ['lstm_typo.', 'fc.bias_x'] match no tensor" in msg
    assert "'fc.', 'lstm.'" in msg  # what the checkpoint has


# --------------------------------------------------------------------- prefixes and bundle weights (B2 / R6)


class _HasModuleChild(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.module = nn.GRU(3, 4)


def test_a_prefix_the_model_itself_has_is_not_stripped(tmp_path: Path):
    net = trained(_HasModuleChild())
    sd = net.state_dict()
    torch.save(sd, tmp_path / "plain.pt")
    torch.save({f"module.{k}": v for k, v in sd.items()}, tmp_path / "dp.pt")
    for name, stripped in (("plain.pt", None), ("dp.pt", "module.")):
        fresh = _HasModuleChild()
        result = load_checkpoint(fresh, tmp_path / name)
        assert result.stripped_prefix == stripped and result.mapping == {}
        assert all(torch.equal(fresh.state_dict()[k], v) for k, v in sd.items())


def test_bundle_weights_load_exactly(tmp_path: Path):
    """R6: the bundle's own model.pt is never unwrapped, stripped or mapped."""
    from seqdeploy.models.checkpoint import load_exported_weights

    net = trained(_HasModuleChild())
    torch.save(net.state_dict(), tmp_path / "model.pt")
    fresh = _HasModuleChild()
    load_exported_weights(fresh, tmp_path / "model.pt", "the module")
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in net.state_dict().items())
    zoo = _zoo_gru()
    torch.save({f"module.{k}": v for k, v in zoo.state_dict().items()}, tmp_path / "dp.pt")
    with pytest.raises(CheckpointError, match="the exported weights do not fit the zoo model"):
        load_exported_weights(_zoo_gru(), tmp_path / "dp.pt", "the zoo model")
    torch.save({"model_state_dict": zoo.state_dict()}, tmp_path / "wrapped.pt")
    with pytest.raises(CheckpointError, match="expected the state_dict seqdeploy exported"):
        load_exported_weights(_zoo_gru(), tmp_path / "wrapped.pt", "the zoo model")
