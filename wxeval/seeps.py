"""SEEPS (Rodwell et al. 2010) exactly as WeatherBench 2 scores it: the ``seeps`` statistic group.

For an accumulation x (metres) at valid time v and grid point, with the climatology's wet
threshold ``<name>_seeps_threshold`` at (hour, day of year of v) and
p1 = mean over all hours and days of year of ``<name>_seeps_dry_fraction``:

* categories: dry if x < dry threshold (0.25 mm for 24 h, 0.1 mm for 6 h), light if
  dry threshold < x < wet threshold(v), heavy if x ≥ wet threshold(v); a value exactly at the
  dry threshold falls in no category and scores 0 (WeatherBench 2's behaviour);
* score = ½ Σ_ij F_i S_ij O_j (F, O the forecast's and truth's category indicators) with
  S = [[0, 1/(1−p1), 4/(1−p1)], [1/p1, 0, 3/(1−p1)], [1/p1 + 3/(2+p1), 3/(2+p1), 0]]
  (rows forecast dry/light/heavy, columns truth); NaN where forecast or truth is NaN;
* grid points with p1 ≤ 0.1 or p1 ≥ 0.85 are dropped, and so are NaN scores: the statistics
  are ``sum_weight_seeps`` Σ W and ``sum_seeps`` Σ W·score over the points left (always
  skipping NaN, as WeatherBench 2's regional mean does). The per-init score is their ratio;
  reported: its mean over inits. Lower is better, 0 is perfect.
"""

from __future__ import annotations

import numba
import numpy as np

P1_LOW, P1_HIGH = 0.1, 0.85


def p1_of(dry_fraction: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """p1: the dry fraction averaged over its hour and day-of-year ``axes``."""
    return np.asarray(dry_fraction, np.float64).mean(axis=axes)


def matrix(p1) -> np.ndarray:
    """The 3 × 3 SEEPS matrix S (…, 3, 3) for p1 (rows forecast, columns truth), not halved."""
    p1 = np.asarray(p1, np.float64)
    q = 1.0 - p1
    zero = np.zeros_like(p1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rows = [
            [zero, 1 / q, 4 / q],
            [1 / p1, zero, 3 / q],
            [1 / p1 + 3 / (2 + p1), 3 / (2 + p1), zero],
        ]
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


@numba.njit(nogil=True, cache=True)
def scores(f, o, wet, p1, dry, score_out, valid_out):  # pragma: no cover - compiled
    """Per-point SEEPS scores of N fields (N, A, B): ``score_out`` the score (0 where not
    valid), ``valid_out`` 1.0 where the point counts (p1 inside (0.1, 0.85), score not NaN)."""
    n_fields, na, nb = f.shape
    for n in range(n_fields):
        for a in range(na):
            for b in range(nb):
                p = p1[a, b]
                score_out[n, a, b] = 0.0
                valid_out[n, a, b] = 0.0
                if not (p > P1_LOW and p < P1_HIGH):
                    continue
                fv = np.float64(f[n, a, b])
                ov = np.float64(o[n, a, b])
                if np.isnan(fv) or np.isnan(ov):
                    continue
                w = np.float64(wet[n, a, b])
                f0 = 1.0 if fv < dry else 0.0
                f1 = 1.0 if (fv > dry and fv < w) else 0.0
                f2 = 1.0 if fv >= w else 0.0
                o0 = 1.0 if ov < dry else 0.0
                o1 = 1.0 if (ov > dry and ov < w) else 0.0
                o2 = 1.0 if ov >= w else 0.0
                q = 1.0 - p
                s = (f0 * (o1 / q + o2 * 4.0 / q)
                     + f1 * (o0 / p + o2 * 3.0 / q)
                     + f2 * (o0 * (1.0 / p + 3.0 / (2.0 + p)) + o1 * 3.0 / (2.0 + p)))
                score_out[n, a, b] = 0.5 * s
                valid_out[n, a, b] = 1.0


def region_sums(x: np.ndarray, reducer) -> np.ndarray:
    """Σ_ij W_ij x_ij per region for fields (N, A, B) in the reducer's orientation: (N, R).

    From the reducer's separable weights (area × latitude mask × longitude segments × land
    fraction for land regions); ``x`` must be finite."""
    lon_first = reducer.lon_axis == -2
    starts = np.flatnonzero(np.diff(reducer.seg_of_lon, prepend=-1))
    lon_ax = 1 if lon_first else 2
    out = np.empty((x.shape[0], reducer.n_regions))
    plain = np.add.reduceat(x, starts, axis=lon_ax)
    land = np.add.reduceat(x * reducer.lsm[None], starts, axis=lon_ax) if reducer.use_land \
        else None
    if not lon_first:  # (N, lat, seg) → (N, seg, lat)
        plain = np.swapaxes(plain, 1, 2)
        land = None if land is None else np.swapaxes(land, 1, 2)
    for r in range(reducer.n_regions):
        part = land if reducer.region_land[r] else plain
        segs = reducer.region_segs[r].astype(np.float64)
        out[:, r] = np.einsum("nsi,s,i->n", part, segs, reducer.region_latw[r])
    return out


def compute(f, o, wet, p1, dry: float, reducer) -> np.ndarray:
    """The ``seeps`` group for fields (N, A, B) in the reducer's orientation: (N, R, 2) with
    ``sum_weight_seeps``, ``sum_seeps``. ``wet`` (N, A, B) the wet threshold at each field's
    valid time, ``p1`` (A, B)."""
    f = np.ascontiguousarray(f)
    o = np.ascontiguousarray(o)
    wet = np.ascontiguousarray(np.broadcast_to(wet, f.shape))
    p1 = np.ascontiguousarray(p1, dtype=np.float64)
    score = np.empty(f.shape)
    valid = np.empty(f.shape)
    scores(f, o, wet, p1, float(dry), score, valid)
    out = np.empty((f.shape[0], reducer.n_regions, 2))
    out[:, :, 0] = region_sums(valid, reducer)
    out[:, :, 1] = region_sums(score, reducer)
    return out


def reference(f, o, wet, p1, dry: float, weights) -> np.ndarray:
    """The definition in plain NumPy on flat fields (N, S), wet (N, S), p1 (S) and dense
    weights (R, S): (N, R, 2)."""
    f, o = np.asarray(f, np.float64), np.asarray(o, np.float64)
    wet = np.broadcast_to(np.asarray(wet, np.float64), f.shape)
    p1 = np.asarray(p1, np.float64)
    weights = np.asarray(weights, np.float64)
    s = matrix(p1)  # (S, 3, 3)
    out = np.empty((f.shape[0], weights.shape[0], 2))
    with np.errstate(invalid="ignore"):
        for n in range(f.shape[0]):
            def cats(x, w=wet[n]):
                return np.stack([x < dry, (x > dry) & (x < w), x >= w], axis=-1).astype(float)

            fc, oc = cats(f[n]), cats(o[n])
            score = 0.5 * np.einsum("si,sij,sj->s", fc, s, oc)
            score[np.isnan(f[n]) | np.isnan(o[n])] = np.nan
            keep = (p1 > P1_LOW) & (p1 < P1_HIGH) & ~np.isnan(score)
            for r, w in enumerate(weights):
                out[n, r, 0] = w[keep].sum()
                out[n, r, 1] = (w[keep] * score[keep]).sum()
    return out
