"""The hot loop: one pass over forecast, truth and climatology values, all statistics at once.

Compiled with numba (released GIL, so dask threads run it in parallel). For each field it reads
every grid value once (a needed cell's twice, stored (lon, lat)), forms d = f − o, f′ = f − c,
o′ = o − c and accumulates the products d², d, |d| (and f′o′, f′², o′² with a climatology) in
float64, plain and weighted by the land fraction λ, into per-*latitude-segment* totals and
*cells*. Latitude segments are the maximal runs of rows on which every region's latitude mask
is constant, longitude segments likewise for columns; a cell is one latitude segment × one
longitude segment. Every region is a union of cells, so a region's weighted sum Σ_ij w_i a_i
b_j λ_ij x_ij (w area weights, a/b its latitude/longitude masks, λ for land regions, else 1) is
a short sum: over its latitude segments of their full-longitude totals when it spans every
longitude (most WeatherBench 2 regions, and all its land regions), else of its cells. Only the
cells some region that does not span every longitude holds are summed (for the standard
regions: the plain products of the six longitude boxes, in their latitude bands), so the pass
costs the same for 1 or 16 regions, and little more than the products themselves.

How the sums are formed depends on the storage order, so that the inner loop always runs along
the contiguous axis and vectorises: fields stored (lon, lat) (WeatherBench 2's order) add every
longitude row into latitude-long accumulators in one pass, whose latitude segments are summed
with the area weights once per field for the totals; each needed cell is then summed apart, in
registers, over its longitudes and latitude run (its points' products formed a second time:
cheaper than per-segment accumulators zeroed, summed and added back for every segment). Fields
stored (lat, lon) sum each latitude row whole in registers for the totals; a latitude segment
holding needed cells adds w_i × its rows into longitude-long accumulators instead, then sums
each needed longitude segment's run and the whole row. When every land region spans every
longitude (WB2's three), the land-weighted products of fields stored (lon, lat) are instead
summed over the whole field at once, in registers, against the weights w_i λ_ij of each *land
class* (the latitude segments held by the same land regions: two or three for WB2's), as long
as those weights stay small enough to be read from cache
(:meth:`wxeval.regions.RegionReducer.land_classes`: 1.5° and 1°, not 0.25°); otherwise they
take the row loops like the plain ones.

Truth and climatology are read in place: field n is f[f_at[n]] against o[o_at[n]] and
c[c_at[n]], stacks of fields (a task's whole valid-time window), so no per-lead copy is made.

NaN values are counted the same way (per longitude segment and latitude row, on a careful
path), so that a NaN where a region's weight is > 0 can make that region's value NaN (or be
skipped with skipna); ±inf products are counted apart too, so that an inf where a region's
weight is 0 (outside it, or at sea for a land region) never reaches its sum as 0 × inf = NaN
(WB2 zeroes the values outside a region before summing). A field takes that careful path only
when one of its plain latitude-segment totals is not finite (every point is in one).
"""

from __future__ import annotations

import numba
import numpy as np

# The fast paths: one field (A, B) without NaN or ±inf (a NaN shows up in its latitude segment's
# total, and the field is then redone by :func:`_careful`). Each loop reads f, o (and c) once and
# adds 3 (errors) or 6 (errors and anomalies) products (twice that with the land-weighted ones).


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


