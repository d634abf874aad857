"""Ordinary mistakes from issue 12 (classes 5 and 8), run as the user runs them: a clear message, exit 2,
never a traceback.
"""

from __future__ import annotations

import pathlib
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import tiny_raw
from tests.faults._cli import Cli, assert_clean_error, leftovers, write_config


def _vectors_config(tmp_path: Path, vectors: str) -> Path:
    (tmp_path / "vocab.txt").write_text("<pad>\nthe\ncat\nsat\n")
    raw = tiny_raw(embedding={"vocab_size": 4, "dim": 3, "vectors": vectors, "vocab": "vocab.txt"})
    return write_config(tmp_path / "vec.toml", raw)


def test_a_vectors_path_that_is_a_directory(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "glove").mkdir()
    out = tmp_path / "w" / "exp"
    r = cli.run("export", _vectors_config(tmp_path, "glove"), "-o", out)
    assert_clean_error(r)
    assert str(tmp_path / "glove") in r.stderr and "is a directory" in r.stderr, r
    assert not out.exists() and leftovers(tmp_path) == []


def test_vectors_that_cover_no_token_warn(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "other.txt").write_text("dog 1 2 3\nran 4 5 6\n")
    r = cli.run("export", _vectors_config(tmp_path, "other.txt"), "-o", tmp_path / "exp")
    assert r.code == 0, r
    assert "0/3 vocabulary rows found (0.0%)" in r.stdout, r
    assert "WARNING: 0 of" in r.stderr and "(0 % coverage)" in r.stderr, r


@pytest.fixture
def state_dict_of(tmp_path: Path):
    from seqdeploy.config_io import config_from_dict
    from seqdeploy.models.build import build_model

    def make(transform) -> Path:
        import torch

        model, _ = build_model(config_from_dict(tiny_raw()))
        path = tmp_path / "ckpt.pt"
        torch.save({k: transform(v) for k, v in model.state_dict().items()}, path)
        return path

    return make


def test_a_checkpoint_of_meta_tensors(cli: Cli, tiny_toml: Path, tmp_path: Path, state_dict_of) -> None:
    ckpt = state_dict_of(lambda v: v.to("meta"))
    r = cli.run("export", tiny_toml, "-o", tmp_path / "exp", "--checkpoint", ckpt)
    assert_clean_error(r)
    assert "meta" in r.stderr


def test_a_checkpoint_of_complex_tensors(cli: Cli, tiny_toml: Path, tmp_path: Path, state_dict_of) -> None:
    ckpt = state_dict_of(lambda v: v.to(__import__("torch").complex64) + 1j)
    r = cli.run("export", tiny_toml, "-o", tmp_path / "exp", "--checkpoint", ckpt)
    assert_clean_error(r)
    assert "complex" in r.stderr


def test_a_checkpoint_error_never_suggests_unsafe_loading(cli: Cli, tiny_toml: Path, tmp_path: Path) -> None:
    import torch

    ckpt = tmp_path / "evil.pt"
    torch.save({"obj": pathlib.PurePosixPath("x")}, ckpt)
    r = cli.run("export", tiny_toml, "-o", tmp_path / "exp", "--checkpoint", ckpt)
    assert_clean_error(r)
    assert "weights_only` set to `False`" not in r.stderr and "weights_only=False" not in r.stderr, r


def test_a_text_file_as_inputs_says_it_is_not_an_npz(cli: Cli, bundle_copy, tmp_path: Path) -> None:
    f = tmp_path / "inputs.npz"
    f.write_text("input 1 2 3\n")
    r = cli.run("verify", bundle_copy(), "--inputs", f)
    assert_clean_error(r)
    assert "pickle" not in r.stderr, r


def test_uint64_ids_are_reported_as_they_are(cli: Cli, tmp_path: Path) -> None:
    from seqdeploy.config_io import config_from_dict
    from seqdeploy.export.stage import export_model

    d = tmp_path / "ids"
    export_model(config_from_dict(tiny_raw(embedding={"vocab_size": 6, "dim": 3})), d)
    ids = np.zeros((3, 2), np.uint64)
    ids[1, 0] = 2**64 - 1
    f = tmp_path / "ids.npz"
    np.savez(f, input=ids, h0=np.zeros((1, 2, 4), np.float32), c0=np.zeros((1, 2, 4), np.float32))
    r = cli.run("verify", d, "--inputs", f)
    assert_clean_error(r)
    assert "18446744073709551615" in r.stderr, r


def test_force_never_deletes_a_web_app_that_has_a_manifest_json(cli: Cli, tiny_toml: Path, tmp_path: Path) -> None:
    """Finding 3: ``--force`` took any directory with a file named manifest.json for an earlier export."""
    import json

    app = tmp_path / "site"
    app.mkdir()
    (app / "manifest.json").write_text(json.dumps({"name": "My app", "start_url": "/index.html", "icons": []}))
    (app / "index.html").write_text("<html>my site</html>")
    r = cli.run("export", tiny_toml, "-o", app, "--force")
    assert_clean_error(r)
    assert "not a seqdeploy export" in r.stderr and "not one seqdeploy wrote" in r.stderr, r
    assert (app / "index.html").read_text() == "<html>my site</html>"
    assert sorted(p.name for p in app.iterdir()) == ["index.html", "manifest.json"]
    assert leftovers(tmp_path) == []


def test_max_memory_gb_reaches_the_self_check_and_overrides_the_environment(
    cli: Cli, tiny_toml: Path, tmp_path: Path
) -> None:
    """Finding 5: the flag was not passed to the export's self-check, which fell back to the environment's
    limit, refused after the model was built, and told the user to pass the flag they had passed.
    """
    out = tmp_path / "exp"
    env = {"SEQDEPLOY_MAX_MEMORY_GB": "0.000001"}
    refused = cli.run("export", tiny_toml, "-o", out, env=env)
    assert_clean_error(refused)
    assert "set by SEQDEPLOY_MAX_MEMORY_GB" in refused.stderr, refused
    r = cli.run("export", tiny_toml, "-o", out, "--max-memory-gb", "8", env=env)
    assert r.code == 0, r
    assert (out / "manifest.json").is_file()


def test_a_self_check_that_cannot_fit_is_refused_before_the_model_is_built(cli: Cli, tmp_path: Path) -> None:
    """One estimate for one run: what the export refuses, it refuses up front, naming its own options."""
    cfg = write_config(tmp_path / "long.toml", tiny_raw(shapes={"batch": [1, 3, 6], "seq": [1, 6, 200_000]}))
    out = tmp_path / "exp"
    r = cli.run("export", cfg, "-o", out, "--max-memory-gb", "0.05", fault_at="export:model-built", pause_s=0)
    assert_clean_error(r)
    assert "the export's self-check at batch 3, seq 200000 needs an estimated" in r.stderr, r
    assert "[shapes] seq" in r.stderr and "--batch" not in r.stderr, r
    assert not out.exists() and leftovers(tmp_path) == []
    assert not (cli.root / "ready-0").exists(), "refused only after the model was built"


def test_options_are_checked_before_the_bundle_is_hashed(cli: Cli, tmp_path: Path) -> None:
    """Finding 19: a bad --batch is reported as such, before (and without) loading the bundle."""
    r = cli.run("verify", tmp_path / "no-such-bundle", "--batch", "1,x")
    assert_clean_error(r)
    assert "--batch '1,x': expected comma-separated integers" in r.stderr, r
