from __future__ import annotations

import pytest

from seqdeploy.cli._options import Progress, parse_int_list, parse_shapes, write_text_atomic
from seqdeploy.errors import UsageError


def test_parse_int_list() -> None:
    assert parse_int_list(None, "--batch") is None
    assert parse_int_list("8,1,3,3", "--batch") == (1, 3, 8)
    for bad in ("1,x", "0,2", ""):
        with pytest.raises(UsageError, match="--batch"):
            parse_int_list(bad, "--batch")


def test_parse_shapes() -> None:
    assert parse_shapes("1x32, 32X128") == ((1, 32), (32, 128))
    assert parse_shapes(None) is None
    for bad in ("1x", "32", "0x4", "axb", ","):
        with pytest.raises(UsageError, match="--shapes"):
            parse_shapes(bad)


def test_write_text_atomic_leaves_no_temp(tmp_path) -> None:
    target = tmp_path / "sub" / "r.json"
    write_text_atomic(target, "{}")
    assert target.read_text() == "{}"
    assert [p.name for p in target.parent.iterdir()] == ["r.json"]


def test_progress_is_quiet_for_quick_sweeps_and_draws_after_the_delay(capsys: pytest.CaptureFixture[str]) -> None:
    quiet = Progress("verify", delay=60.0, enabled=True)
    quiet(1, 10)
    quiet.close()
    assert capsys.readouterr().err == ""
    bar = Progress("verify", delay=0.0, enabled=True)
    bar(5, 10)
    bar.close()
    err = capsys.readouterr().err
    assert "verify [###############...............] 5/10" in err
    off = Progress("verify", delay=0.0, enabled=False)
    off(1, 2)
    assert capsys.readouterr().err == ""
