"""The compiled pass for ensemble forecasts: every ensemble statistic from one sort per point.

For each grid point the M member values are sorted once, x_(1) ≤ … ≤ x_(M) (a row of grid
points at a time, through a sorting network: vector min/max, no branches); from that one sort
come (o the truth, x̄ the member mean)

* CRPS skill (1/M) Σ_i |x_i − o|,
* CRPS spread (1/(M(M−1))) Σ_{i,j} |x_i − x_j| = 2 Σ_k (2k − M − 1) x_(k) / (M(M−1)) (0 for
  M = 1), O(M log² M) for the network instead of O(M²) pairs,
* the unbiased member variance s² = Σ (x_i − x̄)² / (M − 1) (0 for M = 1) and (x̄ − o)²,
* the truth's rank among the members: r₋ = #{x_i < o}, e = #{x_i = o}; the point's weight is
  split equally over the ranks r₋ … r₋ + e (ties broken by an equal share, reproducibly and
  independent of member order).

Sums are accumulated per latitude row and longitude segment (as :mod:`wxeval.kernels`' careful
path), plain and land-weighted, and reduced to regions with the same region weights. A point
where the truth or any member is not finite counts as missing (NaN): it is tallied apart, and
makes the region's sums NaN unless ``skipna`` (done by the caller from the tallies).
"""

from __future__ import annotations

import functools

import numba
import numpy as np

from wxeval.kernels import _full_longitude, _region_sum, _sum_segments

#: Sums per point before the rank bins: skill, spread, variance, (x̄ − o)².
N_MOMENTS = 4


@functools.lru_cache(maxsize=64)
def sorting_network(m: int) -> np.ndarray:
    """Compare-exchange pairs (i < j) of Batcher's odd-even merge sort for M values: (P, 2).

    Built for the next power of two n ≥ M and restricted to pairs with j < M (the values
    beyond M would be +inf: a pair reaching one of them never moves anything), so it sorts any
    M values in O(M log² M) compare-exchanges — run on a whole row of grid points at once,
    each a vector min/max."""
    n = 1
    while n < m:
        n *= 2
    pairs = []
    p = 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p) and i + j + k < m:
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


@numba.njit(nogil=True, cache=True)
def _sort_columns(rows, pairs):  # pragma: no cover - compiled
    """Sort every column rows[:, b] in place with the network ``pairs`` (vector min/max
    along the row)."""
    nb = rows.shape[1]
    for q in range(pairs.shape[0]):
        ri = rows[pairs[q, 0]]
        rj = rows[pairs[q, 1]]
        for b in range(nb):
            u = ri[b]
            v = rj[b]
            ri[b] = min(u, v)
            rj[b] = max(u, v)


