"""TensorRT engines in a package, on the CPU: FAKE engines recorded the way ``seqdeploy compile`` records them.

No machine here has TensorRT or a GPU, so the engine files are stand-ins: some are a few bytes, and for the
runtime's glue test the "engine" is the bundle's own ONNX graph, run by a fake runner with ONNX Runtime in the
bundle's layout. What is tested: the package layout, ``config.pbtxt`` through Triton's protobuf, the manifest's
hashing, ``package --check`` (and mutations it must refuse), which engines are left out, and the runtime's
``auto`` fallback / ``trt`` refusals and its layout conversion. What is not: TensorRT itself, Polygraphy's
runner, the compute-capability probe.
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

import seqdeploy.runtime._predictor as predictor_module
import seqdeploy.runtime._trt as trt_module
from seqdeploy._atomic import bundle_transaction
from seqdeploy.cli import cli
from seqdeploy.engine.plan import axis_bounds, graph_file, profile_for, tolerances_for
from seqdeploy.engine.target import GpuTarget, engine_entry, engine_path
from seqdeploy.errors import BackendUnavailable, InputError, UsageError
from seqdeploy.manifest import DIGEST_FIELD, Bundle, manifest_digest, sha256
from seqdeploy.package.check import check_package
from seqdeploy.package.engines import check_trt_config
from seqdeploy.package.manifest import PACKAGE_MANIFEST, file_table, read_manifest
from seqdeploy.package.writer import PackageOptions, write_package
from seqdeploy.runtime import load, open_package
from seqdeploy.runtime._trt import TrtTarget

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:google.protobuf")

T4 = ("7.5", "10.16.1.11", "Tesla T4")
A10 = ("8.6", "10.16.1.11", "NVIDIA A10")


def record_engine(
    bundle_dir: Path,
    target: tuple[str, str, str] = T4,
    *,
    data: bytes | None = None,
    onnx_sha256: str | None = None,
    profile: tuple[tuple[int, int], tuple[int, int], tuple[int, int]] | None = None,
) -> dict[str, Any]:
    """Record a fake engine in the bundle exactly as ``seqdeploy compile`` does (engine/compile.py): the file in a
    staged ``engines/`` (earlier engines linked over), ``engine_entry`` in ``manifest["engines"]``, one bundle
    transaction. ``data`` defaults to the graph's own bytes (a stand-in the fake runner can execute).
    """
    b = Bundle.load(bundle_dir)
    spec = b.specs["sequence"]
    onnx = graph_file(b.manifest, "fp32")
    bounds = axis_bounds(b.config.shapes.batch, b.config.shapes.seq, profile)
    plan = {
        "graph": "sequence",
        "precision": "fp32",
        "onnx": onnx,
        "onnx_sha256": onnx_sha256 or sha256(b.file(onnx)),
        "profiles": [profile_for(spec, bounds)],
        "tolerances": tolerances_for(spec, "fp32"),
    }
    gpu = GpuTarget(target[1], target[0], target[2], "12.8")
    rel = engine_path(plan, gpu)
    others = [e for e in b.manifest.get("engines") or [] if e["file"] != rel]
    with bundle_transaction(bundle_dir) as tx:
        staged = tx.stage("engines")
        staged.mkdir()
        for e in others:
            shutil.copy2(b.file(e["file"]), staged / Path(e["file"]).name)
        name = rel.split("/", 1)[1]
        (staged / name).write_bytes(data if data is not None else b.file(onnx).read_bytes())
        entry = engine_entry(
            file=rel,
            plan=plan,
            target=gpu,
            plan_sha256=sha256(staged / name),
            build_seconds=1.5,
            timing_cache=None,
            builder={"workspace_gib": 2, "optimization_level": 3, "tf32": False},
            verified={
                "backend": "trt",
                "batches": [bounds["batch"].min, bounds["batch"].max],
                "seqs": [bounds["seq"].min, bounds["seq"].max],
                "modes": ["full"],
                "comparisons": 8,
                "atol": 1e-4,
                "rtol": 1e-3,
                "max_abs_vs_fp32": {"output": 2e-6},
                "seed": 0,
            },
        )
        manifest = copy.deepcopy(b.manifest)
        manifest["engines"] = [*others, entry]
        tx.commit(manifest)
    return entry


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory, export_tiny: Callable[..., Path]) -> tuple[Path, Path]:
    """A time-major LSTM export with lengths and states, two fake engines (T4, A10), and its package."""
    src = export_tiny(export={"lengths": True})
    root = tmp_path_factory.mktemp("trt")
    bundle = root / "bundle"
    shutil.copytree(src, bundle)
    record_engine(bundle, T4)
    record_engine(bundle, A10, data=b"FAKE PLAN FOR 8.6")
    out = root / "pkg"
    write_package(bundle, out, PackageOptions(name="m", tar=True))
    return bundle, out


def _config(path: Path) -> Any:
    return text_format.Parse(path.read_text(), mc.ModelConfig())


def test_engines_become_a_tensorrt_model(compiled: tuple[Path, Path]) -> None:
    bundle, out = compiled
    engines = {e["compute_capability"]: e for e in Bundle.load(bundle).manifest["engines"]}
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["m", "m_stream", "m_trt"]
    cfg = _config(out / "m_trt" / "config.pbtxt")
    assert cfg.name == "m_trt" and cfg.platform == "tensorrt_plan"
    # The engines keep the export's layout (time-major input, states batch on axis 1): no Triton batching.
    assert cfg.max_batch_size == 0 and cfg.WhichOneof("scheduling_choice") is None and not cfg.model_warmup
    assert dict(cfg.cc_model_filenames) == {cc: Path(e["file"]).name for cc, e in engines.items()}
    dims = {t.name: (mc.DataType.Name(t.data_type), list(t.dims)) for t in cfg.input}
    assert dims == {
        "input": ("TYPE_FP32", [-1, -1, 5]),
        "lengths": ("TYPE_INT64", [-1]),
        "h0": ("TYPE_FP32", [1, -1, 4]),
        "c0": ("TYPE_FP32", [1, -1, 4]),
    }
    assert [t.name for t in cfg.output] == ["output", "h_n", "c_n"]
    assert [g.kind for g in cfg.instance_group] == [mc.ModelInstanceGroup.KIND_GPU]
    m = read_manifest(out)
    trt = m.trt_models["m_trt"]
    assert trt.for_model == "m" and m.trt_for("m") is trt and trt.ranges == {"batch": (1, 6), "seq": (1, 24)}
    for e in trt.engines:
        # the packaged file is the proven engine: the package's file table, the record and the bundle agree
        assert m.files[e["file"]]["sha256"] == e["plan_sha256"] == engines[e["compute_capability"]]["plan_sha256"]
        assert e["source_file"] == engines[e["compute_capability"]]["file"] and e["verified"]["comparisons"] == 8
    assert trt.raw["inputs"][0]["axes"] == ["time", "batch", "feature"]
    assert "## TensorRT engines" in (out / "README.md").read_text()
    for target in (out, out.with_name("pkg.tar.gz")):
        check = check_package(target)
        assert check.passed, check.render()
        assert any(i.name.startswith("m_trt/config.pbtxt") for i in check.items)
    with pytest.raises(UsageError, match="TensorRT form of 'm'"):
        load(out, model="m_trt")


def _resign(pkg: Path) -> None:
    """Rewrite the file table and the digest, as a hand-made package would: only the semantic checks remain."""
    path = pkg / PACKAGE_MANIFEST
    doc = json.loads(path.read_text())
    doc["files"] = file_table(pkg)
    doc[DIGEST_FIELD] = manifest_digest(doc)
    path.write_text(json.dumps(doc, indent=2))


@pytest.mark.parametrize(
    ("old", "new", "expect"),
    [
        ("max_batch_size: 0", "max_batch_size: 4", "must be 0: the engine keeps the bundle's layout"),
        ('key: "7.5"', 'key: "8.0"', "are not the compute capabilities the engines were built for"),
        ("dims: [ -1, -1, 5 ]", "dims: [ -1, 5 ]", "the engine's full shape is [-1, -1, 5]"),
        ("data_type: TYPE_INT64", "data_type: TYPE_INT32", "'lengths' is TYPE_INT32, the engine's is int64"),
        ('platform: "tensorrt_plan"', 'platform: "onnxruntime_onnx"', "expected platform 'tensorrt_plan'"),
        ("instance_group {", "dynamic_batching {\n}\ninstance_group {", "has dynamic_batching"),
        ("max_batch_size: 0", "max_batch_zise: 0", "does not parse as Triton's ModelConfig"),
    ],
    ids=["batched", "cc-key", "dims", "dtype", "platform", "scheduler", "typo"],
)
def test_check_refuses_each_tensorrt_config_mistake(
    compiled: tuple[Path, Path], tmp_path: Path, old: str, new: str, expect: str
) -> None:
    pkg = tmp_path / "pkg"
    shutil.copytree(compiled[1], pkg)
    path = pkg / "m_trt" / "config.pbtxt"
    text = path.read_text()
    assert old in text, f"mutation anchor {old!r} not in the generated config"
    path.write_text(text.replace(old, new, 1))
    _resign(pkg)
    check = check_package(pkg)
    assert not check.passed
    problems = [p for i in check.items for p in i.problems]
    assert any(expect in p for p in problems), problems


def test_a_plan_that_is_not_the_recorded_engine_is_refused(compiled: tuple[Path, Path], tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    shutil.copytree(compiled[1], pkg)
    m = read_manifest(pkg)
    plan = pkg / m.trt_models["m_trt"].engines[0]["file"]
    plan.write_bytes(b"another engine")
    check = check_package(pkg)  # the file table catches it first, naming the file
    assert not check.passed and plan.name in check.render()
    r = CliRunner().invoke(cli, ["package", "--check", str(pkg)])
    assert r.exit_code == 1 and plan.name in r.output
    _resign(pkg)  # a re-signed table still disagrees with the engine's recorded plan_sha256
    problems = check_trt_config(
        pkg / "m_trt",
        spec=m.trt_models["m_trt"].spec,
        engines=m.trt_models["m_trt"].engines,
        ranges=m.trt_models["m_trt"].ranges,
        files=read_manifest(pkg).files,
    )
    assert any("is not the recorded engine" in p for p in problems), problems


def test_stale_unproven_duplicate_and_refused_engines_are_left_out(
    tmp_path: Path, export_tiny: Callable[..., Path]
) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(export_tiny(export={"lengths": True}), bundle)
    record_engine(bundle, T4, onnx_sha256="0" * 64)  # built from an earlier model.onnx
    r = write_package(bundle, tmp_path / "a", PackageOptions(name="m"))
    assert not (tmp_path / "a" / "m_trt").exists() and read_manifest(tmp_path / "a").trt_models == {}
    assert any("built from an earlier model.onnx" in w for w in r.warnings), r.warnings
    record_engine(bundle, T4)
    record_engine(bundle, ("7.5", "10.9.0.34", "Tesla T4"), data=b"older TensorRT")
    r = write_package(bundle, tmp_path / "b", PackageOptions(name="m"))
    trt = read_manifest(tmp_path / "b").trt_models["m_trt"]
    assert [e["tensorrt"] for e in trt.engines] == ["10.16.1.11"]  # one file per capability: the newest TensorRT
    assert any("serves compute capability 7.5" in w for w in r.warnings), r.warnings
    r = write_package(bundle, tmp_path / "c", PackageOptions(name="m", engines=False))
    assert read_manifest(tmp_path / "c").trt_models == {} and check_package(tmp_path / "c").passed
    code = CliRunner().invoke(cli, ["package", str(bundle), "-o", str(tmp_path / "d"), "--name", "m", "--no-engines"])
    assert code.exit_code == 0, code.output
    assert not (tmp_path / "d" / "m_trt").exists()


class OnnxAsEngine:
    """A fake TensorRT runner: the "plan" is the bundle's ONNX graph, run by ONNX Runtime in the bundle's layout."""

    def __init__(self, plan: bytes) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(plan, providers=["CPUExecutionProvider"])
        self.calls: list[dict[str, tuple[int, ...]]] = []

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.calls.append({n: a.shape for n, a in feeds.items()})
        names = [o.name for o in self.session.get_outputs()]
        return dict(zip(names, self.session.run(names, dict(feeds)), strict=True))


def test_runtime_auto_falls_back_and_trt_says_why(
    compiled: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, out = compiled
    # This machine: no TensorRT. auto falls back (and says why); trt refuses.
    p = load(out)
    assert p.backend == "ort-cpu" and any("TensorRT" in n for n in p.backend_notes), p.backend_notes
    with pytest.raises(BackendUnavailable, match="TensorRT is not installed"):
        load(out, backend="trt")
    assert load(out, model="m_stream").backend == "ort-cpu"  # no engine for the stream model: noted, not fatal
    # A GPU of another compute capability, then another TensorRT version: no engine runs; each is named.
    monkeypatch.setattr(trt_module, "probe", lambda: TrtTarget("10.16.1.11", "9.0"))
    p = load(out)
    assert p.backend == "ort-cpu" and "compute capability 7.5" in p.backend_notes[0]
    with pytest.raises(BackendUnavailable, match=r"(?s)compute capability 7\.5.*compute capability 8\.6"):
        load(out, backend="trt")
    monkeypatch.setattr(trt_module, "probe", lambda: TrtTarget("10.9.0.34", "7.5"))
    with pytest.raises(BackendUnavailable, match=r"built with TensorRT 10\.16\.1\.11, this is TensorRT 10\.9\.0\.34"):
        load(out, backend="trt")
    # The right GPU, but TensorRT cannot load the plan (here: it is not installed for Polygraphy to use).
    monkeypatch.setattr(trt_module, "probe", lambda: TrtTarget("10.16.1.11", "7.5"))
    assert load(out).backend == "ort-cpu"
    with pytest.raises(BackendUnavailable, match="TensorRT could not load the engine"):
        load(out, backend="trt")


def test_engines_are_read_only_when_they_can_run(compiled: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """backend auto on a CPU machine must not hold every plan in memory; on a GPU only the plan built for it."""
    _, out = compiled
    pkg = open_package(out, [None], engines=True)
    trt = pkg.manifest.trt_for("m")
    assert trt is not None
    by_cc = {str(e["compute_capability"]): str(e["file"]) for e in trt.engines}
    assert set(by_cc) == {"7.5", "8.6"}
    assert pkg.manifest.model(None).file in pkg.data  # the graph is read
    assert not set(by_cc.values()) & set(pkg.data)  # no TensorRT here: no plan is read
    monkeypatch.setattr(trt_module, "probe", lambda: TrtTarget("10.16.1.11", "7.5"))
    data = open_package(out, [None], engines=True).data
    assert by_cc["7.5"] in data and by_cc["8.6"] not in data
    monkeypatch.setattr(trt_module, "probe", lambda: TrtTarget("10.16.1.11", "9.0"))
    assert not set(by_cc.values()) & set(open_package(out, [None], engines=True).data)
    assert load(out).backend == "ort-cpu"  # and auto says why, from the same probe
    assert not set(by_cc.values()) & set(open_package(out, [None], engines=False).data)


def test_runtime_trt_path_with_a_fake_engine(compiled: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """The glue around the engine: selection by compute capability, batch-first <-> the export's layout, the
    profile check, the narrowed signature. The 'engine' is the bundle's own graph run by ONNX Runtime."""
    _, out = compiled
    runners: list[OnnxAsEngine] = []

    def make(plan: bytes) -> OnnxAsEngine:
        runners.append(OnnxAsEngine(plan))
        return runners[-1]

    monkeypatch.setattr(trt_module, "probe", lambda: TrtTarget("10.16.1.11", "7.5"))
    monkeypatch.setattr(predictor_module, "_TRT_RUNNER", make)
    p = load(out)  # auto picks the engine built for 7.5
    assert p.backend == "trt" and p.backend_notes == ()
    ref = load(out, backend="ort-cpu")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 7, 5)).astype(np.float32)
    lengths = np.array([7, 2, 5])
    got, want = p.predict(x, lengths=lengths), ref.predict(x, lengths=lengths)
    assert set(got) == set(want)
    for n in want:
        assert got[n].shape == want[n].shape  # batch-first again
        np.testing.assert_allclose(got[n], want[n], atol=1e-5, rtol=1e-4, err_msg=n)
    # the engine saw the export's layout: time-major input, states with the batch on axis 1
    assert runners[-1].calls[-1]["input"] == (7, 3, 5) and runners[-1].calls[-1]["h0"] == (1, 3, 4)
    assert p.signature.max_batch_size == 6 and p.signature.seq_range == (1, 24)
    with pytest.raises(InputError, match="outside the packaged range"):
        p.predict(np.zeros((1, 25, 5), np.float32))