@numba.njit(nogil=True, cache=True)
def _both_rows(f, o, c, has_clim, a0, a1, w, lsm, plain, land):  # pragma: no cover - compiled
    """:func:`_plain_rows` into plain[k, 0, ·] and :func:`_land_rows` into land[k, 1, ·] (the
    same array or two) in one loop: one read of the rows, the products formed once. The
    twelve accumulators are indexed in their arrays, not taken as twelve row views, so that
    the loop still vectorises."""
    nb = f.shape[1]
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
                p0 = d * d
                p2 = abs(d)
                p3 = fa * oa
                p4 = fa * fa
                p5 = oa * oa
                plain[0, 0, b] += wa * p0
                plain[1, 0, b] += wa * d
                plain[2, 0, b] += wa * p2
                plain[3, 0, b] += wa * p3
                plain[4, 0, b] += wa * p4
                plain[5, 0, b] += wa * p5
                land[0, 1, b] += wl * p0
                land[1, 1, b] += wl * d
                land[2, 1, b] += wl * p2
                land[3, 1, b] += wl * p3
                land[4, 1, b] += wl * p4
                land[5, 1, b] += wl * p5
        else:
            for b in range(nb):
                d = np.float64(fr[b]) - np.float64(orow[b])
                wl = wa * lr[b]
                p0 = d * d
                p2 = abs(d)
                plain[0, 0, b] += wa * p0
                plain[1, 0, b] += wa * d
                plain[2, 0, b] += wa * p2
                land[0, 1, b] += wl * p0
                land[1, 1, b] += wl * d
                land[2, 1, b] += wl * p2


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
    region_land, region_segs, region_latw, lat_seg_start, lat_w, region_latsegs, cls_seg, cls_w,
    out, bad_out,
):  # pragma: no cover - compiled
    """Field n (of N = len(f_at)) is f[f_at[n]] against o[o_at[n]] (and c[c_at[n]]): f, o, c
    are stacks of fields (·, A, B), (A, B) = (lon, lat) if lon_first else (lat, lon), read in
    place (no gathered copies of the truth and climatology per lead). ``lat_seg_start``
    (latitude segments: maximal row runs on which every region's latitude mask is constant),
    ``lat_w`` (area weight per row) and ``region_latsegs`` (R, latitude segments) give the
    fast path's cells: (latitude segment, longitude segment) sums where a region that does
    not span every longitude needs them, full-longitude totals per latitude segment for all.
    ``cls_seg``, ``cls_w``: :meth:`wxeval.regions.RegionReducer.land_classes` (empty: the land
    products take the row loops).

    out: (N, 6, R) float64 — Σ W·product per region for d², d, |d|, f′o′, f′², o′²;
    bad_out: (N, 2, R) — Σ W·[d is NaN] and Σ W·[f′ or o′ is NaN]. Products at NaN points
    count as 0. Fields without NaN or ±inf take a fast path; a non-finite value makes its
    latitude segment's total non-finite, and only then is the field redone point by point,
    where ±inf products reach a region's sum only where its weight is > 0 (0 × inf is never
    formed: values outside a region never matter).
    """
    n_fields = f_at.shape[0]
    na, nb = f.shape[1], f.shape[2]
    nlat = nb if lon_first else na
    nreg = region_land.shape[0]
    # The careful path's arrays (~0.7 MB at 1.5°), allocated by the first field that needs them
    sums = np.zeros((0, 2, nseg, nlat))
    bad = np.zeros((0, 2, nseg, nlat))
    nonfinite = np.zeros((0, 6, 2, nseg, nlat))  # (+inf, −inf, NaN) products
    nf_total = np.zeros((0, 6, 2, nlat))
    total = np.zeros((0, 2, nlat))  # sums summed over all segments (full-longitude regions)
    bad_total = np.zeros((0, 2, nlat))
    full = _full_longitude(region_segs)
    nk = 6 if has_clim else 3
    nland = 2 if use_land else 1
    nlatseg = lat_seg_start.shape[0] - 1
    need = _needed_cells(region_land, region_segs, region_latsegs, full)
    acc = np.zeros((6, 2, nlat if lon_first else nb))  # one segment's accumulators (lat, lon)
    run = np.zeros((6, 2, nlat))  # fields stored (lon, lat): all longitudes so far
    ones = np.ones(na)  # rows stored (lon, lat) carry no area weight (the cells do)
    cell = np.zeros((6, 2, nlatseg, nseg))
    tot = np.zeros((6, 2, nlatseg))
    lon_seg_start = _segment_starts(seg_of_lon, nseg)
    # Land regions all spanning every longitude (WB2's): their products are summed over the
    # whole field at once against per-class weights (RegionReducer.land_classes), not by rows.
    flat = nland == 2 and cls_seg.shape[0] > 0
    nrows = 1 if flat else nland  # the land products left to the row loops
    for n in range(n_fields):
        fn, on, cn = f[f_at[n]], o[o_at[n]], c[c_at[n]]
        if lon_first:
            _lon_first(fn, on, cn, has_clim, nk, nrows, lat_seg_start, lat_w, lon_seg_start,
                       lsm, need, ones, acc, run, cell, tot)
        else:
            _lat_first(fn, on, cn, has_clim, nk, nrows, lat_seg_start, lat_w, lon_seg_start,
                       lsm, need, acc, cell, tot)
        if flat:
            _land_by_class(fn, on, cn, has_clim, cls_w, cls_seg, tot)
        # Any NaN or ±inf (input, or overflow) shows up in a plain total (every point is in
        # one; the land products are the plain ones times a finite fraction): only then is
        # the field redone point by point.
        if _all_finite(tot, nk):
            _cell_regions(cell, tot, nk, region_land, region_latsegs, region_segs, full, out[n])
            bad_out[n] = 0.0
            continue
        if sums.shape[0] == 0:
            sums = np.zeros((6, 2, nseg, nlat))
            bad = np.zeros((2, 2, nseg, nlat))
            nonfinite = np.zeros((3, 6, 2, nseg, nlat))
            nf_total = np.zeros((3, 6, 2, nlat))
            total = np.zeros((6, 2, nlat))
            bad_total = np.zeros((2, 2, nlat))
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


