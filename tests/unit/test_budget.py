"""Memory estimates and the limit they are checked against (``seqdeploy.budget``)."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest

from seqdeploy import budget
from seqdeploy.errors import ResourceLimitError
from tests.conftest import tiny_config

GB = 10**9


def _proc(tmp: Path, cgroup: str, *, available_gb: float = 500) -> Path:
    proc = tmp / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "meminfo").write_text(f"MemTotal: 1 kB\nMemAvailable: {int(available_gb * GB / 1024)} kB\n")
    (proc / "self" / "cgroup").write_text(cgroup)
    (proc / "self" / "status").write_text("VmSize:\t  1048576 kB\n")
    return proc


def test_a_cgroup_v2_limit_caps_the_hosts_available_memory(tmp_path: Path) -> None:
    """Finding 11: inside a 4 GB container MemAvailable is the host's 500 GB."""
    proc = _proc(tmp_path, "0::/docker/abc\n")
    sys_cg = tmp_path / "cg"
    leaf = sys_cg / "docker" / "abc"
    leaf.mkdir(parents=True)
    (leaf / "memory.max").write_text(f"{4 * GB}\n")
    (leaf / "memory.current").write_text(f"{1 * GB}\n")
    (leaf / "memory.stat").write_text(f"anon 1\ninactive_file {GB // 2}\n")
    (sys_cg / "docker" / "memory.max").write_text("max\n")
    assert budget._available_bytes(proc, sys_cg) == 4 * GB - GB + GB // 2


def test_an_ancestor_cgroups_limit_applies_too(tmp_path: Path) -> None:
    proc = _proc(tmp_path, "0::/a/b\n")
    sys_cg = tmp_path / "cg"
    (sys_cg / "a" / "b").mkdir(parents=True)
    (sys_cg / "a" / "b" / "memory.max").write_text("max\n")
    (sys_cg / "a" / "memory.max").write_text(f"{2 * GB}\n")
    (sys_cg / "a" / "memory.current").write_text("0\n")
    assert budget._available_bytes(proc, sys_cg) == 2 * GB


def test_a_cgroup_v1_limit_is_read_and_no_limit_is_no_limit(tmp_path: Path) -> None:
    proc = _proc(tmp_path, "4:memory:/process/x\n3:cpu:/\n")
    sys_cg = tmp_path / "cg"
    mem = sys_cg / "memory" / "process" / "x"
    mem.mkdir(parents=True)
    (mem / "memory.limit_in_bytes").write_text(f"{3 * GB}\n")
    (mem / "memory.usage_in_bytes").write_text(f"{GB}\n")
    (sys_cg / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    assert budget._available_bytes(proc, sys_cg) == 2 * GB
    (mem / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    assert budget._available_bytes(proc, sys_cg) == 500 * GB


def test_the_address_space_limit_caps_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proc = _proc(tmp_path, "0::/\n")
    monkeypatch.setattr(resource, "getrlimit", lambda which: (8 * 2**30, resource.RLIM_INFINITY))
    assert budget._available_bytes(proc, tmp_path / "none") == 8 * 2**30 - 2**30  # minus VmSize (1 GiB)


def test_the_default_limit_says_where_it_comes_from(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(budget.ENV_VAR, raising=False)
    monkeypatch.setattr(budget, "_available_bytes", lambda: 10 * GB)
    with pytest.raises(ResourceLimitError, match="80 % of the memory available to this process"):
        budget.check_bytes(9 * GB, "this", "Fix it.")


def test_the_export_estimate_is_the_self_checks_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding 5: one estimate for one run — the export's pre-check refuses exactly when the self-check's
    verify would (no refusal after the model was built), and never names verify's options.
    """
    from seqdeploy.export.stage import self_check_options
    from seqdeploy.spec import spec_from_config

    cfg = tiny_config(hidden_size=64)
    opts = self_check_options(cfg)
    seen: dict[str, int] = {}

    def record(needed: int, what: str, fix: str, *, max_memory_gb: float | None = None) -> None:
        seen[what.split(" at ")[0]] = max(needed, seen.get(what.split(" at ")[0], 0))

    monkeypatch.setattr(budget, "check_bytes", record)
    budget.check_export_budget(cfg, opts)
    weights = budget.parameter_count(cfg.model) * 4
    files = 2 * weights + 4096  # model.onnx and model.pt: the weights once each, plus a little structure
    shapes = [(b, s) for b in opts.batches or () for s in opts.seqs or ()]
    budget.check_sweep_budget(spec_from_config(cfg), shapes, cfg.model, files, what="verify")
    assert seen["the export's self-check"] >= seen["verify"]
    assert seen["the export's self-check"] <= seen["verify"] + 3 * (2 << 20)  # the same figure, with a margin


def test_the_self_check_options_carry_the_exports_limit() -> None:
    from seqdeploy.export.stage import self_check_options

    assert self_check_options(tiny_config(), max_memory_gb=3.5).max_memory_gb == 3.5
