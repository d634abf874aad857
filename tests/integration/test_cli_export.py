"""``seqdeploy export`` through click's CliRunner: success, every bad input, no partial output."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner

from seqdeploy.cli import cli
from seqdeploy.errors import ExportError
from seqdeploy.manifest import Bundle, sha256
from tests.conftest import CONFIGS


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


TINY = """
[model]
cell = "gru"
input_size = 6
hidden_size = 5
num_layers = 2
[shapes]
batch = [1, 2, 4]
seq = [1, 8, 32]
"""


def run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.output


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_export_writes_a_proven_bundle(tmp_path: Path) -> None:
    cfg = write_toml(tmp_path / "m.toml", TINY)
    out = tmp_path / "exp"
    code, text = run("export", str(cfg), "-o", str(out))
    assert code == 0, text
    assert "self-check: PASSED" in text
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.onnx", "model.pt"]
    m = json.loads((out / "manifest.json").read_text())
    assert m["schema_version"] == 1
    assert m["opset"] == 17
    assert m["config"]["model"]["cell"] == "gru"
    assert m["versions"]["torch"].startswith("2.13")
    for name, entry in m["files"].items():
        assert entry["sha256"] == sha256(out / name)
    assert m["graphs"]["sequence"]["spec"]["inputs"][0]["dims"] == ["seq", "batch", 6]
    assert m["self_check"]["passed"] is True
    assert set(m["self_check"]["max_abs"]) == {"output", "h_n"}
    assert all(v <= 1e-5 for v in m["self_check"]["max_abs"].values())
    # The graph's own declared dims are dynamic for every named axis, states included.
    g = onnx.load(str(out / "model.onnx")).graph
    h0 = next(i for i in g.input if i.name == "h0")
    assert [d.dim_param or d.dim_value for d in h0.type.tensor_type.shape.dim] == [2, "batch", 5]
    assert leftovers(tmp_path) == []


def test_existing_export_is_refused_without_force_and_replaced_with_it(tmp_path: Path) -> None:
    cfg = write_toml(tmp_path / "m.toml", TINY)
    out = tmp_path / "exp"
    assert run("export", str(cfg), "-o", str(out))[0] == 0
    (out / "stale.txt").write_text("old")
    code, text = run("export", str(cfg), "-o", str(out))
    assert code == 2
    assert "already exists" in text and "--force" in text
    assert (out / "stale.txt").read_text() == "old"
    code, text = run("export", str(cfg), "-o", str(out), "--force")
    assert code == 0, text
    assert not (out / "stale.txt").exists()
    assert (out / "model.onnx").is_file()
    assert leftovers(tmp_path) == []


def test_force_never_replaces_a_directory_that_is_not_an_export(tmp_path: Path) -> None:
    cfg = write_toml(tmp_path / "m.toml", TINY)
    project = tmp_path / "project"
    project.mkdir()
    (project / "main.py").write_text("print('precious')")
    code, text = run("export", str(cfg), "-o", str(project), "--force")
    assert code == 2
    assert "not a seqdeploy export" in text
    assert (project / "main.py").read_text() == "print('precious')"
    assert leftovers(tmp_path) == []
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run("export", str(cfg), "-o", str(empty), "--force")[0] == 0


@pytest.mark.parametrize(
    ("toml", "needle"),
    [
        ("[model]\ncell = 'lstmx'\ninput_size = 3\nhidden_size = 2\n", "model.cell: expected one of"),
        ("[model]\ncell = 'lstm'\ninput_size = 3\nhidden_size = 0\n", "model.hidden_size: expected int >= 1, got 0"),
        ("[model]\ncell = 'lstm'\ninput_size = 3\nhidden_size = 2\ndropout = 1.5\n", "model.dropout"),
        ("[model]\ncell = 'lstm'\ninput_size = 3\nhiden_size = 2\n", "did you mean 'hidden_size'"),
        (
            "[model]\ncell = 'lstm'\ninput_size = 3\nhidden_size = 2\n[export]\nopset = 'x'\n",
            "export.opset: expected int",
        ),
        ("[model\ncell = 'lstm'\n", "invalid TOML"),
    ],
)
def test_bad_config_exits_2_and_writes_nothing(tmp_path: Path, toml: str, needle: str) -> None:
    cfg = write_toml(tmp_path / "bad.toml", toml)
    out = tmp_path / "exp"
    code, text = run("export", str(cfg), "-o", str(out))
    assert code == 2, text
    assert needle in text
    assert text.startswith("error: ")
    assert not out.exists()
    assert leftovers(tmp_path) == []


def test_missing_config_file(tmp_path: Path) -> None:
    code, text = run("export", str(tmp_path / "nope.toml"), "-o", str(tmp_path / "x"))
    assert code == 2
    assert "config file not found" in text


def test_step_on_a_bidirectional_model_is_a_config_error(tmp_path: Path) -> None:
    code, text = run("export", str(CONFIGS / "lstm_bidir.toml"), "-o", str(tmp_path / "x"), "--step")
    assert code == 2
    assert "export.step" in text and "bidirectional" in text


def test_checkpoint_is_loaded_and_used(tmp_path: Path) -> None:
    from seqdeploy.config_io import load_config
    from seqdeploy.models.build import build_model

    cfg_path = write_toml(tmp_path / "m.toml", TINY)
    model, _ = build_model(load_config(cfg_path))
    state = {k: v + 0.25 for k, v in model.state_dict().items()}
    ckpt = tmp_path / "ckpt.pt"
    torch.save(state, ckpt)
    out = tmp_path / "exp"
    code, text = run("export", str(cfg_path), "-o", str(out), "--checkpoint", str(ckpt))
    assert code == 0, text
    saved = torch.load(out / "model.pt", weights_only=True)
    for k, v in state.items():
        assert torch.equal(saved[k], v), k
    assert json.loads((out / "manifest.json").read_text())["checkpoint"] == str(ckpt)


def test_checkpoint_mismatch_lists_keys(tmp_path: Path) -> None:
    cfg_path = write_toml(tmp_path / "m.toml", TINY)
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"core.rnn.weight_ih_l0": torch.zeros(15, 6), "extra.weight": torch.zeros(1)}, ckpt)
    code, text = run("export", str(cfg_path), "-o", str(tmp_path / "exp"), "--checkpoint", str(ckpt))
    assert code == 2
    assert "missing keys" in text and "core.rnn.weight_hh_l0" in text
    assert "unexpected keys (1): extra.weight" in text
    assert not (tmp_path / "exp").exists()


def test_checkpoint_that_needs_unpickling_code_is_refused(tmp_path: Path) -> None:
    cfg_path = write_toml(tmp_path / "m.toml", TINY)
    ckpt = tmp_path / "evil.pt"
    torch.save({"obj": Path("x")}, ckpt)  # a non-tensor object: weights_only refuses to unpickle it
    code, text = run("export", str(cfg_path), "-o", str(tmp_path / "exp"), "--checkpoint", str(ckpt))
    assert code == 2
    assert "weights-only" in text
    assert not (tmp_path / "exp").exists()


def test_a_failing_check_leaves_nothing_and_keeps_the_old_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg_path = write_toml(tmp_path / "m.toml", TINY)
    out = tmp_path / "exp"
    assert run("export", str(cfg_path), "-o", str(out))[0] == 0
    before = sha256(out / "model.onnx")

    import seqdeploy.export.stage as stage

    def broken(path: Path, spec: object) -> None:
        raise ExportError(f"{path.name}: failed lint:\n  [static-dim] planted")

    monkeypatch.setattr(stage, "_check_graph", broken)
    code, text = run("export", str(cfg_path), "-o", str(out), "--force")
    assert code == 1
    assert "static-dim" in text
    assert sha256(out / "model.onnx") == before
    assert leftovers(tmp_path) == []


def test_parity_failure_during_export_exits_1_with_the_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import seqdeploy.models.build as build

    cfg_path = write_toml(tmp_path / "m.toml", TINY)
    real = build.exportable

    def skewed(model: torch.nn.Module) -> torch.nn.Module:
        # Export a model whose weights differ from the reference: the self-check must catch it.
        import copy

        clone = copy.deepcopy(real(model))
        with torch.no_grad():
            clone.core.rnn.weight_hh_l0.add_(1e-3)
        return clone

    monkeypatch.setattr(build, "exportable", skewed)
    out = tmp_path / "exp"
    code, text = run("export", str(cfg_path), "-o", str(out))
    assert code == 1, text
    assert "FAILED | h_n" in text
    assert "export self-check failed" in text
    assert not out.exists()
    assert leftovers(tmp_path) == []


def test_missing_onnxruntime_is_exit_3_naming_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg_path = write_toml(tmp_path / "m.toml", TINY)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` raise ImportError
    code, text = run("export", str(cfg_path), "-o", str(tmp_path / "exp"))
    assert code == 3, text
    assert "seqdeploy[cpu]" in text
    assert not (tmp_path / "exp").exists()


def test_vectors_coverage_is_reported(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    code, text = run("export", str(CONFIGS / "gru_glove_classifier.toml"), "-o", str(out))
    assert code == 0, text
    assert "52/63 vocabulary rows found (82.5%)" in text
    vec = json.loads((out / "manifest.json").read_text())["embedding_vectors"]
    assert (vec["found"], vec["oov"], vec["format"]) == (52, 11, "glove")


def test_cell_stack_export_has_per_layer_states_and_a_step_graph(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    code, text = run("export", str(CONFIGS / "lstm_cell_stack.toml"), "-o", str(out))
    assert code == 0, text
    b = Bundle.load(out)
    seq = b.specs["sequence"]
    assert seq.input_names == ("input", "h0.0", "h0.1", "h0.2", "c0.0", "c0.1", "c0.2")
    assert seq.output_names == ("output", "h_n.0", "h_n.1", "h_n.2", "c_n.0", "c_n.1", "c_n.2")
    assert [seq.tensor(f"h0.{k}").dims for k in range(3)] == [(1, "batch", 50), (1, "batch", 20), (1, "batch", 10)]
    ops = [n.op_type for n in onnx.load(str(out / "model.onnx")).graph.node]
    assert ops.count("LSTM") == 3  # one native op per layer: seq stays dynamic
    assert b.specs["step"].tensor("input").dims == ("batch", 80)
    # A sequence far longer than anything traced runs and matches the eager cell loop.
    from seqdeploy.backends import make_runner
    from seqdeploy.feeds import make_feeds

    feeds = make_feeds(seq, 3, 300, seed=5)
    with make_runner("torch", b) as ref, make_runner("ort-cpu", b) as ort:
        r, o = ref.infer(feeds), ort.infer(feeds)
    for name in seq.output_names:
        np.testing.assert_allclose(o[name], r[name], atol=1e-5, rtol=1e-4, err_msg=name)


@pytest.mark.parametrize("config", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.stem)
def test_every_shipped_config_exports(tmp_path: Path, config: Path) -> None:
    code, text = run("export", str(config), "-o", str(tmp_path / "exp"))
    assert code == 0, text
    assert "self-check: PASSED" in text
