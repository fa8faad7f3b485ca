"""The hot loop: one pass over forecast, truth and climatology values, all statistics at once.

Compiled with numba (released GIL, so dask threads run it in parallel). For each field it
reads every grid value once, forms d = f − o, f′ = f − c, o′ = o − c and accumulates the
products d², d, |d| (and f′o′, f′², o′² with a climatology) in float64, plain and weighted by
the land fraction λ, into *cells*: the points of one latitude segment × one longitude segment
(maximal runs of rows, of columns, on which every region's latitude, longitude mask is
constant). Every region is a union of cells, so a region's weighted sum
Σ_ij w_i a_i b_j λ_ij x_ij (w area weights, a/b its latitude/longitude masks, λ for land
regions, else 1) is a short sum of cell sums, and the pass costs the same for 1 or 16 regions.

How the cells are summed depends on the storage order, so that the inner loop always runs
along the contiguous axis and vectorises: fields stored (lon, lat) (WeatherBench 2's order)
add each longitude row of a longitude segment into latitude-long accumulators, then sum each
latitude segment with the area weights; fields stored (lat, lon) add w_i × each latitude row of
a latitude segment into longitude-long accumulators, then sum each longitude segment. The
land-weighted products are a second loop over the same rows (still in cache): one loop of 12
accumulators does not vectorise.

Truth and climatology are read in place: field n is f[f_at[n]] against o[o_at[n]] and
c[c_at[n]], stacks of fields (a task's whole valid-time window), so no per-lead copy is made.

NaN values are counted the same way (per longitude segment and latitude row, on a careful
path), so that a NaN where a region's weight is > 0 can make that region's value NaN (or be
skipped with skipna); ±inf products are counted apart too, so that an inf where a region's
weight is 0 (outside it, or at sea for a land region) never reaches its sum as 0 × inf = NaN
(WB2 zeroes the values outside a region before summing). A field takes that careful path only
when one of its plain cell sums is not finite.
"""

from __future__ import annotations

import numba
import numpy as np

# The fast paths: one field (A, B) without NaN or ±inf (a NaN shows up in the sums' row totals,
# and the field is then redone by :func:`_careful`). Each loop reads f, o (and c) once and adds
# 3 (errors) or 6 (errors and anomalies) products; the land-weighted products are a second loop,
# as one loop of 12 accumulators does not vectorise (the compiler gives up its overlap checks).


@numba.njit(nogil=True, cache=True)
def _plain_rows(f, o, c, has_clim, a0, a1, w, acc):  # pragma: no cover - compiled
    """Rows a0..a1 − 1 of either storage order (one segment): acc[k, 0, ·] += w_a × product k,
    vector loops along the row into row-long accumulators (w: the area weight of each row
    stored (lat, lon), ones for rows stored (lon, lat), whose area weights come with the
    cells)."""
    nb = f.shape[1]
    r0, r1, r2 = acc[0, 0], acc[1, 0], acc[2, 0]
    r3, r4, r5 = acc[3, 0], acc[4, 0], acc[5, 0]
    for a in range(a0, a1):
        wa = w[a]
        fr, orow, cr = f[a], o[a], c[a]
        if has_clim:
            for b in range(nb):
                fv = np.float64(fr[b])
                ov = np.float64(orow[b])
                cv = np.float64(cr[b])
                d = fv - ov
                fa = fv - cv
                oa = ov - cv
                r0[b] += wa * (d * d)
                r1[b] += wa * d
                r2[b] += wa * abs(d)
                r3[b] += wa * (fa * oa)
                r4[b] += wa * (fa * fa)
                r5[b] += wa * (oa * oa)
        else:
            for b in range(nb):
                d = np.float64(fr[b]) - np.float64(orow[b])
                r0[b] += wa * (d * d)
                r1[b] += wa * d
                r2[b] += wa * abs(d)


