"""The user's own nn.Module (source = "python"): exported, self-checked and verified against the module
itself; golden outputs (--expected); --no-import; the failures a user meets, each with exit 2 or 1."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from seqdeploy.cli import cli
from seqdeploy.errors import IntegrityError
from seqdeploy.manifest import Bundle, manifest_digest, sha256, validate_manifest, write_json
from tests import tutorial_models
from tests.tutorial_models import trained

TUTORIAL = Path(tutorial_models.__file__)
SHAPES = "[shapes]\nbatch = [1, 2, 4]\nseq = [1, 8, 24]\n"


def run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.output


def _toml(path: Path, entry: str, call: str, inputs: str, kwargs: str = "{}", extra: str = "") -> Path:
    path.write_text(
        f'[model]\nsource = "python"\nentry = "{entry}"\nkwargs = {kwargs}\n{extra}\n'
        f'[io]\ncall = "{call}"\n{inputs}\n{SHAPES}'
    )
    return path


LSTM_CALL = "(input, (h0, c0)) -> (output, (h_n, c_n))"


def _lstm_inputs(rows: int, size: int = 20) -> str:
    return (
        '[io.inputs]\ninput = { dims = ["seq", "batch", 10] }\n'
        f'h0 = {{ dims = [{rows}, "batch", {size}] }}\nc0 = {{ dims = [{rows}, "batch", {size}] }}\n'
    )


SENTIMENT_INPUTS = (
    '[io.inputs]\ninput = { dtype = "int64", dims = ["seq", "batch"], range = [0, 51] }\n'
    'h0 = { dims = [2, "batch", 6] }\nc0 = { dims = [2, "batch", 6] }\n'
)

# name -> (class, kwargs (python and TOML), call, [io.inputs])
TUTORIAL_CASES: dict[str, tuple[str, dict[str, Any], str, str, str]] = {
    "rnn-1-layer": (
        "RNNTagger",
        {"num_layers": 1},
        "{ num_layers = 1 }",
        "(input, h0) -> (output, h_n)",
        '[io.inputs]\ninput = { dims = ["seq", "batch", 10] }\nh0 = { dims = [1, "batch", 20] }\n',
    ),
    "rnn-4-layers": (
        "RNNTagger",
        {"num_layers": 4},
        "{ num_layers = 4 }",
        "(input, h0) -> (output, h_n)",
        '[io.inputs]\ninput = { dims = ["seq", "batch", 10] }\nh0 = { dims = [4, "batch", 20] }\n',
    ),
    "lstm-1-layer": ("LSTMNet", {}, "{}", LSTM_CALL, _lstm_inputs(1)),
    "lstm-4-layers": ("LSTMNet", {"num_layers": 4}, "{ num_layers = 4 }", LSTM_CALL, _lstm_inputs(4)),
    "lstm-bidirectional": (
        "LSTMNet",
        {"num_layers": 2, "bidirectional": True},
        "{ num_layers = 2, bidirectional = true }",
        LSTM_CALL,
        _lstm_inputs(4),
    ),
    "gru-batch-first-lengths": (
        "BatchFirstGRU",
        {},
        "{}",
        "(input, lengths, h0) -> (output, h_n)",
        '[io.inputs]\ninput = { dims = ["batch", "seq", 6] }\nh0 = { dims = [2, "batch", 8] }\n',
    ),
    "glove-bilstm-out-last": ("SentimentNet", {}, "{}", LSTM_CALL, SENTIMENT_INPUTS),
}
SLOW = {"rnn-1-layer", "lstm-1-layer", "lstm-bidirectional"}
CALL_OUTPUTS = {
    LSTM_CALL: ("output", "h_n", "c_n"),
    "(input, h0) -> (output, h_n)": ("output", "h_n"),
    "(input, lengths, h0) -> (output, h_n)": ("output", "h_n"),
}


def _export_tutorial(tmp_path: Path, case: str, *, wrap: bool = False, copy: bool = False) -> tuple[Path, Path]:
    cls, kwargs, toml_kwargs, call, inputs = TUTORIAL_CASES[case]
    source = TUTORIAL
    if copy:
        source = tmp_path / "net.py"
        shutil.copy(TUTORIAL, source)
    cfg = _toml(tmp_path / "net.toml", f"{source.name if copy else source}:{cls}", call, inputs, toml_kwargs)
    module = trained(getattr(tutorial_models, cls)(**kwargs))
    ckpt = tmp_path / "trained.pt"
    torch.save({"epoch": 3, "model_state_dict": module.state_dict()} if wrap else module.state_dict(), ckpt)
    out = tmp_path / "bundle"
    code, text = run("export", str(cfg), "-o", str(out), "--checkpoint", str(ckpt))
    assert code == 0, text
    assert f"model: your module {source}:{cls}" in text
    return out, ckpt


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c in SLOW else c for c in TUTORIAL_CASES])
def test_tutorial_modules_export_and_verify_against_themselves(tmp_path: Path, case: str):
    out, _ = _export_tutorial(tmp_path, case)
    m = json.loads((out / "manifest.json").read_text())
    assert m["config"]["model"]["source"] == "python"
    assert m["self_check"]["passed"] is True
    for v in m["self_check"]["max_abs"].values():
        assert v < 1e-5
    report = tmp_path / "r.json"
    # Shapes the export never traced (batch 2, seq 5) nor self-checked (batch 1/3, seq 1/7/64).
    code, text = run("verify", str(out), "--batch", "2,5", "--seq", "2,33", "--json", str(report))
    assert code == 0, text
    assert "NOTE: the torch reference is your module" in text
    rep = json.loads(report.read_text())
    assert rep["passed"] and rep["model"]["source"] == "python"
    full = [c for c in rep["cases"] if c["mode"] == "full" and c["backend"] == "ort-cpu"]
    outputs = {t["name"] for t in m["graphs"]["sequence"]["spec"]["outputs"]}
    assert outputs == set(CALL_OUTPUTS[TUTORIAL_CASES[case][3]])
    assert {n for c in full for n in c["tensors"]} == outputs  # every output, states included
    assert max(t["max_abs"] for c in full for t in c["tensors"].values()) < 1e-5
    b = Bundle.load(out)
    assert b.bidirectional == ("bidirectional" in case or "bilstm" in case)
    modes = {c["mode"] for c in rep["cases"]}
    assert ("chunked" in modes) == b.streamable
    if "lengths" in case:
        assert "padding" in modes


def test_changing_the_forward_after_export_fails_verify(tmp_path: Path):
    """Acceptance (issue 11): the reference is the user's module, so a forward changed from out[-1] to h_n
    after export is a parity failure (exit 1), with a warning that the source changed."""
    out, _ = _export_tutorial(tmp_path, "glove-bilstm-out-last", wrap=True, copy=True)
    m = json.loads((out / "manifest.json").read_text())
    um = m["user_module"]
    assert um["source_sha256"] == sha256(tmp_path / "net.py")
    assert um["class"] == "SentimentNet" and um["bidirectional"] is True
    assert um["recurrent"][0]["name"] == "lstm" and um["recurrent"][0]["bidirectional"] is True
    assert m["config"]["model"]["entry"] == f"{tmp_path / 'net.py'}:SentimentNet"  # absolute
    assert m["checkpoint_load"]["unwrapped"] == ["model_state_dict"]
    code, text = run("verify", str(out), "--batch", "3", "--seq", "6")
    assert code == 0, text
    assert "changed since export" not in text
    assert "SKIPPED [chunked]: a bidirectional model cannot be fed in pieces" in text  # found by inspection
    assert "(no 'lengths' in [io] call)" in text and "(source = 'python' bundles have none)" in text
    src = tmp_path / "net.py"
    text_before = src.read_text()
    src.write_text(
        text_before.replace("return self.fc(out[-1]), (h, c)", "return self.fc(torch.cat([h[-2], h[-1]], 1)), (h, c)")
    )
    assert src.read_text() != text_before
    code, text = run("verify", str(out), "--batch", "3", "--seq", "6")
    assert code == 1, text
    assert "changed since export (sha256 differs)" in text
    assert "failing tensors: output" in text and "h_n" not in text.split("failing tensors:")[1]


def _golden(out: Path, path: Path, module: torch.nn.Module, seed: int = 0) -> Path:
    """What a user writes (docs/your-model.md): inputs and their own model's outputs under contract names."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 52, (9, 3), generator=g)
    h0, c0 = torch.randn(2, 3, 6, generator=g), torch.randn(2, 3, 6, generator=g)
    with torch.no_grad():
        logits, (h_n, c_n) = module.eval()(ids, (h0, c0))
    np.savez(
        path, input=ids.numpy(), h0=h0.numpy(), c0=c0.numpy(), output=logits.numpy(), h_n=h_n.numpy(), c_n=c_n.numpy()
    )
    return path