@numba.njit(nogil=True, cache=True)
def _needed_cells(region_land, region_segs, region_latsegs, full):  # pragma: no cover
    """need[land, g, s]: does a region of that land kind that does not span every longitude
    hold latitude segment g × longitude segment s? Only those cells are summed; regions
    spanning every longitude use the latitude segments' full-longitude totals."""
    nreg, nlatseg = region_latsegs.shape
    nseg = region_segs.shape[1]
    need = np.zeros((2, nlatseg, nseg), dtype=np.bool_)
    for r in range(nreg):
        if full[r]:
            continue
        for g in range(nlatseg):
            if region_latsegs[r, g]:
                for s in range(nseg):
                    if region_segs[r, s]:
                        need[region_land[r], g, s] = True
    return need


@numba.njit(nogil=True, cache=True)
def _land_by_class(f, o, c, has_clim, cls_w, cls_seg, tot):  # pragma: no cover - compiled
    """tot[k, 1, ·]: each land class's Σ W_q × product k in its first latitude segment, 0 in
    the others; two classes per pass over the field."""
    for k in range(tot.shape[0]):
        for g in range(tot.shape[2]):
            tot[k, 1, g] = 0.0
    nq = cls_seg.shape[0]
    ff, oo, cc = f.ravel(), o.ravel(), c.ravel()
    for q in range(0, nq, 2):
        q2 = q + 1 if q + 1 < nq else q
        _flat_sums(ff, oo, cc, has_clim, cls_w[q].ravel(), cls_w[q2].ravel(), q2 != q,
                   tot[:, 1, cls_seg[q]], tot[:, 1, cls_seg[q2]])


@numba.njit(nogil=True, cache=True, fastmath={"reassoc", "contract"})
def _flat_sums(f, o, c, has_clim, w1, w2, two, dst1, dst2):  # pragma: no cover - compiled
    """dst1[k] = Σ w1 × product k (and dst2 with w2 when ``two``) over whole fields given
    flat: one long vector loop of register sums, no accumulator arrays."""
    t0 = t1 = t2 = t3 = t4 = t5 = 0.0
    u0 = u1 = u2 = u3 = u4 = u5 = 0.0
    n = f.shape[0]
    if has_clim and two:
        for b in range(n):
            fv = np.float64(f[b])
            ov = np.float64(o[b])
            cv = np.float64(c[b])
            l1 = w1[b]
            l2 = w2[b]
            d = fv - ov
            fa = fv - cv
            oa = ov - cv
            p0 = d * d
            p2 = abs(d)
            p3 = fa * oa
            p4 = fa * fa
            p5 = oa * oa
            t0 += l1 * p0
            t1 += l1 * d
            t2 += l1 * p2
            t3 += l1 * p3
            t4 += l1 * p4
            t5 += l1 * p5
            u0 += l2 * p0
            u1 += l2 * d
            u2 += l2 * p2
            u3 += l2 * p3
            u4 += l2 * p4
            u5 += l2 * p5
    elif has_clim:
        for b in range(n):
            fv = np.float64(f[b])
            ov = np.float64(o[b])
            cv = np.float64(c[b])
            l1 = w1[b]
            d = fv - ov
            fa = fv - cv
            oa = ov - cv
            t0 += l1 * (d * d)
            t1 += l1 * d
            t2 += l1 * abs(d)
            t3 += l1 * (fa * oa)
            t4 += l1 * (fa * fa)
            t5 += l1 * (oa * oa)
    elif two:
        for b in range(n):
            d = np.float64(f[b]) - np.float64(o[b])
            l1 = w1[b]
            l2 = w2[b]
            p0 = d * d
            p2 = abs(d)
            t0 += l1 * p0
            t1 += l1 * d
            t2 += l1 * p2
            u0 += l2 * p0
            u1 += l2 * d
            u2 += l2 * p2
    else:
        for b in range(n):
            d = np.float64(f[b]) - np.float64(o[b])
            l1 = w1[b]
            t0 += l1 * (d * d)
            t1 += l1 * d
            t2 += l1 * abs(d)
    dst1[0] = t0
    dst1[1] = t1
    dst1[2] = t2
    dst1[3] = t3
    dst1[4] = t4
    dst1[5] = t5
    if two:
        dst2[0] = u0
        dst2[1] = u1
        dst2[2] = u2
        dst2[3] = u3
        dst2[4] = u4
        dst2[5] = u5