@numba.njit(nogil=True, cache=True)
def _land_rows(f, o, c, has_clim, a0, a1, w, lsm, acc):  # pragma: no cover - compiled
    """Rows a0..a1 − 1 of either storage order: the land-weighted sums acc[k, 1, ·] +=
    w_a λ × product k (w: the area weight of each row stored (lat, lon), ones for rows stored
    (lon, lat), whose area weights come with the cells)."""
    nb = f.shape[1]
    r0, r1, r2 = acc[0, 1], acc[1, 1], acc[2, 1]
    r3, r4, r5 = acc[3, 1], acc[4, 1], acc[5, 1]
    for a in range(a0, a1):
        wa = w[a]
        fr, orow, cr, lr = f[a], o[a], c[a], lsm[a]
        if has_clim:
            for b in range(nb):
                fv = np.float64(fr[b])
                ov = np.float64(orow[b])
                cv = np.float64(cr[b])
                wl = wa * lr[b]
                d = fv - ov
                fa = fv - cv
                oa = ov - cv
                r0[b] += wl * (d * d)
                r1[b] += wl * d
                r2[b] += wl * abs(d)
                r3[b] += wl * (fa * oa)
                r4[b] += wl * (fa * fa)
                r5[b] += wl * (oa * oa)
        else:
            for b in range(nb):
                d = np.float64(fr[b]) - np.float64(orow[b])
                wl = wa * lr[b]
                r0[b] += wl * (d * d)
                r1[b] += wl * d
                r2[b] += wl * abs(d)


@numba.njit(nogil=True, cache=True, fastmath={"reassoc", "contract"})
def _lat_first(f, o, c, has_clim, nk, nland, lat_seg_start, w, lon_seg_start, lsm, acc, cell):
    """Fields stored (lat, lon): cell[k, land, g, s] = Σ over the points of latitude segment g
    and longitude segment s of w_lat (× λ) × product k, latitude segment by segment: the rows of
    one segment add into longitude-long accumulators (hot in cache), then each longitude
    segment's run is summed. Returns whether a plain cell is not finite (NaN or ±inf: the
    field is then redone by :func:`_careful`)."""  # noqa: D401
    nlatseg = lat_seg_start.shape[0] - 1
    nseg = lon_seg_start.shape[0] - 1
    bad = False
    for g in range(nlatseg):
        a0, a1 = lat_seg_start[g], lat_seg_start[g + 1]
        acc[:nk, :nland] = 0.0
        _plain_rows(f, o, c, has_clim, a0, a1, w, acc)
        if nland == 2:
            _land_rows(f, o, c, has_clim, a0, a1, w, lsm, acc)
        for k in range(nk):
            for land in range(nland):
                row = acc[k, land]
                for s in range(nseg):
                    v = 0.0
                    for b in range(lon_seg_start[s], lon_seg_start[s + 1]):
                        v += row[b]
                    cell[k, land, g, s] = v
                    if land == 0 and not np.isfinite(v):
                        bad = True
    return bad


@numba.njit(nogil=True, cache=True)
def _add_product(p, lam, k, s, lat_i, sums, nonfinite):  # pragma: no cover - compiled
    """Add one product p (weight 1 and land weight lam) to sums if finite, else tally it in
    nonfinite[0] (+inf), [1] (−inf) or [2] (NaN, e.g. 0·inf): never 0·inf into a sum."""
    if np.isfinite(p):
        sums[k, 0, s, lat_i] += p
        sums[k, 1, s, lat_i] += lam * p
        return
    kind = 2
    if p > 0:
        kind = 0
    elif p < 0:
        kind = 1
    nonfinite[kind, k, 0, s, lat_i] += 1.0
    nonfinite[kind, k, 1, s, lat_i] += lam


