"""``seqdeploy package``: layout, manifest, proofs, failure modes (nothing written), CLI."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from google.protobuf import text_format
from onnx import TensorProto, helper, numpy_helper
from tritonclient.grpc import model_config_pb2 as mc

from seqdeploy.backends import make_runner
from seqdeploy.cli import cli
from seqdeploy.errors import ParityError, UsageError
from seqdeploy.feeds import make_feeds
from seqdeploy.manifest import Bundle
from seqdeploy.package import surgery
from seqdeploy.package.check import check_package
from seqdeploy.package.layout import from_batch_first, to_batch_first
from seqdeploy.package.manifest import read_manifest
from seqdeploy.package.writer import PackageOptions, write_package
from seqdeploy.runtime import load
from tests.integration._packages import MODELS, package_for

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:google.protobuf")


@pytest.fixture(scope="module")
def pkg(
    tmp_path_factory: pytest.TempPathFactory, export_tiny: Callable[..., Path]
) -> Callable[[str], tuple[Path, Path]]:
    def get(name: str) -> tuple[Path, Path]:
        return package_for(name, tmp_path_factory, export_tiny)

    return get


def _config(path: Path) -> mc.ModelConfig:
    return text_format.Parse(path.read_text(), mc.ModelConfig())


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_packages_checks_and_matches_torch(name: str, pkg: Callable[[str], tuple[Path, Path]]) -> None:
    bundle_dir, out = pkg(name)
    check = check_package(out)
    assert check.passed, check.render()
    manifest = read_manifest(out)
    bundle = Bundle.load(bundle_dir)
    spec = bundle.specs["sequence"]
    # Independent of the writer's own proof: the runtime on a fresh batch vs the bundle's torch runner.
    p = load(out)
    feeds = make_feeds(spec, 4 if p.signature.max_batch_size >= 4 else 1, 9, seed=77)
    with make_runner("torch", bundle) as ref:
        want = ref.infer(feeds)
    got = from_batch_first(spec, p.run(to_batch_first(spec, feeds)))
    for n in spec.output_names:
        np.testing.assert_allclose(got[n], want[n], atol=1e-5, rtol=1e-4, err_msg=n)
    assert manifest.models[manifest.default_model].kind == "stateless"
    stream = manifest.raw["stream"]["model"]
    assert (stream is not None) == bundle.streamable
    for entry in manifest.models.values():
        assert entry.raw["parity"]["passed"] and entry.raw["parity"]["comparisons"] >= 4


def test_layout_is_a_triton_repository(pkg: Callable[[str], tuple[Path, Path]]) -> None:
    _, out = pkg("lstm_text")
    top = sorted(p.name for p in out.iterdir())
    assert top == ["README.md", "lstm_text", "lstm_text_int8", "lstm_text_stream", "seqdeploy.json", "vocab.txt"]
    for model in ("lstm_text", "lstm_text_int8", "lstm_text_stream"):
        cfg = _config(out / model / "config.pbtxt")
        assert cfg.name == model and cfg.platform == "onnxruntime_onnx" and cfg.max_batch_size == 6
        assert (out / model / "1" / "model.onnx").is_file()
        # batch-first on every input and output: dim 0 of each graph tensor is the dynamic batch
        graph = onnx.load(str(out / model / "1" / "model.onnx"))
        for vi in [*graph.graph.input, *graph.graph.output]:
            assert vi.type.tensor_type.shape.dim[0].dim_param == "batch", vi.name
    stateless = _config(out / "lstm_text" / "config.pbtxt")
    assert stateless.WhichOneof("scheduling_choice") == "dynamic_batching"
    assert [i.name for i in stateless.input] == ["input", "lengths", "h0", "c0"]
    lengths = next(i for i in stateless.input if i.name == "lengths")
    assert list(lengths.dims) == [1] and lengths.HasField("reshape") and list(lengths.reshape.shape) == []
    assert [list(i.dims) for i in stateless.input if i.name in ("h0", "c0")] == [[2, 4], [2, 4]]
    warmup_inputs = {k for w in stateless.model_warmup for k in w.inputs}
    assert warmup_inputs == {"input", "lengths", "h0", "c0"}
    int8 = _config(out / "lstm_text_int8" / "config.pbtxt")
    assert [g.kind for g in int8.instance_group] == [mc.ModelInstanceGroup.KIND_CPU]
    # int8 answers depend on their batch companions (one dynamic quantization scale per execution): no
    # dynamic_batching, so Triton runs every request alone.
    assert int8.WhichOneof("scheduling_choice") is None
    assert read_manifest(out).models["lstm_text_int8"].raw["scheduler"] == "none"


def test_stream_config_implicit_state_and_start(pkg: Callable[[str], tuple[Path, Path]]) -> None:
    _, out = pkg("lstm_text")
    cfg = _config(out / "lstm_text_stream" / "config.pbtxt")
    sb = cfg.sequence_batching
    assert cfg.WhichOneof("scheduling_choice") == "sequence_batching"
    assert sb.WhichOneof("strategy_choice") == "oldest"
    assert [i.name for i in cfg.input] == ["input", "lengths"]  # START and states are not inputs[]
    (ctl,) = sb.control_input
    assert ctl.name == "START" and ctl.control[0].kind == ctl.control[0].CONTROL_SEQUENCE_START
    assert list(ctl.control[0].int32_false_true) == [0, 1]
    pairs = [(s.input_name, s.output_name) for s in sb.state]
    assert pairs == [("c0", "c_n"), ("h0", "h_n")]
    ins, outs = sorted(p[0] for p in pairs), sorted(p[1] for p in pairs)
    assert list(zip(ins, outs, strict=True)) == pairs  # server#8586: sorted orders pair identically
    for s in sb.state:
        (init,) = s.initial_state
        assert init.zero_data and list(init.dims) == list(s.dims) == [2, 4] and init.name
    graph_inputs = {i.name for i in onnx.load(str(out / "lstm_text_stream" / "1" / "model.onnx")).graph.input}
    assert graph_inputs == {"input", "lengths", "START", "h0", "c0"}
    # No warmup on an implicit-state model: Triton's warmup requests skip the sequence batcher, carry no
    # state, and the ONNX Runtime backend refuses them, so the model would never load (review finding 1).
    assert not cfg.model_warmup and not (out / "lstm_text_stream" / "warmup").exists()
    lengths_file = out / "lstm_text" / "warmup" / "lengths_t6.bin"
    assert np.frombuffer(lengths_file.read_bytes(), dtype="<i8").tolist() == [6]


def test_cell_stack_states_sort_in_pairs(pkg: Callable[[str], tuple[Path, Path]]) -> None:
    _, out = pkg("cells")
    cfg = _config(out / "cells_stream" / "config.pbtxt")
    pairs = [(s.input_name, s.output_name) for s in cfg.sequence_batching.state]
    assert pairs == [("c0.0", "c_n.0"), ("c0.1", "c_n.1"), ("h0.0", "h_n.0"), ("h0.1", "h_n.1")]
    assert [list(s.dims) for s in cfg.sequence_batching.state] == [[1, 4], [1, 3], [1, 4], [1, 3]]


def test_manifest_contents(pkg: Callable[[str], tuple[Path, Path]]) -> None:
    bundle_dir, out = pkg("lstm_text")
    m = json.loads((out / "seqdeploy.json").read_text())
    assert m["format"] == "seqdeploy-package" and m["schema_version"] == 1
    assert m["labels"] == ["neg", "neutral", "pos"]
    assert m["text"]["unk_token"] == "<unk>" and m["text"]["unk_id"] == 1 and m["text"]["oov"] == "unk"
    assert m["source"]["manifest_sha256"] == json.loads((bundle_dir / "manifest.json").read_text())["manifest_sha256"]
    files = set(m["files"])
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {"seqdeploy.json"}
    assert files == on_disk
    entry = m["models"]["lstm_text"]
    assert entry["inputs"][0]["axes"] == ["batch", "time"]
    assert entry["parity"]["max_abs"]["output"] < 1e-5 and entry["tolerance"] == {"atol": 1e-5, "rtol": 1e-4}
    assert m["models"]["lstm_text_int8"]["tolerance"]["atol"] == 5e-2
    assert m["models"]["lstm_text_stream"]["control"] == {"start": "START"}
    assert m["versions"]["onnxruntime"] and m["versions"]["tritonclient"]


def test_bidirectional_has_no_stream_model_and_says_why(pkg: Callable[[str], tuple[Path, Path]]) -> None:
    _, out = pkg("bidir")
    m = json.loads((out / "seqdeploy.json").read_text())
    assert m["stream"]["model"] is None and "bidirectional" in m["stream"]["reason"]
    assert not (out / "bidir_stream").exists()
    _, out2 = pkg("nostate")
    m2 = json.loads((out2 / "seqdeploy.json").read_text())
    assert m2["stream"]["model"] is None and "no state inputs" in m2["stream"]["reason"]


def test_model_card_snippets_run(pkg: Callable[[str], tuple[Path, Path]]) -> None:
    _, out = pkg("lstm_text")
    card = (out / "README.md").read_text()
    assert "tritonserver --model-repository" in card and "runtime.load" in card and "curl" in card
    # The curl body is built by a Python heredoc: run it and check every input's shape against its data.
    body_src = card.split("python3 - <<'EOF'")[1].split("\n", 1)[1].split("\nEOF")[0]
    scope: dict[str, object] = {}
    printed: list[str] = []
    exec(body_src.replace("print(", "printed.append("), {"printed": printed}, scope)  # our own generated card
    body = json.loads(printed[0])
    assert [i["name"] for i in body["inputs"]] == ["input", "lengths", "h0", "c0"]
    for i in body["inputs"]:
        assert int(np.prod(i["shape"])) == len(i["data"]), i["name"]


def _swap_h0_c0(model: onnx.ModelProto, spec: object) -> onnx.ModelProto:
    """A wrong batch-first graph: the real one with h0 and c0 swapped (plausible values, wrong results)."""
    m = surgery_real_batch_first(model, spec)
    for node in m.graph.node:
        node.input[:] = ["c0" if x == "h0" else "h0" if x == "c0" else x for x in node.input]
    return m


surgery_real_batch_first = surgery.batch_first_graph
surgery_real_stream = surgery.stream_graph


def _mul_reset(model: onnx.ModelProto, bf_spec: object, start: str = "START") -> onnx.ModelProto:
    """A wrong stream graph: the reset done as ``h * (1 - START)``, which lets NaN through."""
    m = surgery_real_stream(model, bf_spec, start)
    g = m.graph
    nodes = []
    for node in g.node:
        if node.op_type == "Where" and node.name.startswith("sd_reset_"):
            flag, _, h = node.input
            f, keep = f"{node.name}_f", f"{node.name}_keep"
            nodes += [
                helper.make_node("Cast", [flag], [f], to=TensorProto.FLOAT),
                helper.make_node("Sub", [f"{node.name}_one", f], [keep]),
                helper.make_node("Mul", [h, keep], list(node.output)),
            ]
            g.initializer.append(numpy_helper.from_array(np.ones((), np.float32), f"{node.name}_one"))
        else:
            nodes.append(node)
    del g.node[:]
    g.node.extend(nodes)
    return m


def _no_reset(model: onnx.ModelProto, bf_spec: object, start: str = "START") -> onnx.ModelProto:
    """A wrong stream graph: START is an input but the state passes through unchanged."""
    m = surgery_real_stream(model, bf_spec, start)
    for node in m.graph.node:
        if node.op_type == "Where" and node.name.startswith("sd_reset_"):
            node.op_type = "Identity"
            node.input[:] = [node.input[2]]
    return m


@pytest.mark.parametrize(
    ("patch", "fn", "model", "bad"),
    [
        # the stream graph is built on the batch-first one, so both fail
        ("batch_first_graph", _swap_h0_c0, "lstm_text", {"lstm_text", "lstm_text_stream"}),
        ("stream_graph", _mul_reset, "gru_tagger", {"gru_tagger_stream"}),
        ("stream_graph", _no_reset, "cells", {"cells_stream"}),
    ],
    ids=["h0-c0-swapped", "reset-by-multiplication", "no-reset"],
)
def test_a_wrong_graph_fails_the_proof_and_writes_nothing(
    patch: str,
    fn: Callable[..., onnx.ModelProto],
    model: str,
    bad: set[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    export_tiny: Callable[..., Path],
) -> None:
    overrides, opts = MODELS[model]
    bundle = export_tiny(**overrides)
    monkeypatch.setattr(surgery, patch, fn)
    out = tmp_path / "pkg"
    with pytest.raises(ParityError) as info:
        write_package(bundle, out, PackageOptions(**{**opts, "name": model, "variants": ("fp32",), "tar": True}))
    report = info.value.report
    assert not report.passed
    assert {c.backend for c in report.failures} == bad
    assert not out.exists() and not (tmp_path / "pkg.tar.gz").exists()
    assert list(tmp_path.iterdir()) == []  # no staging directory or temp archive left behind


def test_nan_start_state_is_what_catches_the_multiplication(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, export_tiny: Callable[..., Path]
) -> None:
    overrides, _ = MODELS["gru_tagger"]
    monkeypatch.setattr(surgery, "stream_graph", _mul_reset)
    with pytest.raises(ParityError) as info:
        write_package(export_tiny(**overrides), tmp_path / "p", PackageOptions())
    stream_cases = [c for c in info.value.report.cases if c.mode == "stream"]
    assert stream_cases and all(not c.passed for c in stream_cases)
    assert any(np.isinf(d.max_abs) for c in stream_cases for d in c.tensors.values())  # NaN vs a number


def test_force_and_refusals(pkg: Callable[[str], tuple[Path, Path]], tmp_path: Path) -> None:
    bundle_dir, _ = pkg("bidir")
    out = tmp_path / "p"
    write_package(bundle_dir, out, PackageOptions(tar=True))
    with pytest.raises(UsageError, match="already exists"):
        write_package(bundle_dir, out, PackageOptions())
    (out / read_manifest(out).model().file).write_bytes(b"broken")  # replaced below, so the old one may be bad
    write_package(bundle_dir, out, PackageOptions(force=True, tar=True))
    assert check_package(out).passed and check_package(tmp_path / "p.tar.gz").passed
    other = tmp_path / "notes"
    other.mkdir()
    (other / "important.txt").write_text("keep me")
    with pytest.raises(UsageError, match="not a seqdeploy package"):
        write_package(bundle_dir, other, PackageOptions(force=True))
    assert (other / "important.txt").read_text() == "keep me"
    (tmp_path / "x.tar.gz").write_text("not an archive")
    with pytest.raises(UsageError, match="not a package archive"):
        write_package(bundle_dir, tmp_path / "x", PackageOptions(force=True, tar=True))
    with pytest.raises(UsageError, match="include fp32"):
        write_package(bundle_dir, tmp_path / "y", PackageOptions(variants=("int8",)))
    with pytest.raises(UsageError, match="unknown"):
        write_package(bundle_dir, tmp_path / "y", PackageOptions(variants=("fp32", "fp8")))
    with pytest.raises(UsageError, match="--name"):
        write_package(bundle_dir, tmp_path / "y", PackageOptions(name="../evil"))
    with pytest.raises(UsageError, match="float features"):
        write_package(bundle_dir, tmp_path / "y", PackageOptions(vocab=tmp_path / "v.txt"))
    assert not (tmp_path / "y").exists()


def test_proof_outside_the_bundle_lock_and_memory_budget(
    pkg: Callable[[str], tuple[Path, Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import seqdeploy._atomic as atomic
    from seqdeploy._atomic import bundle_transaction
    from seqdeploy.errors import ResourceLimitError

    bundle_dir, _ = pkg("gru_tagger")
    with pytest.raises(ResourceLimitError, match=r"the package proof \(--max-batch 6, \[shapes\] seq max 24\)"):
        write_package(bundle_dir, tmp_path / "small", PackageOptions(max_memory_gb=1e-6))
    r = CliRunner().invoke(
        cli, ["package", str(bundle_dir), "-o", str(tmp_path / "small"), "--max-memory-gb", "0.000001"]
    )
    assert r.exit_code == 2 and "--max-memory-gb" in r.output, r.output
    assert not (tmp_path / "small").exists()

    # A writer of the bundle (export --force, optimize, compile all commit like this) must not wait for the
    # proof: the bundle's read lock is held only while the graphs are read and the reference is loaded.
    monkeypatch.setattr(atomic, "_LOCK_WAIT_S", 3.0)
    waits: list[float] = []

    def progress(done: int, total: int) -> None:
        t0 = time.monotonic()
        with bundle_transaction(bundle_dir) as tx:
            tx.commit(json.loads((Path(bundle_dir) / "manifest.json").read_text()))
        waits.append(time.monotonic() - t0)

    write_package(bundle_dir, tmp_path / "p", PackageOptions(), progress=progress)
    assert len(waits) == 2 and max(waits) < 3.0, waits
    assert check_package(tmp_path / "p").passed


@pytest.mark.parametrize(
    ("lengths", "seq"),
    [(True, [5, 8, 40]), (False, [5, 8, 40]), (False, [5, 5, 5]), (False, [5, 6, 6])],
    ids=["lengths", "no-lengths", "no-lengths-fixed-T", "no-lengths-narrow"],
)
def test_stream_proof_varies_chunks_when_the_minimum_t_is_large(
    lengths: bool, seq: list[int], tmp_path: Path, export_tiny: Callable[..., Path]
) -> None:
    """With [shapes] seq min 5 the chunks used to collapse to 5 and the lengths to multiples of 5: no padded
    rows, no varied chunks (finding 20). Without lengths and a range narrower than 2·min − 1, no chunks can
    vary: every request must still lie inside [min, max] (seq [5,5,5] used to send T = 2, 1, 3; [5,6,6] T = 4)."""
    import re

    lo, hi = seq[0], seq[2]
    narrow = not lengths and hi < 2 * lo - 1
    bundle = export_tiny(shapes={"batch": [1, 3, 6], "seq": seq}, export={"lengths": lengths})
    r = write_package(bundle, tmp_path / "p", PackageOptions(name="m"))
    parity = r.manifest["models"]["m_stream"]["parity"]
    assert parity["passed"]
    assert all(lo <= c <= hi for c in parity["chunks"]), parity["chunks"]
    if not narrow:
        assert len(set(parity["chunks"])) == 5, parity["chunks"]
        assert any(n % 5 for n in parity["sequence_lengths"]), parity["sequence_lengths"]
    cases = [c for c in r.report.cases if c.mode == "stream"]
    assert len(cases) == 4
    takes = [int(t) for c in cases for t in re.findall(r"(\d+)@row", c.detail.split("[", 1)[1].split("]")[0])]
    assert max(takes) <= hi, takes
    if not narrow:
        assert len(set(takes)) >= 4, takes
    if not lengths:  # no padding possible: every request is at least the packaged minimum
        assert min(takes) >= lo, takes
    else:  # rows that run out before the others are padded (their lengths say so)
        assert min(takes) < lo, takes


def test_vocab_must_fit_the_embedding(tmp_path: Path, export_tiny: Callable[..., Path]) -> None:
    overrides, _ = MODELS["lstm_text"]
    bundle = export_tiny(**overrides)
    short = tmp_path / "short.txt"
    short.write_text("a\nb\n")
    with pytest.raises(UsageError, match="vocab_size"):
        write_package(bundle, tmp_path / "p", PackageOptions(vocab=short))
    dup = tmp_path / "dup.txt"
    dup.write_text("\n".join(["a"] * 16) + "\n")
    with pytest.raises(UsageError, match="appears on lines"):
        write_package(bundle, tmp_path / "p", PackageOptions(vocab=dup))
    assert not (tmp_path / "p").exists()


def test_fp16_variant_is_proven_at_fp16_tolerance(
    tmp_path_factory: pytest.TempPathFactory, export_tiny: Callable[..., Path]
) -> None:
    _, out = package_for("gru_tagger", tmp_path_factory, export_tiny, variants=("fp32", "fp16"))
    m = read_manifest(out)
    fp16 = m.models["gru_tagger_fp16"]
    assert fp16.precision == "fp16" and fp16.raw["tolerance"] == {"atol": 1e-2, "rtol": 1e-2}
    assert [t.dtype for t in fp16.spec.inputs if t.name.startswith("h0")] == ["float32"]  # fp32 at the edges
    graph = onnx.load(str(out / fp16.file))
    assert any(i.data_type == TensorProto.FLOAT16 for i in graph.graph.initializer)
    assert check_package(out).passed


def test_cli_package_and_check(pkg: Callable[[str], tuple[Path, Path]], tmp_path: Path) -> None:
    bundle_dir, _ = pkg("gru_tagger")
    runner = CliRunner()
    out = tmp_path / "tagger"
    r = runner.invoke(
        cli, ["package", str(bundle_dir), "-o", str(out), "--name", "tagger", "--max-batch", "4", "--tar"]
    )
    assert r.exit_code == 0, r.output
    assert "tagger_stream: stream fp32, max_batch 4" in r.output and "wrote" in r.output
    assert _config(out / "tagger" / "config.pbtxt").max_batch_size == 4
    r = runner.invoke(cli, ["package", "--check", str(out)])
    assert r.exit_code == 0, r.output
    assert "PASSED" in r.output and "FAILED" not in r.output
    r = runner.invoke(cli, ["package", "--check", str(tmp_path / "tagger.tar.gz"), "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["passed"] is True
    (out / "tagger" / "config.pbtxt").write_text((out / "tagger" / "config.pbtxt").read_text() + "\n")
    r = runner.invoke(cli, ["package", "--check", str(out)])
    assert r.exit_code == 1 and "tagger/config.pbtxt" in r.output and "modified" in r.output
    r = runner.invoke(cli, ["package", str(bundle_dir)])
    assert r.exit_code == 2 and "-o PKG" in r.output
    r = runner.invoke(cli, ["package", "--check", str(tmp_path / "missing")])
    assert r.exit_code == 1 and "not a package directory" in r.output


CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
FAST_CONFIGS = ["gru_glove_classifier", "rnn_tagger", "lstm_cell_stack"]
SLOW_CONFIGS = ["default", "lstm_bidir", "bench_reference"]


@pytest.mark.parametrize("config", [*FAST_CONFIGS, *(pytest.param(c, marks=pytest.mark.slow) for c in SLOW_CONFIGS)])
def test_every_shipped_config_packages(config: str, tmp_path: Path) -> None:
    """The issue's bar for every shipped config: the package passes --check, its configs parse with Triton's
    protobuf (part of --check), its stream model (unidirectional configs) passed the interleaved proof, and
    its graphs match PyTorch (the writer's proof, recorded per model).
    """
    from seqdeploy.export.stage import export_model

    export_model(CONFIG_DIR / f"{config}.toml", tmp_path / "export")
    result = write_package(tmp_path / "export", tmp_path / "pkg", PackageOptions(name=config))
    assert result.report.passed
    check = check_package(tmp_path / "pkg")
    assert check.passed, check.render()
    bundle = Bundle.load(tmp_path / "export")
    models = result.manifest["models"]
    assert (f"{config}_stream" in models) == bundle.streamable
    for entry in models.values():
        assert entry["parity"]["passed"] and entry["parity"]["comparisons"] >= 4
    if bundle.streamable:
        assert models[f"{config}_stream"]["parity"]["mode"] == "stream"
    if config == "gru_glove_classifier":  # the shipped vocabulary was found through the recorded vectors path
        assert result.manifest["text"]["vocab_size"] == 64


def _user_module_toml(path: Path, cls: str, call: str, inputs: str, kwargs: str = "{}") -> Path:
    from tests import tutorial_models

    path.write_text(
        f'[model]\nsource = "python"\nentry = "{Path(tutorial_models.__file__)}:{cls}"\nkwargs = {kwargs}\n'
        f'[io]\ncall = "{call}"\n{inputs}\n[shapes]\nbatch = [1, 2, 4]\nseq = [1, 8, 24]\n'
    )
    return path


def test_a_users_own_module_packages_through_the_runner(tmp_path: Path) -> None:
    """source = "python": nothing in the package path may assume a zoo model (graphs by surgery, reference
    through the bundle's runner, facts from the IOSpec)."""
    from seqdeploy.export.stage import export_model

    lstm = _user_module_toml(
        tmp_path / "lstm.toml",
        "LSTMNet",
        "(input, (h0, c0)) -> (output, (h_n, c_n))",
        '[io.inputs]\ninput = { dims = ["seq", "batch", 10] }\n'
        'h0 = { dims = [2, "batch", 20] }\nc0 = { dims = [2, "batch", 20] }\n',
        "{ num_layers = 2 }",
    )
    export_model(lstm, tmp_path / "e-lstm")
    r = write_package(tmp_path / "e-lstm", tmp_path / "p-lstm", PackageOptions(name="net"))
    assert set(r.manifest["models"]) == {"net", "net_stream"} and r.report.passed
    assert r.manifest["model"]["source"] == "python" and r.manifest["model"]["summary"]["class"] == "LSTMNet"
    assert check_package(tmp_path / "p-lstm").passed
    p = load(tmp_path / "p-lstm", model="net_stream")
    x = np.random.default_rng(0).standard_normal((1, 9, 10)).astype(np.float32)
    s = p.stream()
    outs = [s.feed(x[:, :4]), s.feed(x[:, 4:])]
    full = load(tmp_path / "p-lstm").predict(x)
    np.testing.assert_allclose(np.concatenate([o["output"] for o in outs], axis=1), full["output"], atol=1e-5)

    sentiment = _user_module_toml(
        tmp_path / "sent.toml",
        "SentimentNet",
        "(input, (h0, c0)) -> (output, (h_n, c_n))",
        '[io.inputs]\ninput = { dtype = "int64", dims = ["seq", "batch"], range = [0, 51] }\n'
        'h0 = { dims = [2, "batch", 6] }\nc0 = { dims = [2, "batch", 6] }\n',
    )
    export_model(sentiment, tmp_path / "e-sent")
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["<pad>", "<unk>", *(f"w{i}" for i in range(50))]) + "\n")
    r = write_package(tmp_path / "e-sent", tmp_path / "p-sent", PackageOptions(name="sent", vocab=vocab))
    assert set(r.manifest["models"]) == {"sent"} and "bidirectional" in r.manifest["stream"]["reason"]
    assert r.manifest["text"]["vocab_size"] == 52
    out = load(tmp_path / "p-sent").predict_text(["w1 w2 w49", "w3 unknown"])
    assert out["output"].shape == (2, 3) and out["ids"][1].tolist()[:2] == [5, 1]
    short = tmp_path / "short.txt"
    short.write_text("a\nb\n")
    with pytest.raises(UsageError, match=r"token ids in \[0, 51\]"):
        write_package(tmp_path / "e-sent", tmp_path / "p2", PackageOptions(vocab=short))