@numba.njit(nogil=True, cache=True, fastmath={"reassoc", "contract"})
def _lat_first(f, o, c, has_clim, nk, nland, lat_seg_start, w, lon_seg_start, lsm,
               need, acc, cell, tot):  # pragma: no cover - compiled
    """Fields stored (lat, lon), latitude segment by segment: tot[k, land, g] = Σ over the
    rows of latitude segment g of w_lat (× λ) × product k, and cell[k, land, g, s] the same
    over longitude segment s where ``need``. A segment without needed cells sums whole rows in
    registers; one with needed cells adds its rows into longitude-long accumulators (hot in
    cache), then sums each needed longitude segment's run, and the whole row for the total."""
    nlatseg = lat_seg_start.shape[0] - 1
    nseg = lon_seg_start.shape[0] - 1
    nb = f.shape[1]
    for g in range(nlatseg):
        a0, a1 = lat_seg_start[g], lat_seg_start[g + 1]
        for land in range(nland):
            cells = False
            for s in range(nseg):
                if need[land, g, s]:
                    cells = True
            if not cells:
                _row_totals(f, o, c, has_clim, land, a0, a1, w, lsm, tot[:, land, g])
                continue
            _zero(acc, nk, land)
            if land == 0:
                _plain_rows(f, o, c, has_clim, a0, a1, w, acc)
            else:
                _land_rows(f, o, c, has_clim, a0, a1, w, lsm, acc)
            for k in range(nk):
                row = acc[k, land]
                v = 0.0
                for b in range(nb):
                    v += row[b]
                tot[k, land, g] = v
                for s in range(nseg):
                    if need[land, g, s]:
                        part = row[lon_seg_start[s]:lon_seg_start[s + 1]]  # from 0: vectorises
                        v = 0.0
                        for b in range(part.shape[0]):
                            v += part[b]
                        cell[k, land, g, s] = v


@numba.njit(nogil=True, cache=True, fastmath={"reassoc", "contract"})
def _row_totals(f, o, c, has_clim, land, a0, a1, w, lsm, dst):  # pragma: no cover - compiled
    """dst[k] = Σ_{rows a0..a1 − 1} w_a Σ_b (λ_ab if land) × product k, each row summed whole
    in registers (fields stored (lat, lon); :func:`_run_sums` for each case)."""
    if has_clim:
        if land:
            _rows_whole(f, o, c, a0, a1, w, lsm, True, True, dst)
        else:
            _rows_whole(f, o, c, a0, a1, w, lsm, True, False, dst)
    elif land:
        _rows_whole(f, o, c, a0, a1, w, lsm, False, True, dst)
    else:
        _rows_whole(f, o, c, a0, a1, w, lsm, False, False, dst)


@numba.njit(inline="always", fastmath={"reassoc", "contract"})
def _rows_whole(f, o, c, a0, a1, w, lsm, clim, land, dst):  # pragma: no cover - compiled
    """:func:`_row_totals` for one case (``clim``, ``land`` constants where inlined)."""
    t0 = t1 = t2 = t3 = t4 = t5 = 0.0
    for a in range(a0, a1):
        s0, s1, s2, s3, s4, s5 = _run_sums(f[a], o[a], c[a], lsm[a], lsm[a], False, clim, land)
        wa = w[a]
        t0 += wa * s0
        t1 += wa * s1
        t2 += wa * s2
        t3 += wa * s3
        t4 += wa * s4
        t5 += wa * s5
    _store6(dst, t0, t1, t2, t3, t4, t5)