@numba.njit(nogil=True, cache=True)
def _careful(f, o, c, has_clim, lon_first, seg_of_lon, lsm, use_land, sums, bad, nonfinite):  # noqa: E501
    """Accumulate one field that holds a non-finite value, point by point.

    NaN points (d = f − o NaN, or f′/o′ NaN for the ACC sums) count 0 and are tallied in bad;
    a product that is ±inf or NaN at a point where d, f′, o′ are not NaN (inf inputs, overflow)
    counts 0 in sums and is tallied in nonfinite (sign, product, land, segment, row), so that it
    reaches only the regions whose weight there is > 0 (see :func:`_finish`)."""
    na, nb = f.shape
    for a in range(na):
        for b in range(nb):
            if lon_first:
                lon_i = a
                lat_i = b
            else:
                lon_i = b
                lat_i = a
            s = seg_of_lon[lon_i]
            fv = np.float64(f[a, b])
            ov = np.float64(o[a, b])
            lam = lsm[a, b] if use_land else 0.0
            d = fv - ov
            if np.isnan(d):
                bad[0, 0, s, lat_i] += 1.0
                bad[0, 1, s, lat_i] += lam
                bad[1, 0, s, lat_i] += 1.0
                bad[1, 1, s, lat_i] += lam
                continue
            _add_product(d * d, lam, 0, s, lat_i, sums, nonfinite)
            _add_product(d, lam, 1, s, lat_i, sums, nonfinite)
            _add_product(abs(d), lam, 2, s, lat_i, sums, nonfinite)
            if has_clim:
                cv = np.float64(c[a, b])
                fa = fv - cv
                oa = ov - cv
                if np.isnan(fa) or np.isnan(oa):
                    bad[1, 0, s, lat_i] += 1.0
                    bad[1, 1, s, lat_i] += lam
                    continue
                _add_product(fa * oa, lam, 3, s, lat_i, sums, nonfinite)
                _add_product(fa * fa, lam, 4, s, lat_i, sums, nonfinite)
                _add_product(oa * oa, lam, 5, s, lat_i, sums, nonfinite)


@numba.njit(nogil=True, cache=True)
def _finish(value, nonfinite, nf_total, k, land, r, full, region_segs, region_latw):
    """A region's sum with its non-finite products put back as NumPy would sum them
    (Σ W·x over W > 0 only): +inf if any +inf has weight > 0, −inf likewise, NaN if both or
    if a NaN product has weight > 0. Products where the weight is 0 never matter."""
    pos = _region_sum(nonfinite[0], nf_total[0], k, land, r, full, region_segs, region_latw)
    neg = _region_sum(nonfinite[1], nf_total[1], k, land, r, full, region_segs, region_latw)
    nan = _region_sum(nonfinite[2], nf_total[2], k, land, r, full, region_segs, region_latw)
    if pos > 0:
        value += np.inf
    if neg > 0:
        value -= np.inf
    if nan > 0:
        value = np.nan
    return value


