"""Generated mutations of real exported bundles' manifests, read by verify, profile and optimize.

A mutation deletes a key, or replaces a value anywhere in the manifest (config, graphs, specs, files,
variants, self_check...) with another JSON value: a wrong type, an empty container, a huge or negative
number, a non-finite float, a path out of the bundle, a name from elsewhere in the manifest. Half the
cases re-stamp the manifest's digest (a buggy writer rather than a hand edit), so the schema, spec and
file checks are exercised, not only the digest. Exit 0/1/2/3 always; never 70 or a traceback.
"""

from __future__ import annotations

import itertools
import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seqdeploy.manifest import write_manifest
from tests.property._support import bounded, check_exit, run_in_process, run_subprocess

Json = Any
NAMES = ["", "model.onnx", "model.pt", "../model.onnx", "/etc/passwd", "h_n", "output", "seq", "batch", "int8"]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, 1, -1, 2, 7, 10**12, 2**63, -(2**63)]),
    st.sampled_from([0.5, -0.0, 1e308, math.inf, -math.inf, math.nan]),
    st.sampled_from(NAMES),
    st.text(max_size=6),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(NAMES), inner, max_size=3)),
    max_leaves=6,
)


def _paths(node: Json, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.extend(_paths(v, (*prefix, i)))
    return out


@st.composite
def mutations(draw: st.DrawFn, manifest: Json) -> list[tuple[str, tuple[Any, ...], Json]]:
    """1-3 of (op, path, value): op is delete, replace, or copy (another existing value moved here)."""
    paths = _paths(manifest)
    out = []
    for _ in range(draw(st.integers(1, 3))):
        path = paths[draw(st.integers(0, len(paths) - 1))]
        op = draw(st.sampled_from(["delete", "replace", "replace", "copy"]))
        if op == "copy":
            src = paths[draw(st.integers(0, len(paths) - 1))]
            out.append(("replace", path, _get(manifest, src)))
        else:
            out.append((op, path, draw(VALUES) if op == "replace" else None))
    return out


def _get(node: Json, path: tuple[Any, ...]) -> Json:
    for k in path:
        node = node[k]
    return node


def _apply(manifest: Json, muts: list[tuple[str, tuple[Any, ...], Json]]) -> Json:
    m = json.loads(json.dumps(manifest))
    for op, path, value in muts:
        try:
            parent = _get(m, path[:-1])
            key = path[-1]
            if op == "delete":
                del parent[key]
            else:
                parent[key] = json.loads(json.dumps(value))
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or retyped this path
    return m


COMMANDS = {
    "verify": ("verify", "{d}", "--batch", "1,2", "--seq", "2", "--modes", "full,chunked,step"),
    "verify-sweep": ("verify", "{d}", "--modes", "full", "--json", "{d}.json"),  # the manifest's own [shapes]
    "optimize": ("optimize", "{d}", "--int8"),
    "profile": ("profile", "{d}", "--iters", "1", "--warmup", "0", "--batch", "1", "--seq", "2"),
}
_counter = itertools.count()


@pytest.fixture(scope="module")
def manifests(property_bundles: dict[str, Path]) -> dict[str, Json]:
    return {k: json.loads((d / "manifest.json").read_text()) for k, d in property_bundles.items()}


def _case(data: st.DataObject, property_bundles: dict[str, Path], manifests: dict[str, Json], root: Path) -> Path:
    kind = data.draw(st.sampled_from(sorted(manifests)), label="bundle")
    muts = data.draw(mutations(manifests[kind]), label="mutations")
    restamp = data.draw(st.booleans(), label="restamp")
    d = root / f"b{next(_counter)}"
    shutil.copytree(property_bundles[kind], d)
    m = _apply(manifests[kind], muts)
    try:
        if not (restamp and isinstance(m, dict)):
            raise ValueError("not re-stamped")
        write_manifest(d / "manifest.json", m)
    except ValueError:  # not re-stamped, or NaN/Infinity (which a digest cannot cover): as Python writes it
        (d / "manifest.json").write_text(json.dumps(m))
    return d


@pytest.fixture
def fast_sgemm(monkeypatch: pytest.MonkeyPatch) -> None:
    """profile's sgemm reference at n=64 instead of 1024: the property is about exit codes, not rates."""
    import seqdeploy.profile.run as prun

    real = prun.sgemm_gflops
    monkeypatch.setattr(prun, "sgemm_gflops", lambda lib, n, threads: real(lib, n=64, threads=threads))


@bounded(max_examples=300)
@given(data=st.data())
def test_any_manifest_mutation_is_refused_or_runs_cleanly(
    data: st.DataObject, property_bundles: dict[str, Path], manifests: dict[str, Json], tmp_path_factory: Any,
    fast_sgemm: None,
) -> None:  # fmt: skip
    d = _case(data, property_bundles, manifests, tmp_path_factory.mktemp("m"))
    command = data.draw(st.sampled_from(["verify", "verify", "verify-sweep", "optimize", "profile"]), label="command")
    allow = data.draw(st.integers(0, 3), label="allow-modified") == 0
    args = [a.format(d=d) for a in COMMANDS[command]] + (["--allow-modified"] if allow else [])
    code, text = run_in_process(args)
    check_exit(f"manifest mutation -> {command}", args, code, text)
    report = Path(f"{d}.json")
    if report.exists():  # a report says passed only for a complete run that compared something
        rep = json.loads(report.read_text())
        assert rep["passed"] is (code == 0) and rep["partial"] is False and (rep["cases"] or not rep["passed"])


@bounded(max_examples=4)
@given(data=st.data())
def test_any_manifest_mutation_is_refused_or_runs_cleanly_as_a_process(
    data: st.DataObject, property_bundles: dict[str, Path], manifests: dict[str, Json], tmp_path_factory: Any
) -> None:
    d = _case(data, property_bundles, manifests, tmp_path_factory.mktemp("m"))
    args = [a.format(d=d) for a in COMMANDS["verify"]]
    code, text = run_subprocess(args)
    check_exit("manifest mutation -> verify (subprocess)", args, code, text)