@numba.njit(inline="always", fastmath={"reassoc", "contract"})
def _run_sums(fr, orow, cr, lr, wr, weighted, clim, land):  # pragma: no cover - compiled
    """The six products of one contiguous run summed in registers, each point weighted by
    wr (when ``weighted``) × λ (when ``land``); the f′/o′ products only with ``clim`` (0
    otherwise). The flags are constants where inlined: one vector loop per case."""
    t0 = t1 = t2 = t3 = t4 = t5 = 0.0
    for i in range(fr.shape[0]):
        fv = np.float64(fr[i])
        ov = np.float64(orow[i])
        d = fv - ov
        p0 = d * d
        p2 = abs(d)
        if weighted or land:
            wi = (wr[i] if weighted else 1.0) * (lr[i] if land else 1.0)
            t0 += wi * p0
            t1 += wi * d
            t2 += wi * p2
        else:
            t0 += p0
            t1 += d
            t2 += p2
        if clim:
            cv = np.float64(cr[i])
            fa = fv - cv
            oa = ov - cv
            if weighted or land:
                t3 += wi * (fa * oa)
                t4 += wi * (fa * fa)
                t5 += wi * (oa * oa)
            else:
                t3 += fa * oa
                t4 += fa * fa
                t5 += oa * oa
    return t0, t1, t2, t3, t4, t5


@numba.njit(inline="always")
def _store6(dst, t0, t1, t2, t3, t4, t5):  # pragma: no cover - compiled
    dst[0] = t0
    dst[1] = t1
    dst[2] = t2
    dst[3] = t3
    dst[4] = t4
    dst[5] = t5


@numba.njit(nogil=True, cache=True, fastmath={"reassoc", "contract"})
def _lon_first(f, o, c, has_clim, nk, nland, lat_seg_start, w, lon_seg_start, lsm,
               need, ones, acc, run, cell, tot):  # pragma: no cover - compiled
    """Fields stored (lon, lat): tot and cell as :func:`_lat_first`. Every row adds into the
    latitude-long accumulators ``run`` (one pass over the field, all longitudes), summed with
    the area weights per latitude segment for the totals. A needed cell is summed apart, in
    registers, over its own rows and latitude run (:func:`_cell_sums`): the products of its
    points are formed twice, which costs less than per-segment accumulators zeroed, summed and
    added back for every segment (one thread, 1.5°, the 13 WB2 regions: 0.75-0.81 against
    0.88-0.98 ns per point). ``acc`` is not used here."""
    nseg = lon_seg_start.shape[0] - 1
    nlatseg = lat_seg_start.shape[0] - 1
    na = f.shape[0]
    for land in range(nland):
        _zero(run, nk, land)
    if nland == 2:
        _both_rows(f, o, c, has_clim, 0, na, ones, lsm, run, run)
    else:
        _plain_rows(f, o, c, has_clim, 0, na, ones, run)
    for s in range(nseg):
        a0, a1 = lon_seg_start[s], lon_seg_start[s + 1]
        for land in range(nland):
            for g in range(nlatseg):
                if need[land, g, s]:
                    _cell_sums(f, o, c, has_clim, land == 1, a0, a1, lat_seg_start[g],
                               lat_seg_start[g + 1], w, lsm, cell[:, land, g, s])
    for land in range(nland):
        for g in range(nlatseg):
            _weighted_runs(run, land, lat_seg_start[g], lat_seg_start[g + 1], w, tot[:, land, g])


@numba.njit(nogil=True, cache=True)
def _cell_sums(f, o, c, has_clim, land, a0, a1, i0, i1, w, lsm, dst):  # pragma: no cover
    """dst[k] = Σ over rows a0..a1 − 1 (longitudes) and latitudes i0..i1 − 1 of w_i (× λ_ai
    if ``land``) × product k (fields stored (lon, lat): each row's run is contiguous), by
    :func:`_cell_run` (one compiled loop nest per case: branches inside it stop it
    vectorising)."""
    if has_clim:
        if land:
            _cell_run(f, o, c, a0, a1, i0, i1, w, lsm, True, True, dst)
        else:
            _cell_run(f, o, c, a0, a1, i0, i1, w, lsm, True, False, dst)
    elif land:
        _cell_run(f, o, c, a0, a1, i0, i1, w, lsm, False, True, dst)
    else:
        _cell_run(f, o, c, a0, a1, i0, i1, w, lsm, False, False, dst)


