"""seqdeploy: export, verify, profile and package PyTorch recurrent sequence models.

Importing this package imports neither torch nor onnxruntime: torch-backed functions are loaded on
first use through module ``__getattr__``. The torch-free runtime for packages is ``seqdeploy.runtime``.
"""

from __future__ import annotations

import importlib
from typing import Any

from seqdeploy.config import PipelineConfig
from seqdeploy.config_io import load_config
from seqdeploy.errors import (
    BackendUnavailable,
    CheckpointError,
    ConfigError,
    ExportError,
    InputError,
    IntegrityError,
    InternalError,
    Interrupted,
    ParityError,
    ResourceLimitError,
    SeqdeployError,
    UsageError,
    VectorsError,
)
from seqdeploy.spec import IOSpec, StatePair, TensorSpec, spec_from_config

__version__ = "0.1.0"

# Public names whose modules import torch/onnx/numpy: resolved lazily.
_LAZY: dict[str, str] = {
    "Bundle": "seqdeploy.manifest",
    "VerifyOptions": "seqdeploy.parity.run",
    "verify": "seqdeploy.parity.run",
    "ParityReport": "seqdeploy.parity.report",
    "ExportResult": "seqdeploy.export.stage",
    "export_model": "seqdeploy.export.stage",
    "build_model": "seqdeploy.models.build",
    "make_feeds": "seqdeploy.feeds",
    "carry_state": "seqdeploy.feeds",
    "make_runner": "seqdeploy.backends",
    "ProfileOptions": "seqdeploy.profile.run",
    "profile": "seqdeploy.profile.run",
    "quantize_int8": "seqdeploy.optimize",
    "PackageOptions": "seqdeploy.package.writer",
    "write_package": "seqdeploy.package.writer",
}

__all__ = [
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
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'seqdeploy' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(__all__)
