"""The Polygraphy hand-off kit's data: inputs at the profile's shapes and golden fp32 PyTorch outputs.

Written with Polygraphy's own library (``polygraphy.json.save_json`` for the list of feed dicts that
``--load-inputs`` reads, ``polygraphy.comparator.RunResults`` for ``--load-outputs``), never a
re-implementation of its format, so ``polygraphy run ... --load-inputs trt/inputs.json --load-outputs
trt/golden.json`` on the target reads exactly what was written here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from seqdeploy._lazy import require
from seqdeploy.engine.plan import KitCase
from seqdeploy.feeds import check_feeds, make_feeds
from seqdeploy.spec import IOSpec

__all__ = ["GOLDEN_RUNNER", "kit_feeds", "save_golden", "save_inputs", "write_raw"]

GOLDEN_RUNNER = "seqdeploy-torch-fp32"
"""The runner name under which the golden outputs are stored in ``golden.json``."""


def kit_feeds(spec: IOSpec, case: KitCase, seed: int) -> dict[str, np.ndarray]:
    """Seeded feeds for one kit case (checked against the IOSpec).

    Non-padded cases use full lengths (the profile shape is the real shape). A padded case keeps
    :func:`~seqdeploy.feeds.make_feeds`'s lengths (row 0 full, row 1 length 1, the rest random); a
    single-row padded case gets length ``seq // 2`` so that it is padded at all.
    """
    feeds = make_feeds(spec, case.batch, case.seq, seed=seed, full_lengths=not case.padded)
    if case.padded and spec.has("lengths") and case.batch == 1 and case.seq > 1:
        feeds["lengths"] = np.array([case.seq // 2], dtype=np.int64)
    check_feeds(spec, feeds)
    return feeds


def _quiet() -> contextlib.AbstractContextManager[Any]:
    # Polygraphy logs "[I] Saving ... to <temp path>" on stdout for every save; the CLI reports itself.
    logger = require("polygraphy.logger", extra="export", purpose="the Polygraphy hand-off kit").G_LOGGER
    quiet: contextlib.AbstractContextManager[Any] = logger.verbosity(logger.WARNING)
    return quiet


def save_inputs(path: Path, feeds: Sequence[Mapping[str, np.ndarray]]) -> None:
    """``inputs.json``: a list of feed dicts in Polygraphy's JSON format (one iteration per kit case)."""
    pjson = require("polygraphy.json", extra="export", purpose="the Polygraphy hand-off kit")
    with _quiet():
        pjson.save_json([dict(f) for f in feeds], str(path), description="seqdeploy kit inputs")


def save_golden(path: Path, outputs: Sequence[Mapping[str, np.ndarray]]) -> None:
    """``golden.json``: Polygraphy ``RunResults`` holding one iteration of outputs per kit case."""
    comparator = require("polygraphy.comparator", extra="export", purpose="the Polygraphy hand-off kit")
    results = comparator.RunResults()
    results.add([dict(o) for o in outputs], runner_name=GOLDEN_RUNNER)
    with _quiet():
        results.save(str(path))


def write_raw(directory: Path, feeds: Mapping[str, np.ndarray]) -> dict[str, str]:
    """One raw little-endian C-order ``<name>.bin`` per input (``trtexec --loadInputs`` format)."""
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, value in feeds.items():
        arr = np.ascontiguousarray(value)
        arr.astype(arr.dtype.newbyteorder("<"), copy=False).tofile(directory / f"{name}.bin")
        out[name] = f"{name}.bin"
    return out
