"""Compare models against a baseline from saved per-init scores, with paired significance tests.

Only the results folder that ``wxeval score --output DIR`` wrote is read (its ``<model>.json``
manifests and the per-init statistics store behind them, through
:func:`wxeval.store.load_statistics`); forecast stores are never opened.

For every model, metric, row (variable and level), region and lead time the comparison holds:

* ``value`` and ``baseline_value`` — the metric of the model and of the baseline over the
  **common** inits of the two (inits only one of them has are dropped and counted; see
  ``pairing_note``), using in each cell only the inits where both per-init scores are finite
  (``n`` of them; ``n_missing`` counts the others). ``rmse`` = √(mean over inits of per-init
  MSE), ``rmse_per_init`` = mean √MSE, the others the mean of their per-init score.
* ``relative_change`` in % (``shared/README.md`` §6): (m − b)/b·100 for the error metrics
  (rmse, rmse_per_init, mse, mae), (m − b)/(1 − b)·100 for acc, NaN for bias (shown as values)
  and wherever the denominator is zero or undefined ("n/a", never inf).
* ``better`` (+1 the model is better than the baseline: lower error, higher acc, smaller
  |bias|; −1 worse; 0 equal or undefined) and ``improvement`` in % (positive = better, the
  quantity the scorecard colours show): −relative_change for errors, +relative_change for
  acc and (|b| − |m|)/|b|·100 for bias.
* a paired test of the per-init differences d_t = s_model(t) − s_baseline(t) over the common
  inits, treated as one series on the init step (00 and 12 UTC together): by default the
  bias-corrected AR(2) t-test with Satterthwaite degrees of freedom (``method="ar2bc"``,
  size close to nominal from ~60 inits), or Geer's (2016) AR(2)-inflated t-test
  (``method="ar2"``, as on ECMWF scorecards) or a naive paired t-test (``method="naive"``),
  from :mod:`wxeval.scorecard.significance`. The per-init score s is
  MSE for rmse and mse, √MSE for rmse_per_init, and the metric's own per-init value for mae,
  acc and bias (a bias test asks whether the mean bias differs). ``p_value``, ``n``,
  ``effective_n``, ``inflation`` (k), ``dof`` and ``testable`` (False where the AR(2) fit is
  undefined or not stationary, the differences are constant, or n < 4).
* ``significance`` — how many of the levels in ``alpha`` (default 0.05 and 0.01: the 95 % and
  99 % markers) the cell passes after the multiple-testing treatment, applied separately to
  every *card* (one model × one metric, across all its rows, regions and lead times):
  Benjamini–Hochberg false-discovery-rate control (``correction="bh"``, default), Šidák
  family-wise control (``"sidak"``) or none (``"none"``). The dataset attributes name the test
  and the treatment.

>>> from wxeval.scorecard.compare import compare, to_dataframe
>>> ds = compare("results/", ["graphcast"], "hres")  # doctest: +SKIP
>>> to_dataframe(ds).query("metric == 'rmse' and region == 'global'")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from wxeval.metric_defs import BY_NAME, REGISTRY
from wxeval.metrics import canonical_metric
from wxeval.schema import INIT_TIME, LEAD_TIME, LEVEL
from wxeval.scorecard import significance as sig

__all__ = [
    "COMPARABLE_METRICS",
    "DEFAULT_METRICS",
    "Inputs",
    "compare",
    "curves",
    "load_inputs",
    "relative_change",
    "to_dataframe",
]

DEFAULT_METRICS = tuple(
    m.name for m in sorted((m for m in REGISTRY if m.card), key=lambda m: m.card)
)
#: Metrics with a per-init score to test (acc_pooled has none: it is a ratio of means).
COMPARABLE_METRICS = tuple(m.name for m in REGISTRY if m.series)
CORRECTIONS = {
    "bh": "Benjamini-Hochberg (1995) false-discovery-rate control at each level, applied "
    "across all testable cells of one card (one model and metric: every variable, level, "
    "region and lead time)",
    "sidak": "Sidak (1967) family-wise control at each level, per-test level "
    "1 - (1 - alpha)^(1/m) with m the testable cells of one card (one model and metric)",
    "none": "none (each cell tested at the nominal level)",
}
TESTS = {
    "ar2bc": "paired t-test on per-init differences, standard error from a bias-corrected "
    "AR(2) fit (finite-n variance of the mean), Satterthwaite degrees of freedom for the "
    "estimated correction",
    "ar2": "Geer (2016) paired t-test on per-init differences, standard error inflated by the "
    "AR(2) factor k, n - 1 degrees of freedom",
    "naive": "naive paired t-test on per-init differences (no autocorrelation correction; "
    "too many false positives for serially correlated scores)",
}
CAVEAT = (
    "The tests treat the per-init differences as a stationary series with AR(2)-like serial "
    "correlation. The Geer (2016) AR(2) test (ECMWF's) is optimistic for short series (about "
    "14 % false positives at a nominal 5 % for 60 inits with lag-1 correlation 0.7); the "
    "default bias-corrected test stays near 5 % from about 60 inits but is somewhat "
    "optimistic below that and for very persistent differences, and slightly conservative "
    "for uncorrelated ones (see the measured size in the method note)."
)
#: Preferred row order (upper air, then surface); other variables follow alphabetically.
ROW_ORDER = (
    "geopotential",
    "temperature",
    "wind_vector",
    "u_component_of_wind",
    "v_component_of_wind",
    "specific_humidity",
    "relative_humidity",
    "mean_sea_level_pressure",
    "2m_temperature",
    "10m_wind_vector",
    "10m_u_component_of_wind",
    "10m_v_component_of_wind",
    "total_precipitation_6hr",
    "total_precipitation_24hr",
)

# Relative changes need a denominator that is not zero to round-off.
_REL_TOL = 1e-12
_ACC_TOL = 1e-9


# ---------------------------------------------------------------------------------------------
# Inputs: per-init scores of every model, read once
# ---------------------------------------------------------------------------------------------


@dataclass
class Inputs:
    """Per-init scores (``wxeval.results.per_init``) of the baseline and the models."""

    results_dir: Path
    baseline: str
    models: list[str]
    scores: dict[str, dict[str, xr.Dataset]]
    manifests: dict[str, dict]


def load_inputs(results_dir: str | Path, models: Sequence[str], baseline: str) -> Inputs:
    """Read the per-init scores of ``baseline`` and ``models`` from a results folder: the
    statistics of the metrics the scorecard can test (:data:`COMPARABLE_METRICS`) only, not
    the rank-histogram slots (``statistics.RANK_BINS`` per field, nearly three quarters of
    a full read)."""

    from wxeval import progress
    from wxeval.config import ConfigError
    from wxeval.metrics import statistics_for
    from wxeval.results import per_init, read_manifest
    from wxeval.store import load_statistics

    results_dir = Path(results_dir)
    models = [str(m) for m in models]
    if not models:
        raise ConfigError("name at least one model to compare with the baseline")
    if baseline in models:
        raise ConfigError(f"the baseline {baseline!r} is also listed among the models")
    if len(set(models)) != len(models):
        raise ConfigError(f"models listed twice: {models}")
    _check_results_exist(results_dir, [baseline, *models])
    scores, manifests = {}, {}
    for name in progress.iterate([baseline, *models], "reading results", "model"):
        manifests[name] = read_manifest(results_dir, name)
        stats = load_statistics(results_dir, name,
                                statistics=statistics_for(COMPARABLE_METRICS)).load()
        scores[name] = {var: ds.load() for var, ds in per_init(stats).items()}
        del stats  # the per-init scores are all the pages read
        for ds in scores[name].values():  # _per_init_series: CRPS = MAE only for M <= 1
            ds.attrs["members"] = int(manifests[name].get("members", 0))
    return Inputs(results_dir, baseline, models, scores, manifests)


def _check_results_exist(results_dir: Path, names: Sequence[str]) -> None:
    """A name without ``<results_dir>/<name>.json`` is a usage error (exit 2) that lists the
    models that have results (with a suggestion for a misspelt one)."""
    import difflib

    from wxeval.config import ConfigError

    missing = [n for n in names if not (results_dir / f"{n}.json").is_file()]
    if not missing:
        return
    have = sorted(p.stem for p in results_dir.glob("*.json") if p.stem != "check")
    hints = [h for n in missing for h in difflib.get_close_matches(n, have, n=1)]
    hint = f"; did you mean {', '.join(map(repr, hints))}?" if hints else ""
    files = ", ".join(f"{n}.json" for n in missing)
    raise ConfigError(
        f"no results for model{'s' if len(missing) > 1 else ''} "
        f"{', '.join(map(repr, missing))} in {results_dir} (no {files}){hint} "
        f"(models with results: {', '.join(have) or 'none'})"
    )


# ---------------------------------------------------------------------------------------------
# Small pure functions (also used by the tests' reasoning)
# ---------------------------------------------------------------------------------------------


def _per_init_series(scores: xr.Dataset, metric: str) -> xr.DataArray | None:
    """The per-init score a metric aggregates (and is tested on), or None if unavailable
    (its declaration's :attr:`~wxeval.metric_defs.Metric.series`)."""
    term = BY_NAME[metric].series if metric in BY_NAME else None
    if term is None:
        return None
    if term in scores:
        return scores[term]
    if term == "rmse" and "mse" in scores:  # scores made without the root-per-init term
        return np.sqrt(scores["mse"])
    if term == "crps" and "mae" in scores and scores.attrs.get("members", 0) <= 1:
        return scores["mae"]  # a deterministic forecast: CRPS = MAE (M = 1); never an ensemble
    return None


def _aggregate(metric: str, mean: np.ndarray) -> np.ndarray:
    """Metric value from the mean of its per-init score (rmse: root after the mean)."""
    return BY_NAME[metric].aggregate(mean)


def _card_coords(names, rows, regions, leads) -> dict:
    """Coordinates shared by the comparison table and the curves: metric, row (variable/level),
    region, lead time."""
    return {
        "metric": names,
        "row": [row_label(v, lev) for v, lev in rows],
        "variable": ("row", [v for v, _ in rows]),
        "level": ("row", np.array([np.nan if lev is None else lev for _, lev in rows])),
        "region": regions,
        LEAD_TIME: leads,
    }


def relative_change(metric: str, model: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Relative change in % (README §6); NaN for bias and wherever it is undefined."""
    m = np.asarray(model, dtype=np.float64)
    b = np.asarray(base, dtype=np.float64)
    decl = BY_NAME[metric]
    tol = _ACC_TOL if decl.compare == "skill" else _REL_TOL
    return decl.relative_change(m, b, tol) * 100.0


def _improvement(metric: str, m: np.ndarray, b: np.ndarray, rel: np.ndarray) -> np.ndarray:
    """Signed change in %, positive = better than the baseline (what the colours show)."""
    decl = BY_NAME[metric]
    if decl.compare == "skill":
        return rel
    if decl.compare == "abs":
        am, ab = np.abs(m), np.abs(b)
        with np.errstate(divide="ignore", invalid="ignore"):
            ok = np.isfinite(am) & np.isfinite(ab) & (ab > _REL_TOL * am)
            return np.where(ok, (ab - am) / np.where(ok, ab, 1.0) * 100.0, np.nan)
    return -rel


def _better(metric: str, m: np.ndarray, b: np.ndarray) -> np.ndarray:
    """+1 model better, −1 worse, 0 equal or undefined."""
    with np.errstate(invalid="ignore"):
        s = np.sign(BY_NAME[metric].better_sign(m, b))
    return np.where(np.isfinite(s), s, 0).astype(np.int8)


def _fmt_time(t) -> str:
    return str(np.datetime_as_string(np.datetime64(t, "m"), unit="m"))


def _list_times(times: np.ndarray, limit: int = 6) -> str:
    shown = ", ".join(_fmt_time(t) for t in times[:limit])
    return shown + (f", … (+{len(times) - limit})" if len(times) > limit else "")


def pairing_note(model: str, model_inits: np.ndarray, base_inits: np.ndarray) -> dict:
    """Common inits of a model and the baseline, and a sentence on what was dropped and why."""
    common = np.intersect1d(model_inits, base_inits)
    only_model = np.setdiff1d(model_inits, base_inits)
    only_base = np.setdiff1d(base_inits, model_inits)
    parts = []
    if only_model.size:
        parts.append(
            f"baseline lacks {only_model.size} init{'s' * (only_model.size != 1)} of {model} "
            f"({_list_times(only_model)})"
        )
    if only_base.size:
        parts.append(
            f"{model} lacks {only_base.size} init{'s' * (only_base.size != 1)} of the baseline "
            f"({_list_times(only_base)})"
        )
    if parts:
        note = "; ".join(parts) + f": dropped, {common.size} common inits used"
    else:
        note = f"all {common.size} inits common to {model} and the baseline"
    step = ""
    if common.size > 1:
        diffs = np.diff(common).astype("timedelta64[m]").astype(np.int64)
        usual = int(pd.Series(diffs).mode().iloc[0])
        step = f"{usual / 60:g}h"
        if np.any(diffs != usual):
            note += f" (gaps in the {step} init series: the paired series is taken as consecutive)"
    return {
        "common": common,
        "dropped_model": int(only_model.size),
        "dropped_baseline": int(only_base.size),
        "note": note,
        "step": step,
    }


# ---------------------------------------------------------------------------------------------
# Labels: rows (variable, level), regions, leads
# ---------------------------------------------------------------------------------------------


def _row_key(variable: str, level) -> tuple:
    try:
        rank = ROW_ORDER.index(variable)
    except ValueError:
        rank = len(ROW_ORDER)
    lev = -1.0 if level is None or (isinstance(level, float) and np.isnan(level)) else level
    return (rank, variable, float(lev))


def row_label(variable: str, level) -> str:
    if level is None or (isinstance(level, float) and np.isnan(level)):
        return str(variable)
    return f"{variable} {int(level)}"


def _rows_of(scores: dict[str, xr.Dataset]) -> list[tuple[str, float]]:
    rows = []
    for var, ds in scores.items():
        if LEVEL in ds.dims:
            rows += [(var, float(lev)) for lev in ds[LEVEL].values]
        else:
            rows.append((var, None))
    return rows


def _union(seqs) -> list:
    out, seen = [], set()
    for seq in seqs:
        for x in seq:
            if x not in seen:
                seen.add(x)
                out.append(x)
    return out


# ---------------------------------------------------------------------------------------------
# The comparison
# ---------------------------------------------------------------------------------------------


def _check_options(metrics, method, correction, alpha) -> tuple[list[str], tuple[float, ...]]:
    from wxeval.config import ConfigError

    names = []
    for m in metrics:
        try:
            c = canonical_metric(m)
        except ValueError as err:
            known = ", ".join(COMPARABLE_METRICS)
            raise ConfigError(f"{err}; the scorecard compares {known}") from err
        if c not in COMPARABLE_METRICS:
            raise ConfigError(
                f"metric {m!r} has no per-init score to test; choose from "
                f"{', '.join(COMPARABLE_METRICS)}"
            )
        if c not in names:
            names.append(c)
    if not names:
        raise ConfigError("no metrics to compare")
    if method not in TESTS:
        raise ConfigError(f"method must be one of {', '.join(TESTS)}, got {method!r}")
    if correction not in CORRECTIONS:
        raise ConfigError(f"correction must be one of {', '.join(CORRECTIONS)}, got {correction!r}")
    levels = tuple(sorted((float(a) for a in np.atleast_1d(alpha)), reverse=True))
    for a in levels:
        if not 0.0 < a < 1.0:
            raise ConfigError(f"alpha must be in (0, 1), got {a}")
    return names, levels


def _layout(inputs: Inputs, names: Sequence[str]):
    """Union of rows, regions and lead times over the given models (baseline first)."""
    rows = sorted(
        _union(_rows_of(inputs.scores[n]) for n in names), key=lambda r: _row_key(*r)
    )
    regions = _union(
        [str(r) for r in ds["region"].values]
        for n in names
        for ds in inputs.scores[n].values()
    )
    leads = np.unique(
        np.concatenate(
            [ds[LEAD_TIME].values for n in names for ds in inputs.scores[n].values()]
        ).astype("timedelta64[ns]")
    )
    return rows, regions, leads


def _block(da: xr.DataArray, inits: np.ndarray, regions, leads) -> np.ndarray:
    """Per-init scores as float64 (…level, region, lead, init): the inits ``inits`` (each one
    must be there), and ``regions`` and ``leads`` in that order, NaN where ``da`` lacks one.
    Indexed in NumPy (xarray's ``sel`` and ``reindex`` cost ~2 ms a call, thousands of calls
    per report)."""
    order = ([LEVEL] if LEVEL in da.dims else []) + ["region", LEAD_TIME, INIT_TIME]
    values = da.transpose(*order).values
    have_inits = da[INIT_TIME].values
    at_init = {t: i for i, t in enumerate(have_inits.tolist())}
    wanted = np.asarray(inits).astype(have_inits.dtype).tolist()
    missing = [t for t in wanted if t not in at_init]
    if missing:
        raise KeyError(f"init times not in the scores: {missing[:3]}")
    ipos = np.array([at_init[t] for t in wanted], dtype=np.int64)
    rpos = _positions_or_missing([str(r) for r in da["region"].values],
                                 [str(r) for r in regions])
    lpos = _positions_or_missing(da[LEAD_TIME].values.astype("timedelta64[ns]").tolist(),
                                 np.asarray(leads).astype("timedelta64[ns]").tolist())
    out = np.full((*values.shape[:-3], len(rpos), len(lpos), len(ipos)), np.nan)
    rk, lk = np.flatnonzero(rpos >= 0), np.flatnonzero(lpos >= 0)
    picked = values[..., rpos[rk], :, :][..., lpos[lk], :][..., ipos]
    out[..., rk[:, None], lk[None, :], :] = picked
    return out


def _positions_or_missing(have: list, wanted: list) -> np.ndarray:
    """Position in ``have`` of each of ``wanted``, −1 where absent."""
    at = {v: i for i, v in enumerate(have)}
    return np.array([at.get(v, -1) for v in wanted], dtype=np.int64)


def _row_indices(da: xr.DataArray, var: str, rows) -> list[int]:
    if LEVEL in da.dims:
        return [rows.index((var, float(lev))) for lev in da[LEVEL].values]
    return [rows.index((var, None))]


def _nanmean(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    n = mask.sum(axis=-1)
    total = np.where(mask, x, 0.0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / np.maximum(n, 1), np.nan)


def compare(
    results_dir: str | Path,
    models: Sequence[str],
    baseline: str,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    method: str = sig.DEFAULT_METHOD,
    correction: str = "bh",
    alpha: float | Sequence[float] = (0.05, 0.01),
    inputs: Inputs | None = None,
) -> xr.Dataset:
    """Compare ``models`` with ``baseline`` from a results folder; see the module docstring.

    Returns a Dataset with dims ``(model, metric, row, region, lead_time)`` (``row`` carries
    the coords ``variable`` and ``level``, NaN for surface variables), the per-model
    variables ``n_common_inits``, ``n_dropped_model_inits`` (inits the baseline lacks),
    ``n_dropped_baseline_inits`` (baseline inits the model lacks) and ``pairing_note``, and
    ``significant`` on an extra ``alpha`` dim. ``inputs`` (from :func:`load_inputs`) avoids
    reading the results again.
    """
    names, levels = _check_options(metrics, method, correction, alpha)
    if inputs is None:
        inputs = load_inputs(results_dir, models, baseline)
    models = list(models)
    rows, regions, leads = _layout(inputs, [baseline, *models])
    shape = (len(models), len(names), len(rows), len(regions), len(leads))
    fields = {
        k: np.full(shape, np.nan)
        for k in ("value", "baseline_value", "mean_diff", "std_err", "p_value", "inflation",
                  "effective_n", "dof")
    }
    n_pairs = np.zeros(shape, dtype=np.int64)
    n_missing = np.zeros(shape, dtype=np.int64)
    notes, common_n, drop_m, drop_b, steps = [], [], [], [], []
    base_scores = inputs.scores[baseline]
    base_inits = _inits(base_scores)
    for mi, model in enumerate(models):
        pair = pairing_note(model, _inits(inputs.scores[model]), base_inits)
        notes.append(pair["note"])
        common_n.append(pair["common"].size)
        drop_m.append(pair["dropped_model"])
        drop_b.append(pair["dropped_baseline"])
        steps.append(pair["step"])
        common = pair["common"]
        if common.size == 0:
            raise ValueError(f"{model} and the baseline {baseline} share no init time: "
                             f"{pair['note']}")
        for var, mscores in inputs.scores[model].items():
            if var not in base_scores:
                continue
            for ki, metric in enumerate(names):
                sa = _per_init_series(mscores, metric)
                sb = _per_init_series(base_scores[var], metric)
                if sa is None or sb is None:
                    continue
                if LEVEL in sa.dims and LEVEL in sb.dims:
                    lev = np.intersect1d(sa[LEVEL].values, sb[LEVEL].values)
                    sa, sb = sa.sel({LEVEL: lev}), sb.sel({LEVEL: lev})
                a = _block(sa, common, regions, leads)
                b = _block(sb, common, regions, leads)
                ridx = _row_indices(sa, var, rows)
                if a.ndim == 3:
                    a, b = a[None], b[None]
                ok = np.isfinite(a) & np.isfinite(b)
                d = np.where(ok, a - b, np.nan)
                res = sig.paired_test_array(d, axis=-1, method=method)
                for j, r in enumerate(ridx):
                    at = (mi, ki, r)
                    fields["value"][at] = _aggregate(metric, _nanmean(a[j], ok[j]))
                    fields["baseline_value"][at] = _aggregate(metric, _nanmean(b[j], ok[j]))
                    fields["mean_diff"][at] = res.mean_diff[j]
                    fields["std_err"][at] = res.std_err[j]
                    fields["p_value"][at] = res.p_value[j]
                    fields["inflation"][at] = res.inflation[j]
                    fields["effective_n"][at] = res.effective_n[j]
                    fields["dof"][at] = res.dof[j]
                    n_pairs[at] = res.n[j]
                    n_missing[at] = common.size - res.n[j]
        if n_pairs[mi].sum() == 0:
            raise ValueError(
                f"{model} and the baseline {baseline} have no (variable, level, region, lead) "
                "in common with a value: variables "
                f"{sorted(inputs.scores[model])} vs {sorted(base_scores)}; compare scores of the "
                "same variables, regions and lead times"
            )
    # Cells where neither has data are "no data", not "missing pairs".
    no_data = ~np.isfinite(fields["value"]) & ~np.isfinite(fields["baseline_value"])
    n_missing[no_data & (n_pairs == 0)] = 0
    rel = np.full(shape, np.nan)
    better = np.zeros(shape, dtype=np.int8)
    improvement = np.full(shape, np.nan)
    for ki, metric in enumerate(names):
        m, b = fields["value"][:, ki], fields["baseline_value"][:, ki]
        rel[:, ki] = relative_change(metric, m, b)
        better[:, ki] = _better(metric, m, b)
        improvement[:, ki] = _improvement(metric, m, b, rel[:, ki])
    testable = np.isfinite(fields["p_value"])
    significant = np.zeros((len(levels), *shape), dtype=bool)
    for mi in range(len(models)):
        for ki in range(len(names)):
            p = fields["p_value"][mi, ki]
            for ai, a in enumerate(levels):
                significant[ai, mi, ki] = _significant(p, a, correction)
    eff_n = np.where(testable, fields["effective_n"], np.nan)
    dims = ("model", "metric", "row", "region", LEAD_TIME)
    ds = xr.Dataset(
        {
            "value": (dims, fields["value"]),
            "baseline_value": (dims, fields["baseline_value"]),
            "relative_change": (dims, rel),
            "improvement": (dims, improvement),
            "better": (dims, better),
            "mean_diff": (dims, fields["mean_diff"]),
            "std_err": (dims, fields["std_err"]),
            "p_value": (dims, fields["p_value"]),
            "n": (dims, n_pairs),
            "n_missing": (dims, n_missing),
            "effective_n": (dims, eff_n),
            "inflation": (dims, fields["inflation"]),
            "dof": (dims, fields["dof"]),
            "testable": (dims, testable),
            "significant": (("alpha", *dims), significant),
            "significance": (dims, significant.sum(axis=0).astype(np.int8)),
            "n_common_inits": ("model", np.array(common_n, dtype=np.int64)),
            "n_dropped_model_inits": ("model", np.array(drop_m, dtype=np.int64)),
            "n_dropped_baseline_inits": ("model", np.array(drop_b, dtype=np.int64)),
            "pairing_note": ("model", np.array(notes, dtype=object)),
            "init_step": ("model", np.array(steps, dtype=object)),
        },
        coords={"model": models, **_card_coords(names, rows, regions, leads),
                "alpha": list(levels)},
    )
    ds["relative_change"].attrs.update(
        units="%",
        description="(m - b)/b*100 for error metrics, (m - b)/(1 - b)*100 for acc; NaN for bias "
        "and where the baseline makes it undefined",
    )
    ds["improvement"].attrs.update(
        units="%", description="signed change, positive = better than the baseline (colours)"
    )
    ds["better"].attrs["description"] = "+1 better than the baseline, -1 worse, 0 equal/undefined"
    ds["significance"].attrs["description"] = (
        "number of alpha levels passed after the multiple-testing treatment"
    )
    ds.attrs.update(
        baseline=baseline,
        test=method,
        test_description=TESTS[method],
        multiple_testing=correction,
        multiple_testing_description=CORRECTIONS[correction],
        alpha=", ".join(f"{a:g}" for a in levels),
        tested_scores="rmse and mse: per-init MSE; rmse_per_init: per-init sqrt(MSE); mae, acc "
        "and bias: their per-init values; differences over the common inits as one series on "
        "the init step",
        value_definition="mean over the common inits where both per-init scores are finite; "
        "rmse = sqrt(mean MSE)",
        caveat=CAVEAT,
        size_note=sig.size_note(method, n_pairs[testable]),
        results_dir=str(inputs.results_dir),
    )
    return ds


def _inits(scores: dict[str, xr.Dataset]) -> np.ndarray:
    arrays = [ds[INIT_TIME].values for ds in scores.values()]
    if not arrays:
        return np.array([], dtype="datetime64[ns]")
    return np.unique(np.concatenate(arrays).astype("datetime64[ns]"))


def _significant(p: np.ndarray, alpha: float, correction: str) -> np.ndarray:
    finite = np.isfinite(p)
    if correction == "bh":
        return sig.benjamini_hochberg(p, alpha)
    if correction == "sidak":
        m = int(finite.sum())
        if m == 0:
            return np.zeros(p.shape, dtype=bool)
        return finite & (np.where(finite, p, 1.0) <= sig.sidak_alpha(alpha, m))
    return finite & (np.where(finite, p, 1.0) <= alpha)


# ---------------------------------------------------------------------------------------------
# Curves for the line plots
# ---------------------------------------------------------------------------------------------


def curves(
    inputs: Inputs,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    method: str = sig.DEFAULT_METHOD,
    z: float = 1.959963984540054,
) -> xr.Dataset:
    """Metric against lead time for the baseline and every model, over the inits common to
    **all** of them, with a 95 % interval of the mean over inits.

    The interval is mean ± z·se of the per-init score (MSE for rmse, then the square root of
    both ends), with se = √(var/n)·k and k the serial-correlation inflation of the series
    itself for ``method`` (``"ar2bc"``, ``"ar2"``; see :mod:`wxeval.scorecard.significance`)
    or 1 (``"naive"``). Dims ``(series, metric, row, region, lead_time)``;
    variables ``value``, ``lower``, ``upper``, ``n``; attrs ``n_inits``, ``init_first``,
    ``init_last``.
    """
    names = [canonical_metric(m) for m in metrics]
    series = [inputs.baseline, *inputs.models]
    rows, regions, leads = _layout(inputs, series)
    common = _inits(inputs.scores[inputs.baseline])
    for name in inputs.models:
        common = np.intersect1d(common, _inits(inputs.scores[name]))
    shape = (len(series), len(names), len(rows), len(regions), len(leads))
    value, lower, upper = (np.full(shape, np.nan) for _ in range(3))
    n_used = np.zeros(shape, dtype=np.int64)
    for si, name in enumerate(series):
        if common.size == 0:  # no init common to every series: no curves (the attrs say so)
            break
        for var, scores in inputs.scores[name].items():
            for ki, metric in enumerate(names):
                s = _per_init_series(scores, metric)
                if s is None or metric not in COMPARABLE_METRICS:
                    continue
                a = _block(s, common, regions, leads)
                ridx = _row_indices(s, var, rows)
                if a.ndim == 3:
                    a = a[None]
                res = sig.paired_test_array(a, axis=-1, method=method)
                ok = np.isfinite(a)
                mean = _nanmean(a, ok)
                half = z * res.std_err
                lo, hi = mean - half, mean + half
                # An end the value is undefined at (rmse: √ of a negative MSE end) is 0.
                undefined = np.isnan(_aggregate(metric, lo)) & ~np.isnan(lo)
                lo = np.where(undefined, 0.0, lo)
                for j, r in enumerate(ridx):
                    at = (si, ki, r)
                    value[at] = _aggregate(metric, mean[j])
                    lower[at] = _aggregate(metric, lo[j])
                    upper[at] = _aggregate(metric, hi[j])
                    n_used[at] = ok[j].sum(axis=-1)
    dims = ("series", "metric", "row", "region", LEAD_TIME)
    ds = xr.Dataset(
        {
            "value": (dims, value),
            "lower": (dims, lower),
            "upper": (dims, upper),
            "n": (dims, n_used),
        },
        coords={"series": series, **_card_coords(names, rows, regions, leads)},
    )
    ds.attrs.update(
        n_inits=int(common.size),
        init_first=_fmt_time(common[0]) if common.size else "",
        init_last=_fmt_time(common[-1]) if common.size else "",
        band=f"mean over inits ± {z:.2f} standard errors of the per-init score"
        + {"ar2": ", inflated by the AR(2) factor k of the series (Geer 2016)",
           "ar2bc": ", inflated for serial correlation (bias-corrected AR(2) fit of the series)",
           }.get(method, "")
        + "; for rmse on MSE, then the square root",
    )
    return ds


# ---------------------------------------------------------------------------------------------
# Tidy table
# ---------------------------------------------------------------------------------------------


def to_dataframe(ds: xr.Dataset) -> pd.DataFrame:
    """One row per (model, metric, variable, level, region, lead) with every cell field.

    Columns: model, metric, variable, level (nullable int, empty for surface variables),
    region, lead_time_hours, value, baseline_value, relative_change, improvement, better,
    p_value, n, n_missing, effective_n, inflation, dof, testable, significance and one
    ``significant_<alpha>`` column per level.
    """
    cell = [
        "value",
        "baseline_value",
        "relative_change",
        "improvement",
        "better",
        "mean_diff",
        "std_err",
        "p_value",
        "n",
        "n_missing",
        "effective_n",
        "inflation",
        "dof",
        "testable",
        "significance",
    ]
    df = ds[cell].to_dataframe().reset_index()
    for a in ds["alpha"].values:
        flags = ds["significant"].sel(alpha=a).to_dataframe(name="s").reset_index()["s"]
        df[f"significant_{a:g}"] = flags.to_numpy()
    df["lead_time_hours"] = df[LEAD_TIME] / pd.Timedelta(hours=1)
    df[LEVEL] = pd.array(
        [pd.NA if np.isnan(x) else int(x) for x in df[LEVEL]], dtype="Int64"
    )
    first = ["model", "metric", "variable", LEVEL, "region", "lead_time_hours"]
    rest = [c for c in df.columns if c not in first and c not in ("row", LEAD_TIME, "alpha")]
    return df[first + rest]
