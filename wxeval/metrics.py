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
``sum_weight``.
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

_ROW_BATCH = 1 << 21  # elements per kernel batch (bounds float64 temporaries to ~16 MB each)


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
    weights: np.ndarray,
    *,
    skipna: bool = False,
) -> np.ndarray:
    """Weighted sums of every statistic for N fields and R regions, in float64.

    ``forecast``, ``truth`` and ``climatology`` have shape (N, S) — S flattened grid points, in
    the same order as the last axis of ``weights`` (R, S). Without climatology the three ACC
    sums are NaN. Returns an array (N, R, len(STATISTICS)).
    """
    n, s = forecast.shape
    r = weights.shape[0]
    if truth.shape != (n, s) or weights.shape[1] != s:
        raise ValueError(f"shape mismatch: {forecast.shape}, {truth.shape}, {weights.shape}")
    if climatology is not None and climatology.shape != (n, s):
        raise ValueError(f"climatology shape {climatology.shape} != {(n, s)}")
    out = np.empty((n, r, N_STATS), dtype=np.float64)
    step = max(1, _ROW_BATCH // max(s, 1))
    wt = np.ascontiguousarray(weights.T, dtype=np.float64)  # (S, R)
    inside = (weights > 0).T.astype(np.float64)  # (S, R)
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        c = None if climatology is None else climatology[lo:hi]
        out[lo:hi] = _kernel(forecast[lo:hi], truth[lo:hi], c, wt, inside, skipna)
    return out


def _kernel(f, o, c, wt, inside, skipna):
    f = f.astype(np.float64, copy=False)
    o = o.astype(np.float64, copy=False)
    d = f - o
    out = np.empty((f.shape[0], wt.shape[1], N_STATS), dtype=np.float64)
    bad = np.isnan(d)
    has_nan = bool(bad.any())
    if has_nan:
        d[bad] = 0.0
    out[:, :, 1] = (d * d) @ wt
    out[:, :, 2] = d @ wt
    out[:, :, 3] = np.abs(d) @ wt
    del d
    if has_nan and skipna:
        out[:, :, 0] = (~bad).astype(np.float64) @ wt
    else:
        out[:, :, 0] = wt.sum(axis=0)[None, :]
    if has_nan and not skipna:
        hit = (bad.astype(np.float64) @ inside) > 0
        out[:, :, :4][hit] = np.nan
    if c is None:
        out[:, :, 4:] = np.nan
        return out
    c = c.astype(np.float64, copy=False)
    fa = f - c
    oa = o - c
    bad_a = np.isnan(fa) | np.isnan(oa)
    has_nan_a = bool(bad_a.any())
    if has_nan_a:
        fa[bad_a] = 0.0
        oa[bad_a] = 0.0
    out[:, :, 4] = (fa * oa) @ wt
    out[:, :, 5] = (fa * fa) @ wt
    out[:, :, 6] = (oa * oa) @ wt
    if has_nan_a and not skipna:
        hit = (bad_a.astype(np.float64) @ inside) > 0
        out[:, :, 4:][hit] = np.nan
    return out


# ---------------------------------------------------------------------------------------------
# Metrics from statistics (labelled: xarray objects with a ``statistic`` dimension)


def _stat(stats: xr.DataArray, name: str) -> xr.DataArray:
    return stats.sel(statistic=name, drop=True)


def per_init_scores(stats: xr.DataArray) -> xr.Dataset:
    """Per-init scores from one variable's statistics (dim ``statistic``).

    Returns ``mse``, ``bias``, ``mae``, ``acc`` and the per-init means ``fa_oa``, ``fa2``, ``oa2``
    (⟨f′o′⟩, ⟨f′²⟩, ⟨o′²⟩) with the statistic dimension removed.
    """
    w = _stat(stats, "sum_weight")
    fo, ff, oo = (_stat(stats, k) for k in ("sum_fa_oa", "sum_fa2", "sum_oa2"))
    with np.errstate(invalid="ignore", divide="ignore"):
        return xr.Dataset(
            {
                "mse": _stat(stats, "sum_se") / w,
                "bias": _stat(stats, "sum_err") / w,
                "mae": _stat(stats, "sum_ae") / w,
                "acc": fo / np.sqrt(ff * oo),
                "fa_oa": fo / w,
                "fa2": ff / w,
                "oa2": oo / w,
            }
        )


def metrics_from_scores(
    scores: xr.Dataset,
    metrics: tuple[str, ...] = METRICS,
    *,
    dim: str = "init_time",
    skipna: bool = False,
) -> xr.DataArray:
    """Reduce per-init scores over ``dim`` into the requested metrics (new leading dim ``metric``).

    Pass only ``mse`` for vector (wind) scores; metrics that need other scores are skipped.
    """
    out = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        for m in metrics:
            if m == "mse" and "mse" in scores:
                out[m] = scores["mse"].mean(dim, skipna=skipna)
            elif m == "rmse" and "mse" in scores:
                out[m] = np.sqrt(scores["mse"].mean(dim, skipna=skipna))
            elif m == "rmse_per_init" and "mse" in scores:
                out[m] = np.sqrt(scores["mse"]).mean(dim, skipna=skipna)
            elif m in ("bias", "mae", "acc") and m in scores:
                out[m] = scores[m].mean(dim, skipna=skipna)
            elif m == "acc_pooled" and "fa_oa" in scores:
                out[m] = scores["fa_oa"].mean(dim, skipna=skipna) / np.sqrt(
                    scores["fa2"].mean(dim, skipna=skipna) * scores["oa2"].mean(dim, skipna=skipna)
                )
    if not out:
        raise ValueError(f"none of the metrics {metrics} can be computed from {list(scores)}")
    names = list(out)
    return xr.concat([out[k] for k in names], dim="metric", coords="minimal").assign_coords(
        metric=names
    )
