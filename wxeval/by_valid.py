"""Scoring by valid time (WeatherBench 2's ``by_valid``): ``evaluation.alignment: by_valid``.

The config's time range [start, stop] (and ``hours``, then UTC hours of the valid time)
selects *valid* times v = t + l instead of init times t. Every forecast whose valid time falls
in the window is scored, whatever its init: the run reads every init t with at least one lead
l such that t + l is in the window, and the table's value at lead l is the mean over the inits
with t + l in the window only (a different set of inits per lead: at lead l, the inits in
[start − l, stop − l]). The per-init statistics are the same as by init (kept in the same
statistics store); only the averaging differs. So models are compared on the same weather.

The truth must hold every valid time of the scored inits (all their leads, also those outside
the window, which are computed and stored but not averaged): e.g. a July window with leads to
10 days needs the truth to mid-August and the forecasts from 21 June.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from wxeval.schema import INIT_TIME, LEAD_TIME


def in_window(valid: np.ndarray, start: str | None, stop: str | None,
              hours: Sequence[int] | None) -> np.ndarray:
    """Which valid times lie in [start, stop] (inclusive; a date-only ``stop`` includes the
    whole day, as for init times) at the given UTC ``hours``: the rule of
    :func:`wxeval.align.select_init_times`, applied to valid times."""
    from wxeval.align import select_init_times

    valid = np.asarray(valid, "datetime64[ns]")
    chosen = select_init_times(np.unique(valid), start, stop, hours)
    return np.isin(valid, chosen)


def inits_verifying(available: np.ndarray, leads: np.ndarray, start: str | None,
                    stop: str | None, hours: Sequence[int] | None) -> np.ndarray:
    """Inits among ``available`` with at least one of ``leads`` valid in the window."""
    available = np.asarray(available, "datetime64[ns]")
    leads = np.asarray(leads, "timedelta64[ns]")
    if available.size == 0 or leads.size == 0:
        return available[:0]
    valid = available[:, None] + leads[None, :]
    return available[in_window(valid, start, stop, hours).any(axis=1)]


def summarize_by_valid(statistics: xr.Dataset, metrics: Sequence[str], start: str | None,
                       stop: str | None, hours: Sequence[int] | None, *,
                       skipna: bool = False) -> xr.Dataset:
    """The metrics table with, at each lead l, the mean over the inits with t + l in the
    window (:func:`wxeval.results.summarize` per lead). A lead no init verifies is NaN."""
    from wxeval.results import summarize

    inits = statistics[INIT_TIME].values
    tables = []
    for lead in statistics[LEAD_TIME].values:
        keep = in_window(inits + lead, start, stop, hours)
        one = statistics.sel({LEAD_TIME: [lead]})
        if keep.any():
            tables.append(summarize(one.isel({INIT_TIME: keep}), metrics, skipna=skipna))
        else:
            table = summarize(one.isel({INIT_TIME: slice(0, 1)}), metrics, skipna=skipna)
            tables.append(xr.full_like(table, np.nan))
    out = xr.concat(tables, dim=LEAD_TIME, combine_attrs="override")
    for name in out.data_vars:
        out[name].attrs = tables[0][name].attrs
        out[name] = out[name].transpose(*tables[0][name].dims)
    out.attrs["alignment"] = "by_valid"
    return out