@numba.njit(nogil=True, cache=True, fastmath={"reassoc", "contract"})
def ensemble_sums(
    x, o, lon_first, seg_of_lon, nseg, lsm, use_land,
    region_land, region_segs, region_latw, n_bins, pairs, out, bad_out,
):  # pragma: no cover - compiled
    """Ensemble sums of N fields (``pairs``: :func:`sorting_network` of M).

    x: members (N, M, A, B); o: truth (N, A, B), in the reducer's orientation. out: (N, K, R)
    with K = 4 + n_bins — Σ W·skill, Σ W·spread, Σ W·s², Σ W·(x̄ − o)², then Σ W over the points
    whose truth has rank k (k = 0 … n_bins − 1; n_bins = 0 skips the ranks, n_bins must be
    M + 1 otherwise) — over the points where truth and members are finite; bad_out: (N, R),
    Σ W over the other points.

    Row by row (one A index): the members of the row are copied to float64, each point's
    members sorted in place (once), then every statistic is formed in loops over the row's
    points (vectorisable) from the sorted values."""
    n_fields, m, na, nb = x.shape
    nlat = nb if lon_first else na
    nreg = region_land.shape[0]
    nk = N_MOMENTS + n_bins
    acc = np.zeros((nk, 2, nseg, nlat))
    bad = np.zeros((1, 2, nseg, nlat))
    total = np.zeros((nk, 2, nlat))
    bad_total = np.zeros((1, 2, nlat))
    full = _full_longitude(region_segs)
    rows = np.empty((m, nb))
    ov = np.empty(nb)
    ok = np.empty(nb, dtype=np.bool_)
    mean = np.empty(nb)
    skill = np.empty(nb)
    spread = np.empty(nb)
    var = np.empty(nb)
    below = np.empty(nb, dtype=np.int64)
    equal = np.empty(nb, dtype=np.int64)
    # Coefficients of the sorted members in Σ_{i,j} |x_i − x_j| (k = 1 … M).
    coef = np.empty(m)
    for k in range(m):
        coef[k] = 2.0 * (2.0 * (k + 1) - m - 1)
    spread_norm = 1.0 / (m * (m - 1)) if m > 1 else 0.0
    var_norm = 1.0 / (m - 1) if m > 1 else 0.0
    for n in range(n_fields):
        acc[:] = 0.0
        bad[:] = 0.0
        for a in range(na):
            for b in range(nb):
                ov[b] = np.float64(o[n, a, b])
                ok[b] = np.isfinite(ov[b])
            for i in range(m):
                for b in range(nb):
                    v = np.float64(x[n, i, a, b])
                    rows[i, b] = v
                    ok[b] = ok[b] and np.isfinite(v)
            for b in range(nb):
                if not ok[b]:  # missing: zeros keep the loops below NaN-free; tallied apart
                    ov[b] = 0.0
                    for i in range(m):
                        rows[i, b] = 0.0
            _sort_columns(rows, pairs)
            # The mean from the sorted members: the same bits whatever the member order.
            for b in range(nb):
                mean[b] = 0.0
                skill[b] = 0.0
                spread[b] = 0.0
                var[b] = 0.0
                below[b] = 0
                equal[b] = 0
            for k in range(m):
                ck = coef[k]
                for b in range(nb):
                    v = rows[k, b]
                    mean[b] += v
                    skill[b] += abs(v - ov[b])
                    spread[b] += ck * v
                    below[b] += v < ov[b]
                    equal[b] += v == ov[b]
            for b in range(nb):
                mean[b] /= m
            for k in range(m):
                for b in range(nb):
                    d = rows[k, b] - mean[b]
                    var[b] += d * d
            for b in range(nb):
                s = seg_of_lon[a if lon_first else b]
                lat_i = b if lon_first else a
                lam = lsm[a, b] if use_land else 0.0
                if not ok[b]:
                    bad[0, 0, s, lat_i] += 1.0
                    bad[0, 1, s, lat_i] += lam
                    continue
                err = mean[b] - ov[b]
                v0 = skill[b] / m
                v1 = spread[b] * spread_norm
                v2 = var[b] * var_norm
                v3 = err * err
                acc[0, 0, s, lat_i] += v0
                acc[1, 0, s, lat_i] += v1
                acc[2, 0, s, lat_i] += v2
                acc[3, 0, s, lat_i] += v3
                if use_land:
                    acc[0, 1, s, lat_i] += lam * v0
                    acc[1, 1, s, lat_i] += lam * v1
                    acc[2, 1, s, lat_i] += lam * v2
                    acc[3, 1, s, lat_i] += lam * v3
                if n_bins > 0:
                    lo = below[b]
                    e = equal[b]
                    share = 1.0 / (e + 1)
                    for k in range(lo, lo + e + 1):
                        acc[N_MOMENTS + k, 0, s, lat_i] += share
                        acc[N_MOMENTS + k, 1, s, lat_i] += lam * share
        _sum_segments(acc, total)
        _sum_segments(bad, bad_total)
        for r in range(nreg):
            land = region_land[r]
            for k in range(nk):
                out[n, k, r] = _region_sum(acc, total, k, land, r, full[r], region_segs,
                                           region_latw)
            bad_out[n, r] = _region_sum(bad, bad_total, 0, land, r, full[r], region_segs,
                                        region_latw)