def test_expected_outputs_pass_for_the_users_model_and_fail_for_another(tmp_path: Path):
    out, ckpt = _export_tutorial(tmp_path, "glove-bilstm-out-last", copy=True)
    mine = tutorial_models.SentimentNet()
    mine.load_state_dict(torch.load(ckpt, weights_only=True))
    good = _golden(out, tmp_path / "good.npz", mine)
    other = _golden(out, tmp_path / "other.npz", trained(tutorial_models.SentimentNet(), seed=99))
    j = tmp_path / "r.json"
    code, text = run("verify", str(out), "--expected", str(good), "--json", str(j))
    assert code == 0, text
    rep = json.loads(j.read_text())
    assert rep["reference"] == "expected" and rep["passed"]
    assert {(c["backend"], c["mode"], c["batch"], c["seq"]) for c in rep["cases"]} == {
        ("torch", "expected", 3, 9),
        ("ort-cpu", "expected", 3, 9),
    }
    code, text = run("verify", str(out), "--expected", str(good), "--expected", str(other))
    assert code == 1, text
    assert "[expected] ort-cpu vs expected | batch=3 seq=9 (other.npz)" in text
    # Without importing the module at all: replace its source with code that refuses to be imported.
    (tmp_path / "net.py").write_text("raise RuntimeError('imported!')\n")
    code, text = run("verify", str(out), "--no-import", "--expected", str(good))
    assert code == 0, text
    assert "NOTE: the torch reference" not in text
    code, text = run("verify", str(out), "--expected", str(good))
    assert code == 2, text
    assert "backend 'torch': cannot rebuild your module" in text and "raised RuntimeError: imported!" in text
    (tmp_path / "net.py").unlink()  # the bundle read where the source is not
    code, text = run("verify", str(out), "--batch", "2", "--seq", "3")
    assert code == 2, text
    assert f"model.entry: {tmp_path / 'net.py'} does not exist" in text
    assert "--no-import --expected FILE.npz" in text


