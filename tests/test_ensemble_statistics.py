"""Ensemble statistic groups (``ensemble``, ``rank``) against brute force written here.

Brute force: CRPS spread by the O(M²) sum over all member pairs, member variance and mean by
NumPy, the truth's rank by explicit sorting (``np.searchsorted`` on the sorted members) with
ties sharing the weight equally; region sums by dense weights. Compared to 1e-10 in float64,
for several M (1, 2, 5, 10) with ties and a NaN member, in both storage orders, and with the
members permuted (every number must stay the same)."""

from __future__ import annotations

import numpy as np
import pytest
from test_nonfinite import INBOX, LAT, LON, SOUTH, _inputs

from wxeval.regions import RegionReducer
from wxeval.statistics import ENSEMBLE_STATISTICS, RANK_BINS, compute, reference


def _ensemble_inputs(m: int, seed: int = 0, n: int = 3):
    f, o, c, lsm, w, regions = _inputs(seed=seed, n=n)
    rng = np.random.default_rng(seed + 7)
    x = o[:, None] + 0.3 + 2.0 * rng.normal(size=(n, m, *o.shape[1:]))
    # Ties: members rounded, truth equal to some members at some points.
    x[0] = np.round(x[0])
    o[0] = np.round(o[0])
    x[1, :, 4, 4] = o[1, 4, 4]  # every member equal to the truth at one point
    return x, o, lsm, w, regions


def _brute(x, o, w, skipna=False):
    """(N, R, 6 + RANK_BINS) by hand: the ensemble sums, M, then the rank bins."""
    n, m = x.shape[:2]
    xf = x.reshape(n, m, -1)
    of = o.reshape(n, -1)
    out = np.zeros((n, w.shape[0], 6 + RANK_BINS))
    for i in range(n):
        for p in range(of.shape[1]):
            xs, ov = xf[i, :, p], of[i, p]
            good = np.isfinite(ov) and np.isfinite(xs).all()
            for r in range(w.shape[0]):
                if w[r, p] <= 0:
                    continue
                if not good:
                    if not skipna:
                        out[i, r] = np.nan
                    continue
                pairs = sum(abs(a - b) for a in xs for b in xs)
                mean = sum(xs) / m
                vals = [
                    1.0,
                    sum(abs(a - ov) for a in xs) / m,
                    pairs / (m * (m - 1)) if m > 1 else 0.0,
                    sum((a - mean) ** 2 for a in xs) / (m - 1) if m > 1 else 0.0,
                    (mean - ov) ** 2,
                    0.0,
                ]
                srt = np.sort(xs)
                lo = int(np.searchsorted(srt, ov, side="left"))
                hi = int(np.searchsorted(srt, ov, side="right"))
                ranks = np.zeros(RANK_BINS)
                ranks[lo:hi + 1] = 1.0 / (hi - lo + 1)
                out[i, r] += w[r, p] * np.concatenate([vals, ranks])
    out[:, :, 5] = m  # ensemble_size, whatever the NaNs
    return out


def _compiled(x, o, lsm, regions, lon_first, skipna=False, groups=("ensemble", "rank")):
    reducer = RegionReducer(regions, LAT, LON, lsm, lon_axis=-2 if lon_first else -1)
    xs = np.ascontiguousarray(np.swapaxes(x, -1, -2) if lon_first else x)
    os_ = np.ascontiguousarray(np.swapaxes(o, -1, -2) if lon_first else o)
    got = compute(groups, xs.mean(axis=1), os_, None, reducer, skipna=skipna, members=xs)
    return np.concatenate([got[g] for g in groups], axis=-1)


@pytest.mark.parametrize("m", [1, 2, 5, 10])
@pytest.mark.parametrize("lon_first", [True, False], ids=["lon-lat", "lat-lon"])
def test_compiled_and_reference_match_brute_force(m, lon_first):
    x, o, lsm, w, regions = _ensemble_inputs(m)
    expected = _brute(x, o, w)
    got = _compiled(x, o, lsm, regions, lon_first)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)
    ref = np.concatenate(
        [reference(g, x.reshape(*x.shape[:2], -1), o.reshape(o.shape[0], -1), None, w)
         for g in ("ensemble", "rank")], axis=-1)
    np.testing.assert_allclose(ref, expected, rtol=1e-10, atol=1e-10)
    # The rank bins sum to the weight, and slots above M are empty.
    np.testing.assert_allclose(got[..., 6:].sum(axis=-1), got[..., 0], rtol=1e-12)
    assert (got[..., 6 + m + 1:] == 0).all()
    assert got[..., 1].min() > 0 and got[..., 4].min() > 0  # skill and (x̄ − o)² exercised
    if m > 1:
        assert got[..., 2].min() > 0 and got[..., 3].min() > 0


def test_large_ensemble_matches_brute_force():
    """M = 50 (51 rank bins, the most stored) through the sorting network."""
    x, o, lsm, w, regions = _ensemble_inputs(50, seed=6, n=2)
    np.testing.assert_allclose(_compiled(x, o, lsm, regions, lon_first=False), _brute(x, o, w),
                               rtol=1e-10, atol=1e-10)


def test_sorting_network_sorts_every_size():
    from wxeval.ensemble_kernels import sorting_network

    rng = np.random.default_rng(0)
    for m in range(1, 70):
        x = rng.normal(size=(m, 64))
        x[:, :8] = np.round(x[:, :8])  # ties
        want = np.sort(x, axis=0)
        for i, j in sorting_network(m):
            x[i], x[j] = np.minimum(x[i], x[j]), np.maximum(x[i], x[j])
        np.testing.assert_array_equal(x, want, err_msg=f"M = {m}")


@pytest.mark.parametrize("m", [2, 7])
def test_member_order_does_not_matter(m):
    x, o, lsm, w, regions = _ensemble_inputs(m, seed=3)
    base = _compiled(x, o, lsm, regions, lon_first=True)
    rng = np.random.default_rng(1)
    for _ in range(3):
        perm = rng.permutation(m)
        # Bitwise equal: the kernel sorts the members, so order cannot enter.
        np.testing.assert_array_equal(_compiled(x[:, perm], o, lsm, regions, True), base)


@pytest.mark.parametrize("skipna", [False, True], ids=["", "skipna"])
def test_nan_member_makes_the_region_nan_or_is_skipped(skipna):
    x, o, lsm, w, regions = _ensemble_inputs(4, seed=2)
    x[0, 2, SOUTH[0], SOUTH[1]] = np.nan  # one member, inside "all" only (sea point)
    x[1, 0, INBOX[0], INBOX[1]] = np.inf  # non-finite: missing as well
    expected = _brute(x, o, w, skipna=skipna)
    for lon_first in (True, False):
        got = _compiled(x, o, lsm, regions, lon_first, skipna=skipna)
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)
    assert np.isnan(expected).any() != skipna


def test_deterministic_forecast_is_a_one_member_ensemble():
    """crps_skill of one member is Σ W |f − o| (the errors group's sum_ae), spread 0."""
    x, o, lsm, w, regions = _ensemble_inputs(1, seed=4)
    reducer = RegionReducer(regions, LAT, LON, lsm, lon_axis=-1)
    got = compute(("errors", "ensemble"), x[:, 0], o, None, reducer)
    e, ens = got["errors"], got["ensemble"]
    np.testing.assert_allclose(ens[..., 1], e[..., 3], rtol=1e-12)
    assert (ens[..., 2] == 0).all() and (ens[..., 3] == 0).all()
    assert ENSEMBLE_STATISTICS[1] == "sum_crps_skill"
