"""Production packages: one proven directory that the torch-free runtime loads and Triton serves as it is.

Modules (heavy dependencies are imported only where they are needed):

==============  ==================================================================  ====================
module          what                                                                imports
==============  ==================================================================  ====================
``manifest``    ``seqdeploy.json`` schema, reading, sha256/listing/link checks      stdlib
``layout``      batch-first signatures; moving arrays between layouts               numpy
``triton``      ``config.pbtxt`` writing; checks with Triton's protobuf + the graph numpy (+ tritonclient,
                                                                                    onnxruntime to check)
``check``       ``seqdeploy package --check``                                        onnxruntime, tritonclient
``surgery``     batch-first and stream graphs by ONNX graph surgery                 onnx
``prove``       packaged graphs vs the bundle's PyTorch runner                      onnxruntime (+ torch)
``card``        the generated ``README.md``                                         stdlib
``writer``      ``seqdeploy package DIR -o PKG``                                    all of the above
==============  ==================================================================  ====================

The reading side (``manifest``, ``check``) works in a ``seqdeploy[cpu]`` install without torch;
``seqdeploy.runtime`` builds on it.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["PackageOptions", "check_package", "write_package"]

_LAZY = {
    "PackageOptions": "seqdeploy.package.writer",
    "write_package": "seqdeploy.package.writer",
    "check_package": "seqdeploy.package.check",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'seqdeploy.package' has no attribute '{name}'")
