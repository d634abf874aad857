"""Importing a user's module (seqdeploy/models/user.py): what may be called, reloading after edits, and the
advice a failed self-check gives (export/stage.py's _explain_python_failure)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from seqdeploy.config_io import config_from_dict
from seqdeploy.errors import ConfigError, UsageError
from seqdeploy.models.user import import_entry
from seqdeploy.parity.report import CaseResult, ParityReport

NET = """
from torch import nn
from helper import WIDTH
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(3, WIDTH)
"""


def _cfg(base: Path, entry: str, **export: Any) -> Any:
    raw: dict[str, Any] = {
        "model": {"source": "python", "entry": entry},
        "io": {"call": "(input) -> output", "inputs": {"input": {"dims": ["seq", "batch", 3]}}},
    }
    if export:
        raw["export"] = export
    return config_from_dict(raw, base_dir=str(base))


def test_a_reload_sees_edits_of_the_entry_and_its_neighbours(tmp_path: Path):
    """R8: only the entry file was read again; `helper` stayed cached (stale code in a notebook), and every load
    left one more seqdeploy_user_* module behind."""
    (tmp_path / "net.py").write_text(NET)
    (tmp_path / "helper.py").write_text("WIDTH = 4\n")
    cfg = _cfg(tmp_path, "net.py:Net")
    factory, _ = import_entry(cfg)
    assert factory().rnn.hidden_size == 4
    (tmp_path / "helper.py").write_text("WIDTH = 6\n")
    factory, _ = import_entry(cfg)
    assert factory().rnn.hidden_size == 6
    for _ in range(3):
        import_entry(cfg)
    mine = [
        n
        for n, m in list(sys.modules.items())
        if n.startswith("seqdeploy_user_") and getattr(m, "__file__", None) == str(tmp_path / "net.py")
    ]
    assert len(mine) == 1  # one per file, not one per load (other tests' files have their own)
    assert "helper" in sys.modules
    sys.modules.pop("helper")


def test_a_second_config_gets_its_own_neighbours_not_the_first_ones(tmp_path: Path):
    """Only a dotted entry evicted another entry's modules (its own package): b/net.py reused a/'s `helper`,
    so B was built with A's width, and the self-check, built the same way, passed on the wrong model."""
    import inspect

    a, b = tmp_path / "a", tmp_path / "b"
    for d, width in ((a, 4), (b, 8)):
        d.mkdir()
        (d / "net.py").write_text(NET)
        (d / "helper.py").write_text(f"WIDTH = {width}\n")
    try:
        factory_a, _ = import_entry(_cfg(a, "net.py:Net"))
        model_a = factory_a()
        assert model_a.rnn.hidden_size == 4
        factory_b, info_b = import_entry(_cfg(b, "net.py:Net"))
        assert factory_b().rnn.hidden_size == 8
        assert sys.modules["helper"].__file__ == str(b / "helper.py")
        assert info_b.source_files == (str(b / "net.py"),)
        # A's model, built before, still finds its own module (inspect, pickling look it up by name).
        assert inspect.getsourcefile(type(model_a)) == str(a / "net.py")
        factory_a, _ = import_entry(_cfg(a, "net.py:Net"))
        assert factory_a().rnn.hidden_size == 4
    finally:
        sys.modules.pop("helper", None)


def test_a_dotted_entry_gets_its_own_neighbours_not_another_configs(tmp_path: Path):
    """The same for dotted entries: only a package of the entry's own top-level name was evicted, so
    `pkgb.model` of b/ reused the `helper` that `pkga.model` of a/ had loaded."""
    a, b = tmp_path / "a", tmp_path / "b"
    for d, pkg, width in ((a, "pkga", 5), (b, "pkgb", 7)):
        (d / "src" / pkg).mkdir(parents=True)
        (d / "src" / pkg / "__init__.py").write_text("")
        (d / "src" / pkg / "model.py").write_text(NET)
        (d / "src" / "helper.py").write_text(f"WIDTH = {width}\n")
    try:
        widths = []
        for d, pkg in ((a, "pkga"), (b, "pkgb"), (a, "pkga")):
            cfg = config_from_dict(
                {
                    "model": {"source": "python", "entry": f"{pkg}.model:Net", "python_path": ["src"]},
                    "io": {"call": "(input) -> output", "inputs": {"input": {"dims": ["seq", "batch", 3]}}},
                },
                base_dir=str(d),
            )
            factory, _ = import_entry(cfg)
            widths.append(factory().rnn.hidden_size)
        assert widths == [5, 7, 5]
    finally:
        for name in ("helper", "pkga", "pkga.model", "pkgb", "pkgb.model"):
            sys.modules.pop(name, None)


def test_the_defining_file_is_the_source_file(tmp_path: Path):
    """R2: the class's own file is hashed, and both files are listed."""
    (tmp_path / "layers.py").write_text("from torch import nn\nclass Net(nn.Module):\n    pass\n")
    (tmp_path / "net.py").write_text("from layers import Net\n")
    _, info = import_entry(_cfg(tmp_path, "net.py:Net"))
    assert info.source_file == str(tmp_path / "layers.py")
    assert info.source_files == (str(tmp_path / "layers.py"), str(tmp_path / "net.py"))
    sys.modules.pop("layers", None)


