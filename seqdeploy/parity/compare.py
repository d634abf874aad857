"""Elementwise comparison of one tensor against a reference, with Polygraphy's vocabulary.

Rule: an element fails only if ``|got - ref| > atol`` **and** ``|got - ref| > rtol * |ref|``, i.e. if
it exceeds ``max(atol, rtol * |ref|)``. Non-finite values: NaN in both at the same place, or the same
infinity in both, count as equal; any other non-finite disagreement fails, and then ``max_abs`` is
infinite. Relative error is ``|got - ref| / |ref|``, infinite where ``ref`` is 0 and they differ.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from seqdeploy.errors import UsageError

__all__ = ["DEFAULT_TOLERANCES", "TensorDiff", "Tolerance", "Tolerances", "compare_tensor", "parse_tolerances"]


@dataclass(frozen=True, slots=True)
class Tolerance:
    """Absolute and relative tolerance for one tensor."""

    atol: float
    rtol: float


DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    # fp32 default of the issue tracker; ~100 ulp of headroom over the 1e-7 errors measured in
    # export-notes.md for ORT vs eager.
    "fp32": Tolerance(atol=1e-5, rtol=1e-4),
    # fp16 accumulates rounding along the sequence (pitfalls #19: 4e-4 relative L2 for one layer).
    "fp16": Tolerance(atol=1e-2, rtol=1e-2),
    # dynamic int8 (DynamicQuantizeLSTM): measured max |Δ| up to ~1e-2 on states of the test models;
    # see docs/parity.md. Always judged against the fp32 reference.
    "int8": Tolerance(atol=5e-2, rtol=5e-2),
}


@dataclass(frozen=True, slots=True)
class Tolerances:
    """Tolerances for every tensor: per-tensor overrides over a default.

    An override keyed by a base name (``h_n``) applies to per-layer tensors too (``h_n.0``, ``h_n.1``);
    an exact name wins over a base name.
    """

    default: Tolerance
    atol: Mapping[str, float] = field(default_factory=dict)
    rtol: Mapping[str, float] = field(default_factory=dict)

    def for_tensor(self, name: str) -> Tolerance:
        """The tolerance that applies to ``name``."""
        base = name.split(".")[0]
        atol = self.atol.get(name, self.atol.get(base, self.default.atol))
        rtol = self.rtol.get(name, self.rtol.get(base, self.default.rtol))
        return Tolerance(atol, rtol)


def parse_tolerances(
    values: tuple[str, ...] | list[str], default: float | None, option: str
) -> tuple[float | None, dict[str, float]]:
    """Parse repeated ``--atol 1e-4`` / ``--atol h_n=1e-4`` values into (default, per-tensor)."""
    per: dict[str, float] = {}
    for raw in values:
        name, sep, num = raw.rpartition("=")
        try:
            value = float(num)
        except ValueError:
            raise UsageError(
                f"{option} {raw!r}: expected a number or TENSOR=NUMBER (e.g. {option} h_n=1e-4)"
            ) from None
        if not np.isfinite(value) or value < 0:
            raise UsageError(f"{option} {raw!r}: expected a finite number >= 0")
        if sep:
            if not name:
                raise UsageError(f"{option} {raw!r}: missing tensor name before '='")
            per[name] = value
        else:
            default = value
    return default, per


@dataclass(frozen=True, slots=True)
class TensorDiff:
    """How one tensor compares with its reference. Numbers only; renderers format them.

    ``max_rel``/``max_abs`` may be ``inf`` or ``nan``; JSON writes non-finite numbers as ``null``.
    ``error`` is set (and ``passed`` false) when the tensors could not be compared elementwise.
    """

    name: str
    passed: bool
    atol: float
    rtol: float
    shape: tuple[int, ...]
    got_shape: tuple[int, ...]
    max_abs: float = 0.0
    mean_abs: float = 0.0
    median_abs: float = 0.0
    p99_abs: float = 0.0
    max_rel: float = 0.0
    mean_rel: float = 0.0
    median_rel: float = 0.0
    p99_rel: float = 0.0
    worst_index: tuple[int, ...] | None = None
    worst_ref: float | None = None
    worst_got: float | None = None
    failed_elements: int = 0
    total_elements: int = 0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; non-finite floats become ``None``."""

        def num(x: float | None) -> float | None:
            return None if x is None or not np.isfinite(x) else float(x)

        return {
            "passed": self.passed,
            "max_abs": num(self.max_abs),
            "max_rel": num(self.max_rel),
            "mean_abs": num(self.mean_abs),
            "median_abs": num(self.median_abs),
            "p99_abs": num(self.p99_abs),
            "mean_rel": num(self.mean_rel),
            "median_rel": num(self.median_rel),
            "p99_rel": num(self.p99_rel),
            "atol": self.atol,
            "rtol": self.rtol,
            "worst_index": list(self.worst_index) if self.worst_index is not None else None,
            "worst_ref": num(self.worst_ref),
            "worst_got": num(self.worst_got),
            "failed_elements": self.failed_elements,
            "total_elements": self.total_elements,
            "shape": list(self.shape),
            "got_shape": list(self.got_shape),
            "error": self.error,
        }


