"""``wxeval.indexing`` against plain NumPy: positions by label, slices, orthogonal selection.

Expected values are written by hand or built with explicit loops over NumPy arrays.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from wxeval.indexing import as_slice, orthogonal, positions


def loop_positions(axis, values) -> list[int]:
    """First position of each value on ``axis`` by a plain loop, -1 when absent."""
    out = []
    for v in values:
        hits = [i for i, a in enumerate(axis) if a == v]
        out.append(hits[0] if hits else -1)
    return out


def loop_orthogonal(a: np.ndarray, per_axis: list[list[int]]) -> np.ndarray:
    """``a`` at every combination of the per-axis positions, by a plain loop."""
    out = np.empty(tuple(len(p) for p in per_axis), dtype=a.dtype)
    for dst in itertools.product(*[range(len(p)) for p in per_axis]):
        out[dst] = a[tuple(p[i] for p, i in zip(per_axis, dst, strict=True))]
    return out


def test_positions_of_integers_unsorted_axis():
    axis = np.array([850, 500, 1000, 250])
    values = [500, 250, 700, 1000, 850]
    got = positions(axis, values)
    assert got.tolist() == [1, 3, -1, 2, 0] == loop_positions(axis, values)
    assert got.dtype == np.int64


def test_positions_of_datetimes_of_another_unit():
    axis = np.array(["2020-01-01T00", "2020-01-01T12", "2020-01-02T00"], dtype="datetime64[ns]")
    values = np.array(["2020-01-02T00", "2020-01-01T06", "2020-01-01T00"], dtype="datetime64[s]")
    assert positions(axis, values).tolist() == [2, -1, 0]


def test_positions_of_timedeltas_and_mixed_int_float_labels():
    leads = np.array([0, 6, 12, 24], dtype="timedelta64[h]").astype("timedelta64[ns]")
    assert positions(leads, np.array([24, 6, 7], dtype="timedelta64[h]")).tolist() == [3, 1, -1]
    # climatology labels (dayofyear) stored as floats, looked up by integer
    doy = np.arange(1.0, 367.0)
    assert positions(doy, np.array([1, 366, 60])).tolist() == [0, 365, 59]


def test_positions_on_an_axis_with_repeats_finds_the_first():
    axis = np.array([3, 1, 3, 2, 1])
    values = [1, 3, 2, 9]
    assert positions(axis, values).tolist() == [1, 0, 3, -1] == loop_positions(axis, values)


def test_positions_of_nothing():
    assert positions(np.array([1, 2]), np.array([], dtype=int)).tolist() == []


@pytest.mark.parametrize(("index", "expected"), [
    (np.array([3, 4, 5]), slice(3, 6)),
    (np.array([7]), slice(7, 8)),
])
def test_as_slice_of_consecutive_positions(index, expected):
    assert as_slice(index) == expected
    a = np.arange(10) * 10
    np.testing.assert_array_equal(a[as_slice(index)], a[index])


@pytest.mark.parametrize("index", [
    np.array([3, 5]), np.array([5, 4]), np.array([], dtype=np.int64), np.array([[1, 2]]),
    np.array([True, False]), slice(1, 4), 3,
])
def test_as_slice_leaves_anything_else_alone(index):
    assert as_slice(index) is index


@pytest.mark.parametrize("per_axis", [
    [[0, 1, 2], [1, 2], [0, 1, 2, 3]],  # every axis a run: basic indexing
    [[2, 0], [1], [3, 1, 2]],  # positions in any order
    [[1, 2], [0, 2], [1, 2, 3]],  # runs and gaps mixed
    [[], [0, 1], [2]],  # an empty axis
])
def test_orthogonal_matches_a_loop(per_axis):
    a = np.arange(3 * 4 * 5).reshape(3, 4, 5) * 1.5
    index = orthogonal([np.array(p, dtype=np.int64) for p in per_axis], a.shape)
    np.testing.assert_array_equal(a[index], loop_orthogonal(a, per_axis))


def test_orthogonal_runs_become_basic_indexing_a_view():
    a = np.arange(24).reshape(4, 6)
    index = orthogonal([slice(None), np.array([2, 3, 4])], a.shape)
    assert index == (slice(None), slice(2, 5))
    assert np.shares_memory(a[index], a)


def test_orthogonal_slices_with_positions_and_assignment():
    a = np.arange(4 * 6 * 2).reshape(4, 6, 2)
    index = orthogonal([slice(1, None), np.array([5, 0]), slice(None)], a.shape)
    np.testing.assert_array_equal(a[index], loop_orthogonal(a, [[1, 2, 3], [5, 0], [0, 1]]))
    out = np.zeros_like(a)
    out[index] = a[index]
    expected = np.zeros_like(a)
    for i, j, k in itertools.product([1, 2, 3], [5, 0], [0, 1]):
        expected[i, j, k] = a[i, j, k]
    np.testing.assert_array_equal(out, expected)


def test_orthogonal_needs_one_index_per_axis():
    with pytest.raises(ValueError, match="2 per-axis indexes for an array of 3 axes"):
        orthogonal([slice(None), np.array([0])], (2, 3, 4))