def test_no_import_refuses_the_torch_reference(tmp_path: Path):
    out, _ = _export_tutorial(tmp_path, "lstm-4-layers")
    code, text = run("verify", str(out), "--no-import")
    assert code == 2
    assert "would import your module" in text and "--expected FILE.npz" in text
    code, text = run(
        "verify", str(out), "--no-import", "--backends", "ort-cpu", "--reference", "ort-cpu", "--seq", "3"
    )
    assert code == 0, text  # nothing imported: ONNX Runtime against itself only


def test_expected_files_are_checked(tmp_path: Path, export_tiny: Callable[..., Path]):
    d = export_tiny()
    x = np.zeros((4, 2, 5), np.float32)
    s = np.zeros((1, 2, 4), np.float32)
    cases = {
        "unknown.npz": ({"input": x, "h0": s, "c0": s, "logits": np.zeros((2, 3))}, "['logits'] are neither inputs"),
        "no-outputs.npz": ({"input": x, "h0": s, "c0": s}, "holds no expected output"),
        "strings.npz": ({"input": x, "h0": s, "c0": s, "output": np.array(["a"])}, "is <U1, not numbers"),
        "missing-input.npz": ({"input": x, "output": x}, "missing"),
    }
    for name, (arrays, fragment) in cases.items():
        np.savez(tmp_path / name, **arrays)
        code, text = run("verify", str(d), "--expected", str(tmp_path / name))
        assert code == 2, (name, text)
        assert fragment in text, (name, text)
    np.save(tmp_path / "x.npy", x)
    code, text = run("verify", str(d), "--expected", str(tmp_path / "x.npy"))
    assert code == 2 and "not an .npz" in text
    code, text = run("verify", str(d), "--expected", str(tmp_path / "no-outputs.npz"), "--seq", "3")
    assert code == 2 and "--seq cannot be combined" in text


