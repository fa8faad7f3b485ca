"""The compiled kernel's layout machinery against NumPy: many regions (many latitude ×
longitude cells, both storage orders, float32 fields as stored), fields read in place from
stacks by index (``compute(..., at=...)``), and :func:`wxeval.statistics.field_stack`."""

from __future__ import annotations

import numpy as np
import pytest

from wxeval.regions import LAND_REGIONS, STANDARD_REGIONS, RegionReducer, area_weights
from wxeval.statistics import compute, field_stack, reference

LAT = np.linspace(-90.0, 90.0, 37)  # 5°
LON = np.arange(72) * 5.0
REGIONS = [*STANDARD_REGIONS.values(), *LAND_REGIONS.values()]
GROUPS = ("errors", "anomalies", "nan_counts")


def _dense_weights(lsm: np.ndarray) -> np.ndarray:
    """(R, lat·lon) weights written out point by point: area × box mask (× land fraction)."""
    w = area_weights(LAT)
    out = []
    for r in REGIONS:
        m = r.mask(LAT, LON).astype(float)
        out.append((w[:, None] * m * (lsm if r.land else 1.0)).ravel())
    return np.array(out)


def _fields(n: int, seed: int):
    rng = np.random.default_rng(seed)
    lsm = np.clip(rng.uniform(-0.8, 1.5, size=(len(LAT), len(LON))), 0, 1)
    c = (280 + 5 * rng.normal(size=(n, len(LAT), len(LON)))).astype(np.float32)
    o = (c + 3 * rng.normal(size=c.shape)).astype(np.float32)
    f = (o + 0.5 + 2 * rng.normal(size=c.shape)).astype(np.float32)
    return f, o, c, lsm


def _stored(x: np.ndarray, lon_first: bool) -> np.ndarray:
    return np.ascontiguousarray(np.swapaxes(x, -1, -2) if lon_first else x)


def _expected(f, o, c, lsm):
    w = _dense_weights(lsm)
    flat = [x.reshape(x.shape[0], -1) for x in (f, o, c)]
    return {g: reference(g, *flat, w) for g in GROUPS}


@pytest.mark.parametrize("lon_first", [True, False], ids=["lon-lat", "lat-lon"])
def test_sixteen_regions_both_orders(lon_first):
    """All 16 standard and land regions (13 longitude × 12 latitude segments at 5°): clean
    fields take the fast path, a field with a NaN and one with an inf the careful path, in the
    same call."""
    f, o, c, lsm = _fields(6, seed=3)
    f[2, 10, 20] = np.nan
    o[4, 30, 50] = np.inf
    expected = _expected(f, o, c, lsm)
    reducer = RegionReducer(REGIONS, LAT, LON, lsm, lon_axis=-2 if lon_first else -1)
    assert reducer.nseg > 5 and len(reducer.lat_seg_start) - 1 > 5
    got = compute(GROUPS, *(_stored(x, lon_first) for x in (f, o, c)), reducer)
    for g in GROUPS:
        np.testing.assert_allclose(got[g], expected[g], rtol=1e-12, atol=1e-9, err_msg=g)
    assert np.isnan(got["errors"][2]).any() and np.isfinite(got["errors"][0]).all()


@pytest.mark.parametrize("lon_first", [True, False], ids=["lon-lat", "lat-lon"])
def test_in_place_stacks_equal_gathered_fields(lon_first):
    """Field n = f[f_at[n]] against o[o_at[n]], c[c_at[n]] (indices repeating and out of
    order) gives what the gathered copies give, and the NumPy reference."""
    f, o, c, lsm = _fields(7, seed=5)
    fs, os_, cs = (_stored(x, lon_first) for x in (f, o, c))
    f_at = np.array([0, 3, 3, 6, 1])
    o_at = np.array([2, 2, 0, 5, 4])
    c_at = np.array([6, 1, 1, 0, 3])
    reducer = RegionReducer(REGIONS, LAT, LON, lsm, lon_axis=-2 if lon_first else -1)
    by_index = compute(GROUPS, fs, os_, cs, reducer, at=(f_at, o_at, c_at))
    gathered = compute(GROUPS, fs[f_at], os_[o_at], cs[c_at], reducer)
    expected = _expected(f[f_at], o[o_at], c[c_at], lsm)
    for g in GROUPS:
        np.testing.assert_array_equal(by_index[g], gathered[g], err_msg=g)
        np.testing.assert_allclose(by_index[g], expected[g], rtol=1e-12, atol=1e-9, err_msg=g)


@pytest.mark.parametrize("bad", [
    (np.array([0, 1]), np.array([0, 7]), np.array([0, 1])),  # past the end of o
    (np.array([0, 1]), np.array([0, -1]), np.array([0, 1])),  # negative: would wrap round
    (np.array([0, 1]), np.array([0]), np.array([0, 1])),  # shorter than f's
])
def test_positions_outside_a_stack_are_refused(bad):
    """The kernels index the stacks unchecked: positions that are not all inside their stack
    (or not one per field) are an error, not a read of other memory."""
    f, o, c, lsm = _fields(2, seed=3)
    reducer = RegionReducer(REGIONS, LAT, LON, lsm, lon_axis=-1)
    with pytest.raises(ValueError, match="positions `at`"):
        compute(GROUPS, f, o, c, reducer, at=bad)


def test_field_stack_views_a_lead_of_a_read_group():
    """A lead of a read group (init, lead, level, A, B)[:, k] is served without a copy; the
    stack stays inside the group's buffer; other layouts are copied."""
    data = np.arange(4 * 3 * 2 * 5 * 6, dtype=np.float32).reshape(4, 3, 2, 5, 6)
    for k in range(3):
        x = data[:, k]
        stack, index = field_stack(x)
        assert np.shares_memory(stack, data) and stack.flags.c_contiguous
        np.testing.assert_array_equal(stack[index], x.reshape(-1, 5, 6))
        last = stack.__array_interface__["data"][0] + stack.nbytes
        assert last <= data.__array_interface__["data"][0] + data.nbytes
    whole = data.reshape(-1, 5, 6)
    stack, index = field_stack(whole)
    assert stack.base is not None and np.array_equal(index, np.arange(len(whole)))
    transposed = np.swapaxes(data[:, 0], -1, -2)  # (init, level, B, A): not contiguous fields
    stack, index = field_stack(transposed)
    assert not np.shares_memory(stack, data)
    np.testing.assert_array_equal(stack[index], transposed.reshape(-1, 6, 5))