def test_a_narrower_engine_profile_narrows_what_the_runtime_accepts(
    tmp_path: Path, export_tiny: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(export_tiny(export={"lengths": True}), bundle)
    record_engine(bundle, T4, profile=((1, 2), (2, 8), (4, 16)))  # compile --shapes 1x2,2x8,4x16
    write_package(bundle, tmp_path / "p", PackageOptions(name="m"))
    trt = read_manifest(tmp_path / "p").trt_models["m_trt"]
    assert trt.ranges == {"batch": (1, 4), "seq": (2, 16)}
    monkeypatch.setattr(trt_module, "probe", lambda: TrtTarget("10.16.1.11", "7.5"))
    monkeypatch.setattr(predictor_module, "_TRT_RUNNER", OnnxAsEngine)
    p = load(tmp_path / "p", backend="trt")
    assert p.signature.max_batch_size == 4 and p.signature.seq_range == (2, 16)
    with pytest.raises(InputError, match="exceeds model 'm''s max_batch_size 4"):
        p.predict(np.zeros((5, 3, 5), np.float32))
    with pytest.raises(InputError, match=r"outside the packaged range \[2, 16\]"):
        p.predict(np.zeros((1, 1, 5), np.float32))
    assert p.predict(np.zeros((4, 16, 5), np.float32))["output"].shape[:2] == (4, 16)
    # The session's own profile check (a caller going around the signature): named per axis, before any launch.
    with pytest.raises(InputError, match="outside the profile"):
        p.execute({"input": np.zeros((5, 3, 5), np.float32), "lengths": np.full(5, 3), **p.signature.zero_state(5)})


def test_the_tensorrt_path_imports_no_torch(compiled: tuple[Path, Path]) -> None:
    """The runtime's TensorRT path (probe, engine selection, layout conversion) with torch and onnx blocked."""
    from tests.integration._packages import run_blocked

    code = f"""
import numpy as np
import seqdeploy.runtime._predictor as pm, seqdeploy.runtime._trt as t
from seqdeploy.errors import BackendUnavailable
from seqdeploy.runtime import load, open_package
p = load({str(compiled[1])!r})
assert p.backend == "ort-cpu" and p.backend_notes, p.backend_notes
class Fake:
    def __init__(self, plan):
        import onnxruntime as ort
        self.s = ort.InferenceSession(plan, providers=["CPUExecutionProvider"])
    def infer(self, feeds):
        names = [o.name for o in self.s.get_outputs()]
        return dict(zip(names, self.s.run(names, dict(feeds))))
t.probe = lambda: t.TrtTarget("10.16.1.11", "7.5")
pm._TRT_RUNNER = Fake
p = load({str(compiled[1])!r}, backend="trt")
assert p.backend == "trt"
print(p.predict(np.zeros((2, 3, 5), np.float32))["h_n"].shape)
"""
    r = run_blocked(code, ("torch", "onnx", "onnxscript"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "(2, 1, 4)"
