"""Tensor comparison maths: seqdeploy/parity/compare.py."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from seqdeploy.errors import UsageError
from seqdeploy.parity.compare import (
    DEFAULT_TOLERANCES,
    Tolerance,
    Tolerances,
    compare_tensor,
    parse_tolerances,
)

TOL = Tolerance(atol=1e-3, rtol=1e-2)
INF = float("inf")
NAN = float("nan")


def _cmp(ref, got, tol=TOL):
    return compare_tensor("t", np.asarray(ref, dtype=np.float32), np.asarray(got, dtype=np.float32), tol)


# ----------------------------------------------------------------------------------------------- basics


def test_exact_equality():
    x = np.arange(12, dtype=np.float32).reshape(3, 4) - 5
    d = compare_tensor("output", x, x.copy(), TOL)
    assert d.passed
    assert d.name == "output"
    assert (d.max_abs, d.mean_abs, d.median_abs, d.p99_abs, d.max_rel, d.mean_rel) == (0, 0, 0, 0, 0, 0)
    assert d.failed_elements == 0
    assert d.total_elements == 12
    assert d.shape == d.got_shape == (3, 4)
    assert d.error is None
    assert (d.atol, d.rtol) == (1e-3, 1e-2)


def test_passes_by_atol_only():
    # |Δ| = 5e-4 <= atol 1e-3, but > rtol*|ref| = 1e-2 * 1e-2 = 1e-4
    d = compare_tensor("t", np.array([0.01]), np.array([0.0105]), TOL)
    assert d.passed
    assert d.failed_elements == 0
    assert d.max_rel == pytest.approx(0.05)


def test_passes_by_rtol_only():
    # |Δ| = 0.5 > atol 1e-3, but <= rtol*|ref| = 1e-2 * 100 = 1
    d = compare_tensor("t", np.array([100.0]), np.array([100.5]), TOL)
    assert d.passed
    assert d.max_abs == pytest.approx(0.5)
    assert d.max_rel == pytest.approx(0.005)


def test_fails_when_exceeding_both():
    # |Δ| = 0.02 > atol 1e-3 and > rtol*|ref| = 1e-2 * 1 = 1e-2
    d = compare_tensor("t", np.array([1.0, 2.0]), np.array([1.02, 2.0]), TOL)
    assert not d.passed
    assert d.failed_elements == 1
    assert d.total_elements == 2
    assert d.worst_index == (0,)
    assert d.worst_ref == 1.0
    assert d.worst_got == pytest.approx(1.02)


def test_boundary_is_inclusive():
    # exactly at the bound passes (fails only when strictly greater); values chosen exact in binary
    d = compare_tensor("t", np.array([0.0]), np.array([0.25]), Tolerance(atol=0.25, rtol=0.0))
    assert d.passed
    d = compare_tensor("t", np.array([4.0]), np.array([5.0]), Tolerance(atol=0.0, rtol=0.25))
    assert d.passed
    d = compare_tensor("t", np.array([4.0]), np.array([5.0]), Tolerance(atol=0.0, rtol=0.2))
    assert not d.passed


def test_mixed_elements_each_judged_by_own_bound():
    ref = np.array([0.01, 100.0, 1.0, -50.0])
    got = np.array([0.0105, 100.5, 1.02, -50.2])  # atol-pass, rtol-pass, fail, rtol-pass (0.2 <= 0.5)
    d = compare_tensor("t", ref, got, TOL)
    assert not d.passed
    assert d.failed_elements == 1
    assert d.worst_index == (1,)  # worst by |Δ| is the 0.5 on 100, which passes


def test_statistics_by_hand():
    ref = np.array([[1.0, 2.0], [4.0, -8.0]])
    got = np.array([[1.0, 2.5], [3.0, -8.0]])
    d = compare_tensor("t", ref, got, Tolerance(atol=0.1, rtol=0.1))
    # |Δ| = [0, 0.5, 1, 0]; rel = [0, 0.25, 0.25, 0]
    assert d.max_abs == 1.0
    assert d.mean_abs == pytest.approx(0.375)
    assert d.median_abs == pytest.approx(0.25)  # median of [0, 0, 0.5, 1]
    assert d.p99_abs == pytest.approx(np.percentile([0, 0.5, 1, 0], 99))
    assert d.p99_abs == pytest.approx(0.5 + 0.97 * 0.5)  # linear interpolation between 0.5 and 1 at 0.97
    assert d.max_rel == pytest.approx(0.25)
    assert d.mean_rel == pytest.approx(0.125)
    assert d.worst_index == (1, 0)
    assert (d.worst_ref, d.worst_got) == (4.0, 3.0)
    assert d.failed_elements == 2  # 0.5 > max(0.1, 0.2); 1 > max(0.1, 0.4)
    assert not d.passed


def test_p99_on_101_elements():
    ref = np.zeros(101)
    got = np.arange(101, dtype=np.float64) * 1e-3
    d = compare_tensor("t", ref, got, Tolerance(atol=1.0, rtol=0.0))
    assert d.passed
    assert d.p99_abs == pytest.approx(0.099)
    assert d.median_abs == pytest.approx(0.05)
    assert d.max_abs == pytest.approx(0.1)
    assert d.worst_index == (100,)


def test_worst_index_multi_dim():
    ref = np.zeros((2, 3, 4), np.float32)
    got = ref.copy()
    got[1, 2, 3] = 0.5
    got[0, 1, 1] = -0.25
    d = compare_tensor("t", ref, got, TOL)
    assert d.worst_index == (1, 2, 3)
    assert d.failed_elements == 2


def test_zero_reference():
    d = compare_tensor("t", np.array([0.0, 0.0]), np.array([0.0, 1e-4]), TOL)
    assert d.passed  # 1e-4 <= atol
    assert d.max_rel == INF  # differs where ref is 0
    d = compare_tensor("t", np.array([0.0, 0.0]), np.array([0.0, 0.0]), TOL)
    assert d.max_rel == 0.0
    assert d.mean_rel == 0.0
    d = compare_tensor("t", np.array([0.0]), np.array([0.5]), TOL)
    assert not d.passed
    assert d.max_rel == INF


def test_empty_tensors_pass():
    d = compare_tensor("t", np.zeros((0, 3)), np.zeros((0, 3)), TOL)
    assert d.passed
    assert d.total_elements == 0
    assert d.worst_index is None


def test_scalar_tensors():
    d = compare_tensor("t", np.array(1.0), np.array(1.5), TOL)
    assert not d.passed
    assert d.worst_index == ()
    assert d.shape == ()


def test_mixed_dtypes_compared_in_float64():
    ref = np.array([1.0, 2.0], np.float64)
    got = np.array([1.0, 2.0], np.float16)
    d = compare_tensor("t", ref, got, TOL)
    assert d.passed
    assert d.max_abs == 0.0


# ------------------------------------------------------------------------------------------ non-finite


def test_nan_in_both_same_place_passes():
    d = _cmp([1.0, NAN, 3.0], [1.0, NAN, 3.0])
    assert d.passed
    assert d.max_abs == 0.0
    assert d.max_rel == 0.0


def test_nan_in_got_only_fails():
    d = _cmp([1.0, 2.0, 3.0], [1.0, NAN, 3.0])
    assert not d.passed
    assert d.failed_elements == 1
    assert d.max_abs == INF
    assert d.max_rel == INF
    assert d.worst_index == (1,)
    assert d.mean_abs == INF
    assert d.median_abs == 0.0  # over finite differences
    assert d.p99_abs == INF


def test_nan_in_ref_only_fails():
    d = _cmp([NAN, 2.0], [1.0, 2.0])
    assert not d.passed
    assert d.worst_index == (0,)
    assert math.isnan(d.worst_ref)
    assert d.worst_got == 1.0


def test_nan_at_different_places_fails():
    d = _cmp([NAN, 2.0], [1.0, NAN])
    assert not d.passed
    assert d.failed_elements == 2


def test_same_infinity_passes():
    d = _cmp([INF, -INF, 1.0], [INF, -INF, 1.0])
    assert d.passed
    assert d.max_abs == 0.0
    assert d.max_rel == 0.0


def test_opposite_infinities_fail():
    d = _cmp([INF, 1.0], [-INF, 1.0])
    assert not d.passed
    assert d.max_abs == INF
    assert d.worst_index == (0,)
    assert (d.worst_ref, d.worst_got) == (INF, -INF)


@pytest.mark.parametrize(("ref", "got"), [(INF, 1e30), (5.0, INF), (-INF, 0.0)])
def test_inf_vs_finite_fails(ref: float, got: float):
    d = compare_tensor("t", np.array([ref, 0.0]), np.array([got, 0.0]), Tolerance(atol=1e30, rtol=1e30))
    assert not d.passed
    assert d.failed_elements == 1
    assert d.max_abs == INF


def test_all_nonfinite_failures_have_inf_median():
    d = _cmp([NAN], [1.0])
    assert d.median_abs == INF


# ---------------------------------------------------------------------------------------- shape / JSON


def test_shape_mismatch():
    d = compare_tensor("h_n", np.zeros((1, 2, 4)), np.zeros((1, 3, 4)), TOL)
    assert not d.passed
    assert d.error == "shape (1, 3, 4) differs from the reference's (1, 2, 4)"
    assert d.shape == (1, 2, 4)
    assert d.got_shape == (1, 3, 4)
    assert d.total_elements == 0
    assert d.to_dict()["error"] == d.error
    json.dumps(d.to_dict(), allow_nan=False)


def test_shape_mismatch_same_size():
    d = compare_tensor("t", np.zeros((2, 3)), np.zeros((3, 2)), TOL)
    assert not d.passed
    assert d.error is not None


def test_to_dict_non_finite_become_none():
    d = _cmp([1.0, 2.0, 0.0], [1.0, NAN, 1.0])
    out = d.to_dict()
    assert out["max_abs"] is None
    assert out["mean_abs"] is None
    assert out["p99_abs"] is None
    assert out["max_rel"] is None
    assert out["mean_rel"] is None
    assert out["worst_got"] is None
    assert out["worst_ref"] == 2.0
    assert out["worst_index"] == [1]
    assert out["median_abs"] == 0.5  # median of the finite |Δ| [0, 1]
    assert out["passed"] is False
    assert out["failed_elements"] == 2
    assert out["total_elements"] == 3
    assert out["shape"] == [3]
    assert out["got_shape"] == [3]
    assert out["error"] is None
    text = json.dumps(out, allow_nan=False)
    assert json.loads(text) == out


def test_to_dict_finite_values():
    d = compare_tensor("t", np.array([2.0]), np.array([2.5]), TOL)
    out = d.to_dict()
    assert out["max_abs"] == 0.5
    assert out["max_rel"] == 0.25
    assert out["atol"] == 1e-3
    assert out["rtol"] == 1e-2
    json.dumps(out, allow_nan=False)


# ----------------------------------------------------------------------------------------------- tolerances


def test_default_tolerances():
    assert DEFAULT_TOLERANCES["fp32"] == Tolerance(atol=1e-5, rtol=1e-4)
    assert set(DEFAULT_TOLERANCES) >= {"fp32", "fp16", "int8"}
    assert DEFAULT_TOLERANCES["fp16"].atol > DEFAULT_TOLERANCES["fp32"].atol


def test_tolerances_overrides():
    tols = Tolerances(
        default=Tolerance(1e-5, 1e-4),
        atol={"h_n": 1e-3, "h_n.1": 5e-2, "output": 2e-5},
        rtol={"c_n": 0.5},
    )
    assert tols.for_tensor("output") == Tolerance(2e-5, 1e-4)
    assert tols.for_tensor("h_n") == Tolerance(1e-3, 1e-4)
    assert tols.for_tensor("h_n.0") == Tolerance(1e-3, 1e-4)  # base name applies to per-layer names
    assert tols.for_tensor("h_n.1") == Tolerance(5e-2, 1e-4)  # exact name beats base name
    assert tols.for_tensor("c_n.2") == Tolerance(1e-5, 0.5)
    assert tols.for_tensor("c_n") == Tolerance(1e-5, 0.5)
    assert tols.for_tensor("h0") == Tolerance(1e-5, 1e-4)


def test_tolerances_default_only():
    tols = Tolerances(default=TOL)
    assert tols.for_tensor("anything.3") == TOL


def test_parse_tolerances():
    assert parse_tolerances([], 1e-5, "--atol") == (1e-5, {})
    assert parse_tolerances(["1e-4"], 1e-5, "--atol") == (1e-4, {})
    assert parse_tolerances(("h_n=1e-3",), 1e-5, "--atol") == (1e-5, {"h_n": 1e-3})
    assert parse_tolerances(["h_n=1e-3", "2e-4", "c_n.0=0", "h_n=3e-3"], 1e-5, "--rtol") == (
        2e-4,
        {"h_n": 3e-3, "c_n.0": 0.0},
    )


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("abc", "expected a number or TENSOR=NUMBER"),
        ("h_n=", "expected a number or TENSOR=NUMBER"),
        ("h_n=x", "expected a number or TENSOR=NUMBER"),
        ("-1e-3", "expected a finite number >= 0"),
        ("h_n=-1", "expected a finite number >= 0"),
        ("nan", "expected a finite number >= 0"),
        ("inf", "expected a finite number >= 0"),
        ("=1e-3", "missing tensor name before '='"),
    ],
)
def test_parse_tolerances_errors(value: str, fragment: str):
    with pytest.raises(UsageError) as info:
        parse_tolerances([value], 1e-5, "--atol")
    msg = str(info.value)
    assert msg.startswith(f"--atol {value!r}:")
    assert fragment in msg
    assert info.value.exit_code == 2


# ----------------------------------------------------------------------------------------------- properties

_finite32 = hnp.arrays(
    dtype=np.float32,
    shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5),
    elements=st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=32),
)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(x=_finite32)
def test_property_identical_arrays_pass(x: np.ndarray):
    d = compare_tensor("t", x, x.copy(), Tolerance(0.0, 0.0))
    assert d.passed
    assert d.max_abs == 0.0
    assert d.max_rel == 0.0
    assert d.failed_elements == 0
    assert d.total_elements == x.size


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(
    x=_finite32,
    data=st.data(),
    atol=st.floats(1e-6, 1e-1),
    rtol=st.floats(1e-6, 1e-1),
    factor=st.floats(1.5, 100.0),
    sign=st.sampled_from([-1.0, 1.0]),
)
def test_property_one_large_perturbation_fails_at_its_index(x, data, atol, rtol, factor, sign):
    flat_index = data.draw(st.integers(0, x.size - 1))
    index = tuple(int(i) for i in np.unravel_index(flat_index, x.shape))
    ref = x.astype(np.float64)
    got = ref.copy()
    bound = max(atol, rtol * abs(ref[index]))
    got[index] += sign * factor * bound  # well beyond both atol and rtol * |ref| (exact in float64)
    d = compare_tensor("t", ref, got, Tolerance(atol, rtol))
    assert not d.passed
    assert d.failed_elements == 1
    assert d.worst_index == index
    assert d.max_abs == pytest.approx(factor * bound, rel=1e-6)
