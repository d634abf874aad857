"""The public surface is declared and pinned: changing it must be deliberate."""

from __future__ import annotations

import seqdeploy

PUBLIC = {
    "BackendUnavailable",
    "Bundle",
    "CheckpointError",
    "ConfigError",
    "ExportError",
    "ExportResult",
    "IOSpec",
    "InputError",
    "IntegrityError",
    "InternalError",
    "Interrupted",
    "PackageOptions",
    "ParityError",
    "ParityReport",
    "PipelineConfig",
    "ProfileOptions",
    "ResourceLimitError",
    "SeqdeployError",
    "StatePair",
    "TensorSpec",
    "UsageError",
    "VectorsError",
    "VerifyOptions",
    "__version__",
    "build_model",
    "carry_state",
    "export_model",
    "load_config",
    "make_feeds",
    "make_runner",
    "profile",
    "quantize_int8",
    "spec_from_config",
    "verify",
    "write_package",
}


def test_all_is_pinned() -> None:
    assert set(seqdeploy.__all__) == PUBLIC


def test_every_public_name_resolves() -> None:
    for name in seqdeploy.__all__:
        assert getattr(seqdeploy, name) is not None, name


def test_error_tree() -> None:
    assert issubclass(seqdeploy.ConfigError, seqdeploy.SeqdeployError)
    assert issubclass(seqdeploy.ConfigError, ValueError)
    assert not issubclass(seqdeploy.InternalError, seqdeploy.SeqdeployError)
    codes = {
        seqdeploy.ConfigError: 2,
        seqdeploy.UsageError: 2,
        seqdeploy.InputError: 2,
        seqdeploy.ExportError: 1,
        seqdeploy.ParityError: 1,
        seqdeploy.BackendUnavailable: 3,
    }
    for cls, code in codes.items():
        assert cls.exit_code == code, cls