@numba.njit(nogil=True, cache=True)
def field_statistics(
    f, f_at, o, o_at, c, c_at, has_clim, lon_first, seg_of_lon, nseg, lsm, use_land,
    region_land, region_segs, region_latw, lat_seg_start, lat_w, region_latsegs, out, bad_out,
):  # pragma: no cover - compiled
    """Field n (of N = len(f_at)) is f[f_at[n]] against o[o_at[n]] (and c[c_at[n]]): f, o, c
    are stacks of fields (·, A, B), (A, B) = (lon, lat) if lon_first else (lat, lon), read in
    place (no gathered copies of the truth and climatology per lead). ``lat_seg_start``
    (latitude segments: maximal row runs on which every region's latitude mask is constant),
    ``lat_w`` (area weight per row) and ``region_latsegs`` (R, latitude segments) serve fields
    stored (lat, lon), whose fast path sums per (latitude segment, longitude segment) cell.

    out: (N, 6, R) float64 — Σ W·product per region for d², d, |d|, f′o′, f′², o′²;
    bad_out: (N, 2, R) — Σ W·[d is NaN] and Σ W·[f′ or o′ is NaN]. Products at NaN points
    count as 0. Fields without NaN or ±inf take a fast path; a non-finite value makes its row
    total non-finite, and only then is the field redone point by point, where ±inf products
    reach a region's sum only where its weight is > 0 (0 × inf is never formed: values outside
    a region never matter).
    """
    n_fields = f_at.shape[0]
    na, nb = f.shape[1], f.shape[2]
    nlat = nb if lon_first else na
    nreg = region_land.shape[0]
    sums = np.zeros((6, 2, nseg, nlat))
    bad = np.zeros((2, 2, nseg, nlat))
    nonfinite = np.zeros((3, 6, 2, nseg, nlat))  # (+inf, −inf, NaN) products, careful path
    nf_total = np.zeros((3, 6, 2, nlat))
    total = np.zeros((6, 2, nlat))  # sums summed over all segments (full-longitude regions)
    bad_total = np.zeros((2, 2, nlat))
    full = _full_longitude(region_segs)
    nk = 6 if has_clim else 3
    nland = 2 if use_land else 1
    # (lat, lon) order: per (latitude segment, longitude segment) cells, one segment at a time
    nlatseg = lat_seg_start.shape[0] - 1
    acc = np.zeros((6, 2, nlat if lon_first else nb))  # one segment's accumulators
    cell = np.zeros((6, 2, nlatseg, nseg))
    lon_seg_start = _segment_starts(seg_of_lon, nseg)
    for n in range(n_fields):
        fn, on, cn = f[f_at[n]], o[o_at[n]], c[c_at[n]]
        if lon_first:
            has_nan = _lon_first(fn, on, cn, has_clim, nk, nland, lat_seg_start, lat_w,
                                 lon_seg_start, lsm, acc, cell)
        else:
            has_nan = _lat_first(fn, on, cn, has_clim, nk, nland, lat_seg_start, lat_w,
                                 lon_seg_start, lsm, acc, cell)
        # Any NaN or ±inf (input, or overflow) shows up in a plain cell (the land products are
        # the plain ones times a finite fraction): only then is the field redone point by point.
        if not has_nan:
            _cell_regions(cell, nk, region_land, region_latsegs, region_segs, out[n])
            bad_out[n] = 0.0
            continue
        sums[:] = 0.0
        bad[:] = 0.0
        nonfinite[:] = 0.0
        _careful(fn, on, cn, has_clim, lon_first, seg_of_lon, lsm, use_land, sums, bad,
                 nonfinite)
        _careful_totals(sums, bad, nonfinite, total, bad_total, nf_total)
        for r in range(nreg):
            land = region_land[r]
            for k in range(6):
                if k >= nk:
                    out[n, k, r] = 0.0
                    continue
                value = _region_sum(sums, total, k, land, r, full[r], region_segs, region_latw)
                out[n, k, r] = _finish(value, nonfinite, nf_total, k, land, r, full[r],
                                       region_segs, region_latw)
            for k in range(2):
                bad_out[n, k, r] = _region_sum(bad, bad_total, k, land, r, full[r],
                                               region_segs, region_latw)


@numba.njit(nogil=True, cache=True, fastmath={"reassoc", "contract"})
def _lon_first(f, o, c, has_clim, nk, nland, lat_seg_start, w, lon_seg_start, lsm, acc, cell):
    """Fields stored (lon, lat): cell[k, land, g, s] as :func:`_lat_first`, longitude segment
    by segment: its rows add into latitude-long accumulators (hot in cache), then each latitude
    segment's run is summed with the area weights. Returns whether a plain cell is not
    finite."""
    nseg = lon_seg_start.shape[0] - 1
    ones = np.ones(f.shape[0])  # no row weight here: the area weights come with the cells
    bad = False
    for s in range(nseg):
        a0, a1 = lon_seg_start[s], lon_seg_start[s + 1]
        acc[:nk, :nland] = 0.0
        _plain_rows(f, o, c, has_clim, a0, a1, ones, acc)
        if nland == 2:
            _land_rows(f, o, c, has_clim, a0, a1, ones, lsm, acc)
        if _cells_of_rows(acc, nk, nland, lat_seg_start, w, cell, s):
            bad = True
    return bad


