"""The report's ensemble section: M per model, spread–skill ratio against its ideal 1, spread
and ensemble-mean RMSE against lead time, rank histograms at a few leads.

Everything comes from the saved per-init statistics (the ``ensemble`` and ``rank`` groups of
:mod:`wxeval.statistics`), over each model's own inits:

* spread–skill ratio √(mean_t ⟨s²⟩_t) / √(mean_t ⟨(x̄ − o)²⟩_t), and the corrected form with
  the spread × √((M + 1)/M);
* spread √(mean_t ⟨s²⟩_t) and ensemble-mean RMSE √(mean_t ⟨(x̄ − o)²⟩_t);
* rank histogram: Σ_t Σ W [rank = k] / Σ_t Σ W, times M + 1 (1 = flat: a reliable ensemble).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from wxeval.schema import LEAD_TIME, LEVEL
from wxeval.scorecard.presets import first_rows
from wxeval.statistics import ENSEMBLE_STATISTICS, RANK_BINS, RANK_STATISTICS

#: Rows drawn (variable, level), the first present; others fill up to MAX_ROWS.
HEADLINE = (("geopotential", 500), ("temperature", 850), ("2m_temperature", None),
            ("mean_sea_level_pressure", None), ("u_component_of_wind", 850))
MAX_ROWS = 3
#: Rank histograms at this many leads (first non-zero, middle, last).
RANK_LEADS = 3


def _rows(variables: dict[str, xr.DataArray]) -> list[tuple[str, int | None]]:
    have = []
    for var, da in variables.items():
        levels = [int(x) for x in da[LEVEL].values] if LEVEL in da.dims else [None]
        have += [(var, lev) for lev in levels]
    return first_rows(HEADLINE, have, MAX_ROWS)


def _label(var: str, lev) -> str:
    return var if lev is None else f"{var} {lev} hPa"


def _num(x) -> float | None:
    x = float(x)
    return None if not np.isfinite(x) else float(f"{x:.4g}")


def ensemble_data(results_dir: str | Path, series: Sequence[str], labels: dict,
                  regions: Sequence[str]) -> dict | None:
    """The page's ``ensemble`` JSON, or None when no model has ensemble statistics.

    ``series``: the models (baseline first) in the page's order; only those with M ≥ 2 are
    drawn. ``plots[region]`` is a list of ``{row, ratio, ratio_c, spread, rmse}`` (each a list
    per drawn series of values per lead); ``ranks[region]`` a list of ``{row, lead, series,
    bins}`` (bins × (M + 1): 1 is flat)."""
    from wxeval.store import load_statistics

    members = {str(n): 0 for n in series}
    stats = {}
    for name in series:
        # M from the ensemble group alone, then for an ensemble its M + 1 rank slots (of
        # RANK_BINS per field: the others hold 0 and are never drawn)
        s = load_statistics(results_dir, str(name), statistics=ENSEMBLE_STATISTICS).load()
        with_ens = {v: da for v, da in s.data_vars.items()
                    if "sum_ens_var" in da["statistic"].values}
        if with_ens:
            m = next(iter(with_ens.values())).sel(statistic="ensemble_size").values
            m = m[np.isfinite(m)]
            members[str(name)] = int(m.max()) if m.size else 0
        if members[str(name)] >= 2:
            s = load_statistics(results_dir, str(name),
                                statistics=(*ENSEMBLE_STATISTICS,
                                            *RANK_STATISTICS[:members[str(name)] + 1])).load()
            stats[str(name)] = {v: da for v, da in s.data_vars.items()
                                if "sum_ens_var" in da["statistic"].values}
    if not stats:
        return None if not any(members.values()) else {"members": members, "series": []}
    drawn = list(stats)
    first = stats[drawn[0]]
    rows = _rows(first)
    leads = first[next(iter(first))][LEAD_TIME].values
    lead_days = [float(x) for x in leads / np.timedelta64(1, "D")]
    plots: dict[str, list] = {}
    ranks: dict[str, list] = {}
    picks = sorted({int(i) for i in np.linspace(1 if len(leads) > 1 else 0, len(leads) - 1,
                                                RANK_LEADS).round()})
    for region in regions:
        per_region, rank_region = [], []
        for var, lev in rows:
            entry = {"row": _label(var, lev), "ratio": [], "ratio_c": [], "spread": [],
                     "rmse": []}
            for si, name in enumerate(drawn):
                da = stats[name].get(var)
                if da is None or region not in da["region"].values:
                    for k in ("ratio", "ratio_c", "spread", "rmse"):
                        entry[k].append([None] * len(leads))
                    continue
                da = da.sel(region=region)
                if lev is not None and LEVEL in da.dims:
                    if lev not in da[LEVEL].values:  # keep the series positions: empty lists
                        for k in ("ratio", "ratio_c", "spread", "rmse"):
                            entry[k].append([None] * len(leads))
                        continue
                    da = da.sel({LEVEL: lev})
                da = da.reindex({LEAD_TIME: leads})
                w = da.sel(statistic="sum_weight_e")
                m = da.sel(statistic="ensemble_size")
                with np.errstate(invalid="ignore", divide="ignore"):
                    var_t = da.sel(statistic="sum_ens_var") / w
                    mse_t = da.sel(statistic="sum_ens_mean_se") / w
                    # skipna=False: a NaN init makes the value NaN, as in the table
                    spread = np.sqrt(var_t.mean("init_time", skipna=False))
                    spread_c = np.sqrt((var_t * (m + 1) / m).mean("init_time", skipna=False))
                    rmse = np.sqrt(mse_t.mean("init_time", skipna=False))
                entry["ratio"].append([_num(x) for x in (spread / rmse).values])
                entry["ratio_c"].append([_num(x) for x in (spread_c / rmse).values])
                entry["spread"].append([_num(x) for x in spread.values])
                entry["rmse"].append([_num(x) for x in rmse.values])
                nb = members[name] + 1
                if nb <= RANK_BINS and RANK_STATISTICS[0] in da["statistic"].values:
                    bins = da.sel(statistic=list(RANK_STATISTICS[:nb]))
                    for li in picks:
                        b = bins.isel({LEAD_TIME: li}).sum("init_time").values
                        total = float(w.isel({LEAD_TIME: li}).sum("init_time"))
                        if total > 0 and np.isfinite(b).all():
                            rank_region.append({"row": entry["row"], "lead": lead_days[li],
                                                "series": si,
                                                "bins": [_num(x) for x in b / total * nb]})
            per_region.append(entry)
        plots[str(region)] = per_region
        ranks[str(region)] = rank_region
    return {
        "members": members,
        "series": [{"name": n, "label": labels.get(n, n), "members": members[n]}
                   for n in drawn],
        "lead_days": lead_days,
        "plots": plots,
        "ranks": ranks,
    }