def compare_tensor(name: str, ref: np.ndarray, got: np.ndarray, tol: Tolerance) -> TensorDiff:
    """Compare ``got`` with ``ref`` elementwise under ``tol`` (see the module docstring)."""
    ref_shape, got_shape = tuple(int(d) for d in ref.shape), tuple(int(d) for d in got.shape)
    if ref_shape != got_shape:
        return TensorDiff(
            name,
            False,
            tol.atol,
            tol.rtol,
            ref_shape,
            got_shape,
            error=(f"shape {got_shape} differs from the reference's {ref_shape}"),
        )
    r = ref.astype(np.float64, copy=False)
    g = got.astype(np.float64, copy=False)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        diff = np.abs(g - r)
        same_nonfinite = (np.isnan(r) & np.isnan(g)) | (np.isinf(r) & (r == g))
        diff = np.where(same_nonfinite, 0.0, diff)
        diff = np.where(np.isnan(diff), np.inf, diff)  # NaN vs number, or inf - inf of opposite signs
        absref = np.abs(r)
        rel = np.where(diff == 0, 0.0, diff / absref)
        rel = np.where(np.isnan(rel), np.inf, rel)
        bound = np.maximum(tol.atol, tol.rtol * np.where(np.isfinite(absref), absref, 0.0))
        failed = diff > bound
    n = int(diff.size)
    if n == 0:
        return TensorDiff(name, True, tol.atol, tol.rtol, ref_shape, got_shape)
    flat = diff.reshape(-1)
    worst = int(np.argmax(flat))
    finite = flat[np.isfinite(flat)]
    with np.errstate(invalid="ignore"):  # percentiles over infinite relative errors are inf (or nan)
        median_rel = float(np.median(rel))
        p99_rel = float(np.percentile(rel, 99))
    return TensorDiff(
        name=name,
        passed=not bool(failed.any()),
        atol=tol.atol,
        rtol=tol.rtol,
        shape=ref_shape,
        got_shape=got_shape,
        max_abs=float(flat[worst]),
        mean_abs=float(flat.mean()),
        median_abs=float(np.median(finite)) if finite.size else float("inf"),
        p99_abs=float(np.percentile(flat, 99)) if finite.size == n else float("inf"),
        max_rel=float(rel.max()),
        mean_rel=float(rel.mean()),
        median_rel=median_rel if not np.isnan(median_rel) else float("inf"),
        p99_rel=p99_rel if not np.isnan(p99_rel) else float("inf"),
        worst_index=tuple(int(i) for i in np.unravel_index(worst, ref_shape)),
        worst_ref=float(r.reshape(-1)[worst]),
        worst_got=float(g.reshape(-1)[worst]),
        failed_elements=int(failed.sum()),
        total_elements=n,
    )