@numba.njit(nogil=True, cache=True)
def _cells_of_rows(acc, nk, nland, lat_seg_start, w, cell, s):  # pragma: no cover - compiled
    """cell[k, land, g, s] = Σ_{rows i of latitude segment g} w_i acc[k, land, i], the six
    products of a segment summed together (one loop per latitude segment, not six: the
    segments are short); returns whether a plain cell is not finite."""
    bad = False
    for land in range(nland):
        a0, a1, a2 = acc[0, land], acc[1, land], acc[2, land]
        a3, a4, a5 = acc[3, land], acc[4, land], acc[5, land]
        for g in range(lat_seg_start.shape[0] - 1):
            v0 = v1 = v2 = v3 = v4 = v5 = 0.0
            for i in range(lat_seg_start[g], lat_seg_start[g + 1]):
                wi = w[i]
                v0 += wi * a0[i]
                v1 += wi * a1[i]
                v2 += wi * a2[i]
                if nk > 3:
                    v3 += wi * a3[i]
                    v4 += wi * a4[i]
                    v5 += wi * a5[i]
            cell[0, land, g, s] = v0
            cell[1, land, g, s] = v1
            cell[2, land, g, s] = v2
            cell[3, land, g, s] = v3
            cell[4, land, g, s] = v4
            cell[5, land, g, s] = v5
            if land == 0 and not (np.isfinite(v0) and np.isfinite(v1) and np.isfinite(v2)
                                  and np.isfinite(v3) and np.isfinite(v4) and np.isfinite(v5)):
                bad = True
    return bad


@numba.njit(nogil=True, cache=True)
def _segment_starts(seg_of_lon, nseg):  # pragma: no cover - compiled
    """First longitude of each segment, and the longitude count at the end (nseg + 1,)."""
    starts = np.empty(nseg + 1, dtype=np.int64)
    starts[nseg] = seg_of_lon.shape[0]
    for b in range(seg_of_lon.shape[0] - 1, -1, -1):
        starts[seg_of_lon[b]] = b
    return starts


@numba.njit(nogil=True, cache=True)
def _cell_regions(cell, nk, region_land, region_latsegs, region_segs, out):  # pragma: no cover
    """out[k, r] = Σ of cell[k, land_r, g, s] over region r's latitude and longitude segments
    (0 for the products k ≥ nk not computed)."""
    nreg, nlatseg = region_latsegs.shape
    nseg = region_segs.shape[1]
    for r in range(nreg):
        land = region_land[r]
        for k in range(out.shape[0]):
            value = 0.0
            if k < nk:
                for g in range(nlatseg):
                    if region_latsegs[r, g]:
                        for s in range(nseg):
                            if region_segs[r, s]:
                                value += cell[k, land, g, s]
            out[k, r] = value


@numba.njit(nogil=True, cache=True)
def _careful_totals(sums, bad, nonfinite, total, bad_total, nf_total):  # pragma: no cover
    """All-segment row totals of the sums, NaN tallies and non-finite tallies."""
    _sum_segments(sums, total)
    _sum_segments(bad, bad_total)
    for q in range(3):
        _sum_segments(nonfinite[q], nf_total[q])


@numba.njit(nogil=True, cache=True)
def _full_longitude(region_segs):  # pragma: no cover - compiled
    """Per region: does it hold every longitude segment (then its sums use the row totals)?"""
    nreg, nseg = region_segs.shape
    full = np.ones(nreg, dtype=np.bool_)
    for r in range(nreg):
        for s in range(nseg):
            if not region_segs[r, s]:
                full[r] = False
    return full


@numba.njit(nogil=True, cache=True, fastmath={"reassoc", "contract"})
def _sum_segments(sums, total):  # pragma: no cover - compiled
    total[:] = 0.0
    for k in range(sums.shape[0]):
        for land in range(sums.shape[1]):
            for s in range(sums.shape[2]):
                for i in range(sums.shape[3]):
                    total[k, land, i] += sums[k, land, s, i]


@numba.njit(nogil=True, cache=True, fastmath={"reassoc", "contract"})
def _region_sum(sums, total, k, land, r, full, region_segs, region_latw):  # pragma: no cover
    """Σ_i latw_r[i] Σ_{s in r} sums[k, land, s, i] (the all-segment total for full-longitude
    regions)."""
    value = 0.0
    nlat = sums.shape[3]
    if full:
        for i in range(nlat):
            value += region_latw[r, i] * total[k, land, i]
        return value
    for s in range(sums.shape[2]):
        if region_segs[r, s]:
            for i in range(nlat):
                value += region_latw[r, i] * sums[k, land, s, i]
    return value


