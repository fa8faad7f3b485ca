"""The compiled pass for ensemble forecasts: every ensemble statistic from one sort per point.

For each grid point the M member values are copied to a small float64 buffer and sorted once,
x_(1) ≤ … ≤ x_(M); from that one sort come (o the truth, x̄ the member mean)

* CRPS skill (1/M) Σ_i |x_i − o|,
* CRPS spread (1/(M(M−1))) Σ_{i,j} |x_i − x_j| = 2 Σ_k (2k − M − 1) x_(k) / (M(M−1)) (0 for
  M = 1), O(M log M) instead of O(M²),
* the unbiased member variance s² = Σ (x_i − x̄)² / (M − 1) (0 for M = 1) and (x̄ − o)²,
* the truth's rank among the members: r₋ = #{x_i < o}, e = #{x_i = o}; the point's weight is
  split equally over the ranks r₋ … r₋ + e (ties broken by an equal share, reproducibly and
  independent of member order).

Sums are accumulated per latitude row and longitude segment (as :mod:`wxeval.kernels`), plain
and land-weighted, and reduced to regions with the same region weights. A point where the truth
or any member is not finite counts as missing (NaN): it is tallied apart, and makes the region's
sums NaN unless ``skipna`` (done by the caller from the tallies).
"""

from __future__ import annotations

import numba
import numpy as np

from wxeval.kernels import _full_longitude, _region_sum, _sum_segments

#: Sums per point before the rank bins: skill, spread, variance, (x̄ − o)².
N_MOMENTS = 4


@numba.njit(nogil=True, cache=True)
def ensemble_sums(
    x, o, lon_first, seg_of_lon, nseg, lsm, use_land,
    region_land, region_segs, region_latw, n_bins, out, bad_out,
):  # pragma: no cover - compiled
    """Ensemble sums of N fields.

    x: members (N, M, A, B); o: truth (N, A, B), in the reducer's orientation. out: (N, K, R)
    with K = 4 + n_bins — Σ W·skill, Σ W·spread, Σ W·s², Σ W·(x̄ − o)², then Σ W over the points
    whose truth has rank k (k = 0 … n_bins − 1; n_bins = 0 skips the ranks, n_bins must be
    M + 1 otherwise) — over the points where truth and members are finite; bad_out: (N, R),
    Σ W over the other points."""
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
    buf = np.empty(m)
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
            for i in range(m):
                for b in range(nb):
                    rows[i, b] = x[n, i, a, b]
            for b in range(nb):
                s = seg_of_lon[a if lon_first else b]
                lat_i = b if lon_first else a
                lam = lsm[a, b] if use_land else 0.0
                ov = np.float64(o[n, a, b])
                ok = np.isfinite(ov)
                for i in range(m):
                    v = rows[i, b]
                    buf[i] = v
                    if not np.isfinite(v):
                        ok = False
                if not ok:
                    bad[0, 0, s, lat_i] += 1.0
                    bad[0, 1, s, lat_i] += lam
                    continue
                buf.sort()
                # The mean from the sorted members: the same bits whatever the member order.
                total_x = 0.0
                for k in range(m):
                    total_x += buf[k]
                mean = total_x / m
                skill = 0.0
                spread = 0.0
                var = 0.0
                below = 0
                equal = 0
                for k in range(m):
                    v = buf[k]
                    skill += abs(v - ov)
                    spread += coef[k] * v
                    dv = v - mean
                    var += dv * dv
                    if v < ov:
                        below += 1
                    elif v == ov:
                        equal += 1
                err = mean - ov
                vals = (skill / m, spread * spread_norm, var * var_norm, err * err)
                for k in range(N_MOMENTS):
                    acc[k, 0, s, lat_i] += vals[k]
                    acc[k, 1, s, lat_i] += lam * vals[k]
                if n_bins > 0:
                    share = 1.0 / (equal + 1)
                    for k in range(below, below + equal + 1):
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