@numba.njit(inline="always", fastmath={"reassoc", "contract"})
def _cell_run(f, o, c, a0, a1, i0, i1, w, lsm, clim, land, dst):  # pragma: no cover
    """:func:`_cell_sums` for one case (``clim``, ``land`` constants where inlined)."""
    t0 = t1 = t2 = t3 = t4 = t5 = 0.0
    wr = w[i0:i1]  # views indexed from 0: the loops vectorise
    for a in range(a0, a1):
        s0, s1, s2, s3, s4, s5 = _run_sums(f[a, i0:i1], o[a, i0:i1], c[a, i0:i1],
                                           lsm[a, i0:i1], wr, True, clim, land)
        t0 += s0
        t1 += s1
        t2 += s2
        t3 += s3
        t4 += s4
        t5 += s5
    _store6(dst, t0, t1, t2, t3, t4, t5)


@numba.njit(nogil=True, cache=True, fastmath={"reassoc", "contract"})
def _weighted_runs(acc, land, i0, i1, w, dst):  # pragma: no cover - compiled
    """dst[k] = Σ_{i0 ≤ i < i1} w_i acc[k, land, i] for the six products at once (one loop,
    not six: the runs are short)."""
    # views indexed from 0: a loop from i0 would index with numbers numba cannot prove ≥ 0
    # (negative indices wrap around), which does not vectorise
    a0, a1, a2 = acc[0, land, i0:i1], acc[1, land, i0:i1], acc[2, land, i0:i1]
    a3, a4, a5 = acc[3, land, i0:i1], acc[4, land, i0:i1], acc[5, land, i0:i1]
    wr = w[i0:i1]
    v0 = v1 = v2 = v3 = v4 = v5 = 0.0
    for i in range(i1 - i0):
        wi = wr[i]
        v0 += wi * a0[i]
        v1 += wi * a1[i]
        v2 += wi * a2[i]
        v3 += wi * a3[i]
        v4 += wi * a4[i]
        v5 += wi * a5[i]
    dst[0] = v0
    dst[1] = v1
    dst[2] = v2
    dst[3] = v3
    dst[4] = v4
    dst[5] = v5


@numba.njit(nogil=True, cache=True)
def _zero(acc, nk, land):  # pragma: no cover - compiled
    """acc[:nk, land] = 0 as plain loops (numba's slice assignment costs ~1 µs here)."""
    for k in range(nk):
        row = acc[k, land]
        for i in range(row.shape[0]):
            row[i] = 0.0


@numba.njit(nogil=True, cache=True)
def _all_finite(tot, nk):  # pragma: no cover - compiled
    """Are the plain totals of the nk products all finite (no NaN or ±inf in the field)?"""
    for k in range(nk):
        for g in range(tot.shape[2]):
            if not np.isfinite(tot[k, 0, g]):
                return False
    return True


@numba.njit(nogil=True, cache=True)
def _segment_starts(seg_of_lon, nseg):  # pragma: no cover - compiled
    """First longitude of each segment, and the longitude count at the end (nseg + 1,)."""
    starts = np.empty(nseg + 1, dtype=np.int64)
    starts[nseg] = seg_of_lon.shape[0]
    for b in range(seg_of_lon.shape[0] - 1, -1, -1):
        starts[seg_of_lon[b]] = b
    return starts


@numba.njit(nogil=True, cache=True)
def _cell_regions(cell, tot, nk, region_land, region_latsegs, region_segs, full, out):  # noqa: E501  # pragma: no cover
    """out[k, r] = Σ over region r's latitude segments of the full-longitude total (a region
    spanning every longitude) or of the cells of its longitude segments (0 for the products
    k ≥ nk not computed)."""
    nreg, nlatseg = region_latsegs.shape
    nseg = region_segs.shape[1]
    for r in range(nreg):
        land = region_land[r]
        for k in range(out.shape[0]):
            value = 0.0
            if k < nk:
                for g in range(nlatseg):
                    if region_latsegs[r, g]:
                        if full[r]:
                            value += tot[k, land, g]
                            continue
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