def _torch_run(
    bundle_dir: Path, batch: int, seq: int, *, seed: int
) -> tuple[Bundle, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The bundle, seeded feeds and the torch reference's outputs on them (for `--expected` files)."""
    from seqdeploy.backends import make_runner
    from seqdeploy.feeds import make_feeds

    b = Bundle.load(bundle_dir)
    feeds = make_feeds(b.specs["sequence"], batch, seq, seed=seed)
    with make_runner("torch", b) as r:
        return b, feeds, r.infer(feeds)


def test_expected_on_a_zoo_bundle_with_some_outputs(tmp_path: Path, export_tiny: Callable[..., Path]):
    b, feeds, outs = _torch_run(export_tiny(), 3, 11, seed=5)
    np.savez(tmp_path / "g.npz", **feeds, output=outs["output"], h_n=outs["h_n"])
    code, text = run("verify", str(b.path), "--expected", str(tmp_path / "g.npz"))
    assert code == 0, text
    assert "g.npz: has no expected ['c_n']; those outputs were not compared" in text
    np.savez(tmp_path / "bad.npz", **feeds, output=outs["output"] + 1e-3, h_n=outs["h_n"])
    assert run("verify", str(b.path), "--expected", str(tmp_path / "bad.npz"))[0] == 1


def test_a_python_loop_over_time_is_refused_with_advice(tmp_path: Path):
    # LSTMCellStack takes ((h1, c1), (h2, c2)); per-layer states are h0.0/c0.0, h0.1/c0.1.
    inputs = '[io.inputs]\ninput = { dims = ["seq", "batch", 10] }\n' + "".join(
        f'"{s}0.{k}" = {{ dims = ["batch", 20] }}\n' for s in "hc" for k in (0, 1)
    )
    cfg = _toml(
        tmp_path / "c.toml",
        f"{TUTORIAL}:LSTMCellStack",
        "(input, ((h0.0, c0.0), (h0.1, c0.1))) -> (output, ((h_n.0, c_n.0), (h_n.1, c_n.1)))",
        inputs,
    )
    code, text = run("export", str(cfg), "-o", str(tmp_path / "x"))
    assert code == 1, text
    assert "no-recurrent-op" in text
    assert "loops over time in Python" in text and "cell = 'lstm_cell'" in text
    assert not (tmp_path / "x").exists()


def _entry_error(tmp_path: Path, source: str, entry: str, call: str = "(input) -> output", kwargs: str = "{}") -> str:
    (tmp_path / "m.py").write_text(source)
    cfg = _toml(tmp_path / "m.toml", entry, call, '[io.inputs]\ninput = { dims = ["seq", "batch", 3] }\n', kwargs)
    code, text = run("export", str(cfg), "-o", str(tmp_path / "x"))
    assert code == 2, text
    assert "Traceback" not in text
    assert not (tmp_path / "x").exists()
    return text


GOOD = """
import torch
from torch import nn
class Net(nn.Module):
    def __init__(self, hidden=4):
        super().__init__()
        self.rnn = nn.GRU(3, hidden)
    def forward(self, x):
        return self.rnn(x)[0]
"""


@pytest.mark.parametrize(
    ("source", "entry", "call", "kwargs", "fragment"),
    [
        (GOOD, "nope.py:Net", "(input) -> output", "{}", "nope.py does not exist"),
        (GOOD, "m.py:Nett", "(input) -> output", "{}", "has no 'Nett'; nn.Module classes there: ['Net']"),
        (GOOD, "m.py:torch", "(input) -> output", "{}", "is a module, not a class or factory"),
        (GOOD + "net = Net()\n", "m.py:net", "(input) -> output", "{}", "is a module instance"),
        (GOOD, "m.py:Net", "(input) -> output", "{ hiden = 3 }", "model.kwargs: Net(**{'hiden': 3}) raised TypeError"),
        ("import nothing_here\n", "m.py:Net", "(input) -> output", "{}", "raised ModuleNotFoundError"),
        (GOOD, "m.py:Net", "(input) -> (output, h_n)", "{}", "io.call: Net.forward: the return value is a Tensor"),
        (GOOD, "m.py:Net", "(input, h0) -> output", "{}", "io.inputs.h0: required key is missing"),
        (
            GOOD.replace("[0]", "[0].double()"),
            "m.py:Net",
            "(input) -> output",
            "{}",
            "output 'output' is torch.float64",
        ),
        (
            GOOD.replace("nn.GRU(3, hidden)", "nn.GRU(5, hidden)"),
            "m.py:Net",
            "(input) -> output",
            "{}",
            "io: Net.forward failed on inputs shaped as [io] declares (input [5, 2, 3] float32)",
        ),
        (
            GOOD.replace("return self.rnn(x)[0]", "return self.rnn(x)[0].reshape(-1, 4)"),
            "m.py:Net",
            "(input) -> output",
            "{}",
            "neither batch, seq nor fixed",
        ),
        (GOOD, "missing_pkg.mod:Net", "(input) -> output", "{}", "cannot import module 'missing_pkg.mod'"),
    ],
)
def test_user_module_mistakes_exit_2_with_the_key(tmp_path: Path, source, entry, call, kwargs, fragment):
    text = _entry_error(tmp_path, source, entry, call, kwargs)
    assert fragment in text, text


@pytest.mark.parametrize(
    ("hidden", "fragment"),
    [(100_000, "exporting your module (120.0 GB of weights and buffers) needs an estimated"), (10**9, "overflows")],
)
def test_absurd_kwargs_are_refused_before_allocation(
    tmp_path: Path, hidden: int, fragment: str, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("SEQDEPLOY_MAX_MEMORY_GB", "8")
    text = _entry_error(tmp_path, GOOD, "m.py:Net", kwargs=f"{{ hidden = {hidden} }}")
    assert fragment in text and "[model] kwargs" in text


def test_a_dotted_entry_with_python_path(tmp_path: Path):
    pkg = tmp_path / "src" / "mypkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text(GOOD.replace("class Net", "class DottedNet"))
    cfg = _toml(
        tmp_path / "m.toml",
        "mypkg.nets:DottedNet",
        "(input) -> output",
        '[io.inputs]\ninput = { dims = ["seq", "batch", 3] }\n',
        extra='python_path = ["src"]',
    )
    code, text = run("export", str(cfg), "-o", str(tmp_path / "x"))
    assert code == 0, text
    m = json.loads((tmp_path / "x" / "manifest.json").read_text())
    assert m["config"]["model"]["python_path"] == [str(tmp_path / "src")]
    assert m["user_module"]["source_file"] == str(pkg / "nets.py")
    code, text = run("verify", str(tmp_path / "x"), "--batch", "2", "--seq", "3")
    assert code == 0, text


def test_a_hand_edited_python_spec_is_an_integrity_error(tmp_path: Path):
    (tmp_path / "m.py").write_text(GOOD)
    cfg = _toml(
        tmp_path / "m.toml", "m.py:Net", "(input) -> output", '[io.inputs]\ninput = { dims = ["seq", "batch", 3] }\n'
    )
    assert run("export", str(cfg), "-o", str(tmp_path / "x"))[0] == 0
    mpath = tmp_path / "x" / "manifest.json"
    m = json.loads(mpath.read_text())
    m["graphs"]["sequence"]["spec"]["inputs"][0]["dims"] = ["batch", "seq", 3]
    m["manifest_sha256"] = manifest_digest(m)  # even with a fresh digest
    write_json(mpath, m)
    with pytest.raises(IntegrityError, match=r"inputs do not match the \[io\] declarations"):
        Bundle.load(tmp_path / "x")


def test_profile_a_python_bundle(tmp_path: Path):
    out, _ = _export_tutorial(tmp_path, "lstm-4-layers")
    j = tmp_path / "p.json"
    code, text = run("profile", str(out), "--shapes", "2x8", "--iters", "2", "--warmup", "1", "--json", str(j))
    assert code == 0, text
    rep = json.loads(j.read_text())
    assert rep["model"]["source"] == "python"
    # 4 layers of LSTM(10|20 -> 20): 2 * 4 gates * 20 * (in + 20) per layer
    assert rep["model"]["flops_per_token"] == 2 * 4 * 20 * (10 + 20) + 3 * 2 * 4 * 20 * (20 + 20)


# ------------------------------------------------------------------------------ review fixes (issue 11 round 2)

FROZEN_IF = """
import torch
from torch import nn
class N(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(3, 4)
    def forward(self, x, h):
        if x.abs().max() > 6:          # e.g. unnormalised input: rescale
            x = x / x.abs().max()
        return self.rnn(x, h)
"""
GRU_INPUTS = '[io.inputs]\ninput = { dims = ["seq", "batch", 3] }\nh0 = { dims = [1, "batch", 4] }\n'
GRU_CALL = "(input, h0) -> (output, h_n)"


def test_a_value_dependent_if_is_refused_naming_its_line(tmp_path: Path):
    """B1, the issue's core failure: the trace freezes `if x.abs().max() > 6` (random inputs never reach 6), the
    self-check and verify passed, and the graph was wrong by 1.28 on x10 inputs. Export now refuses, naming the
    line; the opt-in key exports it, and verify repeats the warning every time."""
    (tmp_path / "net.py").write_text(FROZEN_IF)
    cfg = _toml(tmp_path / "net.toml", "net.py:N", GRU_CALL, GRU_INPUTS)
    code, text = run("export", str(cfg), "-o", str(tmp_path / "x"))
    assert code == 1, text
    assert f"{tmp_path / 'net.py'}:9: `if x.abs().max() > 6:" in text
    assert "(Converting a tensor to a Python boolean)" in text
    assert "allow_tracer_warnings = true" in text and "--expected FILE.npz" in text
    assert not (tmp_path / "x").exists()

    cfg = _toml(tmp_path / "ok.toml", "net.py:N", GRU_CALL, GRU_INPUTS, extra="[export]\nallow_tracer_warnings = true")
    code, text = run("export", str(cfg), "-o", str(tmp_path / "x"))
    assert code == 0, text
    where = f"{tmp_path / 'net.py'}:9: `if x.abs().max() > 6:"
    # The opt-in is loud at export too: what was frozen, where, and how to prove the bundle anyway.
    assert "WARNING: allow_tracer_warnings = true: values frozen at trace time" in text
    assert where in text and "--expected FILE.npz" in text
    m = json.loads((tmp_path / "x" / "manifest.json").read_text())
    assert m["config"]["export"]["allow_tracer_warnings"] is True  # the opt-in is recorded with the bundle
    frozen = m["user_module"]["tracer_warnings"]
    assert len(frozen) == 1 and frozen[0].startswith(where), frozen
    Bundle.load(tmp_path / "x")  # the schema accepts the record
    code, text = run("verify", str(tmp_path / "x"), "--batch", "2", "--seq", "3")
    assert code == 0, text
    assert "WARNING: exported with [export] allow_tracer_warnings = true" in text
    assert where in text and "see the export's output" not in text

    # What the warning recommends catches it: golden outputs of real (here: large) inputs.
    mod = _import_file(tmp_path / "net.py").N()
    mod.load_state_dict(torch.load(tmp_path / "x" / "model.pt", weights_only=True))
    x, h0 = torch.randn(6, 2, 3, generator=torch.Generator().manual_seed(0)) * 10, torch.zeros(1, 2, 4)
    with torch.no_grad():
        y, h = mod.eval()(x, h0)
    np.savez(tmp_path / "real.npz", input=x.numpy(), h0=h0.numpy(), output=y.numpy(), h_n=h.numpy())
    code, text = run("verify", str(tmp_path / "x"), "--no-import", "--expected", str(tmp_path / "real.npz"))
    assert code == 1, text


def _import_file(path: Path) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"t_{path.stem}_{id(path)}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CHILD_NAMED_MODULE = """
import torch
from torch import nn
class Inner(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(3, 4)
    def forward(self, x, h):
        return self.rnn(x, h)
class N(nn.Module):
    def __init__(self):
        super().__init__()
        self.module = Inner()
    def forward(self, x, h):
        return self.module(x, h)
"""


@pytest.mark.parametrize("dataparallel", [False, True])
def test_a_child_named_module_keeps_its_name(tmp_path: Path, dataparallel: bool):
    """B2/R6: every key of such a module starts with 'module.'; the bundle's model.pt was read through the
    user-checkpoint loader, which stripped it, so the self-check always failed."""
    (tmp_path / "net.py").write_text(CHILD_NAMED_MODULE)
    net = trained(_import_file(tmp_path / "net.py").N())
    sd = net.state_dict()
    assert all(k.startswith("module.") for k in sd)
    torch.save({f"module.{k}": v for k, v in sd.items()} if dataparallel else sd, tmp_path / "ck.pt")
    cfg = _toml(tmp_path / "net.toml", "net.py:N", GRU_CALL, GRU_INPUTS)
    code, text = run("export", str(cfg), "-o", str(tmp_path / "x"), "--checkpoint", str(tmp_path / "ck.pt"))
    assert code == 0, text
    assert ("stripped the 'module.' prefix" in text) == dataparallel
    exported = torch.load(tmp_path / "x" / "model.pt", weights_only=True)
    assert set(exported) == set(sd) and all(torch.equal(exported[k], sd[k]) for k in sd)
    code, text = run("verify", str(tmp_path / "x"), "--batch", "2", "--seq", "3")
    assert code == 0, text


def test_entries_that_are_not_the_users_module_are_refused_before_running(tmp_path: Path):
    """R1: a bundle (or config) naming os:system with kwargs { command = ... } ran the shell command."""
    pwned = tmp_path / "pwned"
    for entry, fragment in [
        ("os:system", "'os' is the standard library"),
        ("subprocess:run", "'subprocess' is the standard library"),
        ("torch.hub:load", "'load' is a function of an installed library"),  # it downloads and runs code
    ]:
        cfg = tmp_path / "g.toml"
        cfg.write_text(
            f'[model]\nsource = "python"\nentry = "{entry}"\nkwargs = {{ command = "touch {pwned}" }}\n'
            '[io]\ncall = "(input) -> output"\n[io.inputs]\ninput = { dims = ["seq", "batch", 3] }\n'
        )
        code, text = run("export", str(cfg), "-o", str(tmp_path / "x"))
        assert code == 2, (entry, text)
        assert fragment in text, (entry, text)
        assert not pwned.exists()
    imported = GOOD + "from os import system\nfrom torch.nn import LSTM\nclass Plain:\n    pass\n"
    for attr, fragment in [
        ("system", "'system' is a builtin function"),
        ("Plain", "'Plain' is a class but not a torch.nn.Module subclass"),
    ]:
        text = _entry_error(tmp_path, imported, f"m.py:{attr}", kwargs=f'{{ command = "touch {pwned}" }}')
        assert fragment in text, text
        assert not pwned.exists()
    # A Python function imported from a library: defined elsewhere than the entry's module.
    text = _entry_error(tmp_path, GOOD + "from shutil import rmtree as build\n", "m.py:build")
    assert "a function of module 'shutil', imported into" in text
    # A factory of the user's own file is fine.
    (tmp_path / "m.py").write_text(GOOD + "def build(hidden=4):\n    return Net(hidden)\n")
    cfg = _toml(
        tmp_path / "f.toml", "m.py:build", "(input) -> output", '[io.inputs]\ninput = { dims = ["seq", "batch", 3] }\n'
    )
    code, text = run("export", str(cfg), "-o", str(tmp_path / "f"))
    assert code == 0, text


def test_no_import_environment_refuses_every_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """R1: commands other than verify rebuild the torch reference too (profile, package, optimize, compile):
    SEQDEPLOY_NO_IMPORT makes every one of them refuse to import a user's module."""
    (tmp_path / "m.py").write_text(GOOD)
    cfg = _toml(
        tmp_path / "m.toml", "m.py:Net", "(input) -> output", '[io.inputs]\ninput = { dims = ["seq", "batch", 3] }\n'
    )
    assert run("export", str(cfg), "-o", str(tmp_path / "x"))[0] == 0
    monkeypatch.setenv("SEQDEPLOY_NO_IMPORT", "1")
    code, text = run("export", str(cfg), "-o", str(tmp_path / "y"))
    assert code == 2 and "SEQDEPLOY_NO_IMPORT is set: seqdeploy does not import" in text
    code, text = run("profile", str(tmp_path / "x"), "--shapes", "2x3", "--iters", "1", "--warmup", "0")
    assert code == 2 and "SEQDEPLOY_NO_IMPORT is set" in text, text
    code, text = run(
        "profile",
        str(tmp_path / "x"),
        "--backends",
        "ort-cpu",
        "--baseline",
        "ort-cpu",
        "--shapes",
        "2x3",
        "--iters",
        "1",
        "--warmup",
        "0",
    )
    assert code == 0, text  # ONNX Runtime alone imports nothing
    monkeypatch.setenv("SEQDEPLOY_NO_IMPORT", "0")
    assert run("verify", str(tmp_path / "x"), "--batch", "2", "--seq", "3")[0] == 0


def test_an_edit_to_the_file_defining_the_class_is_noticed(tmp_path: Path):
    """R2: `mypkg:Net` re-exported from mypkg/__init__.py; the sha256 was of __init__.py, so an edit of the
    class's own file went unnoticed."""
    pkg = tmp_path / "src" / "mypkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("from mypkg.nets import Net\n")
    (pkg / "nets.py").write_text(GOOD)
    cfg = _toml(
        tmp_path / "m.toml",
        "mypkg:Net",
        "(input) -> output",
        '[io.inputs]\ninput = { dims = ["seq", "batch", 3] }\n',
        extra='python_path = ["src"]',
    )
    code, text = run("export", str(cfg), "-o", str(tmp_path / "x"))
    assert code == 0, text
    m = json.loads((tmp_path / "x" / "manifest.json").read_text())
    assert m["user_module"]["source_file"] == str(pkg / "nets.py")
    (pkg / "nets.py").write_text(GOOD.replace("[0]", "[0] * 2"))
    code, text = run("verify", str(tmp_path / "x"), "--batch", "2", "--seq", "3")
    assert code == 1, text
    assert f"{pkg / 'nets.py'}: changed since export (sha256 differs)" in text


def test_an_edit_to_the_entry_file_that_imports_the_class_is_noticed(tmp_path: Path):
    """R2 follow-up: `net.py:Net` where net.py holds `from layers import Net`. Only layers.py (the defining
    file) was hashed; an edit of net.py — which verify imports too — went unnoticed. Every file the entry is
    read from is now recorded in user_module.source_files and checked."""
    (tmp_path / "y2layers.py").write_text(GOOD)
    (tmp_path / "net.py").write_text("from y2layers import Net\n")
    cfg = _toml(
        tmp_path / "m.toml", "net.py:Net", "(input) -> output", '[io.inputs]\ninput = { dims = ["seq", "batch", 3] }\n'
    )
    try:
        code, text = run("export", str(cfg), "-o", str(tmp_path / "x"))
        assert code == 0, text
        m = json.loads((tmp_path / "x" / "manifest.json").read_text())
        um = m["user_module"]
        assert um["source_file"] == str(tmp_path / "y2layers.py")
        assert um["source_files"] == {
            str(tmp_path / "y2layers.py"): sha256(tmp_path / "y2layers.py"),
            str(tmp_path / "net.py"): sha256(tmp_path / "net.py"),
        }
        assert validate_manifest(m) == []
        code, text = run("verify", str(tmp_path / "x"), "--batch", "2", "--seq", "3")
        assert code == 0, text
        assert "changed since export" not in text
        (tmp_path / "net.py").write_text("# the entry module, edited\nfrom y2layers import Net\n")
        code, text = run("verify", str(tmp_path / "x"), "--batch", "2", "--seq", "3")
        assert code == 0, text  # the same module: a warning, not a failure
        assert f"{tmp_path / 'net.py'}: changed since export (sha256 differs)" in text
        assert f"{tmp_path / 'y2layers.py'}: changed" not in text
    finally:
        sys.modules.pop("y2layers", None)


def test_the_schema_checks_the_new_user_module_records(tmp_path: Path):
    """source_files and tracer_warnings are optional, but typed when present."""
    um = {
        "entry": "n.py:N",
        "resolved": "/n.py:N",
        "call": "(input) -> output",
        "kwargs": {},
        "bidirectional": False,
        "recurrent": [],
        "flops_per_token": 0,
    }
    python = {"config": {"model": {"source": "python"}}}
    problems = validate_manifest(python | {"user_module": um})
    assert not any("user_module" in p for p in problems), problems
    um |= {"source_files": {"/n.py": "xyz"}, "tracer_warnings": ["/n.py:3: `if x:` (why)", 7]}
    problems = validate_manifest(python | {"user_module": um})
    assert "manifest.user_module.source_files['/n.py']: expected 64 lowercase hex digits" in problems
    assert "manifest.user_module.tracer_warnings[1]: expected a string, got int" in problems
    um |= {"source_files": ["/n.py"], "tracer_warnings": "x"}
    problems = validate_manifest(python | {"user_module": um})
    assert "manifest.user_module.source_files: expected an object, got list" in problems
    assert "manifest.user_module.tracer_warnings: expected an array, got str" in problems


PACKED_NO_TOTAL_LENGTH = """
import torch
from torch import nn
class G(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(3, 4, batch_first=True)
    def forward(self, x, lengths, h0):
        p = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, h = self.gru(p, h0)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True)
        return out, h
"""


def test_pad_packed_sequence_without_total_length_is_explained(tmp_path: Path):
    """R3: the tutorial default returns max(lengths) steps; the probe saw a full-length row only and the
    self-check died in a numpy concatenate."""
    inputs = '[io.inputs]\ninput = { dims = ["batch", "seq", 3] }\nh0 = { dims = [1, "batch", 4] }\n'
    (tmp_path / "m.py").write_text(PACKED_NO_TOTAL_LENGTH)
    cfg = _toml(tmp_path / "m.toml", "m.py:G", "(input, lengths, h0) -> (output, h_n)", inputs)
    code, text = run("export", str(cfg), "-o", str(tmp_path / "x"))
    assert code == 2, text
    assert not (tmp_path / "x").exists()
    assert "io.call: output 'output' axis 1" in text
    assert "Pass total_length=x.size(1)" in text and "concatenat" not in text
    fixed = PACKED_NO_TOTAL_LENGTH.replace(
        "batch_first=True)\n        return", "batch_first=True, total_length=x.size(1))\n        return"
    )
    (tmp_path / "m.py").write_text(fixed)
    cfg = _toml(tmp_path / "ok.toml", "m.py:G", "(input, lengths, h0) -> (output, h_n)", inputs)
    code, text = run("export", str(cfg), "-o", str(tmp_path / "ok"))
    assert code == 0, text


def test_expected_files_need_output_and_finite_values(tmp_path: Path, export_tiny: Callable[..., Path]):
    """R5: a file of states only passed without comparing `output`; NaN in a golden file equalled NaN."""
    b, feeds, outs = _torch_run(export_tiny(), 2, 4, seed=1)
    np.savez(tmp_path / "states.npz", **feeds, h_n=outs["h_n"], c_n=outs["c_n"])
    code, text = run("verify", str(b.path), "--expected", str(tmp_path / "states.npz"))
    assert code == 2, text
    assert "holds no expected 'output' (it has ['c_n', 'h_n'])" in text
    nan = outs["output"].copy()
    nan[0, 0, 0] = np.nan
    np.savez(tmp_path / "nan.npz", **feeds, output=nan)
    code, text = run("verify", str(b.path), "--expected", str(tmp_path / "nan.npz"))
    assert code == 2, text
    assert "'output' has 1 NaN/Inf value(s)" in text


def test_profile_says_why_a_python_bundle_does_not_stream(tmp_path: Path):
    """R9: profile explained a user's module without states with 'export.initial_state = false', a key such
    configs refuse."""
    (tmp_path / "m.py").write_text(GOOD)
    cfg = _toml(
        tmp_path / "m.toml", "m.py:Net", "(input) -> output", '[io.inputs]\ninput = { dims = ["seq", "batch", 3] }\n'
    )
    assert run("export", str(cfg), "-o", str(tmp_path / "x"))[0] == 0
    j = tmp_path / "p.json"
    args = ("--shapes", "2x3", "--iters", "1", "--warmup", "0", "--streaming", "--json", str(j))
    code, text = run("profile", str(tmp_path / "x"), *args)
    assert code == 0, text
    reasons = [s["reason"] for s in json.loads(j.read_text())["skipped"] if s["mode"] == "streaming"]
    assert reasons == ["the module has no state pairs ([io] call / [io] state)"]
