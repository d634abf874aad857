"""Generated ``verify --inputs`` files: wrong names, dtypes, ranks, shapes, ids, lengths, NaN, and files
that are not an npz of arrays at all. Exit 0 (the feeds fit and parity holds), 1 (parity failed, e.g. a
NaN reference) or 2 (the feeds do not fit, named) — never 70, never a traceback.

Shapes are drawn around the right ones (batch 1-3, seq 1-4) and then perturbed, so many cases are close
misses (one axis off, a state of another batch) rather than noise. Files that are not an npz at all (an
``.npy``, an empty or truncated file) are refused naming the file.
"""

from __future__ import annotations

import io
import itertools
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from seqdeploy.manifest import Bundle
from tests.property._support import bounded, check_exit, run_in_process, run_subprocess

DTYPES = [
    "float32",
    "float32",
    "float32",
    "float64",
    "float16",
    "int64",
    "int32",
    "uint64",
    "uint8",
    "bool",
    "complex64",
]
_counter = itertools.count()


@pytest.fixture(scope="module")
def specs(property_bundles: dict[str, Path]) -> dict[str, Any]:
    return {k: Bundle.load(d).specs["sequence"] for k, d in property_bundles.items()}


@st.composite
def feeds(draw: st.DrawFn, spec: Any) -> dict[str, np.ndarray]:
    batch, seq = draw(st.integers(1, 3), label="batch"), draw(st.integers(1, 4), label="seq")
    sizes = {"batch": batch, "seq": seq}
    out: dict[str, np.ndarray] = {}
    names = [t.name for t in spec.inputs if draw(st.integers(0, 9)) > 0]  # each input missing 1 time in 10
    if draw(st.integers(0, 7)) == 0:
        names.append(draw(st.sampled_from(["extra", "h_n", "input ", "lengths", "c0"])))
    for name in dict.fromkeys(names):
        t = spec.tensor(name) if spec.has(name) else None
        shape = list(t.shape(sizes)) if t is not None else [batch]
        if draw(st.integers(0, 4)) == 0:  # perturb the shape
            how = draw(st.sampled_from(["drop", "add", "zero", "other"]))
            if how == "drop" and shape:
                shape.pop(draw(st.integers(0, len(shape) - 1)))
            elif how == "add":
                shape.append(draw(st.integers(1, 3)))
            elif shape:
                shape[draw(st.integers(0, len(shape) - 1))] = 0 if how == "zero" else draw(st.integers(1, 5))
        right = t.dtype if t is not None else "float32"
        dtype = right if draw(st.integers(0, 3)) > 0 else draw(st.sampled_from(DTYPES))
        n = int(np.prod(shape)) if shape else 1
        if (t is not None and t.value_range is not None) or name == "lengths":
            hi = seq if name == "lengths" else (t.value_range[1] if t is not None else 3)
            lo, top = (0, seq + 1) if name == "lengths" else (-2, int(hi) + 2)
            values = np.asarray(draw(st.lists(st.integers(lo, top), min_size=n, max_size=n)) if n <= 64 else [1] * n)
            if draw(st.integers(0, 2)) > 0:  # mostly in range
                values = np.clip(values, 1 if name == "lengths" else 0, hi)
        else:
            values = np.random.default_rng(draw(st.integers(0, 2**16))).standard_normal(n)
            if n and draw(st.integers(0, 6)) == 0:
                values[draw(st.integers(0, n - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf, 1e30]))
        with np.errstate(all="ignore"):
            out[name] = values.astype(dtype).reshape(shape)
    return out


def _write(path: Path, arrays: dict[str, np.ndarray], how: str) -> Path:
    if how == "npz":
        np.savez(path, **arrays)
    elif how == "npz-compressed":
        np.savez_compressed(path, **arrays)
    elif how == "npz-with-a-text-member":  # a zip that is not all .npy members
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        with zipfile.ZipFile(buf, "a") as z:
            z.writestr("notes.txt", "not an array")
        path.write_bytes(buf.getvalue())
    elif how == "text":
        path.write_text("input 1 2 3\n")
    return path


@bounded(max_examples=250)
@given(data=st.data())
def test_any_inputs_file_fits_or_is_refused_naming_the_problem(
    data: st.DataObject, property_bundles: dict[str, Path], specs: dict[str, Any], tmp_path_factory: Any
) -> None:
    kind = data.draw(st.sampled_from(sorted(specs)), label="bundle")
    arrays = data.draw(feeds(specs[kind]), label="feeds")
    how = data.draw(st.sampled_from(["npz"] * 6 + ["npz-compressed", "npz-with-a-text-member", "text"]), label="file")
    f = _write(tmp_path_factory.mktemp("f") / f"x{next(_counter)}.npz", arrays, how)
    args = ["verify", str(property_bundles[kind]), "--inputs", str(f), "--modes", "full,batch,padding,chunked"]
    code, text = run_in_process(args)
    check_exit("feeds -> verify --inputs", args, code, text)
    assert code != 3
    if how in ("text",):
        assert code == 2, text


@bounded(max_examples=4)
@given(data=st.data())
def test_any_inputs_file_fits_or_is_refused_as_a_process(
    data: st.DataObject, property_bundles: dict[str, Path], specs: dict[str, Any], tmp_path_factory: Any
) -> None:
    kind = data.draw(st.sampled_from(sorted(specs)), label="bundle")
    f = _write(tmp_path_factory.mktemp("f") / "x.npz", data.draw(feeds(specs[kind]), label="feeds"), "npz")
    args = ["verify", str(property_bundles[kind]), "--inputs", str(f)]
    code, text = run_subprocess(args)
    check_exit("feeds -> verify --inputs (subprocess)", args, code, text)


def test_good_feeds_pass_and_a_nan_reference_fails(property_bundles: dict[str, Path], tmp_path: Path) -> None:
    """The two outcomes besides 2 that the property allows, each shown to really happen (must-pass and
    must-fail), so the property cannot hold by everything being refused.
    """
    from seqdeploy.feeds import make_feeds

    d = property_bundles["lstm"]
    good = make_feeds(Bundle.load(d).specs["sequence"], 2, 3, seed=1)
    code, text = run_in_process(["verify", d, "--inputs", _write(tmp_path / "good.npz", good, "npz")])
    assert code == 0, text
    bad = dict(good)
    bad["input"] = bad["input"].copy()
    bad["input"][0, 0, 0] = np.nan
    code, text = run_in_process(["verify", d, "--inputs", _write(tmp_path / "nan.npz", bad, "npz")])
    assert code == 1 and "the reference produced NaN/Inf" in text, text


def _npy(path: Path) -> None:
    np.save(path, np.zeros((3, 1, 5), np.float32))


def _truncated(path: Path) -> None:
    buf = io.BytesIO()
    np.savez(buf, input=np.zeros((3, 1, 5), np.float32))
    path.write_bytes(buf.getvalue()[:100])


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("x.npy", _npy),
        ("empty.npz", lambda p: p.write_bytes(b"")),
        ("truncated.npz", _truncated),
    ],
    ids=["npy-not-npz", "empty-file", "truncated-npz"],
)
def test_inputs_that_are_not_an_npz_of_arrays(property_bundles: dict[str, Path], tmp_path: Path, name, make) -> None:
    f = tmp_path / name
    make(f)
    code, text = run_in_process(["verify", property_bundles["lstm"], "--inputs", f])
    assert code == 2 and "Traceback" not in text, text
    assert name in text
