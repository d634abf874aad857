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
