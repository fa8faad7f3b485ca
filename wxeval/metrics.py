"""Statistics (per-init weighted sums) and the metrics derived from their means.

Notation (WeatherBench 2 conventions): forecast f, truth o, climatology c, anomalies
f′ = f − c and o′ = o − c (not de-meaned), region weights W (see :mod:`wxeval.regions`).

*Statistics* are weighted sums over one region of one field (one init, lead, level):

==============  =====================  ==========================
name            formula                used by
==============  =====================  ==========================
``sum_weight``  Σ W                    every per-init mean
``sum_se``      Σ W (f − o)²           mse, rmse, rmse_per_init
``sum_err``     Σ W (f − o)            bias
``sum_ae``      Σ W |f − o|            mae
``sum_fa_oa``   Σ W f′ o′              acc, acc_pooled
``sum_fa2``     Σ W f′²                acc, acc_pooled
``sum_oa2``     Σ W o′²                acc, acc_pooled
==============  =====================  ==========================

They add across chunks, workers and resumed runs. *Metrics* are functions of their means over
init times t (T inits, unweighted):

* ``mse`` = mean_t MSE_t with MSE_t = sum_se/sum_weight; ``rmse`` = √mse (root after the time
  mean, the ECMWF/WB2 headline); ``rmse_per_init`` = mean_t √MSE_t (WB2's
  ``rmse_sqrt_before_time_avg``). Jensen: rmse ≥ rmse_per_init.
* ``bias`` = mean_t sum_err/sum_weight; ``mae`` = mean_t sum_ae/sum_weight.
* ``acc`` = mean_t ACC_t, ACC_t = sum_fa_oa / √(sum_fa2 · sum_oa2) (WB2).
* ``acc_pooled`` = mean_t⟨f′o′⟩ / √(mean_t⟨f′²⟩ · mean_t⟨o′²⟩) (WeatherBench-X).

NaN: without ``skipna`` a NaN anywhere the region weight is > 0 makes that statistic NaN; NaNs
outside the region never matter. With ``skipna`` NaN points are dropped from both the sums and
``sum_weight``. ±inf: inside the region (weight > 0) it gives the sum NumPy gives (±inf, or NaN
for +inf and −inf together); outside it (weight 0, a land region at sea included) it never
matters — never 0 × inf = NaN — in every path (dense, compiled, both storage orders).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

STATISTICS = ("sum_weight", "sum_se", "sum_err", "sum_ae", "sum_fa_oa", "sum_fa2", "sum_oa2")
N_STATS = len(STATISTICS)

METRICS = ("rmse", "rmse_per_init", "mse", "mae", "bias", "acc", "acc_pooled")
#: Metrics defined for the wind vector error ⟨(f_u−o_u)² + (f_v−o_v)²⟩.
VECTOR_METRICS = ("rmse", "rmse_per_init", "mse")
#: Names users may type for our metrics (WeatherBench 2's own names included).
METRIC_ALIASES = {
    "rmse_sqrt_before_time_avg": "rmse_per_init",
    "wind_vector_rmse": "rmse",
    "wind_vector_rmse_sqrt_before_time_avg": "rmse_per_init",
    "wind_vector_mse": "mse",
    "rmse_after_time_avg": "rmse",
}
#: Metrics whose values are lower-is-better errors (for relative change and colours).
ERROR_METRICS = ("rmse", "rmse_per_init", "mse", "mae")

_ROW_BATCH = 1 << 16  # grid points per kernel batch: the float64 products stay in cache


def canonical_metric(name: str) -> str:
    """Map a typed metric name (ours or a WB2 alias) to ours; raise with a suggestion."""
    import difflib

    name = name.strip()
    if name in METRICS:
        return name
    if name in METRIC_ALIASES:
        return METRIC_ALIASES[name]
    hint = difflib.get_close_matches(name, list(METRICS) + list(METRIC_ALIASES), n=1)
    suffix = f"; did you mean {hint[0]!r}?" if hint else ""
    raise ValueError(f"unknown metric {name!r}{suffix} (known: {', '.join(METRICS)})")


def accumulate_statistics(
    forecast: np.ndarray,
    truth: np.ndarray,
    climatology: np.ndarray | None,
    weights,
    *,
    skipna: bool = False,
) -> np.ndarray:
    """Weighted sums of every statistic for N fields and R regions, in float64.

    ``weights`` is either a dense array (R, S), with fields of shape (N, S) — S grid points in
    the same order — or a :class:`wxeval.regions.RegionReducer`, with fields of shape (N, A, B)
    in its grid orientation. Without climatology the three ACC sums are NaN.
    Returns an array (N, R, len(STATISTICS)).
    """
    from wxeval.regions import RegionReducer

    n = forecast.shape[0]
    if truth.shape != forecast.shape:
        raise ValueError(f"shape mismatch: forecast {forecast.shape}, truth {truth.shape}")
    if climatology is not None and climatology.shape != forecast.shape:
        raise ValueError(f"climatology shape {climatology.shape} != {forecast.shape}")
    if isinstance(weights, RegionReducer):
        return _compiled_statistics(forecast, truth, climatology, weights, skipna)
    else:
        weights = np.asarray(weights, dtype=np.float64)
        if forecast.ndim != 2 or weights.shape[1] != forecast.shape[1]:
            raise ValueError(f"shape mismatch: fields {forecast.shape}, weights {weights.shape}")
        wt = np.ascontiguousarray(weights.T)

        def reduce(p):
            return p @ wt

        wsum = weights.sum(axis=1)
        nreg = weights.shape[0]
    npoints = int(np.prod(forecast.shape[1:]))
    out = np.empty((n, nreg, N_STATS), dtype=np.float64)
    step = max(1, _ROW_BATCH // max(npoints, 1))
    with _one_blas_thread():
        for lo in range(0, n, step):
            hi = min(n, lo + step)
            c = None if climatology is None else climatology[lo:hi]
            out[lo:hi] = _kernel(forecast[lo:hi], truth[lo:hi], c, reduce, wsum, skipna)
    return out


def _compiled_statistics(f, o, c, reducer, skipna) -> np.ndarray:
    """The compiled one-pass kernel (:mod:`wxeval.kernels`) on fields (N, A, B)."""
    from wxeval.kernels import field_statistics

    n = f.shape[0]
    nreg = reducer.n_regions
    sums = np.empty((n, 6, nreg))
    bad = np.empty((n, 2, nreg))
    has_clim = c is not None
    field_statistics(
        np.ascontiguousarray(f), np.ascontiguousarray(o),
        np.ascontiguousarray(c) if has_clim else np.ascontiguousarray(f[:1]),
        has_clim, reducer.lon_axis == -2, reducer.seg_of_lon, reducer.nseg, reducer.lsm,
        reducer.use_land, reducer.region_land, reducer.region_segs, reducer.region_latw,
        sums, bad,
    )
    out = np.empty((n, nreg, N_STATS))
    out[:, :, 1:] = np.moveaxis(sums, 1, 2)
    wsum = reducer.weight_sums()[None, :]
    if skipna:
        out[:, :, 0] = wsum - bad[:, 0]
    else:
        out[:, :, 0] = wsum
        out[:, :, :4][bad[:, 0] > 0] = np.nan
        out[:, :, 4:][bad[:, 1] > 0] = np.nan
    if not has_clim:
        out[:, :, 4:] = np.nan
    return out


def _kernel(f, o, c, reduce, wsum, skipna):
    """Dense-weights statistics of a small batch of fields: all products, one reduction."""
    rows = f.shape[0]
    nstack = 6 if c is not None else 3
    prod = np.empty((rows, nstack, *f.shape[1:]), dtype=np.float64)
    f = f.astype(np.float64, copy=False)
    o = o.astype(np.float64, copy=False)
    d = np.subtract(f, o, out=prod[:, 1])
    bad = np.isnan(d)
    has_nan = bool(bad.any())
    if has_nan:
        d[bad] = 0.0
    np.multiply(d, d, out=prod[:, 0])
    np.abs(d, out=prod[:, 2])
    bad_a = None
    if c is not None:
        c = c.astype(np.float64, copy=False)
        fa = np.subtract(f, c, out=prod[:, 4])
        oa = np.subtract(o, c, out=prod[:, 5])
        bad_a = np.isnan(fa) | np.isnan(oa)
        if bad_a.any():
            fa[bad_a] = 0.0
            oa[bad_a] = 0.0
        else:
            bad_a = None
        np.multiply(fa, oa, out=prod[:, 3])
        np.multiply(fa, fa, out=prod[:, 4])
        np.multiply(oa, oa, out=prod[:, 5])
    # ±inf (or 0·inf = NaN) products: zeroed before the weighted sum, then put back only into
    # the regions whose weight there is > 0 — a weight of 0 times inf must never make a NaN.
    nonfinite = None
    if not np.isfinite(prod).all():
        nonfinite = [prod == np.inf, prod == -np.inf, np.isnan(prod)]
        prod[nonfinite[0] | nonfinite[1] | nonfinite[2]] = 0.0
    sums = reduce(prod)  # (rows, nstack, R)
    if nonfinite is not None:
        with np.errstate(invalid="ignore"):
            for hit, value in zip(nonfinite, (np.inf, -np.inf, np.nan), strict=True):
                sums[reduce(hit.astype(np.float64)) > 0] += value
    out = np.empty((rows, sums.shape[-1], N_STATS), dtype=np.float64)
    # prod order: se, err, ae, fa_oa, fa2, oa2 -> statistics 1..6
    out[:, :, 1 : 1 + nstack] = np.moveaxis(sums, 1, 2)
    if c is None:
        out[:, :, 4:] = np.nan
    if has_nan and skipna:
        out[:, :, 0] = reduce((~bad).astype(np.float64)[:, None])[:, 0]
    else:
        out[:, :, 0] = wsum[None, :]
    if has_nan and not skipna:
        hit = reduce(bad.astype(np.float64)[:, None])[:, 0] > 0
        out[:, :, :4][hit] = np.nan
    if bad_a is not None and not skipna:
        hit = reduce(bad_a.astype(np.float64)[:, None])[:, 0] > 0
        out[:, :, 4:][hit] = np.nan
    return out


class _one_blas_thread:
    """Tasks run in parallel already: keep BLAS single-threaded inside them (no thrashing)."""

    def __enter__(self):
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover
            self._ctl = None
            return self
        self._ctl = threadpool_limits(1, user_api="blas")
        return self

    def __exit__(self, *exc):
        if self._ctl is not None:
            self._ctl.restore_original_limits()
        return False


# ---------------------------------------------------------------------------------------------
# Metrics from statistics, plain arrays (statistic, init, *cells): the results table


def table_from_statistics(
    stats: np.ndarray, metrics: tuple[str, ...] = METRICS, *, skipna: bool = False
) -> np.ndarray:
    """Metrics (len(metrics), *cells) from statistics (len(STATISTICS), T inits, *cells):
    per-init scores averaged over the T inits in one compiled pass
    (:func:`wxeval.kernels.init_means`), then ``rmse`` = √mse and ``acc_pooled`` from the
    mean ⟨f′o′⟩, ⟨f′²⟩, ⟨o′²⟩. ``skipna`` averages the non-NaN per-init scores only."""
    from wxeval.kernels import INIT_SCORES, init_means

    values = np.ascontiguousarray(stats, dtype=np.float64)
    cells = values.shape[2:]
    flat = values.reshape(N_STATS, values.shape[1], int(np.prod(cells, dtype=np.int64)))
    means = dict(zip(INIT_SCORES, init_means(flat, skipna).reshape(len(INIT_SCORES), *cells),
                     strict=True))
    with np.errstate(invalid="ignore", divide="ignore"):
        table = {
            "mse": means["mse"],
            "rmse": np.sqrt(means["mse"]),
            "rmse_per_init": means["rmse_per_init"],
            "bias": means["bias"],
            "mae": means["mae"],
            "acc": means["acc"],
            "acc_pooled": means["fa_oa"] / np.sqrt(means["fa2"] * means["oa2"]),
        }
    return np.stack([table[m] for m in metrics])


def vector_table_from_statistics(
    stats_u: np.ndarray, stats_v: np.ndarray, metrics: tuple[str, ...] = VECTOR_METRICS, *,
    skipna: bool = False,
) -> np.ndarray:
    """Wind-vector metrics (:data:`VECTOR_METRICS` only) from the statistics of the u and v
    components: per init, MSE_t = sum_se_u/sum_weight_u + sum_se_v/sum_weight_v."""
    bad = [m for m in metrics if m not in VECTOR_METRICS]
    if bad:
        raise ValueError(f"metrics {bad} are not defined for a wind vector")
    with np.errstate(invalid="ignore", divide="ignore"):
        mse = stats_u[1] / stats_u[0] + stats_v[1] / stats_v[0]
    # The vector error as statistics of unit weight: only mse (and its root) are used.
    pseudo = np.full((N_STATS, *mse.shape), np.nan)
    pseudo[0] = 1.0
    pseudo[1] = mse
    return table_from_statistics(pseudo, metrics, skipna=skipna)


# ---------------------------------------------------------------------------------------------
# Metrics from statistics (labelled: xarray objects with a ``statistic`` dimension)


def per_init_scores(stats: xr.DataArray) -> xr.Dataset:
    """Per-init scores from one variable's statistics (dim ``statistic``).

    Returns ``mse``, ``bias``, ``mae``, ``acc`` and the per-init means ``fa_oa``, ``fa2``, ``oa2``
    (⟨f′o′⟩, ⟨f′²⟩, ⟨o′²⟩) with the statistic dimension removed. The arithmetic runs on the
    unlabelled variables (the operands share every coordinate: no alignment to pay for).
    """
    pos = {str(s): i for i, s in enumerate(stats["statistic"].values.tolist())}
    var = stats.variable

    def stat(name: str) -> xr.Variable:
        return var[{"statistic": pos[name]}]

    w = stat("sum_weight")
    fo, ff, oo = (stat(k) for k in ("sum_fa_oa", "sum_fa2", "sum_oa2"))
    with np.errstate(invalid="ignore", divide="ignore"):
        data = {
            "mse": stat("sum_se") / w,
            "bias": stat("sum_err") / w,
            "mae": stat("sum_ae") / w,
            "acc": fo / np.sqrt(ff * oo),
            "fa_oa": fo / w,
            "fa2": ff / w,
            "oa2": oo / w,
        }
    coords = {k: c for k, c in stats.coords.items() if "statistic" not in c.dims}
    return xr.Dataset(data, coords=coords)
