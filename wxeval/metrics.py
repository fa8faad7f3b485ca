"""Statistics (per-init weighted sums) and the metrics derived from their means.

Notation (WeatherBench 2 conventions): forecast f, truth o, climatology c, anomalies
f′ = f − c and o′ = o − c (not de-meaned), region weights W (see :mod:`wxeval.regions`).

*Statistics* are weighted sums over one region of one field (one init, lead, level), in named
groups (:mod:`wxeval.statistics`: ``errors``, ``anomalies``, ``anomaly_sums``, ``nan_counts``).
They add across chunks, workers and resumed runs. *Metrics* are functions of their means over
init times t (T inits, unweighted), each declared once in :mod:`wxeval.metric_defs`:

* ``mse`` = mean_t MSE_t with MSE_t = sum_se/sum_weight; ``rmse`` = √mse (root after the time
  mean, the ECMWF/WB2 headline); ``rmse_per_init`` = mean_t √MSE_t (WB2's
  ``rmse_sqrt_before_time_avg``). Jensen: rmse ≥ rmse_per_init.
* ``bias`` = mean_t sum_err/sum_weight; ``mae`` = mean_t sum_ae/sum_weight.
* ``stde`` = √(mean_t MSE_t − (mean_t bias_t)²), the standard deviation of the error.
* ``acc`` = mean_t ACC_t, ACC_t = sum_fa_oa / √(sum_fa2 · sum_oa2) (WB2).
* ``acc_pooled`` = mean_t⟨f′o′⟩ / √(mean_t⟨f′²⟩ · mean_t⟨o′²⟩) (WeatherBench-X), ⟨·⟩ the
  region mean over the points of the anomaly sums (``sum_weight_a`` with ``skipna``).
* ``acc_centred`` = mean_t ACC_c,t, the anomalies de-meaned over the region per init.

This module keeps the table arithmetic (:func:`table_from_statistics`, :func:`per_init_scores`)
and the name lookup (:func:`canonical_metric`); what each metric is lives in its declaration.

NaN: without ``skipna`` a NaN anywhere the region weight is > 0 makes that statistic NaN; NaNs
outside the region never matter. With ``skipna`` NaN points are dropped from both the sums and
``sum_weight``. ±inf: inside the region (weight > 0) it gives the sum NumPy gives (±inf, or NaN
for +inf and −inf together); outside it (weight 0, a land region at sea included) it never
matters — never 0 × inf = NaN — in every path (dense, compiled, both storage orders).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import xarray as xr

from wxeval.metric_defs import ALIASES, BY_NAME, REGISTRY
from wxeval.statistics import groups_for, statistic_names

#: The statistics of the ``errors`` and ``anomalies`` groups, in the order the parts written
#: before statistic groups (``wxeval_format`` 1) store them; what :func:`accumulate_statistics`
#: returns.
STATISTICS = statistic_names(("errors", "anomalies"))
N_STATS = len(STATISTICS)

#: Every metric (:data:`wxeval.metric_defs.REGISTRY`), and those a table has by default.
ALL_METRICS = tuple(m.name for m in REGISTRY)
METRICS = tuple(m.name for m in REGISTRY if m.default)
#: Metrics defined for the wind vector error ⟨(f_u−o_u)² + (f_v−o_v)²⟩.
VECTOR_METRICS = tuple(m.name for m in REGISTRY if m.vector)
#: Names users may type for our metrics (WeatherBench 2's own names included).
METRIC_ALIASES = dict(ALIASES)
#: Metrics whose values are lower-is-better errors (for relative change and colours).
ERROR_METRICS = tuple(m.name for m in REGISTRY if m.compare == "error")

_ROW_BATCH = 1 << 16  # grid points per kernel batch: the float64 products stay in cache


def canonical_metric(name: str) -> str:
    """Map a typed metric name (ours or a WB2 alias) to ours; raise with a suggestion."""
    import difflib

    name = name.strip()
    if name in BY_NAME:
        return name
    if name in ALIASES:
        return ALIASES[name]
    hint = difflib.get_close_matches(name, list(BY_NAME) + list(ALIASES), n=1)
    suffix = f"; did you mean {hint[0]!r}?" if hint else ""
    raise ValueError(f"unknown metric {name!r}{suffix} (known: {', '.join(ALL_METRICS)})")


def statistics_for(metrics: Iterable[str], *, skipna: bool = False) -> tuple[str, ...]:
    """The statistics ``metrics`` need (with ``skipna``, also their ``skipna_statistics``), in
    group order."""
    metrics = list(metrics)
    wanted = {s for m in metrics for s in BY_NAME[m].statistics}
    if skipna:
        wanted |= {s for m in metrics for s in BY_NAME[m].skipna_statistics}
    return statistic_names(groups_for(wanted)) if wanted else ()


def needs(metrics: Iterable[str], what: str) -> list[str]:
    """The metrics among ``metrics`` that need input ``what`` (e.g. ``"climatology"``)."""
    return [m for m in metrics if what in BY_NAME[m].needs]


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
    Returns an array (N, R, len(STATISTICS)): the ``errors`` and ``anomalies`` groups only, so
    with ``skipna`` and a climatology NaN where f − o is not, ``acc_pooled`` from these sums
    divides by the error points' weight; a run computes ``sum_weight_a`` for it
    (:func:`statistics_for`).
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
    """The compiled kernels (:func:`wxeval.statistics.compute`) on fields (N, A, B), as
    (N, R, len(STATISTICS)) (the anomaly sums NaN without climatology)."""
    from wxeval.statistics import compute

    groups = ("errors", "anomalies") if c is not None else ("errors",)
    got = compute(groups, f, o, c, reducer, skipna=skipna)
    out = np.full((f.shape[0], reducer.n_regions, N_STATS), np.nan)
    out[:, :, :4] = got["errors"]
    if c is not None:
        out[:, :, 4:] = got["anomalies"]
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
    stats: np.ndarray | Mapping[str, np.ndarray], metrics: Iterable[str] = METRICS, *,
    skipna: bool = False, names: Iterable[str] = STATISTICS,
) -> np.ndarray:
    """Metrics (len(metrics), *cells) from statistics: an array (len(names), T inits, *cells)
    or a mapping name → (T, *cells). Each metric's per-init terms
    (:data:`wxeval.metric_defs.REGISTRY`) are averaged over the T inits in one compiled pass
    (:func:`wxeval.kernels.time_means`), then the metric follows from those means.
    ``skipna`` averages the non-NaN per-init values only."""
    from wxeval.kernels import time_means

    metrics = tuple(metrics)
    if not isinstance(stats, Mapping):
        stats = dict(zip(names, np.asarray(stats, dtype=np.float64), strict=True))
    first = next(iter(stats.values()))
    nt, cells = first.shape[0], first.shape[1:]
    terms: dict[str, object] = {}
    for m in metrics:
        terms.update(BY_NAME[m].terms)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        per_init = np.empty((len(terms), nt, int(np.prod(cells, dtype=np.int64))))
        for k, fn in enumerate(terms.values()):
            per_init[k] = np.asarray(fn(stats), dtype=np.float64).reshape(nt, -1)
        means = time_means(per_init, skipna).reshape(len(terms), *cells)
        mean_of = dict(zip(terms, means, strict=True))
        values = [BY_NAME[m].value(mean_of) for m in metrics]
    return np.stack(values) if values else np.empty((0, *cells))


def vector_table_from_statistics(
    stats_u: np.ndarray, stats_v: np.ndarray, metrics: tuple[str, ...] = VECTOR_METRICS, *,
    skipna: bool = False,
) -> np.ndarray:
    """Wind-vector metrics (:data:`VECTOR_METRICS` only) from the statistics of the u and v
    components (sum_weight, sum_se first): per init, MSE_t = sum_se_u/sum_weight_u +
    sum_se_v/sum_weight_v, as the statistics of unit weight."""
    bad = [m for m in metrics if m not in VECTOR_METRICS]
    if bad:
        raise ValueError(f"metrics {bad} are not defined for a wind vector")
    with np.errstate(invalid="ignore", divide="ignore"):
        mse = stats_u[1] / stats_u[0] + stats_v[1] / stats_v[0]
    pseudo = {"sum_weight": np.ones_like(mse), "sum_se": mse}
    return table_from_statistics(pseudo, metrics, skipna=skipna)


# ---------------------------------------------------------------------------------------------
# Metrics from statistics (labelled: xarray objects with a ``statistic`` dimension)


def per_init_scores(stats: xr.DataArray) -> xr.Dataset:
    """Per-init terms of every metric whose statistics ``stats`` holds (dim ``statistic``):
    e.g. ``mse``, ``rmse``, ``bias``, ``mae``, ``acc`` and ``fa_oa``, ``fa2``, ``oa2``
    (⟨f′o′⟩, ⟨f′²⟩, ⟨o′²⟩), with the statistic dimension removed. The arithmetic runs on the
    unlabelled variables (the operands share every coordinate: no alignment to pay for).
    """
    pos = {str(s): i for i, s in enumerate(stats["statistic"].values.tolist())}
    var = stats.variable
    have = {name: var[{"statistic": i}] for name, i in pos.items()}
    data = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        for m in REGISTRY:
            if set(m.statistics) <= set(have):
                for term, fn in m.terms.items():
                    if term not in data:
                        data[term] = fn(have)
    coords = {k: c for k, c in stats.coords.items() if "statistic" not in c.dims}
    return xr.Dataset(data, coords=coords)