@numba.njit(nogil=True, cache=True)
def anomaly_sums(
    f, f_at, o, o_at, c, c_at, lon_first, seg_of_lon, nseg, lsm, use_land,
    region_land, region_segs, region_latw, out, bad_out,
):  # pragma: no cover - compiled
    """The ``anomaly_sums`` group (:mod:`wxeval.statistics`), point by point; fields indexed
    as in :func:`field_statistics`.

    out: (N, 2, R) — Σ W f′ and Σ W o′ per region over the points where none of f − o, f′, o′
    is NaN (the points of the ``anomalies`` sums); bad_out: (N, R) — Σ W over the others.
    ±inf values reach a region's sum only where its weight is > 0 (as in
    :func:`field_statistics`' careful path)."""
    n_fields = f_at.shape[0]
    na, nb = f.shape[1], f.shape[2]
    nlat = nb if lon_first else na
    nreg = region_land.shape[0]
    sums = np.zeros((2, 2, nseg, nlat))
    bad = np.zeros((1, 2, nseg, nlat))
    nonfinite = np.zeros((3, 2, 2, nseg, nlat))
    nf_total = np.zeros((3, 2, 2, nlat))
    total = np.zeros((2, 2, nlat))
    bad_total = np.zeros((1, 2, nlat))
    full = _full_longitude(region_segs)
    for n in range(n_fields):
        fn, on, cn = f[f_at[n]], o[o_at[n]], c[c_at[n]]
        sums[:] = 0.0
        bad[:] = 0.0
        nonfinite[:] = 0.0
        for a in range(na):
            for b in range(nb):
                s = seg_of_lon[a if lon_first else b]
                lat_i = b if lon_first else a
                lam = lsm[a, b] if use_land else 0.0
                fv, ov, cv = np.float64(fn[a, b]), np.float64(on[a, b]), np.float64(cn[a, b])
                fa = fv - cv
                oa = ov - cv
                if np.isnan(fv - ov) or np.isnan(fa) or np.isnan(oa):
                    bad[0, 0, s, lat_i] += 1.0
                    bad[0, 1, s, lat_i] += lam
                    continue
                _add_product(fa, lam, 0, s, lat_i, sums, nonfinite)
                _add_product(oa, lam, 1, s, lat_i, sums, nonfinite)
        _careful_totals(sums, bad, nonfinite, total, bad_total, nf_total)
        for r in range(nreg):
            land = region_land[r]
            for k in range(2):
                value = _region_sum(sums, total, k, land, r, full[r], region_segs, region_latw)
                out[n, k, r] = _finish(value, nonfinite, nf_total, k, land, r, full[r],
                                       region_segs, region_latw)
            bad_out[n, r] = _region_sum(bad, bad_total, 0, land, r, full[r], region_segs,
                                        region_latw)


@numba.njit(nogil=True, cache=True, error_model="numpy")
def time_means(values, skipna):  # pragma: no cover - compiled
    """Means over init time of K per-init scores (K, T, M) float64, in one pass: (K, M).

    The plain means (a NaN init makes the mean NaN) or, with ``skipna``, the means of the
    finite-or-infinite values (NaN when every init is NaN), as ``numpy.nanmean``; summed in
    init order."""
    nk, nt, nm = values.shape
    sums = np.zeros((nk, nm))
    counts = np.zeros((nk, nm))
    for t in range(nt):
        for k in range(nk):
            for m in range(nm):
                q = values[k, t, m]
                if skipna:
                    if not np.isnan(q):
                        sums[k, m] += q
                        counts[k, m] += 1.0
                else:
                    sums[k, m] += q
    if not skipna:
        counts[:] = nt
    return sums / counts


def _load_numba_support() -> None:
    """numba imports its NumPy support (``numba.np.*``, scipy.linalg for BLAS: ~0.25 s) at the
    first compiled call of a process, cached or not; do it when this module is imported, with
    the other imports, rather than inside the first task (where one worker thread stalls)."""
    try:
        from numba.core.registry import cpu_target

        cpu_target.target_context.refresh()
    except Exception:  # noqa: BLE001 - an internal API: without it, the first call pays instead
        pass


_load_numba_support()