@pytest.mark.parametrize(
    ("source", "attr", "fragment"),
    [
        ("import os\nsystem = os.system\n", "system", "'system' is a builtin function"),
        ("from shutil import rmtree\n", "rmtree", "a function of module 'shutil'"),
        ("import functools, torch\nmake = functools.partial(torch.nn.GRU, 3)\n", "make", "'make' is a partial"),
        ("class Thing:\n    pass\n", "Thing", "a class but not a torch.nn.Module subclass"),
        ("import torch\nnet = torch.nn.GRU(3, 4)\n", "net", "is a module instance"),
        ("import torch\nclass A:\n    make = staticmethod(print)\n", "A.make", "'A.make' is a builtin function"),
    ],
)
def test_only_modules_and_the_files_own_factories_are_called(tmp_path: Path, source: str, attr: str, fragment: str):
    """R1: anything callable was called with the manifest's kwargs (os:system ran a shell command)."""
    (tmp_path / "m.py").write_text(source)
    with pytest.raises(ConfigError, match=fragment):
        import_entry(_cfg(tmp_path, f"m.py:{attr}"))


def test_a_stdlib_entry_is_refused_before_it_is_imported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delitem(sys.modules, "antigravity", raising=False)
    with pytest.raises(ConfigError, match="'antigravity' is the standard library"):
        import_entry(_cfg(tmp_path, "antigravity:geohash"))
    assert "antigravity" not in sys.modules  # it would have opened a web browser


def test_no_import_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "m.py").write_text("raise SystemExit('imported')\n")
    monkeypatch.setenv("SEQDEPLOY_NO_IMPORT", "1")
    with pytest.raises(UsageError, match="SEQDEPLOY_NO_IMPORT is set"):
        import_entry(_cfg(tmp_path, "m.py:Net"))


def test_allow_tracer_warnings_is_a_python_only_key(tmp_path: Path):
    from seqdeploy.config_io import config_to_dict

    assert _cfg(tmp_path, "m.py:Net", allow_tracer_warnings=True).export.allow_tracer_warnings
    assert "allow_tracer_warnings" not in config_to_dict(_cfg(tmp_path, "m.py:Net")).get("export", {})
    with pytest.raises(ConfigError, match=r"export\.allow_tracer_warnings: only with model\.source = 'python'"):
        config_from_dict(
            {"model": {"cell": "gru", "input_size": 3, "hidden_size": 4}, "export": {"allow_tracer_warnings": True}}
        )


# ------------------------------------------------------------------------------ self-check advice (R4)


def _report(*cases: CaseResult) -> ParityReport:
    report = ParityReport(reference="torch", backends=["torch", "ort-cpu"], seed=0)
    report.cases.extend(cases)
    return report


def _error(backend: str, mode: str, against: str, seq: int = 7) -> CaseResult:
    return CaseResult(backend, mode, 3, seq, against, {}, "", error="RuntimeError: boom")


def test_advice_follows_what_failed():
    from seqdeploy.export.stage import _explain_python_failure

    # ORT raising in batch mode (against itself) is not a loop over time.
    assert "loops over time" not in _explain_python_failure(_report(_error("ort-cpu", "batch", "self")), [])
    # ORT raising or disagreeing in full mode at an untraced length is.
    assert "loops over time" in _explain_python_failure(_report(_error("ort-cpu", "full", "reference")), [])
    # The reference's own exception in chunked mode: say how it was fed, not "outputs depend on more".
    advice = _explain_python_failure(_report(_error("torch", "chunked", "self")), [])
    assert "Your module itself raised when fed the sequence in chunks" in advice and "boom" in advice
    assert "depend on more than that state" not in advice


def test_a_backend_exception_is_recorded_against_what_its_mode_compares(tmp_path: Path):
    """R4: every exception was recorded against 'reference'."""
    from seqdeploy.parity.run import VerifyOptions, _guard, _Verifier

    class _B:
        def __init__(self) -> None:
            self.specs = {"sequence": None}
            self.config = None

    v = _Verifier(_B(), VerifyOptions(), _report(), None)  # type: ignore[arg-type]
    for mode, against in (("full", "reference"), ("batch", "self"), ("chunked", "self"), ("padding", "self")):
        with _guard(v, "ort-cpu", mode, 2, 3):
            raise RuntimeError("x")
        assert v.report.cases[-1].against == against


def test_importing_backends_come_from_the_registry():
    """C3: the backends that import a user's module were a hard-coded list."""
    from seqdeploy.parity.run import importing_backends

    assert importing_backends() == {"torch", "torch-cuda"}


def test_an_installed_modules_class_is_still_an_entry(tmp_path: Path):
    from torch import nn

    factory, info = import_entry(_cfg(tmp_path, "torch.nn:GRU"))
    assert factory is nn.GRU and info.source_file is not None and info.source_file.endswith("rnn.py")
