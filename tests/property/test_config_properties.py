"""Generated configs, valid and invalid, written as TOML and exported: exit 0/1/2/3, never 70.

The generator starts from a near-valid config of tiny sizes and, with a small probability per field,
puts a wrong value there (a wrong type, zero, negative, a huge size, an unknown key, an impossible
combination). Roughly half the cases are valid and export for real; every export that says PASSED must
then verify (exit 0) — the bundle's promise.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from seqdeploy.config import CELLS
from tests.faults._cli import to_toml
from tests.property._support import bounded, check_exit, run_in_process, run_subprocess

BAD_VALUES = st.sampled_from([0, -1, 10**12, 1.5, "4", True, [], {"x": 1}, "lstmx", [1, 2]])
HUGE = st.sampled_from([10**9, 10**12, 2**62])


@st.composite
def field(draw: st.DrawFn, good: st.SearchStrategy[Any], p_bad: int = 12) -> Any:
    """A good value, or (about one time in ``p_bad``) a wrong one."""
    if draw(st.integers(0, p_bad - 1)) == 0:
        return draw(st.one_of(BAD_VALUES, HUGE))
    return draw(good)


@st.composite
def configs(draw: st.DrawFn) -> dict[str, Any]:
    small = st.integers(1, 5)
    cell = draw(field(st.sampled_from(CELLS)))
    model: dict[str, Any] = {"cell": cell}
    if isinstance(cell, str) and cell.endswith("_cell") and draw(st.booleans()):
        model["hidden_sizes"] = draw(field(st.lists(small, min_size=1, max_size=3)))
    else:
        model["hidden_size"] = draw(field(small))
        if draw(st.booleans()):
            model["num_layers"] = draw(field(st.integers(1, 2)))
    if draw(st.integers(0, 2)) == 0:
        vocab = draw(field(st.integers(2, 30)))
        emb: dict[str, Any] = {"vocab_size": vocab, "dim": draw(field(small))}
        if draw(st.booleans()):
            hi = vocab - 1 if isinstance(vocab, int) and not isinstance(vocab, bool) and 2 <= vocab <= 30 else 3
            emb["padding_idx"] = draw(field(st.integers(0, hi)))
        model["embedding"] = emb
    else:
        model["input_size"] = draw(field(small))
    for key in ("bidirectional", "batch_first"):
        if draw(st.booleans()):
            model[key] = draw(field(st.booleans()))
    if draw(st.integers(0, 3)) == 0:
        model["dropout"] = draw(field(st.sampled_from([0.0, 0.25, 0.5])))
    if draw(st.integers(0, 2)) == 0:
        task = draw(field(st.sampled_from(["none", "classify", "tag"])))
        head: dict[str, Any] = {"task": task}
        if task != "none" or draw(st.integers(0, 5)) == 0:
            head["num_classes"] = draw(field(st.integers(1, 4)))
        if draw(st.integers(0, 3)) == 0:
            head["pooling"] = draw(field(st.sampled_from(["last", "mean", "max"])))
        model["head"] = head
    doc: dict[str, Any] = {"model": model}
    export: dict[str, Any] = {}
    for key, good in (
        ("opset", st.sampled_from([14, 17, 20, 13, 21])),
        ("lengths", st.booleans()),
        ("initial_state", st.booleans()),
        ("step", st.booleans()),
    ):
        if draw(st.booleans()):
            export[key] = draw(field(good))
    if export:
        doc["export"] = export

    def triple(hi: int) -> st.SearchStrategy[list[int]]:
        return st.lists(st.integers(1, hi), min_size=3, max_size=3).map(sorted)

    shapes: dict[str, Any] = {
        "batch": draw(field(triple(4), p_bad=15)),
        "seq": draw(field(triple(8), p_bad=15)),
    }
    if draw(st.integers(0, 15)) == 0:
        shapes["seq"] = [1, 4, draw(HUGE)]  # ok as a config; must be refused by the memory budget
    doc["shapes"] = shapes
    if draw(st.integers(0, 12)) == 0:
        table = draw(st.sampled_from(["model", "shapes", "export"]))
        doc.setdefault(table, {})[draw(st.sampled_from(["hiden_size", "seqs", "x"]))] = 1
    return doc


_counter = itertools.count()


def _export_and_verify(name: str, doc: dict[str, Any], root: Path, runner: Any) -> None:
    n = next(_counter)
    cfg = root / f"c{n}.toml"
    cfg.write_text(to_toml(doc), encoding="utf-8")
    out = root / f"e{n}"
    args = ("export", cfg, "-o", out)
    code, text = runner(args)
    check_exit(name, args, code, text)
    if code == 0:
        assert "self-check: PASSED" in text, text
        v_args = ("verify", out, "--batch", "1,2", "--seq", "1,3", "--modes", "full,chunked,batch,step")
        v_code, v_text = runner(v_args)
        check_exit(f"{name} (verify of the export)", v_args, v_code, v_text)
        assert v_code == 0, f"an export that passed its self-check does not verify:\n{v_text}"
    else:
        assert not out.exists(), "a failed export left its output"


@bounded(max_examples=80)
@given(doc=configs())
def test_any_config_exports_or_fails_cleanly(doc: dict[str, Any], tmp_path_factory: Any) -> None:
    _export_and_verify("config -> export", doc, tmp_path_factory.mktemp("cfg"), run_in_process)


@bounded(max_examples=4)
@given(doc=configs())
def test_any_config_exports_or_fails_cleanly_as_a_process(doc: dict[str, Any], tmp_path_factory: Any) -> None:
    _export_and_verify("config -> export (subprocess)", doc, tmp_path_factory.mktemp("cfg"), run_subprocess)
